"""The run directory on disk: its files, its lock, its one reader and writer of ``metrics.jsonl``.

A run directory holds::

    config.json        the resolved configuration (every default filled in)
    data.json          what is needed to decode samples without the data (scaler, fingerprint)
    metrics.jsonl      one JSON record per log interval, evaluation and warning
    checkpoints/       step-XXXXXXXX/{weights.safetensors,state.json}, newest two kept
    samples.npy/.png   samples from the final generator and their plot
    summary.json       the final one-screen summary
    .lock              exists while a process trains into the run (it holds an fcntl lock on it)
    error.log          the traceback of an unexpected error, when one stopped a command on this run
    progress/          frames of fixed latents across training, and progress.gif
    tensorboard/       TensorBoard event files, with train.tensorboard=true (see ganforge.render.tracking)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ganforge.config import RunConfig
from ganforge.domains import Dataset
from ganforge.engine import checkpoint as ckpt
from ganforge.errors import UsageError
from ganforge.io import atomic_write, failed_write, write_json, write_problem

METRICS_FILE = "metrics.jsonl"


@dataclass
class LogRecords:
    """What ``metrics.jsonl`` holds: every readable record, in order, and how many lines were not."""

    records: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    """Lines that are not a JSON object (a record cut short by a kill, or damage)."""

    @property
    def evals(self) -> list[dict[str, Any]]:
        """The evaluations, each ``{"step": ..., **scores}``."""
        return [{"step": r.get("step"), **r["eval"]} for r in self.records if isinstance(r.get("eval"), dict)]

    @property
    def game(self) -> list[dict[str, Any]]:
        """The monitor's records of a two-player game (D's and G's losses, D's verdicts, warnings)."""
        return [r for r in self.records if "loss_d" in r and not isinstance(r.get("eval"), dict)]

    @property
    def last_step(self) -> int | None:
        steps = [r["step"] for r in self.records if isinstance(r.get("step"), int) and not isinstance(r["step"], bool)]
        return max(steps, default=None)

    @property
    def last_eval(self) -> dict[str, Any] | None:
        evals = [r["eval"] for r in self.records if isinstance(r.get("eval"), dict)]
        return evals[-1] if evals else None


class MetricsLog:
    """``metrics.jsonl``: appends records; on resume, cuts it back to the checkpoint's step; reads it
    (for ``Run``, ``ganforge runs`` and the report alike)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict) -> None:
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, allow_nan=True) + "\n")
        except OSError as exc:  # a line cut short by a full disk is skipped on resume, as one cut by a kill
            error = failed_write(exc, self.path)
            if error is exc:
                raise
            raise error from exc

    def read(self, tail_bytes: int | None = None) -> LogRecords:
        """Every record, or those in the last ``tail_bytes`` of the file; a missing file has none.
        Raises OSError when the file exists but cannot be read."""
        out = LogRecords()
        for line, record in self._lines(tail_bytes):
            if isinstance(record, dict):
                out.records.append(record)
            else:
                out.bad_lines += line.strip() != "" or record is not None
        return out

    def records(self) -> list[dict]:
        """Every readable record, in order."""
        return self.read().records

    def truncate_after(self, step: int) -> None:
        """Keep the records up to ``step`` as they were written (what a resumed run will log again goes)."""
        kept = [line for line, record in self._lines() if isinstance(record, dict) and record.get("step", 0) <= step]
        if self.path.exists():
            with atomic_write(self.path) as fh:
                fh.write("".join(line + "\n" for line in kept))

    def _lines(self, tail_bytes: int | None = None) -> list[tuple[str, Any]]:
        """``(line, parsed JSON or None)`` for every line (of the last ``tail_bytes``)."""
        try:
            with open(self.path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                start = max(0, size - tail_bytes) if tail_bytes is not None else 0
                fh.seek(start)
                lines = fh.read().decode("utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        if start > 0:
            lines = lines[1:]  # the first line read may be the end of a longer one
        out = []
        for line in lines:
            try:
                out.append((line, json.loads(line)))
            except json.JSONDecodeError:
                out.append((line, None))  # a record cut short by a kill
        return out


def next_run_dir(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[:5]) for p in root.iterdir() if p.name[:5].isdigit()]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem)[:40]
    return root / f"{max(numbers, default=-1) + 1:05d}-{safe}"


LOCK_FILE = ".lock"
CREATED_FIRST = ("data.json",)
"""What a new run writes before ``config.json``, which marks a folder as a run: a folder holding
only these (and the lock, and temporary files) was stopped while being created and is taken over."""


@contextlib.contextmanager
def new_run(cfg: RunConfig, dataset: Dataset, out: Path | None) -> Iterator[Path]:
    """The directory of a new run (``out``, or the next ``runs/NNNNN-DATA``), locked before anything
    is written in it, with its data facts and resolved config written; yields its path with the
    lock held. A non-empty ``out`` is a UsageError; a folder left by a start that was stopped before
    ``config.json`` was written is taken over. If writing fails, what was written is removed."""
    path, created = _make_run_dir(out, cfg.data.source)
    try:
        with run_lock(path):
            found = [p for p in path.iterdir() if p.name != LOCK_FILE]
            if not all(map(_partial, found)):
                raise UsageError(f"{path} already exists and is not empty; pick another --out, or continue it with "
                                 f"--resume {path}")
            for partial in found:  # what a start stopped before config.json left
                partial.unlink()
            _write_run_files(path, cfg, dataset)
            yield path
    except BaseException:
        if created and not (path / "config.json").exists():
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty: nothing the run did not write is touched
        raise


def remove_partial_writes(path: Path) -> None:
    """Remove the temporary files of atomic writes that a kill interrupted (``.NAME.XXXX.tmp`` in the
    run directory and its ``progress/``); call it with the run's lock held."""
    for folder in (path, path / "progress"):
        for p in folder.glob(".*.tmp") if folder.is_dir() else []:
            with contextlib.suppress(OSError):
                p.unlink()


def _partial(p: Path) -> bool:
    """A file of a start stopped before ``config.json``: an atomic write's temporary file, or one
    written before ``config.json`` (see ``CREATED_FIRST``)."""
    if p.is_dir():
        return False
    return (p.name.startswith(".") and p.name.endswith(".tmp")) or p.name in CREATED_FIRST


def _write_run_files(path: Path, cfg: RunConfig, dataset: Dataset) -> None:
    """``data.json``, then ``config.json`` (its presence marks a complete run directory)."""
    try:
        write_json(path / "data.json",
                   {**dataset.state, "domain": dataset.domain, "sample_shape": list(dataset.sample_shape)})
        write_json(path / "config.json", cfg.to_dict())
    except OSError as exc:
        for name in CREATED_FIRST:
            with contextlib.suppress(OSError):
                (path / name).unlink()
        problem = write_problem(exc, path)
        if problem is None:
            raise
        raise UsageError(f"{problem[0]}; {problem[1]}, then run the command again") from None


def _make_run_dir(out: Path | None, source: str) -> tuple[Path, bool]:
    """``(path, created)``: ``out`` (created if missing), or a new ``runs/NNNNN-DATA`` taken atomically."""
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the run (it is created if missing)")
    path = out
    try:
        if out is not None:
            existed = out.is_dir()
            out.mkdir(parents=True, exist_ok=True)
            return out, not existed
        for _ in range(100):
            path = next_run_dir(Path("runs"), source)
            with contextlib.suppress(FileExistsError):  # another process took this number first: take the next
                path.mkdir()
                return path, True
    except OSError as exc:
        problem = write_problem(exc, path)
        if problem is None:
            raise
        raise UsageError(f"cannot create the run folder {path} ({exc.strerror}); {problem[1]}") from None
    raise UsageError("cannot number a new run under runs/ (other processes keep taking the numbers); give --out")


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold the lock of run ``path`` (an fcntl lock on ``path/.lock``) while training: a second
    process is refused, and ``ganforge runs`` shows the run as running. The lock file is removed
    when the lock is released, so a finished or stopped run leaves none behind."""
    with disk_errors(path):
        fd = _take_lock(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path / LOCK_FILE)  # still held: a process that opened this file sees it replaced
        os.close(fd)  # releases the lock


def _take_lock(path: Path) -> int:
    """The descriptor of ``path/.lock``, exclusively locked. A lock file that its holder removed
    between our open and our lock is not the lock any more: open the new one and try again."""
    while True:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(f"another process is training into {path}; wait for it or use another --out") from None
            raise
        try:
            if os.stat(path / LOCK_FILE).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def disk_errors(run_path: Path | None) -> Iterator[None]:
    """Turn a failed write in training (disk full, no permission, read-only filesystem) into one
    UsageError naming the file and the fix. Writes are atomic, so the newest complete checkpoint is
    intact and the run resumes once the cause is fixed (from step 0 if none was written yet)."""
    try:
        yield
    except OSError as exc:
        problem = write_problem(exc, run_path) if run_path is not None else None
        if problem is None:
            raise
        what, fix = problem
        kept = ckpt.list_checkpoints(run_path)
        resume = f"resume with 'ganforge train --resume {run_path}'"
        if not kept:
            raise UsageError(f"{what}; no checkpoint was written yet: {fix} and {resume} (it starts again from "
                             "step 0)") from None
        raise UsageError(f"{what}; the last complete checkpoint ({kept[-1].name}) is intact: {fix} and "
                         f"{resume}") from None
