"""ganforge: train, evaluate, diagnose and use generative adversarial networks.

    >>> import ganforge
    >>> summary = ganforge.train("ring8", out="runs/ring8")          # doctest: +SKIP
    >>> run = ganforge.load("runs/ring8")                             # doctest: +SKIP
    >>> points = run.sample(1000, seed=0)                             # doctest: +SKIP
    >>> run.evaluate()["modes"]                                       # doctest: +SKIP
    >>> ganforge.runs("runs")                                         # doctest: +SKIP
    >>> ganforge.compare("runs/digits", "real/", features="digits-cnn")["fid"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ganforge.config import RunConfig
from ganforge.errors import TrainingDiverged, UsageError
from ganforge.losses import LOSSES, gradient_penalty, r1_penalty
from ganforge.rundir.compare import compare
from ganforge.rundir.report import report
from ganforge.rundir.run import Run
from ganforge.rundir.runs import runs
from ganforge.render.latent import latents, lerp, slerp
from ganforge.tabular_gan import TabularGAN

__version__ = "0.1.0"


def train(data: str, out: str | Path | None = None, config: RunConfig | None = None, *,
          settings: dict[str, Any] | None = None, resume: str | Path | None = None,
          progress: bool = False) -> dict[str, Any]:
    """Train a GAN on ``data`` (built-in name or file path) and return the run's summary.

    ``settings`` are dotted overrides, e.g. ``{"train.steps": 2000, "train.loss": "hinge"}``.
    With ``resume`` the run directory continues exactly where it stopped.
    """
    from ganforge.config import set_value
    from ganforge.rundir.session import train as train_run

    if resume is not None:
        return train_run(None, resume=Path(resume), progress=progress)
    cfg = copy.deepcopy(config) if config is not None else RunConfig()  # the caller's object stays as it was
    cfg.data.source = data
    for key, value in (settings or {}).items():
        set_value(cfg, key, value)
    return train_run(cfg, out=Path(out) if out else None, progress=progress)


def load(run_dir: str | Path) -> Run:
    """Open a run directory (finished or interrupted) to sample from or evaluate it."""
    return Run(run_dir)


__all__ = ["LOSSES", "Run", "RunConfig", "TabularGAN", "TrainingDiverged", "UsageError", "compare", "gradient_penalty",
           "latents", "lerp", "load", "r1_penalty", "report", "runs", "slerp", "train"]
