"""A run directory that cannot be written during training (disk full, no permission, read-only), and
one that another process is training into: one error line, the last complete checkpoint intact."""

import errno
import json

import numpy as np
import pytest
import torch

from conftest import TINY
from ganforge.cli import main
from ganforge.config import RunConfig, set_value
from ganforge.errors import UsageError
from ganforge.rundir.run import Run
from ganforge.rundir.session import train
from ganforge.rundir.store import run_lock
from ganforge.engine import checkpoint as ckpt

SETTINGS = (*TINY, "train.steps=60", "train.ckpt_every=20", "train.instance_noise=0.1")
FLAGS = [a for kv in SETTINGS for a in ("--set", kv)]


def tiny_cfg() -> RunConfig:
    cfg = RunConfig()
    for kv in SETTINGS:
        set_value(cfg, *kv.split("="))
    cfg.data.source = "ring8"
    return cfg


def quiet(*_):
    pass


def failing_at(n: int, fn, code: int = errno.ENOSPC, only=lambda *args: True):
    """``fn`` that raises OSError(code) at its ``n``-th call for which ``only(*args)`` holds (as a
    write() does: no file name)."""
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += only(*args)
        if calls["n"] == n and only(*args):
            raise OSError(code, {errno.ENOSPC: "No space left on device", errno.EACCES: "Permission denied",
                                 errno.EROFS: "Read-only file system"}[code])
        return fn(*args, **kwargs)

    return wrapped


class FailingWrites:
    """A file opened for appending whose 4th opening fails to write (what MetricsLog.append sees on a full disk)."""

    appends = 0

    def __init__(self, path, mode, code, kwargs):
        self.fh, self.code, self.fail = open(path, mode, **kwargs), code, False
        if "a" in mode:
            FailingWrites.appends += 1
            self.fail = FailingWrites.appends == 4

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def write(self, text):
        if self.fail:
            raise OSError(self.code, "No space left on device")
        return self.fh.write(text)

    def __getattr__(self, name):
        return getattr(self.fh, name)


def log_without_time(run) -> list:
    return [{k: v for k, v in r.items() if k != "time"} for r in Run(run).log.records()]


def test_disk_full_at_a_checkpoint_keeps_the_last_one_and_resumes_exactly(tmp_path, monkeypatch):
    train(tiny_cfg(), out=tmp_path / "reference", progress=False, echo=quiet)
    run = tmp_path / "run"
    monkeypatch.setattr(ckpt, "save", failing_at(3, ckpt.save))  # checkpoints 0, 20, then 40 fails
    with pytest.raises(UsageError) as info:
        train(tiny_cfg(), out=run, progress=False, echo=quiet)
    message = str(info.value)
    assert message.startswith(f"cannot write {run / 'checkpoints' / 'step-00000040'} (No space left on device)")
    assert "step-00000020) is intact" in message and f"free space on the disk that holds {run}" in message
    assert message.endswith(f"resume with 'ganforge train --resume {run}'")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000000", "step-00000020"]
    ckpt.read_checkpoint(run / "checkpoints" / "step-00000020")  # complete and verified
    assert not (run / "summary.json").exists()

    monkeypatch.undo()  # space freed
    summary = train(None, resume=run, progress=False, echo=quiet)
    assert summary["status"] == "finished" and summary["steps"] == 60
    a = ckpt.read_checkpoint(tmp_path / "reference" / "checkpoints" / "step-00000060")[0]
    b = ckpt.read_checkpoint(run / "checkpoints" / "step-00000060")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert log_without_time(tmp_path / "reference") == log_without_time(run)


@pytest.mark.parametrize("target,code,fix", [
    ("metrics", errno.ENOSPC, "free space on the disk that holds"),
    ("samples", errno.EROFS, "remount the filesystem of"),
    ("checkpoint", errno.EACCES, "make"),
])
def test_the_cli_says_one_line_and_exits_2(tmp_path, monkeypatch, capsys, target, code, fix):
    if target == "metrics":  # the 4th record's write() in MetricsLog.append fails
        from ganforge.rundir import store as run_module

        FailingWrites.appends = 0
        monkeypatch.setattr(run_module, "open", lambda path, mode="r", **kw: FailingWrites(path, mode, code, kw),
                            raising=False)
        where = "metrics.jsonl"
    elif target == "samples":  # the final samples, written through io.atomic_write
        monkeypatch.setattr(np, "save", failing_at(1, np.save, code))  # inside io.atomic_write
        where = "samples.npy"
    else:
        monkeypatch.setattr(ckpt, "save", failing_at(2, ckpt.save, code))
        where = "step-00000020"
    run = tmp_path / "run"
    assert main(["train", "ring8", "--out", str(run), "--quiet", *FLAGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # no traceback
    assert err[0].startswith("ganforge: error: cannot write ") and where in err[0]
    assert fix in err[0] and f"--resume {run}" in err[0]
    assert not list(run.rglob("*.tmp"))  # temporary files and folders are removed
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 60


def test_a_second_process_cannot_train_into_a_locked_run(tmp_path, cli):
    run = tmp_path / "run"
    train(tiny_cfg(), out=run, progress=False, echo=quiet)
    before = (run / "metrics.jsonl").read_text()
    with run_lock(run):  # this process is training into it
        proc = cli("train", "--resume", str(run), "--steps", "80", "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"ganforge: error: another process is training into {run}; wait for it or use another --out"
    assert (run / "metrics.jsonl").read_text() == before
    assert Run(run).latest_checkpoint().name == "step-00000060"


def test_before_the_first_checkpoint_the_run_resumes_from_step_0(tmp_path, monkeypatch):
    """Issue 15 item 5: a run stopped before its first checkpoint used to be a dead end ("delete it and
    start again"); it now resumes from step 0 and ends as an uninterrupted run does."""
    run = tmp_path / "run"
    monkeypatch.setattr(ckpt, "save", failing_at(1, ckpt.save))
    with pytest.raises(UsageError, match=rf"no checkpoint was written yet: free space on the disk that holds {run} "
                                         rf"and resume with 'ganforge train --resume {run}' \(it starts again from "
                                         rf"step 0\)$"):
        train(tiny_cfg(), out=run, progress=False, echo=quiet)
    assert not list(run.rglob("*.tmp"))
    monkeypatch.undo()
    assert train(None, resume=run, progress=False, echo=quiet)["steps"] == 60
    train(tiny_cfg(), out=tmp_path / "reference", progress=False, echo=quiet)
    assert log_without_time(tmp_path / "reference") == log_without_time(run)
