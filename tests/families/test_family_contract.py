"""Contract tests over every registered model family: a short run trains, writes checkpoints and a
summary that the run tools read, resumes exactly from a checkpoint, and its summary prints."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ganforge
from ganforge.cli import _print_summary
from ganforge.families import FAMILIES, get_family
from ganforge.rundir.runs import list_runs
from ganforge.rundir.session import train

SMALL = {"model.g_width": 16, "model.d_width": 16, "model.g_depth": 2, "model.d_depth": 2, "train.batch": 32,
         "train.steps": 6, "train.log_every": 1, "train.ckpt_every": 3, "train.eval_every": 0}
# each family on a small data set it trains on (TimeGAN: 6 steps are 2 per phase; a checkpoint at step 3)
CASES = {
    "gan": ("ring8", {"data.n": 512}),
    "vae": ("ring8", {"data.n": 512}),
    "timegan": ("sines", {"data.n": 128, "data.metric_repeats": 0}),
}


def test_every_family_has_a_case():
    assert set(CASES) == set(FAMILIES)


@pytest.fixture(scope="module", params=sorted(CASES))
def family_run(request, tmp_path_factory):
    name = request.param
    data, settings = CASES[name]
    out = tmp_path_factory.mktemp(name) / "run"
    summary = ganforge.train(data, out=out, settings={**SMALL, **settings, "model.family": name})
    return name, out, summary


def test_a_short_run_finishes_with_a_summary(family_run):
    name, out, summary = family_run
    assert summary["status"] == "finished" and summary["family"] == name and summary["steps"] == 6
    assert summary["loss"] == (get_family(name).objective or "ns")
    assert (out / "samples.png").stat().st_size > 0 and (out / summary["samples_file"]).is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]
    numbers = [v for v in summary["eval"].values() if isinstance(v, (int, float))]
    assert numbers and all(math.isfinite(v) or v == math.inf for v in numbers)


def test_the_run_tools_read_it(family_run):
    name, out, _ = family_run
    run = ganforge.load(out)
    samples = run.sample(5, seed=1)
    np.testing.assert_array_equal(np.asarray(samples), np.asarray(run.sample(5, seed=1)))
    assert len(samples) == 5
    rows = list_runs(out.parent)
    assert rows[0]["status"] == "finished" and rows[0]["loss"] == (name if get_family(name).objective else "ns")


def test_resume_from_a_checkpoint_is_exact(family_run, tmp_path):
    name, out, _ = family_run
    again = tmp_path / "again"
    shutil.copytree(out, again)
    shutil.rmtree(again / "checkpoints" / "step-00000006")
    said = []
    train(None, resume=again, progress=False, echo=said.append)
    assert said == [f"resuming {again} from step 3 of 6"]
    a = load_file(str(out / "checkpoints" / "step-00000006" / "weights.safetensors"))
    b = load_file(str(again / "checkpoints" / "step-00000006" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}: {key}")


def test_the_summary_prints_the_family_and_domain_lines(family_run, capsys):
    name, out, summary = family_run
    _print_summary(summary, as_json=False)
    text = capsys.readouterr().out
    for line in get_family(name).summary_lines(summary["last_log"]):
        assert line in text
    assert any(line.startswith("files") for line in text.splitlines())
