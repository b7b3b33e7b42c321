"""Issue 16, a new user's first hour: evaluation that says what it computes and keeps to a budget
(with the full protocol one option away and named in the summary), a summary that says what to do
next and lists what the run wrote, and the habits users bring from CTGAN/SDV and friends (fresh
samples, save/load, did-you-mean, headline scores in ``ganforge runs``, plain decimal CSVs,
aligned ``eval`` output)."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

import ganforge  # noqa: E402
from ganforge import progress  # noqa: E402
from ganforge.cli import _score_lines, main  # noqa: E402
from ganforge.config import RunConfig, set_value  # noqa: E402
from ganforge.domains import get_domain  # noqa: E402
from ganforge.domains import timeseries as ts  # noqa: E402
from ganforge.errors import UsageError  # noqa: E402
from ganforge.metrics import timeseries as mts  # noqa: E402
from ganforge.metrics.tabular import evaluate_tables  # noqa: E402
from ganforge.rundir.runs import default_columns, list_runs, table  # noqa: E402

from conftest import TINY  # noqa: E402

TINY_SETTINGS = dict(kv.split("=") for kv in TINY)
TABLE_TINY = {"model.g_width": 16, "model.d_width": 16, "model.g_depth": 1, "model.d_depth": 1,
              "train.batch": 60, "train.log_every": 10, "train.ckpt_every": 20, "model.z_dim": 8}


def small_table(n: int = 120, seed: int = 0) -> "pd.DataFrame":
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"size": rng.normal(5, 2, n).round(4) * 1e-4, "city": rng.choice(["a", "b", "c"], n),
                         "member": rng.random(n) < 0.4})


def windows(tmp_path: Path, n: int = 60) -> Path:
    """A small set of 2-feature windows of 10 steps, as a .npy a user would give."""
    path = tmp_path / "w.npy"
    np.save(path, ts.sine_data(n, 10, 2, np.random.default_rng(0)) * 10)
    return path


@pytest.fixture
def tiny_scores(monkeypatch):
    """The TimeGAN protocols with a few iterations each (the same code, a test's budget)."""
    for name, protocol in list(ts.SCORE_PROTOCOLS.items()):
        monkeypatch.setitem(ts.SCORE_PROTOCOLS, name, ts.ScoreProtocol(protocol.repeats, 6, 6, protocol.max_windows))


# --- progress lines -------------------------------------------------------------------------------

def test_a_progress_line_names_its_phase_and_is_silent_when_asked(capsys):
    with progress.task("scoring: something slow", total=3) as bar:
        bar.update(3)
    assert "scoring: something slow" in capsys.readouterr().err
    with progress.shown(False), progress.task("scoring: hidden", total=3) as bar:
        bar.update(3)
    with progress.task("features: few", total=10, min_total=500) as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""
    assert progress.is_shown()  # the switch is back after the block


def test_timegan_scores_say_what_they_compute(capsys):
    real, fake = (ts.sine_data(40, 8, 2, np.random.default_rng(s)) for s in (0, 1))
    mts.timegan_scores(real, fake, repeats=3, disc_iterations=5, pred_iterations=5)
    err = capsys.readouterr().err
    assert "scoring: TimeGAN discriminative score (3 repeats side by side)" in err
    assert "scoring: TimeGAN predictive score (3 repeats side by side)" in err
    with progress.shown(False):
        mts.timegan_scores(real, fake, repeats=1, disc_iterations=5, pred_iterations=5)
    assert capsys.readouterr().err == ""


def test_table_scores_name_each_step(capsys):
    real, fake, test = small_table(80, 0), small_table(80, 1), small_table(40, 2)
    scores = evaluate_tables(real, fake, real_test=test, target="member", detectors=("logistic",))
    err = capsys.readouterr().err
    for step in ("column shapes", "detection AUC (logistic)", "ML efficacy", "distance to the closest record"):
        assert f"scoring: table: {step}" in err, step
    assert "detection_auc" in scores and "detection_auc_gbm" not in scores and "ml_synthetic" in scores


# --- the protocol: bounded by default, the full one an option away, recorded -----------------------

def test_the_fast_protocol_is_a_bounded_share_of_the_full_one():
    fast, full = ts.SCORE_PROTOCOLS["fast"], ts.SCORE_PROTOCOLS["full"]
    assert (full.repeats, full.disc_iterations, full.pred_iterations) == (0, 2000, 5000)  # TimeGAN's code, all repeats
    # measured (domains/timeseries.py): 8-9 ms of CPU an iteration of 2 repeats, 5-7 s of t-SNE: under 30 s
    assert fast.repeats <= 2 and fast.disc_iterations + fast.pred_iterations <= 2000
    assert RunConfig().data.eval_protocol == "fast"


def test_series_run_records_its_protocol_and_eval_can_run_the_full_one(tmp_path, tiny_scores, capsys, monkeypatch):
    out = tmp_path / "run"
    with progress.shown(False):  # what training with --quiet (progress=False) runs in
        summary = ganforge.train(str(windows(tmp_path)), out=out, settings={**TINY_SETTINGS, "train.steps": 10})
    assert "scoring" not in capsys.readouterr().err
    assert summary["eval"]["protocol"] == "fast" and summary["eval"]["repeats"] == ts.FAST_REPEATS
    assert summary["train_seconds"] >= 0 and summary["eval_seconds"] > 0
    asked = {}
    real_scores = mts.timegan_scores

    def spy(real, fake, repeats, disc_iterations, pred_iterations, **kw):
        asked.update(repeats=repeats, iterations=(disc_iterations, pred_iterations))
        return real_scores(real, fake, repeats, disc_iterations, pred_iterations, **kw)

    monkeypatch.setattr(mts, "timegan_scores", spy)
    capsys.readouterr()
    assert main(["eval", str(out), "--n", "30", "--protocol", "full", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["protocol"] == "full" and asked["repeats"] == 10  # data.metric_repeats
    assert "scoring: TimeGAN discriminative score (10 repeats side by side)" in captured.err
    assert main(["eval", str(out), "--n", "30", "--json"]) == 0  # the run's own protocol
    assert json.loads(capsys.readouterr().out)["protocol"] == "fast" and asked["repeats"] == ts.FAST_REPEATS
    with pytest.raises(UsageError, match="eval_protocol"):
        ganforge.load(out).evaluate(30, protocol="thorough")


def test_training_shows_its_scoring_line_unless_quiet(tmp_path, tiny_scores, capsys):
    """Needs rundir/session.py's train() to run inside ``progress.shown(progress)``."""
    data, args = str(windows(tmp_path)), [a for kv in TINY for a in ("--set", kv)]
    assert main(["train", data, "--out", str(tmp_path / "loud"), "--steps", "5", *args]) == 0
    assert "scoring: TimeGAN predictive score" in capsys.readouterr().err
    assert main(["train", data, "--out", str(tmp_path / "quiet"), "--steps", "5", "--quiet", *args]) == 0
    assert "scoring" not in capsys.readouterr().err


# --- the summary says what next -------------------------------------------------------------------

def test_summary_lists_every_file_and_the_next_three_commands(tmp_path, capsys):
    out = tmp_path / "my run"  # a space: the commands must quote it
    args = [a for kv in TINY for a in ("--set", kv)]
    assert main(["train", "ring8", "--out", str(out), "--steps", "20", "--quiet", *args]) == 0
    text = capsys.readouterr().out
    files = next(line for line in text.splitlines() if line.startswith("files"))
    on_disk = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert on_disk and all(name in files for name in on_disk)
    assert re.search(r"checkpoints/ \(\d+ files\)", files)
    quoted = f"'{out}'"
    for command in (f"ganforge sample {quoted} --n 1000 --out more.npy", f"ganforge report {quoted}",
                    f"ganforge eval {quoted}"):
        assert command in text, command
    data = next(line for line in text.splitlines() if line.startswith("data"))
    assert re.search(r"20 steps in [\d.]+ s of training \+ [\d.]+ s of final evaluation", data)

    assert main(["eval", str(out), "--n", "200"]) == 0  # aligned text
    lines = capsys.readouterr().out.splitlines()
    assert len({re.match(r"\S+\s+", line).end() for line in lines}) == 1 and len(lines) > 5
    assert any(line.startswith("reverse_kl ") for line in lines)


# --- fresh samples, save and load -----------------------------------------------------------------

@pytest.fixture(scope="module")
def table_gan(tmp_path_factory):
    return ganforge.TabularGAN(steps=20, progress=False, settings=TABLE_TINY,
                               out=tmp_path_factory.mktemp("table") / "run").fit(small_table())


def test_tabular_gan_samples_fresh_rows_unless_seeded(table_gan):
    first, second = table_gan.sample(40), table_gan.sample(40)
    assert not first.equals(second)
    pd.testing.assert_frame_equal(table_gan.sample(40, seed=3), table_gan.sample(40, seed=3))
    table_gan.reset_sampling()
    pd.testing.assert_frame_equal(table_gan.sample(40), first)  # the same script gives the same tables
    conditioned = table_gan.sample(10, conditions={"city": "b"}), table_gan.sample(10, conditions={"city": "b"})
    assert (conditioned[0]["city"] == "b").all() and not conditioned[0].equals(conditioned[1])


def test_tabular_gan_save_load_round_trip(table_gan, tmp_path):
    saved = table_gan.save(tmp_path / "model")
    again = ganforge.TabularGAN.load(saved)
    assert isinstance(again, ganforge.TabularGAN)
    pd.testing.assert_frame_equal(again.sample(25, seed=4), table_gan.sample(25, seed=4))
    table_gan.reset_sampling()
    pd.testing.assert_frame_equal(again.sample(25), table_gan.sample(25))  # the same sequence of fresh tables
    run = ganforge.load(saved)  # a Run, seeded: the same rows for the same seed
    pd.testing.assert_frame_equal(run.sample(25, seed=4), again.sample(25, seed=4))
    with pytest.raises(UsageError, match="not a table"):
        ganforge.TabularGAN.load(_points_run(tmp_path))


def _points_run(tmp_path: Path) -> Path:
    out = tmp_path / "points"
    ganforge.train("ring8", out=out, settings={**TINY_SETTINGS, "train.steps": 10})
    return out


# --- did you mean ---------------------------------------------------------------------------------

def one_error_line(argv: list[str], capsys, *needles: str) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganforge: error: "), lines
    assert all(needle in lines[0] for needle in needles), lines[0]
    return lines[0]


@pytest.mark.parametrize("key, suggestion", [("loss", "train.loss"), ("train.los", "train.loss"),
                                             ("trian.loss", "train.loss"), ("window", "data.window"),
                                             ("lr", "train.lr_g' or 'train.lr_d")])
def test_set_keys_get_a_did_you_mean(key, suggestion, capsys, tmp_path):
    one_error_line(["train", "ring8", "--out", str(tmp_path / "r"), "--set", f"{key}=hinge"], capsys,
                   f"unknown setting '{key}'", f"did you mean '{suggestion}'?")
    assert not (tmp_path / "r").exists()


def test_set_without_a_key_or_with_a_section_is_one_line(capsys):
    one_error_line(["train", "ring8", "--set", "=hinge"], capsys, "key before '=' is missing")
    one_error_line(["train", "ring8", "--set", "train=1"], capsys, "'train' is a section")
    with pytest.raises(UsageError) as err:
        set_value(RunConfig(), "nothing_like_it", 1)
    assert "did you mean" not in str(err.value)


@pytest.mark.parametrize("name, suggestion", [("rign8", "ring8"), ("Sines", "sines"), ("grid-25", "grid25")])
def test_data_set_names_get_a_did_you_mean(name, suggestion, capsys, tmp_path):
    one_error_line(["train", name, "--out", str(tmp_path / "r")], capsys, f"did you mean '{suggestion}'?",
                   "ganforge datasets")


# --- ganforge runs: headline scores and both times --------------------------------------------------

FAKE_RUNS = {
    # name: (data, domain, summary's eval, times)
    "a-points": ("ring8", "points", {"modes": 8, "hq_fraction": 0.97, "reverse_kl": 0.01, "energy_distance": 0.002,
                                     "precision": 0.9}, {"train_seconds": 50.0, "eval_seconds": 1.5}),
    "b-table": ("adult", "table", {"column_shapes": 0.91, "column_pair_trends": 0.85, "detection_auc": 0.62,
                                   "ml_synthetic": 0.55, "quality": 0.88},
                {"train_seconds": 300.0, "eval_seconds": 9.0}),
    "c-series": ("sines", "series", {"discriminative": 0.04, "predictive": 0.098, "acf_distance": 0.03,
                                     "xcorr_distance": 0.01}, {"train_seconds": 600.0, "eval_seconds": 20.0}),
    "d-old": ("ring8", "points", {"modes": 7, "hq_fraction": 0.9, "reverse_kl": 0.05}, {}),  # before the split
}


def fake_runs(root: Path) -> Path:
    """Run directories as ``ganforge train`` leaves them (config, summary, log), without training."""
    for name, (data, domain, scores, times) in FAKE_RUNS.items():
        path = root / name
        path.mkdir(parents=True)
        config = RunConfig().to_dict()
        config["data"].update(source=data, domain=domain)
        (path / "config.json").write_text(json.dumps(config))
        (path / "metrics.jsonl").write_text(json.dumps({"step": 100, "loss_d": 1.0, "time": 3.0}) + "\n")
        seconds = sum(times.values()) or 42.0
        (path / "summary.json").write_text(json.dumps({"status": "finished", "steps": 100, "seconds": seconds,
                                                       **times, "eval": {"n": 2500, **scores}}))
    return root


def test_runs_shows_each_domains_headline_scores(tmp_path):
    rows = list_runs(fake_runs(tmp_path))
    columns = default_columns(rows, 200)
    assert columns[:3] == ["modes", "column_shapes", "discriminative"]  # the first of each domain, most runs first
    lines = table(rows, columns).splitlines()
    header = lines[0].split()
    by_name = {line.split()[0]: line.split() for line in lines[1:]}
    assert by_name["b-table"][header.index("column_shapes")] == "0.91"
    assert by_name["c-series"][header.index("discriminative")] == "0.04"
    series = by_name["c-series"]
    assert series[header.index("train")] == "10m00s" and series[header.index("eval")] == "20.0s"
    assert by_name["d-old"][header.index("train")] == "42.0s" and by_name["d-old"][header.index("eval")] == "-"
    one = [r for r in rows if r["domain"] == "points"]
    assert default_columns(one, 200)[:4] == ["modes", "hq_fraction", "reverse_kl", "energy_distance"]


def test_runs_cli_sorts_by_train_and_eval_time(tmp_path, capsys):
    fake_runs(tmp_path)
    assert main(["runs", str(tmp_path), "--sort", "eval"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["a-points", "b-table", "c-series", "d-old"]  # shortest first, the run without a time last


# --- plain decimal CSV, aligned eval text -----------------------------------------------------------

def test_csv_samples_are_plain_decimals_that_read_back_exactly(tmp_path):
    points = np.array([[4.411075825020800423, -1.5e-05], [1234567.125, 3.0]])
    get_domain("points").save_samples(points, tmp_path / "p.csv")
    text = (tmp_path / "p.csv").read_text()
    assert "e+" not in text and "e-" not in text and "4.4110758250208," in text and "-0.000015" in text
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1), points)
    series = ts.decode_windows(np.full((2, 3, 1), 0.5), {"features": 1, "scale": [2e-5], "min": [0.0],
                                                         "columns": ["v"]})
    get_domain("series").save_samples(series, tmp_path / "s.csv")
    rows = list(csv.reader(io.StringIO((tmp_path / "s.csv").read_text())))
    assert rows[0] == ["sample", "step", "v"] and rows[1] == ["0", "0", "0.00001"] and len(rows) == 7
    frame = pd.DataFrame({"x": [1e-05, 2.5, np.nan], "n": [1, 2, 3], "c": ["a", "b", None]})
    get_domain("table").save_samples(frame, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines() == ["x,n,c", "0.00001,1,a", "2.5,2,b", ",3,"]


def test_eval_text_is_aligned_for_long_and_nested_names():
    lines = _score_lines({"n": 100, "detection_auc_gbm": 0.61234, "columns": {"a_rather_long_column": 0.9},
                          "kid": 1.2e-05}).splitlines()
    assert lines[2].startswith("columns.a_rather_long_column  0.9")
    starts = {len(line) - len(line.split()[-1]) for line in lines}
    assert len(starts) == 1  # every value starts in the same column
    assert lines[3].split()[-1] == "1.2e-05"


def test_headline_keys_exist_for_every_domain():
    from ganforge.domains import DOMAINS

    for domain in DOMAINS.values():
        assert domain.headline and all(isinstance(k, str) for k in domain.headline), domain.name


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
