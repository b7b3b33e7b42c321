"""Small building blocks shared by the networks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ganforge.errors import UsageError

ACTIVATIONS = {
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": lambda: nn.ELU(),
    "gelu": lambda: nn.GELU(),
    "silu": lambda: nn.SiLU(),
    "tanh": lambda: nn.Tanh(),
}


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def make_norm_1d(kind: str, width: int) -> nn.Module:
    """Normalisation for a ``[N, width]`` feature vector: batch, layer or none."""
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "none":
        return nn.Identity()
    raise UsageError(f"normalisation '{kind}' does not apply to an MLP; choose none, batch or layer")


def maybe_spectral_norm(layer: nn.Module, enabled: bool) -> nn.Module:
    """Wrap ``layer`` in spectral normalisation (Miyato et al. 2018) when ``enabled``."""
    return nn.utils.parametrizations.spectral_norm(layer) if enabled else layer


class MinibatchStdDev(nn.Module):
    """Append the average per-feature standard deviation over groups of the batch as extra features.

    Karras et al. 2018 (ProGAN), §3: lets D see the diversity of a minibatch, against mode collapse.
    Input ``[N, C, ...]``; output ``[N, C + 1, ...]``. Groups of ``group_size`` samples (or the whole
    batch if it does not divide) share one statistic.
    """

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        group = self.group_size if n % self.group_size == 0 else n
        grouped = x.reshape(group, -1, *x.shape[1:])  # [G, N/G, C, ...]
        std = grouped.var(dim=0, unbiased=False).add(1e-8).sqrt()  # [N/G, C, ...]
        stat = std.flatten(1).mean(dim=1)  # [N/G]
        stat = stat.repeat(group)  # sample i belongs to group i % (N/G)
        extra = stat.view(n, 1, *([1] * (x.dim() - 2))).expand(n, 1, *x.shape[2:])
        return torch.cat([x, extra], dim=1)


def check_labels(y: Tensor, n: int, n_classes: int, who: str) -> None:
    """Raise a ValueError unless ``y`` is ``n`` integer class labels in ``[0, n_classes)``.

    The range is checked on CPU tensors only: on an accelerator the check would stall the
    device every forward pass (labels are validated where they enter: the data set and the CLI).
    """
    if y.dim() != 1 or y.shape[0] != n or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"{who} expects integer class labels of shape [{n}], got {y.dtype} {list(y.shape)}")
    if y.device.type == "cpu" and n and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{who} was given class labels in [{int(y.min())}, {int(y.max())}], "
                         f"but it knows {n_classes} classes, 0..{n_classes - 1}")
class PixelNorm(nn.Module):
    """Scale each pixel's feature vector to unit root-mean-square over the channels.

    Karras et al. 2018 (ProGAN), §4.2: used in G after every convolution instead of batch norm, so
    no signal magnitude escalates between G and D. Input ``[N, C, ...]``; output the same shape.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
