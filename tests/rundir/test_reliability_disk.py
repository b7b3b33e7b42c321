"""Issue 15, failed writes: every command that writes (train, --resume, sample --out, interpolate,
arithmetic, gif, report) onto a full or read-only disk says one line with the file, the real cause
and the fix, and leaves what is on disk as it was. With root rights the disk is real (a small
tmpfs, a read-only bind mount); the same promises are also tested with a write that fails."""

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge import io as gio
from test_reliability_rundir import FLAGS, STEPS, digest, error_lines, final_weights, run_main
from test_reliability_rundir import points_file, reference  # noqa: F401  (session fixtures)

COMMANDS = {
    "sample": lambda run, out: ["sample", run, "--out", out / "s.npy", "--n", "20"],
    "interpolate": lambda run, out: ["interpolate", run, "--out", out / "i.npy"],
    "arithmetic": lambda run, out: ["arithmetic", run, "--out", out / "a.npy"],
    "gif": lambda run, out: ["gif", run, "--out", out / "p.gif"],
    "report": lambda run, out: ["report", run, "--out", out / "r.html"],
}


@pytest.fixture(scope="module")
def run_with_frames(tmp_path_factory, points_file):  # noqa: F811
    """A finished run with progress frames (for ``gif``)."""
    from ganforge.cli import main

    run = tmp_path_factory.mktemp("frames") / "run"
    assert main(["train", str(points_file), "--out", str(run), *FLAGS, "--steps", "20",
                 "--set", "train.snapshot_every=10"]) == 0
    return run


def mkstemp_failing(code):
    def failing(*args, dir=None, **kwargs):
        raise OSError(code, os.strerror(code), str(dir))

    return failing


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("code,fix", [(errno.EROFS, "remount the filesystem of"), (errno.ENOSPC, "free space")])
def test_every_command_that_writes_says_one_line(run_with_frames, tmp_path, capsys, monkeypatch, command, code, fix):
    """Item 3: tracebacks on a full or read-only disk."""
    out = tmp_path / "out"
    out.mkdir()
    before = digest(run_with_frames)
    monkeypatch.setattr(gio.tempfile, "mkstemp", mkstemp_failing(code))
    result, _, err = run_main(capsys, *COMMANDS[command](run_with_frames, out))
    lines = error_lines(err)
    assert result == 2 and len(lines) == 1 and lines[0].startswith("ganforge: error: cannot write "), err
    assert os.strerror(code) in lines[0] and fix in lines[0] and lines[0].endswith("then run the command again")
    assert digest(run_with_frames) == before and not list(out.iterdir())


def test_a_write_that_gives_no_errno_is_probed_for_the_real_cause(tmp_path, monkeypatch):
    """Item 1: numpy's partial write on a full disk ("N requested and M written") has no errno, and
    was reported as "[Errno None] None"; the cause is found by a probe write, here a full disk."""
    target = tmp_path / "samples.npy"
    target.write_bytes(b"the old complete file")

    def partial(fh, array):
        fh.write(b"\x93NUMPY")
        raise OSError("400000 requested and 131056 written")

    monkeypatch.setattr(gio, "_probe_errno", lambda folder: errno.ENOSPC)
    with pytest.raises(OSError) as info:
        with gio.atomic_write(target, "wb") as fh:
            partial(fh, None)
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(target))
    assert gio.write_problem(info.value, tmp_path) == (f"cannot write {target} (No space left on device)",
                                                       f"free space on the disk that holds {tmp_path}")
    assert target.read_bytes() == b"the old complete file" and list(tmp_path.iterdir()) == [target]


def test_resume_on_a_read_only_disk_says_one_line(reference, tmp_path, capsys, monkeypatch):  # noqa: F811
    """Item 2: the lock file was opened outside the error handler (an EROFS traceback)."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(".lock") and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code, _, err = run_main(capsys, "train", "--resume", run, "--steps", "60", "--quiet")
    assert code == 2 and error_lines(err) == [
        f"ganforge: error: cannot write {run / '.lock'} (Read-only file system); the last complete checkpoint "
        f"(step-{STEPS:08d}) is intact: remount the filesystem of {run} read-write and resume with "
        f"'ganforge train --resume {run}'"]


# --- a real disk: root mounts a small tmpfs and a read-only bind mount ----------------------------

def _mount(*args) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    path.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", path):
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_full_disk_for_real(reference, tmp_path, capsys, points_file):  # noqa: F811
    """A run that fills a 160 kB tmpfs stops with one line, keeps its last complete checkpoint, and
    resumes (once the disk is larger) to end exactly as the run that had room; sample --out onto
    the full disk keeps the file already there."""
    with small_disk(tmp_path / "disk", "160k") as disk:
        run = disk / "run"
        code, _, err = run_main(capsys, "train", points_file, "--out", run, *FLAGS)
        lines = error_lines(err)
        assert code == 2 and len(lines) == 1 and "(No space left on device)" in lines[0], err
        assert lines[0].endswith(f"resume with 'ganforge train --resume {run}'") or "(it starts again from step 0)" \
            in lines[0]
        out = disk / "kept.npy"
        with contextlib.suppress(OSError):
            np.save(out, np.arange(3))
        if out.exists():
            code, _, err = run_main(capsys, "sample", reference, "--out", out, "--n", "100000")
            assert code == 2 and "No space left on device" in err and "Errno None" not in err
            assert np.load(out).tolist() == [0, 1, 2]
        assert _mount("-o", "remount,size=64m", disk)
        code, _, err = run_main(capsys, "train", "--resume", run, "--quiet")
        assert code == 0, err
        a, b = final_weights(reference), final_weights(run)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_read_only_disk_for_real(reference, tmp_path, capsys):  # noqa: F811
    source, view = tmp_path / "rw", tmp_path / "ro"
    shutil.copytree(reference, source / "run")
    view.mkdir()
    if os.geteuid() != 0 or not _mount("--bind", source, view):
        pytest.skip("needs root for a read-only bind mount")
    try:
        assert _mount("-o", "remount,bind,ro", view)
        before = digest(source)
        code, _, err = run_main(capsys, "train", "--resume", view / "run", "--steps", "60", "--quiet")
        assert code == 2 and "(Read-only file system)" in err and len(error_lines(err)) == 1, err
        code, _, err = run_main(capsys, "sample", view / "run", "--out", view / "s.npy")
        assert code == 2 and "remount the filesystem of" in err and len(error_lines(err)) == 1, err
        assert digest(source) == before
    finally:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)
