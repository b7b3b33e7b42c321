"""TensorBoard event files of a run (``train.tensorboard=true``), beside its own files.

``RUN/tensorboard/events.out.tfevents.*`` holds, by step:

- ``train/<key>``: every number of each monitor record in ``metrics.jsonl`` (the confusion matrix
  flattened: ``train/confusion.tp``); ``step``, ``time`` and the warnings' text are left out;
- ``eval/<key>``: every numeric score of an evaluation record (nested ones, like per-mode counts,
  are left out, as in ``ganforge report``);
- images ``progress`` (the frames of ``train.snapshot_every``) and ``samples`` (the final
  ``samples.png``), read back from the PNGs the run writes anyway.

TensorBoard keeps scalars as float32; ``metrics.jsonl`` stays the exact record. Writing draws no
random numbers, so a run is the same with the option on or off. On resume the writer appends
with ``purge_step`` one past the checkpoint's step: events that a killed process wrote after its
last checkpoint are hidden, and training writes them again as it repeats those steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganforge.errors import UsageError

TENSORBOARD_DIR = "tensorboard"
SKIPPED_LOG_KEYS = ("step", "time", "warnings")
SKIPPED_EVAL_KEYS = ("n",)


def require_tensorboard() -> Any:
    """The ``SummaryWriter`` class; a :class:`UsageError` naming the install when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError("train.tensorboard needs the tensorboard package; install it with: pip install tensorboard "
                         "(or set train.tensorboard=false)") from None
    return SummaryWriter


def numbers(record: dict[str, Any], nested: bool, prefix: str = "") -> dict[str, float]:
    """The numeric scalars of a record, by key; with ``nested``, sub-dicts as ``outer.inner``."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, dict) and nested:
            out.update(numbers(value, nested, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


class TensorBoardLog:
    """Writes a run's monitor records, evaluations and pictures as TensorBoard events."""

    def __init__(self, run_path: Path, step: int) -> None:
        SummaryWriter = require_tensorboard()
        # a fresh run starts at 0; a resumed one hides what was written after its checkpoint
        self.writer = SummaryWriter(log_dir=str(run_path / TENSORBOARD_DIR), purge_step=step + 1 if step else None)

    def log(self, record: dict[str, Any]) -> None:
        """One monitor record (``{"step", "loss_d", ..., "confusion": {...}}``)."""
        step = record["step"]
        values = numbers({k: v for k, v in record.items() if k not in SKIPPED_LOG_KEYS}, nested=True)
        for key, value in values.items():
            self.writer.add_scalar(f"train/{key}", value, step)

    def evaluation(self, step: int, metrics: dict[str, Any]) -> None:
        """One evaluation's scores (``n``, the sample count, is not a score)."""
        for key, value in numbers(metrics, nested=False).items():
            if key not in SKIPPED_EVAL_KEYS:
                self.writer.add_scalar(f"eval/{key}", value, step)

    def picture(self, tag: str, path: Path, step: int) -> None:
        """A PNG the run has just written, as an image event."""
        import numpy as np
        from PIL import Image

        if not path.is_file():
            return
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))  # [H, W, 3] uint8
        self.writer.add_image(tag, pixels, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
