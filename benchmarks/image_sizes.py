"""Seconds a step and peak memory of training on colour image folders of 32x32, 64x64 and 128x128.

Writes ``--n`` colour PNGs of each size (smooth colour blobs plus noise, ten class folders) under
FOLDER once, then trains each configuration below for ``--steps`` steps in a fresh child process
(``ganforge.train(folder, settings=...)``, the images recipe unless the row says otherwise: batch
64, ``train.amp=auto``, 2 threads). ``s/step`` is the wall time of the steps after the first
``--warmup`` ones (oneDNN's first calls and the allocator's growth are left out); ``peak RSS`` is
the child's ``ru_maxrss`` (the whole run: loading, training, the final scoring and the samples).

    python benchmarks/image_sizes.py /tmp/sizes                  # all rows, 512 images a size
    python benchmarks/image_sizes.py /tmp/sizes --rows 32-dcgan 32-cpu

Prints a Markdown table (paste it into docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GB = 1024 ** 3
ROWS = {
    "32-dcgan": (32, {}),
    "32-dcgan-fp32": (32, {"train.amp": "off"}),
    "32-cpu": (32, {"model.g_width": 32, "model.d_width": 32}),
    "64-dcgan": (64, {}),
    "64-cpu": (64, {"model.g_width": 32, "model.d_width": 32}),
    "64-progressive": (64, {"model.net": "progressive"}),
    "128-dcgan": (128, {}),
    "128-cpu": (128, {"model.g_width": 16, "model.d_width": 16}),
    "128-progressive": (128, {"model.net": "progressive"}),
}


def write_folder(folder: Path, size: int, n: int) -> None:
    from PIL import Image

    if folder.is_dir() and len(list(folder.glob("class*/*.png"))) == n:
        return
    for index in range(n):
        rng = np.random.default_rng([size, index])
        blobs = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        pixels = np.asarray(blobs).astype(np.int16) + rng.integers(-12, 13, (size, size, 3), dtype=np.int16)
        target = folder / f"class{index % 10}"
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target / f"img{index:05d}.png")


def child(folder: str, out: str, settings: str, warmup: int) -> None:
    import ganforge
    from ganforge.engine.loop import Trainer

    iteration, marks = Trainer.iteration, {}

    def timed(self: Trainer) -> None:
        iteration(self)
        if self.step == warmup:
            marks["start"] = time.perf_counter()
        marks["end"], marks["steps"] = time.perf_counter(), self.step - warmup

    Trainer.iteration = timed
    summary = ganforge.train(folder, out=out, settings=json.loads(settings), progress=False)
    print("result " + json.dumps({"s_per_step": (marks["end"] - marks["start"]) / marks["steps"],
                                  "precision": summary.get("precision", {})}), flush=True)


def run_row(folder: Path, work: Path, name: str, settings: dict, steps: int, warmup: int) -> dict:
    """One configuration in a child process: its seconds a step and its peak resident memory."""
    settings = {"train.steps": steps, "train.log_every": steps, "train.eval_every": 0, "train.ckpt_every": steps,
                **settings}
    log = work / f"{name}.stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, __file__, str(folder), "--child", str(work / name), "--settings",
                                 json.dumps(settings), "--warmup", str(warmup)], stdout=subprocess.PIPE, stderr=err,
                                text=True)
        lines = list(proc.stdout)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak memory (ru_maxrss, KB)
    result = next((json.loads(line[7:]) for line in lines if line.startswith("result ")), None)
    if os.waitstatus_to_exitcode(status) != 0 or result is None:
        sys.exit(f"{name} failed:\n{log.read_text()[-3000:]}")
    return {**result, "rss": usage.ru_maxrss * 1024 / GB}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the PNG folders are (written there the first time)")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--n", type=int, default=512, help="images a size")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(str(args.folder), args.child, args.settings, args.warmup)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.rows:
            size, settings = ROWS[name]
            folder = args.folder / f"{size}x{size}"
            write_folder(folder, size, args.n)
            result = run_row(folder, Path(tmp), name, settings, args.steps, args.warmup)
            rows.append((name, size, settings, result))
            print(f"{name}: {result}", file=sys.stderr)
    print("| row | size | settings | precision | s/step (batch 64) | peak RSS |")
    print("|---|---|---|---|---:|---:|")
    for name, size, settings, result in rows:
        text = " ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"
        print(f"| {name} | {size}x{size} | {text} | {result['precision'].get('amp', '?')} | "
              f"{result['s_per_step']:.3f} | {result['rss']:.2f} GB |")


if __name__ == "__main__":
    main()
