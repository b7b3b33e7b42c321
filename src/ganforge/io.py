"""Files at the boundary with the operating system: atomic writes and what a failed one means,
and careful reading of the user's data files (NumPy arrays, CSV dialects).

Atomic writes: write a temporary file beside the target, fsync, then rename over it. A reader (or a
process killed half-way) sees either the old file or the complete new one. A write that fails
raises an OSError naming the file and its real cause (errno), which :func:`write_problem` turns
into one line with the fix.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ganforge.errors import UsageError


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """A file object whose content replaces ``path`` in one step once the block ends without error.

    On any error the old file is left as it was and the temporary one is removed; an OSError is
    raised again naming ``path`` and its real cause (see :func:`failed_write`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise failed_write(exc, path) from exc
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file what open() would
        os.replace(tmp, path)
    except BaseException as exc:
        # the cause is found while the temporary file still holds the space it took
        error = failed_write(exc, path) if isinstance(exc, OSError) else exc
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if error is not exc:
            raise error from exc
        raise


def failed_write(exc: OSError, path: str | Path) -> OSError:
    """``exc`` from writing ``path``, with the file named and the real errno: a write that gave
    none (numpy's ``tofile`` on a full disk says only "N requested and M written") is probed by
    writing a block into the same folder, which fails with the errno the disk gives now."""
    code, text = exc.errno, exc.strerror
    if code is None:
        code = _probe_errno(Path(path).parent)
        text = os.strerror(code) if code is not None else (str(exc) or type(exc).__name__)
    if code == exc.errno and exc.filename is not None:
        return exc
    return OSError(code, text, str(exc.filename or path))


def _probe_errno(folder: Path, size: int = 1 << 16) -> int | None:
    try:
        with tempfile.TemporaryFile(dir=folder) as fh:
            os.write(fh.fileno(), b"\0" * size)
            os.fsync(fh.fileno())
    except OSError as probe:
        return probe.errno
    return None


# what to do when a file cannot be written, by errno: {where} is the folder (or run) concerned
WRITE_FIXES = {
    errno.ENOSPC: "free space on the disk that holds {where}",
    errno.EDQUOT: "free space in your disk quota for {where}",
    errno.EACCES: "make {where} writable",
    errno.EPERM: "make {where} writable",
    errno.EROFS: "remount the filesystem of {where} read-write",
    errno.ENOTDIR: "a part of that path is a file, not a folder: give another path",
    errno.EEXIST: "a part of that path is a file, not a folder: give another path",
    errno.EISDIR: "that is a folder: give a file name",
    errno.ENAMETOOLONG: "give a shorter path",
}


def write_problem(exc: OSError, where: str | Path) -> tuple[str, str] | None:
    """``("cannot write FILE (cause)", fix)`` for a failed write whose cause has a fix (a full disk,
    no permission, a read-only filesystem, a path through a file), else None."""
    if exc.errno not in WRITE_FIXES:
        return None
    return f"cannot write {exc.filename or where} ({exc.strerror})", WRITE_FIXES[exc.errno].format(where=where)


@contextlib.contextmanager
def output_errors(out: str | Path) -> Iterator[None]:
    """Writing the output file ``out`` of a command: a failed write whose cause has a fix becomes one
    UsageError (the file, the cause, the fix); an existing ``out`` is untouched (writes are atomic)."""
    try:
        yield
    except OSError as exc:
        problem = write_problem(exc, Path(out).parent)
        if problem is None:
            raise
        raise UsageError(f"{problem[0]}; {problem[1]}, then run the command again") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> None:
    with atomic_write(path) as fh:
        json.dump(data, fh, indent=2, sort_keys=False, allow_nan=True)
        fh.write("\n")


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def package_file(distribution: str, relative: str, purpose: str, install: str) -> Path:
    """A file shipped inside an installed distribution (data, weights), located through its
    metadata without importing the package; a clear UsageError names what to install."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise UsageError(f"{purpose} needs the {distribution} package; install it with: {install}") from None
    path = Path(str(dist.locate_file(relative)))
    if not path.is_file():
        raise UsageError(f"{purpose}: {relative} is missing from {distribution} {dist.version}; "
                         f"reinstall it with: {install}")
    return path


def is_number(cell: str) -> bool:
    """Whether a text cell (of a CSV) parses as a float."""
    try:
        float(cell)
        return True
    except ValueError:
        return False


def available_memory() -> int | None:
    """Bytes of memory a new allocation can get now (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n_bytes: float) -> str:
    """A byte count for people: ``"1.5 GB"``, ``"12 MB"``, ``"100 bytes"``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g} {unit}"
    return f"{int(n_bytes)} bytes"


# --- NumPy files: the header is checked before anything is allocated ---------------------------

NPY_FIX = "give a .npy/.npz of numbers written by numpy.save / numpy.savez"


def _npy_header(fh: Any, size: int, where: str) -> tuple[tuple[int, ...], Any]:
    """``(shape, dtype)`` from an open ``.npy`` stream of ``size`` bytes, checked against that size;
    UsageError for an empty, truncated or damaged file, an object array or one that cannot fit."""
    import numpy as np
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(fh)
        read = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = read(fh)
    except (ValueError, EOFError, OSError, SyntaxError) as exc:
        empty = "the file is empty" if size == 0 else str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"cannot read {where} as a NumPy array ({empty}); {NPY_FIX}") from None
    if dtype.hasobject:
        raise UsageError(f"{where} holds Python objects (dtype {dtype}), which are never unpickled; {NPY_FIX} "
                         "(numbers only)")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = size - fh.tell()
    if need > have:
        raise UsageError(f"{where} is truncated or damaged: its header says shape {tuple(shape)} of {dtype} "
                         f"({human_bytes(need)}) but the file holds {human_bytes(have)}; {NPY_FIX}")
    free = available_memory()
    if free is not None and need > free:
        raise UsageError(f"{where} holds {human_bytes(need)} (shape {tuple(shape)}), more than the "
                         f"{human_bytes(free)} of free memory; give a smaller file")
    return tuple(shape), dtype


def check_array_file(path: str | Path) -> dict[str, tuple[tuple[int, ...], Any]]:
    """``{name: (shape, dtype)}`` of a ``.npy`` file (name ``""``) or of every array of a ``.npz``,
    from their headers alone, each checked (see :func:`_npy_header`); UsageError for a file that
    is not NumPy data. Nothing is unpickled and no array is read."""
    import zipfile
    import zlib

    path = Path(path)
    try:
        if path.suffix.lower() != ".npz":
            with open(path, "rb") as fh:
                return {"": _npy_header(fh, os.fstat(fh.fileno()).st_size, str(path))}
        with zipfile.ZipFile(path) as archive:
            found = {}
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                with archive.open(info) as fh:
                    found[name] = _npy_header(fh, info.file_size, f"{path}[{name}]")
            return found
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read {path} as NumPy data ({exc}); {NPY_FIX}") from None


def load_npy(path: str | Path) -> Any:
    """A ``.npy`` file as an array, its header checked first (:func:`check_array_file`)."""
    import numpy as np

    check_array_file(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(f"cannot read {path} as a NumPy array ({exc}); {NPY_FIX}") from None


def load_npz(path: str | Path) -> dict[str, Any]:
    """Every array of a ``.npz`` file, by name, their headers checked first (:func:`check_array_file`)."""
    import zipfile
    import zlib

    import numpy as np

    check_array_file(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, KeyError, zlib.error, zipfile.BadZipFile) as exc:
        raise UsageError(f"cannot read {path} as NumPy data ({exc}); {NPY_FIX}") from None


def check_scale(values: Any, where: str, limit: float = 1e30) -> None:
    """Refuse numbers so large that training's float arithmetic overflows (squares, float32) into inf
    and NaN, which would otherwise be reported later as a divergence."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    largest = float(np.nanmax(np.abs(values))) if values.size else 0.0
    if largest > limit:
        raise UsageError(f"{where} holds values as large as {largest:.3g}, beyond what training can represent "
                         f"(|x| <= {limit:g}); rescale them (e.g. divide by a power of ten)")


# --- CSV files ---------------------------------------------------------------------------------

CSV_DELIMITERS = ",;\t|"


def csv_delimiter(path: str | Path, sample_bytes: int = 1 << 16) -> str:
    """The field separator of a CSV file: ``,`` unless its first line has no comma and
    :class:`csv.Sniffer` finds another of ``; \\t |`` used consistently (European CSV exports)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            sample = fh.read(sample_bytes)
    except (OSError, UnicodeDecodeError):
        return ","  # the reader names what is wrong with the file
    first = sample.lstrip("\ufeff").split("\n", 1)[0]
    if "," in first:
        return ","
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","


def title_line(rows: list[list[str]]) -> str | None:
    """The text of a title line above a CSV's header, or None: the first row has one field, or at
    least two fewer than the rows after it, which agree with each other (one fewer is a header
    without a name for a first index column, as R's ``write.table`` writes)."""
    if len(rows) < 3:
        return None
    widths = [len(row) for row in rows[1:6]]
    if len(set(widths)) == 1 and widths[0] >= 2 and (len(rows[0]) == 1 or len(rows[0]) <= widths[0] - 2):
        return ",".join(rows[0]).strip()
    return None
