"""`ganforge fid A B` and ganforge.compare: folders, files and runs on both sides, the feature cache,
agreement with the metric functions and the prdc package, and one-line errors through the CLI."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.errors import UsageError
from ganforge.metrics import extractors
from ganforge.metrics.features import frechet_distance, kernel_distance
from ganforge.rundir.compare import format_comparison
from ganforge.rundir.run import Run


class StubFeatures:
    """A cheap feature network for any image size: a fixed random projection of the pixels, that
    counts the images it sees."""

    name = "stub"
    dim = 12

    def __init__(self):
        self.id = "stub-0001"
        self.seen = 0

    def __call__(self, images):
        self.seen += len(images)
        flat = images.reshape(len(images), -1).astype(np.float64) / 255.0
        projection = np.random.default_rng(0).normal(size=(flat.shape[1], self.dim))
        return (flat @ projection).astype(np.float32)


@pytest.fixture
def stub(monkeypatch):
    """``features="stub"`` selects a fresh :class:`StubFeatures` (and the real ones stay registered)."""
    monkeypatch.setattr(extractors, "_LOADED", {})
    monkeypatch.setitem(extractors.EXTRACTORS, "stub", StubFeatures)
    return lambda: extractors.get_extractor("stub")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "features"


def digit_like(n, seed, size=28, channels=1):
    """uint8 [n, size, size, channels]: a bright blob at a random place on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(size * 0.25, size * 0.75, size=(n, 2))
    blobs = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / (2 * (size / 6) ** 2))
    images = np.clip(blobs * 255 + rng.normal(0, 20, size=blobs.shape), 0, 255).astype(np.uint8)
    return np.repeat(images[..., None], channels, axis=3)


def write_folder(root, images):
    root.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(root / f"{i:03d}.png")
    return root


@pytest.fixture
def sets(tmp_path):
    """Two folders of 40 different 28x28 gray images, and the first one's images again as an .npz."""
    a, b = digit_like(40, seed=1), digit_like(40, seed=2)
    np.savez(tmp_path / "a.npz", images=a)
    return write_folder(tmp_path / "a", a), write_folder(tmp_path / "b", b), tmp_path / "a.npz", a, b


def test_folder_vs_folder_matches_the_metric_functions_and_the_prdc_package(sets, stub, cache):
    folder_a, folder_b, _, a, b = sets
    result = ganforge.compare(str(folder_a), folder_b, features="stub", seed=3)
    f_a, f_b = stub()(a), stub()(b)
    assert result["fid"] == pytest.approx(frechet_distance(f_a, f_b), rel=1e-9)
    assert (result["kid"], result["kid_std"]) == pytest.approx(kernel_distance(f_a, f_b, subset_size=20, seed=3))
    reference = pytest.importorskip("prdc").compute_prdc(real_features=f_b, fake_features=f_a, nearest_k=5)
    for key in ("precision", "recall", "density", "coverage"):  # A is judged against B
        assert result[key] == pytest.approx(float(reference[key]), rel=1e-9), key
    assert result["fid"] > 0.01
    assert (result["a_kind"], result["n_a"], result["b_kind"], result["n_b"]) == ("folder", 40, "folder", 40)
    assert result["image_shape"] == [28, 28, 1] and result["extractor"] == "stub-0001"


def test_identical_sets_as_folder_and_npz_give_fid_zero(sets, stub, cache):
    folder_a, _, npz_a, a, _ = sets
    result = ganforge.compare(npz_a, folder_a, features="stub")
    assert result["a_kind"] == "file" and result["b_kind"] == "folder"
    assert result["fid"] == pytest.approx(0.0, abs=1e-9)
    assert result["precision"] == result["recall"] == result["coverage"] == 1.0
    np.save(npz_a.with_suffix(".npy"), a.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)  # NCHW floats in [0, 1]
    assert ganforge.compare(npz_a.with_suffix(".npy"), folder_a, features="stub")["fid"] == pytest.approx(0.0, abs=1e-9)


def test_the_cache_is_used_on_the_second_call(sets, stub, cache):
    folder_a, folder_b, *_ = sets
    first = ganforge.compare(folder_a, folder_b, features="stub")
    assert not first["a_cached"] and not first["b_cached"] and stub().seen == 80
    assert len(list(cache.glob("stub-*.npz"))) == 2
    second = ganforge.compare(folder_b, folder_a, features="stub")
    assert second["a_cached"] and second["b_cached"] and stub().seen == 80  # nothing extracted again
    assert second["fid"] == pytest.approx(first["fid"], rel=1e-12)
    (folder_a / "000.png").unlink()  # other images: other statistics
    third = ganforge.compare(folder_a, folder_b, features="stub")
    assert not third["a_cached"] and third["b_cached"] and third["n_a"] == 39


def test_n_takes_a_fixed_subset_of_a_larger_folder(sets, stub, cache):
    folder_a, folder_b, *_ = sets
    result = ganforge.compare(folder_a, folder_b, features="stub", n=25)
    assert result["n_a"] == result["n_b"] == 25
    assert ganforge.compare(folder_a, folder_b, features="stub", n=25) == {**result, "a_cached": True, "b_cached": True}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 4-step run on the built-in 8x8 digits."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    ganforge.train("digits", out=out, settings={"train.steps": 4, "train.batch": 16, "model.g_width": 8,
                                                "model.d_width": 8, "train.eval_every": 0, "train.snapshot_every": 0})
    return out


def test_run_vs_folder_draws_as_many_samples_as_the_folder_holds(digits_run, tmp_path, stub, cache):
    real = digit_like(30, seed=4, size=8)
    folder = write_folder(tmp_path / "real", real)
    result = ganforge.compare(digits_run, folder, features="stub", seed=2)
    assert (result["a_kind"], result["n_a"], result["a_cached"]) == ("run", 30, False)
    samples = Run(digits_run).sample(30, seed=2)
    assert result["fid"] == pytest.approx(frechet_distance(stub()(samples), stub()(real)), rel=1e-9)
    assert len(list(cache.glob("*.npz"))) == 1  # the folder's statistics; never generated samples
    assert ganforge.compare(folder, digits_run, features="stub", n=24)["n_b"] == 24


def test_cli_prints_aligned_lines_and_json(sets, cache, capsys):
    pytest.importorskip("ccexam", reason="pip install --no-deps ccexam==1.0.0")
    folder_a, folder_b, npz_a, *_ = sets
    assert main(["fid", str(folder_a), str(folder_b), "--features", "digits-cnn", "--batch", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["A", "B", "images", "features", "fid", "kid", "precision", "recall",
                                                   "density", "coverage"]
    starts = {len(line) - len(line[len(line.split()[0]):].lstrip()) for line in lines}
    assert len(starts) == 1  # the values start in one column
    assert main(["fid", str(npz_a), str(folder_a), "--features", "digits-cnn", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["a_cached"] and result["b_cached"]  # both are the images of the folder just scored
    assert result["fid"] == pytest.approx(0.0, abs=1e-6) and result["extractor"].startswith("digits-cnn-")
    assert format_comparison(result).splitlines()[4].split() == ["fid", "0.0000"]


def error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganforge: error: ") and not captured.out, captured
    return lines[0]


def test_cli_errors_are_one_line(sets, tmp_path, capsys, cache):
    folder_a, folder_b, *_ = sets
    colour = write_folder(tmp_path / "colour", digit_like(25, seed=5, size=32, channels=3))
    assert main(["fid", str(folder_a), str(colour), "--features", "digits-cnn"]) == 2
    line = error_line(capsys)
    assert "28x28 gray" in line and "32x32 RGB" in line and str(colour) in line
    assert main(["fid", str(colour), str(colour), "--features", "digits-cnn"]) == 2
    assert "28x28 gray" in error_line(capsys)  # what the digits network takes
    assert main(["fid", str(folder_a), str(tmp_path / "nope"), "--features", "digits-cnn"]) == 2
    assert "B: '" in error_line(capsys)
    assert main(["fid", str(folder_a), str(folder_b), "--features", "nope"]) == 2
    assert "unknown feature extractor" in error_line(capsys)
    assert main(["fid", str(folder_a), str(folder_b), "--n", "3"]) == 2
    assert "--n" in error_line(capsys)
    few = write_folder(tmp_path / "few", digit_like(5, seed=6))
    assert main(["fid", str(folder_a), str(few), "--features", "digits-cnn"]) == 2
    assert "holds 5 images" in error_line(capsys)
    assert not cache.exists() or not list(cache.glob("*.npz"))


def test_a_run_of_points_is_refused(tmp_path, stub, cache):
    out = tmp_path / "ring"
    ganforge.train("ring8", out=out, settings={"train.steps": 2, "train.eval_every": 0, "train.snapshot_every": 0,
                                               "model.g_width": 8, "model.d_width": 8})
    with pytest.raises(UsageError, match="points data; fid compares images"):
        ganforge.compare(out, np.zeros((30, 8, 8, 1), dtype=np.uint8), features="stub")


def test_arrays_and_runs_from_python(digits_run, stub, cache):
    run = ganforge.load(digits_run)
    images = run.sample(25, seed=1)
    result = ganforge.compare(images, run, features="stub", seed=1)
    assert result["a_kind"] == "array" and result["b_kind"] == "run" and result["fid"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(UsageError, match="expected uint8 images"):
        ganforge.compare(torch.zeros(25, 8, 8).numpy(), run, features="stub")
