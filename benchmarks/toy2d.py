"""Mode collapse on 2-D mixtures: ganforge's defaults against a textbook GAN, over many seeds.

Each run is a whole `ganforge train DATA --seed S` process (so the seconds include start-up,
checkpoints, evaluation and plots) scored with the VEEGAN/PacGAN protocol on 2,500 samples.
The textbook baseline is the plain GAN of the tutorials on the same networks and step budget:
BCE losses (non-saturating G), a 4-number latent, Adam(2e-4, betas 0.5/0.999), no tricks,
no EMA, no learning-rate schedule.

    python benchmarks/toy2d.py                       # ring8 and grid25, 10 seeds, both recipes
    python benchmarks/toy2d.py --sets ring8 --seeds 3 --recipes default
    python benchmarks/toy2d.py --textbook-seeds 3    # fewer seeds for the baseline only

Prints a Markdown table (paste it into docs/BENCHMARKS.md) and writes every run's numbers to
bench-out/toy2d.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = {
    "default": [],
    "textbook": ["train.loss=ns", "model.z_dim=4", "train.ema=0", "train.lr_decay=0", "train.lr_g=2e-4",
                 "train.lr_d=2e-4", "train.beta1=0.5", "train.beta2=0.999", "train.r1_weight=0", "train.pack=1",
                 "model.minibatch_stddev=false", "model.spectral_norm=false", "train.label_smoothing=0",
                 "train.instance_noise=0"],
}
TARGETS = {"ring8": (8, 0.97, 0.02), "grid25": (25, 0.95, 0.02)}
USER_MIXTURE = "user12"  # 12 random centres in [-3, 3]^2, std 0.05, written to a .npy: defaults not tuned to it


def user_mixture(workdir: Path) -> tuple[Path, "object", float]:
    """A mixture the defaults never saw, given to ganforge as a user's file (no mode list)."""
    import numpy as np

    rng = np.random.default_rng(12)
    centres = rng.uniform(-3, 3, size=(12, 2))
    while min(np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1:]) < 0.8:
        centres = rng.uniform(-3, 3, size=(12, 2))  # keep modes apart so "nearest mode" is meaningful
    std = 0.05
    points = centres[rng.integers(12, size=50_000)] + std * rng.standard_normal((50_000, 2))
    path = workdir / "user12.npy"
    np.save(path, points)
    return path, centres, std


def score_user_run(out: Path, centres, std: float) -> dict:
    import numpy as np

    from ganforge.metrics import mixture_metrics
    from ganforge.rundir.run import Run

    m = mixture_metrics(Run(out).sample(2500, seed=0), np.asarray(centres), std)
    return {"modes": m["modes"], "modes_total": m["modes_total"], "hq": m["hq_fraction"], "kl": m["reverse_kl"]}


def one_run(data: str, seed: int, settings: list[str], workdir: Path) -> dict:
    out = workdir / f"{data}-{seed}-{abs(hash(tuple(settings))) % 10**6}"
    source, user = data, None
    if data == USER_MIXTURE:
        path, centres, std = user_mixture(workdir)
        source, user = str(path), (centres, std)
    cmd = [sys.executable, "-m", "ganforge", "train", source, "--out", str(out), "--seed", str(seed), "--quiet", "--json"]
    for kv in settings:
        cmd += ["--set", kv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"data": data, "seed": seed, "failed": proc.stderr.strip().splitlines()[-1:], "seconds": seconds}
    if user is not None:
        return {"data": data, "seed": seed, **score_user_run(out, *user), "seconds": seconds}
    ev = json.loads(proc.stdout)["eval"]
    return {"data": data, "seed": seed, "modes": ev["modes"], "modes_total": ev["modes_total"],
            "hq": ev["hq_fraction"], "kl": ev["reverse_kl"], "seconds": seconds}


def spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], fmt)
    if not all(math.isfinite(v) for v in values):  # a collapsed run's KL is inf (no high-quality sample)
        return "inf"
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def table(results: list[dict]) -> str:
    rows = ["| data | recipe | modes (mean) | seeds with all modes | high quality % | reverse KL | seconds per run | "
            "meets target |", "|---|---|---|---|---|---|---|---|"]
    for (data, recipe), runs in group(results).items():
        ok = [r for r in runs if "failed" not in r]
        total = ok[0]["modes_total"] if ok else "?"
        full = sum(r["modes"] == r["modes_total"] for r in ok)
        kls = [r["kl"] if r["kl"] != "inf" else float("inf") for r in ok]
        modes_t, hq_t, kl_t = TARGETS.get(data, (None, None, None))
        meets = "n/a"
        if modes_t:
            # as the published tables: means over seeds, plus all modes in every seed and every run <= 60 s
            meets = "yes" if (ok and len(ok) == len(runs) and full == len(runs)
                              and statistics.mean(r["hq"] for r in ok) >= hq_t and statistics.mean(kls) <= kl_t
                              and max(r["seconds"] for r in runs) <= 60) else "no"
        rows.append(
            f"| {data} | {recipe} | {statistics.mean(r['modes'] for r in ok) if ok else 0:.1f} / {total} | "
            f"{full}/{len(runs)} | {spread([100 * r['hq'] for r in ok], '.1f')} (min {100 * min(r['hq'] for r in ok):.1f}) | "
            f"{spread(kls, '.3f')} (max {max(kls):.3f}) | "
            f"{spread([r['seconds'] for r in runs], '.1f')} (max {max(r['seconds'] for r in runs):.1f}) | "
            f"{meets} |")
    return "\n".join(rows)


def group(results: list[dict]) -> dict:
    out: dict = {}
    for r in results:
        out.setdefault((r["data"], r["recipe"]), []).append(r)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["ring8", "grid25", USER_MIXTURE],
                        help=f"built-in sets, and {USER_MIXTURE}: a random mixture given as a user file")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--textbook-seeds", type=int, default=None,
                        help="seeds for the textbook baseline (default: --seeds); it is a reference, not a target")
    parser.add_argument("--out", type=Path, default=Path("bench-out/toy2d.json"))
    parser.add_argument("--load", type=Path, default=None, help="print the table of an earlier --out file, run nothing")
    args = parser.parse_args()
    if args.load:
        print(table(json.loads(args.load.read_text())))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.sets:
            for recipe in args.recipes:
                seeds = args.seeds if recipe != "textbook" or args.textbook_seeds is None else args.textbook_seeds
                for seed in range(seeds):
                    r = one_run(data, seed, RECIPES[recipe], Path(tmp))
                    r["recipe"] = recipe
                    results.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(table(results))


if __name__ == "__main__":
    main()
