"""Images at scale: peak memory and start-up time of training on a large folder of PNGs, on a first
start (the decode cache is empty: every file is decoded, in parallel processes) and on a second one
(the cache is hit: the pixels are memory-mapped, nothing is decoded).

Writes ``--n`` random-ish 64x64 colour PNGs (smooth colour blobs plus noise) into ten class
sub-folders of FOLDER once and keeps them for later runs; then starts ``ganforge.train(FOLDER)`` with the images recipe (DCGAN
at 64x64, batch 64) in a fresh child process twice, with a private decode cache that is empty
before the first start. Each start is measured:

- ``to first step``: wall seconds from starting the child (interpreter and imports included) until
  its first training step has finished;
- ``RSS at first step``: the child's peak resident memory then (VmHWM);
- ``of which anonymous``: the largest anonymous resident memory (``RssAnon``, sampled every 50 ms from
  ``/proc``), i.e. the peak without the file-backed pages of the memory-mapped cache, which are clean
  and which the kernel drops under memory pressure;
- ``peak RSS of the run``: after its first step the child reads every training row once, a
  minibatch at a time through the data set's batch transform, as an epoch of training does (so
  every page of the memory-mapped cache has been touched; the images domain hands the pages back
  every 64 minibatches); then it finishes a 2-step run (a
  checkpoint, the final evaluation against the hold-out, samples, the summary). This is its
  ``ru_maxrss`` from ``os.wait4``, which also covers the decode workers it waited for.

Targets (issue 17): peak RSS <= 1.5 GB; the second start <= 10 s before the first step.

    python benchmarks/images_scale.py /data/scale50k                     # 50,000 images (614 MB of pixels)
    nice -n 19 python benchmarks/images_scale.py /tmp/scale2k --n 2000   # a quick check
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SIZE = 64
GB = 1024 ** 3


def write_image(folder: Path, index: int) -> None:
    """Image ``index`` in class folder ``index % 10``: bicubic-enlarged 6x6 random colours, plus
    noise of +-12 (about 10 KB as PNG)."""
    from PIL import Image

    rng = np.random.default_rng([20240617, index])
    blobs = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((SIZE, SIZE), Image.BICUBIC)
    pixels = np.asarray(blobs).astype(np.int16) + rng.integers(-12, 13, (SIZE, SIZE, 3), dtype=np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"class{index % 10}" / f"img{index:06d}.png")


def write_chunk(folder: Path, indices: range) -> None:
    for index in indices:
        write_image(folder, index)


def ensure_folder(folder: Path, n: int) -> None:
    """``n`` PNGs in ``folder``, written (in parallel) unless they are there already."""
    have = len(list(folder.glob("class*/img*.png"))) if folder.is_dir() else 0
    if have == n:
        return
    if have:
        sys.exit(f"{folder} holds {have} images, not {n}; give an empty or new folder, or --n {have}")
    for label in range(10):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    chunks = [range(i, min(i + 1000, n)) for i in range(0, n, 1000)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write_chunk, [folder] * len(chunks), chunks))
    print(f"wrote {n} PNGs into {folder} in {time.perf_counter() - t0:.0f} s")


def vm_hwm() -> int:
    """This process's peak resident memory so far, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def child(folder: str, out: str) -> None:
    """A 2-step run on ``folder`` that reports its first step and reads every row after it."""
    import torch

    import ganforge
    from ganforge.engine.loop import Trainer

    iteration = Trainer.iteration

    def first_step(self: Trainer) -> None:
        iteration(self)
        if self.step == 1:
            print(f"first-step {time.monotonic():.3f} {vm_hwm()}", flush=True)
            with torch.no_grad():  # an epoch's reads: every row once, a minibatch at a time, as training does
                for start in range(0, len(self.data), self.t.batch):
                    rows = self.data[start:start + self.t.batch].clone()
                    self.batch_transform(rows) if self.batch_transform is not None else rows

    Trainer.iteration = first_step
    ganforge.train(folder, out=out, settings={"train.steps": 2}, progress=False)


def start(folder: Path, cache: Path, work: Path, name: str) -> dict[str, float]:
    """One start of training in a child process: seconds to the first step and peak memory."""
    env = {**os.environ, "GANFORGE_CACHE": str(cache)}
    log = work / f"{name}.stderr"
    t0 = time.monotonic()
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, __file__, str(folder), "--child", str(work / name)], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        marks = {}
        peaks = {"RssAnon": 0, "RssFile": 0, "total": 0}
        sampler = threading.Thread(target=sample_rss, args=(proc, peaks), daemon=True)
        sampler.start()
        for line in proc.stdout:  # the run's own lines pass by; the child's marks are read
            if line.startswith("first-step "):
                kind, when, hwm = line.split()
                marks[kind] = (float(when) - t0, int(hwm))
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or "first-step" not in marks:
        sys.exit(f"the {name} start failed (exit {proc.returncode}):\n{log.read_text()[-3000:]}")
    sampler.join()
    return {"to_first_step": marks["first-step"][0], "rss_first_step": marks["first-step"][1] / GB,
            "rss_run": usage.ru_maxrss * 1024 / GB, "anon_peak": peaks["RssAnon"] / GB,
            "file_at_peak": peaks["file_at_peak"] / GB if "file_at_peak" in peaks else 0.0}


def sample_rss(proc: subprocess.Popen, peaks: dict) -> None:
    """Every 50 ms until the child ends: its resident memory split into anonymous pages (what the
    process allocated) and file-backed ones (mostly the memory-mapped decode cache, clean pages the
    kernel can drop and re-read at any time), keeping the largest anonymous figure seen."""
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status.read_text().splitlines()
                      if line.startswith(("RssAnon:", "RssFile:", "RssShmem:"))}
        except (OSError, ValueError, IndexError):
            break
        if fields.get("RssAnon", 0) > peaks["RssAnon"]:
            peaks["RssAnon"], peaks["file_at_peak"] = fields["RssAnon"], fields.get("RssFile", 0)
        time.sleep(0.05)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{model}, {len(os.sched_getaffinity(0))} CPUs usable, load average {os.getloadavg()[0]:.1f} at the start"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the PNGs are (written there the first time)")
    parser.add_argument("--n", type=int, default=50_000, help="number of 64x64 colour PNGs (default 50,000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(str(args.folder), args.child)
    ensure_folder(args.folder, args.n)
    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="images_scale-"))
    try:
        results = {name: start(args.folder, work / "cache", work, name) for name in ("miss", "hit")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    pixels = args.n * SIZE * SIZE * 3 / 1e6
    print(f"\n{args.n:,} {SIZE}x{SIZE} colour PNGs ({pixels:,.0f} MB of pixels), the images recipe (DCGAN, batch 64)\n")
    print("| start | to first step | RSS at first step | peak RSS of the run | of which anonymous (peak) |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("miss", "first (cache miss: decode)"), ("hit", "second (cache hit: map)")):
        r = results[name]
        print(f"| {label} | {r['to_first_step']:.1f} s | {r['rss_first_step']:.2f} GB | {r['rss_run']:.2f} GB | "
              f"{r['anon_peak']:.2f} GB (+{r['file_at_peak']:.2f} GB file-backed then) |")
    worst = max(r["rss_run"] for r in results.values())
    print(f"\ntargets: peak RSS <= 1.5 GB ({'met' if worst <= 1.5 else 'missed'}: {worst:.2f} GB); second start "
          f"<= 10 s ({'met' if results['hit']['to_first_step'] <= 10 else 'missed'}: "
          f"{results['hit']['to_first_step']:.1f} s)")


if __name__ == "__main__":
    main()
