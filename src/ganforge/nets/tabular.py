"""CTGAN's networks for encoded tables (Xu et al. 2019, §4.4, and the reference ``ctgan`` code).

G is a residual MLP (each block ``cat([relu(bn(fc(h))), h])``) from ``[z, cond]`` to the encoded
row, with tanh on the scalar spans and a Gumbel-softmax (temperature 0.2) on each one-hot group. D
is an MLP with LeakyReLU(0.2) and dropout 0.5 that judges ``pack`` rows at once (PacGAN), each
followed by its conditional vector.

Two choices differ from the reference code, both so that ``G(z)`` is a function of ``z`` alone:

- the Gumbel noise is drawn from ``z``, not from a global random stream: every softmax entry uses
  ``Phi(z . d_i)`` for a fixed unit direction ``d_i``, which is U(0, 1). The relaxation is
  ``softmax((logits + g) / tau)`` exactly as ``torch.nn.functional.gumbel_softmax`` computes it, but
  a sample is reproducible from its seed, truncation shrinks the noise as it does every other latent,
  and an interpolation between two latents changes categories a few times instead of at every step;
- the conditioned column is *set* to the condition in G's output (the rows D sees always satisfy
  their condition) instead of being pulled there by CTGAN's extra cross-entropy term; a fixed value
  is what ``sample(conditions=...)`` promises, and the training loop needs no extra loss.

Without a condition, ``G(z)`` draws one from ``z`` along a direction that G's input never sees
(``z`` is projected off it), with the data's own frequencies (``cond_probs``), as CTGAN does when
it samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.nets.layers import make_activation, make_norm_1d, maybe_spectral_norm
from ganforge.nets.registry import NetFamily, register_net

NOISE_SEED = 1234  # the Gumbel directions are fixed by this seed, not trained, not saved
GUMBEL_TAU = 0.2
D_DROPOUT = 0.5


class Residual(nn.Module):
    """``[N, in_dim]`` -> ``[N, in_dim + out_dim]``: a layer's output concatenated with its input."""

    def __init__(self, in_dim: int, out_dim: int, activation: str, norm: str) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)
        self.norm = make_norm_1d(norm, out_dim)
        self.act = make_activation(activation)

    def forward(self, h: Tensor) -> Tensor:
        return torch.cat([self.act(self.norm(self.fc(h))), h], dim=1)


def _cond_maps(cond_spans: list, out_dim: int) -> tuple[Tensor, Tensor]:
    """``(value, active)``, both ``[cond_dim, out_dim]``: row ``p`` of ``value`` is the one-hot that
    condition ``p`` puts in the output, row ``p`` of ``active`` marks the span of its column."""
    cond_dim = sum(w for _, w in cond_spans)
    value, active = torch.zeros(cond_dim, out_dim), torch.zeros(cond_dim, out_dim)
    p = 0
    for start, width in cond_spans:
        for k in range(width):
            value[p + k, start + k] = 1.0
            active[p + k, start:start + width] = 1.0
        p += width
    return value, active


class TabularGenerator(nn.Module):
    """G(z, c) -> x: ``z: [N, z_dim]``, ``c: [N]`` int64 condition ids or None (then drawn from z),
    ``x: [N, width]``, tanh scalars in [-1, 1] and softmax groups summing to 1, per ``spans``."""

    def __init__(self, z_dim: int, spans: list, cond_spans: list, cond_probs: list, width: int, depth: int,
                 activation: str, norm: str) -> None:
        super().__init__()
        self.spans = [(kind, int(w)) for kind, w in spans]
        out_dim = sum(w for _, w in self.spans)
        self.cond_dim = sum(w for _, w in cond_spans)
        dim = z_dim + self.cond_dim
        blocks = []
        for _ in range(depth):
            blocks.append(Residual(dim, width, activation, norm))
            dim += width
        self.body = nn.Sequential(*blocks)  # [N, z_dim + cond_dim + depth * width]
        self.head = nn.Linear(dim, out_dim)  # [N, out_dim], before the output activations
        # output activations without a Python loop over columns: tanh on the scalar positions, and
        # each one-hot group gathered into a row of a padded [groups, widest] block for one softmax
        tanh_pos, soft_pos, groups, start = [], [], [], 0
        for kind, w in self.spans:
            if kind == "tanh":
                tanh_pos += range(start, start + w)
            else:
                groups.append(range(len(soft_pos), len(soft_pos) + w))
                soft_pos += range(start, start + w)
            start += w
        widest = max((len(g) for g in groups), default=1)
        pad_index = torch.zeros(len(groups), widest, dtype=torch.long)
        pad_mask = torch.zeros(len(groups), widest, dtype=torch.bool)
        for i, group in enumerate(groups):
            pad_index[i, :len(group)] = torch.tensor(list(group))
            pad_mask[i, :len(group)] = True
        order = torch.tensor(tanh_pos + soft_pos, dtype=torch.long)
        for name, value in (("tanh_pos", torch.tensor(tanh_pos, dtype=torch.long)),
                            ("soft_pos", torch.tensor(soft_pos, dtype=torch.long)),
                            ("pad_index", pad_index), ("pad_mask", pad_mask), ("unsort", torch.argsort(order))):
            self.register_buffer(name, value, persistent=False)
        gen = torch.Generator().manual_seed(NOISE_SEED)
        cond_dir = F.normalize(torch.randn(z_dim, generator=gen), dim=0)
        noise_dirs = torch.randn(z_dim, len(soft_pos), generator=gen)
        noise_dirs -= cond_dir[:, None] * (cond_dir @ noise_dirs)[None]  # independent of the condition draw
        self.register_buffer("cond_dir", cond_dir, persistent=False)
        self.register_buffer("noise_dirs", F.normalize(noise_dirs, dim=0), persistent=False)
        if self.cond_dim:
            probs = torch.tensor(cond_probs, dtype=torch.float32)
            value, active = _cond_maps(cond_spans, out_dim)
            self.register_buffer("cond_cdf", torch.cumsum(probs / probs.sum(), 0), persistent=False)
            self.register_buffer("cond_value", value, persistent=False)
            self.register_buffer("cond_active", active, persistent=False)

    def forward(self, z: Tensor, c: Tensor | None = None) -> Tensor:
        along = z @ self.cond_dir  # [N], what the condition is drawn from when none is given
        z_in = z - along[:, None] * self.cond_dir[None]
        h = z_in
        if self.cond_dim:
            if c is None:
                u = torch.special.ndtr(along).contiguous()
                c = torch.searchsorted(self.cond_cdf, u, right=True).clamp_(max=self.cond_dim - 1)
            onehot = F.one_hot(c, self.cond_dim).to(z.dtype)
            h = torch.cat([z_in, onehot], dim=1)
        raw = self.head(self.body(h))
        u = torch.special.ndtr(z @ self.noise_dirs).clamp(1e-6, 1 - 1e-6)  # [N, n_soft], each U(0, 1)
        logits = (raw[:, self.soft_pos] - torch.log(-torch.log(u))) / GUMBEL_TAU  # + Gumbel noise
        padded = logits[:, self.pad_index].masked_fill(~self.pad_mask, float("-inf"))  # [N, groups, widest]
        soft = torch.softmax(padded, dim=2)[:, self.pad_mask]  # [N, n_soft], group after group
        x = torch.cat([torch.tanh(raw[:, self.tanh_pos]), soft], dim=1)[:, self.unsort]  # back in column order
        if self.cond_dim:
            x = torch.where(onehot @ self.cond_active > 0, onehot @ self.cond_value, x)
        return x


class TabularDiscriminator(nn.Module):
    """D(x, c) -> logits: ``x: [N/pack, pack * width]`` packed rows, ``c: [N]`` their condition ids,
    to ``[N/pack]``, higher = more real."""

    def __init__(self, in_dim: int, sample_width: int, cond_dim: int, width: int, depth: int, activation: str,
                 norm: str, spectral_norm: bool, dropout: float = D_DROPOUT) -> None:
        super().__init__()
        self.pack = in_dim // sample_width
        self.cond_dim = cond_dim
        dim = in_dim + self.pack * cond_dim
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [maybe_spectral_norm(nn.Linear(dim, width), spectral_norm), make_norm_1d(norm, width),
                       make_activation(activation), nn.Dropout(dropout)]
            dim = width
        self.features = nn.Sequential(*layers)
        self.head = maybe_spectral_norm(nn.Linear(dim, 1), spectral_norm)

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        if self.cond_dim:
            if c is None:
                raise ValueError("this discriminator was built for conditional rows; pass their condition ids")
            onehot = F.one_hot(c, self.cond_dim).to(x.dtype).reshape(x.shape[0], self.pack * self.cond_dim)
            x = torch.cat([x, onehot], dim=1)
        return self.head(self.features(x)).squeeze(1)


def _check(shape: tuple[int, ...], spans: list) -> int:
    if not spans:
        raise UsageError("the tabular net needs an encoded table (its column spans); use it with --domain table")
    width = sum(int(w) for _, w in spans)
    if len(shape) != 1:
        raise UsageError(f"the tabular net takes rows [N, width], got samples of shape {list(shape)}")
    return width


def tabular_generator(m: ModelConfig, z_dim: int, shape: tuple[int, ...], spans: list = (), cond_spans: list = (),
                      cond_probs: list = ()) -> TabularGenerator:
    width = _check(shape, list(spans))
    if width != shape[0]:
        raise UsageError(f"the table's spans add up to {width} values but its rows have {shape[0]}")
    return TabularGenerator(z_dim, list(spans), list(cond_spans), list(cond_probs), m.g_width, m.g_depth,
                            m.g_activation, m.g_norm)


def tabular_discriminator(m: ModelConfig, d_shape: tuple[int, ...], spans: list = (), cond_spans: list = (),
                          cond_probs: list = ()) -> TabularDiscriminator:
    width = _check(d_shape, list(spans))
    return TabularDiscriminator(d_shape[0], width, sum(int(w) for _, w in cond_spans), m.d_width, m.d_depth,
                                m.d_activation, m.d_norm, m.spectral_norm)


# tables: CTGAN's residual G (tanh scalars, Gumbel-softmax groups) and packed critic with dropout
register_net("tabular", NetFamily(generator=tabular_generator, discriminator=tabular_discriminator))
