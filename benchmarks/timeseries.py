"""TimeGAN's protocol on ganforge's series recipe: sines and a real set, several seeds.

Each run trains through the library (``ganforge.train``, the same path as ``ganforge train``; the
seconds are the training loop's, without the final evaluation), then draws as many synthetic
windows as there are real ones and scores them with TimeGAN's discriminative and predictive
scores (mean ± std over ``--repeats`` repeats; TimeGAN's code: 10 repeats, 2,000 and 5,000
iterations) and the autocorrelation distance. The first row of each set is the floor: the same
scores for the training windows against an independent real draw (sines) or against themselves
(real sets: TimeGAN's code scores synthetic data against the training windows).

    python benchmarks/timeseries.py                                    # sines and msft, 3 seeds, the domain recipe
    python benchmarks/timeseries.py --sets sines --seeds 0 --steps 400 --repeats 2 \\
        --disc-iterations 500 --pred-iterations 1000                   # a reduced run (minutes)
    python benchmarks/timeseries.py --set model.net=gru --set train.steps=3000   # any --set override

Target (issue 4) on sines: discriminative <= 0.010 and predictive <= 0.093 (TimeGAN's published
.011 ± .008 and .093 ± .019) within 15 minutes of training on 2 CPU cores.

Prints a Markdown table (paste it into docs/BENCHMARKS.md) and writes the numbers to
bench-out/timeseries.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

TIMEGAN_PUBLISHED = {"sines": (0.011, 0.008, 0.093, 0.019), "stocks": (0.102, 0.021, 0.038, 0.001)}


def score(real, fake, args) -> dict:
    from ganforge.metrics.timeseries import acf_distance, timegan_scores

    t0 = time.perf_counter()
    out = timegan_scores(real, fake, repeats=args.repeats, disc_iterations=args.disc_iterations,
                         pred_iterations=args.pred_iterations, seed=0)
    out["acf_distance"] = acf_distance(real, fake)
    out["score_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def floor(name: str, args) -> dict:
    """Real against real: what a perfect generator would score with the same protocol."""
    from ganforge.config import DataConfig
    from ganforge.domains import get_domain
    from ganforge.domains.timeseries import to_score_space

    domain = get_domain("series")
    ds = domain.load(DataConfig(source=name))
    real = to_score_space(ds.holdout, ds.state)
    train = to_score_space(domain.decode(ds.train, ds.state), ds.state)
    against = "an independent draw" if name == "sines" else "itself"  # the windows scores compare against
    return {**score(real, train, args), "against": against}


def run_one(name: str, seed: int, workdir: Path, args) -> dict:
    import ganforge
    from ganforge.domains.timeseries import to_score_space

    settings = {"data.metric_repeats": 0, "train.eval_every": 0}
    if args.steps:
        settings["train.steps"] = args.steps
    for text in args.set:
        key, value = text.split("=", 1)
        settings[key] = value
    out = workdir / f"{name}-{seed}"
    t0 = time.perf_counter()
    summary = ganforge.train(name, out=out, settings={**settings, "seed": seed})
    wall = time.perf_counter() - t0
    run = ganforge.load(out)
    ds = run.load_data()
    fake = run.sample(len(ds.holdout), seed=seed + 1000)
    result = score(to_score_space(ds.holdout, ds.state), to_score_space(fake, ds.state), args)
    records = [r for r in run.log.records() if "loss_d" in r]
    train_seconds = records[-1]["time"] if records else summary["seconds"]
    return {"set": name, "seed": seed, "steps": summary["steps"], "net": run.config.model.net,
            "train_seconds": round(train_seconds, 1), "run_seconds": round(wall, 1), **result}


def fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def table(rows: list[dict], args) -> str:
    lines = [f"Scores: {args.repeats} repeats, {args.disc_iterations} / {args.pred_iterations} iterations "
             f"(TimeGAN: 10, 2000 / 5000); torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}.", "",
             "| set | run | net | steps | train s | discriminative | predictive | ACF distance |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        run = f"real vs {r['against']} (floor)" if r.get("seed") is None else f"seed {r['seed']}"
        lines.append(f"| {r['set']} | {run} | {r.get('net', '')} | {r.get('steps', '')} | {r.get('train_seconds', '')} | "
                     f"{fmt(r['discriminative'], r['discriminative_std'])} | {fmt(r['predictive'], r['predictive_std'])} | "
                     f"{r['acf_distance']:.4f} |")
    for name, (d, ds_, p, ps) in TIMEGAN_PUBLISHED.items():
        lines.append(f"| {name} | TimeGAN, published | | | | {fmt(d, ds_)} | {fmt(p, ps)} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=["sines", "msft"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=0, help="Generator steps (0 = the domain recipe's).")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Any config override.")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--disc-iterations", type=int, default=2000)
    parser.add_argument("--pred-iterations", type=int, default=5000)
    parser.add_argument("--no-floor", action="store_true", help="Skip the real-vs-real rows.")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            if not args.no_floor:
                rows.append({"set": name, "seed": None, **floor(name, args)})
                print(json.dumps(rows[-1]), flush=True)
            for seed in args.seeds:
                rows.append(run_one(name, seed, Path(tmp), args))
                print(json.dumps(rows[-1]), flush=True)
    Path("bench-out").mkdir(exist_ok=True)
    Path("bench-out/timeseries.json").write_text(json.dumps(rows, indent=2))
    print(table(rows, args))


if __name__ == "__main__":
    main()
