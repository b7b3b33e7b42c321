"""The one lifecycle of a training run, for every model family: lock, resume, progress, logging,
evaluations, checkpoints, divergence and the final summary.

``train`` creates (or reopens) the run directory, takes its lock, asks the run's family for its
trainer (a :class:`ganforge.engine.steps.StepLoop`) and drives it with a :class:`Session`, which is
the trainer's callbacks: it writes what the trainer reports into the run directory.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ganforge.config import RunConfig, validate
from ganforge.domains import Dataset
from ganforge.engine import checkpoint as ckpt
from ganforge.engine import distributed
from ganforge.engine.distributed import Shard
from ganforge.engine.steps import StepLoop
from ganforge.errors import TrainingDiverged, UsageError
from ganforge.families import Family, get_family
from ganforge.progress import shown as progress_shown
from ganforge.io import write_json
from ganforge.render.latent import latents
from ganforge.render.pictures import FRAME_SEED, frame_count, frame_path, prune_frames, write_frame, write_progress_gif
from ganforge.render.tracking import TensorBoardLog, require_tensorboard
from ganforge.rundir.resolve import resolve, resolve_device
from ganforge.rundir.run import EVAL_N, Run
from ganforge.rundir.store import disk_errors, new_run, remove_partial_writes, run_lock
from ganforge.rundir.validate import load_summary


def train(cfg: RunConfig | None, out: Path | None = None, resume: Path | None = None, steps: int | None = None,
          progress: bool = True, echo: Callable[[str], Any] = print) -> dict[str, Any] | None:
    """Train a new run (``cfg``, written to ``out``) or continue ``resume``; returns the summary.

    Started by torchrun (WORLD_SIZE > 1 in the environment), every process calls this and they
    train together (see ganforge.engine.distributed); rank 0 writes the run directory and returns
    the summary, the other ranks return None.
    """
    shard = distributed.init_from_env()
    try:
        with progress_shown(progress):  # the evaluations' progress lines too are silent with --quiet
            summary = _train(shard, cfg, out, resume, steps, progress, echo)
        shard.barrier()  # the other ranks leave once rank 0 has written the summary
        return summary
    finally:
        distributed.shutdown(shard)


def _on_main(shard: Shard, fn):
    """``fn()`` run by rank 0 alone, its result on every rank; its UsageError is raised on every rank."""
    result = error = None
    if shard.is_main:
        try:
            result = fn()
        except UsageError as exc:
            error = str(exc)
    result, error = shard.broadcast((result, error))
    if error is not None:
        raise UsageError(error)
    return result


def _train(shard: Shard, cfg: RunConfig | None, out: Path | None, resume: Path | None, steps: int | None,
           progress: bool, echo) -> dict[str, Any] | None:
    """Open (or create) the run with its lock held before anything is written, then train it."""
    run: Run | None = None
    with contextlib.ExitStack() as stack:
        try:
            if resume is not None:
                # every rank reads the run: on several machines it must be on a shared filesystem
                run = Run(resume)
                cfg = run.config
                if steps is not None:
                    cfg.train.steps = steps  # saved once the checkpoint has been verified
                validate(cfg)
                if cfg.train.tensorboard:
                    require_tensorboard()
                family = _family(cfg, shard)
                _on_main(shard, lambda: stack.enter_context(run_lock(run.path)))  # rank 0 alone holds the lock
                dataset = run.load_data()
            else:
                dataset = resolve(cfg)  # on every rank: deterministic, so each holds the same data and config
                family = _family(cfg, shard)  # the resolved batch and family, before anything is written
                path = Path(_on_main(shard, lambda: str(stack.enter_context(new_run(cfg, dataset, out)))))
                run = Run(path) if shard.is_main else None
            if not shard.is_main:
                progress, echo = False, lambda *_: None
            with disk_errors(run.path if run is not None else None):
                return _train_locked(run, cfg, family, dataset, resume is not None, progress, echo, shard)
        except BaseException as exc:
            if run is not None and not isinstance(exc, (UsageError, TrainingDiverged)):
                exc.ganforge_run_dir = str(run.path)  # cli.main: where the traceback goes, what to resume
            raise


def _family(cfg: RunConfig, shard: Shard) -> Family:
    """The run's family, checked against the processes it runs on; sets this process's share of the batch."""
    family = get_family(cfg.model.family)
    if shard.world > 1 and not family.multi_process:
        raise UsageError(f"model.family={family.name} trains on one process; start it without torchrun")
    shard.local_batch(cfg.train.batch, cfg.train.pack)
    return family


def _train_locked(run: Run | None, cfg: RunConfig, family: Family, dataset: Dataset, resuming: bool, progress: bool,
                  echo, shard: Shard) -> dict[str, Any] | None:
    """Train with the run directory locked; on ranks other than 0, ``run`` may be None (nothing is written)."""
    device = distributed.device_for(shard, resolve_device(cfg.device))
    # data.json's net_args; ranks other than 0 may have no run directory to read, only the same data
    net_args = run.net_args if run is not None else dataset.state.get("net_args", {})
    session = Session(run, dataset, family, echo, shard) if shard.is_main else _RankSession(shard)
    trainer = family.trainer(cfg, dataset, device, session, shard, net_args)
    session.trainer = trainer
    elapsed_before, saved = 0.0, None
    if resuming:
        elapsed_before, saved = _restore(run, trainer, shard)
        if trainer.step > cfg.train.steps:
            raise UsageError(f"{run.path} is already at step {trainer.step}; give --steps >= {trainer.step}")
        done = _finished_summary(run, trainer.step)
        if done is not None:
            echo(f"{run.path} is already finished at step {trainer.step}; nothing to do (give --steps > "
                 f"{trainer.step} to train it further)")
            return done if shard.is_main else None
        if shard.is_main:
            write_json(run.path / "config.json", cfg.to_dict())
            run.log.truncate_after(trainer.step)
            # the summary of an earlier ending (finished at fewer steps, or diverged) no longer
            # describes the run: 'ganforge runs' shows it running, or stopped, until it ends again
            (run.path / "summary.json").unlink(missing_ok=True)
        echo(f"resuming {run.path} from step {trainer.step} of {cfg.train.steps}"
             + (" (it was stopped before its first checkpoint)" if saved is None else "")
             + (f" on {shard.world} processes" if shard.world > 1 else ""))
    if saved is None:
        session.on_checkpoint(0)
    distributed.seed_other_ranks(shard, cfg.seed, trainer.step)
    try:
        return _play(trainer, session, elapsed_before, progress, save_last=saved != cfg.train.steps)
    finally:
        session.close()  # TensorBoard events reach the disk however the run ends


def _restore(run: Run, trainer: StepLoop, shard: Shard) -> tuple[float, int | None]:
    """Load the run's newest checkpoint into ``trainer``: ``(seconds trained before, its step)``, or
    ``(0, None)`` for a run stopped before its first checkpoint, which starts again from step 0."""
    if shard.is_main:
        ckpt.remove_partial_saves(run.path)
        remove_partial_writes(run.path)
    if not ckpt.list_checkpoints(run.path):
        return 0.0, None
    tensors, state = run.read_checkpoint()
    ckpt.restore(tensors, state, trainer.modules(), trainer.optimizers(), trainer.generators())
    trainer.step = state["step"]
    trainer.load_state(state["extra"])
    return state["extra"].get("elapsed", 0.0), trainer.step


def _finished_summary(run: Run, step: int) -> dict[str, Any] | None:
    """The run's summary if it finished at ``step`` (resuming it then has nothing to do), else None
    (a damaged summary too: the resume writes it again)."""
    try:
        summary = load_summary(run.path / "summary.json")
    except UsageError:
        return None
    if summary is not None and summary.get("status") == "finished" and summary.get("steps") == step \
            and step == run.config.train.steps:
        return summary
    return None


def _play(trainer: StepLoop, session: "Session | _RankSession", elapsed_before: float, progress: bool,
          save_last: bool = True) -> dict[str, Any] | None:
    """Train to the last step with a progress bar, then finish (or record the divergence);
    ``save_last=False``: the last step's checkpoint is the one the run resumed from, kept as it is."""
    session.start(elapsed_before, trainer.step)
    bar = _Bar(trainer.t.steps, trainer.step) if progress else None
    session.bar = bar
    try:
        trainer.run(progress=bar.update_to if bar else None)
    except (OSError, TrainingDiverged) as exc:
        if bar:
            bar.close()  # the error line (see disk_errors) goes below a finished bar
        if isinstance(exc, TrainingDiverged):
            raise session.diverged(exc) from None
        raise
    if bar:
        bar.close()
    return session.finish(save=save_last)


class _Bar:
    def __init__(self, total: int, initial: int) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=0.5)

    def update_to(self, step: int) -> None:
        self.tqdm.update(step - self.tqdm.n)

    def close(self) -> None:
        self.tqdm.close()


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    """``module`` in eval mode (batch norm on its running statistics, as G_ema always is), then as it was."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class Session:
    """What a trainer reports, written into the run directory: the log, evaluations, progress frames,
    checkpoints, a divergence and the summary."""

    def __init__(self, run: Run, dataset: Dataset, family: Family, echo, shard: Shard = Shard()) -> None:
        self.run, self.dataset, self.family, self.echo, self.shard = run, dataset, family, echo, shard
        self.trainer: StepLoop | None = None
        self.bar: _Bar | None = None
        self.last_record: dict = {}
        self.tensorboard: TensorBoardLog | None = None

    def start(self, elapsed_before: float, step: int) -> None:
        self.t0 = time.perf_counter() - elapsed_before
        self.start_step = step
        self.t_start = time.perf_counter()
        # a resumed run's last record so far (its log is cut back to ``step``), for the summary
        self.last_record = next((r for r in reversed(self.run.log.records()) if "eval" not in r), {})
        if self.run.config.train.tensorboard:
            self.tensorboard = TensorBoardLog(self.run.path, step)
        prune_frames(self.run.path, step)  # frames drawn after the checkpoint we resume from are drawn again
        if step == 0:
            self.snapshot(0)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def on_log(self, record: dict) -> None:
        record = {**record, "time": round(self.elapsed(), 3)}
        self.last_record = record
        self.run.log.append(record)
        if self.tensorboard:
            self.tensorboard.log(record)
        for text in record.get("warnings", []):
            self._say(f"warning at step {record['step']}: {text}")
        if self.bar:
            self.bar.tqdm.set_postfix(self.trainer.postfix(record), refresh=False)
        t, step = self.trainer.t, record["step"]
        # a frame at the first logged step at or after each multiple of snapshot_every (the last
        # step's frame is drawn by finish); a step whose losses are NaN/inf is about to stop the run
        losses = [v for k, v in record.items() if k.startswith("loss") and isinstance(v, (int, float))]
        if t.snapshot_every and step != t.steps and np.isfinite(losses).all() and \
                step // t.snapshot_every != (step - t.log_every) // t.snapshot_every:
            self.snapshot(step)

    @torch.no_grad()
    def snapshot(self, step: int) -> None:
        """Draw the sampler's samples of the fixed progress latents (see ganforge.render.pictures) into
        ``RUN/progress/step-XXXXXXXX.png``; for conditional runs with the loop's fixed conditions."""
        trainer, run = self.trainer, self.run
        if not trainer.t.snapshot_every:
            return
        n, cond = frame_count(run.sample_shape), trainer.fixed_cond
        if cond is not None:
            n = min(n, len(cond))
            cond = cond[:n]
        with _eval_mode(trainer.sampler()) as G:
            device = next(G.parameters()).device
            z = latents(n, run.config.model.z_dim, FRAME_SEED, device=device)
            encoded = G(z) if cond is None else G(z, cond)
        write_frame(run.domain, run.domain.decode(encoded, run.data_state), self.dataset, frame_path(run.path, step))
        if self.tensorboard:
            self.tensorboard.picture("progress", frame_path(run.path, step), step)

    def _say(self, text: str) -> None:
        if self.bar:
            self.bar.tqdm.write(text)
        else:
            self.echo(text)

    def on_eval(self, step: int, quick: bool = True) -> dict:
        with _eval_mode(self.trainer.sampler()) as G:
            metrics = self.run.evaluate(EVAL_N, seed=0, dataset=self.dataset, G=G, quick=quick)
        self.run.log.append({"step": step, "eval": metrics})
        if self.tensorboard:
            self.tensorboard.evaluation(step, metrics)
        return metrics

    def on_checkpoint(self, step: int) -> None:
        trainer = self.trainer
        _check_finite(trainer, step)
        extra = {**trainer.state(), "elapsed": self.elapsed() if hasattr(self, "t0") else 0.0,
                 "family": self.family.name}
        if self.tensorboard:
            self.tensorboard.flush()  # what a resume keeps (up to this step) is on disk before the checkpoint is
        ckpt.save_checkpoint(self.run.path, step, trainer.modules(), trainer.optimizers(), trainer.generators(), extra)
        self.shard.barrier()  # the other ranks wait until the checkpoint is complete on disk

    def diverged(self, exc: TrainingDiverged) -> TrainingDiverged:
        """Record the divergence in ``summary.json``; the error to stop with names the checkpoint kept
        and what to try."""
        good = self.run.latest_checkpoint()
        write_json(self.run.path / "summary.json", {"status": "diverged", "message": str(exc),
                                                     "last_good_checkpoint": str(good), "run_dir": str(self.run.path)})
        return TrainingDiverged(f"{exc}; stopped, the last good checkpoint is kept at {good} "
                                f"({self.family.divergence_hint})")

    def finish(self, save: bool = True) -> dict[str, Any]:
        """The last checkpoint (unless ``save`` is False: it is on disk already), a full evaluation,
        the samples, their plot, the GIF and ``summary.json``. Its times: ``train_seconds`` (the
        loop, over every resumed part), ``eval_seconds`` (the final evaluation, samples and plots)
        and ``seconds``, their sum; ``samples_per_s`` counts this process's steps in its own time."""
        trainer, run = self.trainer, self.run
        step = trainer.step
        if save:
            self.on_checkpoint(step)
        train_end = time.perf_counter()
        metrics = self.on_eval(step, quick=False)
        with _eval_mode(trainer.sampler()) as G:
            samples = run.sample(EVAL_N, seed=0, G=G, dataset=self.dataset)
        samples_file = run.domain.samples_file
        run.domain.save_samples(samples, run.path / samples_file)
        run.domain.plot(samples, self.dataset, run.path / "samples.png")
        if self.tensorboard:
            self.tensorboard.picture("samples", run.path / "samples.png", step)
        if trainer.t.snapshot_every:
            self.snapshot(step)
            write_progress_gif(run.path)
        train_seconds, eval_seconds = train_end - self.t0, time.perf_counter() - train_end
        summary = {
            "status": "finished",
            "run_dir": str(run.path),
            "data": run.config.data.source,
            "domain": run.domain.name,
            "family": self.family.name,
            "steps": step,
            "loss": self.family.objective or run.config.train.loss,
            "seconds": round(train_seconds + eval_seconds, 2),
            "train_seconds": round(train_seconds, 2),
            "eval_seconds": round(eval_seconds, 2),
            "samples_per_s": self._throughput(step, train_end),
            "last_log": {k: v for k, v in self.last_record.items() if k != "warnings"},
            "eval": metrics,
            **trainer.summary(),  # precision, warnings
            "samples_file": samples_file,
        }
        write_json(run.path / "summary.json", summary)
        return summary

    def _throughput(self, step: int, train_end: float) -> float | None:
        """Real samples per second of this process's steps in its own wall time (a resumed run's
        earlier parts are not counted); the whole run's if this process trained no step."""
        steps, seconds = step - self.start_step, train_end - self.t_start
        if steps == 0:
            steps, seconds = step, train_end - self.t0
        return round(steps * self.trainer.samples_per_step / seconds, 1) if steps and seconds > 0 else None

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()
            self.tensorboard = None


def _check_finite(trainer: StepLoop, step: int) -> None:
    if not all(bool(torch.isfinite(p).all()) for m in trainer.modules().values() for p in m.parameters()):
        raise TrainingDiverged(f"a weight became NaN/inf before the checkpoint at step {step}")


class _RankSession:
    """The session of ranks other than 0: they write nothing, and wait for rank 0's checkpoints."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.trainer: StepLoop | None = None
        self.bar = None

    def start(self, elapsed_before: float, step: int) -> None:
        pass

    def on_log(self, record: dict) -> None:
        pass

    def on_eval(self, step: int) -> None:
        pass

    def on_checkpoint(self, step: int) -> None:
        _check_finite(self.trainer, step)  # the weights are rank 0's, so every rank stops alike
        self.shard.barrier()

    def diverged(self, exc: TrainingDiverged) -> TrainingDiverged:
        return exc

    def finish(self, save: bool = True) -> None:
        if save:
            self.on_checkpoint(self.trainer.step)

    def close(self) -> None:
        pass
