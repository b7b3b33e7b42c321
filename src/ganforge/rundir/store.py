"""The run directory on disk: its files, its lock, its one reader and writer of ``metrics.jsonl``.

A run directory holds::

    config.json        the resolved configuration (every default filled in)
    data.json          what is needed to decode samples without the data (scaler, fingerprint)
    metrics.jsonl      one JSON record per log interval, evaluation and warning
    checkpoints/       step-XXXXXXXX/{weights.safetensors,state.json}, newest two kept
    samples.npy/.png   samples from the final generator and their plot
    summary.json       the final one-screen summary
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
from ganforge.io import atomic_write, write_json

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
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(self.path)) from exc
            raise

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


def create_run_dir(cfg: RunConfig, dataset: Dataset, out: Path | None) -> Path:
    """The directory of a new run (``out``, or the next ``runs/NNNNN-DATA``) with the resolved
    config and the data facts written; a non-empty ``out`` is a UsageError."""
    path = out or next_run_dir(Path("runs"), cfg.data.source)
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"{path} already exists and is not empty; pick another --out, or continue it with --resume {path}")
    with disk_errors(path):
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / "config.json", cfg.to_dict())
        write_json(path / "data.json", {**dataset.state, "domain": dataset.domain, "sample_shape": list(dataset.sample_shape)})
    return path


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Refuse a second process training into the same run directory."""
    fh = open(path / ".lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise UsageError(f"another process is training into {path}; wait for it or use another --out") from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


# what to do when the run directory cannot be written: the fix, by errno
WRITE_FIXES = {
    errno.ENOSPC: "free space on the disk that holds {run}",
    errno.EDQUOT: "free space in your disk quota for {run}",
    errno.EACCES: "make {run} writable",
    errno.EPERM: "make {run} writable",
    errno.EROFS: "remount the filesystem of {run} read-write",
}


@contextlib.contextmanager
def disk_errors(run_path: Path | None) -> Iterator[None]:
    """Turn a failed write in training (disk full, no permission, read-only filesystem) into one
    UsageError naming the file and the fix. Writes are atomic, so the newest complete checkpoint is
    intact and the run resumes once the cause is fixed."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_FIXES or run_path is None:
            raise
        fix = WRITE_FIXES[exc.errno].format(run=run_path)
        kept = ckpt.list_checkpoints(run_path)
        where = f"cannot write {exc.filename or run_path} ({exc.strerror})"
        if not kept:
            raise UsageError(f"{where}; no checkpoint was written yet: {fix}, delete {run_path} and start the run "
                             "again") from None
        raise UsageError(f"{where}; the last complete checkpoint ({kept[-1].name}) is intact: {fix} and resume with "
                         f"'ganforge train --resume {run_path}'") from None
