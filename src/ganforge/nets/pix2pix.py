"""Image-conditional nets after pix2pix (Isola et al. 2017): a U-Net G and a PatchGAN D.

Both read a condition image ``c: [N, C_c, h, w]`` (a low-resolution copy for super-resolution,
or the source image of a pair) and produce or judge a target ``x: [N, C, H, W]`` in [-1, 1]. When
the condition is smaller than the target by an integer factor (``data.task=sr``: 14x14 -> 28x28),
both nets first upsample it to the target size by bicubic interpolation, as SRCNN-style
super-resolution does, so the rest of each net sees a pixel-aligned pair.

- G(z, c): a U-Net encoder-decoder with skip connections (the paper's generator, scaled to small
  images). The latent ``z`` (BicycleGAN uses 8 numbers) is broadcast to constant maps and
  concatenated with the condition ("add_to_input", Zhu et al. 2017), so G is stochastic without
  relying on dropout; pix2pix's decoder dropout is available as an option. Its depth follows the
  resolution, ``floor(log2(shorter side)) - 1`` levels, so the bottleneck is 2 to 4 pixels on its
  shorter side (8 -> 2 levels, 28 -> 3, 32 -> 4, 64 -> 5, 256 -> 7). Sides that ``2^depth`` does
  not divide are reflect-padded on the way in and cropped on the way out (28x28 runs at 32x32
  inside, with a 4x4 bottleneck).
- D(x, c): a PatchGAN on ``concat(upsampled c, x)``: strided 4x4 convolutions, then two 4x4
  stride-1 convolutions to a grid of patch logits. The paper's 70x70 PatchGAN has 3 strided
  convolutions; here their number follows the shorter side (1 up to 22 pixels, 2 at 23..45, 3 from
  46 on), for receptive fields of 16, 34 and 70 pixels: at 28x28 (5x5 patches of 34x34) every
  patch sees most of the image, so the locality of the PatchGAN only bites from about 64x64 on.
  D returns the **mean of the patch logits**, one logit per sample: the loop's losses, label tricks,
  gradient penalty and R1 are all per sample, so D's output must be ``[N]``. This differs from the
  paper, which averages the per-patch *losses*: for Wasserstein losses the two are identical; for
  BCE, hinge and least squares, averaging logits is a D that pools its patch evidence linearly
  before the loss (a global-average-pooled fully convolutional D). ``patch_logits`` gives the grid.

Initialisation, activations and normalisation placement follow the paper's code (N(0, 0.02)
weights, LeakyReLU(0.2) in the encoder and D, ReLU in the decoder, no norm on the first layer,
the bottleneck or the output).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.nets.dcgan import ConvNorm, Downsample, Upsample, down_block, up_block, dcgan_init_, make_norm_2d
from ganforge.nets.layers import MinibatchStdDev, maybe_spectral_norm
from ganforge.nets.registry import NetFamily, register_net

COND_RESAMPLE = "bicubic"
MAX_UNET_DEPTH = 8
MAX_WIDTH_FACTOR = 8  # channels stop doubling at 8x the base width (512 at width 64, as in the paper)
MIN_SIDE = 6


def _check_size(height: int, width: int) -> None:
    if min(height, width) < MIN_SIDE:
        raise UsageError(f"pix2pix needs images of at least {MIN_SIDE} pixels a side, got {height}x{width}; "
                         "resize them")


def upscale_factors(cond_shape: tuple[int, int, int], shape: tuple[int, int, int]) -> tuple[int, int]:
    """The integer factors ``(H / h, W / w)`` from the condition's size to the target's.

    Raises a UsageError when the condition is larger than the target or does not divide it.
    """
    (_, h, w), (_, height, width) = cond_shape, shape
    if h < 1 or w < 1 or height % h or width % w:
        raise UsageError(f"pix2pix upsamples the condition by an integer factor, but a {h}x{w} condition does not "
                         f"divide the {height}x{width} target; resize the source images (e.g. to "
                         f"{height}x{width} or {height // 2}x{width // 2})")
    return height // h, width // w


def upsample_condition(c: Tensor, size: tuple[int, int]) -> Tensor:
    """``c: [N, C_c, h, w]`` -> ``[N, C_c, *size]`` by bicubic interpolation (unchanged if already that size)."""
    if tuple(c.shape[-2:]) == tuple(size):
        return c
    return F.interpolate(c, size=size, mode=COND_RESAMPLE, align_corners=False)


def unet_depth(height: int, width: int) -> int:
    """U-Net levels, ``floor(log2(shorter side)) - 1`` (a bottleneck of 2 to 4 pixels), at most ``MAX_UNET_DEPTH``."""
    return max(1, min(MAX_UNET_DEPTH, int(math.log2(min(height, width))) - 1))


def patch_strides(height: int, width: int) -> int:
    """Strided convolutions of the PatchGAN: 1 up to 22 pixels, 2 at 23..45, 3 (the paper's 70x70) from 46."""
    return max(1, min(3, round(math.log2(min(height, width))) - 3))


def _widths(base_width: int, n: int) -> list[int]:
    return [base_width * min(2**i, MAX_WIDTH_FACTOR) for i in range(n)]


def _check_condition(who: str, c: Tensor, n: int, cond_shape: tuple[int, int, int]) -> None:
    if c.dim() != 4 or c.shape[0] != n or tuple(c.shape[1:]) != cond_shape or not c.dtype.is_floating_point:
        raise ValueError(f"{who} expects condition images of shape [{n}, {', '.join(map(str, cond_shape))}], "
                         f"got {c.dtype} {list(c.shape)}")


class UNetGenerator(nn.Module):
    """G(z, c) -> x: ``z: [N, z_dim]``, ``c: [N, cond_channels, h, w]`` to ``x: [N, channels, height, width]``
    in [-1, 1]; ``height / h`` and ``width / w`` must be integers (1 for same-size pairs).

    Example (super-resolution of gray digits): ``UNetGenerator(8, 1, 28, 28, (1, 14, 14))`` maps
    ``([N, 8], [N, 1, 14, 14])`` to ``[N, 1, 28, 28]``. ``self.down`` / ``self.up`` hold the
    encoder levels (outermost first) and the decoder levels (innermost first).
    """

    def __init__(self, z_dim: int, channels: int, height: int, width: int, cond_shape: tuple[int, int, int],
                 base_width: int = 64, norm: ConvNorm = "batch", upsample: Upsample = "transposed",
                 downsample: Downsample = "strided", dropout: float = 0.0,
                 init: Literal["dcgan", "default"] = "dcgan") -> None:
        super().__init__()
        _check_size(height, width)
        self.z_dim, self.out_shape, self.cond_shape = z_dim, (channels, height, width), tuple(cond_shape)
        upscale_factors(self.cond_shape, self.out_shape)
        self.depth = depth = unet_depth(height, width)
        step = 2**depth
        self.padded = (math.ceil(height / step) * step, math.ceil(width / step) * step)
        widths = _widths(base_width, depth)
        bias = norm == "none"  # a norm right after a conv cancels its bias
        self.down = nn.ModuleList()
        c_in = cond_shape[0] + z_dim
        for i in range(depth):  # level i: [N, c_in, Hp / 2^i, ...] -> [N, widths[i], Hp / 2^(i+1), ...]
            normed = 0 < i < depth - 1  # not the first layer, not the bottleneck
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(down_block(c_in, widths[i], downsample, bias=bias or not normed))
            if normed:
                layers.append(make_norm_2d(norm, widths[i]))
            self.down.append(nn.Sequential(*layers))
            c_in = widths[i]
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):  # level i: [N, (2x) widths[i], Hp / 2^(i+1)] -> [N, widths[i-1], Hp / 2^i]
            c_in = widths[i] if i == depth - 1 else 2 * widths[i]  # below the bottleneck: concat with the skip
            if i == 0:
                self.up.append(nn.Sequential(nn.ReLU(), up_block(c_in, channels, upsample, bias=True), nn.Tanh()))
                continue
            layers = [nn.ReLU(), up_block(c_in, widths[i - 1], upsample, bias), make_norm_2d(norm, widths[i - 1])]
            if dropout > 0 and i >= depth - 3:  # pix2pix: dropout in the three innermost decoder levels
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        if init == "dcgan":
            dcgan_init_(self)

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"UNetGenerator expects z of shape [N, {self.z_dim}], got {list(z.shape)}")
        _check_condition("UNetGenerator", c, z.shape[0], self.cond_shape)
        height, width = self.out_shape[1:]
        c = upsample_condition(c, (height, width))  # [N, C_c, H, W]
        z_maps = z[:, :, None, None].expand(-1, -1, height, width).to(c.dtype)  # [N, z_dim, H, W]
        h = torch.cat([c, z_maps], dim=1)  # [N, C_c + z_dim, H, W]
        top, left = (self.padded[0] - height) // 2, (self.padded[1] - width) // 2
        if self.padded != (height, width):
            pad = (left, self.padded[1] - width - left, top, self.padded[0] - height - top)
            h = F.pad(h, pad, mode="reflect")  # [N, C_c + z_dim, Hp, Wp]
        skips = []
        for down in self.down:
            h = down(h)
            skips.append(h)
        h = self.up[0](skips[-1])  # the bottleneck has no skip of its own
        for j in range(1, self.depth):
            h = self.up[j](torch.cat([skips[-1 - j], h], dim=1))
        return h[:, :, top:top + height, left:left + width]  # [N, C, H, W]


class PatchDiscriminator(nn.Module):
    """D(x, c) -> logits: ``x: [N, channels, height, width]``, ``c: [N, cond_channels, h, w]`` to ``[N]``,
    the mean of the patch logits (see the module docstring), higher = more real.

    ``patch_logits(x, c)`` returns the grid ``[N, 1, h', w']`` (5x5 at 28x28, 6x6 at 32x32).
    """

    def __init__(self, channels: int, height: int, width: int, cond_shape: tuple[int, int, int], base_width: int = 64,
                 norm: ConvNorm = "batch", downsample: Downsample = "strided", spectral_norm: bool = False,
                 minibatch_stddev: bool = False, init: Literal["dcgan", "default"] = "dcgan") -> None:
        super().__init__()
        _check_size(height, width)
        self.in_shape, self.cond_shape = (channels, height, width), tuple(cond_shape)
        upscale_factors(self.cond_shape, self.in_shape)
        n = patch_strides(height, width)
        widths = _widths(base_width, n + 1)
        bias = norm == "none"
        layers: list[nn.Module] = [
            down_block(channels + cond_shape[0], widths[0], downsample, bias=True),  # [N, widths[0], H/2, W/2]
            nn.LeakyReLU(0.2),  # no norm on the first layer
        ]
        for i in range(1, n):
            layers += [down_block(widths[i - 1], widths[i], downsample, bias),  # [N, widths[i], H/2^(i+1), W/2^(i+1)]
                       make_norm_2d(norm, widths[i]), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(widths[n - 1], widths[n], 4, 1, 1, bias=bias),  # [N, widths[n], H/2^n - 1, ...]
                   make_norm_2d(norm, widths[n]), nn.LeakyReLU(0.2)]
        if minibatch_stddev:
            layers.append(MinibatchStdDev())  # [N, widths[n] + 1, ...]
        layers.append(nn.Conv2d(widths[n] + int(minibatch_stddev), 1, 4, 1, 1))  # [N, 1, H/2^n - 2, W/2^n - 2]
        self.patches = nn.Sequential(*layers)
        if init == "dcgan":
            dcgan_init_(self)
        for conv in [m for m in self.modules() if isinstance(m, nn.Conv2d)]:
            maybe_spectral_norm(conv, spectral_norm)

    def patch_logits(self, x: Tensor, c: Tensor) -> Tensor:
        """One logit per overlapping patch of ``concat(upsampled c, x)``: ``[N, 1, h', w']``."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"PatchDiscriminator expects x of shape [N, {', '.join(map(str, self.in_shape))}], "
                             f"got {list(x.shape)}")
        _check_condition("PatchDiscriminator", c, x.shape[0], self.cond_shape)
        c = upsample_condition(c, self.in_shape[1:]).to(x.dtype)  # [N, C_c, H, W]
        return self.patches(torch.cat([c, x], dim=1))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        return self.patch_logits(x, c).mean(dim=(1, 2, 3))  # [N]


Shape3 = tuple[int, int, int]


def _shapes(shape: tuple[int, ...], cond_shape: list[int] | None, n_classes: int) -> tuple[Shape3, Shape3]:
    if n_classes > 0:
        raise UsageError("pix2pix conditions on images, not class labels (data.task=class); set model.net=dcgan")
    if cond_shape is None:
        raise UsageError("pix2pix needs a condition image for every sample: set data.task=sr (super-resolution) "
                         "or data.task=pairs (image-to-image translation)")
    if len(shape) != 3 or len(cond_shape) != 3:
        raise UsageError(f"pix2pix works on images [C, H, W], got samples {list(shape)} and conditions "
                         f"{list(cond_shape)}")
    return (shape[0], shape[1], shape[2]), (cond_shape[0], cond_shape[1], cond_shape[2])


def pix2pix_generator(model_cfg: ModelConfig, z_dim: int, shape: tuple[int, ...], *, n_classes: int = 0,
                      cond_shape: list[int] | None = None) -> UNetGenerator:
    """U-Net G for targets of ``shape = (C, H, W)`` given conditions of ``cond_shape = [C_c, h, w]``
    (the data set's ``net_args``), from ``model.g_width``, ``g_norm``, ``upsample`` and ``downsample``."""
    (channels, height, width), cond = _shapes(shape, cond_shape, n_classes)
    m = model_cfg
    return UNetGenerator(z_dim, channels, height, width, cond, m.g_width, m.g_norm, m.upsample, m.downsample)


def pix2pix_discriminator(model_cfg: ModelConfig, shape: tuple[int, ...], *, n_classes: int = 0,
                          cond_shape: list[int] | None = None) -> PatchDiscriminator:
    """PatchGAN D for targets of ``shape = (C, H, W)`` and conditions of ``cond_shape``, from
    ``model.d_width``, ``d_norm``, ``downsample``, ``spectral_norm`` and ``minibatch_stddev``."""
    (channels, height, width), cond = _shapes(shape, cond_shape, n_classes)
    m = model_cfg
    return PatchDiscriminator(channels, height, width, cond, m.d_width, m.d_norm, m.downsample, m.spectral_norm,
                              m.minibatch_stddev)


register_net("pix2pix", NetFamily(generator=pix2pix_generator, discriminator=pix2pix_discriminator))
