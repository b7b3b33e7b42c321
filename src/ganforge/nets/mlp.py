"""Multi-layer perceptrons for points, tables and small images, unconditional or class-conditional."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.nets.layers import MinibatchStdDev, check_labels, make_activation, make_norm_1d, maybe_spectral_norm
from ganforge.nets.registry import NetFamily, register_net


class MLPGenerator(nn.Module):
    """G(z) -> x: ``z: [N, z_dim]`` to ``x: [N, out_dim]`` (unbounded, in standardised units), or
    ``[N, *shape]`` given a sample ``shape`` of ``out_dim`` numbers (e.g. an MLP GAN on images)."""

    def __init__(self, z_dim: int, out_dim: int, width: int, depth: int, activation: str, norm: str,
                 shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.shape = tuple(shape) if shape is not None else (out_dim,)
        layers: list[nn.Module] = []
        in_dim = z_dim
        for _ in range(depth):
            layers += [nn.Linear(in_dim, width), make_norm_1d(norm, width), make_activation(activation)]
            in_dim = width
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(len(z), *self.shape)


class MLPDiscriminator(nn.Module):
    """D(x) -> logits: ``x: [N, in_dim]`` (or any ``[N, ...]`` of ``in_dim`` numbers, flattened) to
    ``[N]``, higher = more real.

    ``in_dim`` already includes packing (PacGAN: m samples concatenated into one input).
    """

    def __init__(
        self,
        in_dim: int,
        width: int,
        depth: int,
        activation: str,
        norm: str,
        spectral_norm: bool,
        minibatch_stddev: bool,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [
                maybe_spectral_norm(nn.Linear(in_dim, width), spectral_norm),
                make_norm_1d(norm, width),
                make_activation(activation),
            ]
            in_dim = width
        if minibatch_stddev:
            layers.append(MinibatchStdDev())
            in_dim += 1
        self.features = nn.Sequential(*layers)
        self.head = maybe_spectral_norm(nn.Linear(in_dim, 1), spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x.flatten(1))).squeeze(1)


class ConditionalMLPGenerator(MLPGenerator):
    """G(z, y) -> x: the MLP generator fed z next to a learned embedding of the class label (cGAN,
    Mirza & Osindero 2014). ``z: [N, z_dim]``, ``y: int64 [N]`` in ``[0, n_classes)``; the embedding
    has ``min(n_classes, 50)`` numbers (the first layer is linear in it, so a wider one adds no capacity).

    Example: ``G = ConditionalMLPGenerator(16, 64, 10, 128, 2, "leaky_relu", "none", (1, 8, 8))``, then
    ``G(torch.randn(4, 16), torch.tensor([0, 1, 2, 9]))`` is ``[4, 1, 8, 8]``.
    """

    def __init__(self, z_dim: int, out_dim: int, n_classes: int, width: int, depth: int, activation: str, norm: str,
                 shape: tuple[int, ...] | None = None) -> None:
        if n_classes < 1:
            raise ValueError(f"a class-conditional generator needs n_classes >= 1, got {n_classes}")
        embed_dim = min(n_classes, 50)
        super().__init__(z_dim + embed_dim, out_dim, width, depth, activation, norm, shape)
        self.z_dim, self.n_classes = z_dim, n_classes
        self.embed = nn.Embedding(n_classes, embed_dim)  # [N] -> [N, embed_dim], N(0, 1) like z

    def forward(self, z: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"ConditionalMLPGenerator expects z of shape [N, {self.z_dim}], got {list(z.shape)}")
        check_labels(y, z.shape[0], self.n_classes, "ConditionalMLPGenerator")
        return super().forward(torch.cat([z, self.embed(y).to(z.dtype)], dim=1))


class ConditionalMLPDiscriminator(MLPDiscriminator):
    """D(x, y): the MLP discriminator judging a sample together with its class label.

    With ``phi(x)`` the last hidden features (``[N, width]``, or x itself at ``depth=0``; plus the
    minibatch-stddev feature when on) and ``psi`` the logit head:

    - ``kind="projection"`` (Miyato & Koyama 2018): ``logit = psi(phi) + <embed(y), phi>``; returns ``[N]``.
    - ``kind="acgan"`` (Odena et al. 2017): a second head classifies ``phi`` (without the stddev
      feature); returns ``(logits [N], class_logits [N, n_classes])``.
    """

    def __init__(self, in_dim: int, n_classes: int, width: int, depth: int, activation: str, norm: str,
                 spectral_norm: bool, minibatch_stddev: bool, kind: str = "projection") -> None:
        if n_classes < 1:
            raise ValueError(f"a class-conditional discriminator needs n_classes >= 1, got {n_classes}")
        if kind not in ("projection", "acgan"):
            raise UsageError(f"unknown model.cond_d '{kind}'; choose projection or acgan")
        super().__init__(in_dim, width, depth, activation, norm, spectral_norm, minibatch_stddev)
        self.n_classes, self.kind, self.minibatch_stddev = n_classes, kind, minibatch_stddev
        hidden = width if depth > 0 else in_dim
        phi_dim = hidden + int(minibatch_stddev)
        if kind == "projection":
            layer: nn.Module = nn.Embedding(n_classes, phi_dim)
            nn.init.normal_(layer.weight, 0.0, phi_dim ** -0.5)  # about the scale of nn.Linear's init of the head
            self.embed = maybe_spectral_norm(layer, spectral_norm)
        else:
            self.class_head = maybe_spectral_norm(nn.Linear(hidden, n_classes), spectral_norm)

    def forward(self, x: Tensor, y: Tensor) -> Tensor | tuple[Tensor, Tensor]:  # type: ignore[override]
        check_labels(y, x.shape[0], self.n_classes, "ConditionalMLPDiscriminator")
        phi = self.features(x.flatten(1))  # [N, width (+1)]
        logits = self.head(phi).squeeze(1)
        if self.kind == "projection":
            return logits + (self.embed(y).to(phi.dtype) * phi).sum(dim=1)
        return logits, self.class_head(phi[:, :phi.shape[1] - int(self.minibatch_stddev)])


def _flat(shape: tuple[int, ...]) -> int:
    size = 1
    for s in shape:
        size *= s
    return size


def mlp_generator(m: ModelConfig, z_dim: int, shape: tuple[int, ...], *, n_classes: int = 0) -> MLPGenerator:
    """G for samples of ``shape`` (flattened to ``out_dim`` numbers); ``G(z, y)`` when ``n_classes > 0``."""
    if n_classes > 0:
        return ConditionalMLPGenerator(z_dim, _flat(shape), n_classes, m.g_width, m.g_depth, m.g_activation, m.g_norm,
                                       shape)
    return MLPGenerator(z_dim, _flat(shape), m.g_width, m.g_depth, m.g_activation, m.g_norm, shape)


def mlp_discriminator(m: ModelConfig, shape: tuple[int, ...], *, n_classes: int = 0) -> MLPDiscriminator:
    """D for inputs of ``shape`` (packing folded in), flattened; ``D(x, y)`` of kind ``model.cond_d`` when
    ``n_classes > 0``."""
    if n_classes > 0:
        return ConditionalMLPDiscriminator(_flat(shape), n_classes, m.d_width, m.d_depth, m.d_activation, m.d_norm,
                                           m.spectral_norm, m.minibatch_stddev, m.cond_d)
    return MLPDiscriminator(_flat(shape), m.d_width, m.d_depth, m.d_activation, m.d_norm, m.spectral_norm,
                            m.minibatch_stddev)


register_net("mlp", NetFamily(generator=mlp_generator, discriminator=mlp_discriminator))
