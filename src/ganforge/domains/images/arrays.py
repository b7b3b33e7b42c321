"""Pure array helpers of the images domain: image arrays of any layout and scale to the encoded
float32 ``[N, C, H, W]`` in [-1, 1] and back to uint8 ``[N, H, W, C]``, and the grid that lays
images out in one picture. No file reading; the other modules of the package build on this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ganforge.errors import UsageError

Resample = Literal["nearest", "bilinear", "bicubic", "lanczos", "box"]
Layout = Literal["auto", "nhwc", "nchw"]


@dataclass
class ImageSet:
    """Images loaded and prepared for training."""

    images: torch.Tensor
    """float32 ``[N, C, H, W]`` in [-1, 1]."""
    labels: np.ndarray | None = None
    """int64 ``[N]`` class indices, or None when the source has no labels."""
    class_names: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    """Unreadable files passed over with ``skip_bad=True``."""

    def __len__(self) -> int:
        return len(self.images)


# ---------------------------------------------------------------------------------------------
# Pixel preparation: any numeric array -> float32 [N, C, H, W] in [0, 1] -> [-1, 1]


def parse_size(size: int | tuple[int, int] | str | None) -> tuple[int, int] | None:
    """``32`` -> (32, 32); ``(28, 56)`` or ``"28x56"`` -> (28, 56); ``None``, ``0`` or ``""`` -> keep the size."""
    if size is None or size == 0 or size == "":
        return None
    try:
        if isinstance(size, str):
            parts = [int(p) for p in size.lower().split("x")]
        elif isinstance(size, int):
            parts = [size]
        else:
            parts = [int(p) for p in size]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise UsageError(f"image size {size!r} is not understood; give one number (32) or HxW (28x56)")
    return parts[0], parts[1]


def to_unit_range(array: np.ndarray, where: str) -> np.ndarray:
    """Pixel values as float32 in [0, 1].

    uint8 and integers in 0..255 are divided by 255, uint16 by 65535; floats in [0, 1] are kept,
    floats in [0, 255] with some value above 1 are divided by 255, and floats in [-1, 1] with some
    negative value are taken as already scaled to [-1, 1].
    """
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype.kind not in "iuf":
        raise UsageError(f"{where}: expected numeric pixels, found dtype {array.dtype}; save numbers")
    if array.size == 0:
        raise UsageError(f"{where}: holds no images")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UsageError(f"{where}: {int((~np.isfinite(array)).sum())} pixel(s) are NaN or inf; fix the data")
    lo, hi = float(array.min()), float(array.max())
    if array.dtype == np.uint16 and hi > 255:
        return np.divide(array, 65535, dtype=np.float32)
    if array.dtype.kind in "iu":
        if lo < 0 or hi > 255:
            raise UsageError(f"{where}: integer pixels must lie in 0..255, found {lo:g}..{hi:g}; rescale them")
        return np.divide(array, 255, dtype=np.float32)
    if lo >= 0 and hi <= 1:
        return array.astype(np.float32)
    if lo >= 0 and hi <= 255:
        return (array / 255.0).astype(np.float32)
    if lo >= -1 and hi <= 1:
        return ((array + 1.0) / 2.0).astype(np.float32)
    raise UsageError(f"{where}: float pixels must lie in [0, 1], [0, 255] or [-1, 1], found [{lo:g}, {hi:g}]; "
                     "rescale them")


def to_nchw(array: np.ndarray, layout: Layout, where: str) -> np.ndarray:
    """``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` -> ``[N, C, H, W]``.

    With ``layout="auto"`` the channel axis is the one of size 1, 3 or 4; when both candidate axes
    fit, channels-last wins, as NumPy and Pillow arrays are channels-last.
    """
    if array.ndim == 3:
        return array[:, None]
    if array.ndim != 4:
        raise UsageError(f"{where}: images must be an array [N, H, W], [N, H, W, C] or [N, C, H, W], "
                         f"got shape {list(array.shape)}")
    if layout == "auto":
        if array.shape[3] in (1, 3, 4):
            layout = "nhwc"
        elif array.shape[1] in (1, 3, 4):
            layout = "nchw"
        else:
            raise UsageError(f"{where}: cannot tell the channel axis of shape {list(array.shape)}; "
                             "save it as [N, H, W, C] with C = 1, 3 or 4")
    return array.transpose(0, 3, 1, 2) if layout == "nhwc" else array


def convert_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    """``[N, C, H, W]`` with C in 1, 3, 4 -> ``[N, channels, H, W]``; ``None`` keeps 1 or 3.

    Alpha is dropped (as Pillow's ``convert("RGB")`` does); colour to gray uses the ITU-R 601-2 luma
    weights of Pillow's ``convert("L")``, so folders and arrays give the same gray values.
    """
    if channels not in (None, 1, 3):
        raise UsageError(f"channels={channels} is not supported; use 1 (gray), 3 (RGB) or leave it unset")
    if x.shape[1] == 4:
        x = x[:, :3]
    if x.shape[1] not in (1, 3):
        raise UsageError(f"images with {x.shape[1]} channels are not supported; use 1 (gray), 3 (RGB) or 4 (RGBA)")
    if channels is None or channels == x.shape[1]:
        return x
    if channels == 1:
        luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.einsum("nchw,c->nhw", x, luma)[:, None]
    return np.repeat(x, 3, axis=1)


def resize_images(x: np.ndarray, size: tuple[int, int] | None, resample: Resample = "bicubic") -> np.ndarray:
    """``[N, C, H, W]`` float32 in [0, 1] -> ``[N, C, size[0], size[1]]`` with Pillow (antialiased)."""
    if size is None or tuple(x.shape[2:]) == size:
        return x
    from PIL import Image

    method = getattr(Image.Resampling, resample.upper())
    out = np.empty((x.shape[0], x.shape[1], *size), dtype=np.float32)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            # mode "F" resamples 32-bit floats, so nothing is quantised before the final rounding
            out[i, c] = np.asarray(Image.fromarray(np.ascontiguousarray(x[i, c], dtype=np.float32))
                                   .resize((size[1], size[0]), method))
    return np.clip(out, 0.0, 1.0, out=out)  # bicubic and lanczos overshoot at edges


def prepare(array: np.ndarray, where: str, layout: Layout = "auto", channels: int | None = None,
            size: tuple[int, int] | None = None, resample: Resample = "bicubic") -> torch.Tensor:
    """Any image array -> float32 tensor ``[N, C, H, W]`` in [-1, 1]."""
    unit = convert_channels(to_nchw(to_unit_range(np.asarray(array), where), layout, where), channels)
    unit = np.ascontiguousarray(resize_images(unit, size, resample), dtype=np.float32)
    # in place: ``unit`` is always a new array here, and at 128k 3x28x28 images (1.2 GB) every
    # temporary costs seconds; the same float32 operations as ``unit * 2.0 - 1.0``
    unit *= 2.0
    unit -= 1.0
    return torch.from_numpy(unit)


def to_uint8_hwc(encoded: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1] -> uint8 ``[N, H, W, C]``; inverts the 8-bit encoding exactly."""
    x = encoded.detach().cpu().numpy() if isinstance(encoded, torch.Tensor) else np.asarray(encoded)
    return np.clip(np.rint((x.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2, pad_value: int = 128) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` -> one uint8 ``[rows * (H + pad) + pad, columns * (W + pad) + pad, C]``.

    The gray padding separates tiles on white and black backgrounds alike.
    """
    n, h, w, c = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    for i in range(n):
        top, left = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        grid[top:top + h, left:left + w] = images[i]
    return grid
