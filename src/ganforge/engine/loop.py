"""Algorithm 1 of Goodfellow et al. (2014): k discriminator steps, then one generator step.

The loop knows only tensors: a data tensor ``[N, *shape]``, a generator and a discriminator from
the net registry, a loss from the loss registry. Everything data-specific is a callback.

All randomness of training (minibatch indices, latents, label noise, instance noise) comes from
one ``torch.Generator`` whose state is checkpointed with the weights and optimiser moments, so a
resumed run repeats the uninterrupted one bit for bit on the same machine.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.errors import TrainingDiverged
from ganforge.losses import get_loss, gradient_penalty, r1_penalty
from ganforge.nets import get_net
from ganforge.nets.registry import check_net_args
from ganforge.engine import tricks
from ganforge.engine.augment import Augment, check_augment
from ganforge.nets.layers import MinibatchStdDev
from ganforge.engine.distributed import Shard, data_parallel, sync_batch_norm
from ganforge.engine.monitor import Monitor, diversity_ratio, grad_norm
from ganforge.engine.precision import Precision
from ganforge.engine.steps import Callbacks, StepLoop
from ganforge.metrics.extractors import num_threads

BATCH_DEPENDENT = (nn.modules.batchnorm._BatchNorm, MinibatchStdDev)
SMALL_STEP = 5e6
"""Multiply-adds of one forward of G and D on a minibatch, below which a CPU step runs on one thread:
the points recipe's matrices (96 and 64 wide, batch 128: 3.7e6) are too small for two threads to
share (measured: 1.84-1.87 ms a step on one thread, 1.86-2.59 ms on two at twice the CPU time;
docs/BENCHMARKS.md). For 128-wide nets (8.7e6) two measurements disagreed, so they keep torch's setting."""
DIVERSITY_N = 256
EMA_RAMPUP = 0.1


@dataclass
class Players:
    """The two networks, the generator's moving average and their optimisers."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    z_dim: int


def _adam(params, lr: float, betas: tuple[float, float], device: torch.device) -> torch.optim.Optimizer:
    # The fused kernel is fastest where supported; foreach otherwise. Both are deterministic.
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


def build_generator(cfg: RunConfig, net: str, z_dim: int, sample_shape: tuple[int, ...], device: torch.device,
                    net_args: dict | None = None) -> nn.Module:
    """G alone, for sampling from a checkpoint (its weights are loaded afterwards).

    ``net_args`` are the data set's facts a net family needs beyond the sample shape, saved with
    the run (e.g. ``n_classes`` for class-conditional nets, ``cond_shape`` for image-conditional ones).
    """
    builder = get_net(net).generator
    check_net_args(net, builder, net_args or {})
    return builder(cfg.model, z_dim, sample_shape, **(net_args or {})).to(device)


def build_discriminator(cfg: RunConfig, net: str, sample_shape: tuple[int, ...], device: torch.device,
                        net_args: dict | None = None) -> nn.Module:
    """D for samples of ``sample_shape``, with PacGAN packing folded into its input."""
    check_augment(cfg.train, sample_shape)  # what D will see: augmentation needs images, before anything is written
    shape = tricks.packed_shape(sample_shape, cfg.train.pack)
    builder = get_net(net).discriminator
    check_net_args(net, builder, net_args or {})
    return builder(cfg.model, shape, **(net_args or {})).to(device)


def build_players(cfg: RunConfig, net: str, z_dim: int, sample_shape: tuple[int, ...], device: torch.device,
                  net_args: dict | None = None) -> Players:
    """Build G, D (with packing folded into D's input), G_ema and Adam optimisers, seeded by ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    G = build_generator(cfg, net, z_dim, sample_shape, device, net_args)
    D = build_discriminator(cfg, net, sample_shape, device, net_args)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    t = cfg.train
    opt_G = _adam(G.parameters(), t.lr_g, (t.beta1, t.beta2), device)
    opt_D = _adam(D.parameters(), t.lr_d, (t.beta1, t.beta2), device)
    return Players(G, D, G_ema, opt_G, opt_D, z_dim)


Sampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]
"""``sampler(batch, generator) -> (row indices [batch] int64, conditions [batch, ...])``: how a
conditional data set draws a minibatch when uniform rows with their own conditions are not what it
wants, e.g. CTGAN's training-by-sampling (a condition first, then a real row that satisfies it)."""

BatchTransform = Callable[[Tensor], Tensor]
"""``transform(rows) -> encoded rows``: applied to each minibatch of the data tensor before anything
sees it, e.g. uint8 image pixels -> float32 in [-1, 1], so the data set stays compact in memory."""


def take_rows(data: Tensor, index: Tensor, transform: BatchTransform | None) -> Tensor:
    """``data[index]``, through ``transform`` when there is one."""
    rows = data[index]
    return rows if transform is None else transform(rows)


def set_progress(modules, fraction: float) -> None:
    """Tell nets with a training schedule (progressive growing) how far training is, in [0, 1]."""
    for module in modules:
        hook = getattr(module, "set_progress", None)
        if hook is not None:
            hook(fraction)


def split_d_output(out: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor | None]:
    """D returns logits ``[N]``, or ``(logits, class_logits)`` when it has an auxiliary classifier (ACGAN)."""
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


class Trainer(StepLoop):
    """Sequences D and G steps, EMA, logging, evaluation and checkpoints; written once for every domain.

    Conditional training: with ``cond`` (one condition per training sample: int64 class labels
    ``[N]`` or float source images ``[N, C, h, w]``), G is called as ``G(z, c)`` and D as
    ``D(x, c)``; fakes are made for the conditions of the real minibatch. D may return
    ``(logits, class_logits)`` (ACGAN): both players then add ``train.aux_weight`` times the
    cross-entropy of the class head. ``train.l1_weight`` adds the L1 distance between G(z, c) and
    the sample paired with c to G's loss (pix2pix).

    ``sampler`` (with ``cond``) replaces the uniform choice of minibatch rows: it returns the rows
    and the conditions both players train on (fakes are made for the same conditions); all its
    randomness must come from the generator it is given, so a resumed run repeats itself.

    ``batch_transform`` (the data set's, e.g. uint8 image pixels -> float32 in [-1, 1]) is applied
    to every set of ``data`` rows taken (minibatches, the fixed real rows, the L1 term's targets).

    ``shard`` (see ganforge.engine.distributed): on several ranks, every random draw is made for the
    global batch and cut to this rank's rows, so the generator's stream is a single process's; G and
    D train through DistributedDataParallel wrappers (``G_train``, ``D_train``) that average gradients.

    ``precision`` (see ganforge.engine.precision, ``train.amp`` and ``train.compile``): the nets'
    forward passes run under its autocast and their outputs are cast to float32 for the losses;
    ``G_fwd``/``D_fwd`` are the (possibly compiled) nets for forwards outside the DDP wrappers.
    """

    def __init__(self, cfg: RunConfig, players: Players, data: Tensor, device: torch.device, callbacks: Callbacks,
                 cond: Tensor | None = None, sampler: Sampler | None = None, shard: Shard = Shard(),
                 batch_transform: BatchTransform | None = None) -> None:
        self.cfg, self.t = cfg, cfg.train
        self.p = players
        self.shard = shard
        shard.local_batch(self.t.batch, self.t.pack)  # a global batch the ranks cannot share is a usage error
        self.precision = Precision(self.t, device, (players.G, players.D))
        compiled = self.precision.compile
        # the wrappers share the plain modules' parameters; the plain ones are saved, evaluated, frozen
        self.G_train = compiled(data_parallel(sync_batch_norm(players.G, shard, device), shard, device))
        idle_head = cfg.model.cond_d == "acgan" and self.t.aux_weight == 0  # its classifier head gets no gradient
        self.D_train = compiled(data_parallel(sync_batch_norm(players.D, shard, device), shard, device, idle_head))
        # on one process the training wrappers are the nets themselves (compiled or not)
        self.G_fwd = self.G_train if shard.world == 1 else compiled(players.G)
        self.D_fwd = self.D_train if shard.world == 1 else compiled(players.D)
        self.data = data.to(device)
        self.batch_transform = batch_transform  # e.g. uint8 pixels -> floats, for every minibatch of data rows
        self.cond = cond.to(device) if cond is not None else None
        if self.cond is not None and len(self.cond) != len(self.data):
            raise ValueError(f"{len(self.cond)} conditions for {len(self.data)} samples")
        if sampler is not None and self.cond is None:
            raise ValueError("a minibatch sampler needs the data set's conditions (cond)")
        self.batch_sampler = sampler
        self.device = device
        self.callbacks = callbacks
        self.loss = get_loss(self.t.loss)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        # what D sees, real and fake, in both steps (train.augment; ADA's p is checkpointed in state())
        self.augment = Augment(self.t, tuple(data.shape[1:]), self.gen, shard)
        self.monitor = Monitor(device, r1_weight=self.t.r1_weight)
        # Without batch-dependent layers, one D call on [real; fake] equals two separate calls, only faster.
        self.batch_dependent_D = any(isinstance(m, BATCH_DEPENDENT) for m in players.D.modules())
        self.step = 0
        self.samples_per_step = self.t.batch * self.t.n_critic
        self.d_steps_since_log = 0
        self.kept: tuple[Tensor, Tensor, Tensor | None] | None = None  # last D step's fakes (with G's graph), rows, conditions
        fixed = torch.Generator(device=device).manual_seed(cfg.seed + 2)
        self.fixed_z = torch.randn(DIVERSITY_N, players.z_dim, generator=fixed, device=device)
        fixed_index = torch.randint(len(self.data), (DIVERSITY_N,), generator=fixed, device=device)
        self.fixed_real = take_rows(self.data, fixed_index, batch_transform)
        self.fixed_cond = self.cond[fixed_index] if self.cond is not None else None
        # the tensors G's moving average pairs up, listed once (loading a checkpoint copies into them)
        G, G_ema = players.G, players.G_ema
        self.ema_pairs = (list(G_ema.parameters()), list(G.parameters()), list(G_ema.buffers()), list(G.buffers()))

    # --- the two phases -------------------------------------------------------------------
    def latents(self) -> Tensor:
        """This rank's latents of the global batch's draw."""
        return self.shard.take(torch.randn(self.t.batch, self.p.z_dim, generator=self.gen, device=self.device))

    def generate(self, z: Tensor, c: Tensor | None, G: nn.Module | None = None) -> Tensor:
        G = self.G_fwd if G is None else G  # `or` would ask an nn.Sequential for its length
        with self.precision.autocast():
            fake = G(z) if c is None else G(z, c)
        return fake.float()  # a no-op without mixed precision

    def discriminate(self, x: Tensor, c: Tensor | None, noise_std: float, D: nn.Module,
                     segments: int = 1) -> tuple[Tensor, Tensor | None]:
        """D's logits on ``x`` (with instance noise and packing), and its class logits if it has them.

        ``x`` holds this rank's rows of ``segments`` global batches (``[real; fake]`` is two).
        """
        take = partial(self.shard.take, segments=segments)
        x = tricks.pack(tricks.add_instance_noise(x, noise_std, self.gen, self.shard.world, take), self.t.pack)
        with self.precision.autocast():
            logits, class_logits = split_d_output(D(x) if c is None else D(x, c))
        return logits.float(), class_logits.float() if class_logits is not None else None

    def minibatch(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """This rank's rows of the global minibatch: (row indices, samples, conditions)."""
        take = self.shard.take
        if self.batch_sampler is not None:
            index, c = self.batch_sampler(self.t.batch, self.gen)
            index, c = take(index), take(c)
            return index, take_rows(self.data, index, self.batch_transform), c
        index = take(torch.randint(len(self.data), (self.t.batch,), generator=self.gen, device=self.device))
        c = self.cond[index] if self.cond is not None else None
        return index, take_rows(self.data, index, self.batch_transform), c

    def aux_loss(self, class_logits: Tensor | None, c: Tensor | None) -> Tensor | float:
        if class_logits is None or self.t.aux_weight == 0:
            return 0.0
        return self.t.aux_weight * F.cross_entropy(class_logits, c)

    def d_step(self, noise_std: float, index: int = 0) -> None:
        t, D = self.t, self.D_fwd
        batch_index, real, c = self.minibatch()
        if t.reuse_fakes and index == t.n_critic - 1:
            # keep G's graph for the G step; D trains on a detached copy
            kept_fake = self.generate(self.latents(), c, self.G_train)
            self.kept = (kept_fake, batch_index, c)
            fake = kept_fake.detach()
        else:
            with torch.no_grad():
                fake = self.generate(self.latents(), c)
        # D sees real and fake through the same augmentations, and the penalties see what D sees (as StyleGAN2-ADA)
        real, fake = self.augment(real), self.augment(fake)
        # one forward through the DDP wrapper per backward arms its gradient all-reduce; further calls in
        # the step (the second batch, the penalties) use the plain D, whose parameters are the same
        if t.separate_batches and self.batch_dependent_D:
            real_logits, real_aux = self.discriminate(real, c, noise_std, self.D_train)
            fake_logits, fake_aux = self.discriminate(fake, c, noise_std, D)
        else:
            both, both_aux = self.discriminate(torch.cat([real, fake]), None if c is None else torch.cat([c, c]),
                                               noise_std, self.D_train, segments=2)
            real_logits, fake_logits = both.chunk(2)
            real_aux, fake_aux = both_aux.chunk(2) if both_aux is not None else (None, None)
        real_target, fake_target = self.label_targets(real_logits.shape[0])
        loss_d = self.loss.d(real_logits, fake_logits, real_target, fake_target)
        aux = self.aux_loss(real_aux, c) + self.aux_loss(fake_aux, c)
        total = loss_d + aux + self.penalties(real, fake, self.step * t.n_critic + index, c)
        self.p.opt_D.zero_grad(set_to_none=True)
        self.precision.backward(total)
        self.precision.step(self.p.opt_D)
        if t.weight_clip > 0:
            with torch.no_grad():
                for param in self.p.D.parameters():
                    param.clamp_(-t.weight_clip, t.weight_clip)
        self.monitor.record_d(real_logits.detach(), fake_logits.detach(), loss_d)
        self.augment.observe(real_logits.detach(), self.step * t.n_critic + index)  # ADA: r_t steers p
        self.d_steps_since_log += 1

    def label_targets(self, n: int) -> tuple[Tensor | float, Tensor | float]:
        """This rank's ``n`` real and fake targets of the global batch's draw."""
        real, fake = tricks.label_targets(self.t, n * self.shard.world, self.gen, self.device)
        take = self.shard.take
        return (take(real) if isinstance(real, Tensor) else real), (take(fake) if isinstance(fake, Tensor) else fake)

    def penalties(self, real: Tensor, fake: Tensor, d_step_index: int = 0, c: Tensor | None = None) -> Tensor | float:
        t, extra = self.t, 0.0
        scale = self.precision.grad_scale

        def D(x: Tensor) -> Tensor:
            # the plain D, never a compiled one: the penalties need a double backward
            with self.precision.autocast():
                logits = split_d_output(self.p.D(x) if c is None else self.p.D(x, c))[0]
            return logits.float()

        if self.loss.penalty == "gp":
            real_p, fake_p = tricks.pack(real, t.pack), tricks.pack(fake, t.pack)
            eps = self.shard.take(torch.rand(real_p.shape[0] * self.shard.world, generator=self.gen, device=self.device))
            extra = extra + t.gp_weight * gradient_penalty(D, real_p, fake_p, eps, scale)
        if t.r1_weight > 0 and d_step_index % t.r1_every == 0:
            # lazy R1: every r1_every-th D step (counted over the whole run, so resuming repeats it),
            # weighted by r1_every so its average gradient matches; under Adam the effect is somewhat
            # weaker than R1 on every step (the default gamma was tuned with lazy R1)
            extra = extra + t.r1_weight * t.r1_every * r1_penalty(D, tricks.pack(real, t.pack), scale)
        return extra

    def g_step(self, noise_std: float) -> None:
        D, t = self.p.D, self.t
        D.requires_grad_(False)  # G's step must not touch D: no gradients are even computed for it
        try:
            if self.kept is not None:
                fake, batch_index, c = self.kept
            else:
                batch_index, _, c = self.minibatch() if self.cond is not None else (None, None, None)
                fake = self.generate(self.latents(), c, self.G_train)
            self.kept = None
            # D outside its DDP wrapper: frozen, it has no gradients for the wrapper to wait for;
            # G's gradient passes through the augmentations D's inputs go through
            fake_logits, fake_aux = self.discriminate(self.augment(fake), c, noise_std, self.D_fwd)
            loss_g = self.loss.g(fake_logits)
            loss_g = loss_g + self.aux_loss(fake_aux, c)
            if t.l1_weight > 0 and batch_index is not None:
                paired = take_rows(self.data, batch_index, self.batch_transform)
                loss_g = loss_g + t.l1_weight * (fake - paired).abs().mean()
            self.p.opt_G.zero_grad(set_to_none=True)
            self.precision.backward(loss_g)
            self.precision.step(self.p.opt_G)
        finally:
            D.requires_grad_(True)
        self.monitor.record_g(loss_g)

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.t.ema <= 0:
            self.p.G_ema.load_state_dict(self.p.G.state_dict())
            return
        # ramp-up (as in StyleGAN): average over about the last 10% of the steps so far, capped by
        # train.ema, so early on G_ema is not an average of very different, fast-moving generators
        decay = min(self.t.ema, 1.0 - 1.0 / (1.0 + EMA_RAMPUP * self.step))
        ema_params, params, ema_buffers, buffers = self.ema_pairs
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        if buffers:
            torch._foreach_copy_(ema_buffers, buffers)

    def set_learning_rates(self) -> None:
        if self.t.lr_decay <= 0:
            return
        progress = self.step / max(self.t.steps, 1)
        factor = 1.0 - self.t.lr_decay * 0.5 * (1 - math.cos(math.pi * min(progress, 1.0)))
        for opt, lr in ((self.p.opt_G, self.t.lr_g), (self.p.opt_D, self.t.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * factor

    def threads(self):
        """One CPU thread for fully connected nets whose step is too small to share (:data:`SMALL_STEP`)."""
        nets = (self.p.G, self.p.D)
        linear = all(isinstance(m, (nn.Linear, nn.Embedding, nn.LayerNorm, nn.BatchNorm1d))
                     or next(m.parameters(recurse=False), None) is None for net in nets for m in net.modules())
        macs = sum(p.numel() for net in nets for p in net.parameters()) * self.t.batch
        if self.device.type == "cpu" and linear and macs <= SMALL_STEP:
            return num_threads(1)
        return super().threads()

    # --- the loop (its cadence is StepLoop.run) ----------------------------------------------
    def begin(self) -> None:
        self.p.G.train()
        self.p.D.train()

    def iteration(self) -> None:
        """k D steps, one G step, then the moving average of G; raises TrainingDiverged on NaN/inf."""
        t = self.t
        set_progress((self.p.G, self.p.D, self.p.G_ema), self.step / max(t.steps, 1))
        self.set_learning_rates()
        noise_std = tricks.instance_noise_std(t, self.step)
        for i in range(t.n_critic):
            self.d_step(noise_std, i)
        self.g_step(noise_std)
        self.step += 1
        self.update_ema()

    def end(self) -> None:
        set_progress((self.p.G, self.p.D, self.p.G_ema), self.step / max(self.t.steps, 1))

    def log(self) -> None:
        self.p.G.eval()
        with torch.no_grad():
            diversity = diversity_ratio(self.generate(self.fixed_z, self.fixed_cond), self.fixed_real)
        self.p.G.train()
        self.monitor.merge_ranks(self.shard)  # every rank logs the statistics of the global batch
        self.augment.merge_ranks()  # ADA's partly counted r_t goes into rank 0's checkpoint
        aug = self.augment  # with augmentation on, its p and r_t are logged (aug_p, ada_rt) and watched
        record = self.monitor.flush(self.step, self.d_steps_since_log, grad_norm(self.p.D), grad_norm(self.p.G),
                                    diversity, aug.p if aug.enabled else None, self.t.ada_target if aug.ada else None)
        self.d_steps_since_log = 0
        precision = self.precision
        if precision.scaler is not None:
            record["amp_skipped"], precision.skipped = precision.skipped, 0
        # a step the fp16 gradient scaler skipped leaves inf/NaN gradients behind: normal, not a divergence
        unchecked = [key for key, opt in (("grad_norm_d", self.p.opt_D), ("grad_norm_g", self.p.opt_G))
                     if precision.skipped_last(opt)]
        finite = Monitor.finite(record, unchecked) and all(bool(torch.isfinite(p).all()) for p in self.p.G.parameters())
        self.callbacks.on_log(record)
        if not finite:
            raise TrainingDiverged(f"a loss, gradient or weight became NaN/inf at step {self.step}")

    # --- state for checkpoints --------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.p.G, "D": self.p.D, "G_ema": self.p.G_ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_G": self.p.opt_G, "opt_D": self.p.opt_D}

    def generators(self) -> dict[str, torch.Generator]:
        return {"train": self.gen, "torch_global": torch.default_generator}

    def sampler(self) -> nn.Module:
        return self.p.G_ema

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"monitor": self.monitor.state()}
        if self.precision.scaler is not None:
            state["grad_scaler"] = self.precision.state()  # the fp16 loss scale it has found
        if self.augment.enabled:
            state["augment"] = self.augment.state()  # ADA's p and the r_t signs counted so far
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.monitor.load_state(state.get("monitor", {}))
        self.precision.load_state(state.get("grad_scaler"))
        self.augment.load_state(state.get("augment"))

    def postfix(self, record: dict[str, Any]) -> dict[str, str]:
        return {"D": f"{record['loss_d']:.3f}", "G": f"{record['loss_g']:.3f}", "Dx": f"{record['d_real']:.2f}",
                "DGz": f"{record['d_fake']:.2f}",
                **({"p": f"{record['aug_p']:.2f}", "rt": f"{record['ada_rt']:.2f}"} if "aug_p" in record else {})}

    def summary(self) -> dict[str, Any]:
        # what train.amp and train.compile resolved to, and the monitor's warnings
        return {"precision": self.precision.summary(), "warnings": self.monitor.warnings}
