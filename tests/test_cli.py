"""The CLI contract end to end, through the real console entry point."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY


def settings(*extra):
    return [arg for kv in (*TINY, *extra) for arg in ("--set", kv)]


def one_error_line(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ganforge: error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tree_digest(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One small finished ring8 run shared by the tests that only read it."""
    from conftest import run_cli

    out = tmp_path_factory.mktemp("runs") / "ring"
    proc = run_cli("train", "ring8", "--out", str(out), "--steps", "60", "--quiet", *settings())
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_train_writes_a_complete_run_directory(trained_run):
    out, proc = trained_run
    for name in ("config.json", "data.json", "metrics.jsonl", "summary.json", "samples.npy", "samples.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints" / "step-00000060" / "weights.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["steps"] == 60 and config["model"]["z_dim"] > 0 and config["model"]["net"] == "mlp"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in records if "loss_d" in r]
    assert [r["step"] for r in logs] == [10, 20, 30, 40, 50, 60]
    for key in ("d_real", "d_fake", "acc_real", "acc_fake", "confusion", "grad_norm_d", "grad_norm_g", "loss_g"):
        assert key in logs[-1]
    assert "modes" in proc.stdout and "confusion" in proc.stdout  # the one-screen summary


def test_sample_writes_npy_and_csv(trained_run, tmp_path, cli):
    out, _ = trained_run
    proc = cli("sample", str(out), "--n", "123", "--out", str(tmp_path / "s.npy"), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    x = np.load(tmp_path / "s.npy")
    assert x.shape == (123, 2) and np.isfinite(x).all()
    assert cli("sample", str(out), "--n", "5", "--out", str(tmp_path / "s.csv")).returncode == 0
    assert np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1).shape == (5, 2)
    again = cli("sample", str(out), "--n", "123", "--out", str(tmp_path / "t.npy"), "--seed", "3")
    assert again.returncode == 0 and np.array_equal(np.load(tmp_path / "t.npy"), x)  # same seed, same samples


def test_eval_json_has_the_mixture_keys(trained_run, cli):
    out, _ = trained_run
    proc = cli("eval", str(out), "--json", "--n", "500")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert isinstance(result["modes"], int) and result["modes_total"] == 8
    assert 0.0 <= result["hq_fraction"] <= 1.0
    assert "reverse_kl" in result and "energy_distance" in result and "coverage" in result


def test_datasets_lists_the_builtin_sets(cli):
    proc = cli("datasets")
    assert proc.returncode == 0
    for name in ("gaussian2d", "ring8", "grid25", "swissroll", "moons"):
        assert name in proc.stdout


def test_user_points_file_trains_and_evaluates_with_distances(tmp_path, cli):
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(-2, 0.3, (300, 3)), rng.normal(2, 0.3, (300, 3))])
    np.save(tmp_path / "blobs.npy", points)
    out = tmp_path / "run"
    proc = cli("train", str(tmp_path / "blobs.npy"), "--out", str(out), "--steps", "20", "--quiet", *settings())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(cli("eval", str(out), "--json", "--n", "200").stdout)
    assert "modes" not in result and result["energy_distance"] >= 0 and 0 <= result["coverage"] <= 1
    assert np.load(out / "samples.npy").shape[1] == 3


def test_dry_run_prints_resolved_config(cli):
    proc = cli("train", "ring8", "--dry-run", "--set", "train.loss=hinge", "--steps", "7")
    assert proc.returncode == 0
    cfg = json.loads(proc.stdout)
    assert cfg["train"]["loss"] == "hinge" and cfg["train"]["steps"] == 7


# --- bad input: one line, exit 2, no traceback, nothing damaged -----------------------------------

def test_unknown_dataset(cli):
    one_error_line(cli("train", "ring9"), "ring9", "ganforge datasets")


def test_missing_file(cli, tmp_path):
    one_error_line(cli("train", str(tmp_path / "nope.npy")), "nope.npy")


def test_unreadable_npy(cli, tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    one_error_line(cli("train", str(tmp_path / "bad.npy")), "bad.npy")


def test_nan_in_points(cli, tmp_path):
    x = np.ones((50, 2))
    x[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    one_error_line(cli("train", str(tmp_path / "nan.npy")), "NaN", "row 7")
    csv = tmp_path / "inf.csv"
    csv.write_text("a,b\n1,2\n3,inf\n")
    one_error_line(cli("train", str(csv)), "inf")


def test_ragged_rows(cli, tmp_path):
    csv = tmp_path / "ragged.csv"
    csv.write_text("1,2\n3,4\n5,6,7\n")
    one_error_line(cli("train", str(csv)), "ragged", "row 3")


def test_non_numeric_set_value(cli):
    one_error_line(cli("train", "ring8", "--set", "train.lr_d=fast"), "train.lr_d", "not a number")


def test_unknown_set_key_and_option(cli):
    one_error_line(cli("train", "ring8", "--set", "train.lrd=1"), "train.lrd")
    one_error_line(cli("train", "ring8", "--frobnicate"), "--frobnicate")
    one_error_line(cli("train", "ring8", "--set", "train.loss=nonsense"), "nonsense", "choose one of")


def test_negative_steps(cli):
    one_error_line(cli("train", "ring8", "--steps", "-5"), "--steps")


def test_run_directory_that_does_not_exist(cli, tmp_path):
    missing = str(tmp_path / "no-run")
    one_error_line(cli("sample", missing, "--n", "5", "--out", str(tmp_path / "x.npy")), "no-run")
    one_error_line(cli("eval", missing), "no-run")
    one_error_line(cli("train", "--resume", missing), "no-run")
    assert not (tmp_path / "x.npy").exists()


def test_existing_run_directory_is_never_overwritten(trained_run, cli):
    out, _ = trained_run
    before = tree_digest(out)
    one_error_line(cli("train", "ring8", "--out", str(out)), "already exists", "--resume")
    assert tree_digest(out) == before


def copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def test_truncated_checkpoint(trained_run, cli, tmp_path):
    run = copy_run(trained_run[0], tmp_path / "run")
    weights = run / "checkpoints" / "step-00000060" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = tree_digest(run)
    one_error_line(cli("sample", str(run), "--n", "5", "--out", str(tmp_path / "x.npy")), "truncated or was modified")
    one_error_line(cli("train", "--resume", str(run), "--steps", "80"), "weights.safetensors")
    assert tree_digest(run) == before and not (tmp_path / "x.npy").exists()


def test_tampered_checkpoint(trained_run, cli, tmp_path):
    run = copy_run(trained_run[0], tmp_path / "run")
    weights = run / "checkpoints" / "step-00000060" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0xFF
    weights.write_bytes(bytes(data))
    one_error_line(cli("eval", str(run)), "truncated or was modified")
    state = run / "checkpoints" / "step-00000060" / "state.json"
    state.write_text("{not json")
    one_error_line(cli("eval", str(run)), "cannot be read")


def test_sample_to_unsupported_suffix_writes_nothing(trained_run, cli, tmp_path):
    one_error_line(cli("sample", str(trained_run[0]), "--n", "5", "--out", str(tmp_path / "x.txt")), ".npy or .csv")
    assert not (tmp_path / "x.txt").exists()


def test_dry_run_prints_the_config_that_would_train(cli):
    # images get the DCGAN recipe for the keys left alone (digits, whose own recipe is an MLP's, when
    # the user names the DCGAN); the user's --set wins
    proc = cli("train", "digits", "--dry-run", "--set", "train.lr_g=1e-3", "--set", "model.net=dcgan")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(proc.stdout)
    assert cfg["model"]["net"] == "dcgan" and cfg["model"]["z_dim"] == 100
    assert cfg["train"]["lr_g"] == 1e-3 and cfg["train"]["lr_d"] == 2e-4 and cfg["train"]["beta1"] == 0.5
    points = json.loads(cli("train", "ring8", "--dry-run").stdout)
    assert points["model"]["net"] == "mlp" and points["train"]["lr_d"] == 4e-3


def test_gradient_penalty_on_images_gets_a_critic_without_batch_norm(cli):
    dcgan = ("--set", "model.net=dcgan")
    cfg = json.loads(cli("train", "digits", "--dry-run", "--set", "train.loss=wgan-gp", *dcgan).stdout)
    assert cfg["model"]["d_norm"] == "layer"
    proc = cli("train", "digits", "--dry-run", "--set", "train.loss=wgan-gp", "--set", "model.d_norm=batch", *dcgan)
    one_error_line(proc, "batch norm", "model.d_norm=layer")


def test_a_net_that_does_not_fit_the_data_fails_before_writing(cli, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "ring8", "--out", str(out), "--set", "model.net=dcgan")
    one_error_line(proc, "dcgan")
    assert not out.exists()


@pytest.mark.parametrize("mode", ["slerp", "lerp"])
def test_interpolate_writes_paths_whose_ends_are_the_samples_of_those_latents(cli, trained_run, tmp_path, mode):
    from ganforge import load

    run_dir, _ = trained_run
    out = tmp_path / "path.npy"
    proc = cli("interpolate", str(run_dir), "--out", str(out), "--pairs", "3", "--steps", "5", "--mode", mode,
               "--seed", "4")
    assert proc.returncode == 0, proc.stderr
    path = np.load(out).reshape(3, 5, 2)
    ends = load(run_dir).sample(6, seed=4)
    np.testing.assert_allclose(path[:, 0], ends[0::2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(path[:, -1], ends[1::2], rtol=1e-5, atol=1e-6)
    assert np.abs(np.diff(path, axis=1)).sum() > 0  # it moves between the ends


def test_interpolate_rejects_bad_options(cli, trained_run, tmp_path):
    run_dir, _ = trained_run
    one_error_line(cli("interpolate", str(run_dir), "--out", str(tmp_path / "p.npy"), "--steps", "1"), "--steps")
    one_error_line(cli("interpolate", str(tmp_path / "nope"), "--out", str(tmp_path / "p.npy")), "nope")


def test_image_interpolation_grid_has_one_path_per_row(tmp_path):
    from PIL import Image

    import ganforge

    run_dir = tmp_path / "digits"
    ganforge.train("digits", out=run_dir, settings={"train.steps": 2, "train.batch": 16, "model.g_width": 8,
                                                     "model.d_width": 8, "train.eval_every": 0})
    ganforge.load(run_dir).domain.save_samples(ganforge.load(run_dir).interpolate(pairs=3, steps=7), tmp_path / "s.png",
                                               columns=7, scale=1)
    width, height = Image.open(tmp_path / "s.png").size
    assert (width, height) == (7 * (8 + 2) + 2, 3 * (8 + 2) + 2)  # 8x8 digits, 2-pixel padding


def test_feature_scores_are_for_images_only(cli, trained_run):
    run_dir, _ = trained_run
    one_error_line(cli("eval", str(run_dir), "--features", "digits-cnn"), "images")


@pytest.mark.parametrize("command", ["sample", "interpolate"])
def test_non_positive_truncation_is_refused(cli, trained_run, tmp_path, command):
    run_dir, _ = trained_run
    out = tmp_path / "x.npy"
    one_error_line(cli(command, str(run_dir), "--out", str(out), "--truncation", "0"), "--truncation")
    assert not out.exists()
