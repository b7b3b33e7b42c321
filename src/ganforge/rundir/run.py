"""The run directory, the unit of persistence, and the library functions the CLI calls.

A run directory holds::

    config.json        the resolved configuration (every default filled in)
    data.json          what is needed to decode samples without the data (scaler, fingerprint)
    metrics.jsonl      one JSON record per log interval, evaluation and warning
    checkpoints/       step-XXXXXXXX/{weights.safetensors,state.json}, newest two kept
    samples.npy/.png   samples from the final generator and their plot
    summary.json       the final one-screen summary
    tensorboard/       TensorBoard event files, with train.tensorboard=true (see ganforge.render.tracking)
"""

from __future__ import annotations

import contextlib
import errno
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
from ganforge.render.latent import latents, lerp, slerp
from ganforge.render.tracking import TensorBoardLog, require_tensorboard
from ganforge.engine import checkpoint as ckpt
from ganforge.engine import distributed
from ganforge.engine.distributed import Shard
from ganforge.engine.loop import Trainer, build_discriminator, build_generator, build_players, set_progress
from ganforge.engine.precision import resolve_amp

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


class RunLog:
    """Appends records to ``metrics.jsonl``; on resume, cuts it back to the checkpoint's step."""

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

    @property
    def task(self) -> str:
        """What G is conditioned on: ``none``, ``class``, or an image task (``sr``, ``edges``, ``pairs``)."""
        return self.data_state.get("task", "none")

    def class_index(self, label: str | int) -> int:
        """A class given by name (e.g. a folder name, or ``7`` for the digits) or by index."""
        names = self.data_state.get("class_names") or []
        if str(label) in names:
            return names.index(str(label))
        n_classes = self.net_args.get("n_classes", len(names))
        try:
            index = int(label)
        except ValueError:
            index = -1
        if not 0 <= index < n_classes:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise UsageError(f"unknown class '{label}'; this run's classes are: {shown}") from None
        return index

    def conditions(self, n: int, labels: Any = None, cond: torch.Tensor | None = None,
                   dataset: Dataset | None = None) -> torch.Tensor | None:
        """The ``n`` conditions G is given when sampling (None for an unconditional run).

        Class-conditional runs: ``labels`` is one class (name or index) for all ``n`` samples, or a
        list of ``n``; by default the classes in turn (0, 1, ..., K-1, 0, 1, ...). Image-conditional
        runs: ``cond`` (encoded sources ``[n, C, h, w]``), by default the held-out sources of the
        run's data set in order (cycled when ``n`` is larger), so sample ``i`` pairs with held-out image ``i``.
        """
        if self.task == "none":
            if labels is not None or cond is not None:
                raise UsageError("this run is unconditional; --label and --cond need a run trained with "
                                 "data.task=class, sr, edges or pairs")
            return None
        if self.task == "class":
            if cond is not None:
                raise UsageError("this run is class-conditional; give --label, not --cond")
            n_classes = int(self.net_args["n_classes"])
            if labels is None:
                return torch.arange(n) % n_classes
            if isinstance(labels, (list, tuple, np.ndarray)):
                if len(labels) != n:
                    raise UsageError(f"{len(labels)} labels for {n} samples; give one label, or one per sample")
                return torch.tensor([self.class_index(label) for label in labels], dtype=torch.long)
            return torch.full((n,), self.class_index(labels), dtype=torch.long)
        if labels is not None:
            raise UsageError(f"this run is image-conditional (data.task={self.task}); give --cond images, not --label")
        shape = list(self.net_args["cond_shape"])
        if cond is None:
            dataset = dataset or self.load_data()
            cond = dataset.holdout_cond if dataset.holdout_cond is not None else dataset.cond
            cond = cond[torch.arange(n) % len(cond)]
        if list(cond.shape[1:]) != shape:
            raise UsageError(f"condition images of shape {list(cond.shape[1:])} do not fit this run, which was trained "
                             f"on conditions of shape {shape}; resize them (channels x height x width)")
        return cond[:n]

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, truncation: float | None = None, G: nn.Module | None = None,
               labels: Any = None, cond: torch.Tensor | None = None, dataset: Dataset | None = None) -> np.ndarray:
        """``n`` samples in the user's space from the EMA generator, reproducible by ``seed``; for
        conditional runs given ``labels`` or ``cond`` (see :meth:`conditions`)."""
        if n < 1:
            raise UsageError(f"--n must be >= 1, got {n}")
        c = self.conditions(n, labels, cond, dataset)
        G = G or self.generator()
        z = latents(n, self.config.model.z_dim, seed, truncation, next(G.parameters()).device)
        return self.generate(z, G, c)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, G: nn.Module | None = None, c: torch.Tensor | None = None) -> np.ndarray:
        """Samples in the user's space for given latents ``z: [n, z_dim]`` (and conditions ``c: [n, ...]``)."""
        G = G or self.generator()
        device = next(G.parameters()).device
        z = z.to(device)
        if c is None:
            if self.task != "none":
                c = self.conditions(len(z))
            else:
                encoded = torch.cat([G(chunk) for chunk in z.split(4096)])
                return self.domain.decode(encoded, self.data_state)
        c = c.to(device)
        encoded = torch.cat([G(zc, cc) for zc, cc in zip(z.split(1024), c.split(1024))])
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
        c = self.conditions(pairs)  # conditional runs: one class (or source image) per path
        return self.generate(path, c=c.repeat_interleave(steps, dim=0) if c is not None else None)

    def load_data(self) -> Dataset:
        dataset = self.domain.load(self.config.data)
        if dataset.state["fingerprint"] != self.data_state["fingerprint"]:
            raise UsageError(f"the data at '{self.config.data.source}' changed since this run was trained; "
                             "restore the original file or train a new run")
        return dataset

    def evaluate(self, n: int = EVAL_N, seed: int = 0, dataset: Dataset | None = None, G: nn.Module | None = None,
                 quick: bool = False, features: str | None = None) -> dict[str, Any]:
        """Score ``n`` samples against the run's data with the domain's metrics (and, for images,
        FID/KID/precision-recall on the ``features`` extractor, e.g. ``digits-cnn``).

        Class-conditional runs are scored on samples of every class in turn (with ``features``, also
        the fraction the classifier assigns to their label); image-conditional runs on the outputs
        for the held-out sources, paired with their targets (L1, PSNR).
        """
        dataset = dataset or self.load_data()
        if self.task == "none":
            samples = self.sample(n, seed, G=G)
            return self.domain.evaluate(samples, dataset, quick=quick, features=features)
        if self.task == "class":
            labels = self.conditions(n)
            samples = self.sample(n, seed, G=G, labels=labels.tolist())
            return self.domain.evaluate(samples, dataset, quick=quick, features=features, labels=labels.numpy())
        if dataset.holdout_cond is not None and dataset.holdout is not None:
            sources, targets = dataset.holdout_cond, dataset.holdout
        else:
            sources, targets = dataset.cond, self.domain.decode(dataset.train, dataset.state)
        n = min(n, len(sources))
        samples = self.sample(n, seed, G=G, cond=sources[:n])
        return self.domain.evaluate(samples, dataset, quick=quick, features=features, targets=targets[:n])

    @torch.no_grad()
    def arithmetic(self, expr: str, n: int = 64, seed: int = 0, truncation: float | None = None,
                   neighbours: int = 8, noise: float = 0.25, pool: int = 2000,
                   classifier: str = "digits-cnn") -> Any:
        """Latent vector arithmetic (Radford et al. 2016 §6.3): ``expr`` adds and subtracts group means.

        A group is sample indices of the seeded batch ``latents(n, z_dim, seed, truncation)``, i.e.
        of ``sample(n, seed, truncation)`` (``"3,7,9 - 1,4 + 12"``), or ``class:K``: every latent of
        the pool ``latents(pool, z_dim, seed + 1, truncation)`` whose image the ``classifier``
        (an extractor with ``predict``, e.g. ``digits-cnn`` for 28x28 gray digits) calls class K.
        Returns a :class:`ganforge.render.latent.VectorArithmetic` (the latents) with ``samples`` filled:
        ``means [k, ...]``, ``result [1, ...]``, ``neighbours [neighbours, ...]`` and ``members``
        (up to three per group).
        """
        from ganforge.render.latent import (POOL_SEED_OFFSET, class_members, index_members, parse_expression,
                                     predict_classes, vector_arithmetic)

        groups = parse_expression(expr)
        if self.config.data.task != "none":
            raise UsageError(f"vector arithmetic needs an unconditional run; this one is conditioned "
                             f"(data.task={self.config.data.task})")
        if n < 1 or pool < 1 or neighbours < 0 or noise < 0:
            raise UsageError(f"--n and --pool must be >= 1 and --neighbours and --noise >= 0, got {n}, {pool}, "
                             f"{neighbours} and {noise}")
        G = self.generator()
        z_dim = self.config.model.z_dim
        batch = latents(n, z_dim, seed, truncation)
        pool_z = pool_labels = None
        members = []
        for group in groups:
            if group.label is None:
                members.append(index_members(batch, group))
                continue
            if pool_z is None:
                pool_z = latents(pool, z_dim, seed + POOL_SEED_OFFSET, truncation)
                pool_labels = predict_classes(self.generate(pool_z, G), classifier)
            members.append(class_members(pool_z, pool_labels, group))
        result = vector_arithmetic(groups, members, neighbours, noise, seed)
        result.samples = {
            "means": self.generate(result.means, G),
            "result": self.generate(result.result[None], G),
            "neighbours": self.generate(result.neighbours, G),
            "members": [self.generate(m[:3], G) for m in members],
        }
        return result


def resolve(cfg: RunConfig) -> Dataset:
    """Resolve ``cfg`` in place as training will use it, and load its data; raises UsageError on
    anything that would fail later (unknown loss or net, a net that does not fit the data).

    Order: the user's keys, then the domain's recipe for keys left alone (with the data set's
    ``meta["defaults"]`` hints over it), then the data set's latent size and the domain's net.
    """
    validate(cfg)
    if cfg.train.tensorboard:
        require_tensorboard()  # before the data is loaded or anything is written
    dataset = load_dataset(cfg)
    domain = get_domain(dataset.domain)
    if cfg.data.task != "none" and dataset.cond is None:
        raise UsageError(f"data.task={cfg.data.task} is not available for {domain.name} data; use data.task=none")
    # the domain's recipe, with the data set's own hints on top (e.g. a table's steps by its size)
    recipe = {**domain.defaults, **dataset.meta.get("defaults", {})}
    if cfg.model.family == "vae":
        from ganforge.families.vae import VAE_DEFAULTS

        recipe.update(VAE_DEFAULTS)
    if cfg.model.family == "timegan":
        from ganforge.families import timegan

        recipe.update(timegan.TIMEGAN_DEFAULTS)
    apply_defaults(cfg, recipe)
    if cfg.model.family == "timegan":
        timegan.check(cfg, dataset)  # its own networks: the net is not the domain's
        cfg.model.net = timegan.NET
    loss = get_loss(cfg.train.loss)
    if (loss.penalty == "gp" or cfg.train.r1_weight > 0) and cfg.model.d_norm == "batch":
        if "model.d_norm" in cfg.explicit:
            raise UsageError("a gradient penalty (wgan-gp or train.r1_weight > 0) is per sample, which batch norm in D "
                             "breaks; set model.d_norm=layer or none")
        cfg.model.d_norm = "layer"  # the WGAN-GP paper's choice for a penalised critic
    validate(cfg)
    resolve_amp(cfg.train.amp, resolve_device(cfg.device))  # fp16 without CUDA stops before anything is written
    cfg.model.net = cfg.model.net or domain.default_net
    cfg.model.z_dim = cfg.model.z_dim or int(dataset.meta.get("z_dim", domain.default_z_dim))
    # build both nets once on the CPU, so a net that cannot take this data fails before anything is written
    cpu = torch.device("cpu")
    net_args = dataset.state.get("net_args", {})
    build_generator(cfg, cfg.model.net, cfg.model.z_dim, dataset.sample_shape, cpu, net_args)
    if cfg.model.family != "timegan":  # TimeGAN's D judges latents, not windows (ganforge.nets.timegan)
        build_discriminator(cfg, cfg.model.net, dataset.sample_shape, cpu, net_args)
    if cfg.model.family == "vae":
        from ganforge.families import vae

        vae.check(cfg, dataset)
    return dataset


def new_run(cfg: RunConfig, out: Path | None) -> tuple[Path, Dataset]:
    """Create a fresh run directory with its resolved config; never touches an existing run."""
    dataset = resolve(cfg)
    return create_run_dir(cfg, dataset, out), dataset


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


def train(cfg: RunConfig, out: Path | None = None, resume: Path | None = None, steps: int | None = None,
          progress: bool = True, echo=print) -> dict[str, Any] | None:
    """Train a new run (``cfg``, written to ``out``) or continue ``resume``; returns the summary.

    Started by torchrun (WORLD_SIZE > 1 in the environment), every process calls this and they
    train together (see ganforge.engine.distributed); rank 0 writes the run directory and returns
    the summary, the other ranks return None.
    """
    shard = distributed.init_from_env()
    try:
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
    if resume is not None:
        # every rank reads the run: on several machines it must be on a shared filesystem
        run = Run(resume)
        cfg = run.config
        if steps is not None:
            cfg.train.steps = steps  # saved once the checkpoint has been verified
        validate(cfg)
        if cfg.train.tensorboard:
            require_tensorboard()
        shard.local_batch(cfg.train.batch, cfg.train.pack)
        dataset = run.load_data()
    else:
        dataset = resolve(cfg)  # on every rank: deterministic, so each holds the same data and config
        shard.local_batch(cfg.train.batch, cfg.train.pack)  # the resolved batch, before anything is written
        path = Path(_on_main(shard, lambda: str(create_run_dir(cfg, dataset, out))))
        run = Run(path) if shard.is_main else None
    if not shard.is_main:
        progress, echo = False, lambda *_: None
    with contextlib.ExitStack() as stack:
        _on_main(shard, lambda: stack.enter_context(run_lock(run.path)))  # rank 0 alone holds the lock
        with disk_errors(run.path if run is not None else None):
            return _train_locked(run, cfg, dataset, resume is not None, progress, echo, shard)


def _train_locked(run: Run | None, cfg: RunConfig, dataset: Dataset, resuming: bool, progress: bool, echo,
                  shard: Shard = Shard()) -> dict[str, Any] | None:
    """Train with the run directory locked; on ranks other than 0, ``run`` may be None (nothing is written)."""
    device = distributed.device_for(shard, resolve_device(cfg.device))
    if cfg.model.family == "vae":  # not a game: its own short loop (ganforge.families.vae)
        from ganforge.families.vae import train_vae

        return train_vae(run, cfg, dataset, resuming, progress, echo, shard.world, device)
    if cfg.model.family == "timegan":  # five networks in three phases (ganforge.families.timegan)
        from ganforge.families.timegan import train_timegan

        return train_timegan(run, cfg, dataset, resuming, progress, echo, shard.world, device)
    # data.json's net_args; ranks other than 0 may have no run directory to read, only the same data
    net_args = run.net_args if run is not None else dataset.state.get("net_args", {})
    players = build_players(cfg, cfg.model.net, cfg.model.z_dim, dataset.sample_shape, device, net_args)
    callbacks = _Callbacks(run, dataset, echo, shard) if shard.is_main else _RankCallbacks(shard)
    trainer = Trainer(cfg, players, dataset.train, device, callbacks, cond=dataset.cond, sampler=dataset.sampler,
                      shard=shard)
    callbacks.trainer = trainer
    elapsed_before = 0.0
    if resuming:
        if shard.is_main:
            ckpt.remove_partial_saves(run.path)
        tensors, state = ckpt.read_checkpoint(run.latest_checkpoint())
        ckpt.restore(tensors, state, trainer.modules(), trainer.optimizers(), trainer.generators())
        trainer.step = state["step"]
        trainer.monitor.load_state(state["extra"].get("monitor", {}))
        trainer.precision.load_state(state["extra"].get("grad_scaler"))
        elapsed_before = state["extra"].get("elapsed", 0.0)
        if trainer.step > cfg.train.steps:
            raise UsageError(f"{run.path} is already at step {trainer.step}; give --steps >= {trainer.step}")
        if shard.is_main:
            write_json(run.path / "config.json", cfg.to_dict())
            run.log.truncate_after(trainer.step)
        echo(f"resuming {run.path} from step {trainer.step} of {cfg.train.steps}"
             + (f" on {shard.world} processes" if shard.world > 1 else ""))
    else:
        callbacks.on_checkpoint(0)
    distributed.seed_other_ranks(shard, cfg.seed, trainer.step)
    try:
        return _play(run, trainer, callbacks, elapsed_before, progress, shard)
    finally:
        callbacks.close()  # TensorBoard events reach the disk however the run ends


def _play(run: Run | None, trainer: Trainer, callbacks: "_Callbacks | _RankCallbacks", elapsed_before: float,
          progress: bool, shard: Shard) -> dict[str, Any] | None:
    """Train to the last step with a progress bar, then finish (or record the divergence)."""
    callbacks.start(elapsed_before, trainer.step)
    bar = _progress_bar(trainer.t.steps, trainer.step, progress)
    callbacks.bar = bar
    try:
        trainer.run(progress=bar.update_to if bar else None)
    except OSError:
        if bar:
            bar.close()  # the error line (see disk_errors) goes below a finished bar
        raise
    except TrainingDiverged as exc:
        if bar:
            bar.close()
        if not shard.is_main:
            raise
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

    def __init__(self, run: Run, dataset: Dataset, echo, shard: Shard = Shard()) -> None:
        self.run, self.dataset, self.echo, self.shard = run, dataset, echo, shard
        self.trainer: Trainer | None = None
        self.bar: _Bar | None = None
        self.last_record: dict = {}
        self.tensorboard: TensorBoardLog | None = None

    def start(self, elapsed_before: float, step: int) -> None:
        from ganforge.render.pictures import prune_frames

        self.t0 = time.perf_counter() - elapsed_before
        self.start_step = step
        self.t_start = time.perf_counter()
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
            self.bar.tqdm.set_postfix(D=f"{record['loss_d']:.3f}", G=f"{record['loss_g']:.3f}",
                                      Dx=f"{record['d_real']:.2f}", DGz=f"{record['d_fake']:.2f}", refresh=False)
        t, step = self.trainer.t, record["step"]
        # a frame at the first logged step at or after each multiple of snapshot_every (the last
        # step's frame is drawn by finish); a step whose losses are NaN/inf is about to stop the run
        if t.snapshot_every and step != t.steps and np.isfinite([record["loss_d"], record["loss_g"]]).all() and \
                step // t.snapshot_every != (step - t.log_every) // t.snapshot_every:
            self.snapshot(step)

    def snapshot(self, step: int) -> None:
        """Draw G_ema's samples of the fixed progress latents (see ganforge.render.pictures) into
        ``RUN/progress/step-XXXXXXXX.png``; for conditional runs with the loop's fixed conditions."""
        from ganforge.render.pictures import FRAME_SEED, frame_count, frame_path, write_frame

        trainer, run = self.trainer, self.run
        if not trainer.t.snapshot_every:
            return
        n, cond = frame_count(run.sample_shape), trainer.fixed_cond
        if cond is not None:
            n = min(n, len(cond))
            cond = cond[:n]
        z = latents(n, trainer.p.z_dim, FRAME_SEED, device=trainer.device)
        with torch.no_grad():
            encoded = trainer.p.G_ema(z) if cond is None else trainer.p.G_ema(z, cond)
        write_frame(run.domain, run.domain.decode(encoded, run.data_state), self.dataset, frame_path(run.path, step))
        if self.tensorboard:
            self.tensorboard.picture("progress", frame_path(run.path, step), step)

    def _say(self, text: str) -> None:
        if self.bar:
            self.bar.tqdm.write(text)
        else:
            self.echo(text)

    def on_eval(self, step: int, quick: bool = True) -> dict:
        trainer = self.trainer
        metrics = self.run.evaluate(EVAL_N, seed=0, dataset=self.dataset, G=trainer.p.G_ema, quick=quick)
        self.run.log.append({"step": step, "eval": metrics})
        if self.tensorboard:
            self.tensorboard.evaluation(step, metrics)
        return metrics

    def on_checkpoint(self, step: int) -> None:
        trainer = self.trainer
        _check_finite(trainer, step)
        extra = {"monitor": trainer.monitor.state(), "elapsed": self.elapsed() if hasattr(self, "t0") else 0.0}
        if trainer.precision.scaler is not None:
            extra["grad_scaler"] = trainer.precision.state()  # the fp16 loss scale it has found
        if self.tensorboard:
            self.tensorboard.flush()  # what a resume keeps (up to this step) is on disk before the checkpoint is
        ckpt.save_checkpoint(self.run.path, step, trainer.modules(), trainer.optimizers(), trainer.generators(), extra)
        self.shard.barrier()  # the other ranks wait until the checkpoint is complete on disk

    def finish(self) -> dict[str, Any]:
        trainer, run = self.trainer, self.run
        step = trainer.step
        self.on_checkpoint(step)
        wall = time.perf_counter() - self.t_start
        metrics = self.on_eval(step, quick=False)
        samples = run.sample(EVAL_N, seed=0, G=trainer.p.G_ema, dataset=self.dataset)
        samples_file = getattr(run.domain, "samples_file", "samples.npy")  # tables write samples.csv
        run.domain.save_samples(samples, run.path / samples_file)
        run.domain.plot(samples, self.dataset, run.path / "samples.png")
        if self.tensorboard:
            self.tensorboard.picture("samples", run.path / "samples.png", step)
        if trainer.t.snapshot_every:
            from ganforge.render.pictures import write_progress_gif

            self.snapshot(step)
            write_progress_gif(run.path)
        cfg = run.config
        done_steps = step - self.start_step
        summary = {
            "status": "finished",
            "run_dir": str(run.path),
            "data": cfg.data.source,
            "domain": run.domain.name,
            "steps": step,
            "loss": cfg.train.loss,
            "precision": trainer.precision.summary(),  # what train.amp and train.compile resolved to
            "seconds": round(self.elapsed(), 2),
            "samples_per_s": round(done_steps * cfg.train.batch * cfg.train.n_critic / wall, 1) if wall > 0 and done_steps else None,
            "last_log": {k: v for k, v in self.last_record.items() if k != "warnings"},
            "eval": metrics,
            "warnings": trainer.monitor.warnings,
            "samples_file": samples_file,
        }
        write_json(run.path / "summary.json", summary)
        return summary

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()
            self.tensorboard = None

def _check_finite(trainer: Trainer, step: int) -> None:
    if not all(bool(torch.isfinite(p).all()) for m in trainer.modules().values() for p in m.parameters()):
        raise TrainingDiverged(f"a weight became NaN/inf before the checkpoint at step {step}")


class _RankCallbacks:
    """The callbacks of ranks other than 0: they write nothing, and wait for rank 0's checkpoints."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.trainer: Trainer | None = None
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

    def finish(self) -> None:
        self.on_checkpoint(self.trainer.step)

    def close(self) -> None:
        pass
