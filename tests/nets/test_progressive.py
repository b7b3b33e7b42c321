"""Progressive growing: shapes at every level, the (level, alpha) schedule, fade-in continuity, and
training through the unchanged loop and CLI up to the full resolution."""

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ganforge.cli import main
from ganforge.config import ModelConfig, RunConfig, set_value
from ganforge.errors import UsageError
from ganforge.nets import get_net
from ganforge.nets.progressive import (
    ProgressiveDiscriminator,
    ProgressiveGenerator,
    growth_schedule,
    level_widths,
    progressive_discriminator,
    progressive_generator,
)
from ganforge.rundir.run import Run
from ganforge.engine.loop import Trainer, build_players
from ganforge.engine.steps import NullCallbacks


def at_level(level: int, alpha: float, *nets) -> None:
    for net in nets:
        net.level, net.alpha = level, alpha


def blocks_are_constant(x: torch.Tensor, block: int) -> bool:
    """Every ``block x block`` tile of ``x: [N, C, H, W]`` holds one value."""
    n, c, h, w = x.shape
    tiles = x.reshape(n, c, h // block, block, w // block, block)
    return bool((tiles == tiles[:, :, :, :1, :, :1]).all())


@pytest.mark.parametrize("height,width,sides", [
    (28, 28, [(7, 7), (14, 14), (28, 28)]),
    (32, 32, [(4, 4), (8, 8), (16, 16), (32, 32)]),
    (64, 64, [(4, 4), (8, 8), (16, 16), (32, 32), (64, 64)]),
    (28, 56, [(7, 14), (14, 28), (28, 56)]),
    (8, 8, [(4, 4), (8, 8)]),
])
def test_every_level_has_full_size_io_at_its_own_resolution(height, width, sides):
    torch.manual_seed(0)
    G = ProgressiveGenerator(16, 3, height, width, base_width=8)
    D = ProgressiveDiscriminator(3, height, width, base_width=8)
    assert G.k == D.k == len(sides) - 1
    for level, (h, w) in enumerate(sides):
        for alpha in (0.5, 1.0) if level else (1.0,):
            at_level(level, alpha, G, D)
            x = G(torch.randn(4, 16))
            assert x.shape == (4, 3, height, width)
            assert x.min() >= -1 and x.max() <= 1
            assert D(x).shape == (4,)
            # the image has exactly this level's resolution, upsampled by nearest neighbour
            assert blocks_are_constant(x, height // h)
            if level > 0:
                assert not blocks_are_constant(x, height // sides[level - 1][0])


def test_fraction_zero_draws_the_start_grid_upsampled():
    torch.manual_seed(0)
    for shape, block in (((1, 28, 28), 4), ((1, 32, 32), 8), ((1, 28, 56), 4)):
        G = get_net("progressive").generator(ModelConfig(g_width=8), 16, shape)
        G.set_progress(0.0)
        x = G(torch.randn(6, 16))
        assert blocks_are_constant(x, block)
        assert x.flatten(1).std(dim=1).min() > 0  # not a flat image: the start grid varies
        G.set_progress(1.0)
        assert not blocks_are_constant(G(torch.randn(6, 16)), 2)


def test_schedule_endpoints_and_boundaries():
    assert growth_schedule(0.0, 2) == (0, 1.0)
    assert growth_schedule(1.0, 2) == (2, 1.0)
    assert growth_schedule(0.5, 2) == (2, 1.0)  # defaults: growing takes the first half
    assert growth_schedule(0.1, 2) == (0, 1.0)
    assert growth_schedule(0.125, 2) == (0, 1.0)  # a fade at alpha 0 is the previous level: report that
    assert growth_schedule(0.13, 2)[0] == 1 and 0 < growth_schedule(0.13, 2)[1] < 0.1
    assert growth_schedule(0.125 + 0.0625, 2) == (1, pytest.approx(0.5))
    assert growth_schedule(0.3, 2) == (1, 1.0)
    assert growth_schedule(0.4375, 2) == (2, pytest.approx(0.5))
    assert growth_schedule(0.0, 3, grow=0.0) == (3, 1.0)  # no growing: full resolution throughout
    assert growth_schedule(-1.0, 3) == (0, 1.0) and growth_schedule(2.0, 3) == (3, 1.0)
    assert all(growth_schedule(f, 2, fade=0.0)[1] == 1.0 for f in np.linspace(0, 1, 101))


@pytest.mark.parametrize("k,grow,fade", [(1, 0.5, 0.5), (2, 0.5, 0.5), (3, 0.5, 0.5), (4, 0.8, 0.25),
                                          (2, 1.0, 1.0), (3, 0.3, 0.0)])
def test_schedule_is_monotone_and_visits_every_level(k, grow, fade):
    fractions = np.linspace(0.0, 1.0, 2001)
    states = [growth_schedule(float(f), k, grow, fade) for f in fractions]
    assert states[0] == (0, 1.0) and states[-1] == (k, 1.0)
    depth = [level - 1 + alpha for level, alpha in states]
    assert all(b >= a for a, b in zip(depth, depth[1:]))
    assert all(b[0] >= a[0] for a, b in zip(states, states[1:]))
    assert all(0.0 < alpha <= 1.0 for _, alpha in states)
    assert {level for level, _ in states} == set(range(k + 1))
    if fade > 0:
        assert any(0.0 < alpha < 1.0 for _, alpha in states)
    assert all(s == (k, 1.0) for f, s in zip(fractions, states) if f >= grow)


@pytest.mark.parametrize("height,width", [(28, 28), (32, 32), (28, 56)])
def test_fade_in_starts_exactly_where_the_previous_level_ends(height, width):
    torch.manual_seed(0)
    G = ProgressiveGenerator(16, 1, height, width, base_width=8)
    D = ProgressiveDiscriminator(1, height, width, base_width=8)
    z, x = torch.randn(5, 16), torch.rand(5, 1, height, width) * 2 - 1
    for level in range(1, G.k + 1):
        at_level(level - 1, 1.0, G, D)
        g_old, d_old = G(z), D(x)
        at_level(level, 0.0, G, D)
        assert torch.equal(G(z), g_old) and torch.equal(D(x), d_old)
        at_level(level, 0.5, G, D)
        g_mid, d_mid = G(z), D(x)
        at_level(level, 1.0, G, D)
        g_new, d_new = G(z), D(x)
        assert not torch.equal(g_mid, g_old) and not torch.equal(g_mid, g_new)
        assert not torch.equal(d_mid, d_old) and not torch.equal(d_mid, d_new)


def test_growth_never_changes_the_parameters_and_idle_levels_get_no_gradient():
    torch.manual_seed(0)
    G = ProgressiveGenerator(8, 1, 32, 32, base_width=8)
    D = ProgressiveDiscriminator(1, 32, 32, base_width=8)
    shapes = {k: v.shape for k, v in {**G.state_dict(), **D.state_dict()}.items()}
    G.set_progress(0.0)
    D.set_progress(0.0)
    D(G(torch.randn(4, 8))).sum().backward()
    assert G.to_rgb[0].weight.grad is not None and D.from_rgb[0][0].weight.grad is not None
    assert all(p.grad is None for m in (G.blocks[1:], G.to_rgb[1:], D.blocks[1:], D.from_rgb[1:]) for p in m.parameters())
    for f in (0.3, 1.0):
        G.set_progress(f)
        D.set_progress(f)
        assert {k: v.shape for k, v in {**G.state_dict(), **D.state_dict()}.items()} == shapes


def test_widths_and_builders_follow_the_model_config():
    assert level_widths(64, 2, 512) == [128, 64, 32]
    assert level_widths(64, 4, 512) == [512, 256, 128, 64, 32]
    assert level_widths(64, 5, 512)[0] == 512  # capped
    cfg = ModelConfig(g_width=16, d_width=8, spectral_norm=True, pg_grow=0.2, pg_fade=0.1)
    G = progressive_generator(cfg, 10, (3, 28, 28))
    D = progressive_discriminator(cfg, (6, 28, 28))  # pack=2 of RGB images
    assert G.blocks[0][1].out_channels == 32 and D.from_rgb[2][0].in_channels == 6 and D.from_rgb[2][0].out_channels == 4
    assert (G.grow, G.fade, D.grow, D.fade) == (0.2, 0.1, 0.2, 0.1)
    assert all(hasattr(m, "parametrizations") for m in D.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert D(torch.randn(4, 6, 28, 28)).shape == (4,)


def test_bad_settings_and_shapes_are_usage_errors():
    with pytest.raises(UsageError, match=r"progressive cannot build 30x30"):
        progressive_generator(ModelConfig(), 8, (1, 30, 30))
    with pytest.raises(UsageError, match="images"):
        progressive_discriminator(ModelConfig(), (784,))
    with pytest.raises(UsageError, match=r"model.pg_fade=1.5 must be in \[0, 1\]"):
        progressive_generator(ModelConfig(pg_fade=1.5), 8, (1, 28, 28))
    with pytest.raises(UsageError, match="unconditional.*n_classes"):
        progressive_generator(ModelConfig(), 8, (1, 28, 28), n_classes=10)
    with pytest.raises(ValueError, match=r"\[N, 8\]"):
        ProgressiveGenerator(8, 1, 8, 8, 4)(torch.randn(2, 9))


def test_same_seed_same_weights_and_output():
    outputs = []
    for _ in range(2):
        torch.manual_seed(3)
        G = progressive_generator(ModelConfig(g_width=8), 16, (1, 28, 28))
        G.set_progress(0.2)
        outputs.append(G(torch.ones(2, 16)))
    assert torch.equal(*outputs)


def test_trainer_grows_to_the_full_resolution():
    cfg = RunConfig()
    for key, value in {"model.g_width": 8, "model.d_width": 8, "train.batch": 16, "train.steps": 16,
                       "train.log_every": 8, "train.ckpt_every": 8, "train.lr_g": 1e-3, "train.lr_d": 1e-3}.items():
        set_value(cfg, key, value)
    torch.manual_seed(0)
    data = (torch.rand(64, 1, 16, 16) * 2 - 1).clamp(-1, 1)
    players = build_players(cfg, "progressive", 8, (1, 16, 16), torch.device("cpu"))
    seen = []
    hook = players.G.set_progress

    def record(fraction):
        hook(fraction)
        seen.append((players.G.level, players.G.alpha))

    players.G.set_progress = record
    top_before = players.G.to_rgb[-1].weight.detach().clone()
    trainer = Trainer(cfg, players, data, torch.device("cpu"), NullCallbacks())
    trainer.run()
    assert len(seen) == 17  # before each of the 16 steps and after the last
    assert seen[0] == (0, 1.0) and seen[-1] == (2, 1.0)
    assert {level for level, _ in seen} == {0, 1, 2} and any(0 < alpha < 1 for _, alpha in seen)
    assert (players.D.level, players.D.alpha) == (players.G_ema.level, players.G_ema.alpha) == (2, 1.0)
    assert not torch.equal(top_before, players.G.to_rgb[-1].weight)  # the full-resolution level trained
    assert np.isfinite(trainer.callbacks.last["loss_d"]) and np.isfinite(trainer.callbacks.last["loss_g"])
    x = players.G_ema(torch.randn(4, 8))
    assert x.shape == (4, 1, 16, 16) and not blocks_are_constant(x, 2)


def test_cli_trains_digits_to_full_resolution_and_resumes_exactly(tmp_path):
    run = tmp_path / "pg"
    assert main(["train", "digits", "--set", "model.net=progressive", "--steps", "30", "--out", str(run), "--quiet"]) == 0
    G = Run(run).generator()
    assert isinstance(G, ProgressiveGenerator) and (G.level, G.alpha) == (G.k, 1.0) == (1, 1.0)
    assert main(["sample", str(run), "--n", "8", "--out", str(tmp_path / "s.npy")]) == 0
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape[:3] == (8, 8, 8)

    # resume from a checkpoint taken mid-fade (step 20 of 30 with pg_grow=1: level 1, alpha 1/3)
    # ends bit for bit where the uninterrupted run ends: the schedule is recomputed from the step
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    args = ["--set", "model.net=progressive", "--set", "model.pg_grow=1", "--set", "train.log_every=10",
            "--set", "train.ckpt_every=10", "--set", "model.g_width=16", "--set", "model.d_width=16",
            "--steps", "30", "--quiet"]
    assert main(["train", "digits", "--out", str(whole), *args]) == 0
    assert growth_schedule(20 / 30, 1, grow=1.0) == (1, pytest.approx(1 / 3))
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "checkpoints" / "step-00000030")
    (cut / "summary.json").unlink()
    assert main(["train", "--resume", str(cut), "--quiet"]) == 0
    final = "checkpoints/step-00000030/weights.safetensors"
    a, b = load_file(str(whole / final)), load_file(str(cut / final))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
