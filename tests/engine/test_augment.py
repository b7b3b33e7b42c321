"""Differentiable augmentation (DiffAugment) and ADA's adaptive probability: each op, the pipeline,
the loop's use of it (real and fake alike, penalties on what D sees), the ADA rule, the refusals,
and exact resume with augmentation on."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge.config import RunConfig, TrainConfig, set_value, validate
from ganforge.engine.augment import OPS, Augment, brightness, check_augment, contrast, cutout, saturation, translation
from ganforge.engine.loop import Trainer, build_players
from ganforge.engine.steps import NullCallbacks
from ganforge.errors import UsageError
from ganforge.families import get_family
from ganforge.rundir.report import read_run, render
from ganforge.rundir.session import train

# an op's output range for inputs in [-1, 1] (colour ops may leave it, as in DiffAugment; see each op)
BOUNDS = {"translation": 1.0, "cutout": 1.0, "brightness": 1.5, "saturation": 3.0, "contrast": 2.0, "color": 9.0}


def images(n: int = 16, c: int = 3, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def pipeline(ops: str, p: float = 1.0, seed: int = 0, ada: bool = False, **ada_settings) -> Augment:
    cfg = TrainConfig(augment=ops, augment_p=p, ada=ada, **ada_settings)
    return Augment(cfg, (3, 8, 8), torch.Generator().manual_seed(seed))


def test_every_registered_op_is_tested():
    assert set(OPS) == set(BOUNDS)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_op_is_differentiable_and_keeps_shape_and_range(name):
    x = images().requires_grad_(True)
    y = pipeline(name)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(y, x)  # at p = 1 every sample is augmented
    assert y.abs().max() <= BOUNDS[name] + 1e-6
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_translation_shifts_by_whole_pixels_and_fills_with_zero():
    x = images(n=3, h=8, w=16)  # reach: 1 row, 2 columns
    u = torch.tensor([[0.0, 0.99], [0.5, 0.5], [0.99, 0.0]])  # (dy, dx) = (-1, 2), (0, 0), (1, -2)
    y = translation(x, u)
    torch.testing.assert_close(y[1], x[1])
    torch.testing.assert_close(y[0, :, :-1, 2:], x[0, :, 1:, :-2])  # content moved up 1 row, right 2 columns
    assert (y[0, :, -1] == 0).all() and (y[0, :, :, :2] == 0).all()
    torch.testing.assert_close(y[2, :, 1:, :-2], x[2, :, :-1, 2:])


def test_cutout_zeroes_one_half_size_square():
    x = images(n=2, h=8, w=8) + 2  # no zeros of its own
    y = cutout(x, torch.tensor([[0.5, 0.5], [0.0, 0.0]]))  # centred on pixel (4, 4), and on (0, 0)
    assert (y[0, :, 2:6, 2:6] == 0).all() and int((y[0] == 0).sum()) == 3 * 16
    assert (y[1, :, :2, :2] == 0).all() and int((y[1] == 0).sum()) == 3 * 4  # only the part inside the image
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept])


def test_colour_ops_scale_about_the_right_means():
    x = images(n=4)
    half = torch.full((4, 1), 0.5)
    torch.testing.assert_close(brightness(x, half), x)  # + 0
    torch.testing.assert_close(saturation(x, half), x)  # x 1
    torch.testing.assert_close(contrast(x, half), x)  # x 1
    torch.testing.assert_close(brightness(x, torch.zeros(4, 1)), x - 0.5)
    gray = saturation(x, torch.zeros(4, 1))  # x 0: every channel at the pixel's mean
    torch.testing.assert_close(gray, x.mean(dim=1, keepdim=True).expand_as(x))
    flat = contrast(x, torch.zeros(4, 1))  # x 0.5: half-way to each image's mean
    torch.testing.assert_close(flat, (x + x.mean(dim=(1, 2, 3), keepdim=True)) / 2)


def test_identity_at_p_zero_draws_nothing():
    aug = pipeline("translation,cutout,color", p=0.0)
    state = aug.gen.get_state()
    x = images()
    assert aug(x) is x
    assert torch.equal(aug.gen.get_state(), state)


def test_each_op_is_applied_to_about_p_of_the_samples():
    x = images(n=4000, h=4, w=4)
    y = pipeline("brightness", p=0.3)(x)
    changed = (y != x).flatten(1).any(dim=1).float().mean().item()
    assert changed == pytest.approx(0.3, abs=0.03)


def test_deterministic_for_a_given_generator_state():
    x = images()
    a, b = pipeline("translation,cutout,color", seed=5), pipeline("translation,cutout,color", seed=5)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)  # and again, from the advanced states
    assert not torch.equal(a(x), pipeline("translation,cutout,color", seed=6)(x))


# --- the loop ----------------------------------------------------------------------------------

def image_trainer(**settings) -> Trainer:
    cfg = RunConfig()
    for key, value in {"model.g_width": 8, "model.d_width": 8, "model.d_norm": "none", "train.batch": 8,
                       "train.augment": "translation,cutout,color", "train.augment_p": 0.5, **settings}.items():
        set_value(cfg, key, value)
    players = build_players(cfg, "dcgan", 8, (1, 8, 8), torch.device("cpu"))
    return Trainer(cfg, players, images(n=32, c=1), torch.device("cpu"), NullCallbacks())


class Spy:
    """The trainer's pipeline, recording (p, whether the input has a graph, the output) of each call."""

    def __init__(self, inner: Augment) -> None:
        self.inner, self.calls = inner, []

    def __call__(self, x):
        out = self.inner(x)
        self.calls.append((self.inner.p, x.requires_grad, out))
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_real_and_fake_go_through_the_same_pipeline_and_penalties_see_what_d_sees():
    trainer = image_trainer(**{"train.r1_weight": 1.0, "train.r1_every": 1})
    trainer.augment = spy = Spy(trainer.augment)
    calls, penalised, penalties = spy.calls, [], trainer.penalties

    def recorded(real, fake, *rest):
        penalised.append((real, fake))
        return penalties(real, fake, *rest)

    trainer.penalties = recorded
    trainer.d_step(noise_std=0.0)
    assert len(calls) == 2 and calls[0][0] == calls[1][0] == 0.5  # real, then fake, with one p
    assert penalised[0][0] is calls[0][2] and penalised[0][1] is calls[1][2]
    trainer.g_step(noise_std=0.0)
    assert len(calls) == 3 and calls[2][0] == 0.5 and calls[2][1]  # G's fakes, with G's graph


def test_fakes_are_augmented_in_the_g_step_and_g_still_learns():
    trainer = image_trainer(**{"train.augment_p": 1.0})
    before = {k: v.clone() for k, v in trainer.p.G.state_dict().items()}
    trainer.g_step(noise_std=0.0)
    assert any(not torch.equal(before[k], v) for k, v in trainer.p.G.state_dict().items())


def test_ada_rule_moves_p_towards_the_target_and_stays_in_0_1():
    # batch 128 (the default) x 4 D steps / 2,048 images: 0.25 per adjustment
    aug = pipeline("translation", ada=True, ada_interval=4, ada_kimg=2.048, ada_target=0.6)
    assert aug.p == 0.0
    below = torch.tensor([3.0, 1.0, 2.0, -1.0])  # r_t = 0.5
    for i in range(3):
        aug.observe(torch.ones(4), i)
        assert aug.p == 0.0  # only every ada_interval-th D step
    aug.observe(torch.ones(4), 3)  # r_t = 1 > 0.6: up
    assert aug.p == pytest.approx(0.25) and aug.last_rt == 1.0
    for i in range(4, 8):
        aug.observe(below, i)  # r_t = 0.5 < 0.6: down
    assert aug.p == pytest.approx(0.0) and aug.last_rt == 0.5
    for i in range(8, 16):
        aug.observe(-torch.ones(4), i)
    assert aug.p == 0.0  # clipped at 0
    small = pipeline("translation", ada=True, ada_interval=1, ada_kimg=1.28)  # 0.1 per adjustment
    for i in range(25):
        small.observe(torch.ones(4), i)
        assert 0.0 <= small.p <= 1.0
    assert small.p == 1.0  # clipped at 1


def test_ada_state_round_trip_keeps_a_half_counted_interval():
    a = pipeline("cutout", ada=True, ada_interval=4, ada_kimg=1.28)
    for i in range(6):
        a.observe(torch.tensor([1.0, 1.0, -1.0]), i)
    b = pipeline("cutout", ada=True, ada_interval=4, ada_kimg=1.28)
    b.load_state(json.loads(json.dumps(a.state())))
    for aug in (a, b):
        aug.observe(torch.ones(3), 6)
        aug.observe(torch.ones(3), 7)
    assert a.p == b.p and a.last_rt == b.last_rt == pytest.approx((2 * (1 / 3) + 2) / 4)


def test_fixed_p_is_not_steered():
    aug = pipeline("color", p=0.7)
    aug.observe(torch.ones(8), 3)
    assert aug.p == 0.7 and aug.state()["p"] == 0.7


# --- refusals ----------------------------------------------------------------------------------

def test_augmentation_of_points_is_refused_in_one_line():
    with pytest.raises(UsageError) as err:
        check_augment(TrainConfig(augment="translation"), (2,))
    assert "train.augment" in str(err.value) and "\n" not in str(err.value)
    check_augment(TrainConfig(augment=""), (2,))  # off: fine


def test_unknown_op_names_the_closest_one():
    with pytest.raises(UsageError, match="did you mean 'translation'"):
        check_augment(TrainConfig(augment="translaton"), (1, 8, 8))


@pytest.mark.parametrize("settings, words", [
    ({"train.augment_p": 1.5}, "train.augment_p"),
    ({"train.ada": True}, "train.augment="),
    ({"train.augment": "cutout", "train.ada_target": 1.0}, "train.ada_target"),
    ({"train.augment": "cutout", "train.ada_kimg": 0}, "train.ada_kimg"),
    ({"train.augment": "cutout", "train.ada_interval": 0}, "train.ada_interval"),
    ({"train.augment": "cutout", "data.task": "edges"}, "data.task=edges"),
])
def test_config_ranges_are_checked(settings, words):
    cfg = RunConfig()
    for key, value in settings.items():
        set_value(cfg, key, value)
    with pytest.raises(UsageError, match=words):
        validate(cfg)


def test_a_run_on_points_with_augmentation_stops_before_writing(tmp_path):
    with pytest.raises(UsageError, match="images"):
        ganforge.train("ring8", out=tmp_path / "run", settings={"train.augment": "translation", "data.n": 256})
    assert not (tmp_path / "run").exists()


# --- exact resume ------------------------------------------------------------------------------

def test_resume_with_ada_is_exact(tmp_path):
    settings = {"model.g_width": 8, "model.d_width": 8, "train.batch": 16, "train.steps": 8, "train.log_every": 1,
                "train.ckpt_every": 5, "train.eval_every": 0, "train.snapshot_every": 0,
                "train.augment": "translation,cutout,color", "train.ada": True, "train.ada_interval": 2,
                "train.ada_kimg": 0.128, "train.ada_target": 0.2, "train.lr_d": 2e-3}
    # 0.25 per adjustment after every 2nd D step, and a fast D, so p has moved by the checkpoint at step 5,
    # which is in the middle of an interval
    out = tmp_path / "run"
    ganforge.train("digits", out=out, settings=settings)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    p = [r["aug_p"] for r in records if "aug_p" in r]
    assert len(p) == 8 and p[4] > 0  # p moved before the checkpoint
    page = render([read_run(out)])
    assert '<section id="augment">' in page and "r_t = E[sign D(x_real)]" in page  # the report draws p and r_t
    last = json.loads((out / "summary.json").read_text())["last_log"]
    assert f"augment    p {p[-1]:.3f}   r_t {last['ada_rt']:.3f}" in "\n".join(get_family("gan").summary_lines(last))
    again = tmp_path / "again"
    shutil.copytree(out, again)
    shutil.rmtree(again / "checkpoints" / "step-00000008")
    train(None, resume=again, progress=False, echo=lambda _: None)
    a = load_file(str(out / "checkpoints" / "step-00000008" / "weights.safetensors"))
    b = load_file(str(again / "checkpoints" / "step-00000008" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    state = json.loads((again / "checkpoints" / "step-00000008" / "state.json").read_text())
    assert state["extra"]["augment"]["p"] == p[-1]
    resumed = [json.loads(line) for line in (again / "metrics.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in r.items() if k != "time"} for r in records]
    assert [{k: v for k, v in r.items() if k != "time"} for r in resumed] == strip
