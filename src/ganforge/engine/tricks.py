"""The practitioners' stabilisation tricks, as small functions the loop composes.

- one-sided label smoothing (Salimans et al. 2016, §3.4): real targets 1 - s, fake targets stay 0;
- soft labels (ganhacks #6): real targets ~ U[0.7, 1.2], fake targets ~ U[0, 0.3];
- noisy labels (ganhacks #6): each sample's real/fake target is swapped with probability p;
- instance noise (Sønderby et al. 2016; Arjovsky & Bottou 2017): Gaussian noise on D's inputs,
  real and fake alike, decaying linearly to zero;
- packing (Lin et al. 2018, PacGAN): D judges m samples at once, concatenated along features.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ganforge.config import TrainConfig


def label_targets(cfg: TrainConfig, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor | float, Tensor | float]:
    """Targets for D's real and fake outputs: floats when no trick is on (the cheap path)."""
    if not (cfg.soft_labels or cfg.label_flip > 0 or cfg.label_smoothing > 0):
        return 1.0, 0.0
    if cfg.soft_labels:
        real = 0.7 + 0.5 * torch.rand(n, generator=gen, device=device)
        fake = 0.3 * torch.rand(n, generator=gen, device=device)
    else:
        real = torch.full((n,), 1.0 - cfg.label_smoothing, device=device)
        fake = torch.zeros(n, device=device)
    if cfg.label_flip > 0:
        flip_real = torch.rand(n, generator=gen, device=device) < cfg.label_flip
        flip_fake = torch.rand(n, generator=gen, device=device) < cfg.label_flip
        real, fake = torch.where(flip_real, fake, real), torch.where(flip_fake, real, fake)
    return real, fake


def instance_noise_std(cfg: TrainConfig, step: int) -> float:
    """Noise std at generator step ``step``: linear decay from ``instance_noise`` to 0."""
    if cfg.instance_noise <= 0:
        return 0.0
    horizon = cfg.instance_noise_steps or cfg.steps
    return cfg.instance_noise * max(0.0, 1.0 - step / max(horizon, 1))


def add_instance_noise(x: Tensor, std: float, gen: torch.Generator, world: int = 1,
                       take: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``x`` plus Gaussian noise of std ``std``. On ``world`` ranks ``x`` holds one rank's rows: the
    noise is drawn for all ranks' rows, as a single process would, and ``take`` cuts out this rank's."""
    if std <= 0:
        return x
    noise = torch.randn((x.shape[0] * world, *x.shape[1:]), generator=gen, device=x.device, dtype=x.dtype)
    return x + std * (take(noise) if take is not None else noise)


def pack(x: Tensor, m: int) -> Tensor:
    """``[N, C, ...]`` -> ``[N/m, m*C, ...]``: consecutive groups of m samples become one D input."""
    if m == 1:
        return x
    n = x.shape[0]
    return x.reshape(n // m, m * x.shape[1], *x.shape[2:])


def packed_shape(sample_shape: tuple[int, ...], m: int) -> tuple[int, ...]:
    return (sample_shape[0] * m, *sample_shape[1:])
