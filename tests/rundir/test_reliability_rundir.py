"""Issue 15, the run directory: the lock is taken before anything is written and leaves no file
behind, a run stopped before its first checkpoint resumes from step 0, a finished run resumed is
left as it is, edited run files are one line naming the file and the key, a run still training
says which checkpoint it samples from, and an unexpected error is one line and a log file."""

import hashlib
import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY
from ganforge.cli import main
from ganforge.engine import checkpoint as ckpt
from ganforge.rundir import session as session_module
from ganforge.rundir import store
from ganforge.rundir.runs import is_locked
from ganforge.rundir.store import run_lock

STEPS = 40
FLAGS = ["--steps", str(STEPS), "--quiet",
         *[a for kv in (*TINY, "train.ckpt_every=20") for a in ("--set", kv)]]


def run_main(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def digest(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def final_weights(run: Path) -> dict:
    return load_file(str(run / "checkpoints" / f"step-{STEPS:08d}" / "weights.safetensors"))


@pytest.fixture(scope="session")
def points_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "blobs.npy"
    rng = np.random.default_rng(0)
    np.save(path, rng.normal(size=(400, 2)) + rng.integers(0, 3, size=(400, 1)) * 4)
    return path


@pytest.fixture(scope="session")
def reference(tmp_path_factory, points_file) -> Path:
    """A small finished run, trained once, that the tests copy or compare with."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", str(points_file), "--out", str(run), *FLAGS]) == 0
    return run


@pytest.fixture
def copy(reference, tmp_path) -> Path:
    shutil.copytree(reference, tmp_path / "run")
    return tmp_path / "run"


def test_a_finished_run_leaves_no_lock_file(reference):
    """Issue 16: no leftover .lock; the lock's guarantee is kept (see the race test below)."""
    assert not (reference / ".lock").exists() and not is_locked(reference)
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["seconds"] == pytest.approx(summary["train_seconds"] + summary["eval_seconds"], abs=0.011)


def test_the_lock_is_taken_before_anything_is_written(tmp_path, capsys, monkeypatch, points_file):
    """Item 6: two trainers on one --out, the second started while the first has locked the folder
    but not yet written config.json: the second is refused, and config.json is the first's."""
    run, seen = tmp_path / "run", {}
    write = store._write_run_files

    def second_trainer_arrives(path, cfg, dataset):
        seen["locked"] = is_locked(path)
        seen["second"] = main(["train", str(points_file), "--out", str(path), "--seed", "9", *FLAGS])
        seen["err"] = capsys.readouterr().err
        return write(path, cfg, dataset)

    monkeypatch.setattr(store, "_write_run_files", second_trainer_arrives)
    code, _, err = run_main(capsys, "train", points_file, "--out", run, "--seed", "3", *FLAGS)
    assert code == 0, err
    assert seen["locked"] and seen["second"] == 2
    assert error_lines(seen["err"]) == [f"ganforge: error: another process is training into {run}; wait for it or "
                                        "use another --out"]
    assert json.loads((run / "config.json").read_text())["seed"] == 3
    assert not (run / ".lock").exists()


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_step_0(tmp_path, capsys, monkeypatch, points_file,
                                                                       reference):
    """Item 5: it was a dead end (--resume said "train it first", a new run "continue it with
    --resume"). Ctrl-C before the first checkpoint now names the resume, which starts from step 0
    and ends bit for bit as the uninterrupted run."""
    run = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_checkpoint", interrupted)
    code, _, err = run_main(capsys, "train", points_file, "--out", run, *FLAGS)
    assert code == 130 and error_lines(err) == [f"ganforge: interrupted; continue with 'ganforge train --resume {run}'"]
    monkeypatch.undo()
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "data.json"]  # no lock file, no checkpoint
    code, _, err = run_main(capsys, "sample", run, "--out", tmp_path / "s.npy")
    assert code == 2 and f"continue it with 'ganforge train --resume {run}' (it starts from step 0)" in err
    code, _, err = run_main(capsys, "train", points_file, "--out", run, *FLAGS)
    assert code == 2 and f"continue it with --resume {run}" in err
    code, _, err = run_main(capsys, "train", "--resume", run, "--quiet")
    assert code == 0, err
    assert f"resuming {run} from step 0 of {STEPS} (it was stopped before its first checkpoint)" in err
    a, b = final_weights(reference), final_weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_start_stopped_before_config_json_is_taken_over(tmp_path, capsys, points_file):
    """A folder holding only what a start writes before config.json is not a run yet: a new
    training takes it over instead of refusing it as "not empty"."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "data.json").write_text('{"domain": "points"}')
    (run / ".lock").touch()
    (run / ".config.json.x1y2.tmp").write_text("{")
    code, _, err = run_main(capsys, "train", points_file, "--out", run, "--steps", "0", "--quiet")
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["steps"] == 0
    assert not (run / ".config.json.x1y2.tmp").exists()
    assert json.loads((run / "data.json").read_text())["sample_shape"] == [2]


def test_resuming_a_finished_run_changes_nothing(copy, capsys):
    """Item 12: it rewrote summary.json (last_log emptied, samples_per_s null, seconds changed)."""
    before = digest(copy)
    code, out, err = run_main(capsys, "train", "--resume", copy, "--quiet", "--json")
    assert code == 0, err
    assert f"{copy} is already finished at step {STEPS}; nothing to do" in err
    assert json.loads(out) == json.loads((copy / "summary.json").read_text())
    assert digest(copy) == before


def test_a_resumed_run_counts_its_own_steps_and_time(tmp_path, capsys, monkeypatch, points_file):
    """Item 12: a resumed run's samples/s counts only its own steps in its own wall time; its time
    is split into train_seconds (every part of the loop) and eval_seconds. A clock that advances
    10 ms a step makes every figure exact."""
    sessions = []
    start = session_module.Session.start

    def remember(self, *args):
        sessions.append(self)
        return start(self, *args)

    monkeypatch.setattr(session_module.Session, "start", remember)
    monkeypatch.setattr(session_module, "time", types.SimpleNamespace(
        perf_counter=lambda: sessions[-1].trainer.step * 0.01 if sessions and sessions[-1].trainer else 0.0))
    run = tmp_path / "run"
    code, out, err = run_main(capsys, "train", points_file, "--out", run, *FLAGS, "--steps", "20", "--json")
    assert code == 0, err
    first = json.loads(out)
    code, out, err = run_main(capsys, "train", "--resume", run, "--steps", "40", "--quiet", "--json")
    assert code == 0, err
    second = json.loads(out)
    per_step = sessions[-1].trainer.samples_per_step
    assert first["samples_per_s"] == second["samples_per_s"] == pytest.approx(20 * per_step / 0.2)
    assert (first["train_seconds"], second["train_seconds"]) == (pytest.approx(0.2), pytest.approx(0.4))
    assert second["eval_seconds"] == 0 and second["seconds"] == pytest.approx(0.4)
    assert second["last_log"]["step"] == 40


def test_sample_and_eval_on_a_run_still_training_name_the_checkpoint(copy, tmp_path, capsys):
    """Item 13: they silently used the oldest weights."""
    shutil.rmtree(copy / "checkpoints" / f"step-{STEPS:08d}")
    (copy / "summary.json").unlink()
    with run_lock(copy):  # a trainer holds the run
        code, _, err = run_main(capsys, "sample", copy, "--out", tmp_path / "s.npy", "--n", "10")
        assert code == 0, err
        assert f"used the checkpoint of step 20 of {STEPS} in {copy} (the run is still training)" in err
        code, out, err = run_main(capsys, "eval", copy, "--n", "50", "--json")
        assert code == 0 and json.loads(out)["checkpoint_step"] == 20
        assert "(the run is still training)" in err
    code, _, err = run_main(capsys, "sample", copy, "--out", tmp_path / "s.npy", "--n", "10")
    assert "(the run stopped there)" in err


def _rewrite_json(path: Path, edit) -> None:
    value = json.loads(path.read_text())
    path.write_text(json.dumps(edit(value)))


def _rng_as_float(run: Path) -> None:
    """A wrong-dtype generator state in the weights, with the hash in state.json updated to match."""
    folder = run / "checkpoints" / f"step-{STEPS:08d}"
    tensors = load_file(str(folder / "weights.safetensors"))
    name = next(k for k in tensors if k.startswith("rng."))
    tensors[name] = tensors[name].float()
    save_file(tensors, str(folder / "weights.safetensors"), metadata={"format": "1"})
    sha = hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    _rewrite_json(folder / "state.json", lambda s: {**s, "weights_sha256": sha})


def _state(run: Path) -> Path:
    return run / "checkpoints" / f"step-{STEPS:08d}" / "state.json"


EDITS = {
    "config is a list": (lambda r: (r / "config.json").write_text("[1, 2]"),
                         "config.json: expected a table of settings, found a JSON list"),
    "negative z_dim": (lambda r: _rewrite_json(r / "config.json", lambda c: {**c, "model": {**c["model"], "z_dim": -5}}),
                       "config.json: model.z_dim must be >= 0"),
    "huge width": (lambda r: _rewrite_json(r / "config.json", lambda c: {**c, "model": {**c["model"], "g_width": 1e12}}),
                   "config.json: model.g_width must be <= 65,536"),
    "no domain": (lambda r: _rewrite_json(r / "data.json", lambda d: {k: v for k, v in d.items() if k != "domain"}),
                  "data.json: 'domain' is None"),
    "huge sample shape": (lambda r: _rewrite_json(r / "data.json", lambda d: {**d, "sample_shape": [10**6, 10**6]}),
                          "data.json: 'sample_shape' [1000000, 1000000] holds 1,000,000,000,000 numbers"),
    "monitor state": (lambda r: _rewrite_json(_state(r), lambda s: {**s, "extra": {**s["extra"], "monitor": {
                          "streak": "many", "warnings": []}}}), "state.json: 'extra.monitor.streak'"),
    "step as text": (lambda r: _rewrite_json(_state(r), lambda s: {**s, "step": "40"}), "state.json: 'step' is \"40\""),
    "rng dtype": (_rng_as_float, "weights.safetensors: the generator state 'rng."),
}


@pytest.mark.parametrize("edit", list(EDITS))
@pytest.mark.parametrize("command", ["sample", "resume"])
def test_an_edited_run_file_is_one_line_naming_the_file_and_key(copy, tmp_path, capsys, edit, command):
    """Item 7: tracebacks. One validation of a loaded run directory (ganforge.rundir.validate)."""
    change, fragment = EDITS[edit]
    change(copy)
    before = digest(copy)
    args = ["sample", copy, "--out", tmp_path / "s.npy"] if command == "sample" else \
        ["train", "--resume", copy, "--steps", "60", "--quiet"]
    code, _, err = run_main(capsys, *args)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and fragment in lines[0], err
    assert "restore the file" in lines[0]
    assert digest(copy) == before and not (tmp_path / "s.npy").exists()


def test_an_unexpected_error_is_one_line_and_a_log(copy, tmp_path, capsys, monkeypatch):
    """Item 15: any unexpected exception: one line naming what failed and where the traceback is."""
    from ganforge.rundir.run import Run

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("division by zero in a place nobody expected")

    monkeypatch.setattr(Run, "sample", broken)
    code, _, err = run_main(capsys, "sample", copy, "--out", tmp_path / "s.npy")
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("ganforge: unexpected error in cli.py:")
    assert "ZeroDivisionError: division by zero in a place nobody expected" in lines[0]
    log = Path(lines[0].split("the full traceback is in ")[1].split(" (please report it)")[0])
    assert log.name == "last-error.log" and "Traceback" in log.read_text() and "broken" in log.read_text()
    code, _, err = run_main(capsys, "--debug", "sample", copy, "--out", tmp_path / "s.npy")
    assert code == 1 and "Traceback (most recent call last)" in err

    monkeypatch.setattr(Run, "sample", lambda *a, **k: (_ for _ in ()).throw(EOFError("no data left")))
    code, _, err = run_main(capsys, "sample", copy, "--out", tmp_path / "s.npy")
    assert code == 1 and "EOFError: no data left" in err  # click calls an EOFError an abort: not an interrupt


def test_an_unexpected_error_in_training_goes_to_the_run_error_log(tmp_path, capsys, monkeypatch, points_file):
    calls = {"n": 0}
    on_log = session_module.Session.on_log

    def fails_at_the_third_record(self, record):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("a bug in the loop")
        return on_log(self, record)

    monkeypatch.setattr(session_module.Session, "on_log", fails_at_the_third_record)
    run = tmp_path / "run"
    code, _, err = run_main(capsys, "train", points_file, "--out", run, *FLAGS)
    assert code == 1 and len(error_lines(err)) == 1, err
    assert f"the full traceback is in {run / 'error.log'}" in err and "RuntimeError: a bug in the loop" in err
    assert "fails_at_the_third_record" in (run / "error.log").read_text()
    assert not (run / ".lock").exists()
    monkeypatch.undo()
    code, _, err = run_main(capsys, "train", "--resume", run, "--quiet")
    assert code == 0, err


def test_a_run_trained_further_drops_its_old_summary(copy, capsys, monkeypatch):
    """Item 14: a stale summary made 'ganforge runs' show "finished 3200/1e18" for a run trained
    further and stopped; the summary of the earlier ending goes once the run trains again (and
    --steps has an upper bound)."""
    from ganforge.rundir.runs import list_runs

    def stopped(self, record):
        raise KeyboardInterrupt

    monkeypatch.setattr(session_module.Session, "on_log", stopped)
    code, _, err = run_main(capsys, "train", "--resume", copy, "--steps", "80", "--quiet")
    assert code == 130 and f"continue with 'ganforge train --resume {copy}'" in err
    assert not (copy / "summary.json").exists() and not (copy / ".lock").exists()
    row = next(r for r in list_runs(copy.parent) if Path(r["path"]) == copy)
    assert row["status"] == "stopped"
    code, _, err = run_main(capsys, "train", "--resume", copy, "--steps", str(10**18), "--quiet")
    assert code == 2 and "train.steps must be <= 1,000,000,000" in err


def test_a_run_killed_while_finishing_finishes_on_resume(copy, capsys):
    """Killed while its final samples and summary were written (found by benchmarks/faults.py): the
    resume removes the temporary file the kill left, keeps the last checkpoint as it is and writes
    the summary again; a hand-damaged summary is written again too."""
    (copy / ".samples.png.x1y2.tmp").write_bytes(b"half a picture")
    (copy / "summary.json").write_text(json.dumps({"status": "finished", "steps": STEPS, "warnings": 3}))
    last = digest(copy / "checkpoints")
    code, _, err = run_main(capsys, "train", "--resume", copy, "--quiet")
    assert code == 0, err
    assert not list(copy.glob(".*.tmp")) and digest(copy / "checkpoints") == last
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["warnings"] == [] and summary["last_log"]["step"] == STEPS
