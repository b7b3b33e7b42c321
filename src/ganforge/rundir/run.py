"""A run directory opened to sample from, evaluate or resume: :class:`Run`.

What a run directory holds is listed in ``ganforge.rundir.store``; how a run trains, in
``ganforge.rundir.session``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ganforge.config import RunConfig, set_value
from ganforge.domains import Dataset, get_domain
from ganforge.engine import checkpoint as ckpt
from ganforge.engine.loop import build_generator, set_progress
from ganforge.errors import UsageError
from ganforge.render.latent import latents, lerp, slerp
from ganforge.rundir.resolve import resolve_device
from ganforge.rundir.runs import is_locked
from ganforge.rundir.store import METRICS_FILE, MetricsLog
from ganforge.rundir.validate import check_memory, check_state, load_config, load_data_facts

EVAL_N = 2500
SAMPLE_CHUNK_NUMBERS = 1 << 20
PATHS = {"slerp": slerp, "lerp": lerp}


class Run:
    """An existing run directory: its config, its data facts and its newest checkpoint."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise UsageError(f"{self.path} is not a ganforge run directory (no config.json); "
                             "give the folder that 'ganforge train' wrote")
        self.config = load_config(self.path / "config.json")
        self.data_state = load_data_facts(self.path / "data.json")
        self.domain = get_domain(self.data_state["domain"])
        self.log = MetricsLog(self.path / METRICS_FILE)
        self.checkpoint_step: int | None = None
        """The step of the checkpoint read last (by :meth:`generator` or :meth:`read_checkpoint`)."""

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.data_state["sample_shape"])

    def latest_checkpoint(self) -> Path:
        found = ckpt.list_checkpoints(self.path)
        if not found:
            if is_locked(self.path):
                raise UsageError(f"{self.path} has no checkpoint yet: it is training; wait for its first checkpoint")
            raise UsageError(f"{self.path} has no checkpoint yet: it was stopped before its first one; continue it "
                             f"with 'ganforge train --resume {self.path}' (it starts from step 0)")
        return found[-1]

    def read_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The newest checkpoint's tensors and state, verified (its hash) and validated (its state.json)."""
        path = self.latest_checkpoint()
        tensors, state = ckpt.read_checkpoint(path)
        check_state(state, tensors, path / "state.json")
        self.checkpoint_step = state["step"]
        return tensors, state

    def is_training(self) -> bool:
        """Whether a process is training into this run now (it holds the run's lock)."""
        return is_locked(self.path)

    def generator(self, device: torch.device | None = None) -> nn.Module:
        """The EMA generator of the newest checkpoint, in eval mode (its step in ``checkpoint_step``)."""
        device = device or resolve_device(self.config.device)
        tensors, state = self.read_checkpoint()
        check_memory(self.config, self.sample_shape, self.net_args, device, training=False)
        G_ema = build_generator(self.config, self.config.model.net, self.config.model.z_dim, self.sample_shape, device,
                                self.net_args)
        ckpt.load_module_weights(tensors, "G_ema", G_ema)
        set_progress([G_ema], state["step"] / max(self.config.train.steps, 1))
        return G_ema.eval()

    @property
    def net_args(self) -> dict[str, Any]:
        return dict(self.data_state.get("net_args", {}))

    @property
    def task(self) -> str:
        """What G is conditioned on: ``none``, ``class``, or an image task (``sr``, ``edges``, ``pairs``)."""
        return self.data_state.get("task", "none")

    def class_index(self, label: str | int) -> int:
        """A class given by name (e.g. a folder name, or ``7`` for the digits) or by index."""
        names = self.data_state.get("class_names") or []
        if str(label) in names:
            return names.index(str(label))
        n_classes = self.net_args.get("n_classes", len(names))
        try:
            index = int(label)
        except ValueError:
            index = -1
        if not 0 <= index < n_classes:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise UsageError(f"unknown class '{label}'; this run's classes are: {shown}") from None
        return index

    def conditions(self, n: int, labels: Any = None, cond: torch.Tensor | None = None,
                   dataset: Dataset | None = None) -> torch.Tensor | None:
        """The ``n`` conditions G is given when sampling (None for an unconditional run), as the
        run's domain chooses them: for class-conditional runs ``labels`` (one class, name or index,
        or one per sample; by default the classes in turn), for image-conditional runs ``cond``
        (encoded sources ``[n, C, h, w]``; by default the held-out sources of the run's data set).
        """
        return self.domain.conditions(self, n, labels, cond, dataset)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, truncation: float | None = None, G: nn.Module | None = None,
               labels: Any = None, cond: torch.Tensor | None = None, dataset: Dataset | None = None) -> np.ndarray:
        """``n`` samples in the user's space from the EMA generator; for conditional runs given
        ``labels`` or ``cond`` (see :meth:`conditions`).

        Reproducible by design: the latents are ``latents(n, z_dim, seed)``, so the same ``seed``
        (0 unless given) gives the same samples on every call, as ``ganforge sample`` does; pass a
        new ``seed`` for new samples (``TabularGAN.sample`` instead draws fresh rows on each call
        unless ``seed=`` is given, as CTGAN and SDV users expect)."""
        if n < 1:
            raise UsageError(f"--n must be >= 1, got {n}")
        c = self.conditions(n, labels, cond, dataset)
        G = G or self.generator()
        z = latents(n, self.config.model.z_dim, seed, truncation, next(G.parameters()).device)
        return self.generate(z, G, c)

    @torch.no_grad()
    def sample_seeds(self, seeds: Sequence[int], truncation: float | None = None, G: nn.Module | None = None,
                     labels: Any = None, cond: torch.Tensor | None = None) -> np.ndarray:
        """One sample per seed, ``[len(seeds), ...]`` in the user's space, as StyleGAN2-ADA's
        ``generate.py --seeds``: sample ``k`` is G's image of its own latent ``latents(1, z_dim,
        seeds[k], truncation)``, drawn alone, so it is ``sample(1, seeds[k])[0]`` whatever else the
        list holds. Conditional runs take ``labels`` or ``cond`` as :meth:`sample` does (by default
        the classes, or held-out sources, in turn along the list)."""
        seeds = [int(s) for s in seeds]
        if not seeds or not all(0 <= s < 2**32 for s in seeds):
            raise UsageError(f"give seeds from 0 to {2**32 - 1}, at least one (e.g. --seeds 0-35), got {seeds[:5]}")
        c = self.conditions(len(seeds), labels, cond)
        G = G or self.generator()
        device = next(G.parameters()).device
        z = torch.cat([latents(1, self.config.model.z_dim, s, truncation, device) for s in seeds])
        if c is None:
            encoded = (G(z[k:k + 1]) for k in range(len(seeds)))
        else:
            c = c.to(device)
            encoded = (G(z[k:k + 1], c[k:k + 1]) for k in range(len(seeds)))
        return self.domain.decode_parts(encoded, self.data_state)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, G: nn.Module | None = None, c: torch.Tensor | None = None) -> np.ndarray:
        """Samples in the user's space for given latents ``z: [n, z_dim]`` (and conditions ``c: [n, ...]``)."""
        G = G or self.generator()
        device = next(G.parameters()).device
        z = z.to(device)
        # G's activations grow with the sample: chunks of at most ~1M output numbers keep sampling
        # large images within memory (64x64 colour: 85 latents a chunk, whose DCGAN activations
        # peaked near 0.1 GB; chunks of 341 added 0.5 GB to a run's peak RSS)
        chunk = max(1, min(4096, SAMPLE_CHUNK_NUMBERS // math.prod(self.sample_shape)))
        if c is None:
            if self.task != "none":
                c = self.conditions(len(z))
            else:
                return self.domain.decode_parts((G(part) for part in z.split(chunk)), self.data_state)
        c = c.to(device)
        chunk = min(chunk, 1024)
        return self.domain.decode_parts((G(zc, cc) for zc, cc in zip(z.split(chunk), c.split(chunk))), self.data_state)

    @torch.no_grad()
    def interpolate(self, pairs: int = 4, steps: int = 8, mode: str = "slerp", seed: int = 0,
                    truncation: float | None = None) -> np.ndarray:
        """``pairs`` latent paths of ``steps`` points each, endpoints included: the samples, pair by
        pair (``[pairs * steps, ...]``). Pair ``i`` runs from latent ``2i`` to ``2i + 1`` of
        ``latents(2 * pairs, z_dim, seed)``, so its ends are ``sample(2 * pairs, seed)[2i]`` and ``[2i + 1]``.
        ``mode`` is ``slerp`` (great circle, keeps the typical latent norm) or ``lerp`` (straight line).
        """
        if pairs < 1 or steps < 2:
            raise UsageError(f"--pairs must be >= 1 and --steps >= 2, got {pairs} and {steps}")
        if mode not in PATHS:
            raise UsageError(f"unknown interpolation '{mode}'; choose {' or '.join(PATHS)}")
        z = latents(2 * pairs, self.config.model.z_dim, seed, truncation)
        path = torch.cat([PATHS[mode](z[2 * i], z[2 * i + 1], steps) for i in range(pairs)])
        c = self.conditions(pairs)  # conditional runs: one class (or source image) per path
        return self.generate(path, c=c.repeat_interleave(steps, dim=0) if c is not None else None)

    def load_data(self) -> Dataset:
        dataset = self.domain.load(self.config.data)
        if dataset.state["fingerprint"] != self.data_state["fingerprint"]:
            raise UsageError(f"the data at '{self.config.data.source}' changed since this run was trained; "
                             "restore the original file or train a new run")
        return dataset

    def evaluate(self, n: int = EVAL_N, seed: int = 0, dataset: Dataset | None = None, G: nn.Module | None = None,
                 quick: bool = False, features: str | None = None, protocol: str | None = None) -> dict[str, Any]:
        """Score ``n`` samples against the run's data with the domain's metrics (and, for images,
        FID/KID/precision-recall on the ``features`` extractor, e.g. ``digits-cnn``).

        The domain samples what its scores need (see ``Domain.score``): class-conditional runs every
        class in turn, image-conditional runs the outputs for the held-out sources, paired with their
        targets. ``protocol`` (``fast`` or ``full``) overrides the run's ``data.eval_protocol`` for
        series and tables: ``full`` is the papers' protocol (TimeGAN's 10 repeats; gradient-boosted
        detection), ``fast`` the default that keeps a final scoring to seconds.
        """
        dataset = dataset or self.load_data()
        if protocol is not None:
            set_value(RunConfig(), "data.eval_protocol", protocol)  # the same check as --set gets
            dataset = dataclasses.replace(dataset, meta={**dataset.meta, "eval_protocol": protocol})
        return self.domain.score(self, n, seed, dataset, G=G, quick=quick, features=features)

    @torch.no_grad()
    def arithmetic(self, expr: str, n: int = 64, seed: int = 0, truncation: float | None = None,
                   neighbours: int = 8, noise: float = 0.25, pool: int = 2000,
                   classifier: str = "digits-cnn") -> Any:
        """Latent vector arithmetic (Radford et al. 2016 §6.3): ``expr`` adds and subtracts group means.

        A group is sample indices of the seeded batch ``latents(n, z_dim, seed, truncation)``, i.e.
        of ``sample(n, seed, truncation)`` (``"3,7,9 - 1,4 + 12"``), or ``class:K``: every latent of
        the pool ``latents(pool, z_dim, seed + 1, truncation)`` whose image the ``classifier``
        (an extractor with ``predict``, e.g. ``digits-cnn`` for 28x28 gray digits) calls class K.
        Returns a :class:`ganforge.render.latent.VectorArithmetic` (the latents) with ``samples`` filled:
        ``means [k, ...]``, ``result [1, ...]``, ``neighbours [neighbours, ...]`` and ``members``
        (up to three per group).
        """
        from ganforge.render.latent import (POOL_SEED_OFFSET, class_members, index_members, parse_expression,
                                     predict_classes, vector_arithmetic)

        groups = parse_expression(expr)
        if self.config.data.task != "none":
            raise UsageError(f"vector arithmetic needs an unconditional run; this one is conditioned "
                             f"(data.task={self.config.data.task})")
        if n < 1 or pool < 1 or neighbours < 0 or noise < 0:
            raise UsageError(f"--n and --pool must be >= 1 and --neighbours and --noise >= 0, got {n}, {pool}, "
                             f"{neighbours} and {noise}")
        G = self.generator()
        z_dim = self.config.model.z_dim
        batch = latents(n, z_dim, seed, truncation)
        pool_z = pool_labels = None
        members = []
        for group in groups:
            if group.label is None:
                members.append(index_members(batch, group))
                continue
            if pool_z is None:
                pool_z = latents(pool, z_dim, seed + POOL_SEED_OFFSET, truncation)
                pool_labels = predict_classes(self.generate(pool_z, G), classifier)
            members.append(class_members(pool_z, pool_labels, group))
        result = vector_arithmetic(groups, members, neighbours, noise, seed)
        result.samples = {
            "means": self.generate(result.means, G),
            "result": self.generate(result.result[None], G),
            "neighbours": self.generate(result.neighbours, G),
            "members": [self.generate(m[:3], G) for m in members],
        }
        return result
