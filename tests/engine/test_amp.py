"""Mixed precision and torch.compile (train.amp, train.compile), exercised on the CPU.

CUDA is not needed: bf16 autocast runs on the CPU; fp16 with its GradScaler is forced onto the CPU
(CPU autocast supports float16) by patching ``resolve_amp``; compilation uses the ``eager``
backend, which traces with dynamo but generates no code.
"""

import errno
import json

import pytest
import torch
from torch import nn

from conftest import TINY
from ganforge.config import RunConfig, set_value
from ganforge.errors import UsageError
from ganforge.rundir.run import Run
from ganforge.rundir.session import train
from ganforge.engine import checkpoint as ckpt
from ganforge.engine import precision
from ganforge.engine.loop import Trainer, build_players
from ganforge.engine.steps import NullCallbacks
from ganforge.engine.precision import Precision, resolve_amp, resolve_compile

CPU = torch.device("cpu")


def make_trainer(**settings) -> Trainer:
    cfg = RunConfig()
    for key, value in {"model.g_width": 16, "model.d_width": 16, "model.g_depth": 2, "model.d_depth": 2,
                       "train.batch": 32, "train.log_every": 5, "train.steps": 6, "train.loss": "wgan-gp",
                       "train.r1_weight": 1.0, "train.r1_every": 2, **settings}.items():
        set_value(cfg, key, value)
    torch.manual_seed(123)
    data = torch.randn(500, 2) * 0.5 + 1.0
    players = build_players(cfg, "mlp", 4, (2,), CPU)
    return Trainer(cfg, players, data, CPU, NullCallbacks())


def weights(trainer: Trainer) -> dict:
    return {f"{name}.{k}": v.detach().clone() for name, m in trainer.modules().items() for k, v in m.state_dict().items()}


@pytest.fixture
def eager_compile(monkeypatch):
    monkeypatch.setattr(precision, "COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def fp16_on_cpu(monkeypatch):
    """fp16 autocast and a GradScaler on the CPU, which a user cannot ask for."""
    from ganforge.rundir import resolve as resolve_module

    def resolve(setting, device, nets=()):
        return "fp16" if setting == "fp16" else "off"

    monkeypatch.setattr(precision, "resolve_amp", resolve)
    monkeypatch.setattr(resolve_module, "resolve_amp", resolve)


def tiny_cfg(*settings: str) -> RunConfig:
    cfg = RunConfig()
    for kv in (*TINY, *settings):
        set_value(cfg, *kv.split("="))
    cfg.data.source = "ring8"
    return cfg


def quiet(*_):
    pass


def test_auto_is_off_on_the_cpu_and_the_summary_says_so(tmp_path):
    assert resolve_amp("auto", CPU) == "off" and resolve_amp("bf16", CPU) == "bf16"
    assert resolve_compile("auto", CPU) is False and resolve_compile("on", CPU) is True
    # a net with a training schedule would recompile at every step: auto never compiles it, even on CUDA
    scheduled = nn.Linear(1, 1)
    scheduled.set_progress = lambda fraction: None
    assert resolve_compile("auto", torch.device("cuda"), (scheduled,)) is False
    trainer = make_trainer()
    assert trainer.precision.summary() == {"amp": "off", "compile": False}
    assert trainer.G_fwd is trainer.p.G and trainer.precision.scaler is None
    summary = train(tiny_cfg("train.steps=10"), out=tmp_path / "run", progress=False, echo=quiet)
    assert summary["precision"] == {"amp": "off", "compile": False}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["amp"] == "auto"


def test_bf16_on_the_cpu_trains_with_finite_losses_and_takes_the_autocast_path():
    reference, bf16 = make_trainer(), make_trainer(**{"train.amp": "bf16"})
    assert bf16.precision.summary() == {"amp": "bf16", "compile": False}
    seen = []
    bf16.p.D.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    reference.run()
    bf16.run()  # logs at steps 5 and 6: TrainingDiverged would be raised on a NaN/inf loss
    assert torch.bfloat16 in seen
    record = bf16.callbacks.last
    assert all(map(torch.isfinite, torch.tensor([record["loss_d"], record["loss_g"]])))
    a, b = weights(reference), weights(bf16)
    assert all(v.dtype == a[k].dtype for k, v in b.items())  # autocast leaves the parameters in float32
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_fp16_on_the_cpu_is_one_usage_error_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(UsageError, match="train.amp=fp16 needs a CUDA device"):
        make_trainer(**{"train.amp": "fp16"})
    from ganforge.cli import main

    out = tmp_path / "run"
    assert main(["train", "ring8", "--out", str(out), "--quiet", "--set", "train.amp=fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ganforge: error: train.amp=fp16") and "bf16" in err[0]
    assert not out.exists()


def test_fp16_scaler_skips_overflowing_steps_without_tripping_the_nan_stop(fp16_on_cpu):
    trainer = make_trainer(**{"train.amp": "fp16", "train.steps": 5})
    assert trainer.precision.scaler is not None and trainer.precision.scaler.is_enabled()
    # a scale so large that every fp16 backward overflows: all 10 optimiser steps are skipped
    trainer.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 100)
    before = weights(trainer)
    trainer.run()  # a NaN/inf gradient norm at the log would raise TrainingDiverged
    record = trainer.callbacks.last
    assert record["amp_skipped"] == 10
    assert not torch.isfinite(torch.tensor(record["grad_norm_d"]))
    after = weights(trainer)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("G_ema"))


def test_fp16_with_a_scaler_trains_r1_and_gp_on_the_cpu(fp16_on_cpu):
    trainer = make_trainer(**{"train.amp": "fp16"})
    before = weights(trainer)
    trainer.run()
    record = trainer.callbacks.last
    assert record["amp_skipped"] in (0, 1, 2)  # the steps since the last log (step 5)
    assert all(map(torch.isfinite, torch.tensor([record["loss_d"], record["loss_g"], record["grad_norm_d"]])))
    after = weights(trainer)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_penalty_with_a_grad_scale_equals_the_unscaled_penalty():
    from ganforge.losses import gradient_penalty, r1_penalty

    D = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1), nn.Flatten(0))
    real, fake, eps = torch.randn(16, 2), torch.randn(16, 2), torch.rand(16)
    torch.testing.assert_close(r1_penalty(D, real, 1024.0), r1_penalty(D, real))
    torch.testing.assert_close(gradient_penalty(D, real, fake, eps, 2.0 ** 16), gradient_penalty(D, real, fake, eps))


def test_compiled_nets_train_exactly_as_the_plain_ones(eager_compile):
    plain = make_trainer(**{"train.reuse_fakes": True})
    compiled = make_trainer(**{"train.compile": "on", "train.reuse_fakes": True})
    assert isinstance(compiled.G_train, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled.G_fwd is compiled.G_train and compiled.G_train._orig_mod is compiled.p.G
    assert compiled.precision.summary() == {"amp": "off", "compile": True}
    plain.run()
    compiled.run()
    a, b = weights(plain), weights(compiled)
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in b)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def test_a_compiled_runs_checkpoint_resumes_uncompiled(tmp_path, eager_compile):
    compiled = make_trainer(**{"train.compile": "on"})
    compiled.run()
    path = ckpt.save_checkpoint(tmp_path, compiled.step, compiled.modules(), compiled.optimizers(),
                                compiled.generators(), {})
    plain = make_trainer(**{"train.steps": 10})
    tensors, state = ckpt.read_checkpoint(path)
    ckpt.restore(tensors, state, plain.modules(), plain.optimizers(), plain.generators())
    plain.step = state["step"]
    a, b = weights(compiled), weights(plain)
    assert all(torch.equal(a[k], b[k]) for k in a)
    compiled.t.steps = 10  # both continue, from the same state, to step 10
    compiled.run()
    plain.run()
    a, b = weights(compiled), weights(plain)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_grad_scaler_state_round_trips_through_json(fp16_on_cpu):
    source = make_trainer(**{"train.amp": "fp16", "train.steps": 5})
    source.precision.scaler = torch.amp.GradScaler("cpu", growth_interval=7)
    source.run()  # 10 optimiser steps: the scale backs off at overflows and grows after 7 clean steps
    saved = json.loads(json.dumps(source.precision.state()))  # as it goes through state.json
    assert saved["growth_interval"] == 7 and (saved["scale"], saved["_growth_tracker"]) != (2.0 ** 16, 0)
    target = Precision(source.t, CPU)
    target.load_state(saved)
    assert target.scaler.state_dict() == saved
    Precision(RunConfig().train, CPU).load_state(saved)  # a run without a scaler ignores it


def test_an_fp16_run_stopped_by_a_full_disk_resumes_with_its_loss_scale(tmp_path, monkeypatch, fp16_on_cpu):
    """The scale oscillates (a start far above what fits, growth every 3 steps): a resume that lost
    the scaler's state would skip other steps and end with other weights."""
    from functools import partial

    monkeypatch.setattr(torch.amp, "GradScaler", partial(torch.amp.GradScaler, init_scale=2.0 ** 24, growth_interval=3))
    settings = ("train.amp=fp16", "train.steps=40", "train.ckpt_every=20", "train.r1_every=2")
    reference = train(tiny_cfg(*settings), out=tmp_path / "reference", progress=False, echo=quiet)
    skipped = [r["amp_skipped"] for r in Run(tmp_path / "reference").log.records() if "amp_skipped" in r]
    assert sum(skipped[2:]) > 0  # steps are skipped after the checkpoint at step 20 too

    write = ckpt.save
    calls = {"n": 0}

    def full_at_step_40(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # checkpoints 0, 20, then 40
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(*args, **kwargs)

    monkeypatch.setattr(ckpt, "save", full_at_step_40)
    with pytest.raises(UsageError, match="No space left"):
        train(tiny_cfg(*settings), out=tmp_path / "stopped", progress=False, echo=quiet)
    state = json.loads((tmp_path / "stopped" / "checkpoints" / "step-00000020" / "state.json").read_text())
    assert set(state["extra"]["grad_scaler"]) == {"scale", "growth_factor", "backoff_factor", "growth_interval",
                                                  "_growth_tracker"}
    monkeypatch.setattr(ckpt, "save", write)
    train(None, resume=tmp_path / "stopped", progress=False, echo=quiet)
    a = ckpt.read_checkpoint(tmp_path / "reference" / "checkpoints" / "step-00000040")[0]
    b = ckpt.read_checkpoint(tmp_path / "stopped" / "checkpoints" / "step-00000040")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert reference["precision"] == {"amp": "fp16", "compile": False}


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_on_the_cpu_for_convolutional_nets_only_where_bf16_is_in_hardware(monkeypatch, native):
    # measured (docs/BENCHMARKS.md): bf16 autocast makes the DCGAN step faster on a CPU with AVX512-BF16
    # or AMX, slower for the points MLPs even there, and 4x slower where it is emulated (AVX2)
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    conv, mlp = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()), nn.Sequential(nn.Linear(2, 4))
    assert resolve_amp("auto", CPU, (mlp, conv)) == ("bf16" if native else "off")
    assert resolve_amp("auto", CPU, (mlp,)) == "off"
    assert resolve_amp("off", CPU, (conv,)) == "off" and resolve_amp("bf16", CPU, (mlp,)) == "bf16"
    cfg = RunConfig()
    for key, value in {"model.g_width": 8, "model.d_width": 8, "train.batch": 4}.items():
        set_value(cfg, key, value)
    players = build_players(cfg, "dcgan", 8, (1, 8, 8), CPU)
    trainer = Trainer(cfg, players, torch.rand(16, 1, 8, 8) * 2 - 1, CPU, NullCallbacks())
    assert trainer.precision.summary()["amp"] == ("bf16" if native else "off")


def test_the_probe_of_native_bf16_answers_on_this_machine():
    assert isinstance(precision.native_bf16_cpu(), bool)
