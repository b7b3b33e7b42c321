"""The loop's contract: each player's step leaves the other player untouched; k D steps per G step."""

import copy
import math

import pytest
import torch

from ganforge.config import RunConfig, set_value
from ganforge.engine.loop import Trainer, build_players
from ganforge.engine.steps import NullCallbacks




def make_trainer(**settings) -> Trainer:
    cfg = RunConfig()
    for key, value in {"model.g_width": 16, "model.d_width": 16, "model.g_depth": 2, "model.d_depth": 2,
                       "train.batch": 32, "train.log_every": 5, "train.steps": 10, **settings}.items():
        set_value(cfg, key, value)
    torch.manual_seed(123)
    data = torch.randn(500, 2) * 0.5 + 1.0
    players = build_players(cfg, "mlp", 4, (2,), torch.device("cpu"))
    return Trainer(cfg, players, data, torch.device("cpu"), NullCallbacks())


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_changed(a, b):
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("loss", ["minimax", "ns", "wasserstein", "wgan-gp", "hinge", "lsgan"])
def test_d_step_leaves_generator_untouched(loss):
    trainer = make_trainer(**{"train.loss": loss, "train.r1_weight": 1.0})
    G0, D0 = snapshot(trainer.p.G), snapshot(trainer.p.D)
    trainer.d_step(noise_std=0.0)
    assert_same(G0, snapshot(trainer.p.G))
    assert all(p.grad is None for p in trainer.p.G.parameters())
    assert_changed(D0, snapshot(trainer.p.D))


@pytest.mark.parametrize("loss", ["minimax", "ns", "wasserstein", "wgan-gp", "hinge", "lsgan"])
def test_g_step_leaves_discriminator_untouched(loss):
    trainer = make_trainer(**{"train.loss": loss})
    trainer.d_step(noise_std=0.0)  # give D's optimiser some state too
    G0, D0 = snapshot(trainer.p.G), snapshot(trainer.p.D)
    opt_D0 = copy.deepcopy(trainer.p.opt_D.state_dict())
    D_grads = [p.grad.clone() for p in trainer.p.D.parameters()]
    trainer.g_step(noise_std=0.0)
    assert_same(D0, snapshot(trainer.p.D))
    for before, p in zip(D_grads, trainer.p.D.parameters()):
        assert torch.equal(before, p.grad)  # no gradient was even accumulated into D
    after = trainer.p.opt_D.state_dict()
    for idx, stats in opt_D0["state"].items():
        for key, value in stats.items():
            assert torch.equal(value, after["state"][idx][key])
    assert_changed(G0, snapshot(trainer.p.G))
    assert all(p.requires_grad for p in trainer.p.D.parameters())


def test_n_critic_discriminator_steps_per_generator_step():
    trainer = make_trainer(**{"train.n_critic": 5, "train.steps": 3, "train.log_every": 100})
    calls = {"d": 0, "g": 0}
    d_step, g_step = trainer.d_step, trainer.g_step
    trainer.d_step = lambda s, i: (calls.__setitem__("d", calls["d"] + 1), d_step(s, i))
    trainer.g_step = lambda s: (calls.__setitem__("g", calls["g"] + 1), g_step(s))
    trainer.run()
    assert calls == {"d": 15, "g": 3}
    assert trainer.p.opt_D.state_dict()["state"][0]["step"].item() == 15
    assert trainer.p.opt_G.state_dict()["state"][0]["step"].item() == 3


def test_separate_learning_rates():
    trainer = make_trainer(**{"train.lr_g": 1e-3, "train.lr_d": 4e-4})
    assert trainer.p.opt_G.param_groups[0]["lr"] == 1e-3
    assert trainer.p.opt_D.param_groups[0]["lr"] == 4e-4


def test_weight_clipping_bounds_every_critic_weight():
    trainer = make_trainer(**{"train.loss": "wasserstein", "train.weight_clip": 0.01, "train.lr_d": 0.1})
    trainer.d_step(0.0)
    assert max(p.abs().max().item() for p in trainer.p.D.parameters()) <= 0.01


def test_ema_follows_generator_with_rampup():
    trainer = make_trainer(**{"train.ema": 0.999})
    trainer.step = 0
    trainer.update_ema()  # at step 0 the ramp-up makes G_ema a copy of G
    assert_same(snapshot(trainer.p.G), snapshot(trainer.p.G_ema))
    trainer.g_step(0.0)
    trainer.step = 1000
    before = snapshot(trainer.p.G_ema)
    trainer.update_ema()
    decay = min(0.999, 1 - 1 / (1 + 0.1 * 1000))
    for (name, ema), g in zip(trainer.p.G_ema.named_parameters(), trainer.p.G.parameters()):
        torch.testing.assert_close(ema, before[name] * decay + g.detach() * (1 - decay))


@pytest.mark.parametrize("settings", [
    {"train.pack": 4},
    {"model.minibatch_stddev": True},
    {"model.spectral_norm": True},
    {"train.separate_batches": False},
    {"train.soft_labels": True, "train.label_flip": 0.1},
    {"train.label_smoothing": 0.1},
    {"train.instance_noise": 0.5},
    {"model.d_norm": "batch", "model.g_norm": "batch"},
    {"model.d_norm": "layer", "model.g_activation": "elu"},
    {"train.loss": "wgan-gp", "train.n_critic": 5},
    {"train.lr_decay": 1.0},
])
def test_every_trick_trains_and_logs_finite_values(settings):
    trainer = make_trainer(**settings)
    trainer.run()
    record = trainer.callbacks.last
    assert record["step"] == 10
    assert all(v == v for v in (record["loss_d"], record["loss_g"], record["d_real"], record["d_fake"]))
    conf = record["confusion"]
    assert conf["tp"] + conf["fn"] + conf["fp"] + conf["tn"] == pytest.approx(1.0)


def test_training_is_deterministic_for_a_seed():
    a, b = make_trainer(), make_trainer()
    a.run()
    b.run()
    assert_same(snapshot(a.p.G), snapshot(b.p.G))


def test_running_in_pieces_until_a_step_equals_one_run_with_the_whole_schedule():
    """``run(until=...)`` stops early but keeps the schedule of train.steps: the learning rate decays
    over the whole run (a benchmark that grew train.steps chunk by chunk had it near 0 from the start)."""
    settings = {"train.lr_decay": 1.0, "train.steps": 20}
    whole, pieces = make_trainer(**settings), make_trainer(**settings)
    whole.run()
    logged = []
    pieces.callbacks.on_log = lambda record: logged.append(record["step"])
    pieces.run(until=7)
    # the rate of the 7th step (step 6 of 20), not of step 6 of 7
    assert pieces.step == 7 and pieces.p.opt_G.param_groups[0]["lr"] == pytest.approx(
        pieces.t.lr_g * 0.5 * (1 + math.cos(math.pi * 6 / 20)))
    pieces.run(until=13)
    pieces.run(until=99)  # capped by train.steps
    assert pieces.step == 20 and logged == [5, 10, 15, 20]  # logs at log_every, not at the ends of the pieces
    assert_same(snapshot(whole.p.G), snapshot(pieces.p.G))
    assert_same(snapshot(whole.p.G_ema), snapshot(pieces.p.G_ema))


def test_lr_decay_reaches_the_floor_at_the_last_step():
    trainer = make_trainer(**{"train.lr_decay": 0.9, "train.lr_g": 1e-3})
    trainer.step = trainer.t.steps
    trainer.set_learning_rates()
    assert trainer.p.opt_G.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_lazy_r1_applies_every_kth_d_step_scaled_by_k():
    from ganforge.losses import r1_penalty

    trainer = make_trainer(**{"train.r1_weight": 0.5, "train.r1_every": 4, "train.loss": "ns"})
    real, fake = trainer.data[:32], torch.zeros(32, 2)
    expected = 0.5 * 4 * r1_penalty(trainer.p.D, real)
    for index in range(8):
        penalty = trainer.penalties(real, fake, index)
        if index % 4:
            assert penalty == 0.0
        else:
            assert torch.allclose(penalty, expected)


def test_lazy_r1_counts_d_steps_across_generator_steps():
    # with n_critic = 2 and r1_every = 4, R1 falls on the first D step of every second G step
    trainer = make_trainer(**{"train.r1_weight": 1.0, "train.r1_every": 4, "train.n_critic": 2})
    seen = []
    original = trainer.penalties
    trainer.penalties = lambda real, fake, index, c=None: seen.append(index) or original(real, fake, index, c)
    trainer.run()
    assert seen == list(range(20))


@pytest.mark.parametrize("n_critic", [1, 3])
def test_reuse_fakes_runs_G_once_per_D_step_and_G_step_uses_the_last_fakes(n_critic):
    trainer = make_trainer(**{"train.reuse_fakes": True, "train.n_critic": n_critic, "train.steps": 4,
                              "train.log_every": 100})
    outputs = []
    trainer.p.G.register_forward_hook(lambda module, args, out: outputs.append(out))
    G0, D0 = snapshot(trainer.p.G), snapshot(trainer.p.D)
    for i in range(n_critic):
        trainer.d_step(0.0, i)
    assert_same(G0, snapshot(trainer.p.G))  # D's steps still leave G alone
    assert all(p.grad is None for p in trainer.p.G.parameters())
    seen_by_d = []
    trainer.p.D.register_forward_pre_hook(lambda module, args: seen_by_d.append(args[0]))
    trainer.g_step(0.0)
    assert len(outputs) == n_critic  # no extra forward pass of G for the G step
    assert torch.equal(seen_by_d[0], outputs[-1].detach())  # ... which judged the last D step's fakes
    assert_changed(G0, snapshot(trainer.p.G))
    assert trainer.kept is None


def test_small_fully_connected_nets_step_on_one_thread_and_the_setting_comes_back():
    # a 2-D MLP's matrices are too small for two threads to share (docs/BENCHMARKS.md): its steps run
    # on one; torch's thread count is restored afterwards, also when the loop stops with an error
    before = torch.get_num_threads()
    if before < 2:
        torch.set_num_threads(2)
    try:
        trainer = make_trainer()
        seen = []
        trainer.iteration = lambda: (seen.append(torch.get_num_threads()), setattr(trainer, "step", trainer.step + 1))
        trainer.run()
        assert set(seen) == {1}
        assert torch.get_num_threads() >= 2

        def boom():
            raise RuntimeError("stop")

        trainer.step, trainer.iteration = 0, boom
        with pytest.raises(RuntimeError):
            trainer.run()
        assert torch.get_num_threads() >= 2
        # a wide net (or any convolutional one) keeps torch's setting
        wide = make_trainer(**{"model.g_width": 1024, "model.d_width": 1024, "train.batch": 256})
        wide.iteration = lambda: (seen.append(torch.get_num_threads()), setattr(wide, "step", wide.step + 1))
        seen.clear()
        wide.run()
        assert set(seen) == {torch.get_num_threads()}
    finally:
        torch.set_num_threads(before)
