"""Progress lines for the long computations that are not training steps: scoring and feature extraction.

Each phase is one tqdm line on stderr that names what it computes, e.g.
``scoring: TimeGAN discriminative score (10 repeats side by side)  1200/2000 it``, and that is
removed when the phase ends, so what stays on the screen is the result (the end-of-training
summary, ``ganforge eval``'s scores). Domains and metrics use it without importing the run
directory, which is why this module sits at the top of the package and imports nothing of it.

    >>> from ganforge import progress
    >>> with progress.task("scoring: something slow", total=3) as bar:   # doctest: +SKIP
    ...     for _ in range(3):
    ...         bar.update()

Training with ``--quiet`` (``progress=False`` from Python) runs inside :func:`shown` ``(False)``:
every line is silent there, whatever the phase.
"""

from __future__ import annotations

import contextlib
import sys
from contextvars import ContextVar
from typing import Any, Iterator

MIN_INTERVAL = 0.5  # seconds between redraws: a line, not a flood, when stderr is a file

_SHOWN: ContextVar[bool] = ContextVar("ganforge_progress_shown", default=True)


@contextlib.contextmanager
def shown(flag: bool) -> Iterator[None]:
    """Show (``True``) or silence (``False``) every progress line started inside the block."""
    token = _SHOWN.set(bool(flag))
    try:
        yield
    finally:
        _SHOWN.reset(token)


def is_shown() -> bool:
    """Whether a progress line started now would be drawn."""
    return _SHOWN.get()


def task(what: str, total: int | None = None, unit: str = "it", min_total: int = 0) -> Any:
    """A tqdm bar on stderr described by ``what`` (use it as a context manager; ``update(k)``
    advances it); drawn only where :func:`is_shown` and for a ``total`` of at least ``min_total``."""
    from tqdm import tqdm

    hidden = not is_shown() or (total is not None and total < min_total)
    return tqdm(total=total, desc=what, unit=unit, leave=False, dynamic_ncols=True, mininterval=MIN_INTERVAL,
                file=sys.stderr, disable=hidden)


class Steps:
    """A phase made of a few named steps of unequal length (e.g. one classifier fit each): the line
    shows ``what: <step>`` and counts the steps done.

        >>> with progress.Steps("scoring: ML efficacy", total=8) as steps:   # doctest: +SKIP
        ...     steps.next("decision tree on synthetic rows")
    """

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.bar = task(what, total=total, unit="step")
        self.started = False

    def next(self, step: str) -> None:
        """Count the previous step as done and show ``step`` as the one running."""
        if self.started:
            self.bar.update()
        self.started = True
        self.bar.set_description_str(f"{self.what}: {step}", refresh=True)

    def __enter__(self) -> "Steps":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            self.bar.update()
        self.bar.close()
