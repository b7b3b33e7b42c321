"""The cadence of a training run, written once for every model family.

A family's trainer (Algorithm 1's :class:`ganforge.engine.loop.Trainer`, the VAE's, TimeGAN's)
subclasses :class:`StepLoop` and gives one :meth:`StepLoop.iteration` and one :meth:`StepLoop.log`;
:meth:`StepLoop.run` calls them with the run's logging, evaluation and checkpoint cadence and tells
its :class:`Callbacks` (the run directory, or nothing) at each. The rest of this protocol is what
the run directory's session asks of every trainer: its modules, optimisers and RNGs for checkpoints,
the module samples are drawn from, the state a checkpoint keeps beyond the weights, and how its
log records read on a progress bar.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Protocol

import torch
from torch import Tensor, nn

from ganforge.config import TrainConfig


class Callbacks(Protocol):
    def on_log(self, record: dict) -> None: ...

    def on_checkpoint(self, step: int) -> None: ...

    def on_eval(self, step: int) -> None: ...


class NullCallbacks:
    """Callbacks that write nothing and only keep the last log record (``.last``): for driving a
    trainer directly (tests, benchmarks, notebooks)."""

    last: dict | None = None

    def on_log(self, record: dict) -> None:
        self.last = record

    def on_checkpoint(self, step: int) -> None:
        pass

    def on_eval(self, step: int) -> None:
        pass


class StepLoop:
    """Train from ``self.step`` to ``train.steps``: a log every ``log_every`` steps and at the last, a
    quick evaluation every ``eval_every`` and a checkpoint every ``ckpt_every`` steps (the last
    step's evaluation and checkpoint are the session's to make when it finishes)."""

    t: TrainConfig
    callbacks: Callbacks
    step: int = 0
    fixed_cond: Tensor | None = None
    """The conditions of the progress frames (conditional runs), else None."""
    samples_per_step: int = 1
    """Real samples one step consumes, for the summary's throughput."""

    # --- what a trainer gives

    def iteration(self) -> None:
        """Train step ``self.step`` (0-based) and count it (``self.step += 1``)."""
        raise NotImplementedError

    def log(self) -> None:
        """Hand the record of the steps since the last log to ``callbacks.on_log``; raise
        :class:`ganforge.errors.TrainingDiverged` when a loss or weight is NaN/inf."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def generators(self) -> dict[str, torch.Generator]:
        raise NotImplementedError

    def sampler(self) -> nn.Module:
        """The module samples are drawn from (G's moving average, or what stands for it): ``G(z[, c])``."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """JSON state a checkpoint keeps beyond weights, optimisers and RNGs (e.g. the monitor's)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned (a checkpoint's ``extra``, which may hold other keys too)."""

    def postfix(self, record: dict[str, Any]) -> dict[str, str]:
        """The progress bar's figures for a log record."""
        return {}

    def summary(self) -> dict[str, Any]:
        """The trainer's part of ``summary.json`` (e.g. the precision used, the monitor's warnings)."""
        return {"warnings": []}

    # --- the cadence, written once

    def begin(self) -> None:
        """Called before the first iteration of :meth:`run` (e.g. to put nets in training mode)."""

    def end(self) -> None:
        """Called after the last iteration of :meth:`run`."""

    def threads(self) -> ContextManager:
        """The CPU threads the steps run with (e.g. one for nets too small to share, see
        ``Trainer.threads``); a null context keeps torch's setting."""
        return contextlib.nullcontext()

    def run(self, progress: Callable[[int], None] | None = None, until: int | None = None) -> None:
        """Train to ``train.steps``, or only to step ``until`` of that run (then call again to go on):
        the schedules (learning-rate decay, instance noise, progressive growing) stay those of the
        whole ``train.steps``. ``progress(step)`` is told after every step."""
        with self.threads():
            self._run(progress, self.t.steps if until is None else min(until, self.t.steps))

    def _run(self, progress: Callable[[int], None] | None, stop: int) -> None:
        t = self.t
        self.begin()
        while self.step < stop:
            self.iteration()
            if progress is not None:
                progress(self.step)
            if self.step % t.log_every == 0 or self.step == t.steps:
                self.log()
            if t.eval_every and self.step % t.eval_every == 0 and self.step != t.steps:
                self.callbacks.on_eval(self.step)
            if self.step % t.ckpt_every == 0 and self.step != t.steps:
                self.callbacks.on_checkpoint(self.step)
        self.end()

