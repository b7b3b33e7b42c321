"""Differentiable augmentation of everything D sees, for training on small image sets.

With a few thousand images or fewer, D memorises the training set: it tells real from fake by
recognising the real images, its feedback stops helping G, and the samples degrade. Two papers
answer by showing D only augmented images, real and fake alike, through augmentations that are
differentiable so G's gradient passes through them:

- DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
  translation by up to 1/8 of the image (zero padding), cutout of a random half-size square, and
  colour (brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5)), always applied.
- ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data"): each
  augmentation is applied to each sample with probability p, and p is steered by the overfitting
  heuristic r_t = E[sign(D(x_real))] (measured on the augmented reals): every ``ada_interval`` D
  steps, p += sign(r_t - target) * batch * ada_interval / (ada_kimg * 1000), clipped to [0, 1].
  Below p ~ 0.8 the augmentations do not leak into G's samples (the paper's section 2.2).

Images are ``[N, C, H, W]`` in [-1, 1] (0 is mid grey, what translation and cutout fill with).
An op is a pure function of the images and uniform random numbers ``u: [N, k]`` in [0, 1); the
pipeline draws ``u`` (and the Bernoulli(p) choice of the samples an op applies to) from the run's
training generator, so a resumed run repeats the uninterrupted one bit for bit. On several ranks
every draw is made for the global batch and cut to this rank's rows, as the loop's other draws.

Mirrors the papers' parameter ranges, not their code: the ops are written from the papers' text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.config import TrainConfig
from ganforge.engine.distributed import Shard
from ganforge.errors import UsageError
from ganforge.registry import Registry

TRANSLATION = 1 / 8  # of the height and width, DiffAugment's ratio
CUTOUT = 1 / 2  # side of the cut-out square, as a fraction of the height and width


@dataclass(frozen=True)
class Op:
    """One augmentation: ``fn(x [N, C, H, W], u [N, draws] in [0, 1)) -> [N, C, H, W]``, differentiable in x."""

    fn: Callable[[Tensor, Tensor], Tensor]
    draws: int


OPS: Registry[tuple[Op, ...]] = Registry("train.augment op")
"""Named augmentations (``train.augment`` lists names): each name is one op or a sequence of ops."""


def register_op(name: str, *ops: Op) -> None:
    OPS.register(name, tuple(ops))


def _integers(u: Tensor, low: int, high: int) -> Tensor:
    """Uniform integers in [low, high] from uniforms in [0, 1): int64 of u's shape."""
    return (u * (high - low + 1)).floor().long().clamp_(max=high - low) + low


def brightness(x: Tensor, u: Tensor) -> Tensor:
    """Add U(-0.5, 0.5) to every pixel of a sample (a quarter of the [-1, 1] range)."""
    return x + (u[:, 0] - 0.5).view(-1, 1, 1, 1)


def saturation(x: Tensor, u: Tensor) -> Tensor:
    """Scale each pixel's distance from its mean over the channels by U(0, 2) (no-op on gray images)."""
    mean = x.mean(dim=1, keepdim=True)
    return mean + (x - mean) * (2 * u[:, 0]).view(-1, 1, 1, 1)


def contrast(x: Tensor, u: Tensor) -> Tensor:
    """Scale each sample's distance from its mean over all pixels and channels by U(0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (x - mean) * (u[:, 0] + 0.5).view(-1, 1, 1, 1)


def translation(x: Tensor, u: Tensor) -> Tensor:
    """Shift each sample by whole pixels, up to 1/8 of its height and width each way; what moves in is 0."""
    n, c, h, w = x.shape
    reach_h, reach_w = int(h * TRANSLATION + 0.5), int(w * TRANSLATION + 0.5)
    dy, dx = _integers(u[:, 0], -reach_h, reach_h), _integers(u[:, 1], -reach_w, reach_w)
    padded = F.pad(x, (reach_w, reach_w, reach_h, reach_h))  # [N, C, H + 2 reach_h, W + 2 reach_w]
    # output pixel (i, j) is input pixel (i - dy, j - dx): pixel (i - dy + reach_h, j - dx + reach_w) of
    # the padded image, gathered in one go from its flattened pixels
    rows = torch.arange(h, device=x.device) + reach_h - dy[:, None]  # [N, H]
    cols = torch.arange(w, device=x.device) + reach_w - dx[:, None]  # [N, W]
    where = (rows[:, :, None] * padded.shape[3] + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return padded.flatten(2).gather(2, where).view(n, c, h, w)


def cutout(x: Tensor, u: Tensor) -> Tensor:
    """Set a square of half the height and width to 0, centred on a random pixel (it may stick out)."""
    _, _, h, w = x.shape
    size_h, size_w = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    top = _integers(u[:, 0], 0, h - 1) - size_h // 2  # [N]
    left = _integers(u[:, 1], 0, w - 1) - size_w // 2
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_rows = (ys >= top[:, None]) & (ys < top[:, None] + size_h)  # [N, H]
    in_cols = (xs >= left[:, None]) & (xs < left[:, None] + size_w)  # [N, W]
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # [N, H, W]
    return x * keep[:, None].to(x.dtype)


BRIGHTNESS, SATURATION, CONTRAST = Op(brightness, 1), Op(saturation, 1), Op(contrast, 1)
register_op("translation", Op(translation, 2))
register_op("cutout", Op(cutout, 2))
register_op("color", BRIGHTNESS, SATURATION, CONTRAST)  # DiffAugment's colour policy
register_op("brightness", BRIGHTNESS)
register_op("saturation", SATURATION)
register_op("contrast", CONTRAST)


def parse_ops(names: str) -> list[Op]:
    """``"translation,cutout,color"`` -> the ops in that order; an unknown name is one UsageError."""
    return [op for name in names.split(",") if name.strip() for op in OPS.get_entry(name.strip())]


def check_augment(cfg: TrainConfig, sample_shape: tuple[int, ...]) -> list[Op]:
    """The ops of ``cfg.augment`` for samples of ``sample_shape``; UsageError for unknown names or
    samples that are not images ``[C, H, W]``."""
    ops = parse_ops(cfg.augment)
    if ops and len(sample_shape) != 3:
        raise UsageError(f"train.augment works on images [C, H, W], and these samples have shape {list(sample_shape)}; "
                         "set train.augment= (empty) for this data")
    return ops


class Augment:
    """The pipeline D's inputs go through, and the probability p of each op per sample.

    ``p`` is ``train.augment_p`` (1 = DiffAugment), or with ``train.ada`` starts at 0 and is steered
    by :meth:`observe`. With no ops (``train.augment`` empty) or p = 0 it returns its input and
    draws nothing, so a run without augmentation is unchanged.
    """

    def __init__(self, cfg: TrainConfig, sample_shape: tuple[int, ...], gen: torch.Generator,
                 shard: Shard = Shard()) -> None:
        self.ops = check_augment(cfg, sample_shape)
        self.cfg, self.gen, self.shard = cfg, gen, shard
        self.ada = cfg.ada and bool(self.ops)
        self.p = 0.0 if self.ada else cfg.augment_p
        # the sum of sign(D(x_real)) and their count since the last adjustment, on the training device
        self._signs = torch.zeros(2, dtype=torch.float64, device=gen.device)
        self.last_rt: float | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: Tensor) -> Tensor:
        """``x: [N, C, H, W]`` (this rank's rows) -> augmented ``[N, C, H, W]``; gradients flow to ``x``."""
        if not self.ops or self.p <= 0:
            return x
        n = x.shape[0] * self.shard.world
        for op in self.ops:
            u = self.shard.take(torch.rand(n, op.draws + 1, generator=self.gen, device=x.device))
            out = op.fn(x, u[:, 1:].to(x.dtype))
            x = out if self.p >= 1 else torch.where((u[:, 0] < self.p).view(-1, 1, 1, 1), out, x)
        return x

    @torch.no_grad()
    def observe(self, real_logits: Tensor, d_step_index: int) -> None:
        """ADA: count the signs of D's logits on this D step's augmented reals; after every
        ``ada_interval``-th D step of the run (counted from 0 over the whole run, so a resumed run
        adjusts at the same steps), move p by the rule in the module docstring."""
        if not self.ada:
            return
        self._signs += torch.stack([real_logits.sign().sum().double(),
                                    torch.tensor(float(real_logits.numel()), device=real_logits.device).double()])
        t = self.cfg
        if (d_step_index + 1) % t.ada_interval:
            return
        self.shard.all_reduce_sum(self._signs)  # every rank adjusts p alike, by the global batch's r_t
        signs, count = self._signs.tolist()
        self._signs.zero_()
        self.last_rt = signs / max(count, 1.0)
        step = t.batch * t.ada_interval / (t.ada_kimg * 1000)
        self.p = min(max(self.p + step * _sign(self.last_rt - t.ada_target), 0.0), 1.0)

    def merge_ranks(self) -> None:
        """On several ranks, at a log step (checkpoints come at log steps): gather the signs counted
        so far on rank 0, whose checkpoint then holds them all; the sum over the ranks is unchanged."""
        if self.ada and self.shard.world > 1:
            self.shard.all_reduce_sum(self._signs)
            if not self.shard.is_main:
                self._signs.zero_()

    def state(self) -> dict[str, Any]:
        """JSON state for a checkpoint: p, and the signs counted since the last adjustment (see
        :meth:`merge_ranks`)."""
        signs, count = self._signs.tolist()
        return {"p": self.p, "signs": signs, "count": count, "last_rt": self.last_rt}

    def load_state(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.p, self.last_rt = float(state["p"]), state.get("last_rt")
        if self.shard.is_main:  # rank 0's checkpoint holds every rank's signs
            self._signs = torch.tensor([state["signs"], state["count"]], dtype=torch.float64, device=self._signs.device)


def _sign(value: float) -> float:
    return float(value > 0) - float(value < 0)
