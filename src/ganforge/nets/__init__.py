"""Network registry: a family name maps to builders of G and D from the model config.

Networks never see the loop, the loss or the data files: ``G(z) -> x``, ``D(x) -> logits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.nets.dcgan import dcgan_discriminator, dcgan_generator
from ganforge.nets.mlp import MLPDiscriminator, MLPGenerator
from ganforge.nets.pix2pix import pix2pix_discriminator, pix2pix_generator
from ganforge.nets.progressive import progressive_discriminator, progressive_generator
from ganforge.nets.sequence import recurrent_family, tcn_discriminator, tcn_generator
from ganforge.nets.tabular import tabular_discriminator, tabular_generator
from ganforge.nets.timegan import timegan_discriminator, timegan_generator


@dataclass(frozen=True)
class NetFamily:
    generator: Callable[[ModelConfig, int, tuple[int, ...]], nn.Module]
    """(model config, z_dim, sample shape) -> G."""
    discriminator: Callable[[ModelConfig, tuple[int, ...]], nn.Module]
    """(model config, D input shape, i.e. the sample shape with packing folded in) -> D."""


NETS: dict[str, NetFamily] = {}


def register_net(name: str, family: NetFamily) -> None:
    NETS[name] = family


def get_net(name: str) -> NetFamily:
    if name not in NETS:
        raise UsageError(f"unknown net '{name}'; choose one of {', '.join(NETS)}")
    return NETS[name]


def _flat(shape: tuple[int, ...]) -> int:
    size = 1
    for s in shape:
        size *= s
    return size


register_net(
    "mlp",
    NetFamily(
        generator=lambda m, z_dim, shape: MLPGenerator(z_dim, _flat(shape), m.g_width, m.g_depth, m.g_activation, m.g_norm),
        discriminator=lambda m, shape: MLPDiscriminator(
            _flat(shape), m.d_width, m.d_depth, m.d_activation, m.d_norm, m.spectral_norm, m.minibatch_stddev
        ),
    ),
)

register_net("dcgan", NetFamily(generator=dcgan_generator, discriminator=dcgan_discriminator))
register_net("pix2pix", NetFamily(generator=pix2pix_generator, discriminator=pix2pix_discriminator))
register_net("progressive", NetFamily(generator=progressive_generator, discriminator=progressive_discriminator))

# windows of series [L, C] (the series domain): recurrent and temporal-convolution G and D
for _cell in ("gru", "lstm"):
    _g, _d = recurrent_family(_cell)
    register_net(_cell, NetFamily(generator=_g, discriminator=_d))
register_net("tcn", NetFamily(generator=tcn_generator, discriminator=tcn_discriminator))
# TimeGAN's R(S(G(z))), the generator a model.family=timegan run saves (ganforge.families.timegan trains it)
register_net("timegan", NetFamily(generator=timegan_generator, discriminator=timegan_discriminator))

# tables: CTGAN's residual G (tanh scalars, Gumbel-softmax groups) and packed critic with dropout
register_net("tabular", NetFamily(generator=tabular_generator, discriminator=tabular_discriminator))
