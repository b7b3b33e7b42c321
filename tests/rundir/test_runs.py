"""``ganforge runs``: one row per run under a folder (a damaged run is a row that says why), sorting,
JSON and CSV; and ``train.tensorboard``: event files whose scalars are metrics.jsonl's values, which
change nothing in training, append on resume, and need the package (one error line without it)."""

import csv
import io
import json
import shutil
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

import ganforge
from ganforge.cli import _jsonable, main
from ganforge.rundir.store import run_lock
from ganforge.rundir.runs import default_columns, list_runs

TINY = {"model.g_width": 32, "model.d_width": 32, "model.g_depth": 2, "model.d_depth": 2, "train.batch": 64,
        "train.steps": 40, "train.log_every": 10, "train.ckpt_every": 20, "train.eval_every": 20,
        "train.snapshot_every": 20}
NAMES = ["broken", "killed", "more/damaged", "more/lsgan", "ns"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two trained runs, one a level deeper, and three copies made to look killed or damaged:
    ``killed`` lost its summary and its last metrics line was cut by the kill, ``more/damaged`` has
    a summary.json that is not JSON, and ``broken`` a config.json that is not JSON."""
    root = tmp_path_factory.mktemp("sweep")
    ganforge.train("ring8", out=root / "ns", settings=TINY)
    ganforge.train("ring8", out=root / "more" / "lsgan", settings={**TINY, "train.loss": "lsgan", "seed": 1})
    shutil.copytree(root / "ns", root / "killed")
    (root / "killed" / "summary.json").unlink()
    lines = (root / "killed" / "metrics.jsonl").read_text().splitlines()
    (root / "killed" / "metrics.jsonl").write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:25])  # 10, 20, eval, 30, cut
    shutil.copytree(root / "ns", root / "more" / "damaged")
    (root / "more" / "damaged" / "summary.json").write_text('{"status": "fini')
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("not json")
    (root / "notes").mkdir()  # a folder that is not a run is not listed
    return root


def summary(path):
    return json.loads((path / "summary.json").read_text())


def test_one_row_per_run_with_status_steps_and_final_metrics(sweep):
    rows = {row["name"]: row for row in list_runs(sweep)}
    assert sorted(rows) == NAMES
    ns, lsgan = rows["ns"], rows["more/lsgan"]
    assert (ns["data"], ns["domain"], ns["loss"], ns["status"], ns["steps"], ns["steps_total"]) == \
        ("ring8", "points", "ns", "finished", 40, 40)
    assert lsgan["loss"] == "lsgan" and lsgan["status"] == "finished" and lsgan["error"] is None
    for row, path in ((ns, sweep / "ns"), (lsgan, sweep / "more" / "lsgan")):
        final = summary(path)
        assert row["seconds"] == final["seconds"]
        assert (row["train_seconds"], row["eval_seconds"]) == (final["train_seconds"], final["eval_seconds"])
        scores = {k: v for k, v in final["eval"].items() if not isinstance(v, (list, dict))}
        assert scores and all(row[k] == v for k, v in scores.items())  # every numeric score, nested ones left out
        assert "mode_counts" not in row
    killed = rows["killed"]  # no summary: the last intact records of metrics.jsonl
    assert killed["status"] == "stopped" and killed["steps"] == 30 and killed["error"] is None
    assert killed["modes"] == json.loads((sweep / "ns" / "metrics.jsonl").read_text().splitlines()[2])["eval"]["modes"]
    damaged, broken = rows["more/damaged"], rows["broken"]
    assert damaged["status"] == "damaged" and "summary.json cannot be read" in damaged["error"]
    assert damaged["loss"] == "ns" and damaged["steps"] == 40  # what can be read is still shown
    assert broken["status"] == "damaged" and "config.json cannot be read" in broken["error"] and broken["loss"] is None


def test_a_run_being_trained_is_running(sweep):
    with run_lock(sweep / "ns"):
        assert {r["name"]: r["status"] for r in list_runs(sweep)}["ns"] == "running"
    assert {r["name"]: r["status"] for r in list_runs(sweep)}["ns"] == "finished"


def test_python_api_is_a_dataframe(sweep):
    frame = ganforge.runs(sweep)
    assert list(frame["name"]) == NAMES
    assert list(frame.columns[:12]) == ["name", "data", "domain", "loss", "steps", "steps_total", "status",
                                        "seconds", "train_seconds", "eval_seconds", "path", "error"]
    best = frame.sort_values("reverse_kl").iloc[0]
    assert best["reverse_kl"] == min(summary(sweep / "ns")["eval"]["reverse_kl"],
                                     summary(sweep / "more" / "lsgan")["eval"]["reverse_kl"])
    assert ganforge.runs(sweep / "ns", frame=False)[0]["name"] == "ns"  # a run directory lists itself


def table_names(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:]]


def test_cli_table_sorts_and_chooses_columns(sweep, capsys):
    assert main(["runs", str(sweep), "--sort", "reverse_kl", "--columns", "modes,reverse_kl"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["name", "data", "domain", "loss", "steps", "status", "train", "eval", "modes", "reverse_kl",
                      "error"]
    rows = {r["name"]: r for r in list_runs(sweep)}
    ascending = sorted((n for n in NAMES if n != "broken"), key=lambda n: (rows[n]["reverse_kl"], n))
    assert table_names(out) == ascending + ["broken"]  # lower KL is better; a row without it comes last
    assert "config.json cannot be read" in out and "40/40" in out
    assert main(["runs", str(sweep), "--sort", "reverse_kl", "--desc"]) == 0
    descending = table_names(capsys.readouterr().out)
    assert descending[-1] == "broken" and descending[:-1] == sorted(ascending, key=lambda n: -rows[n]["reverse_kl"])
    assert main(["runs", str(sweep), "--sort", "steps"]) == 0  # numbers: most first
    assert table_names(capsys.readouterr().out)[-2:] == ["killed", "broken"]


def test_default_columns_are_common_scores_that_fit(sweep):
    rows = list_runs(sweep)
    narrow, wide = default_columns(rows, 100), default_columns(rows, 200)
    assert 2 <= len(narrow) < len(wide) <= 8
    assert narrow == wide[:len(narrow)] and narrow[0] == "modes"
    assert not {"n", "modes_total"} & set(wide)


def test_cli_json_and_csv(sweep, capsys):
    assert main(["runs", str(sweep), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == NAMES and rows == _jsonable(list_runs(sweep))  # inf as "inf", as eval --json
    assert main(["runs", str(sweep), "--csv", "--columns", "modes,recall"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["name"] for r in table] == NAMES and list(table[0])[-2:] == ["modes", "recall"]
    ns = next(r for r in table if r["name"] == "ns")
    assert float(ns["recall"]) == summary(sweep / "ns")["eval"]["recall"] and ns["status"] == "finished"


@pytest.mark.parametrize("args, needle", [
    (["runs", "{tmp}/nowhere"], "folder not found"),
    (["runs", "{sweep}", "--sort", "nope"], "--sort: unknown key 'nope'"),
    (["runs", "{sweep}", "--columns", "modes,nope"], "--columns: unknown metric nope"),
    (["runs", "{sweep}", "--json", "--csv"], "--json or --csv"),
])
def test_bad_input_is_one_error_line_and_exit_2(sweep, tmp_path, capsys, args, needle):
    code = main([a.format(tmp=tmp_path, sweep=sweep) for a in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ganforge: error: ") and needle in lines[0], err


def test_a_folder_without_runs_says_so(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs under" in capsys.readouterr().out
    assert main(["runs", str(tmp_path), "--json"]) == 0 and json.loads(capsys.readouterr().out) == []
    assert ganforge.runs(tmp_path).empty


# --- train.tensorboard ---------------------------------------------------------------------------

def events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def expected_scalars(run) -> dict[str, dict[int, float]]:
    """What TensorBoard should hold: metrics.jsonl's numbers, by tag and step, as float32."""
    expected: dict[str, dict[int, float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "eval" in record:
            values = {f"eval/{k}": v for k, v in record["eval"].items() if k != "n" and not isinstance(v, (list, dict))}
        else:
            values = {f"train/{k}": v for k, v in record.items() if k not in ("step", "time", "warnings", "confusion")}
            values.update({f"train/confusion.{k}": v for k, v in record["confusion"].items()})
        for tag, value in values.items():
            expected.setdefault(tag, {})[record["step"]] = float(np.float32(value))
    return expected


def scalars(accumulator) -> dict[str, dict[int, float]]:
    found = {}
    for tag in accumulator.Tags()["scalars"]:
        points = accumulator.Scalars(tag)
        steps = [p.step for p in points]
        assert len(steps) == len(set(steps)), f"{tag}: a step written twice {steps}"
        found[tag] = {p.step: p.value for p in points}
    return found


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    pytest.importorskip("tensorboard")
    path = tmp_path_factory.mktemp("tensorboard") / "ns"
    ganforge.train("ring8", out=path, settings={**TINY, "train.tensorboard": True})
    return path


def test_tensorboard_scalars_are_the_metrics_log(tb_run):
    accumulator = events(tb_run)
    expected = expected_scalars(tb_run)
    assert "train/loss_d" in expected and "eval/reverse_kl" in expected
    assert scalars(accumulator) == expected
    tags = accumulator.Tags()["images"]
    assert [e.step for e in accumulator.Images("progress")] == [0, 20, 40] and "samples" in tags
    assert [e.step for e in accumulator.Images("samples")] == [40]


def test_tensorboard_changes_nothing_in_training(tb_run, sweep):
    assert summary(tb_run)["eval"] == summary(sweep / "ns")["eval"]
    weights = [load_file(str(run / "checkpoints" / "step-00000040" / "weights.safetensors")) for run in (tb_run, sweep / "ns")]
    assert weights[0].keys() == weights[1].keys()
    assert all(bool((weights[0][k] == weights[1][k]).all()) for k in weights[0])


def test_tensorboard_resume_appends_without_repeating_steps(tb_run, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(tb_run, run)
    # as if killed after the step-40 events were written but before the checkpoint of step 40
    shutil.rmtree(run / "checkpoints" / "step-00000040")
    (run / "summary.json").unlink()
    ganforge.train(None, resume=run)
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert scalars(events(run)) == expected_scalars(run) == expected_scalars(tb_run)
    resumed, straight = (load_file(str(r / "checkpoints" / "step-00000040" / "weights.safetensors")) for r in (run, tb_run))
    assert all(bool((resumed[k] == straight[k]).all()) for k in straight)  # still bit for bit


@pytest.mark.parametrize("resume", [False, True])
def test_missing_tensorboard_is_one_line_and_exit_2_before_training(sweep, tmp_path, monkeypatch, capsys, resume):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    if resume:
        run = tmp_path / "resume"
        shutil.copytree(sweep / "ns", run)
        config = json.loads((run / "config.json").read_text())
        config["train"]["tensorboard"] = True
        (run / "config.json").write_text(json.dumps(config))
        before = sorted(p.name for p in run.rglob("*"))
        code = main(["train", "--resume", str(run), "--steps", "60", "--quiet"])
        assert sorted(p.name for p in run.rglob("*")) == before
    else:
        code = main(["train", "ring8", "--out", str(tmp_path / "new"), "--set", "train.tensorboard=true", "--quiet"])
        assert not (tmp_path / "new").exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("ganforge: error: train.tensorboard needs the tensorboard package") and \
        "pip install tensorboard" in lines[0]


def test_fid_rows_name_their_feature_extractor(tmp_path, capsys):
    """Two image runs scored on different features: each row says which, and the table puts it beside the FID."""
    inception = "inception-3e9f9a8694ba8b76d386e67888d29dd4-bf16"
    for name, extractor, fid in (("a", inception, 7.4), ("b", "digits-cnn-2063", 354.0)):
        run = tmp_path / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"data": {"source": "mnist", "domain": "images"},
                                                     "model": {"family": "gan"}, "train": {"loss": "ns", "steps": 10}}))
        (run / "summary.json").write_text(json.dumps({"status": "finished", "steps": 10, "seconds": 1.0, "eval": {
            "fid": fid, "kid": 0.01, "fid_real_floor": 2.5, "extractor": extractor, "energy_distance": 0.1}}))
    rows = {row["name"]: row for row in list_runs(tmp_path)}
    assert (rows["a"]["features"], rows["b"]["features"]) == (inception, "digits-cnn-2063")
    columns = default_columns(list(rows.values()), 200)
    assert columns.index("features") == columns.index("fid") - 1
    assert main(["runs", str(tmp_path)]) == 0
    assert "inception-3e9f9a86-bf16" in capsys.readouterr().out  # the table shortens the hash
    assert main(["runs", str(tmp_path), "--json"]) == 0
    assert inception in capsys.readouterr().out
