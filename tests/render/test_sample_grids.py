"""Readable sample grids (small images enlarged, nearest, by default; --scale K) and seed lists
(`ganforge sample RUN --seeds 0-35`, Run.sample_seeds): one image per seed, the same whatever else
the list holds."""

import numpy as np
import pytest
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.domains.images import ImagesDomain
from ganforge.domains.images.arrays import GRID_MAX_WIDTH, GRID_MIN_TILE, enlarge, grid_scale, image_grid
from ganforge.errors import UsageError
from ganforge.render.pictures import list_frames
from ganforge.rundir.run import Run


def pixels(n, h, w, c, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


# --- the grid's size --------------------------------------------------------------------------

@pytest.mark.parametrize("n, side, columns, expected", [
    (64, 28, None, 3),  # an 8x8 grid of MNIST digits: 84-pixel tiles, 690 pixels wide
    (64, 8, None, 8),  # scikit-learn's 8x8 digits: 64-pixel tiles
    (36, 28, None, 3),  # --seeds 0-35
    (1000, 28, None, 1),  # the default 1,000 samples: 32 columns already fill 1024 pixels
    (1000, 8, None, 3),  # ... of 8x8 digits: enlarged as far as the width allows
    (64, 64, None, 1),  # large enough already
    (70, 8, 7, 8),  # an interpolation grid, 7 a row
])
def test_default_scale(n, side, columns, expected):
    assert grid_scale(n, side, side, columns) == expected


@pytest.mark.parametrize("n", [1, 4, 16, 64, 256, 1000, 5000])
@pytest.mark.parametrize("h, w", [(5, 5), (8, 8), (28, 28), (32, 48), (64, 64), (100, 30)])
def test_default_grids_are_readable_and_at_most_1024_wide(n, h, w):
    scale = grid_scale(n, h, w)
    columns = int(np.ceil(np.sqrt(n)))
    width = columns * (w * scale + 2) + 2
    assert scale >= 1
    assert width <= GRID_MAX_WIDTH or scale == 1  # never widened past the limit
    if min(h, w) * scale < GRID_MIN_TILE:  # tiles below the readable size only where the width stops them
        assert columns * (w * (scale + 1) + 2) + 2 > GRID_MAX_WIDTH
    assert grid_scale(n, h, w) == 1 or min(h, w) * (scale - 1) < GRID_MIN_TILE  # the smallest factor that suffices


def test_enlarged_tiles_equal_pillows_nearest_resize():
    images = pixels(5, 7, 9, 3)
    grid = image_grid(images, columns=3, scale=4)
    assert grid.shape == (2 * (7 * 4 + 2) + 2, 3 * (9 * 4 + 2) + 2, 3)
    for i, image in enumerate(images):
        top, left = 2 + (i // 3) * (7 * 4 + 2), 2 + (i % 3) * (9 * 4 + 2)
        reference = np.asarray(Image.fromarray(image).resize((9 * 4, 7 * 4), Image.Resampling.NEAREST))
        assert np.array_equal(grid[top:top + 28, left:left + 36], reference), i
    assert np.array_equal(image_grid(images, columns=3, scale=1), image_grid(images, columns=3))
    assert np.array_equal(enlarge(images, 1), images)


def test_save_samples_png_scale(tmp_path):
    domain = ImagesDomain()
    digits = pixels(64, 28, 28, 1)
    domain.save_samples(digits, tmp_path / "default.png")
    assert Image.open(tmp_path / "default.png").size == (8 * (28 * 3 + 2) + 2,) * 2  # 690 x 690
    domain.save_samples(digits, tmp_path / "off.png", scale=1)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "off.png")), image_grid(digits)[..., 0])
    domain.save_samples(digits, tmp_path / "five.png", scale=5)
    grid = np.asarray(Image.open(tmp_path / "five.png"))
    assert grid.shape == (8 * (28 * 5 + 2) + 2,) * 2
    assert np.array_equal(grid[2:2 + 140, 2:2 + 140], enlarge(digits[:1], 5)[0, ..., 0])


@pytest.mark.parametrize("name, scale, match", [("bad.png", 0, "whole number >= 1"),
                                                ("bad.png", 1.5, "whole number >= 1"),
                                                ("bad.png", 200, "more than 16384 pixels"),
                                                ("bad.npz", 2, "keeps the images' own pixels")])
def test_a_refused_scale_writes_nothing(tmp_path, name, scale, match):
    with pytest.raises(UsageError, match=match):
        ImagesDomain().save_samples(pixels(64, 28, 28, 1), tmp_path / name, scale=scale)
    assert not list(tmp_path.iterdir())


# --- a tiny run: sample --scale, --seeds, progress frames ---------------------------------------

@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 4-step run on the built-in 8x8 digits with progress frames."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    ganforge.train("digits", out=out, settings={"train.steps": 4, "train.batch": 16, "model.g_width": 8,
                                                "model.d_width": 8, "train.eval_every": 0, "train.log_every": 2,
                                                "train.snapshot_every": 2, "seed": 1})
    return out


def error_line(capsys):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganforge: error: "), captured
    return lines[0]


def test_each_seed_draws_its_own_image(digits_run):
    run = Run(digits_run)
    together = run.sample_seeds([5, 9, 2])
    assert together.shape == (3, 8, 8, 1) and together.dtype == np.uint8
    for k, seed in enumerate([5, 9, 2]):
        assert np.array_equal(together[k], run.sample_seeds([seed])[0])  # whatever else the list holds
        assert np.array_equal(together[k], run.sample(1, seed=seed)[0])
    assert not np.array_equal(together[0], together[1])
    assert np.array_equal(run.sample_seeds(range(3), truncation=0.5)[1], run.sample(1, seed=1, truncation=0.5)[0])
    with pytest.raises(UsageError, match="seeds from 0"):
        run.sample_seeds([])
    with pytest.raises(UsageError, match="seeds from 0"):
        run.sample_seeds([-1])


def test_cli_seeds_and_scale(digits_run, tmp_path, capsys):
    out = tmp_path / "seeds.npy"
    assert main(["sample", str(digits_run), "--seeds", "0-3,7, 10-11", "--out", str(out)]) == 0
    assert np.array_equal(np.load(out), Run(digits_run).sample_seeds([0, 1, 2, 3, 7, 10, 11]))
    grid = tmp_path / "grid.png"
    assert main(["sample", str(digits_run), "--seeds", "0-35", "--out", str(grid)]) == 0
    assert Image.open(grid).size == (6 * (8 * 8 + 2) + 2,) * 2  # 6x6 tiles of 8x8 digits enlarged 8 times
    assert main(["sample", str(digits_run), "--seeds", "0-35", "--out", str(grid), "--scale", "1"]) == 0
    assert Image.open(grid).size == (6 * (8 + 2) + 2,) * 2
    assert main(["sample", str(digits_run), "--n", "10", "--out", str(grid), "--scale", "3"]) == 0
    assert Image.open(grid).size == (4 * (8 * 3 + 2) + 2, 3 * (8 * 3 + 2) + 2)
    capsys.readouterr()


@pytest.mark.parametrize("args, match", [
    (["--seeds", "5-2"], "not a list of seeds"),
    (["--seeds", "a"], "not a list of seeds"),
    (["--seeds", "1,,2"], "not a list of seeds"),
    (["--seeds", "0-20000"], "more than 10000 seeds"),
    (["--seeds", "0-3", "--n", "4"], "without --n and --seed"),
    (["--seeds", "0-3", "--seed", "1"], "without --n and --seed"),
    (["--scale", "0"], "--scale"),
    (["--scale", "2", "--out-npz"], "drop --scale"),
])
def test_cli_refusals_are_one_line_and_write_nothing(digits_run, tmp_path, capsys, args, match):
    out = tmp_path / ("x.npz" if "--out-npz" in args else "x.png")
    args = [a for a in args if a != "--out-npz"]
    assert main(["sample", str(digits_run), "--out", str(out), *args]) == 2
    assert match in error_line(capsys)
    assert not out.exists()


def test_scale_is_for_image_runs(tmp_path, capsys):
    run_dir = tmp_path / "ring"
    ganforge.train("ring8", out=run_dir, settings={"train.steps": 2, "train.eval_every": 0, "train.snapshot_every": 0,
                                                   "model.g_width": 8, "model.d_width": 8})
    assert main(["sample", str(run_dir), "--out", str(tmp_path / "x.npy"), "--scale", "2"]) == 2
    assert "--scale enlarges image grids" in error_line(capsys)
    assert main(["sample", str(run_dir), "--out", str(tmp_path / "x.npy"), "--seeds", "3,1"]) == 0
    assert np.array_equal(np.load(tmp_path / "x.npy")[1], Run(run_dir).sample(1, seed=1)[0])


def test_progress_frames_are_enlarged_like_sample_grids(digits_run, tmp_path):
    frames = list_frames(digits_run)
    assert [step for step, _ in frames] == [0, 2, 4]
    assert Image.open(frames[-1][1]).size == (8 * (8 * 8 + 2) + 2,) * 2  # 64 8x8 digits, 64-pixel tiles
    with Image.open(digits_run / "progress.gif") as gif:
        assert gif.size[0] == 8 * (8 * 8 + 2) + 2  # already past the GIF's minimum side: not enlarged again
