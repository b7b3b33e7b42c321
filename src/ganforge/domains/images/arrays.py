"""Pure array helpers of the images domain: image arrays of any layout, dtype and scale to uint8
pixels ``[N, C, H, W]`` (what the domain keeps: one byte a value), their encoding as float32 in
[-1, 1] (:func:`encode_pixels`, applied to one minibatch at a time) and back to uint8
``[N, H, W, C]``, and the grid that lays images out in one picture. No file reading; the other
modules of the package build on this one.

Pixels never pass through a float64 copy of a whole array: integers are checked and narrowed, and
float arrays are scaled and rounded to 8 bits :data:`CHUNK_VALUES` values at a time in their own
precision, so converting an array costs the uint8 result and a bounded temporary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Literal

import numpy as np
import torch

from ganforge.errors import UsageError

Resample = Literal["nearest", "bilinear", "bicubic", "lanczos", "box"]
Layout = Literal["auto", "nhwc", "nchw"]
CHUNK_VALUES = 1 << 22  # values converted at a time: a float64 temporary of one chunk is 32 MB


@dataclass
class ImageSet:
    """Images loaded and prepared for training, as uint8 pixels."""

    pixels: torch.Tensor
    """uint8 ``[N, C, H, W]``; from a folder, a view of the memory-mapped decode cache (``cache``).
    An encoded float tensor in [-1, 1] is accepted too, and rounded to 8 bits."""
    labels: np.ndarray | None = None
    """int64 ``[N]`` class indices, or None when the source has no labels."""
    class_names: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    """Unreadable files passed over with ``skip_bad=True``."""
    shuffle_seed: int | None = None
    """None: the rows are in the source's order. A seed: the rows are the source's images in the
    order ``np.random.default_rng(seed).permutation(N)`` (the decode cache's layout for training),
    so the fixed-seed hold-out split with that seed is two slices: views, not copies."""
    fingerprint: str | None = None
    """``sha256:...`` of the raw files, when the loader computed it while reading them (folders)."""
    release_pages: Callable[[], None] | None = None
    """For pixels memory-mapped from the decode cache: drops the mapping's resident pages (see
    ``cache.page_releaser``); None for pixels in memory. Such pixels are read-only in practice: a
    row written in place would read the file's bytes again after a release."""

    def __post_init__(self) -> None:
        if self.pixels.is_floating_point():
            self.pixels = encoded_to_pixels(self.pixels)

    @property
    def images(self) -> torch.Tensor:
        """The encoded images, float32 ``[N, C, H, W]`` in [-1, 1]: a new tensor at every call."""
        return encode_pixels(self.pixels)

    def __len__(self) -> int:
        return len(self.pixels)


def encode_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> float32 ``[N, C, H, W]`` in [-1, 1], ``2 * pixel / 255 - 1``.

    The images domain's ``Dataset.batch_transform``: the trainers apply it to each minibatch of
    uint8 rows. A correctly rounded division, an exact doubling and a rounded subtraction: the
    float32 operations the domain applied to whole arrays when it kept float images, so the values
    (and the runs) are the same as then, and deterministic.
    """
    return pixels.to(torch.float32).div_(255.0).mul_(2.0).sub_(1.0)


RELEASE_EVERY = 64
"""Minibatches between two drops of a memory-mapped data set's resident pages: at batch 64 of 64x64
colour images at most ~50 MB of the mapping stays resident, against all of it after an epoch."""


class PixelEncoder:
    """:func:`encode_pixels` as the ``Dataset.batch_transform`` of pixels memory-mapped from the decode
    cache, which also calls ``release`` (the mapping's ``cache.page_releaser``) every ``every`` calls,
    so that the pages training has read do not pile up in the process's resident memory. The values
    are those of :func:`encode_pixels`: the rows arrive already gathered, and a dropped page reads
    back the same bytes."""

    def __init__(self, release: Callable[[], None], every: int = RELEASE_EVERY) -> None:
        if every < 1:
            raise ValueError(f"PixelEncoder: every must be a positive number of calls, got {every}")
        self.release, self.every, self.calls = release, every, 0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls % self.every == 0:
            self.release()
        return encode_pixels(pixels)


def encoded_to_pixels(encoded: torch.Tensor) -> torch.Tensor:
    """float ``[N, C, H, W]`` in [-1, 1] -> uint8 ``[N, C, H, W]``, rounded; inverts :func:`encode_pixels`."""
    return ((encoded.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------
# Pixel preparation: any numeric array -> uint8 [N, C, H, W]


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


def _elementwise(array: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` applied to ``array`` :data:`CHUNK_VALUES` values at a time, into a new uint8 array of its shape."""
    flat = np.ascontiguousarray(array).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint8)
    for start in range(0, flat.size, CHUNK_VALUES):
        out[start:start + CHUNK_VALUES] = fn(flat[start:start + CHUNK_VALUES])
    return out.reshape(array.shape)


def _row_blocks(array: np.ndarray) -> Iterator[slice]:
    """Slices of the first axis of about :data:`CHUNK_VALUES` values each (one row at least)."""
    step = max(1, CHUNK_VALUES // max(1, array[0].size)) if len(array) else 1
    for start in range(0, len(array), step):
        yield slice(start, start + step)


def sixteen_to_eight(array: np.ndarray) -> np.ndarray:
    """16-bit values (clipped to 0..65535) -> uint8, ``round(v * 255 / 65535)`` in integers."""
    return _elementwise(array, lambda v: (np.clip(v, 0, 65535).astype(np.uint32) * 255 + 32767) // 65535)


def to_pixels(array: np.ndarray, where: str) -> np.ndarray:
    """Pixel values as uint8 0..255, in the array's shape (a uint8 array is returned as it is).

    Integers must lie in 0..255, except uint16 with values above 255, scaled from 0..65535; bool is
    0 or 255. Floats in [0, 1] are scaled by 255, floats in [0, 255] with some value above 1 are
    kept, and floats in [-1, 1] with some negative value are taken as scaled to [-1, 1]; they are
    then rounded, a chunk at a time in the array's own precision.
    """
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if array.dtype.kind not in "iuf":
        raise UsageError(f"{where}: expected numeric pixels, found dtype {array.dtype}; save numbers")
    if array.size == 0:
        raise UsageError(f"{where}: holds no images")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UsageError(f"{where}: {int((~np.isfinite(array)).sum())} pixel(s) are NaN or inf; fix the data")
    lo, hi = float(array.min()), float(array.max())
    if array.dtype == np.uint16 and hi > 255:
        return sixteen_to_eight(array)
    if array.dtype.kind in "iu":
        if lo < 0 or hi > 255:
            raise UsageError(f"{where}: integer pixels must lie in 0..255, found {lo:g}..{hi:g}; rescale them")
        return array.astype(np.uint8)
    if lo >= 0 and hi <= 1:
        offset, scale = 0.0, 255.0
    elif lo >= 0 and hi <= 255:
        offset, scale = 0.0, 1.0
    elif lo >= -1 and hi <= 1:
        offset, scale = 1.0, 127.5
    else:
        raise UsageError(f"{where}: float pixels must lie in [0, 1], [0, 255] or [-1, 1], found [{lo:g}, {hi:g}]; "
                         "rescale them")
    return _elementwise(array, lambda chunk: np.rint((chunk + offset) * scale))


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


def check_channels(channels: int | None) -> None:
    if channels not in (None, 1, 3):
        raise UsageError(f"channels={channels} is not supported; use 1 (gray), 3 (RGB) or leave it unset")


def convert_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    """uint8 ``[N, C, H, W]`` with C in 1, 3, 4 -> ``[N, channels, H, W]``; ``None`` keeps 1 or 3.

    Alpha is dropped (as Pillow's ``convert("RGB")`` does); colour to gray is Pillow's
    ``convert("L")`` to the bit (:func:`luma`), so folders and arrays give the same gray values.
    """
    check_channels(channels)
    if x.shape[1] == 4:
        x = x[:, :3]
    if x.shape[1] not in (1, 3):
        raise UsageError(f"images with {x.shape[1]} channels are not supported; use 1 (gray), 3 (RGB) or 4 (RGBA)")
    if channels is None or channels == x.shape[1]:
        return x
    if channels == 1:
        return luma(x)
    return np.repeat(x, 3, axis=1)


def luma(x: np.ndarray) -> np.ndarray:
    """uint8 RGB ``[N, 3, H, W]`` -> gray ``[N, 1, H, W]``: ITU-R 601-2 luma in Pillow's 16-bit
    fixed point, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``."""
    out = np.empty((len(x), 1, *x.shape[2:]), dtype=np.uint8)
    for rows in _row_blocks(x):
        r, g, b = (x[rows, c].astype(np.uint32) for c in range(3))
        out[rows, 0] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
    return out


def resize_images(x: np.ndarray, size: tuple[int, int] | None, resample: Resample = "bicubic") -> np.ndarray:
    """uint8 ``[N, C, H, W]`` (C = 1 or 3) -> uint8 ``[N, C, size[0], size[1]]`` with Pillow
    (antialiased; rounded once, to 8 bits)."""
    if size is None or tuple(x.shape[2:]) == size:
        return x
    from PIL import Image

    method = getattr(Image.Resampling, resample.upper())
    out = np.empty((x.shape[0], x.shape[1], *size), dtype=np.uint8)
    for i in range(x.shape[0]):
        hwc = x[i, 0] if x.shape[1] == 1 else x[i].transpose(1, 2, 0)  # Pillow's "L" or "RGB"
        resized = np.asarray(Image.fromarray(np.ascontiguousarray(hwc)).resize((size[1], size[0]), method))
        out[i] = resized[None] if resized.ndim == 2 else resized.transpose(2, 0, 1)
    return out


def prepare_pixels(array: np.ndarray, where: str, layout: Layout = "auto", channels: int | None = None,
                   size: tuple[int, int] | None = None, resample: Resample = "bicubic") -> torch.Tensor:
    """Any image array -> uint8 tensor ``[N, C, H, W]`` (the scales understood: :func:`to_pixels`)."""
    pixels = convert_channels(to_nchw(to_pixels(np.asarray(array), where), layout, where), channels)
    pixels = np.ascontiguousarray(resize_images(pixels, size, resample))
    return torch.from_numpy(pixels if pixels.flags.writeable else pixels.copy())


def prepare(array: np.ndarray, where: str, layout: Layout = "auto", channels: int | None = None,
            size: tuple[int, int] | None = None, resample: Resample = "bicubic") -> torch.Tensor:
    """Any image array -> float32 tensor ``[N, C, H, W]`` in [-1, 1]: :func:`prepare_pixels`, encoded."""
    return encode_pixels(prepare_pixels(array, where, layout, channels, size, resample))


def to_uint8_hwc(encoded: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1], or uint8 pixels ``[N, C, H, W]``, -> uint8 ``[N, H, W, C]``;
    inverts the 8-bit encoding exactly (uint8 pixels are only transposed, into a new array). Floats
    go through ``clip(rint((x + 1) * 127.5), 0, 255)`` in float64, a block of rows at a time."""
    x = encoded.detach().cpu().numpy() if isinstance(encoded, torch.Tensor) else np.asarray(encoded)
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    out = np.empty((x.shape[0], *x.shape[2:], x.shape[1]), dtype=np.uint8)
    for rows in _row_blocks(x):
        block = x[rows].astype(np.float64)
        block += 1.0
        block *= 127.5
        out[rows] = np.clip(np.rint(block, out=block), 0, 255, out=block).transpose(0, 2, 3, 1)
    return out


GRID_MIN_TILE = 64  # a default grid enlarges small images until each tile's shorter side is this many pixels ...
GRID_MAX_WIDTH = 1024  # ... unless that makes the grid wider than this
GRID_MAX_SIDE = 16384  # the largest grid side an explicit scale may ask for (16k x 16k RGB is 768 MB)


def grid_columns(n: int, columns: int | None = None) -> int:
    """``columns``, else the width of an about square grid of ``n`` images."""
    return columns or int(np.ceil(np.sqrt(n)))


def grid_scale(n: int, h: int, w: int, columns: int | None = None, pad: int = 2) -> int:
    """The default enlargement of a grid of ``n`` images ``h x w``: the smallest whole factor that
    makes a tile's shorter side at least ``GRID_MIN_TILE`` pixels, lowered (never below 1) so the
    grid stays at most ``GRID_MAX_WIDTH`` pixels wide. An 8x8 grid of 28x28 digits: 3 (690 px wide);
    of 8x8 digits: 8 (530 px); 1,000 28x28 digits (32 columns): 1; 64x64 images: 1."""
    tile_width = (GRID_MAX_WIDTH - pad) // grid_columns(n, columns) - pad
    return max(1, min(-(-GRID_MIN_TILE // min(h, w)), tile_width // w))


def enlarge(images: np.ndarray, scale: int) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` -> ``[N, H * scale, W * scale, C]``, every pixel repeated (nearest)."""
    return images.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else images


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2, pad_value: int = 128,
               scale: int = 1) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` -> one uint8 ``[rows * (H * scale + pad) + pad, columns * (W * scale + pad) + pad, C]``.

    Each image is enlarged ``scale`` times (nearest), the padding is not; the gray padding
    separates tiles on white and black backgrounds alike.
    """
    if scale < 1 or int(scale) != scale:
        raise UsageError(f"--scale must be a whole number >= 1 (1 = images at their own size), got {scale}")
    n, h, w, c = images.shape
    scale, columns = int(scale), grid_columns(n, columns)
    rows = int(np.ceil(n / columns))
    h, w = h * scale, w * scale
    height, width = rows * (h + pad) + pad, columns * (w + pad) + pad
    if scale > 1 and max(height, width) > GRID_MAX_SIDE:
        raise UsageError(f"--scale {scale} makes a {width}x{height} picture, more than {GRID_MAX_SIDE} pixels a side; "
                         "give a smaller --scale or fewer images")
    images = enlarge(images, scale)
    grid = np.full((height, width, c), pad_value, dtype=np.uint8)
    for i in range(n):
        top, left = pad + (i // columns) * (h + pad), pad + (i % columns) * (w + pad)
        grid[top:top + h, left:left + w] = images[i]
    return grid
