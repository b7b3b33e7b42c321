"""Conditional runs end to end on the built-in 8x8 digits: class labels, super-resolution, edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ganforge
from ganforge.cli import main
from ganforge.errors import UsageError
from ganforge.rundir.run import Run

TINY = {"train.steps": 6, "train.batch": 16, "model.g_width": 8, "model.d_width": 8, "train.log_every": 2,
        "train.ckpt_every": 6, "train.eval_every": 0, "train.snapshot_every": 0}


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond") / "class"
    ganforge.train("digits", out=out, settings={**TINY, "data.task": "class"}, progress=False)
    return Run(out)


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cond") / "sr"
    ganforge.train("digits", out=out, settings={**TINY, "data.task": "sr"}, progress=False)
    return Run(out)


def test_a_class_run_records_its_classes_and_samples_the_asked_for_label(class_run, monkeypatch):
    assert class_run.task == "class" and class_run.net_args == {"n_classes": 10}
    assert class_run.config.model.net == "mlp"  # the digits set's own recipe, conditioned
    seen = []
    G = class_run.generator()
    original = G.forward
    monkeypatch.setattr(G, "forward", lambda z, y: seen.append(y.clone()) or original(z, y))
    monkeypatch.setattr(class_run, "generator", lambda device=None: G)
    images = class_run.sample(5, labels="7", G=G)
    assert images.shape == (5, 8, 8, 1) and images.dtype == np.uint8
    assert torch.equal(seen[-1], torch.full((5,), 7))
    class_run.sample(12, G=G)  # default: the classes in turn
    assert seen[-1].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    class_run.interpolate(pairs=3, steps=4)  # ... one class per interpolation path
    assert seen[-1].tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_the_same_latent_with_different_labels_gives_different_images(class_run):
    z = ganforge.latents(1, class_run.config.model.z_dim, seed=0).repeat(2, 1)
    a, b = class_run.generate(z, c=torch.tensor([1, 8]))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("label,message", [("12", "unknown class '12'"), ("cat", "unknown class 'cat'")])
def test_unknown_labels_name_the_classes(class_run, label, message):
    with pytest.raises(UsageError, match=message):
        class_run.sample(2, labels=label)


def test_cli_sample_label_writes_one_class_and_eval_scores_the_run(class_run, tmp_path, capsys):
    assert main(["sample", str(class_run.path), "--label", "3", "--n", "8", "--out", str(tmp_path / "threes.npy")]) == 0
    assert np.load(tmp_path / "threes.npy").shape == (8, 8, 8, 1)
    assert main(["sample", str(class_run.path), "--n", "20", "--out", str(tmp_path / "grid.png")]) == 0
    assert main(["eval", str(class_run.path), "--n", "50", "--json"]) == 0
    assert '"energy_distance"' in capsys.readouterr().out


def test_label_on_an_unconditional_run_is_one_clear_error(tmp_path, capsys):
    out = tmp_path / "plain"
    ganforge.train("digits", out=out, settings=TINY, progress=False)
    assert main(["sample", str(out), "--label", "3", "--out", str(tmp_path / "x.npy")]) == 2
    assert "this run is unconditional" in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()


def test_a_super_resolution_run_translates_the_held_out_sources_and_scores_them_paired(sr_run, tmp_path):
    assert sr_run.task == "sr" and sr_run.net_args == {"cond_shape": [1, 4, 4]}
    assert sr_run.config.model.net == "pix2pix" and sr_run.config.model.z_dim == 8
    assert sr_run.config.train.l1_weight == 100.0
    scores = sr_run.evaluate(n=40)
    assert scores["n"] == 40 and 0 <= scores["paired_l1"] <= 1 and scores["psnr_db"] > 0
    small = np.random.default_rng(0).integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "small.npy", small)
    assert main(["sample", str(sr_run.path), "--cond", str(tmp_path / "small.npy"), "--out", str(tmp_path / "up.npy")]) == 0
    assert np.load(tmp_path / "up.npy").shape == (3, 8, 8, 1)  # one output per source, at 2x


def test_sr_sampling_rejects_conditions_of_the_wrong_size(sr_run):
    with pytest.raises(UsageError, match=r"shape \[1, 8, 8\] do not fit"):
        sr_run.sample(2, cond=torch.zeros(2, 1, 8, 8))


def test_dry_run_of_an_edges_task_resolves_the_pix2pix_recipe(capsys):
    assert main(["train", "digits", "--set", "data.task=edges", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert '"net": "pix2pix"' in out and '"l1_weight": 100.0' in out and '"task": "edges"' in out


def test_a_conditional_task_on_points_is_refused(tmp_path, capsys):
    assert main(["train", "ring8", "--set", "data.task=class", "--out", str(tmp_path / "r")]) == 2
    assert "data.task=class is not available for points data" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
