"""Decoding a folder of image files in parallel processes into an on-disk uint8 cache that later
loads memory-map.

Decoding a whole folder to float in RAM on every start cost a folder of 50,000 64x64 colour PNGs
about 3 minutes and 9.45 GB of RAM. Here each file is decoded once, to uint8 ``[C, H, W]``, by
worker processes (``concurrent.futures``, one a CPU; the files go out in chunks and the results
come back in the order they were handed out, so the rows never depend on which worker finished
first), with a progress bar on a terminal, and written into a ``.npy`` file under
``$GANFORGE_CACHE/images`` (default ``~/.cache/ganforge/images``: the folder of
:func:`ganforge.metrics.cache.cache_dir`). Later loads of the same files with the same settings map
that file (copy-on-write, :func:`map_npy`): nothing is decoded, and pages are read as training first
touches their rows. The kernel counts every page of a mapping that the process has touched in its
resident memory (RSS), so an epoch of training would hold the whole cache file resident (0.7 GB of a
50,000-image 64x64 colour folder); :func:`page_releaser` hands them back (``madvise(MADV_DONTNEED)``),
which the images domain does every few dozen minibatches: the pages stay in the kernel's page cache,
and a later minibatch maps them again without a disk read.

**The key** is a SHA-256 of the cache format, the decode settings (channels, size, resampling
filter, the pixel cap, and Pillow's version, whose resampling has changed between versions), the
row order, and the folder's *content*: every file's relative path and the SHA-256 of its bytes
(:func:`tree_digest`, which is also the run's data fingerprint). Content rather than sizes and
mtimes: the run's fingerprint needs every file's digest anyway, so the key costs no extra read (one
parallel pass over the files, cheap next to decoding them), and a file rewritten with other pixels
and the same size within the filesystem's mtime resolution, or copied with its old mtime, cannot
slip through. Any changed file changes the key, so the entry is decoded again.

**Writes are atomic**: the array is written to a temporary file beside its final name and renamed
when complete (:func:`ganforge.io.atomic_write`), after its description (``.json``: key, shape,
the file of every row, the files skipped and why). A load uses an entry only when both exist, the
key inside matches and the array has the described shape, so a write killed half-way is never used.
A new entry replaces the older entries of the same folder and settings (their files changed), and
temporary files of killed writes over an hour old. ``GANFORGE_CACHE=off``, or a cache folder that
cannot be written (with a warning), decodes into memory instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import multiprocessing
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from ganforge.errors import UsageError
from ganforge.io import atomic_write, file_sha256, write_json
from ganforge.metrics.cache import cache_dir

CACHE_FORMAT = 1  # bump when the stored array or its description change meaning
PARALLEL_MIN = 256  # fewer files are read in this process: starting workers would cost more than it saves
MAX_WORKERS = 8
CHUNK_FILES = 256  # files a worker takes at a time
PROGRESS_MIN = 2000  # fewer files load in about a second: no bar
STALE_TMP_SECONDS = 3600  # a temporary file this old is a killed write, not one in progress

Shape = tuple[int, int, int]


class ImageReader(Protocol):
    """How one image file becomes pixels (``files.FileReader``); picklable: it runs in the workers."""

    def settings(self) -> dict[str, Any]:
        """What the pixels depend on besides the file's bytes (part of the cache key)."""

    def shape(self, path: str) -> Shape:
        """``(C, H, W)`` the file decodes to, from its header; a UsageError naming the file if it cannot be used."""

    def pixels(self, path: str, channels: int) -> np.ndarray:
        """The file as uint8 ``[channels, H, W]``; a UsageError naming the file if it cannot be read."""


@dataclass
class DecodedFolder:
    """The pixels of a folder's files, and which file each row holds."""

    pixels: np.ndarray
    """uint8 ``[M, C, H, W]``, memory-mapped from the cache, or in memory without a cache. The map
    is copy-on-write, but treat it as read-only: :func:`page_releaser` gives its resident pages back,
    and a page written in memory would read the file's bytes again afterwards."""
    rows: np.ndarray
    """int64 ``[M]``: the index, in the list of files, of the file each row holds."""
    skipped: list[tuple[int, str]]
    """The files that could not be used: (index, the one-line reason)."""
    fingerprint: str
    """Hex SHA-256 of the files' relative paths and contents (:func:`tree_digest`)."""
    from_cache: bool = False


# ---------------------------------------------------------------------------------------------
# Work in parallel processes, in a fixed order


def worker_count(n_items: int) -> int:
    """Worker processes for ``n_items`` files: one a usable CPU (at most MAX_WORKERS); 0 (work in
    this process) below PARALLEL_MIN files or on one CPU."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, MAX_WORKERS) if n_items >= PARALLEL_MIN and cpus > 1 else 0


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    if workers == 0:
        yield None
        return
    # fork on Linux: workers start at once, without importing ganforge (and torch) again; they use
    # only Pillow and NumPy. Elsewhere the platform's default (spawn).
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    pool = ProcessPoolExecutor(workers, mp_context=context)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def map_chunks(fn: Callable[[list], list], items: Sequence, desc: str) -> Iterator[list]:
    """``fn(chunk)`` for consecutive chunks of ``items``, yielded in order: in worker processes (see
    :func:`worker_count`), with a progress bar on a terminal for PROGRESS_MIN items or more."""
    from tqdm import tqdm

    chunks = [list(items[i:i + CHUNK_FILES]) for i in range(0, len(items), CHUNK_FILES)]
    bar = tqdm(total=len(items), desc=desc, unit="img", leave=False, dynamic_ncols=True, mininterval=1.0,
               disable=None if len(items) >= PROGRESS_MIN else True)
    with bar, _pool(worker_count(len(items))) as pool:
        for chunk, result in zip(chunks, map(fn, chunks) if pool is None else pool.map(fn, chunks)):
            bar.update(len(chunk))
            yield result


def _each(fn: Callable[[Any], Any], items: list) -> list:
    """``fn(item)`` for each item; an item whose call raised a UsageError gets its one line instead."""
    out = []
    for item in items:
        try:
            out.append(fn(item))
        except UsageError as exc:
            out.append(str(exc))
    return out


def _digest(path: str) -> str:
    """The file's hex SHA-256, or "" when it cannot be read (reading its header then names the problem)."""
    try:
        return file_sha256(path)
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# Keys and entries


def tree_digest(root: Path, files: Sequence[Path], digests: Sequence[str]) -> str:
    """Hex SHA-256 over every file's path relative to ``root`` and its content digest (hex), in order."""
    digest = hashlib.sha256()
    for path, file_digest in zip(files, digests):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(bytes.fromhex(file_digest))
    return digest.hexdigest()


def cache_key(fingerprint: str, settings: dict[str, Any], shuffle_seed: int | None) -> str:
    """The key of the pixels of files with ``fingerprint`` (:func:`tree_digest`) decoded with ``settings``."""
    from PIL import __version__ as pillow

    described = {"format": CACHE_FORMAT, "files": fingerprint, "settings": settings, "shuffle_seed": shuffle_seed,
                 "pillow": pillow}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def entry_path(root: Path, settings: dict[str, Any], shuffle_seed: int | None, key: str) -> Path | None:
    """``images/<folder and settings>-<key>.npy`` in the cache folder; None when the cache is off."""
    top = cache_dir()
    if top is None:
        return None
    folder = hashlib.sha256(json.dumps([str(root.resolve()), settings, shuffle_seed], sort_keys=True).encode())
    return top / "images" / f"{folder.hexdigest()[:16]}-{key[:32]}.npy"


def map_npy(path: Path) -> np.ndarray:
    """The array of the ``.npy`` file at ``path`` (format 1.0, as the cache writes), memory-mapped
    copy-on-write like ``np.load(mmap_mode="c")``, but with a ``mmap.mmap`` of our own as its
    buffer (``array.base``), so that :func:`page_releaser` can reach it. ValueError or TypeError for a
    file that is not a whole ``.npy`` array."""
    with open(path, "rb") as fh:
        if np.lib.format.read_magic(fh) != (1, 0):
            raise ValueError(f"{path}: not a version 1.0 .npy file")
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fh)
        offset = fh.tell()
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    return np.ndarray(shape, dtype, buffer=mapped, offset=offset, order="F" if fortran_order else "C")


def page_releaser(array: np.ndarray) -> Callable[[], None] | None:
    """For an array memory-mapped by :func:`map_npy` (or a view of one): a function that drops the
    mapping's resident pages from this process (``madvise(MADV_DONTNEED)``); None for any other
    array, or where the platform has no ``madvise``.

    The file's pages stay in the kernel's page cache, so the next read of a row maps it again
    without touching the disk (a minor fault). The mapping is copy-on-write and the cache's rows are
    never written: were one written, dropping its page would bring back the file's bytes.
    """
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") and hasattr(base, "madvise"):
        return partial(base.madvise, mmap.MADV_DONTNEED)
    return None


def load_entry(path: Path, key: str) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]] | None:
    """(pixels memory-mapped, rows, skipped) of the entry at ``path`` if it is complete and for ``key``, else None."""
    description = path.with_suffix(".json")
    if not (path.is_file() and description.is_file()):
        return None
    try:
        meta = json.loads(description.read_text(encoding="utf-8"))
        if meta.get("key") != key or meta.get("format") != CACHE_FORMAT:
            return None
        pixels = map_npy(path)
        rows = np.asarray(meta["rows"], dtype=np.int64)
        skipped = [(int(i), str(reason)) for i, reason in meta["skipped"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pixels.dtype != np.uint8 or list(pixels.shape) != meta["shape"] or len(rows) != len(pixels):
        return None
    return pixels, rows, skipped


def _remove_older_entries(entry: Path) -> None:
    """Drop the other entries of the same folder and settings, and temporary files of killed writes."""
    prefix, now = entry.name.split("-")[0], time.time()
    for other in [*entry.parent.glob(f"{prefix}-*"), *entry.parent.glob(f".{prefix}-*.tmp")]:
        with contextlib.suppress(OSError):
            if other.suffix == ".tmp" and now - other.stat().st_mtime > STALE_TMP_SECONDS:
                other.unlink()
            elif other.suffix != ".tmp" and other.stem != entry.stem:
                other.unlink()


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_folder(root: Path, files: Sequence[Path], reader: ImageReader, skip_bad: bool = False,
                  shuffle_seed: int | None = None) -> DecodedFolder:
    """The pixels of ``files`` (all under ``root``): from the cache when it holds them, else decoded
    in parallel (and cached). Rows hold the files that could be used, in their order, or with
    ``shuffle_seed`` in the order ``np.random.default_rng(shuffle_seed).permutation(M)`` of them.

    A file that cannot be used raises its one-line UsageError (the first in file order), or with
    ``skip_bad`` is passed over and listed in ``skipped``; files of different sizes raise too.
    """
    paths = [str(f) for f in files]
    digests = [d for chunk in map_chunks(partial(_each, _digest), paths, "reading images") for d in chunk]
    fingerprint = tree_digest(root, files, digests)
    settings = reader.settings()
    key = cache_key(fingerprint, settings, shuffle_seed)
    entry = entry_path(root, settings, shuffle_seed, key)
    cached = load_entry(entry, key) if entry is not None else None
    if cached is not None:
        folder = DecodedFolder(*cached, fingerprint, from_cache=True)
    else:
        folder = _decode(root, paths, reader, skip_bad, shuffle_seed, entry, key, fingerprint)
    if folder.skipped and not skip_bad:
        raise UsageError(folder.skipped[0][1])
    return folder


def common_shape(root: Path, shapes: Sequence[Shape]) -> Shape:
    """The folder's ``(C, H, W)``: the most channels of its files (gray files are then repeated to
    RGB), and the one size they must all have."""
    sizes = sorted({tuple(s[1:]) for s in shapes})
    if len(sizes) > 1:
        (h1, w1), (h2, w2) = sizes[:2]
        raise UsageError(f"images in {root} have different sizes ({h1}x{w1}, {h2}x{w2}, ...); "
                         "give a size to resize them all, e.g. 32 or 28x28")
    return max(s[0] for s in shapes), *sizes[0]


def _decode(root: Path, paths: list[str], reader: ImageReader, skip_bad: bool, shuffle_seed: int | None,
            entry: Path | None, key: str, fingerprint: str) -> DecodedFolder:
    """Decode the files whose headers can be read, into the cache entry (or memory)."""
    shapes = [s for chunk in map_chunks(partial(_each, reader.shape), paths, "checking images") for s in chunk]
    bad = {i: s for i, s in enumerate(shapes) if isinstance(s, str)}
    while True:
        if bad and not skip_bad:
            raise UsageError(bad[min(bad)])
        good = np.array([i for i in range(len(paths)) if i not in bad], dtype=np.int64)
        if len(good) == 0:
            raise UsageError(f"none of the {len(paths)} image files in {root} could be read; check the files")
        shape = common_shape(root, [shapes[i] for i in good])
        rows = good if shuffle_seed is None else good[np.random.default_rng(shuffle_seed).permutation(len(good))]
        meta = {"format": CACHE_FORMAT, "key": key, "shape": [len(rows), *shape], "rows": rows.tolist(),
                "skipped": sorted(bad.items()), "folder": str(root)}
        pixels, failed = _store(entry, meta, paths, reader, rows, shape)
        if not failed:
            return DecodedFolder(pixels, rows, sorted(bad.items()), fingerprint)
        bad.update(failed)  # readable headers, broken data (a truncated file): decoded again without them


def _decode_rows(put: Callable[[np.ndarray], Any], paths: list[str], reader: ImageReader, rows: np.ndarray,
                 shape: Shape) -> dict[int, str]:
    """Decode ``paths[rows[r]]`` for r = 0, 1, ... in turn and hand each to ``put``; stops handing
    them on at the first failure and returns the files that failed, with their reasons."""
    failed: dict[int, str] = {}
    decode = partial(_each, partial(reader.pixels, channels=shape[0]))
    done = 0
    for chunk in map_chunks(decode, [paths[i] for i in rows], "decoding images"):
        for out in chunk:
            file_index = int(rows[done])
            done += 1
            if isinstance(out, np.ndarray) and out.shape != shape:
                out = f"image {paths[file_index]} changed while it was read ({list(out.shape)}); load it again"
            if isinstance(out, str):
                failed[file_index] = out
            elif not failed:
                put(out)
    return failed


class _Incomplete(Exception):
    """A file failed to decode: the entry being written is dropped."""


def _store(entry: Path | None, meta: dict[str, Any], paths: list[str], reader: ImageReader, rows: np.ndarray,
           shape: Shape) -> tuple[np.ndarray | None, dict[int, str]]:
    """Decode the rows into the cache entry, or into memory without a cache; (pixels, failures)."""
    if entry is not None:
        failed: dict[int, str] = {}
        try:
            with atomic_write(entry, "wb") as fh:
                header = {"descr": "|u1", "fortran_order": False, "shape": tuple(meta["shape"])}
                np.lib.format.write_array_header_1_0(fh, header)
                failed = _decode_rows(lambda px: fh.write(np.ascontiguousarray(px).data), paths, reader, rows, shape)
                if failed:
                    raise _Incomplete
                write_json(entry.with_suffix(".json"), meta)  # the description first, then the array's rename
        except _Incomplete:
            return None, failed
        except OSError as exc:
            warnings.warn(f"cannot write the image cache {entry} ({exc}); decoding into memory instead. Set "
                          "GANFORGE_CACHE to a writable folder for fast starts", stacklevel=2)
        else:
            _remove_older_entries(entry)
            return map_npy(entry), failed
    pixels = np.empty(tuple(meta["shape"]), dtype=np.uint8)
    written = iter(range(len(rows)))

    def put(px: np.ndarray) -> None:
        pixels[next(written)] = px

    return pixels, _decode_rows(put, paths, reader, rows, shape)
