"""Exact resume: a run killed with SIGKILL and resumed ends bit for bit where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY

STEPS = 1500
ARGS = ["--steps", str(STEPS), "--quiet", "--seed", "7",
        *[a for kv in (*TINY, "train.ckpt_every=100", "train.eval_every=500", "train.pack=2",
                       "train.instance_noise=0.1", "train.soft_labels=true") for a in ("--set", kv)]]


def final_tensors(run: Path) -> dict:
    return load_file(str(run / "checkpoints" / f"step-{STEPS:08d}" / "weights.safetensors"))


def log_without_time(run: Path) -> list:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.pop("time", None)
    return records


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "ganforge", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_after_checkpoint(proc, run: Path, step: int) -> None:
    """SIGKILL the process as soon as checkpoint ``step`` (or a later one) exists."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        done = [p for p in (run / "checkpoints").glob("step-*")] if (run / "checkpoints").exists() else []
        if any(int(p.name[5:]) >= step for p in done):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists()


def test_sigkill_and_resume_match_an_uninterrupted_run(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    ref = start("ring8", "--out", str(reference), *ARGS)

    proc = start("ring8", "--out", str(killed), *ARGS)
    kill_after_checkpoint(proc, killed, 300)
    # what a kill in the middle of a save or a log write leaves behind
    (killed / "checkpoints" / ".step-99999999.abc.tmp").mkdir()
    with open(killed / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 99999, "loss_d": 1.')

    proc = start("--resume", str(killed))
    kill_after_checkpoint(proc, killed, 900)  # killed a second time, during the resumed run
    resumed = subprocess.run([sys.executable, "-m", "ganforge", "train", "--resume", str(killed), "--quiet"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert ref.wait() == 0, ref.stderr.read()

    a, b = final_tensors(reference), final_tensors(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # weights, optimiser moments and RNG states alike
    assert log_without_time(reference) == log_without_time(killed)
    assert not list((killed / "checkpoints").glob("*.tmp"))


def test_resume_of_a_finished_run_can_extend_it(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("train", "ring8", "--out", str(run), "--steps", "30", "--quiet",
               *[a for kv in TINY for a in ("--set", kv)]).returncode == 0
    proc = cli("train", "--resume", str(run), "--steps", "50", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "summary.json").read_text())["steps"] == 50
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 50


def test_nan_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """A loss that turns NaN after step 35: training stops at the next log, checkpoint 30 stays."""
    from ganforge import losses
    from ganforge.config import RunConfig, set_value
    from ganforge.errors import TrainingDiverged
    from ganforge.rundir.run import Run
    from ganforge.rundir.session import train

    calls = {"n": 0}
    ns = losses.LOSSES["ns"]

    def g_turning_nan(fake_logits):
        calls["n"] += 1
        return ns.g(fake_logits) * (float("nan") if calls["n"] > 35 else 1.0)

    monkeypatch.setitem(losses.LOSSES, "nan-after-35", losses.Loss("nan-after-35", ns.d, g_turning_nan, True))
    cfg = RunConfig()
    for kv in (*TINY, "train.loss=nan-after-35", "train.steps=100", "train.ckpt_every=10"):
        set_value(cfg, *kv.split("="))
    cfg.data.source = "ring8"
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(cfg, out=tmp_path / "run", progress=False, echo=lambda *_: None)
    run = Run(tmp_path / "run")
    assert run.latest_checkpoint().name == "step-00000030"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"
    assert all(torch.isfinite(p).all() for p in run.generator().parameters())
    assert torch.isfinite(torch.from_numpy(run.sample(10))).all()
