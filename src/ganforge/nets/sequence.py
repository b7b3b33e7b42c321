"""Generators and discriminators for windows of multivariate series ``x: [N, L, C]`` in [0, 1].

Two families, each a G and a D, registered as ``gru``, ``lstm`` (recurrent) and ``tcn``
(temporal convolution):

- **The latent.** The loop draws ``z: [N, z_dim]``; sequence generators read it as ``L`` steps of
  ``k = z_dim / L`` entries, ``[N, L, k]``: a latent vector per time step, TimeGAN's noise sequence
  (Yoon et al. 2019), so ``z_dim`` must be a multiple of the window length. The latent stays one
  flat Gaussian vector, so interpolation between two latents (lerp or slerp of the whole vector)
  and truncation (of each entry) work exactly as for points and images, with no hidden noise
  drawn inside G. A global latent *plus* per-step noise drawn inside G would have made samples a
  random function of ``z`` and broken both. The recurrent G also maps the whole latent to its
  initial state, so what is constant over a window (a sine's frequency and phase, a stock's
  volatility regime) is set from the start instead of being read off the first steps.
- **Recurrent** (GRU or LSTM, ``model.g_depth`` / ``model.d_depth`` layers of ``model.g_width`` /
  ``model.d_width`` units): G runs the RNN over the latent steps, a linear layer and a sigmoid make
  each output step. D runs a bidirectional RNN over the window and judges the concatenated final
  states of both directions with a linear layer.
- **Temporal convolution** (non-causal residual blocks of 3-tap dilated convolutions, dilation
  1, 2, 4, ... so depth 4 sees 31 steps): G projects the whole latent to a ``[width, L]`` map
  (every step sees every latent entry), then the residual blocks, a 1x1 convolution and a sigmoid.
  D applies the residual blocks to the window and a linear layer to the flattened feature map
  (so it knows where in the window a pattern is).

G ends in a sigmoid because the series domain scales every feature to [0, 1] (TimeGAN's
min-max scaling). D never sees a sigmoid: it returns logits ``[N]``, higher = more real.
PacGAN packing concatenates windows in time, so D's input length is ``pack * L``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.nets.layers import make_activation, maybe_spectral_norm
from ganforge.nets.registry import NetFamily, register_net

Cell = Literal["gru", "lstm"]


def latent_steps(z_dim: int, length: int) -> int:
    if z_dim % length:
        raise UsageError(f"sequence nets read the latent as {length} steps (the window length), but model.z_dim="
                         f"{z_dim} is not a multiple of {length}; set model.z_dim to e.g. {length * max(1, z_dim // length)}")
    return z_dim // length


def _rnn(cell: Cell, n_in: int, width: int, depth: int, bidirectional: bool = False) -> nn.Module:
    kind = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
    return kind(n_in, width, num_layers=depth, batch_first=True, bidirectional=bidirectional)


class RecurrentGenerator(nn.Module):
    """G(z) -> x: ``z: [N, L * k]`` read as ``[N, L, k]`` -> RNN -> linear -> sigmoid -> ``[N, L, C]`` in [0, 1]."""

    def __init__(self, cell: Cell, z_dim: int, length: int, channels: int, width: int, depth: int) -> None:
        super().__init__()
        self.cell, self.length, self.depth, self.width = cell, length, depth, width
        self.z_step = latent_steps(z_dim, length)
        self.rnn = _rnn(cell, self.z_step, width, depth)
        self.init_state = nn.Linear(z_dim, depth * width)  # the whole latent sets the initial state
        self.out = nn.Linear(width, channels)

    def forward(self, z: Tensor) -> Tensor:
        n = z.shape[0]
        h0 = torch.tanh(self.init_state(z)).view(n, self.depth, self.width).transpose(0, 1).contiguous()
        state = h0 if self.cell == "gru" else (h0, torch.zeros_like(h0))
        hidden, _ = self.rnn(z.view(n, self.length, self.z_step), state)  # [N, L, width]
        return torch.sigmoid(self.out(hidden))  # [N, L, C]


class RecurrentDiscriminator(nn.Module):
    """D(x) -> logits: ``x: [N, L, C]`` -> bidirectional RNN -> final states of both directions -> ``[N]``."""

    def __init__(self, cell: Cell, channels: int, width: int, depth: int, spectral_norm: bool) -> None:
        super().__init__()
        self.cell = cell
        self.rnn = _rnn(cell, channels, width, depth, bidirectional=True)
        self.head = maybe_spectral_norm(nn.Linear(2 * width, 1), spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        _, state = self.rnn(x)
        h_n = state if self.cell == "gru" else state[0]  # [2 * depth, N, width]
        last = torch.cat([h_n[-2], h_n[-1]], dim=1)  # forward and backward direction of the top layer
        return self.head(last).squeeze(1)


def _conv_norm(kind: str, width: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind in ("layer", "instance"):
        # layer: one group over all channels and steps; instance: per channel over the steps
        return nn.GroupNorm(1 if kind == "layer" else width, width)
    raise UsageError(f"normalisation '{kind}' does not apply to tcn; choose none, batch, layer or instance")


class ResidualBlock(nn.Module):
    """``[N, W, L] -> [N, W, L]``: x + conv(act(norm(x))), a non-causal 3-tap dilated convolution."""

    def __init__(self, width: int, dilation: int, activation: str, norm: str, spectral_norm: bool) -> None:
        super().__init__()
        conv = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.body = nn.Sequential(_conv_norm(norm, width), make_activation(activation),
                                  maybe_spectral_norm(conv, spectral_norm))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _blocks(width: int, depth: int, activation: str, norm: str, spectral_norm: bool = False) -> nn.Sequential:
    return nn.Sequential(*[ResidualBlock(width, 2**i, activation, norm, spectral_norm) for i in range(depth)])


class TCNGenerator(nn.Module):
    """G(z) -> x: ``z: [N, z_dim]`` -> linear to ``[N, W, L]`` -> residual dilated convs -> 1x1 conv -> sigmoid -> ``[N, L, C]``."""

    def __init__(self, z_dim: int, length: int, channels: int, width: int, depth: int, activation: str,
                 norm: str) -> None:
        super().__init__()
        latent_steps(z_dim, length)  # the same latent convention as the recurrent G
        self.length, self.width = length, width
        self.project = nn.Linear(z_dim, width * length)
        self.blocks = _blocks(width, depth, activation, norm)
        self.out = nn.Sequential(make_activation(activation), nn.Conv1d(width, channels, 1))

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).view(-1, self.width, self.length)  # [N, W, L]
        return torch.sigmoid(self.out(self.blocks(h))).transpose(1, 2)  # [N, L, C]


class TCNDiscriminator(nn.Module):
    """D(x) -> logits: ``x: [N, L, C]`` -> 1x1 conv -> residual dilated convs -> flatten -> linear -> ``[N]``."""

    def __init__(self, length: int, channels: int, width: int, depth: int, activation: str, norm: str,
                 spectral_norm: bool) -> None:
        super().__init__()
        self.inp = maybe_spectral_norm(nn.Conv1d(channels, width, 1), spectral_norm)
        self.blocks = _blocks(width, depth, activation, norm, spectral_norm)
        self.act = make_activation(activation)
        self.head = maybe_spectral_norm(nn.Linear(width * length, 1), spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.blocks(self.inp(x.transpose(1, 2))))  # [N, W, L]
        return self.head(h.flatten(1)).squeeze(1)


def window_shape(shape: tuple[int, ...], net: str) -> tuple[int, int]:
    if len(shape) != 2:
        raise UsageError(f"the {net} net takes windows [length, features], not samples of shape {list(shape)}; "
                         "use it with the series domain (--domain series)")
    return int(shape[0]), int(shape[1])


def recurrent_family(cell: Cell):
    """(generator builder, discriminator builder) for a GRU or LSTM."""

    def generator(m: ModelConfig, z_dim: int, shape: tuple[int, ...]) -> nn.Module:
        length, channels = window_shape(shape, cell)
        return RecurrentGenerator(cell, z_dim, length, channels, m.g_width, m.g_depth)

    def discriminator(m: ModelConfig, shape: tuple[int, ...]) -> nn.Module:
        _, channels = window_shape(shape, cell)
        return RecurrentDiscriminator(cell, channels, m.d_width, m.d_depth, m.spectral_norm)

    return generator, discriminator


def tcn_generator(m: ModelConfig, z_dim: int, shape: tuple[int, ...]) -> nn.Module:
    length, channels = window_shape(shape, "tcn")
    return TCNGenerator(z_dim, length, channels, m.g_width, m.g_depth, m.g_activation, m.g_norm)


def tcn_discriminator(m: ModelConfig, shape: tuple[int, ...]) -> nn.Module:
    length, channels = window_shape(shape, "tcn")
    return TCNDiscriminator(length, channels, m.d_width, m.d_depth, m.d_activation, m.d_norm, m.spectral_norm)


# windows of series [L, C] (the series domain): recurrent and temporal-convolution G and D
for _cell in ("gru", "lstm"):
    _g, _d = recurrent_family(_cell)
    register_net(_cell, NetFamily(generator=_g, discriminator=_d))
register_net("tcn", NetFamily(generator=tcn_generator, discriminator=tcn_discriminator))
