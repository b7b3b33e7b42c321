"""The run-directory side of a model family that trains in its own loop (the VAE, TimeGAN).

Algorithm 1 (``engine/loop.py``) is one game of two players; a family that is not that game (a VAE
minimising one loss, TimeGAN's three phases of five networks) writes its own short loop, and
subclasses :class:`OwnLoop` for everything else a run directory needs, so its runs read like a
GAN run's: checkpoints in the GAN's safetensors format (with ``--resume`` continuing exactly), the
domain's scores in ``metrics.jsonl``, progress frames, the final samples and ``summary.json``.

A subclass provides :meth:`OwnLoop.sampler` (the module saved as ``G_ema``, which
``Run.generator()`` rebuilds from ``model.net`` and samples from), :meth:`OwnLoop.modules`,
:meth:`OwnLoop.optimizers`, :meth:`OwnLoop.generators`, and the two halves of its loop:
:meth:`OwnLoop.iteration` (one training step, keeping its own running losses) and
:meth:`OwnLoop.log` (their means since the last log, written with ``maybe_snapshot``);
:meth:`OwnLoop.train` runs them with the run's logging, evaluation and checkpoint cadence.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from ganforge.config import RunConfig
from ganforge.domains import Dataset
from ganforge.errors import TrainingDiverged, UsageError
from ganforge.io import write_json
from ganforge.engine import checkpoint as ckpt


class OwnLoop:
    """Logging, evaluation, progress frames, checkpoints and the summary of an own-loop run.

    ``family`` and ``loss`` name the model family and its objective in ``summary.json``.
    """

    family = ""
    loss = ""

    def __init__(self, run: Any, cfg: RunConfig, dataset: Dataset, device: torch.device) -> None:
        self.run, self.cfg, self.t, self.dataset, self.device = run, cfg, cfg.train, dataset, device
        self.t0 = time.perf_counter()
        self.last_record: dict = {}

    # --- what a family provides

    def sampler(self) -> nn.Module:
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def generators(self) -> dict[str, torch.Generator]:
        raise NotImplementedError

    def iteration(self, step: int) -> None:
        """Train 0-based iteration ``step``, adding its losses to the family's running sums."""
        raise NotImplementedError

    def log(self, step: int, bar: Any) -> None:
        """Write the running losses' means at ``step`` (then reset them), as :meth:`OwnLoop.train` asks."""
        raise NotImplementedError

    # --- shared

    def train(self, step: int, progress: bool) -> dict[str, Any]:
        """Train from ``step`` to ``train.steps``: a log every ``log_every`` steps and at the end, a quick
        evaluation every ``eval_every`` and a checkpoint every ``ckpt_every`` steps, then :meth:`finish`."""
        from ganforge.render.pictures import prune_frames

        t = self.t
        start_step, t_start = step, time.perf_counter()
        prune_frames(self.run.path, step)
        if step == 0:
            self.snapshot(0)
        bar = progress_bar(t.steps, step) if progress else None
        while step < t.steps:
            self.iteration(step)
            step += 1
            if step % t.log_every == 0 or step == t.steps:
                self.log(step, bar)
            if t.eval_every and step % t.eval_every == 0 and step != t.steps:
                self.evaluate(step, quick=True)
            if step % t.ckpt_every == 0 and step != t.steps:
                self.checkpoint(step)
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        return self.finish(step, start_step, time.perf_counter() - t_start)

    def start_and_train(self, resuming: bool, echo, progress: bool) -> dict[str, Any]:
        """Resume or start (:meth:`start`), then :meth:`train`; returns the summary."""
        return self.train(self.start(resuming, echo), progress)

    def start(self, resuming: bool, echo) -> int:
        """The step to train from: the newest checkpoint's when ``resuming`` (restored into the
        modules, optimisers and RNGs, the log cut back to it), else 0 (checkpoint 0 written)."""
        run, cfg = self.run, self.cfg
        if not resuming:
            self.checkpoint(0)
            return 0
        ckpt.remove_partial_saves(run.path)
        tensors, state = ckpt.read_checkpoint(run.latest_checkpoint())
        ckpt.restore(tensors, state, self.modules(), self.optimizers(), self.generators())
        step = state["step"]
        self.t0 = time.perf_counter() - state["extra"].get("elapsed", 0.0)
        if step > cfg.train.steps:
            raise UsageError(f"{run.path} is already at step {step}; give --steps >= {step}")
        write_json(run.path / "config.json", cfg.to_dict())
        run.log.truncate_after(step)
        echo(f"resuming {run.path} from step {step} of {cfg.train.steps}")
        return step

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def diverged(self, message: str) -> None:
        """Record the divergence in ``summary.json`` and stop with the last good checkpoint named."""
        good = self.run.latest_checkpoint()
        write_json(self.run.path / "summary.json", {"status": "diverged", "message": message,
                                                     "last_good_checkpoint": str(good), "run_dir": str(self.run.path)})
        raise TrainingDiverged(f"{message}; stopped, the last good checkpoint is kept at {good} (lower train.lr_g)")

    def maybe_snapshot(self, step: int) -> None:
        """A progress frame at the first logged step at or after each multiple of ``snapshot_every``."""
        t = self.t
        if t.snapshot_every and step != t.steps and step // t.snapshot_every != (step - t.log_every) // t.snapshot_every:
            self.snapshot(step)

    @torch.no_grad()
    def snapshot(self, step: int) -> None:
        """The sampler's samples of the fixed progress latents, as a GAN run draws G_ema's."""
        from ganforge.render.pictures import FRAME_SEED, frame_count, frame_path, write_frame
        from ganforge.render.latent import latents

        if not self.t.snapshot_every:
            return
        sampler, run = self.sampler(), self.run
        z = latents(frame_count(run.sample_shape), self.cfg.model.z_dim, FRAME_SEED, device=self.device)
        sampler.eval()
        encoded = sampler(z)
        sampler.train()
        write_frame(run.domain, run.domain.decode(encoded, run.data_state), self.dataset, frame_path(run.path, step))

    def evaluate(self, step: int, quick: bool) -> dict:
        from ganforge.rundir.run import EVAL_N

        sampler = self.sampler()
        sampler.eval()  # batch norm on its running statistics, as G_ema samples
        try:
            metrics = self.run.evaluate(EVAL_N, seed=0, dataset=self.dataset, G=sampler, quick=quick)
        finally:
            sampler.train()
        self.run.log.append({"step": step, "eval": metrics})
        return metrics

    def checkpoint(self, step: int) -> None:
        modules = self.modules()
        if not all(bool(torch.isfinite(q).all()) for m in modules.values() for q in m.parameters()):
            raise TrainingDiverged(f"a weight became NaN/inf before the checkpoint at step {step}")
        ckpt.save_checkpoint(self.run.path, step, modules, self.optimizers(), self.generators(),
                             {"elapsed": self.elapsed(), "family": self.family})

    def finish(self, step: int, start_step: int, wall: float) -> dict[str, Any]:
        """The last checkpoint, a full evaluation, the samples, their plot and ``summary.json``."""
        from ganforge.render.pictures import write_progress_gif
        from ganforge.rundir.run import EVAL_N

        run, cfg = self.run, self.cfg
        self.checkpoint(step)
        metrics = self.evaluate(step, quick=False)
        sampler = self.sampler().eval()
        samples = run.sample(EVAL_N, seed=0, G=sampler, dataset=self.dataset)
        samples_file = getattr(run.domain, "samples_file", "samples.npy")
        run.domain.save_samples(samples, run.path / samples_file)
        run.domain.plot(samples, self.dataset, run.path / "samples.png")
        if self.t.snapshot_every:
            self.snapshot(step)
            write_progress_gif(run.path)
        done = step - start_step
        summary = {
            "status": "finished",
            "run_dir": str(run.path),
            "data": cfg.data.source,
            "domain": run.domain.name,
            "family": self.family,
            "steps": step,
            "loss": self.loss,
            "seconds": round(self.elapsed(), 2),
            "samples_per_s": round(done * cfg.train.batch / wall, 1) if wall > 0 and done else None,
            "last_log": self.last_record,
            "eval": metrics,
            "warnings": [],
            "samples_file": samples_file,
        }
        write_json(run.path / "summary.json", summary)
        return summary


def progress_bar(total: int, initial: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=0.5)
