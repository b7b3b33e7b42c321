"""Multi-layer perceptrons for points and tables."""

from __future__ import annotations

from torch import Tensor, nn

from ganforge.nets.layers import MinibatchStdDev, make_activation, make_norm_1d, maybe_spectral_norm
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


def _flat(shape: tuple[int, ...]) -> int:
    size = 1
    for s in shape:
        size *= s
    return size


register_net(
    "mlp",
    NetFamily(
        generator=lambda m, z_dim, shape: MLPGenerator(z_dim, _flat(shape), m.g_width, m.g_depth, m.g_activation,
                                                       m.g_norm, shape),
        discriminator=lambda m, shape: MLPDiscriminator(
            _flat(shape), m.d_width, m.d_depth, m.d_activation, m.d_norm, m.spectral_norm, m.minibatch_stddev
        ),
    ),
)
