"""What the end-of-training scoring costs next to the training (issue 16, item 1).

Runs whole ``ganforge train DATA --quiet --json`` processes, one after the other, and reads the
summary's ``train_seconds`` (the loop, with its checkpoints and quick evaluations) and
``eval_seconds`` (the final scoring with the default ``data.eval_protocol=fast``). Targets: the
final scoring is at most 10% of the training time at a data set's default step count, and at most
30 s for a short run.

    python benchmarks/eval_budget.py                            # the runs below
    python benchmarks/eval_budget.py --runs "sines --steps 300"

Prints a Markdown table (paste it into docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = ["ring8", "digits", "wine", "sines --steps 300", "sines"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=RUNS, help="'DATA [train options]' per run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, run in enumerate(args.runs):
            out = Path(tmp) / f"run{i}"
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "ganforge", "train", *shlex.split(run), "--out", str(out),
                                   "--quiet", "--json"], capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            s = json.loads(done.stdout)
            rows.append((run, s["steps"], s["train_seconds"], s["eval_seconds"], wall,
                         (s.get("eval") or {}).get("protocol", "")))
            print(f"{run}: {rows[-1]}", file=sys.stderr)
    print("| run | steps | train s | final scoring s | scoring / training | whole process s | protocol |")
    print("|---|---|---|---|---|---|---|")
    for run, steps, train, evaluation, wall, protocol in rows:
        print(f"| `ganforge train {run}` | {steps} | {train:.1f} | {evaluation:.1f} | {evaluation / train:.1%} | "
              f"{wall:.1f} | {protocol or '-'} |")


if __name__ == "__main__":
    main()
