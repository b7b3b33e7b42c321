"""What a model family is, and the registry of families.

A family is what trains on a resolved config and data set: the GAN of Algorithm 1 (``gan``), the
VAE baseline (``vae``), TimeGAN (``timegan``). Each gives its recipe, its checks and one trainer
(a :class:`ganforge.engine.steps.StepLoop`); the run directory's one lifecycle session (resume,
checkpoints, evaluations, divergence, progress, summary) drives every trainer alike. A new family
is one new module in this package that calls :func:`register_family`, plus its tests.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from ganforge.config import RunConfig
from ganforge.domains import Dataset
from ganforge.engine.distributed import Shard
from ganforge.engine.loop import build_discriminator, build_generator
from ganforge.engine.steps import Callbacks, StepLoop
from ganforge.registry import Registry


class Family(Protocol):
    name: str
    objective: str
    """What the family minimises, as ``summary.json`` names it; ``""`` means ``train.loss`` (a GAN's
    loss), which ``ganforge runs`` and the report then show; else they show the family's name."""
    objective_text: str
    """The objective in words, for the report (e.g. ``ELBO``)."""
    defaults: dict[str, Any]
    """The family's recipe as dotted settings, over the domain's, for keys the user left alone."""
    multi_process: bool
    """Whether it trains on several processes under torchrun."""
    divergence_hint: str
    """What to try when a run diverges, said after the last good checkpoint."""

    def configure(self, cfg: RunConfig, dataset: Dataset) -> None:
        """Fix what the family decides itself (e.g. its own net), or refuse what it cannot train,
        once the recipe is applied and before the generic checks."""

    def check(self, cfg: RunConfig, dataset: Dataset) -> None:
        """Build the family's networks once on the CPU, so a config that cannot train fails before
        anything is written."""

    def trainer(self, cfg: RunConfig, dataset: Dataset, device: torch.device, callbacks: Callbacks,
                shard: Shard, net_args: dict[str, Any]) -> StepLoop:
        """The trainer at step 0 (the session restores a checkpoint into it to resume)."""

    def summary_lines(self, last: dict[str, Any]) -> list[str]:
        """The summary's lines about the last log record (the game, or the family's losses)."""


FAMILIES: Registry[Family] = Registry("model.family")


def register_family(family: Family) -> Family:
    return FAMILIES.register(family.name, family)


def get_family(name: str) -> Family:
    return FAMILIES.get_entry(name)


def build_both(cfg: RunConfig, dataset: Dataset) -> None:
    """Build G and D of ``model.net`` for ``dataset`` on the CPU (and drop them): a net that cannot
    take this data fails here, before anything is written."""
    cpu, net_args = torch.device("cpu"), dataset.state.get("net_args", {})
    build_generator(cfg, cfg.model.net, cfg.model.z_dim, dataset.sample_shape, cpu, net_args)
    build_discriminator(cfg, cfg.model.net, dataset.sample_shape, cpu, net_args)
