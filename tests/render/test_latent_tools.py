"""Latent tools: vector arithmetic (parser, identity generator, class groups, CLI) and the progress GIF."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ganforge
from ganforge.cli import main
from ganforge.errors import UsageError
from ganforge.render.pictures import GIF_HOLD_MS, list_frames, write_arithmetic
from ganforge.rundir.run import Run
from ganforge.rundir.session import train as train_run
from ganforge.render.latent import POOL_SEED_OFFSET, latents, parse_expression, vector_arithmetic

TINY_DIGITS = {"train.steps": 12, "train.batch": 16, "model.g_width": 8, "model.d_width": 8, "train.log_every": 2,
               "train.ckpt_every": 4, "train.snapshot_every": 4, "train.eval_every": 0, "seed": 3}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 12-step 8x8 digits run with a progress frame every 4 steps."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    ganforge.train("digits", out=out, settings=TINY_DIGITS)
    return out


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    """A 10-step ring8 run with a 2-d latent and unscaled data: decode(G(z)) = G(z)."""
    out = tmp_path_factory.mktemp("runs") / "ring"
    ganforge.train("ring8", out=out, settings={
        "train.steps": 10, "train.log_every": 5, "train.ckpt_every": 5, "train.snapshot_every": 5,
        "train.eval_every": 0, "model.z_dim": 2, "data.standardize": False, "data.n": 2000, "train.batch": 64,
        "model.g_width": 16, "model.d_width": 16, "model.g_depth": 2, "model.d_depth": 2})
    return out


class IdentityG(nn.Module):
    """A linear 'generator' whose sample is its latent."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))  # Run.generate reads the device from a parameter

    def forward(self, z):
        return z


# --- the expression parser --------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("3,7,9 - 1,4 + 12", [(1, (3, 7, 9), None), (-1, (1, 4), None), (1, (12,), None)]),
    ("class:7 - class:1 + class:4", [(1, (), 7), (-1, (), 1), (1, (), 4)]),
    ("-5+ 6 ,2", [(-1, (5,), None), (1, (6, 2), None)]),
    ("  0  ", [(1, (0,), None)]),
    ("class:3 + 0,1", [(1, (), 3), (1, (0, 1), None)]),
])
def test_parser_reads_groups_and_signs(text, expected):
    assert [(g.sign, g.indices, g.label) for g in parse_expression(text)] == expected


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"), ("   ", "empty"), ("3 7", "expected + or -"), ("3,,7", "cannot read"), ("3 +", "ends with"),
    ("3 - - 4", "cannot read"), ("class:x", "number"), ("class:", "number"), ("class:7,3", "cannot read"),
    ("3 * 4", "cannot read"), ("3,3", "twice"), ("-1.5", "cannot read"), ("a + 1", "cannot read"),
])
def test_parser_refuses_bad_expressions_with_one_clear_line(text, fragment):
    with pytest.raises(UsageError) as info:
        parse_expression(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert "--expr" in message


# --- arithmetic on known generators -------------------------------------------------------------

def test_vector_arithmetic_combines_group_means():
    z = torch.arange(12.0).view(6, 2)
    groups = parse_expression("0,1 - 2 + 3,4,5")
    out = vector_arithmetic(groups, [z[[0, 1]], z[[2]], z[[3, 4, 5]]], neighbours=3, noise=0.0)
    expected = z[[0, 1]].mean(0) - z[2] + z[[3, 4, 5]].mean(0)
    torch.testing.assert_close(out.result, expected)
    torch.testing.assert_close(out.neighbours, expected.expand(3, 2))  # no noise: the result itself
    assert out.to_dict()["expr"] == "0,1 - 2 + 3,4,5"
    assert [g["count"] for g in out.to_dict()["groups"]] == [2, 1, 3]


def test_identity_generator_draws_exactly_the_computed_latent(points_run, monkeypatch, tmp_path):
    run = Run(points_run)
    monkeypatch.setattr(run, "generator", lambda device=None: IdentityG())
    result = run.arithmetic("3,7,9 - 1,4 + 12", n=16, seed=5, neighbours=4, noise=0.1)
    z = latents(16, 2, seed=5)  # the batch that `ganforge sample RUN --n 16 --seed 5` draws
    expected = z[[3, 7, 9]].mean(0) - z[[1, 4]].mean(0) + z[12]
    torch.testing.assert_close(result.result, expected)
    np.testing.assert_allclose(result.samples["result"][0], expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(result.samples["means"], torch.stack(
        [z[[3, 7, 9]].mean(0), z[[1, 4]].mean(0), z[12]]).numpy(), rtol=1e-6)
    offsets = result.samples["neighbours"] - result.samples["result"]
    assert offsets.shape == (4, 2) and 0 < np.abs(offsets).max() < 0.1 * 6
    assert len(np.unique(offsets, axis=0)) == 4

    # points have no picture of the figure: the rows are written instead, and .png is refused
    write_arithmetic(run.domain, result, tmp_path / "rows.npy")
    rows = np.load(tmp_path / "rows.npy")
    assert rows.shape == (3 + 1 + 4, 2)
    np.testing.assert_allclose(rows[3], expected.numpy(), rtol=1e-6)
    with pytest.raises(UsageError, match=".npy or .csv"):
        write_arithmetic(run.domain, result, tmp_path / "figure.png")
    assert not (tmp_path / "figure.png").exists()


def test_bad_arithmetic_options_and_indices(points_run):
    run = Run(points_run)
    with pytest.raises(UsageError, match="outside the batch of --n 8"):
        run.arithmetic("1 + 8", n=8)
    with pytest.raises(UsageError, match="--neighbours"):
        run.arithmetic("1", neighbours=-1)
    with pytest.raises(UsageError, match="images"):  # points runs have no classes to group by
        run.arithmetic("class:1 - 2")


# --- class groups ---------------------------------------------------------------------------------

class StubClassifier:
    """Assigns class (sum of pixel values) mod 3: a deterministic function of each image."""

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, images):
        self.calls += 1
        return images.reshape(len(images), -1).astype(np.int64).sum(1) % 3


def test_class_groups_average_the_latents_of_each_predicted_class(digits_run, monkeypatch):
    from ganforge.metrics import extractors

    stub = StubClassifier()
    monkeypatch.setattr(extractors, "get_extractor", lambda name: stub)
    run = Run(digits_run)
    result = run.arithmetic("class:0 - class:1 + class:2 + 5", n=16, seed=2, pool=300, neighbours=2)
    assert stub.calls == 1  # the pool is drawn and classified once for all class groups

    pool = latents(300, run.config.model.z_dim, seed=2 + POOL_SEED_OFFSET)
    labels = StubClassifier().predict(run.generate(pool))
    means = [pool[torch.from_numpy(labels == k)].mean(0) for k in range(3)]
    assert all((labels == k).sum() >= 5 for k in range(3))
    torch.testing.assert_close(result.means[:3], torch.stack(means))
    index_latent = latents(16, run.config.model.z_dim, seed=2)[5]
    torch.testing.assert_close(result.result, means[0] - means[1] + means[2] + index_latent)
    assert [len(m) for m in result.members[:3]] == [int((labels == k).sum()) for k in range(3)]
    assert result.samples["means"].shape == (4, 8, 8, 1) and result.samples["neighbours"].shape == (2, 8, 8, 1)

    with pytest.raises(UsageError, match="no sample of the pool of 300 was classified as class 7"):
        run.arithmetic("class:7", pool=300)


def test_class_groups_need_a_classifier_that_fits(digits_run, monkeypatch):
    run = Run(digits_run)
    # the real digit CNN takes 28x28 digits, and this run makes 8x8 ones (without ccexam: install hint)
    with pytest.raises(UsageError, match="28x28|ccexam"):
        run.arithmetic("class:1", pool=20)
    from ganforge.metrics import extractors

    monkeypatch.setattr(extractors, "get_extractor", lambda name: object())
    with pytest.raises(UsageError, match="no classes"):
        run.arithmetic("class:1", pool=20)


# --- the CLI ---------------------------------------------------------------------------------------

def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ganforge: error: ") and "Traceback" not in lines[0]
    return lines[0]


def test_cli_arithmetic_end_to_end(digits_run, tmp_path, capsys):
    batch = tmp_path / "batch.png"
    assert main(["arithmetic", str(digits_run), "--out", str(batch), "--n", "16"]) == 0
    assert Image.open(batch).size == (4 * (8 * 5 + 2) + 2,) * 2  # 4x4 grid of 8x8 digits enlarged 5x
    capsys.readouterr()

    figure = tmp_path / "result.png"
    code = main(["arithmetic", str(digits_run), "--out", str(figure), "--n", "16", "--expr", "3,7,9 - 1,4 + 12",
                 "--json", "--neighbours", "5"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    expected = Run(digits_run).arithmetic("3,7,9 - 1,4 + 12", n=16).result
    np.testing.assert_allclose(summary["vector"], expected.numpy(), rtol=1e-6)
    assert [g["count"] for g in summary["groups"]] == [3, 2, 1]
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.width > 5 * 8 * 6

    rows = tmp_path / "rows.npz"
    assert main(["arithmetic", str(digits_run), "--out", str(rows), "--expr", "1 - 2", "--neighbours", "3"]) == 0
    assert np.load(rows)["images"].shape == (2 + 1 + 3, 8, 8, 1)
    capsys.readouterr()

    bad = tmp_path / "bad.png"
    assert main(["arithmetic", str(digits_run), "--out", str(bad), "--expr", "3 +* 4"]) == 2
    assert "--expr" in error_line(capsys)
    assert main(["arithmetic", str(digits_run), "--out", str(bad), "--n", "16", "--expr", "16"]) == 2
    assert "--n 16" in error_line(capsys)
    assert not bad.exists()


# --- progress frames and the GIF -----------------------------------------------------------------

def gif_frames(path):
    with Image.open(path) as image:
        durations = []
        for i in range(image.n_frames):
            image.seek(i)
            durations.append(image.info["duration"])
        return image.n_frames, durations


def test_training_draws_progress_frames_and_a_gif(digits_run, tmp_path, capsys):
    assert [step for step, _ in list_frames(digits_run)] == [0, 4, 8, 12]
    n_frames, durations = gif_frames(digits_run / "progress.gif")
    assert n_frames == 4 and durations[-1] == GIF_HOLD_MS and durations[0] < durations[-1]
    # the last frame is exactly the grid `ganforge sample RUN --n 64 --out grid.png` draws
    run = Run(digits_run)
    run.domain.save_samples(run.sample(64, seed=0), tmp_path / "grid.png")
    last = np.asarray(Image.open(digits_run / "progress" / "step-00000012.png"))
    assert np.array_equal(last, np.asarray(Image.open(tmp_path / "grid.png")))
    assert not np.array_equal(last, np.asarray(Image.open(digits_run / "progress" / "step-00000000.png")))

    out = tmp_path / "again.gif"
    assert main(["gif", str(digits_run), "--out", str(out), "--frame-ms", "100"]) == 0
    assert gif_frames(out) == (4, [100, 100, 100, GIF_HOLD_MS])
    capsys.readouterr()
    assert main(["gif", str(tmp_path)]) == 2  # not a run directory
    assert "not a ganforge run directory" in error_line(capsys)


def test_points_frames_are_the_domains_scatter_plot(points_run):
    assert [step for step, _ in list_frames(points_run)] == [0, 5, 10]
    assert gif_frames(points_run / "progress.gif")[0] == 3
    with Image.open(points_run / "progress" / "step-00000005.png") as image:
        assert image.size == Image.open(points_run / "samples.png").size  # the domain's plot


def test_resume_redraws_the_frames_after_its_checkpoint(digits_run, tmp_path):
    out = tmp_path / "killed"
    ganforge.train("digits", out=out, settings=TINY_DIGITS)
    # what a run killed after its step-8 checkpoint (and before the end) would have left, plus junk
    for name in ("summary.json", "progress.gif"):
        (out / name).unlink()
    for path in (out / "checkpoints" / "step-00000012").iterdir():
        path.unlink()
    (out / "checkpoints" / "step-00000012").rmdir()
    Image.new("L", (5, 5)).save(out / "progress" / "step-00000012.png")
    Image.new("L", (5, 5)).save(out / "progress" / "step-00000010.png")

    train_run(None, resume=out, progress=False, echo=lambda text: None)
    assert [step for step, _ in list_frames(out)] == [0, 4, 8, 12]
    for (step, frame), (_, reference) in zip(list_frames(out), list_frames(digits_run)):
        assert frame.read_bytes() == reference.read_bytes(), step  # the same frames as the uninterrupted run
    assert gif_frames(out / "progress.gif")[0] == 4


def test_snapshot_every_zero_draws_nothing(tmp_path):
    out = tmp_path / "quiet"
    ganforge.train("digits", out=out, settings={**TINY_DIGITS, "train.steps": 2, "train.snapshot_every": 0})
    assert not (out / "progress").exists() and not (out / "progress.gif").exists()
    with pytest.raises(UsageError, match="snapshot_every"):
        ganforge.train("digits", out=tmp_path / "bad", settings={**TINY_DIGITS, "train.snapshot_every": -1})
