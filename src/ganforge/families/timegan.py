"""TimeGAN (Yoon, Jarrett & van der Schaar, NeurIPS 2019, "Time-series Generative Adversarial Networks").

``ganforge train sines --set model.family=timegan`` trains TimeGAN's five GRU networks
(:mod:`ganforge.nets.timegan`: embedder E, recovery R, generator G, supervisor S, discriminator D)
on series windows in [0, 1], and writes a run directory that ``ganforge sample``, ``eval`` and
``interpolate`` read like a GAN run's: the saved generator (``G`` and ``G_ema``, the net
``timegan``) is ``R(S(G(z)))``, which maps the run's latent, ``z ~ N(0, I)`` of ``L * k`` entries
read as ``k`` per step, to encoded windows.

Training is the paper's three phases, by step (``train.steps`` iterations in all; the paper's code
gives each phase the same count, so :data:`PHASE_SHARES` is a third each):

1. **Embedding**: E and R learn to reconstruct the windows, minimising ``10 * sqrt(MSE(x, R(E(x))))``.
2. **Supervised**: S learns to predict the next latent step of real windows,
   ``MSE(h[:, 1:], S(h)[:, :-1])`` with ``h = E(x)`` (:func:`supervised_loss`).
3. **Joint**: per iteration, twice (a G step on G and S, then an embedder step on E and R, on one
   minibatch), then one D step, taken only while D's loss exceeds :data:`D_LOSS_THRESHOLD` (so a D
   that already wins waits for G). G's loss is the non-saturating loss on D's verdicts on
   ``S(G(z))`` and, weighted by :data:`GAMMA`, on ``G(z)``, plus ``100 * sqrt`` of the supervised
   loss and ``100`` times the moment loss (:func:`moment_loss`); the embedder's is the
   reconstruction loss plus ``0.1`` times the supervised loss.

Every loss is a pure function of tensors (D's of per-step logits, higher = more real); each
phase has its own Adam optimisers, as in the paper's code (``train.lr_g`` for E, R, G, S,
``train.lr_d`` for D, constant rates). The departures from the paper, for ganforge's conventions:
the latent is Gaussian (TimeGAN draws U(0, 1)), so sampling, truncation and interpolation work as
for any run; and windows of different lengths are supported as the GAN nets support them, the
mask channel of the series domain being one more feature that E, R and the moment loss see
(TimeGAN instead stops its RNNs at each sequence's length).

It trains in its own loop (five networks in three phases are not Algorithm 1's two-player game);
``metrics.jsonl`` holds ``{step, phase, recon, supervised, [loss_g, loss_d, moments, d_real,
d_fake, d_updates], time}`` every ``train.log_every`` steps, the domain's scores every
``train.eval_every``; checkpoints use the GAN's safetensors format and ``--resume`` continues exactly.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.domains import Dataset, get_domain
from ganforge.engine.distributed import Shard
from ganforge.engine.loop import BatchTransform, build_generator, take_rows
from ganforge.engine.steps import Callbacks, StepLoop
from ganforge.errors import TrainingDiverged, UsageError
from ganforge.families.base import register_family
from ganforge.losses import get_loss
from ganforge.nets.timegan import embedder, latent_discriminator

NET = "timegan"
TIMEGAN_DEFAULTS: dict[str, Any] = {
    # the paper's code, over the series recipe for keys the user left alone: 3 GRU layers of 24 units,
    # TensorFlow's Adam defaults (1e-3, betas 0.9 and 0.999), batch 128, constant rates, no GAN devices
    "model.g_width": 24, "model.d_width": 24, "model.g_depth": 3, "model.d_depth": 3,
    "train.batch": 128, "train.lr_g": 1e-3, "train.lr_d": 1e-3, "train.beta1": 0.9, "train.beta2": 0.999,
    "train.lr_decay": 0.0, "train.ema": 0.0, "train.r1_weight": 0.0,
}
PHASE_SHARES = (1 / 3, 1 / 3, 1 / 3)
"""The shares of ``train.steps`` spent on embedding, supervised and joint training: equal, as the
paper's code runs the same number of iterations in each phase."""
GAMMA = 1.0
"""Weight of D's verdicts on G's unsupervised latents ``G(z)`` next to those on ``S(G(z))``."""
D_LOSS_THRESHOLD = 0.15
"""The joint phase's D step is skipped while D's loss is at or below this (the paper's code)."""
RECON_SCALE, G_SUPERVISED_WEIGHT, MOMENT_WEIGHT, E_SUPERVISED_WEIGHT = 10.0, 100.0, 100.0, 0.1

Phase = Literal["embedding", "supervised", "joint"]


def phase_ends(steps: int) -> tuple[int, int]:
    """The steps at which embedding and supervised training end (see :data:`PHASE_SHARES`), rounded
    down, so a short run's odd steps go to the joint phase, the one that trains G."""
    embedding = math.floor(steps * PHASE_SHARES[0])
    return embedding, math.floor(steps * (PHASE_SHARES[0] + PHASE_SHARES[1]))


def phase_of(step: int, steps: int) -> Phase:
    """The phase of 0-based iteration ``step`` of ``steps``."""
    embedding_end, supervised_end = phase_ends(steps)
    if step < embedding_end:
        return "embedding"
    return "supervised" if step < supervised_end else "joint"


# --- losses: pure functions of tensors --------------------------------------------------------------

def reconstruction_loss(x: Tensor, x_tilde: Tensor) -> Tensor:
    """``10 * sqrt(MSE)`` of the autoencoder, ``x, x_tilde: [N, L, C]`` (the paper's code)."""
    return RECON_SCALE * F.mse_loss(x_tilde, x).sqrt()


def supervised_loss(h: Tensor, h_next: Tensor) -> Tensor:
    """``MSE(h[:, 1:], h_next[:, :-1])``: how well ``h_next = S(h)`` at step t predicts ``h`` at t + 1."""
    return F.mse_loss(h_next[:, :-1], h[:, 1:])


def moment_loss(x_hat: Tensor, x: Tensor) -> Tensor:
    """Mean absolute gap between the batch std and mean of synthetic and real windows, per step and
    channel (over the batch axis): ``[N, L, C]`` each, a scalar."""
    var_hat, mean_hat = torch.var_mean(x_hat, dim=0, correction=0)
    var, mean = torch.var_mean(x, dim=0, correction=0)
    std_gap = ((var_hat + 1e-6).sqrt() - (var + 1e-6).sqrt()).abs().mean()
    return std_gap + (mean_hat - mean).abs().mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, fake_e_logits: Tensor) -> Tensor:
    """D's loss on per-step logits ``[N, L]`` of ``E(x)``, ``S(G(z))`` and ``G(z)``: binary
    cross-entropy, real = 1, both fakes = 0, the last weighted by :data:`GAMMA`."""
    ns = get_loss("ns")
    fake_e = F.binary_cross_entropy_with_logits(fake_e_logits, torch.zeros_like(fake_e_logits))
    return ns.d(real_logits, fake_logits) + GAMMA * fake_e


def generator_adversarial_loss(fake_logits: Tensor, fake_e_logits: Tensor) -> Tensor:
    """G's non-saturating loss on D's per-step logits of ``S(G(z))`` and (weighted by :data:`GAMMA`) ``G(z)``."""
    ns = get_loss("ns")
    return ns.g(fake_logits) + GAMMA * ns.g(fake_e_logits)


# --- the networks, their optimisers and the steps ---------------------------------------------------

class Parts:
    """TimeGAN's networks, the Adam optimisers of each phase and the RNG, with one method per kind
    of update: autograd meets the losses here. Each update returns its losses as floats."""

    def __init__(self, cfg: RunConfig, data: Tensor, device: torch.device,
                 batch_transform: BatchTransform | None = None) -> None:
        torch.manual_seed(cfg.seed)
        m, t = cfg.model, cfg.train
        self.data, self.batch, self.z_dim = data, t.batch, m.z_dim
        self.batch_transform = batch_transform  # the data set's encoding of each minibatch, if it stores rows compactly
        self.sampler = build_generator(cfg, NET, m.z_dim, tuple(data.shape[1:]), device)  # G, S, R
        self.embedder = embedder(m, data.shape[2]).to(device)
        self.discriminator = latent_discriminator(m).to(device)
        G, S, R, E = self.sampler.generator, self.sampler.supervisor, self.sampler.recovery, self.embedder

        def adam(lr: float, *nets: nn.Module) -> torch.optim.Optimizer:
            return torch.optim.Adam([p for net in nets for p in net.parameters()], lr=lr, betas=(t.beta1, t.beta2))

        self.optimizers = {
            "opt_embedding": adam(t.lr_g, E, R),  # phase 1
            "opt_supervised": adam(t.lr_g, S),  # phase 2
            "opt_G": adam(t.lr_g, G, S),  # phase 3
            "opt_E": adam(t.lr_g, E, R),
            "opt_D": adam(t.lr_d, self.discriminator),
        }
        self.gen = torch.Generator(device).manual_seed(cfg.seed + 1)

    def modules(self) -> dict[str, nn.Module]:
        # the sampler twice: G for a resume, G_ema for Run.generator() (TimeGAN keeps no moving average);
        # a copy, as safetensors refuses tensors that share memory (restoring into it is harmless)
        return {"G": self.sampler, "G_ema": copy.deepcopy(self.sampler), "E": self.embedder, "D": self.discriminator}

    def real_batch(self) -> Tensor:
        index = torch.randint(len(self.data), (self.batch,), generator=self.gen, device=self.data.device)
        return take_rows(self.data, index, self.batch_transform)  # [B, L, C]

    def latent(self) -> Tensor:
        z = torch.randn(self.batch, self.z_dim, generator=self.gen, device=self.data.device)
        return self.sampler.latent_sequence(z)  # [B, L, k]

    def _update(self, name: str, loss: Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def embedding_step(self, x: Tensor) -> dict[str, float]:
        """Phase 1: E and R on the reconstruction loss."""
        mse = F.mse_loss(self.sampler.recovery(self.embedder(x)), x)
        self._update("opt_embedding", RECON_SCALE * mse.sqrt())
        return {"recon": mse.item()}

    def supervised_step(self, x: Tensor) -> dict[str, float]:
        """Phase 2: S on the supervised loss of E's latents of real windows (E fixed)."""
        with torch.no_grad():
            h = self.embedder(x)
        loss = supervised_loss(h, self.sampler.supervisor(h))
        self._update("opt_supervised", loss)
        return {"supervised": loss.item()}

    def generator_step(self, x: Tensor, z: Tensor) -> dict[str, float]:
        """Phase 3: G and S on the adversarial, supervised and moment losses."""
        G, S, R, D = self.sampler.generator, self.sampler.supervisor, self.sampler.recovery, self.discriminator
        with torch.no_grad():
            h = self.embedder(x)
        e_hat = G(z)  # [B, L, W]
        h_hat = S(e_hat)
        adversarial = generator_adversarial_loss(D(h_hat).squeeze(2), D(e_hat).squeeze(2))
        supervised = supervised_loss(h, S(h))
        moments = moment_loss(R(h_hat), x)
        self._update("opt_G", adversarial + G_SUPERVISED_WEIGHT * supervised.sqrt() + MOMENT_WEIGHT * moments)
        return {"loss_g": adversarial.item(), "supervised": supervised.item(), "moments": moments.item()}

    def embedder_step(self, x: Tensor) -> dict[str, float]:
        """Phase 3: E and R on the reconstruction loss plus a little of the supervised loss."""
        h = self.embedder(x)
        mse = F.mse_loss(self.sampler.recovery(h), x)
        supervised = supervised_loss(h, self.sampler.supervisor(h))
        self._update("opt_E", RECON_SCALE * mse.sqrt() + E_SUPERVISED_WEIGHT * supervised)
        return {"recon": mse.item()}

    def discriminator_step(self, x: Tensor, z: Tensor) -> dict[str, float]:
        """Phase 3: D on E(x) against S(G(z)) and G(z), updated only above :data:`D_LOSS_THRESHOLD`."""
        with torch.no_grad():
            h = self.embedder(x)
            e_hat = self.sampler.generator(z)
            h_hat = self.sampler.supervisor(e_hat)
        real_logits = self.discriminator(h).squeeze(2)  # [B, L]
        fake_logits = self.discriminator(h_hat).squeeze(2)
        loss = discriminator_loss(real_logits, fake_logits, self.discriminator(e_hat).squeeze(2))
        updated = loss.item() > D_LOSS_THRESHOLD
        if updated:
            self._update("opt_D", loss)
        return {"loss_d": loss.item(), "d_real": real_logits.detach().sigmoid().mean().item(),
                "d_fake": fake_logits.detach().sigmoid().mean().item(), "d_updates": float(updated)}

    def iteration(self, phase: Phase) -> list[dict[str, float]]:
        """One iteration of ``phase``: one update, or the joint phase's two G and embedder updates and a D update."""
        if phase == "embedding":
            return [self.embedding_step(self.real_batch())]
        if phase == "supervised":
            return [self.supervised_step(self.real_batch())]
        out = []
        for _ in range(2):
            x = self.real_batch()
            out += [self.generator_step(x, self.latent()), self.embedder_step(x)]
        x = self.real_batch()
        return out + [self.discriminator_step(x, self.latent())]


# --- the run ------------------------------------------------------------------------------------------

class TimeGAN:
    """``model.family=timegan``: TimeGAN's five networks in its three phases, on series windows."""

    name = "timegan"
    objective = "timegan"
    objective_text = "TimeGAN's losses"
    defaults = TIMEGAN_DEFAULTS
    multi_process = False
    divergence_hint = "lower train.lr_g"

    def configure(self, cfg: RunConfig, dataset: Dataset) -> None:
        """Refuse, before anything is written, what TimeGAN does not do (after the recipe is applied);
        its net is its own."""
        if not get_domain(dataset.domain).windows:
            raise UsageError(f"model.family=timegan trains on series windows, not {dataset.domain} data; use a "
                             "series data set (e.g. sines, or --domain series) or model.family=gan")
        t = cfg.train
        checks = [
            (cfg.data.task == "none" and dataset.cond is None, f"model.family=timegan is unconditional; set "
                                                               f"data.task=none (got {cfg.data.task})"),
            (cfg.model.net in ("", NET), f"model.family=timegan trains its own GRU networks; drop model.net={cfg.model.net}"),
            (t.loss == "ns", f"model.family=timegan trains with TimeGAN's own losses; drop train.loss={t.loss}"),
            (t.pack == 1, "model.family=timegan judges one window at a time; set train.pack=1"),
            (t.lr_decay == 0, "model.family=timegan trains at constant learning rates, as TimeGAN; set train.lr_decay=0"),
            (t.amp in ("auto", "off") and t.compile in ("auto", "off"),
             "model.family=timegan runs in float32 without torch.compile; set train.amp=off and train.compile=off"),
            (not t.tensorboard, "model.family=timegan writes no TensorBoard events yet; set train.tensorboard=false"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        cfg.model.net = NET

    def check(self, cfg: RunConfig, dataset: Dataset) -> None:
        # the sampler R(S(G(z))) only: TimeGAN's D judges latents, not windows (ganforge.nets.timegan)
        build_generator(cfg, NET, cfg.model.z_dim, dataset.sample_shape, torch.device("cpu"),
                        dataset.state.get("net_args", {}))

    def trainer(self, cfg: RunConfig, dataset: Dataset, device: torch.device, callbacks: Callbacks,
                shard: Shard, net_args: dict[str, Any]) -> "TimeGANTrainer":
        return TimeGANTrainer(cfg, Parts(cfg, dataset.train.to(device), device, dataset.batch_transform), callbacks)

    def summary_lines(self, last: dict[str, Any]) -> list[str]:
        """The last record's losses (logged in the joint phase at the end of a run)."""
        if not last:
            return []
        v = {key: last.get(key, float("nan")) for key in ("loss_d", "loss_g", "supervised", "recon")}
        return [f"TimeGAN    D loss {v['loss_d']:.3f}   G adversarial {v['loss_g']:.3f}   "
                f"supervised MSE {v['supervised']:.5f}   reconstruction MSE {v['recon']:.5f}"]


class TimeGANTrainer(StepLoop):
    """TimeGAN's three phases by step."""

    def __init__(self, cfg: RunConfig, parts: Parts, callbacks: Callbacks) -> None:
        self.t, self.p, self.callbacks = cfg.train, parts, callbacks
        self.samples_per_step = cfg.train.batch
        self.sums: dict[str, float] = defaultdict(float)  # each loss since the last log, and how often it was measured
        self.counts: dict[str, int] = defaultdict(int)

    def sampler(self) -> nn.Module:
        return self.p.sampler

    def modules(self) -> dict[str, nn.Module]:
        return self.p.modules()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.p.optimizers

    def generators(self) -> dict[str, torch.Generator]:
        return {"timegan": self.p.gen}

    def iteration(self) -> None:
        for measured in self.p.iteration(phase_of(self.step, self.t.steps)):
            for key, value in measured.items():
                self.sums[key] += value
                self.counts[key] += 1
        self.step += 1

    def log(self) -> None:
        step = self.step
        phase = phase_of(step - 1, self.t.steps)  # the phase of the iteration just trained
        means = {key: self.sums[key] / self.counts[key] for key in self.sums}
        self.sums.clear()
        self.counts.clear()
        if not np.isfinite(list(means.values())).all():
            raise TrainingDiverged(f"a TimeGAN loss became NaN/inf at step {step} ({phase} phase)")
        self.callbacks.on_log({"step": step, "phase": phase, **means})

    def postfix(self, record: dict[str, Any]) -> dict[str, str]:
        return {"phase": record["phase"], **{k: f"{v:.4f}" for k, v in record.items()
                                             if k in ("recon", "supervised", "loss_d")}}


register_family(TimeGAN())
