"""Fault injection (issue 15): kill, fill and corrupt run directories at random, and count.

Every case drives the real ``ganforge`` command in a fresh process and checks the promises:

- **kill**: SIGKILL (or SIGTERM / SIGINT) a training at a random moment, perhaps twice, then
  ``--resume`` it to the end: it must end bit for bit as the uninterrupted reference run, with no
  temporary file and no lock file left.
- **fill**: train into a disk that fills up at a random point (a small tmpfs, mounted when this
  runs as root; else a write that fails with ENOSPC after a random number of bytes, injected into
  the child process): the command must stop with one line naming the file and the fix, keep the
  newest complete checkpoint, and resume (once there is room) to the reference's end; ``sample
  --out`` onto the full disk must keep the file already there.
- **corrupt**: damage one file of a finished run at random (truncate it, flip bytes, delete it,
  or give a JSON key a wrong type or an absurd value), then run a random command on it (sample,
  eval, report, runs, train --resume): it must succeed, or stop with one error line and no
  traceback, and it must change no file the damage did not touch.

"data lost" counts the cases where something complete before the fault was gone or different
after it (a checkpoint, an output file, a file the damage did not touch). It must be zero.

    python benchmarks/faults.py --cases 60 --seed 0          # about 20 min on a quiet machine
    python benchmarks/faults.py --cases 9 --kinds corrupt    # one kind only
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STEPS = 200
SETTINGS = ["model.g_width=32", "model.d_width=32", "model.g_depth=2", "model.d_depth=2", "train.batch=64",
            "train.log_every=10", "train.ckpt_every=20", "train.eval_every=0"]
TRAIN = ["--steps", str(STEPS), "--quiet", *[a for kv in SETTINGS for a in ("--set", kv)]]

# the child-process side of a failing write (no root): every file opened for writing counts its
# bytes against a budget and raises ENOSPC beyond it, as a full disk does
FILL_CHILD = r"""
import builtins, errno, os, sys
budget = [int(os.environ["GANFORGE_FAULT_BYTES"])]

class Full:
    def __init__(self, fh): self.fh = fh
    def write(self, data):
        size = len(data.encode()) if isinstance(data, str) else memoryview(data).nbytes
        if size > budget[0]:
            budget[0] = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        budget[0] -= size
        return self.fh.write(data)
    def __getattr__(self, name): return getattr(self.fh, name)
    def __iter__(self): return iter(self.fh)
    def __enter__(self): return self
    def __exit__(self, *exc): self.fh.close()

def wrap(opener):
    def opened(file, mode="r", *args, **kwargs):
        fh = opener(file, mode, *args, **kwargs)
        return Full(fh) if any(c in str(mode) for c in "wax+") else fh
    return opened

builtins.open, os.fdopen = wrap(builtins.open), wrap(os.fdopen)
from ganforge.cli import main
sys.exit(main(sys.argv[1:]))
"""


NOTES: list[str] = []
"""What the current case did, printed beside its result."""


@dataclass
class Tally:
    tried: int = 0
    passed: int = 0
    lost: int = 0
    failures: list[str] = field(default_factory=list)

    def record(self, name: str, problems: list[str], lost: bool) -> None:
        self.tried += 1
        self.lost += lost
        if problems:
            self.failures.append(f"{name}: {'; '.join(problems)}")
        else:
            self.passed += 1


def ganforge(*args: str, env: dict | None = None, child: str | None = None,
             timeout: float = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", child, *args] if child else [sys.executable, "-m", "ganforge", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def start(log: Path, *args: str) -> subprocess.Popen:
    """``ganforge ARGS`` in the background, its stderr appended to ``log``."""
    with open(log, "a") as fh:
        return subprocess.Popen([sys.executable, "-m", "ganforge", *args], stdout=subprocess.DEVNULL, stderr=fh,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})


def digest(path: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name not in skip}


def final_weights(run: Path) -> str | None:
    path = run / "checkpoints" / f"step-{STEPS:08d}" / "weights.safetensors"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def one_error_line(proc: subprocess.CompletedProcess) -> list[str]:
    """What is wrong with a command that had to fail: it must say one line and no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    problems = []
    if proc.returncode != 2:
        problems.append(f"exit {proc.returncode}")
    if "Traceback" in proc.stderr or len(lines) != 1 or not lines[0].startswith("ganforge: error: "):
        problems.append(f"stderr {proc.stderr.strip()[-300:]!r}")
    return problems


def _last_line(proc: subprocess.CompletedProcess) -> str:
    return (proc.stderr.strip().splitlines() or [""])[-1][:150]


def leftovers(run: Path) -> list[str]:
    found = [str(p.relative_to(run)) for p in run.rglob("*") if p.name.endswith(".tmp") or p.name == ".lock"]
    return [f"left behind: {', '.join(found)}"] if found else []


# --- kill ---------------------------------------------------------------------------------------

def kill_case(rng: random.Random, data: Path, reference: str, seconds: float, work: Path) -> tuple[list[str], bool]:
    run, log = work / "run", work / "stderr.txt"
    fresh = ["train", str(data), "--out", str(run), *TRAIN]
    proc = start(log, *fresh)
    for _ in range(rng.choice([1, 1, 2])):
        time.sleep(rng.uniform(0.0, seconds))
        if proc.poll() is None:
            sig = rng.choice([signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
            proc.send_signal(sig)
            NOTES.append(f"{sig.name} at {len(_checkpoint_steps(run))} checkpoint(s)")
        if proc.wait() == 0:
            break
        # killed before config.json marked the folder as a run: start it again into the same --out
        proc = start(log, *(["train", "--resume", str(run), "--quiet"] if (run / "config.json").exists() else fresh))
    problems = [] if proc.wait() == 0 else [f"the last command exited {proc.returncode}: {log.read_text()[-300:]!r}"]
    lost = final_weights(run) != reference
    return problems + (["the final weights differ from the reference"] if lost else []) + leftovers(run), lost


# --- fill ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def full_disk(rng: random.Random, work: Path, mount: bool):
    """``(folder, grow, env, child)``: a folder on a disk that fills up; ``grow()`` makes room."""
    disk = work / "disk"
    disk.mkdir()
    size = rng.randint(40, 240)  # kB: most runs fill it, at every stage from config.json to summary.json
    if mount and os.geteuid() == 0 and _mount("-t", "tmpfs", "-o", f"size={size}k", "tmpfs", disk):
        try:
            yield disk, lambda: _mount("-o", "remount,size=256m", disk), {}, None
        finally:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)
        return
    budget = {"GANFORGE_FAULT_BYTES": str(size * 1024)}
    yield disk, lambda: budget.update(GANFORGE_FAULT_BYTES=str(1 << 40)), budget, FILL_CHILD


def _checkpoint_steps(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step-*")) if (run / "checkpoints").exists() else []


def _mount(*args) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


def fill_case(rng: random.Random, data: Path, reference: str, finished: Path, work: Path,
              mount: bool = True) -> tuple[list[str], bool]:
    with full_disk(rng, work, mount) as (disk, grow, env, child):
        run = disk / "run"
        proc = ganforge("train", str(data), "--out", str(run), *TRAIN, env=env, child=child)
        problems = one_error_line(proc) if proc.returncode != 0 else []
        NOTES.append(f"train: exit {proc.returncode} {_last_line(proc)}")
        if proc.returncode not in (0, 2):
            return problems, False
        kept = disk / "kept.npy"  # a file already on the full disk, if it fits
        try:
            np.save(kept, np.arange(5))
        except OSError:
            kept.unlink(missing_ok=True)
        if kept.exists():
            out = ganforge("sample", str(finished), "--out", str(kept), "--n", "200000", env=env, child=child)
            NOTES.append(f"sample --out: exit {out.returncode}")
            if out.returncode != 0:
                problems += one_error_line(out)
            if out.returncode != 0 and np.load(kept).tolist() != list(range(5)):
                return problems + ["sample --out onto a full disk damaged the file already there"], True
        grow()
        if not (run / "config.json").exists():  # stopped while the run was being created: nothing to keep
            return problems, False
        done = ganforge("train", "--resume", str(run), "--quiet", env=env, child=child)
        if done.returncode != 0:
            return problems + [f"resume exited {done.returncode}: {done.stderr[-300:]!r}"], False
        lost = final_weights(run) != reference
        return problems + (["the final weights differ from the reference"] if lost else []) + leftovers(run), lost


# --- corrupt ------------------------------------------------------------------------------------

WEIRD_VALUES = [None, -5, 1e12, "text", [], {}, True, 1e308, -1]


def corrupt(rng: random.Random, run: Path) -> tuple[str, Path]:
    """Damage one file of ``run`` at random; ``(what was done, the file)``."""
    files = [p for p in run.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".safetensors", ".npy")]
    target = rng.choice(files)
    how = rng.choice(["truncate", "flip", "delete"] + (["json"] if target.suffix == ".json" else []))
    data = target.read_bytes()
    if how == "truncate":
        target.write_bytes(data[: rng.randrange(len(data))])
    elif how == "flip":
        raw = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(raw))
    elif how == "delete":
        target.unlink()
    else:
        value = json.loads(data)
        how = f"json {_set_random_key(rng, value)}"
        target.write_text(json.dumps(value))
    return how, target


def _set_random_key(rng: random.Random, value) -> str:
    """Give a random key (at any depth) of a JSON table a weird value; returns its dotted name."""
    path, node = [], value
    while isinstance(node, dict) and node:
        key = rng.choice(list(node))
        path.append(key)
        if not isinstance(node[key], dict) or rng.random() < 0.4:
            node[key] = rng.choice(WEIRD_VALUES)
            return ".".join(path)
        node = node[key]
    return "(nothing)"


def corrupt_case(rng: random.Random, finished: Path, work: Path) -> tuple[list[str], bool]:
    run = work / "run"
    shutil.copytree(finished, run)
    how, target = corrupt(rng, run)
    before = digest(run, skip=("error.log",))
    command = rng.choice([["sample", str(run), "--out", str(work / "s.npy"), "--n", "50"],
                          ["eval", str(run), "--n", "50"], ["report", str(run), "--out", str(work / "r.html")],
                          ["runs", str(work)], ["train", "--resume", str(run), "--steps", str(STEPS + 20), "--quiet"]])
    proc = ganforge(*command)
    name = f"{how} {target.relative_to(run)}, then {command[0]}"
    NOTES.append(f"{name}: exit {proc.returncode} {_last_line(proc)}")
    problems = one_error_line(proc) if proc.returncode != 0 else []
    if proc.returncode == 0 and command[0] == "train":
        return problems, False  # a resume that could train rewrites the run, as it should
    after = digest(run, skip=("error.log",))
    lost = after != before
    return [f"{name}: {p}" for p in problems + (["files changed"] if lost else [])], lost


# --- driver -------------------------------------------------------------------------------------

def prepare(work: Path) -> tuple[Path, str, Path, float]:
    """The data, the reference run's final weights hash, a finished run and its training time."""
    data = work / "blobs.npy"
    rng = np.random.default_rng(0)
    np.save(data, rng.normal(size=(400, 2)) + rng.integers(0, 3, size=(400, 1)) * 4)
    finished = work / "reference"
    t0 = time.perf_counter()
    proc = ganforge("train", str(data), "--out", str(finished), *TRAIN)
    if proc.returncode != 0:
        sys.exit(f"the reference run failed: {proc.stderr}")
    return data, final_weights(finished), finished, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="kill,fill,corrupt", help="comma-separated: kill, fill, corrupt")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--verbose", action="store_true", help="say what each case did")
    parser.add_argument("--fill-by", choices=["tmpfs", "write"], default="tmpfs",
                        help="fill a small tmpfs (needs root; else falls back to write) or inject failing writes")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",")]
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        work = Path(scratch)
        data, reference, finished, seconds = prepare(work)
        tallies = {kind: Tally() for kind in kinds}
        for case in range(args.cases):
            kind = kinds[case % len(kinds)]
            folder = work / f"case-{case:03d}"
            folder.mkdir()
            if kind == "kill":
                problems, lost = kill_case(rng, data, reference, seconds, folder)
            elif kind == "fill":
                problems, lost = fill_case(rng, data, reference, finished, folder, args.fill_by == "tmpfs")
            else:
                problems, lost = corrupt_case(rng, finished, folder)
            tallies[kind].record(f"case {case} ({kind})", problems, lost)
            shutil.rmtree(folder, ignore_errors=True)
            print(f"case {case:3d} {kind:<8} {'ok' if not problems else 'FAILED'}{' (data lost)' if lost else ''}"
                  + (f"  [{' | '.join(NOTES)}]" if args.verbose else ""), flush=True)
            NOTES.clear()
    print(f"\n{'kind':<8} {'tried':>6} {'passed':>7} {'data lost':>10}")
    for kind, t in tallies.items():
        print(f"{kind:<8} {t.tried:>6} {t.passed:>7} {t.lost:>10}")
    total = Tally(sum(t.tried for t in tallies.values()), sum(t.passed for t in tallies.values()),
                  sum(t.lost for t in tallies.values()), [f for t in tallies.values() for f in t.failures])
    print(f"{'all':<8} {total.tried:>6} {total.passed:>7} {total.lost:>10}")
    for failure in total.failures:
        print(f"  {failure}")
    sys.exit(1 if total.lost or total.failures else 0)


if __name__ == "__main__":
    main()
