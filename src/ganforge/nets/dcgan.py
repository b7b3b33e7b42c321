"""DCGAN generator and discriminator for images of any size ``base * 2^k`` (Radford et al. 2016).

One pair of classes serves every resolution: each side of the image is ``base * 2^k`` with
``base`` in 3..7 (28 = 7 * 2^2, 32 = 4 * 2^3, 64 = 4 * 2^4); the nets use ``k = min(k_H, k_W)``
doubling stages from a start grid ``(H / 2^k, W / 2^k)``, so non-square images (28x56, 32x64)
work too. Channel widths (``width`` = ``model.g_width`` / ``model.d_width``):

- G: start grid with ``width * 2^k`` channels, halved at every doubling, then the image channels.
  At 1x28x28 and width 64 this is the PyTorch DCGAN tutorial recipe adapted to MNIST:
  ``z 100 -> 256x7x7 -> 128x14x14 -> 1x28x28``. (At 3x64x64 the tutorial's own G,
  ``512x4x4 -> ... -> 64x32x32``, is ``g_width=32``.)
- D: the mirror of the tutorial's D, ``width * 2^(j-1)`` channels after the j-th halving, then one
  convolution over the whole start grid to a single logit: at 28x28, ``64x14x14 -> 128x7x7 -> 1``.

Following the tutorial (pytorch/examples dcgan): ReLU in G, LeakyReLU(0.2) in D, tanh on G's
output, no normalisation on D's first layer, weights drawn from N(0, 0.02). Unlike the tutorial,
D ends in a logit, not a sigmoid: the losses take logits.

Class-conditional variants (``n_classes > 0`` in the builders) keep these layers: G reads the
label's embedding next to z (Mirza & Osindero 2014, cGAN); D is a projection discriminator
(Miyato & Koyama 2018) or carries an auxiliary classifier head (Odena et al. 2017, ACGAN).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.nets.layers import MinibatchStdDev, check_labels, maybe_spectral_norm
from ganforge.nets.registry import NetFamily, register_net

ConvNorm = Literal["none", "batch", "instance", "layer"]
Upsample = Literal["transposed", "pixelshuffle"]
Downsample = Literal["strided", "avgpool"]
CondD = Literal["projection", "acgan"]

BASES = (3, 4, 5, 6, 7)


def side_factors(side: int) -> tuple[int, int]:
    """``side = base * 2^k`` with base in 3..7 and the largest such k; returns ``(base, k)``."""
    k = 0
    while side % 2 == 0 and side // 2 >= BASES[0]:
        side //= 2
        k += 1
    if side not in BASES:
        raise ValueError(side)
    return side, k


def plan_resolution(height: int, width: int) -> tuple[int, int, int]:
    """The start grid and stage count ``(h0, w0, k)`` for an ``height x width`` image.

    Raises a UsageError naming the nearest usable sizes when a side is not ``base * 2^k``.
    """
    stages = []
    for side in (height, width):
        try:
            stages.append(side_factors(side)[1])
        except ValueError:
            usable = sorted({b * 2**k for b in BASES for k in range(1, 9)}, key=lambda s: (abs(s - side), s))[:2]
            raise UsageError(
                f"dcgan cannot build {height}x{width} images: each side must be base*2^k with base 3..7 "
                f"(e.g. 28, 32, 64); resize the images to a usable side such as {usable[0]} or {usable[1]}"
            ) from None
    k = min(stages)
    if k < 1:
        raise UsageError(f"dcgan needs images of at least 6 pixels a side, got {height}x{width}; resize them")
    return height >> k, width >> k, k


def make_norm_2d(kind: ConvNorm, channels: int) -> nn.Module:
    """Normalisation for ``[N, channels, H, W]`` feature maps."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)  # one group = layer norm over (C, H, W), as in the WGAN-GP critic
    if kind == "none":
        return nn.Identity()
    raise UsageError(f"unknown normalisation '{kind}' for dcgan; choose none, batch, instance or layer")


def dcgan_init_(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def up_block(c_in: int, c_out: int, mode: Upsample, bias: bool) -> nn.Module:
    """``[N, c_in, h, w] -> [N, c_out, 2h, 2w]``."""
    if mode == "transposed":
        return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)
    if mode == "pixelshuffle":
        # Shi et al. 2016: a 3x3 conv to 4x the channels, rearranged into a 2x larger grid; no checkerboard
        return nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 3, 1, 1, bias=bias), nn.PixelShuffle(2))
    raise UsageError(f"unknown upsampling '{mode}' for dcgan; choose transposed or pixelshuffle")


def down_block(c_in: int, c_out: int, mode: Downsample, bias: bool) -> nn.Module:
    """``[N, c_in, h, w] -> [N, c_out, h/2, w/2]``."""
    if mode == "strided":
        return nn.Conv2d(c_in, c_out, 4, 2, 1, bias=bias)
    if mode == "avgpool":
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias), nn.AvgPool2d(2))
    raise UsageError(f"unknown downsampling '{mode}' for dcgan; choose strided or avgpool")


class DCGANGenerator(nn.Module):
    """G(z) -> x: ``z: [N, z_dim]`` to ``x: [N, channels, height, width]`` in [-1, 1].

    Example: ``DCGANGenerator(100, 1, 28, 28, base_width=64)`` maps ``[N, 100]`` to ``[N, 1, 28, 28]``.
    ``self.stages`` holds one ``nn.Sequential`` per resolution level, for inspection.
    """

    def __init__(self, z_dim: int, channels: int, height: int, width: int, base_width: int = 64,
                 norm: ConvNorm = "batch", upsample: Upsample = "transposed", max_channels: int = 1024,
                 init: Literal["dcgan", "default"] = "dcgan") -> None:
        super().__init__()
        h0, w0, k = plan_resolution(height, width)
        self.z_dim, self.out_shape = z_dim, (channels, height, width)
        widths = [min(base_width * 2 ** (k - i), max_channels) for i in range(k)]  # channels at each level
        bias = norm == "none"  # a norm right after a conv cancels its bias
        stages: list[nn.Module] = [nn.Sequential(
            nn.ConvTranspose2d(z_dim, widths[0], (h0, w0), 1, 0, bias=bias),  # [N, widths[0], h0, w0]
            make_norm_2d(norm, widths[0]),
            nn.ReLU(),
        )]
        for i in range(1, k):
            stages.append(nn.Sequential(
                up_block(widths[i - 1], widths[i], upsample, bias),  # [N, widths[i], h0 * 2^i, w0 * 2^i]
                make_norm_2d(norm, widths[i]),
                nn.ReLU(),
            ))
        stages.append(nn.Sequential(
            up_block(widths[-1], channels, upsample, bias=True),  # [N, channels, height, width]
            nn.Tanh(),
        ))
        self.stages = nn.Sequential(*stages)
        if init == "dcgan":
            dcgan_init_(self)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"DCGANGenerator expects z of shape [N, {self.z_dim}], got {list(z.shape)}")
        return self.stages(z[:, :, None, None])  # [N, z_dim, 1, 1] -> [N, C, H, W]


class DCGANDiscriminator(nn.Module):
    """D(x) -> logits: ``x: [N, channels, height, width]`` (in [-1, 1]) to ``[N]``, higher = more real.

    ``channels`` already includes packing (PacGAN stacks m images along the channel axis).
    ``self.stages`` holds one ``nn.Sequential`` per resolution level, the last one the logit head.
    """

    def __init__(self, channels: int, height: int, width: int, base_width: int = 64, norm: ConvNorm = "batch",
                 downsample: Downsample = "strided", spectral_norm: bool = False, minibatch_stddev: bool = False,
                 max_channels: int = 1024, init: Literal["dcgan", "default"] = "dcgan") -> None:
        super().__init__()
        h0, w0, k = plan_resolution(height, width)
        self.in_shape = (channels, height, width)
        widths = [min(base_width * 2**j, max_channels) for j in range(k)]  # channels after each halving
        stages: list[nn.Module] = [nn.Sequential(
            down_block(channels, widths[0], downsample, bias=True),  # [N, widths[0], H/2, W/2]
            nn.LeakyReLU(0.2),  # no norm on the first layer (DCGAN)
        )]
        bias = norm == "none"
        for j in range(1, k):
            stages.append(nn.Sequential(
                down_block(widths[j - 1], widths[j], downsample, bias),  # [N, widths[j], H/2^(j+1), W/2^(j+1)]
                make_norm_2d(norm, widths[j]),
                nn.LeakyReLU(0.2),
            ))
        head: list[nn.Module] = []
        if minibatch_stddev:
            head.append(MinibatchStdDev())  # [N, widths[-1] + 1, h0, w0]
        head += [
            nn.Conv2d(widths[-1] + int(minibatch_stddev), 1, (h0, w0), 1, 0),  # [N, 1, 1, 1]
            nn.Flatten(0),  # [N]
        ]
        stages.append(nn.Sequential(*head))
        self.stages = nn.Sequential(*stages)
        if init == "dcgan":
            dcgan_init_(self)
        # after the init, so the power iteration starts from the final weights; registers in place
        for conv in [m for m in self.modules() if isinstance(m, nn.Conv2d)]:
            maybe_spectral_norm(conv, spectral_norm)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"DCGANDiscriminator expects x of shape [N, {', '.join(map(str, self.in_shape))}], "
                             f"got {list(x.shape)}")
        return self.stages(x)


class ConditionalDCGANGenerator(DCGANGenerator):
    """G(z, y) -> x: the DCGAN generator fed z next to an embedding of the class label.

    ``z: [N, z_dim]`` and ``y: int64 [N]`` in ``[0, n_classes)`` to ``x: [N, channels, height, width]``
    in [-1, 1]. As in cGAN (Mirza & Osindero 2014) and its DCGAN-style descendants, the label's
    learned embedding (``embed_dim`` numbers, initialised N(0, 1) like z) is concatenated with z, so
    the first transposed convolution reads ``z_dim + embed_dim`` inputs; the rest is DCGANGenerator.
    ``embed_dim`` defaults to ``min(n_classes, 50)``: that convolution is linear in its input, so an
    embedding wider than the number of classes would add weights (50 dims cost 0.63M at 28x28) but
    no capacity.

    Example: ``ConditionalDCGANGenerator(100, 10, 1, 28, 28)(torch.randn(4, 100), torch.tensor([0, 1, 2, 7]))``.
    """

    def __init__(self, z_dim: int, n_classes: int, channels: int, height: int, width: int, base_width: int = 64,
                 norm: ConvNorm = "batch", upsample: Upsample = "transposed", max_channels: int = 1024,
                 embed_dim: int | None = None, init: Literal["dcgan", "default"] = "dcgan") -> None:
        if n_classes < 1:
            raise ValueError(f"a class-conditional generator needs n_classes >= 1, got {n_classes}")
        embed_dim = embed_dim or min(n_classes, 50)
        super().__init__(z_dim + embed_dim, channels, height, width, base_width, norm, upsample, max_channels, init)
        self.z_dim, self.n_classes, self.embed_dim = z_dim, n_classes, embed_dim
        self.embed = nn.Embedding(n_classes, embed_dim)  # [N] -> [N, embed_dim]

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"ConditionalDCGANGenerator expects z of shape [N, {self.z_dim}], got {list(z.shape)}")
        check_labels(y, z.shape[0], self.n_classes, "ConditionalDCGANGenerator")
        zy = torch.cat([z, self.embed(y).to(z.dtype)], dim=1)  # [N, z_dim + embed_dim]
        return self.stages(zy[:, :, None, None])  # [N, C, H, W]


class ConditionalDCGANDiscriminator(DCGANDiscriminator):
    """D(x, y): the DCGAN discriminator judging an image together with its class label.

    Let ``phi(x)`` be the flattened input of D's logit head, i.e. the features of the start grid
    (``[N, C * h0 * w0]``, with the minibatch-stddev channel when that is on), and
    ``psi(phi) = <w, phi> + b`` the head itself (the unconditional D's last convolution).

    - ``kind="projection"`` (Miyato & Koyama 2018, eq. 3): ``logit = psi(phi(x)) + <embed(y), phi(x)>``,
      one learned vector per class in the space of ``phi``; returns ``logits [N]``. With spectral norm
      the embedding is spectrally normalised too, as in the paper's code.
    - ``kind="acgan"`` (Odena et al. 2017): a second head on the same features (without the
      batch-dependent stddev channel) classifies x; the label does not enter the logits. Returns
      ``(logits [N], class_logits [N, n_classes])``; the loop adds the cross-entropy of the class logits.

    ``x: [N, channels, height, width]`` in [-1, 1], ``y: int64 [N]`` in ``[0, n_classes)``.
    """

    def __init__(self, n_classes: int, channels: int, height: int, width: int, base_width: int = 64,
                 norm: ConvNorm = "batch", downsample: Downsample = "strided", spectral_norm: bool = False,
                 minibatch_stddev: bool = False, kind: CondD = "projection", max_channels: int = 1024,
                 init: Literal["dcgan", "default"] = "dcgan") -> None:
        if n_classes < 1:
            raise ValueError(f"a class-conditional discriminator needs n_classes >= 1, got {n_classes}")
        if kind not in ("projection", "acgan"):
            raise UsageError(f"unknown model.cond_d '{kind}'; choose projection or acgan")
        super().__init__(channels, height, width, base_width, norm, downsample, spectral_norm, minibatch_stddev,
                         max_channels, init)
        self.n_classes, self.kind, self.minibatch_stddev = n_classes, kind, minibatch_stddev
        head_conv = self.stages[-1][-2]
        grid = head_conv.kernel_size  # (h0, w0)
        if kind == "projection":
            self.embed = nn.Embedding(n_classes, head_conv.in_channels * grid[0] * grid[1])  # [N] -> [N, dim phi]
            layer: nn.Module = self.embed
        else:
            self.class_head = nn.Conv2d(head_conv.in_channels - int(minibatch_stddev), n_classes, grid)  # [N, K, 1, 1]
            layer = self.class_head
        if init == "dcgan":
            nn.init.normal_(layer.weight, 0.0, 0.02)  # the scale of the logit head's weights
            if getattr(layer, "bias", None) is not None:
                nn.init.zeros_(layer.bias)
        maybe_spectral_norm(layer, spectral_norm)

    def forward(self, x: Tensor, y: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"ConditionalDCGANDiscriminator expects x of shape "
                             f"[N, {', '.join(map(str, self.in_shape))}], got {list(x.shape)}")
        check_labels(y, x.shape[0], self.n_classes, "ConditionalDCGANDiscriminator")
        features = self.stages[:-1](x)  # [N, C, h0, w0]
        head = self.stages[-1]  # (MinibatchStdDev), Conv2d, Flatten
        phi = head[0](features) if self.minibatch_stddev else features  # [N, C (+1), h0, w0]
        logits = head[-1](head[-2](phi))  # [N]
        if self.kind == "projection":
            return logits + (self.embed(y) * phi.flatten(1)).sum(dim=1)
        return logits, self.class_head(features).flatten(1)  # [N], [N, n_classes]


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise UsageError(f"dcgan works on images [C, H, W], got samples of shape {list(shape)}; use another model.net")
    return shape[0], shape[1], shape[2]


def _no_image_condition(cond_shape: list[int] | None) -> None:
    if cond_shape is not None:
        raise UsageError("dcgan conditions on class labels only, not on images (data.task=sr or pairs); "
                         "set model.net=pix2pix")


def dcgan_generator(model_cfg: ModelConfig, z_dim: int, shape: tuple[int, ...], *, n_classes: int = 0,
                    cond_shape: list[int] | None = None, upsample: Upsample | None = None,
                    max_channels: int = 1024) -> DCGANGenerator:
    """G for samples of ``shape = (C, H, W)`` from ``model.g_width``, ``g_norm`` and ``upsample``;
    class-conditional ``G(z, y)`` when ``n_classes > 0`` (the data set's ``net_args``)."""
    channels, height, width = _image_shape(shape)
    _no_image_condition(cond_shape)
    upsample = upsample or model_cfg.upsample
    if n_classes > 0:
        return ConditionalDCGANGenerator(z_dim, n_classes, channels, height, width, model_cfg.g_width, model_cfg.g_norm,
                                         upsample, max_channels)
    return DCGANGenerator(z_dim, channels, height, width, model_cfg.g_width, model_cfg.g_norm, upsample, max_channels)


def dcgan_discriminator(model_cfg: ModelConfig, shape: tuple[int, ...], *, n_classes: int = 0,
                        cond_shape: list[int] | None = None, downsample: Downsample | None = None,
                        max_channels: int = 1024) -> DCGANDiscriminator:
    """D for inputs of ``shape = (C * pack, H, W)`` from ``model.d_width``, ``d_norm``, ``downsample``,
    ``spectral_norm`` and ``minibatch_stddev``; class-conditional ``D(x, y)`` of kind ``model.cond_d``
    when ``n_classes > 0``."""
    channels, height, width = _image_shape(shape)
    _no_image_condition(cond_shape)
    m = model_cfg
    downsample = downsample or m.downsample
    if n_classes > 0:
        return ConditionalDCGANDiscriminator(n_classes, channels, height, width, m.d_width, m.d_norm, downsample,
                                             m.spectral_norm, m.minibatch_stddev, m.cond_d, max_channels)
    return DCGANDiscriminator(channels, height, width, m.d_width, m.d_norm, downsample, m.spectral_norm,
                              m.minibatch_stddev, max_channels)


register_net("dcgan", NetFamily(generator=dcgan_generator, discriminator=dcgan_discriminator))
