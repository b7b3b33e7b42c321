"""Conditional image tasks: the conditions built from images, pairs files, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import DataConfig
from ganforge.domains.images import ImagesDomain
from ganforge.domains.images.tasks import reconstruction_scores, shrink, sobel_edges
from ganforge.errors import UsageError

DOMAIN = ImagesDomain()


def _npz(path, n=30, h=8, w=8, labels=True):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    arrays = {"images": images}
    if labels:
        arrays["labels"] = np.arange(n) % 3
    np.savez(path, **arrays)
    return images


def test_shrink_keeps_constant_images_and_block_signs_and_rejects_a_factor_that_does_not_divide():
    pattern = torch.tensor([[0.5, -0.5], [-1.0, 1.0]])
    blocks = pattern.repeat_interleave(4, 0).repeat_interleave(4, 1)[None, None]
    small = shrink(blocks, 4)
    assert small.shape == (1, 1, 2, 2)
    assert torch.equal(small[0, 0].sign(), pattern.sign())  # antialiased bicubic blurs across blocks, keeps signs
    assert torch.allclose(shrink(torch.full((2, 3, 8, 8), 0.25), 2), torch.full((2, 3, 4, 4), 0.25), atol=1e-6)
    with pytest.raises(UsageError, match="sr_factor=3 does not divide"):
        shrink(torch.zeros(1, 1, 8, 8), 3)


def test_sobel_edges_are_minus_one_on_flat_images_and_high_on_a_step():
    assert torch.equal(sobel_edges(torch.full((2, 3, 8, 8), 0.3)), torch.full((2, 1, 8, 8), -1.0))
    step = torch.full((1, 1, 8, 8), -1.0)
    step[..., 4:] = 1.0
    edges = sobel_edges(step)[0, 0]
    assert edges.shape == (8, 8)
    assert edges[:, 3:5].min() > 0.0  # the step's columns
    assert edges[:, 0].max() == -1.0 and edges[:, 7].max() == -1.0  # far from it
    assert edges.min() >= -1.0 and edges.max() <= 1.0


def test_class_task_carries_the_labels_and_the_class_count(tmp_path):
    _npz(tmp_path / "x.npz")
    data = DOMAIN.load(DataConfig(source=str(tmp_path / "x.npz"), task="class", holdout=0.2))
    assert data.cond.dtype == torch.int64 and len(data.cond) == len(data.train) == 24
    assert data.state["net_args"] == {"n_classes": 3} and data.state["task"] == "class"
    assert len(data.holdout_cond) == len(data.holdout) == 6


def test_class_task_on_unlabelled_images_says_how_to_label_them(tmp_path):
    _npz(tmp_path / "x.npz", labels=False)
    with pytest.raises(UsageError, match="needs labelled images"):
        DOMAIN.load(DataConfig(source=str(tmp_path / "x.npz"), task="class"))


@pytest.mark.parametrize("task,cond_shape", [("sr", [1, 4, 4]), ("edges", [1, 8, 8])])
def test_derived_tasks_pair_every_image_with_its_condition(tmp_path, task, cond_shape):
    _npz(tmp_path / "x.npz")
    data = DOMAIN.load(DataConfig(source=str(tmp_path / "x.npz"), task=task, holdout=0.2))
    assert data.state["net_args"] == {"cond_shape": cond_shape}
    assert list(data.cond.shape) == [24, *cond_shape] and list(data.holdout_cond.shape) == [6, *cond_shape]
    expected = shrink(data.train, 2) if task == "sr" else sobel_edges(data.train)
    assert torch.equal(data.cond, expected)
    assert data.meta["defaults"]["model.net"] == "pix2pix"


def test_pairs_from_an_npz_keep_source_and_target_aligned_through_the_split(tmp_path):
    rng = np.random.default_rng(1)
    target = rng.integers(0, 256, size=(25, 8, 8, 3), dtype=np.uint8)
    source = 255 - target[..., :1]  # gray inverted: a known, per-image function of the target
    np.savez(tmp_path / "p.npz", source=source, target=target)
    data = DOMAIN.load(DataConfig(source=str(tmp_path / "p.npz"), task="pairs", holdout=0.2))
    assert data.state["net_args"] == {"cond_shape": [1, 8, 8]} and list(data.train.shape[1:]) == [3, 8, 8]
    for cond, image in ((data.cond, data.train), (data.holdout_cond, torch.from_numpy(data.holdout).permute(0, 3, 1, 2).float() / 127.5 - 1)):
        assert torch.allclose(cond[:, 0], -image[:, 0], atol=1e-5)


def test_pairs_from_a_folder_of_side_by_side_images(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i in range(4):
        pair = np.zeros((8, 16), dtype=np.uint8)
        pair[:, :8] = 10 * i  # source
        pair[:, 8:] = 200  # target
        Image.fromarray(pair).save(folder / f"{i}.png")
    data = DOMAIN.load(DataConfig(source=str(folder), task="pairs"))
    assert list(data.cond.shape) == [4, 1, 8, 8] and list(data.train.shape) == [4, 1, 8, 8]
    assert torch.allclose(data.train, torch.full_like(data.train, 200 / 127.5 - 1))
    assert sorted(data.cond[:, 0, 0, 0].tolist()) == pytest.approx([10 * i / 127.5 - 1 for i in range(4)])


@pytest.mark.parametrize("arrays,message", [
    ({"images": np.zeros((4, 8, 8), np.uint8)}, "holds arrays 'source' and 'target'"),
    ({"source": np.zeros((4, 8, 8), np.uint8), "target": np.zeros((5, 8, 8), np.uint8)}, "every source needs its target"),
])
def test_bad_pairs_files_get_one_clear_error(tmp_path, arrays, message):
    np.savez(tmp_path / "p.npz", **arrays)
    with pytest.raises(UsageError, match=message):
        DOMAIN.load(DataConfig(source=str(tmp_path / "p.npz"), task="pairs"))


def test_reconstruction_scores_are_zero_error_for_identical_images_and_psnr_falls_with_noise():
    a = np.random.default_rng(0).integers(0, 256, size=(5, 8, 8, 1), dtype=np.uint8)
    same = reconstruction_scores(a, a)
    assert same == {"paired_l1": 0.0, "psnr_db": 100.0}
    noisy = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    worse = reconstruction_scores(noisy, a)
    assert 0 < worse["paired_l1"] <= 20 / 255 and 20 < worse["psnr_db"] < 100


class _StubRun:
    """What the domain asks of a run (``RunView``); ``sample`` plays a perfect translator of the
    held-out sources, returning their real targets."""

    def __init__(self, task, data):
        self.task, self.data, self.net_args, self.loads = task, data, dict(data.state["net_args"]), 0

    def class_index(self, label):
        return int(label)

    def load_data(self):
        self.loads += 1
        return self.data

    def sample(self, n, seed=0, truncation=None, G=None, labels=None, cond=None, dataset=None):
        self.given = DOMAIN.conditions(self, n, labels, cond, dataset)
        return self.data.holdout[:n]


def test_image_conditions_default_to_the_held_out_sources_in_turn_and_must_fit_the_run(tmp_path):
    _npz(tmp_path / "x.npz")
    data = DOMAIN.load(DataConfig(source=str(tmp_path / "x.npz"), task="sr", holdout=0.2))
    run = _StubRun("sr", data)
    assert torch.equal(DOMAIN.conditions(run, 8), data.holdout_cond[torch.arange(8) % 6]) and run.loads == 1
    given = torch.zeros(3, 1, 4, 4)
    assert torch.equal(DOMAIN.conditions(run, 2, cond=given), given[:2]) and run.loads == 1
    with pytest.raises(UsageError, match="image-conditional .*give --cond images, not --label"):
        DOMAIN.conditions(run, 2, labels=1)
    with pytest.raises(UsageError, match=r"shape \[1, 8, 8\] do not fit .* shape \[1, 4, 4\]"):
        DOMAIN.conditions(run, 2, cond=torch.zeros(2, 1, 8, 8))
    class_data = DOMAIN.load(DataConfig(source=str(tmp_path / "x.npz"), task="class", holdout=0.2))
    assert DOMAIN.conditions(_StubRun("class", class_data), 5).tolist() == [0, 1, 2, 0, 1]


def test_an_image_conditional_run_is_scored_on_the_held_out_sources_with_their_targets(tmp_path):
    _npz(tmp_path / "x.npz")
    data = DOMAIN.load(DataConfig(source=str(tmp_path / "x.npz"), task="edges", holdout=0.2))
    run = _StubRun("edges", data)
    scores = DOMAIN.score(run, 100, 0, data)  # only 6 held-out sources
    assert scores["n"] == 6 and torch.equal(run.given, data.holdout_cond)
    assert scores["paired_l1"] == 0.0 and scores["psnr_db"] == 100.0
