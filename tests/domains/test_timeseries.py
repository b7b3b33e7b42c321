import json
import sys
from importlib import metadata

import numpy as np
import pytest
import torch

import ganforge
from ganforge.config import DataConfig
from ganforge.domains import get_domain, infer_domain
from ganforge.domains import timeseries as ts
from ganforge.errors import UsageError

from conftest import installed

series = get_domain("series")


def load(source, **kw):
    return series.load(DataConfig(source=str(source), **kw))


def test_sines_follow_timegan_sine_data_generation():
    x = ts.sine_data(4000, 24, 5, np.random.default_rng(0))
    assert x.shape == (4000, 24, 5) and x.min() >= 0.5 and x.max() <= 1.0
    # each feature is (sin(f t + p) + 1) / 2: arcsin recovers a line in t while f t + p < pi/2
    t = np.arange(12)
    angle = np.arcsin(2 * x[:, :12] - 1).transpose(1, 0, 2).reshape(12, -1)  # [12 steps, N * 5 curves]
    intercept, slope = np.polynomial.polynomial.polyfit(t, angle, 1)
    assert np.abs(slope[None] * t[:, None] + intercept[None] - angle).max() < 1e-9
    for v in (slope, intercept):  # frequency and phase each U(0, 0.1)
        assert v.min() >= 0 and v.max() <= 0.1
        assert v.mean() == pytest.approx(0.05, abs=0.002) and v.std() == pytest.approx(0.1 / np.sqrt(12), rel=0.03)


def test_builtin_sines_dataset():
    ds = load("sines", n=300)
    assert ds.train.shape == (300, 24, 5) and ds.train.min() >= 0 and ds.train.max() <= 1
    assert ds.state["score_space"] == "raw" and ds.holdout.shape == (300, 24, 5)
    assert ds.meta["z_dim"] % 24 == 0
    decoded = series.decode(ds.train, ds.state)
    np.testing.assert_allclose(decoded, ts.sine_data(300, 24, 5, np.random.default_rng(ts.DATA_SEED)), atol=1e-6)
    assert not np.allclose(ds.holdout, decoded)  # an independent draw to score against
    assert torch.equal(load("sines", n=300).train, ds.train)


def test_csv_with_time_index_windows_scaling_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(size=(40, 2)), axis=0) * [1.0, 100.0] + [5.0, -300.0]
    dates = np.arange("2020-01-01", "2020-02-10", dtype="datetime64[D]")
    order = rng.permutation(40)  # rows out of time order: the index puts them back
    lines = ["date,price,volume"] + [f"{dates[i]},{float(values[i, 0])!r},{float(values[i, 1])!r}" for i in order]
    path = tmp_path / "prices.csv"
    path.write_text("\n".join(lines) + "\n")
    assert infer_domain(str(path)).name == "series"
    ds = load(path, window=10, stride=3)
    expected = np.stack([values[s : s + 10] for s in range(0, 31, 3)])
    assert ds.train.shape == (11, 10, 2) and ds.state["columns"] == ["price", "volume"]
    assert ds.train.amin(dim=(0, 1)).tolist() == [0.0, 0.0] and ds.train.amax(dim=(0, 1)).tolist() == [1.0, 1.0]
    decoded = series.decode(ds.train, ds.state)
    np.testing.assert_allclose(decoded, expected, rtol=1e-6, atol=1e-6 * 300)
    assert decoded.columns == ["price", "volume"] and ds.state["score_space"] == "minmax"
    np.testing.assert_allclose(ts.to_score_space(expected, ds.state), ds.train.double().numpy(), atol=1e-6)


def test_npy_windows_set_with_padding_gets_a_mask_and_decodes_to_nan(tmp_path):
    x = np.random.default_rng(0).uniform(2, 3, size=(30, 12, 3))
    x[5, 7:] = np.nan
    x[9, 2:] = np.nan
    np.save(tmp_path / "w.npy", x)
    assert infer_domain(str(tmp_path / "w.npy")).name == "series"
    ds = load(tmp_path / "w.npy")
    assert ds.state["masked"] and ds.train.shape == (30, 12, 4)
    assert ds.train[5, 6:8, 3].tolist() == [1.0, 0.0] and ds.train[5, 7:, :3].abs().sum() == 0
    decoded = series.decode(ds.train, ds.state)
    np.testing.assert_array_equal(np.isnan(decoded), np.isnan(x))
    np.testing.assert_allclose(decoded[~np.isnan(x)], x[~np.isnan(x)], atol=1e-6)
    # whole sequences by default; a window cuts them (a sequence shorter than it is an error)
    with pytest.raises(UsageError, match="sequence 9 .* has 2 steps, fewer than the window of 4"):
        load(tmp_path / "w.npy", window=4)


def test_three_d_npy_claims_are_explicit(tmp_path):
    np.save(tmp_path / "gray.npy", np.zeros((5, 28, 28), dtype=np.uint8))
    np.save(tmp_path / "square.npy", np.zeros((5, 8, 8)))
    np.save(tmp_path / "windows.npy", np.zeros((5, 24, 6)))
    np.save(tmp_path / "series2d.npy", np.zeros((50, 3)))
    assert infer_domain(str(tmp_path / "gray.npy")).name == "images"
    assert infer_domain(str(tmp_path / "square.npy")).name == "images"
    assert infer_domain(str(tmp_path / "windows.npy")).name == "series"
    assert infer_domain(str(tmp_path / "series2d.npy")).name == "points"  # --domain series takes it as one series
    ds = load(tmp_path / "series2d.npy", window=5)
    assert ds.train.shape == (46, 5, 3)


def test_many_series_from_npz_lists_and_dataframes(tmp_path):
    np.savez(tmp_path / "many.npz", a=np.arange(20.0), b=np.arange(30.0) * 2)
    ds = load(tmp_path / "many.npz", window=10, stride=5)
    assert ds.train.shape == (3 + 5, 10, 1)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [3.0, 1.0, 2.0]}, index=pd.to_datetime(["2020-03", "2020-01", "2020-02"]))
    src = ts.read_series([frame, frame])
    assert len(src.series) == 2 and src.series[0][:, 0].tolist() == [1.0, 2.0, 3.0] and src.columns == ["x"]
    with pytest.raises(UsageError, match="column 'x' holds non-numeric"):
        ts.read_series(pd.DataFrame({"x": ["a", "b"]}))


def test_ts_file(tmp_path):
    text = ("# a comment\n@problemName toy\n@timeStamps false\n@univariate false\n@dimensions 2\n"
            "@equalLength false\n@classLabel true a b\n@data\n"
            "1,2,3,4:5,6,7,8:a\n1,2,?,?:5,6,?,?:b\n")
    (tmp_path / "toy.ts").write_text(text)
    assert infer_domain(str(tmp_path / "toy.ts")).name == "series"
    ds = load(tmp_path / "toy.ts")
    assert ds.train.shape == (2, 4, 3) and ds.state["masked"] and ds.state["columns"] == ["dim_0", "dim_1"]
    assert np.isnan(series.decode(ds.train, ds.state)[1, 2:]).all()


@pytest.mark.parametrize("content, fragment", [
    ("date,x\n2020-01-01,1\n2020-01-02,abc\n", "non-numeric value 'abc' in column 'x', row 3"),
    ("date,x\n2020-01-01,1\n2020-01-02,\n", "missing value in column 'x', row 3"),
    ("date,x\n2020-01-01,1\n2020-01-02,nan\n", "missing value in column 'x', row 3"),
    ("date,x\n2020-01-01,1\n2020-01-02,2\n", "has 2 steps, fewer than the window of 24"),
])
def test_bad_csv_series_are_one_clear_error(tmp_path, content, fragment):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(UsageError, match=fragment):
        load(tmp_path / "bad.csv")


def test_bad_arrays_are_one_clear_error(tmp_path):
    x = np.ones((4, 10, 2))
    x[1, 3, 0] = np.nan  # a hole inside a sequence, not padding at its end
    np.save(tmp_path / "hole.npy", x)
    with pytest.raises(UsageError, match="sequence 1: 1 NaN"):
        load(tmp_path / "hole.npy")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]] * 30))
    with pytest.raises(UsageError, match="non-numeric"):
        load(tmp_path / "text.npy")
    with pytest.raises(UsageError, match="data.window must be 0"):
        load("sines", n=10, window=1)
    with pytest.raises(UsageError, match="fewer than the window"):
        ts.make_windows(ts.read_series(np.ones(5)), 6, 1, "the array")


def test_save_samples_npy_csv_png(tmp_path):
    ds = load("sines", n=50)
    samples = series.decode(ds.train[:6], ds.state)
    samples[2, 20:] = np.nan
    series.save_samples(samples, tmp_path / "s.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), np.asarray(samples))
    series.save_samples(samples, tmp_path / "s.csv")
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "sample,step,sine0,sine1,sine2,sine3,sine4" and len(lines) == 1 + 6 * 24 - 4
    row = np.array(lines[1 + 24 + 3].split(","), dtype=float)  # sample 1, step 3
    np.testing.assert_allclose(row, [1, 3, *samples[1, 3]], rtol=1e-9)
    series.save_samples(samples, tmp_path / "s.png", columns=3)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(UsageError, match=".npy, .csv"):
        series.save_samples(samples, tmp_path / "s.txt")


def test_evaluate_quick_scores_and_plot(tmp_path, monkeypatch):
    monkeypatch.setitem(ts.SCORE_PROTOCOLS, "quick", ts.ScoreProtocol(1, 60, 20, ts.QUICK_N))
    np.save(tmp_path / "w.npy", ts.sine_data(200, 8, 4, np.random.default_rng(0)) * 10)
    ds = load(tmp_path / "w.npy")
    good = series.evaluate(ts.sine_data(200, 8, 4, np.random.default_rng(1)) * 10, ds, quick=True)
    bad = series.evaluate(np.full_like(ds.holdout, 7.5), ds, quick=True)
    assert good["n"] == 200 and good["repeats"] == 1 and good["protocol"] == "quick"
    assert good["acf_distance"] < bad["acf_distance"] and good["discriminative"] < bad["discriminative"]
    with pytest.raises(UsageError, match="--features"):
        series.evaluate(ds.holdout, ds, features="digits-cnn")
    series.plot(ds.holdout[:60], ds, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000


@pytest.mark.skipif(not installed("statsmodels"), reason="pip install --no-deps statsmodels")
def test_macrodata_from_the_statsmodels_file():
    ds = load("macrodata")
    assert ds.train.shape == (203 - 23, 24, 12) and ds.state["columns"][0] == "realgdp"
    assert "statsmodels" not in sys.modules  # the data file is read directly


@pytest.mark.skipif(not installed("pmdarima"), reason="pip install --no-deps pmdarima")
def test_msft_from_the_pmdarima_file():
    ds = load("msft")
    assert ds.train.shape == (7983 - 23, 24, 5) and ds.state["columns"] == ["Open", "High", "Low", "Close", "Volume"]


@pytest.mark.skipif(not (installed("aeon") or installed("sktime")), reason="pip install --no-deps aeon")
def test_basicmotions_from_the_ts_files():
    ds = load("basicmotions")
    assert ds.train.shape == (80, 100, 6) and not ds.state["masked"]


def test_missing_data_package_names_the_install(monkeypatch):
    real = metadata.distribution

    def missing(name):
        if name in ("statsmodels", "pmdarima", "aeon", "sktime"):
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    for name, install in (("macrodata", "pip install --no-deps statsmodels"), ("msft", "pip install --no-deps pmdarima"),
                          ("basicmotions", "pip install --no-deps aeon")):
        with pytest.raises(UsageError, match=install):
            load(name)


def cli_in_process(capsys, *args):
    """The CLI's own entry point in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from ganforge.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(result, fragment):
    code, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ganforge: error: ") and fragment in lines[0], err


def test_cli_train_sample_interpolate_eval_end_to_end(tmp_path, cli, capsys):
    from conftest import TINY

    rng = np.random.default_rng(0)
    t = np.arange(60)
    values = np.stack([10 + np.sin(t / 3) + 0.1 * rng.normal(size=60), 1000 + 50 * np.cos(t / 5)], axis=1)
    dates = np.arange("2021-01-01", "2021-03-02", dtype="datetime64[D]")
    data = tmp_path / "daily.csv"
    data.write_text("day,temp,load\n" + "".join(f"{d},{a:.6f},{b:.6f}\n" for d, a, b in zip(dates, *values.T)))
    settings = [a for kv in (*TINY, "data.window=8", "data.stride=2", "data.metric_repeats=0")
                for a in ("--set", kv)]
    out = tmp_path / "run"
    proc = cli("train", str(data), "--out", str(out), "--steps", "20", "--quiet", "--json", *settings)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["domain"] == "series" and summary["eval"]["n"] == 27 and "acf_distance" in summary["eval"]
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["net"] == "tcn" and config["model"]["z_dim"] == 8 * ts.Z_STEP
    assert np.load(out / "samples.npy").shape[1:] == (8, 2) and (out / "samples.png").is_file()

    assert cli_in_process(capsys, "sample", str(out), "--n", "7", "--out", str(tmp_path / "s.npy"))[0] == 0
    s = np.load(tmp_path / "s.npy")
    assert s.shape == (7, 8, 2)
    assert s[..., 1].min() > values[:, 1].min() - 1 and s[..., 1].max() < values[:, 1].max() + 1  # original units
    code = cli_in_process(capsys, "sample", str(out), "--n", "3", "--out", str(tmp_path / "s.csv"), "--truncation", "1")[0]
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert code == 0 and lines[0] == "sample,step,temp,load" and len(lines) == 1 + 3 * 8

    args = ("interpolate", str(out), "--pairs", "2", "--steps", "4", "--out", str(tmp_path / "p.npy"))
    assert cli_in_process(capsys, *args)[0] == 0
    paths, ends = np.load(tmp_path / "p.npy"), ganforge.load(out).sample(4, seed=0)
    assert paths.shape == (8, 8, 2)
    np.testing.assert_allclose(paths[[0, 3, 4, 7]], ends, rtol=1e-5)  # each path runs between two sampled scenarios

    code, stdout, _ = cli_in_process(capsys, "eval", str(out), "--n", "20", "--json")
    assert code == 0 and json.loads(stdout)["n"] == 20

    short = tmp_path / "short.csv"
    short.write_text("date,x\n2020-01-01,1\n2020-01-02,2\n2020-01-03,3\n")
    assert_one_error_line(cli_in_process(capsys, "train", str(short), "--out", str(tmp_path / "r2"), "--steps", "1"),
                          "fewer than the window of 24")
    text = tmp_path / "text.csv"
    text.write_text("date,x\n2020-01-01,1\n2020-01-02,up\n")
    assert_one_error_line(cli_in_process(capsys, "train", str(text), "--out", str(tmp_path / "r3"), "--steps", "1"),
                          "non-numeric value 'up'")
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


def test_variable_length_sequences_train_and_sample_with_trailing_nan(tmp_path):
    from conftest import TINY

    from conftest import write_variable_length_ts

    write_variable_length_ts(tmp_path / "var.ts")
    settings = {kv.split("=")[0]: kv.split("=")[1] for kv in TINY}
    ganforge.train(str(tmp_path / "var.ts"), out=tmp_path / "run",
                   settings={**settings, "train.steps": 5, "data.metric_repeats": 0})
    samples = ganforge.load(tmp_path / "run").sample(20)
    assert samples.shape == (20, 10, 2)
    valid = ~np.isnan(samples).any(axis=2)
    assert valid[:, 0].all() and (np.diff(valid.astype(int), axis=1) <= 0).all()  # NaN only after a window's end
