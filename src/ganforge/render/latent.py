"""Using a trained generator: latents, truncation, and interpolation paths.

- truncation (Brock et al. 2019, BigGAN §3.1): latent entries with |z| > threshold are redrawn,
  trading diversity for fidelity;
- ``lerp``: straight line between two latents;
- ``slerp``: the great-circle path (Shoemake 1985, used for GAN latents by White 2016), which keeps
  interpolants at the norm typical of Gaussian latents instead of cutting through the low-norm
  middle of the distribution;
- vector arithmetic (Radford et al. 2016, DCGAN §6.3; White 2016): the latents of a few samples
  showing one concept are averaged, and such group means are added and subtracted
  (``mean(smiling woman) - mean(neutral woman) + mean(neutral man)``); G turns the result into a
  sample showing the combined concept. Groups are sample indices of a seeded batch (``3,7,9``) or
  every latent of a pool whose sample a classifier assigns to a class (``class:7``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ganforge.errors import UsageError


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


# --- vector arithmetic -------------------------------------------------------------------------

EXPR_SYNTAX = ('write groups joined by + and -: a group is sample indices of the seeded batch separated by commas '
               '("3,7,9") or a class the classifier sees ("class:7"), e.g. --expr "3,7,9 - 1,4 + 12" or '
               '--expr "class:7 - class:1 + class:4"')
_TERM = re.compile(r"\s*([+-]?)\s*(class:[^\s+,-]*|\d+(?:\s*,\s*\d+)*)\s*")
POOL_SEED_OFFSET = 1  # the class pool is latents(pool, z_dim, seed + 1), independent of the indexed batch
NOISE_SEED_OFFSET = 2  # neighbours are result + noise * latents(k, z_dim, seed + 2)


@dataclass(frozen=True)
class Group:
    """One term of a latent expression: ``sign`` times the mean latent of its members."""

    sign: int
    """+1 or -1."""
    indices: tuple[int, ...] = ()
    """Sample indices into the seeded batch ``latents(n, z_dim, seed)`` (index groups)."""
    label: int | None = None
    """The class index a classifier assigns (``class:`` groups); None for index groups."""

    @property
    def text(self) -> str:
        return f"class:{self.label}" if self.label is not None else ",".join(map(str, self.indices))


def parse_expression(text: str) -> list[Group]:
    """Parse a latent expression such as ``"3,7,9 - 1,4 + 12"`` or ``"class:7 - class:1 + class:4"``.

    Groups are joined by ``+`` or ``-`` (the first may carry a sign too); spaces are optional.
    Raises UsageError naming the unreadable part.

    >>> [g.text for g in parse_expression("3,7,9 - 1,4 + class:2")]
    ['3,7,9', '1,4', 'class:2']
    """
    if not text or not text.strip():
        raise UsageError(f"--expr is empty; {EXPR_SYNTAX}")
    groups: list[Group] = []
    pos = 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        if text[pos:].strip() in ("+", "-"):
            raise UsageError(f"--expr {text!r} ends with {text[pos:].strip()!r}; a group must follow it")
        if match is None or match.end() == pos:
            raise UsageError(f"--expr {text!r}: cannot read {text[pos:].strip()!r}; {EXPR_SYNTAX}")
        sign_text, body = match.groups()
        if groups and not sign_text:
            raise UsageError(f"--expr {text!r}: expected + or - before {body!r}; {EXPR_SYNTAX}")
        sign = -1 if sign_text == "-" else 1
        if body.startswith("class:"):
            name = body[len("class:"):]
            if not name.isdigit():
                raise UsageError(f"--expr {text!r}: {body!r} must name a class by its number (the classifier's "
                                 f"output index, e.g. class:7)")
            groups.append(Group(sign, label=int(name)))
        else:
            indices = tuple(int(i) for i in body.split(","))
            if len(set(indices)) != len(indices):
                raise UsageError(f"--expr {text!r}: group {body.strip()!r} names an index twice; list each sample once")
            groups.append(Group(sign, indices=indices))
        pos = match.end()
    return groups


def index_members(batch: Tensor, group: Group) -> Tensor:
    """The latents ``[len(group.indices), z_dim]`` an index group names in ``batch: [n, z_dim]``."""
    n = len(batch)
    outside = [i for i in group.indices if i >= n]
    if outside:
        raise UsageError(f"--expr: index {outside[0]} is outside the batch of --n {n} (indices 0..{n - 1}); "
                         "use the --n, --seed and --truncation of the grid you picked the samples from")
    return batch[list(group.indices)]


def class_members(pool: Tensor, pool_labels: np.ndarray, group: Group) -> Tensor:
    """The latents of ``pool: [m, z_dim]`` whose samples were classified as ``group.label``."""
    chosen = np.flatnonzero(np.asarray(pool_labels) == group.label)
    if len(chosen) == 0:
        labels, counts = np.unique(pool_labels, return_counts=True)
        found = ", ".join(f"{label}: {count}" for label, count in zip(labels.tolist(), counts.tolist()))
        raise UsageError(f"--expr: no sample of the pool of {len(pool)} was classified as class {group.label} "
                         f"(samples per class: {found}); raise --pool or name another class")
    return pool[torch.from_numpy(chosen)]


def predict_classes(samples: np.ndarray, classifier: str) -> np.ndarray:
    """Class index ``[N]`` that the extractor ``classifier`` (e.g. ``digits-cnn``) predicts for image
    samples (uint8 ``[N, H, W, C]``); UsageError for other samples or extractors without classes."""
    from ganforge.metrics import extractors

    if np.asarray(samples).ndim != 4:
        raise UsageError("class: groups classify images, and this run does not make images; "
                         "name sample indices instead (e.g. --expr \"3,7 - 1 + 12\")")
    extractor = extractors.get_extractor(classifier)
    if not hasattr(extractor, "predict"):
        raise UsageError(f"the {classifier} extractor gives features but no classes; use a classifier "
                         "such as --classifier digits-cnn for class: groups")
    return np.asarray(extractor.predict(samples))


@dataclass
class VectorArithmetic:
    """The latents of a vector-arithmetic expression; ``samples`` holds what G made of them."""

    groups: list[Group]
    members: list[Tensor]
    """Each group's latents ``[m_i, z_dim]``."""
    means: Tensor
    """Each group's mean latent ``[k, z_dim]``."""
    result: Tensor
    """``sum_i sign_i * means[i]``, ``[z_dim]``."""
    neighbours: Tensor
    """``result`` plus small Gaussian noise, ``[m, z_dim]``."""
    samples: dict[str, Any] = field(default_factory=dict)
    """Filled by ``Run.arithmetic``: ``means``, ``result`` (one sample), ``neighbours`` and
    ``members`` (a list: up to three samples per group), in the user's space."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description: each group with its size, and the result vector."""
        return {
            "expr": " ".join((("- " if i else "-") if g.sign < 0 else ("+ " if i else "")) + g.text
                             for i, g in enumerate(self.groups)),
            "groups": [{"group": g.text, "sign": g.sign, "count": len(m)} for g, m in zip(self.groups, self.members)],
            "vector": [float(v) for v in self.result],
            "norm": float(self.result.norm()),
        }


def vector_arithmetic(groups: list[Group], members: list[Tensor], neighbours: int = 8, noise: float = 0.25,
                      seed: int = 0) -> VectorArithmetic:
    """Combine group means: ``result = sum_i sign_i * mean(members[i])``, and ``neighbours`` points
    ``result + noise * eps`` with ``eps = latents(neighbours, z_dim, seed + 2)`` (the DCGAN paper
    shows such neighbours, with uniform noise of +-0.25, to show the result is a stable region).

    Args:
        groups: the parsed expression (:func:`parse_expression`).
        members: one ``[m_i, z_dim]`` tensor of latents per group, ``m_i >= 1``.
    Returns:
        :class:`VectorArithmetic` with ``means [k, z_dim]``, ``result [z_dim]``, ``neighbours [neighbours, z_dim]``.
    """
    if len(groups) != len(members) or not groups:
        raise ValueError(f"{len(groups)} groups but {len(members)} member sets")
    if neighbours < 0 or noise < 0:
        raise UsageError(f"--neighbours and --noise must be >= 0, got {neighbours} and {noise}")
    means = torch.stack([m.float().mean(0) for m in members])  # [k, z_dim]
    signs = torch.tensor([float(g.sign) for g in groups], dtype=means.dtype, device=means.device)
    result = (signs[:, None] * means).sum(0)  # [z_dim]
    eps = latents(neighbours, result.shape[0], seed + NOISE_SEED_OFFSET, device=result.device)
    return VectorArithmetic(groups, members, means, result, result + noise * eps)
