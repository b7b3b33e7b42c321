"""Run directories written by ganforge 0.1 (before the families registry and the rundir package:
commit a321e27, one GAN, one VAE and one TimeGAN run of 20 steps with tiny nets, checkpoints at 10
and 20) still load, sample, evaluate, list, report and resume with today's code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge.cli import main
from ganforge.rundir.runs import list_runs

OLD = Path(__file__).parent.parent / "data" / "runs-0.1"
FAMILIES = ["gan", "vae", "timegan"]


@pytest.fixture
def old_run(request, tmp_path):
    """A writable copy of the old run ``request.param``."""
    out = tmp_path / request.param
    shutil.copytree(OLD / request.param, out)
    return out


@pytest.mark.parametrize("old_run", FAMILIES, indirect=True)
def test_an_old_run_samples_and_evaluates(old_run):
    run = ganforge.load(old_run)
    samples = np.asarray(run.sample(8, seed=0))
    assert len(samples) == 8 and np.isfinite(samples).all()
    scores = run.evaluate(100, seed=0)
    assert 0 < scores["n"] <= 100  # series score at most their held-out windows


@pytest.mark.parametrize("old_run", FAMILIES, indirect=True)
def test_an_old_run_resumes_to_the_step_it_reached(old_run):
    """Resumed from its step-10 checkpoint, it reaches (up to the float rounding of another CPU) the
    weights 0.1 saved at step 20, with the log cut back and continued."""
    reference = load_file(str(old_run / "checkpoints" / "step-00000020" / "weights.safetensors"))
    shutil.rmtree(old_run / "checkpoints" / "step-00000020")
    summary = ganforge.train(None, resume=old_run)
    assert summary["status"] == "finished" and summary["steps"] == 20
    resumed = load_file(str(old_run / "checkpoints" / "step-00000020" / "weights.safetensors"))
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], rtol=1e-4, atol=1e-5, msg=key)
    steps = [json.loads(line)["step"] for line in (old_run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 20


def test_old_runs_list_and_report(tmp_path, capsys):
    shutil.copytree(OLD, tmp_path / "runs")
    rows = {row["name"]: row for row in list_runs(tmp_path / "runs")}
    assert {name: rows[name]["loss"] for name in FAMILIES} == {"gan": "ns", "vae": "vae", "timegan": "timegan"}
    assert all(rows[name]["status"] == "finished" for name in FAMILIES)
    assert main(["report", str(tmp_path / "runs" / "gan"), "--compare", str(tmp_path / "runs" / "vae")]) == 0
    assert "vae (ELBO)" in (tmp_path / "runs" / "gan" / "compare.html").read_text(encoding="utf-8")
