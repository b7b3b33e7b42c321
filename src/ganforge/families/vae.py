"""A variational autoencoder baseline (Kingma & Welling 2014) on the GAN's own networks.

``ganforge train DATA --set model.family=vae`` trains a VAE on the same encoded data, and writes a
run directory that ``ganforge sample``, ``eval`` and ``interpolate`` read like a GAN run's:

- **Decoder = G.** The decoder is the generator of ``model.net`` (the DCGAN generator for images,
  the MLP generator for points), saved under ``G`` and ``G_ema`` (the same weights: a VAE has no
  EMA), so ``Run.generator()`` loads it and samples are ``G(z)``, ``z ~ N(0, I)``.
- **Encoder = D's trunk.** The encoder is D's architecture (``model.d_width``, ``d_depth``, ...)
  up to its logit head, with a linear head to ``[mu, log sigma^2]`` of ``q(z|x)`` instead; so
  the pair has the GAN's capacity, like for like.
- **Likelihood.** ``p(x|z) = N(G(z), sigma^2 I)`` with one scalar ``sigma``. By default
  (``model.vae_sigma=0``) it is the sigma that maximises the likelihood of each batch,
  ``sigma^2 = MSE`` (Rybkin et al. 2021, the "optimal sigma" VAE): the ELBO proper, with no knob,
  whose reconstruction term is ``D/2 log MSE``, so it balances reconstruction against KL on its own
  on points (standardised units) and images in [-1, 1] alike. A fixed ``model.vae_sigma`` is the
  MSE VAE with ``beta = 2 sigma^2`` and needs tuning per data set. (A sigma learned by gradient
  from 1 was tried first: on standardised ring8 it sat at the collapsed optimum, decoder = data
  mean, sigma = 1, KL = 0, for the first hundreds of steps.)
- **Objective.** The negative ELBO per sample, ``recon + kl``, in nats: ``recon = -log p(x|z)``
  with ``z = mu + sigma_q * eps`` (the reparameterisation), ``kl = KL(q(z|x) || N(0, I))`` in
  closed form; Adam on everything (``train.lr_g``, ``beta1``, ``beta2``; the VAE recipe below),
  with the KL term warmed up over the first :data:`KL_WARMUP` of the steps.

It trains in its own short loop: a VAE is one network pair minimising one loss, not a game, so
``engine/loop.py`` (Algorithm 1) does not apply; the cadence (``engine/steps.py``) and the run
directory's session are every family's. ``metrics.jsonl`` holds ``{step, loss, recon, kl,
sigma, time}`` every ``train.log_every`` steps and the domain's scores every ``train.eval_every``;
checkpoints use the GAN's safetensors format and ``--resume`` continues exactly.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ganforge.config import RunConfig
from ganforge.domains import Dataset
from ganforge.engine.distributed import Shard
from ganforge.engine.loop import BatchTransform, build_discriminator, build_generator, take_rows
from ganforge.engine.steps import Callbacks, StepLoop
from ganforge.errors import TrainingDiverged, UsageError
from ganforge.families.base import build_both, register_family

VAE_DEFAULTS: dict[str, Any] = {
    # the VAE recipe, over the domain's GAN recipe for keys the user left alone: Adam at 1e-3 with
    # its usual betas (Kingma & Ba 2015), constant rate; EMA, R1 and packing are GAN devices
    "train.lr_g": 1e-3, "train.beta1": 0.9, "train.beta2": 0.999, "train.lr_decay": 0.0,
    "train.ema": 0.0, "train.r1_weight": 0.0, "train.pack": 1,
}
LOG_SIGMA_MIN = -6.0
"""Floor of the optimal log std (sigma >= 0.0025), as in the sigma-VAE: keeps the likelihood finite
when a batch is reconstructed almost exactly."""

KL_WARMUP = 0.5
"""KL warm-up (Bowman et al. 2016; Sonderby et al. 2016): the KL term's weight rises linearly from 0
to 1 over this fraction of the steps, then the ELBO itself is optimised. Without it the optimal-sigma
VAE on standardised ring8 never left the collapsed optimum (KL ~ 0, decoder = the data mean,
sigma = 1) in 2,000 steps; a ramp over 10% of the steps was enough for ring8 but not for grid25
(1,500 steps: partly encoded while the weight was small, it fell back to the collapse once it
reached 1, all samples near one point); over 50% it kept its partial code. ``loss`` in the log is
always the full ELBO."""


def kl_weight(step: int, steps: int) -> float:
    """The KL term's weight at ``step`` (0-based) of ``steps``: see :data:`KL_WARMUP`."""
    ramp = KL_WARMUP * steps
    return 1.0 if ramp < 1 else min(1.0, (step + 1) / ramp)


TRUNKS: dict[str, Callable[[nn.Module], nn.Module]] = {}
"""Net family -> the part of its D that the encoder keeps (everything up to the logit head)."""
FLAT_INPUT: set[str] = set()
"""Net families whose trunk reads each sample as one flat vector (an MLP on images or series)."""


def register_trunk(net: str, trunk: Callable[[nn.Module], nn.Module], flat_input: bool = False) -> None:
    TRUNKS[net] = trunk
    if flat_input:
        FLAT_INPUT.add(net)


register_trunk("mlp", lambda D: D.features, flat_input=True)  # [N, d_width]
register_trunk("dcgan", lambda D: D.stages[:-1])  # [N, d_width * 2^(k-1), h0, w0]


class Encoder(nn.Module):
    """q(z|x): ``x: [N, *sample_shape]`` to ``(mu, logvar)``, each ``[N, z_dim]``.

    ``trunk`` is D's body (see :data:`TRUNKS`), its output flattened to ``feature_dim`` numbers; on
    the DCGAN trunk the linear head is D's last convolution over the start grid with ``2 z_dim``
    outputs instead of one logit.
    """

    def __init__(self, trunk: nn.Module, feature_dim: int, z_dim: int, flat_input: bool = False) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(feature_dim, 2 * z_dim)
        self.flat_input = flat_input

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(self.trunk(x.flatten(1) if self.flat_input else x).flatten(1)).chunk(2, dim=1)
        return mu, logvar


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mu, diag(exp(logvar))) || N(0, I))`` per sample, ``[N, z_dim] -> [N]`` (Kingma &
    Welling 2014, appendix B): ``0.5 * sum(mu^2 + exp(logvar) - 1 - logvar)``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def gaussian_nll(x: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    """``-log N(x; mean, sigma^2 I)`` per sample, summed over every dimension: ``[N, ...] -> [N]``."""
    dims = x[0].numel()
    squared = (x - mean).pow(2).flatten(1).sum(dim=1)
    return 0.5 * squared * torch.exp(-2 * log_sigma) + dims * (log_sigma + 0.5 * math.log(2 * math.pi))


def decoder_log_sigma(x: Tensor, mean: Tensor, sigma: float) -> Tensor:
    """The log std of ``p(x|z)``: ``log(sigma)`` when fixed (``sigma > 0``); with ``sigma = 0`` the
    one that maximises the batch's likelihood, ``sigma^2 = MSE`` over the batch and every dimension
    (Rybkin et al. 2021, "optimal sigma"), floored at :data:`LOG_SIGMA_MIN`."""
    if sigma > 0:
        return torch.tensor(math.log(sigma), device=x.device, dtype=x.dtype)
    return (0.5 * (x - mean).pow(2).mean().clamp_min(1e-12).log()).clamp(min=LOG_SIGMA_MIN)


def negative_elbo(x: Tensor, encoder: "Encoder", decoder: nn.Module, sigma: float = 0.0,
                  gen: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(loss, recon, kl, log_sigma)`` of ``x: [N, *sample_shape]`` (encoded): the batch means in
    nats per sample of the negative ELBO ``loss = recon + kl``, with one reparameterised draw
    ``z = mu + exp(logvar / 2) * eps`` per sample, and the decoder's log std (see
    :func:`decoder_log_sigma`)."""
    mu, logvar = encoder(x)
    eps = torch.randn(mu.shape, generator=gen, device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps
    mean = decoder(z)
    log_sigma = decoder_log_sigma(x, mean, sigma)
    recon = gaussian_nll(x, mean, log_sigma).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return recon + kl, recon, kl, log_sigma.detach()


def build_encoder(cfg: RunConfig, sample_shape: tuple[int, ...], device: torch.device,
                  net_args: dict | None = None) -> Encoder:
    """The encoder for ``model.net``: D's trunk without packing, spectral norm or minibatch stddev
    (a per-sample posterior must not depend on the rest of the batch)."""
    net = cfg.model.net
    if net not in TRUNKS:
        raise UsageError(f"model.family=vae has no encoder for model.net={net}; use {' or '.join(TRUNKS)}")
    enc_cfg = copy.deepcopy(cfg)
    enc_cfg.train.pack = 1
    enc_cfg.model.spectral_norm = enc_cfg.model.minibatch_stddev = False
    trunk = TRUNKS[net](build_discriminator(enc_cfg, net, sample_shape, torch.device("cpu"), net_args))
    was_training = trunk.training
    flat = net in FLAT_INPUT
    with torch.no_grad():
        probe = torch.zeros(2, *sample_shape)
        feature_dim = trunk.eval()(probe.flatten(1) if flat else probe).flatten(1).shape[1]
    trunk.train(was_training)
    return Encoder(trunk, feature_dim, cfg.model.z_dim, flat).to(device)


class VAE:
    """``model.family=vae``: the baseline a GAN is compared with, on the same networks and data."""

    name = "vae"
    objective = "elbo"
    objective_text = "ELBO"
    defaults = VAE_DEFAULTS
    multi_process = False
    divergence_hint = "lower train.lr_g"

    def configure(self, cfg: RunConfig, dataset: Dataset) -> None:
        pass

    def check(self, cfg: RunConfig, dataset: Dataset) -> None:
        """Refuse, before anything is written, what the VAE baseline does not do."""
        build_both(cfg, dataset)
        if cfg.data.task != "none" or dataset.cond is not None:
            raise UsageError(f"model.family=vae is unconditional; set data.task=none (got {cfg.data.task})")
        if cfg.train.tensorboard:
            raise UsageError("model.family=vae writes no TensorBoard events yet; set train.tensorboard=false")
        build_encoder(cfg, dataset.sample_shape, torch.device("cpu"), dataset.state.get("net_args", {}))

    def trainer(self, cfg: RunConfig, dataset: Dataset, device: torch.device, callbacks: Callbacks,
                shard: Shard, net_args: dict[str, Any]) -> "VAETrainer":
        return VAETrainer(cfg, dataset.train, device, callbacks, net_args, dataset.batch_transform)

    def summary_lines(self, last: dict[str, Any]) -> list[str]:
        if "kl" not in last:
            return []
        return [f"VAE        -ELBO {last['loss']:.3f}   recon {last['recon']:.3f}   KL {last['kl']:.3f}   "
                f"decoder sigma {last['sigma']:.4f}   (nats per sample)"]


class VAETrainer(StepLoop):
    """Minibatch SGD on the negative ELBO; its modules, optimiser and RNG named as the checkpoint stores them."""

    def __init__(self, cfg: RunConfig, data: Tensor, device: torch.device, callbacks: Callbacks,
                 net_args: dict[str, Any], batch_transform: BatchTransform | None = None) -> None:
        self.t, self.callbacks, self.device = cfg.train, callbacks, device
        self.samples_per_step = cfg.train.batch
        sample_shape = tuple(data.shape[1:])
        torch.manual_seed(cfg.seed)
        self.decoder = build_generator(cfg, cfg.model.net, cfg.model.z_dim, sample_shape, device, net_args)
        self.encoder = build_encoder(cfg, sample_shape, device, net_args)
        self.sigma = cfg.model.vae_sigma
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        t = cfg.train
        self.opt = torch.optim.Adam(params, lr=t.lr_g, betas=(t.beta1, t.beta2))
        self.gen = torch.Generator(device).manual_seed(cfg.seed + 1)
        self.data, self.batch_transform = data.to(device), batch_transform  # e.g. uint8 pixels -> floats
        self.sums = torch.zeros(4, device=device)  # loss, recon, kl, log sigma since the last log

    def sampler(self) -> nn.Module:
        return self.decoder

    def modules(self) -> dict[str, nn.Module]:
        # the decoder twice: G for a resume, G_ema for Run.generator() (a VAE has no moving average);
        # a copy, as safetensors refuses tensors that share memory (restoring into it is harmless)
        return {"G": self.decoder, "G_ema": copy.deepcopy(self.decoder), "E": self.encoder}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def generators(self) -> dict[str, torch.Generator]:
        return {"vae": self.gen}

    def iteration(self) -> None:
        t, step = self.t, self.step
        index = torch.randint(len(self.data), (t.batch,), generator=self.gen, device=self.device)
        for group in self.opt.param_groups:  # cosine decay to lr * (1 - lr_decay), as the GAN loop
            group["lr"] = t.lr_g * (1 - t.lr_decay * (1 - math.cos(math.pi * step / max(t.steps, 1))) / 2)
        x = take_rows(self.data, index, self.batch_transform)
        loss, recon, kl, log_sigma = negative_elbo(x, self.encoder, self.decoder, self.sigma, self.gen)
        self.opt.zero_grad(set_to_none=True)
        (recon + kl_weight(step, t.steps) * kl).backward()
        self.opt.step()
        self.sums += torch.stack([loss.detach(), recon.detach(), kl.detach(), log_sigma])
        self.step += 1

    def log(self) -> None:
        t, step = self.t, self.step
        means = (self.sums / (t.log_every if step % t.log_every == 0 else step % t.log_every)).tolist()
        self.sums.zero_()
        loss, recon, kl, log_sigma = means
        if not np.isfinite(means).all():
            raise TrainingDiverged(f"the VAE's loss became NaN/inf ({loss}) at step {step}")
        sigma = math.exp(log_sigma)  # the geometric mean over the interval
        self.callbacks.on_log({"step": step, "loss": loss, "recon": recon, "kl": kl, "sigma": sigma})

    def postfix(self, record: dict[str, Any]) -> dict[str, str]:
        return {"ELBO": f"{-record['loss']:.3f}", "recon": f"{record['recon']:.3f}", "KL": f"{record['kl']:.3f}"}


register_family(VAE())
