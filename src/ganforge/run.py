"""The run directory, the unit of persistence, and the library functions the CLI calls.

A run directory holds::

    config.json        the resolved configuration (every default filled in)
    data.json          what is needed to decode samples without the data (scaler, fingerprint)
    metrics.jsonl      one JSON record per log interval, evaluation and warning
    checkpoints/       step-XXXXXXXX/{weights.safetensors,state.json}, newest two kept
    samples.npy/.png   samples from the final generator and their plot
    summary.json       the final one-screen summary
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ganforge.config import RunConfig, apply_defaults, validate
from ganforge.domains import Dataset, get_domain, infer_domain
from ganforge.errors import TrainingDiverged, UsageError
from ganforge.io import atomic_write, write_json
from ganforge.losses import get_loss
from ganforge.sample import latents, lerp, slerp
from ganforge.train import checkpoint as ckpt
from ganforge.train.loop import Trainer, build_discriminator, build_generator, build_players, set_progress

EVAL_N = 2500


PATHS = {"slerp": slerp, "lerp": lerp}


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device=cuda was asked for but no CUDA device is available; use device=auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_dataset(cfg: RunConfig) -> Dataset:
    domain = get_domain(cfg.data.domain) if cfg.data.domain else infer_domain(cfg.data.source)
    cfg.data.domain = domain.name
    return domain.load(cfg.data)


def next_run_dir(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[:5]) for p in root.iterdir() if p.name[:5].isdigit()]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem)[:40]
    return root / f"{max(numbers, default=-1) + 1:05d}-{safe}"


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


class RunLog:
    """Appends records to ``metrics.jsonl``; on resume, cuts it back to the checkpoint's step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, allow_nan=True) + "\n")

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if record.get("step", 0) <= step:
                kept.append(line)
        with atomic_write(self.path) as fh:
            fh.write("".join(line + "\n" for line in kept))

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out


class Run:
    """An existing run directory: its config, its data facts and its newest checkpoint."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise UsageError(f"{self.path} is not a ganforge run directory (no config.json); "
                             "give the folder that 'ganforge train' wrote")
        try:
            saved = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
            if isinstance(saved.get("train"), dict):
                saved["train"].setdefault("r1_every", 1)  # runs from before lazy R1 applied it on every D step
            self.config = RunConfig.from_dict(saved, where=str(self.path / "config.json"))
            self.data_state = json.loads((self.path / "data.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{self.path}: config.json or data.json cannot be read ({exc}); the run is damaged") from None
        self.domain = get_domain(self.data_state["domain"])
        self.log = RunLog(self.path / "metrics.jsonl")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.data_state["sample_shape"])

    def latest_checkpoint(self) -> Path:
        found = ckpt.list_checkpoints(self.path)
        if not found:
            raise UsageError(f"{self.path} has no checkpoint yet; train it first")
        return found[-1]

    def generator(self, device: torch.device | None = None) -> nn.Module:
        """The EMA generator of the newest checkpoint, in eval mode."""
        device = device or resolve_device(self.config.device)
        tensors, state = ckpt.read_checkpoint(self.latest_checkpoint())
        G_ema = build_generator(self.config, self.config.model.net, self.config.model.z_dim, self.sample_shape, device,
                                self.net_args)
        ckpt.load_module_weights(tensors, "G_ema", G_ema)
        set_progress([G_ema], state["step"] / max(self.config.train.steps, 1))
        return G_ema.eval()

    @property
    def net_args(self) -> dict[str, Any]:
        return dict(self.data_state.get("net_args", {}))

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, truncation: float | None = None, G: nn.Module | None = None) -> np.ndarray:
        """``n`` samples in the user's space from the EMA generator, reproducible by ``seed``."""
        if n < 1:
            raise UsageError(f"--n must be >= 1, got {n}")
        G = G or self.generator()
        z = latents(n, self.config.model.z_dim, seed, truncation, next(G.parameters()).device)
        return self.generate(z, G)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, G: nn.Module | None = None) -> np.ndarray:
        """Samples in the user's space for given latents ``z: [n, z_dim]``."""
        G = G or self.generator()
        z = z.to(next(G.parameters()).device)
        encoded = torch.cat([G(chunk) for chunk in z.split(4096)])
        return self.domain.decode(encoded, self.data_state)

    @torch.no_grad()
    def interpolate(self, pairs: int = 4, steps: int = 8, mode: str = "slerp", seed: int = 0,
                    truncation: float | None = None) -> np.ndarray:
        """``pairs`` latent paths of ``steps`` points each, endpoints included: the samples, pair by
        pair (``[pairs * steps, ...]``). Pair ``i`` runs from latent ``2i`` to ``2i + 1`` of
        ``latents(2 * pairs, z_dim, seed)``, so its ends are ``sample(2 * pairs, seed)[2i]`` and ``[2i + 1]``.
        ``mode`` is ``slerp`` (great circle, keeps the typical latent norm) or ``lerp`` (straight line).
        """
        if pairs < 1 or steps < 2:
            raise UsageError(f"--pairs must be >= 1 and --steps >= 2, got {pairs} and {steps}")
        if mode not in PATHS:
            raise UsageError(f"unknown interpolation '{mode}'; choose {' or '.join(PATHS)}")
        z = latents(2 * pairs, self.config.model.z_dim, seed, truncation)
        path = torch.cat([PATHS[mode](z[2 * i], z[2 * i + 1], steps) for i in range(pairs)])
        return self.generate(path)

    def load_data(self) -> Dataset:
        dataset = self.domain.load(self.config.data)
        if dataset.state["fingerprint"] != self.data_state["fingerprint"]:
            raise UsageError(f"the data at '{self.config.data.source}' changed since this run was trained; "
                             "restore the original file or train a new run")
        return dataset

    def evaluate(self, n: int = EVAL_N, seed: int = 0, dataset: Dataset | None = None, G: nn.Module | None = None,
                 quick: bool = False, features: str | None = None) -> dict[str, Any]:
        """Score ``n`` samples against the run's data with the domain's metrics (and, for images,
        FID/KID/precision-recall on the ``features`` extractor, e.g. ``digits-cnn``)."""
        dataset = dataset or self.load_data()
        samples = self.sample(n, seed, G=G)
        return self.domain.evaluate(samples, dataset, quick=quick, features=features)


def resolve(cfg: RunConfig) -> Dataset:
    """Resolve ``cfg`` in place as training will use it, and load its data; raises UsageError on
    anything that would fail later (unknown loss or net, a net that does not fit the data).

    Order: the user's keys, then the domain's recipe for keys left alone (with the data set's
    ``meta["defaults"]`` hints over it), then the data set's latent size and the domain's net.
    """
    validate(cfg)
    dataset = load_dataset(cfg)
    domain = get_domain(dataset.domain)
    # the domain's recipe, with the data set's own hints on top (e.g. a table's steps by its size)
    apply_defaults(cfg, {**domain.defaults, **dataset.meta.get("defaults", {})})
    loss = get_loss(cfg.train.loss)
    if (loss.penalty == "gp" or cfg.train.r1_weight > 0) and cfg.model.d_norm == "batch":
        if "model.d_norm" in cfg.explicit:
            raise UsageError("a gradient penalty (wgan-gp or train.r1_weight > 0) is per sample, which batch norm in D "
                             "breaks; set model.d_norm=layer or none")
        cfg.model.d_norm = "layer"  # the WGAN-GP paper's choice for a penalised critic
    validate(cfg)
    cfg.model.net = cfg.model.net or domain.default_net
    cfg.model.z_dim = cfg.model.z_dim or int(dataset.meta.get("z_dim", domain.default_z_dim))
    # build both nets once on the CPU, so a net that cannot take this data fails before anything is written
    cpu = torch.device("cpu")
    net_args = dataset.state.get("net_args", {})
    build_generator(cfg, cfg.model.net, cfg.model.z_dim, dataset.sample_shape, cpu, net_args)
    build_discriminator(cfg, cfg.model.net, dataset.sample_shape, cpu, net_args)
    return dataset


def new_run(cfg: RunConfig, out: Path | None) -> tuple[Path, Dataset]:
    """Create a fresh run directory with its resolved config; never touches an existing run."""
    dataset = resolve(cfg)
    path = out or next_run_dir(Path("runs"), cfg.data.source)
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"{path} already exists and is not empty; pick another --out, or continue it with --resume {path}")
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "config.json", cfg.to_dict())
    write_json(path / "data.json", {**dataset.state, "domain": dataset.domain, "sample_shape": list(dataset.sample_shape)})
    return path, dataset


def train(cfg: RunConfig, out: Path | None = None, resume: Path | None = None, steps: int | None = None,
          progress: bool = True, echo=print) -> dict[str, Any]:
    """Train a new run (``cfg``, written to ``out``) or continue ``resume``; returns the summary."""
    if resume is not None:
        run = Run(resume)
        cfg = run.config
        if steps is not None:
            cfg.train.steps = steps  # saved once the checkpoint has been verified
        validate(cfg)
        path, dataset = run.path, run.load_data()
    else:
        path, dataset = new_run(cfg, out)
        run = Run(path)
    with run_lock(path):
        return _train_locked(run, cfg, dataset, resume is not None, progress, echo)


def _train_locked(run: Run, cfg: RunConfig, dataset: Dataset, resuming: bool, progress: bool, echo) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    players = build_players(cfg, cfg.model.net, cfg.model.z_dim, dataset.sample_shape, device, run.net_args)
    callbacks = _Callbacks(run, dataset, echo)
    trainer = Trainer(cfg, players, dataset.train, device, callbacks, cond=dataset.cond, sampler=dataset.sampler)
    callbacks.trainer = trainer
    elapsed_before = 0.0
    if resuming:
        ckpt.remove_partial_saves(run.path)
        latest = run.latest_checkpoint()
        tensors, state = ckpt.read_checkpoint(latest)
        ckpt.restore(tensors, state, trainer.modules(), trainer.optimizers(), trainer.generators())
        trainer.step = state["step"]
        trainer.monitor.load_state(state["extra"].get("monitor", {}))
        elapsed_before = state["extra"].get("elapsed", 0.0)
        if trainer.step > cfg.train.steps:
            raise UsageError(f"{run.path} is already at step {trainer.step}; give --steps >= {trainer.step}")
        write_json(run.path / "config.json", cfg.to_dict())
        run.log.truncate_after(trainer.step)
        echo(f"resuming {run.path} from step {trainer.step} of {cfg.train.steps}")
    else:
        callbacks.on_checkpoint(0)
    callbacks.start(elapsed_before, trainer.step)
    bar = _progress_bar(cfg.train.steps, trainer.step, progress)
    callbacks.bar = bar
    try:
        trainer.run(progress=bar.update_to if bar else None)
    except TrainingDiverged as exc:
        if bar:
            bar.close()
        good = run.latest_checkpoint()
        summary = {"status": "diverged", "message": str(exc), "last_good_checkpoint": str(good), "run_dir": str(run.path)}
        write_json(run.path / "summary.json", summary)
        raise TrainingDiverged(f"{exc}; stopped, the last good checkpoint is kept at {good} "
                               "(lower the learning rates or try loss=wgan-gp)") from None
    if bar:
        bar.close()
    return callbacks.finish()


class _Bar:
    def __init__(self, total: int, initial: int) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=0.5)

    def update_to(self, step: int) -> None:
        self.tqdm.update(step - self.tqdm.n)

    def close(self) -> None:
        self.tqdm.close()


def _progress_bar(total: int, initial: int, enabled: bool) -> _Bar | None:
    return _Bar(total, initial) if enabled else None


class _Callbacks:
    """What the loop asks of the run directory: logging, evaluation, checkpoints, the summary."""

    def __init__(self, run: Run, dataset: Dataset, echo) -> None:
        self.run, self.dataset, self.echo = run, dataset, echo
        self.trainer: Trainer | None = None
        self.bar: _Bar | None = None
        self.last_record: dict = {}

    def start(self, elapsed_before: float, step: int) -> None:
        self.t0 = time.perf_counter() - elapsed_before
        self.start_step = step
        self.t_start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def on_log(self, record: dict) -> None:
        record = {**record, "time": round(self.elapsed(), 3)}
        self.last_record = record
        self.run.log.append(record)
        for text in record.get("warnings", []):
            self._say(f"warning at step {record['step']}: {text}")
        if self.bar:
            self.bar.tqdm.set_postfix(D=f"{record['loss_d']:.3f}", G=f"{record['loss_g']:.3f}",
                                      Dx=f"{record['d_real']:.2f}", DGz=f"{record['d_fake']:.2f}", refresh=False)

    def _say(self, text: str) -> None:
        if self.bar:
            self.bar.tqdm.write(text)
        else:
            self.echo(text)

    def on_eval(self, step: int, quick: bool = True) -> dict:
        trainer = self.trainer
        metrics = self.run.evaluate(EVAL_N, seed=0, dataset=self.dataset, G=trainer.p.G_ema, quick=quick)
        self.run.log.append({"step": step, "eval": metrics})
        return metrics

    def on_checkpoint(self, step: int) -> None:
        trainer = self.trainer
        if not all(bool(torch.isfinite(p).all()) for m in trainer.modules().values() for p in m.parameters()):
            raise TrainingDiverged(f"a weight became NaN/inf before the checkpoint at step {step}")
        extra = {"monitor": trainer.monitor.state(), "elapsed": self.elapsed() if hasattr(self, "t0") else 0.0}
        ckpt.save_checkpoint(self.run.path, step, trainer.modules(), trainer.optimizers(), trainer.generators(), extra)

    def finish(self) -> dict[str, Any]:
        trainer, run = self.trainer, self.run
        step = trainer.step
        self.on_checkpoint(step)
        wall = time.perf_counter() - self.t_start
        metrics = self.on_eval(step, quick=False)
        samples = run.sample(EVAL_N, seed=0, G=trainer.p.G_ema)
        samples_file = getattr(run.domain, "samples_file", "samples.npy")  # tables write samples.csv
        run.domain.save_samples(samples, run.path / samples_file)
        run.domain.plot(samples, self.dataset, run.path / "samples.png")
        cfg = run.config
        done_steps = step - self.start_step
        summary = {
            "status": "finished",
            "run_dir": str(run.path),
            "data": cfg.data.source,
            "domain": run.domain.name,
            "steps": step,
            "loss": cfg.train.loss,
            "seconds": round(self.elapsed(), 2),
            "samples_per_s": round(done_steps * cfg.train.batch * cfg.train.n_critic / wall, 1) if wall > 0 and done_steps else None,
            "last_log": {k: v for k, v in self.last_record.items() if k != "warnings"},
            "eval": metrics,
            "warnings": trainer.monitor.warnings,
            "samples_file": samples_file,
        }
        write_json(run.path / "summary.json", summary)
        return summary
