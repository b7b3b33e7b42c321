"""Using a trained generator: latents, truncation, and interpolation paths.

- truncation (Brock et al. 2019, BigGAN §3.1): latent entries with |z| > threshold are redrawn,
  trading diversity for fidelity;
- ``lerp``: straight line between two latents;
- ``slerp``: the great-circle path (Shoemake 1985, used for GAN latents by White 2016), which keeps
  interpolants at the norm typical of Gaussian latents instead of cutting through the low-norm
  middle of the distribution.
"""

from __future__ import annotations

import torch
from torch import Tensor


def latents(n: int, z_dim: int, seed: int, truncation: float | None = None, device: torch.device | str = "cpu") -> Tensor:
    """``[n, z_dim]`` standard normal latents from ``seed``; entries beyond ``truncation`` are redrawn."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, z_dim, generator=gen)
    if truncation is not None:
        if truncation <= 0:
            raise ValueError("truncation must be > 0")
        outside = z.abs() > truncation
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=gen)
            outside = z.abs() > truncation
    return z.to(device)


def lerp(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """``[steps, *z.shape]`` points on the segment from ``z0`` to ``z1``, endpoints included."""
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device).view(-1, *([1] * z0.dim()))
    return (1 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, steps: int) -> Tensor:
    """``[steps, *z.shape]`` points on the great circle from ``z0`` to ``z1``, endpoints included.

    The norm is interpolated linearly along the arc; for equal-norm endpoints every point keeps it.
    Falls back to ``lerp`` when the two latents are (anti)parallel within float precision.
    """
    a, b = z0.flatten(), z1.flatten()
    na, nb = a.norm(), b.norm()
    cos = torch.clamp(torch.dot(a / na, b / nb), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-6 or (torch.pi - omega).abs() < 1e-6:
        return lerp(z0, z1, steps)
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)
    so = torch.sin(omega)
    w0 = (torch.sin((1 - t) * omega) / so).view(-1, 1)
    w1 = (torch.sin(t * omega) / so).view(-1, 1)
    unit = w0 * (a / na) + w1 * (b / nb)  # on the unit sphere
    norms = ((1 - t) * na + t * nb).view(-1, 1)
    return (unit * norms).view(steps, *z0.shape)
