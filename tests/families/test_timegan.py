"""TimeGAN (model.family=timegan): its networks, phases and losses, and its run directory read by the GAN tools."""

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import ganforge
from ganforge.families import timegan
from ganforge.config import DataConfig, RunConfig
from ganforge.domains import get_domain
from ganforge.errors import UsageError
from ganforge.nets import get_net
from ganforge.nets.timegan import TimeGANSampler, embedder, latent_discriminator

# small nets and sines; 12 steps are 4 per phase, a checkpoint in the supervised phase at step 6
TINY_TIMEGAN = {"model.family": "timegan", "data.n": 128, "data.metric_repeats": 0, "model.g_width": 8,
                "model.d_width": 8, "model.g_depth": 2, "model.d_depth": 2, "train.batch": 32, "train.steps": 12,
                "train.log_every": 2, "train.ckpt_every": 6, "train.eval_every": 0}


def small_config(seed: int = 0) -> RunConfig:
    cfg = RunConfig()
    cfg.seed = seed
    cfg.model.g_width, cfg.model.d_width, cfg.model.g_depth, cfg.model.d_depth = 16, 12, 3, 2
    cfg.model.z_dim = 24 * 4
    cfg.train.batch, cfg.train.beta1, cfg.train.beta2 = 64, 0.9, 0.999
    cfg.train.lr_g = cfg.train.lr_d = 1e-3
    return cfg


@pytest.fixture(scope="module")
def sines():
    return get_domain("series").load(DataConfig(source="sines", n=256))


def test_shapes_and_ranges_of_the_five_networks():
    torch.manual_seed(0)
    m = small_config().model
    x = torch.rand(7, 24, 5)
    h = embedder(m, 5)(x)
    assert h.shape == (7, 24, 16) and h.min() > 0 and h.max() < 1
    sampler = get_net("timegan").generator(m, 24 * 4, (24, 5))
    assert isinstance(sampler, TimeGANSampler)
    assert sampler.recovery(h).shape == (7, 24, 5)
    assert sampler.supervisor(h).shape == (7, 24, 16)
    assert sampler.supervisor.rnn.num_layers == 2 and sampler.generator.rnn.num_layers == 3  # S: one layer fewer
    e_hat = sampler.generator(sampler.latent_sequence(torch.randn(7, 96)))
    assert e_hat.shape == (7, 24, 16) and e_hat.min() > 0 and e_hat.max() < 1
    logits = latent_discriminator(m)(h)
    assert logits.shape == (7, 24, 1) and (logits.min() < 0 or logits.max() > 1)  # logits, no sigmoid
    assert latent_discriminator(m).rnn.hidden_size == 12 and latent_discriminator(m).rnn.num_layers == 2
    x_hat = sampler(torch.randn(7, 96))  # R(S(G(z))): the saved generator
    assert x_hat.shape == (7, 24, 5) and x_hat.min() > 0 and x_hat.max() < 1
    with pytest.raises(UsageError, match="multiple of 24"):
        get_net("timegan").generator(m, 50, (24, 5))
    with pytest.raises(UsageError, match="model.family=timegan"):  # no window discriminator for the GAN loop
        get_net("timegan").discriminator(m, (24, 5))


def test_phases_split_the_steps_in_three_equal_shares():
    assert timegan.phase_ends(3000) == (1000, 2000)
    assert [timegan.phase_of(s, 9) for s in range(9)] == ["embedding"] * 3 + ["supervised"] * 3 + ["joint"] * 3
    assert timegan.phase_ends(1) == (0, 0) and timegan.phase_ends(5) == (1, 3)  # odd steps go to the joint phase


def test_losses_by_hand():
    torch.manual_seed(0)
    x = torch.rand(8, 6, 3)
    assert timegan.moment_loss(x, x).item() == pytest.approx(0.0, abs=1e-7)
    shifted = x + 0.25  # the means differ by 0.25, the stds not at all
    assert timegan.moment_loss(shifted, x).item() == pytest.approx(0.25, abs=1e-5)
    h = torch.rand(4, 6, 5)
    perfect = torch.cat([h[:, 1:], torch.rand(4, 1, 5)], dim=1)  # step t holds h at t + 1; the last is free
    assert timegan.supervised_loss(h, perfect).item() == 0.0
    assert timegan.supervised_loss(h, h).item() == pytest.approx(F.mse_loss(h[:, :-1], h[:, 1:]).item())
    assert timegan.reconstruction_loss(x, x + 0.1).item() == pytest.approx(1.0, rel=1e-5)  # 10 * sqrt(0.01)
    real, fake, fake_e = torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 6)
    bce = F.binary_cross_entropy_with_logits
    d = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)) + bce(fake_e, torch.zeros_like(fake_e))
    torch.testing.assert_close(timegan.discriminator_loss(real, fake, fake_e), d)
    g = bce(fake, torch.ones_like(fake)) + bce(fake_e, torch.ones_like(fake_e))
    torch.testing.assert_close(timegan.generator_adversarial_loss(fake, fake_e), g)


def test_supervised_pretraining_lowers_the_supervised_loss_on_sines(sines):
    """After a short embedding phase, 60 supervised steps cut S's next-step error several-fold (4-10x measured)."""
    parts = timegan.Parts(small_config(), sines.train, torch.device("cpu"))
    for _ in range(20):
        parts.embedding_step(parts.real_batch())
    before = {k: v.clone() for k, v in parts.embedder.state_dict().items()}
    losses = [parts.supervised_step(parts.real_batch())["supervised"] for _ in range(60)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    after = parts.embedder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the supervised phase trains S alone


def test_the_discriminator_waits_while_its_loss_is_below_the_threshold(sines, monkeypatch):
    parts = timegan.Parts(small_config(), sines.train, torch.device("cpu"))
    before = {k: v.clone() for k, v in parts.discriminator.state_dict().items()}
    monkeypatch.setattr(timegan, "D_LOSS_THRESHOLD", 1e9)
    out = parts.discriminator_step(parts.real_batch(), parts.latent())
    assert out["d_updates"] == 0.0
    assert all(torch.equal(before[k], v) for k, v in parts.discriminator.state_dict().items())
    monkeypatch.setattr(timegan, "D_LOSS_THRESHOLD", 0.15)
    out = parts.discriminator_step(parts.real_batch(), parts.latent())
    assert out["d_updates"] == 1.0 and out["loss_d"] > 0.15  # an untrained D is far above 0.15
    assert not all(torch.equal(before[k], v) for k, v in parts.discriminator.state_dict().items())


@pytest.fixture(scope="module")
def sines_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("timegan") / "sines"
    summary = ganforge.train("sines", out=out, settings=TINY_TIMEGAN)
    return out, summary


def test_sines_run_is_a_run_the_gan_tools_read(sines_run):
    out, summary = sines_run
    for name in ("config.json", "data.json", "metrics.jsonl", "summary.json", "samples.npy", "samples.png"):
        assert (out / name).is_file(), name
    assert summary["status"] == "finished" and summary["family"] == "timegan" and summary["steps"] == 12
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["net"] == "timegan" and config["train"]["beta1"] == 0.9  # TimeGAN's Adam over the series recipe
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in records if "phase" in r]
    assert [(r["step"], r["phase"]) for r in logs] == [(2, "embedding"), (4, "embedding"), (6, "supervised"),
                                                       (8, "supervised"), (10, "joint"), (12, "joint")]
    assert {"loss_g", "loss_d", "moments", "supervised", "recon", "d_updates"} <= set(logs[-1])
    assert "loss_d" not in logs[0] and "recon" in logs[0] and "supervised" in logs[2]
    assert [r["step"] for r in records if "eval" in r] == [12] and "acf_distance" in records[-1]["eval"]
    # R(S(G(z))) is saved as G and as G_ema, so Run.generator() loads it like any generator
    weights = load_file(str(out / "checkpoints" / "step-00000012" / "weights.safetensors"))
    g = {k[2:]: v for k, v in weights.items() if k.startswith("G.")}
    assert g and all(torch.equal(v, weights["G_ema." + k]) for k, v in g.items())
    assert any(k.startswith("E.") for k in weights) and any(k.startswith("D.") for k in weights)

    run = ganforge.load(out)
    assert isinstance(run.generator(), TimeGANSampler)
    samples = run.sample(9, seed=3)
    state = run.data_state
    lo, hi = np.array(state["min"]), np.array(state["min"]) + np.array(state["scale"])
    assert samples.shape == (9, 24, 5) and np.isfinite(samples).all()
    assert (samples >= lo).all() and (samples <= hi).all()  # the sigmoid's (0, 1) in the data's units
    np.testing.assert_array_equal(samples, run.sample(9, seed=3))
    assert run.interpolate(pairs=1, steps=3).shape == (3, 24, 5)


def test_resume_continues_exactly(sines_run, tmp_path):
    """Resumed from its step-6 checkpoint (supervised phase), the run reaches the very weights,
    optimiser moments and RNG state of its uninterrupted step 12."""
    from ganforge.rundir.session import train

    full, _ = sines_run
    out = tmp_path / "again"
    shutil.copytree(full, out)
    shutil.rmtree(out / "checkpoints" / "step-00000012")
    said = []
    train(None, resume=out, progress=False, echo=said.append)
    assert said == [f"resuming {out} from step 6 of 12"]
    a = load_file(str(full / "checkpoints" / "step-00000012" / "weights.safetensors"))
    b = load_file(str(out / "checkpoints" / "step-00000012" / "weights.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("opt_D.") for k in a)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(12) == 2  # the log cut back to step 6, then continued


def test_the_one_screen_summary(sines_run, capsys):
    from ganforge.cli import _print_summary

    _print_summary(sines_run[1], as_json=False)
    out = capsys.readouterr().out
    assert "loss timegan" in out and "TimeGAN    D loss" in out and "supervised MSE" in out


def test_refused_outside_series_and_in_the_gan_loop(tmp_path):
    with pytest.raises(UsageError, match="model.family=timegan trains on series windows, not points data"):
        ganforge.train("ring8", out=tmp_path / "ring", settings={"model.family": "timegan"})
    with pytest.raises(UsageError, match="set model.family=timegan"):
        ganforge.train("sines", out=tmp_path / "gan", settings={"model.net": "timegan", "data.n": 64})
    with pytest.raises(UsageError, match="drop model.net=gru"):
        ganforge.train("sines", out=tmp_path / "gru", settings={"model.family": "timegan", "model.net": "gru",
                                                                "data.n": 64})
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_refusal_is_one_cli_error_line(cli, tmp_path):
    proc = cli("train", "ring8", "--out", str(tmp_path / "r"), "--set", "model.family=timegan")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("ganforge: error: "), proc.stderr
    assert "model.family=timegan trains on series windows" in lines[0] and "model.family=gan" in lines[0]


def test_variable_length_windows_train_with_the_mask_channel(tmp_path):
    """Windows of 6 to 10 steps: the series domain's mask is one more channel for E, R and G, and
    samples decode through it (NaN padding after a window's end, never a gap inside)."""
    from conftest import write_variable_length_ts

    write_variable_length_ts(tmp_path / "var.ts")
    ganforge.train(str(tmp_path / "var.ts"), out=tmp_path / "run",
                   settings={**TINY_TIMEGAN, "train.steps": 6, "model.z_dim": 40})
    run = ganforge.load(tmp_path / "run")
    assert run.data_state["masked"] and run.sample_shape == (10, 3)  # two features and the mask
    samples = run.sample(20)
    assert samples.shape == (20, 10, 2)
    valid = ~np.isnan(samples).any(axis=2)
    assert valid[:, 0].all() and (np.diff(valid.astype(int), axis=1) <= 0).all()  # NaN only after a window's end
