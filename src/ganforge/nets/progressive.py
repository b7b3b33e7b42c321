"""Progressive growing of G and D with fade-in (Karras et al. 2018, ProGAN, §2-4).

Training starts at the lowest resolution and adds one resolution level at a time; each new level
is faded in: for alpha going 0 -> 1, G's image is ``lerp(upsample(toRGB_{l-1}(h_{l-1})),
toRGB_l(block_l(h_{l-1})), alpha)`` and D's features entering the old blocks are
``lerp(fromRGB_{l-1}(avgpool(x_l)), block_l(fromRGB_l(x_l)), alpha)``, so at alpha = 0 both nets
compute exactly what the previous level computed.

Levels follow :func:`ganforge.nets.dcgan.plan_resolution`: an image of ``H x W`` with ``H = h0 * 2^k``
(``h0`` in 3..7) has the ``k + 1`` levels ``(h0 * 2^i, w0 * 2^i)``, ``i = 0..k``: 28x28 grows
7 -> 14 -> 28, 32x32 grows 4 -> 8 -> 16 -> 32, 64x64 from 4, 28x56 from 7x14.

How growing stays invisible to the rest of ganforge:

- **Every level's parameters exist from the start**, so checkpoints, optimisers and the EMA of G
  never change shape; the parameters of levels not yet in use simply receive no gradient (Adam
  skips them).
- **G always outputs the full target resolution** ``[N, C, H, W]``: the current level's image
  upsampled by nearest neighbour (piecewise constant on blocks of ``2^(k - level)`` pixels).
  **D always takes full-resolution input** and average-pools it (2x2 at a time) down to the current
  level. The loop, the losses and the metrics therefore need no change.
- **The schedule is a pure function of the training fraction** ``step / steps``, which the loop
  passes to ``set_progress`` before every step (and ``Run.generator()`` when loading a checkpoint):
  :func:`growth_schedule`. Nothing extra is saved, and a resumed run is at exactly the same level
  and alpha as the uninterrupted one. A freshly built net is at fraction 0.

The schedule (``model.pg_grow``, ``model.pg_fade``): the first ``pg_grow`` of training is split into
``k`` equal slots, one per new level; slot ``j`` first trains level ``j - 1`` alone for
``1 - pg_fade`` of the slot, then fades level ``j`` in over the remaining ``pg_fade``. The full
resolution then trains for the rest (with the defaults 0.5 / 0.5 at 28x28: 7x7 until 12.5%,
fade to 14x14 until 25%, 14x14 until 37.5%, fade to 28x28 until 50%, 28x28 to the end).

Architecture (ProGAN's, at widths from ``model.g_width`` / ``model.d_width`` doubling towards the
low levels, capped at ``max_channels``, see :func:`level_widths`): LeakyReLU(0.2) everywhere;
G: pixel norm on z, a transposed convolution from z to the start grid, then at every level
nearest-neighbour x2 upsampling and two 3x3 convolutions, each followed by pixel norm, and a 1x1
toRGB per level with tanh on the output;
D: a 1x1 fromRGB per level, two 3x3 convolutions and 2x2 average pooling per level, then
minibatch-stddev (always on, ProGAN §3), a 3x3 convolution, a convolution over the whole start grid
and a linear logit. Weights use He initialisation. Not done: equalised learning rate (ProGAN §4.1),
because the images recipe (Adam 2e-4, beta1 0.5) is shared by all image nets and equalised
weights would need their own learning rate. ``model.g_norm``, ``d_norm``, ``upsample``,
``downsample`` and ``minibatch_stddev`` do not apply to this family (G uses pixel norm, D none);
``model.spectral_norm`` does (on D's layers). At full resolution a step costs about 3x DCGAN's at
the same width; the low levels are cheaper, so over the default schedule about 2.5x.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.nets.dcgan import plan_resolution
from ganforge.nets.layers import MinibatchStdDev, PixelNorm, maybe_spectral_norm
from ganforge.nets.registry import NetFamily, register_net

SLOPE = 0.2


def growth_schedule(fraction: float, k: int, grow: float = 0.5, fade: float = 0.5) -> tuple[int, float]:
    """``(level, alpha)`` at ``fraction`` of training for nets with levels ``0..k``.

    ``level`` is the highest level in use and ``alpha`` in (0, 1] its fade-in weight (1 = stable).
    Non-decreasing in ``fraction`` (ordered by ``level - 1 + alpha``); ``(0, 1.0)`` at 0 when
    ``grow > 0``, ``(k, 1.0)`` from ``fraction = grow`` on.

    Example: ``growth_schedule(0.1875, 2) == (1, 0.5)`` (half-way through fading in 14x14 at 28x28).
    """
    fraction = min(max(fraction, 0.0), 1.0)
    if k == 0 or fraction >= grow:
        return k, 1.0
    slot = grow / k
    j = min(int(fraction // slot), k - 1)  # slot j grows level j + 1
    within = min(max((fraction - j * slot) / slot, 0.0), 1.0)
    if fade <= 0.0 or within <= 1.0 - fade:
        return j, 1.0  # (j + 1, alpha = 0) computes exactly what (j, 1) does: report the stable level
    return j + 1, min((within - (1.0 - fade)) / fade, 1.0)


def level_widths(base_width: int, k: int, max_channels: int) -> list[int]:
    """Channels at levels ``0..k``: half of DCGAN's at the same resolution (``width * 2^(k - i - 1)``,
    so ``width / 2`` at full resolution), because every level has two 3x3 convolutions where DCGAN
    has one 4x4 transposed (or strided) one; this keeps the full-resolution cost near DCGAN's."""
    return [max(min(base_width * 2 ** (k - i) // 2, max_channels), 1) for i in range(k + 1)]


def _pool_to(x: Tensor, times: int) -> Tensor:
    """2x2 average pooling ``times`` times; one step at a time, so pooling ``x`` once more gives
    exactly (bit for bit) what the previous level computed."""
    for _ in range(times):
        x = F.avg_pool2d(x, 2)
    return x


def _he_init_(module: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.2) on convolutions and linear layers, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=SLOPE, nonlinearity="leaky_relu")
        elif isinstance(m, nn.ConvTranspose2d):
            # weight [in, out, kh, kw] applied to a 1x1 input: each output pixel sums over `in` inputs
            nn.init.normal_(m.weight, 0.0, math.sqrt(2 / (1 + SLOPE**2)) / math.sqrt(m.in_channels))
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)


class _Schedule:
    """Holds the growth state; ``set_progress`` is the loop's hook for nets with a schedule."""

    k: int
    grow: float
    fade: float
    level: int
    alpha: float

    def set_progress(self, fraction: float) -> None:
        """Move to the level and fade-in weight of ``fraction`` (``step / steps``) of training."""
        self.level, self.alpha = growth_schedule(fraction, self.k, self.grow, self.fade)


class ProgressiveGenerator(_Schedule, nn.Module):
    """G(z) -> x: ``z: [N, z_dim]`` to ``x: [N, channels, height, width]`` in [-1, 1] at every level.

    Example: ``ProgressiveGenerator(100, 1, 28, 28)`` has levels 7x7, 14x14, 28x28; at fraction 0 it
    draws 7x7 images, each pixel repeated over a 4x4 block. ``self.blocks[i]`` makes level ``i``'s
    features, ``self.to_rgb[i]`` its image.
    """

    def __init__(self, z_dim: int, channels: int, height: int, width: int, base_width: int = 64,
                 max_channels: int = 512, grow: float = 0.5, fade: float = 0.5) -> None:
        super().__init__()
        h0, w0, k = plan_resolution(height, width)
        self.z_dim, self.out_shape, self.k, self.grow, self.fade = z_dim, (channels, height, width), k, grow, fade
        widths = level_widths(base_width, k, max_channels)
        blocks: list[nn.Module] = [nn.Sequential(
            PixelNorm(),
            nn.ConvTranspose2d(z_dim, widths[0], (h0, w0)),  # [N, widths[0], h0, w0]
            nn.LeakyReLU(SLOPE), PixelNorm(),
            nn.Conv2d(widths[0], widths[0], 3, 1, 1), nn.LeakyReLU(SLOPE), PixelNorm(),
        )]
        for i in range(1, k + 1):
            blocks.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),  # [N, widths[i-1], h0 * 2^i, w0 * 2^i]
                nn.Conv2d(widths[i - 1], widths[i], 3, 1, 1), nn.LeakyReLU(SLOPE), PixelNorm(),
                nn.Conv2d(widths[i], widths[i], 3, 1, 1), nn.LeakyReLU(SLOPE), PixelNorm(),  # [N, widths[i], ...]
            ))
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(nn.Conv2d(w, channels, 1) for w in widths)  # [N, channels, h0 * 2^i, w0 * 2^i]
        _he_init_(self)
        self.set_progress(0.0)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"ProgressiveGenerator expects z of shape [N, {self.z_dim}], got {list(z.shape)}")
        level, alpha = self.level, self.alpha
        h = self.blocks[0](z[:, :, None, None])  # [N, widths[0], h0, w0]
        for i in range(1, level):
            h = self.blocks[i](h)
        if level == 0:
            rgb = self.to_rgb[0](h)
        else:
            rgb = self.to_rgb[level](self.blocks[level](h))  # [N, C, h0 * 2^level, w0 * 2^level]
            if alpha < 1.0:
                old = F.interpolate(self.to_rgb[level - 1](h), scale_factor=2, mode="nearest")
                rgb = old.lerp(rgb, alpha)  # exactly `old` at alpha = 0
        image = rgb.tanh()
        if level < self.k:
            image = F.interpolate(image, scale_factor=2 ** (self.k - level), mode="nearest")  # [N, C, H, W]
        return image


class ProgressiveDiscriminator(_Schedule, nn.Module):
    """D(x) -> logits: ``x: [N, channels, height, width]`` (in [-1, 1]) to ``[N]``, higher = more real.

    ``channels`` includes packing. ``x`` is always full resolution and pooled to the current level.
    ``self.from_rgb[i]`` reads level ``i``'s image; ``self.blocks[i]`` (i >= 1) maps level ``i``'s
    features to level ``i - 1``; ``self.blocks[0]`` is the head (minibatch-stddev to a logit).
    """

    def __init__(self, channels: int, height: int, width: int, base_width: int = 64, max_channels: int = 512,
                 spectral_norm: bool = False, grow: float = 0.5, fade: float = 0.5) -> None:
        super().__init__()
        h0, w0, k = plan_resolution(height, width)
        self.in_shape, self.k, self.grow, self.fade = (channels, height, width), k, grow, fade
        widths = level_widths(base_width, k, max_channels)
        self.from_rgb = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, w, 1), nn.LeakyReLU(SLOPE)) for w in widths)  # [N, widths[i], ...]
        blocks: list[nn.Module] = [nn.Sequential(
            MinibatchStdDev(),  # [N, widths[0] + 1, h0, w0]
            nn.Conv2d(widths[0] + 1, widths[0], 3, 1, 1), nn.LeakyReLU(SLOPE),
            nn.Conv2d(widths[0], widths[0], (h0, w0)), nn.LeakyReLU(SLOPE),  # [N, widths[0], 1, 1]
            nn.Flatten(1), nn.Linear(widths[0], 1), nn.Flatten(0),  # [N]
        )]
        for i in range(1, k + 1):
            blocks.append(nn.Sequential(
                nn.Conv2d(widths[i], widths[i], 3, 1, 1), nn.LeakyReLU(SLOPE),
                nn.Conv2d(widths[i], widths[i - 1], 3, 1, 1), nn.LeakyReLU(SLOPE),
                nn.AvgPool2d(2),  # [N, widths[i-1], h0 * 2^(i-1), w0 * 2^(i-1)]
            ))
        self.blocks = nn.ModuleList(blocks)
        _he_init_(self)
        for layer in [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]:
            maybe_spectral_norm(layer, spectral_norm)  # after the init; registers in place
        self.set_progress(0.0)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"ProgressiveDiscriminator expects x of shape [N, {', '.join(map(str, self.in_shape))}], "
                             f"got {list(x.shape)}")
        level, alpha = self.level, self.alpha
        x = _pool_to(x, self.k - level)  # [N, C, h0 * 2^level, w0 * 2^level]
        h = self.from_rgb[level](x)
        if level > 0:
            h = self.blocks[level](h)  # [N, widths[level-1], h0 * 2^(level-1), ...]
            if alpha < 1.0:
                h = self.from_rgb[level - 1](_pool_to(x, 1)).lerp(h, alpha)  # exactly the old path at alpha = 0
            for i in range(level - 1, 0, -1):
                h = self.blocks[i](h)
        return self.blocks[0](h)


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise UsageError(f"progressive works on images [C, H, W], got samples of shape {list(shape)}; "
                         "use another model.net")
    channels, height, width = shape
    try:
        plan_resolution(height, width)
    except UsageError as exc:  # the shared planner names dcgan; the rule is the same for this family
        raise UsageError(str(exc).replace("dcgan", "progressive", 1)) from None
    return channels, height, width


def _schedule(model_cfg: ModelConfig, net_args: dict) -> tuple[float, float]:
    if net_args:
        raise UsageError(f"model.net=progressive is unconditional but the data set gives {', '.join(net_args)}; "
                         "set data.task=none or use model.net=dcgan")
    for key in ("pg_grow", "pg_fade"):
        value = getattr(model_cfg, key)
        if not 0.0 <= value <= 1.0:
            raise UsageError(f"model.{key}={value} must be in [0, 1]")
    return model_cfg.pg_grow, model_cfg.pg_fade


def progressive_generator(model_cfg: ModelConfig, z_dim: int, shape: tuple[int, ...], *, max_channels: int = 512,
                          **net_args) -> ProgressiveGenerator:
    """G for samples of ``shape = (C, H, W)`` from ``model.g_width``, ``pg_grow`` and ``pg_fade``."""
    grow, fade = _schedule(model_cfg, net_args)
    channels, height, width = _image_shape(shape)
    return ProgressiveGenerator(z_dim, channels, height, width, model_cfg.g_width, max_channels, grow, fade)


def progressive_discriminator(model_cfg: ModelConfig, shape: tuple[int, ...], *, max_channels: int = 512,
                              **net_args) -> ProgressiveDiscriminator:
    """D for inputs of ``shape = (C * pack, H, W)`` from ``model.d_width``, ``spectral_norm``,
    ``pg_grow`` and ``pg_fade``."""
    grow, fade = _schedule(model_cfg, net_args)
    channels, height, width = _image_shape(shape)
    return ProgressiveDiscriminator(channels, height, width, model_cfg.d_width, max_channels,
                                    model_cfg.spectral_norm, grow, fade)


register_net("progressive", NetFamily(generator=progressive_generator, discriminator=progressive_discriminator))
