"""The GAN: Algorithm 1 of Goodfellow et al. (2014) on the engine's :class:`ganforge.engine.loop.Trainer`."""

from __future__ import annotations

from typing import Any

import torch

from ganforge.config import RunConfig
from ganforge.domains import Dataset
from ganforge.engine.distributed import Shard
from ganforge.engine.loop import Trainer, build_players
from ganforge.engine.steps import Callbacks
from ganforge.families.base import build_both, register_family


class GAN:
    name = "gan"
    objective = ""  # train.loss
    objective_text = ""
    defaults: dict[str, Any] = {}  # the domain's recipe is a GAN's
    multi_process = True
    divergence_hint = "lower the learning rates or try loss=wgan-gp"

    def configure(self, cfg: RunConfig, dataset: Dataset) -> None:
        pass

    def check(self, cfg: RunConfig, dataset: Dataset) -> None:
        build_both(cfg, dataset)

    def trainer(self, cfg: RunConfig, dataset: Dataset, device: torch.device, callbacks: Callbacks,
                shard: Shard, net_args: dict[str, Any]) -> Trainer:
        players = build_players(cfg, cfg.model.net, cfg.model.z_dim, dataset.sample_shape, device, net_args)
        return Trainer(cfg, players, dataset.train, device, callbacks, cond=dataset.cond, sampler=dataset.sampler,
                       shard=shard, batch_transform=dataset.batch_transform)

    def summary_lines(self, last: dict[str, Any]) -> list[str]:
        """D's loss and verdicts, G's loss and diversity, D's confusion matrix, and with D's input
        augmentations on their probability p and ADA's overfitting signal r_t."""
        if "loss_d" not in last:
            return []
        conf = last["confusion"]
        return [
            f"D          loss {last['loss_d']:.3f}   D(x) {last['d_real']:.3f}   D(G(z)) {last['d_fake']:.3f}   "
            f"acc real {last['acc_real']:.3f} / fake {last['acc_fake']:.3f}",
            f"G          loss {last['loss_g']:.3f}   diversity {last['diversity']:.2f} of the data's",
            f"confusion  TP {conf['tp']:.3f}  FN {conf['fn']:.3f}  FP {conf['fp']:.3f}  TN {conf['tn']:.3f}  (real = positive)",
        ] + ([f"augment    p {last['aug_p']:.3f}   r_t {last['ada_rt']:.3f}   (D's augmentations; r_t = E[sign D(x)])"]
             if "aug_p" in last else [])


register_family(GAN())
