"""The VAE baseline (model.family=vae): its objective, and its run directory read by the GAN tools."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY
from ganforge.config import RunConfig, set_value
from ganforge.errors import UsageError
from ganforge.rundir.resolve import resolve
from ganforge.engine.steps import NullCallbacks
from ganforge.families.vae import VAETrainer, gaussian_kl, gaussian_nll, kl_weight, negative_elbo

VAE = ["model.family=vae"]


def settings(*extra):
    return [arg for kv in (*TINY, *VAE, *extra) for arg in ("--set", kv)]


def one_error_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ganforge: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    from conftest import run_cli

    out = tmp_path_factory.mktemp("vae") / "ring"
    proc = run_cli("train", "ring8", "--out", str(out), "--steps", "60", "--quiet", *settings("train.ckpt_every=30"))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_ring8_vae_run_is_a_run_the_gan_tools_read(ring_run, cli, tmp_path):
    out, proc = ring_run
    for name in ("config.json", "data.json", "metrics.jsonl", "summary.json", "samples.npy", "samples.png"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in records if "kl" in r]
    assert [r["step"] for r in logs] == [10, 20, 30, 40, 50, 60]
    assert all(math.isclose(r["loss"], r["recon"] + r["kl"], rel_tol=1e-5, abs_tol=1e-5) for r in logs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["family"] == "vae" and "modes" in summary["eval"]
    assert "VAE" in proc.stdout and "modes" in proc.stdout  # the one-screen summary
    # the decoder is saved as G and as G_ema, so sampling loads it like any generator
    weights = load_file(str(out / "checkpoints" / "step-00000060" / "weights.safetensors"))
    g = {k[2:]: v for k, v in weights.items() if k.startswith("G.")}
    assert g and all(torch.equal(v, weights["G_ema." + k]) for k, v in g.items())

    proc = cli("sample", str(out), "--out", str(tmp_path / "s.npy"), "--n", "50")
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "s.npy").shape == (50, 2)
    proc = cli("eval", str(out), "--json", "--n", "500")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert {"modes", "hq_fraction", "reverse_kl", "energy_distance"} <= set(metrics)
    proc = cli("interpolate", str(out), "--out", str(tmp_path / "i.npy"), "--pairs", "2", "--steps", "4")
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "i.npy").shape == (8, 2)


def test_resume_continues_exactly(ring_run, cli, tmp_path):
    """Resumed from its step-30 checkpoint, the run reaches the very weights of its step 60."""
    full, _ = ring_run
    out = tmp_path / "again"
    shutil.copytree(full, out)
    shutil.rmtree(out / "checkpoints" / "step-00000060")
    proc = cli("train", "--resume", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stderr and "from step 30 of 60" in proc.stderr
    a = load_file(str(full / "checkpoints" / "step-00000060" / "weights.safetensors"))
    b = load_file(str(out / "checkpoints" / "step-00000060" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(60) == 2  # the log cut back to step 30, then continued


@pytest.mark.parametrize("net", ["dcgan", "mlp"])  # mlp: the digits set's own recipe, its encoder reads flat images
def test_digits_vae_trains_samples_and_evaluates(cli, tmp_path, net):
    out = tmp_path / "digits"
    named = ("model.net=dcgan",) if net == "dcgan" else ()
    proc = cli("train", "digits", "--out", str(out), "--steps", "20", "--quiet",
               *settings("model.g_width=16", "model.d_width=16", "train.batch=32", "train.ckpt_every=20",
                         "train.snapshot_every=0", *named))
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["net"] == net and config["train"]["lr_g"] == 1e-3  # the VAE recipe over the net's
    proc = cli("eval", str(out), "--json", "--n", "100")
    assert proc.returncode == 0, proc.stderr
    assert "energy_distance" in json.loads(proc.stdout)
    samples = np.load(out / "samples.npy")  # drawn through Run.sample, as 'ganforge sample' does
    assert samples.shape[0] == 2500 and samples[0].size == 64


def test_kl_matches_the_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.5, 0.0]])
    logvar = torch.tensor([[0.0, 0.0], [0.0, 0.0], [math.log(4.0), math.log(0.25)]])
    # 0.5 * sum(mu^2 + var - 1 - log var), by hand
    expected = torch.tensor([0.0, 0.5 * (1 + 4), 0.5 * (0.25 + 4 - 1 - math.log(4)) + 0.5 * (0.25 - 1 - math.log(0.25))])
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1))


def test_gaussian_nll_matches_torch():
    x, mean = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(5, 3)
    log_sigma = torch.tensor(math.log(0.7))
    reference = -torch.distributions.Normal(mean, 0.7).log_prob(x).sum(1)
    torch.testing.assert_close(gaussian_nll(x, mean, log_sigma), reference)


def test_elbo_improves_on_a_line():
    """Points on a noisy line: the latent must carry t; 400 steps gain far more than the margin."""
    torch.manual_seed(0)
    t = torch.randn(4096, 1)
    data = torch.cat([t, 0.5 * t + 0.05 * torch.randn(4096, 1)], dim=1)
    data = (data - data.mean(0)) / data.std(0)
    cfg = RunConfig()
    cfg.model.net, cfg.model.z_dim, cfg.model.g_width, cfg.model.d_width = "mlp", 2, 32, 32
    cfg.model.g_depth = cfg.model.d_depth = 2
    cfg.train.lr_g, cfg.train.beta1, cfg.train.beta2 = 1e-3, 0.9, 0.999
    parts = VAETrainer(cfg, data, torch.device("cpu"), NullCallbacks(), {})
    losses, steps = [], 400
    for step in range(steps):
        batch = data[torch.randint(len(data), (128,), generator=parts.gen)]
        loss, recon, kl, _ = negative_elbo(batch, parts.encoder, parts.decoder, 0.0, parts.gen)
        parts.opt.zero_grad()
        (recon + kl_weight(step, steps) * kl).backward()
        parts.opt.step()
        losses.append(loss.item())
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    # collapsed (z ignored) the -ELBO is ~2.84 nats; encoding t brings it well below 1
    assert last < first - 1.5, (first, last)
    assert last < 1.0, last


def test_kl_warmup_reaches_one():
    assert kl_weight(0, 100) == pytest.approx(1 / 50) and kl_weight(49, 100) == 1.0 and kl_weight(99, 100) == 1.0
    assert kl_weight(0, 1) == 1.0  # too short a run for a ramp


def test_unknown_family_is_one_error_line(cli):
    one_error_line(cli("train", "ring8", "--set", "model.family=flow"), "model.family", "gan, vae")


def test_class_conditional_vae_is_refused_before_training():
    cfg = RunConfig()
    for key, value in (("data.source", "digits"), ("model.family", "vae"), ("data.task", "class")):
        set_value(cfg, key, value)
    with pytest.raises(UsageError, match="model.family=vae is unconditional; set data.task=none"):
        resolve(cfg)  # what 'ganforge train' runs before it writes anything
