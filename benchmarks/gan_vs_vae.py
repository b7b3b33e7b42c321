"""GAN against VAE on the same data, networks, budget and metrics (issue 5, item 4).

For each data set and seed, two whole `ganforge train` processes: the GAN defaults, and the VAE
baseline (`--set model.family=vae`: the decoder is the GAN's G, the encoder D's architecture; see
`ganforge.families.vae`) with the same number of steps and batch. Points (`ring8`, `grid25`) are scored by
the training run's own final evaluation (VEEGAN/PacGAN mode protocol, energy distance, precision
and recall on 2,500 samples); images (`mnist5k` by default, 28x28) by `ganforge eval RUN
--features digits-cnn` (FID, KID, precision/recall on the MNIST classifier's features).

    python benchmarks/gan_vs_vae.py                                   # ring8, grid25, mnist5k; 3 seeds
    python benchmarks/gan_vs_vae.py --seeds 1 --point-steps 1500 --image-steps 500   # a reduced run

Prints a Markdown table (paste it into docs/BENCHMARKS.md) and writes every run's numbers to
bench-out/gan_vs_vae.json. Seconds are wall time of the training process (start-up, checkpoints,
final evaluation and plots included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toy2d import spread  # noqa: E402  (mean ± std over seeds, as toy2d prints it)

FAMILIES = {"GAN": [], "VAE": ["model.family=vae"]}
POINT_SETS = ("ring8", "grid25")
POINT_KEYS = ("modes", "hq_fraction", "reverse_kl", "energy_distance", "precision", "recall")
IMAGE_KEYS = ("fid", "fid_real_floor", "kid", "feature_precision", "feature_recall")


def ganforge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganforge", *args], capture_output=True, text=True)


def one_run(data: str, family: str, seed: int, steps: int | None, eval_n: int, workdir: Path) -> dict:
    out = workdir / f"{data}-{family}-{seed}"
    cmd = ["train", data, "--out", str(out), "--seed", str(seed), "--quiet", "--json"]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    for kv in FAMILIES[family]:
        cmd += ["--set", kv]
    t0 = time.perf_counter()
    proc = ganforge(*cmd)
    row = {"data": data, "family": family, "seed": seed, "seconds": time.perf_counter() - t0}
    if proc.returncode != 0:
        return {**row, "failed": proc.stderr.strip().splitlines()[-1:]}
    summary = json.loads(proc.stdout)
    row["steps"] = summary["steps"]
    if data in POINT_SETS:
        return {**row, **{k: summary["eval"].get(k) for k in (*POINT_KEYS, "modes_total")}}
    proc = ganforge("eval", str(out), "--json", "--features", "digits-cnn", "--n", str(eval_n))
    if proc.returncode != 0:
        return {**row, "failed": proc.stderr.strip().splitlines()[-1:]}
    ev = json.loads(proc.stdout)
    return {**row, **{k: ev.get(k) for k in IMAGE_KEYS}}


def cell(runs: list[dict], key: str, fmt: str, scale: float = 1.0) -> str:
    return spread([scale * float(r[key]) for r in runs if r.get(key) is not None], fmt)


def tables(results: list[dict]) -> str:
    groups: dict = {}
    for r in results:
        groups.setdefault((r["data"], r["family"]), []).append(r)
    points = ["| data | model | steps | modes | high quality % | reverse KL | energy distance | precision | recall "
              "| seconds |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    images = ["| data | model | steps | FID (digits-cnn) | KID | precision | recall | seconds |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for (data, family), runs in groups.items():
        ok = [r for r in runs if "failed" not in r]
        failed = f" ({len(runs) - len(ok)} failed)" if len(ok) < len(runs) else ""
        steps = ok[0]["steps"] if ok else "-"
        if data in POINT_SETS:
            total = ok[0]["modes_total"] if ok else "?"
            points.append(f"| {data} | {family}{failed} | {steps} | {cell(ok, 'modes', '.1f')} / {total} | "
                          f"{cell(ok, 'hq_fraction', '.1f', 100)} | {cell(ok, 'reverse_kl', '.3f')} | "
                          f"{cell(ok, 'energy_distance', '.4f')} | {cell(ok, 'precision', '.3f')} | "
                          f"{cell(ok, 'recall', '.3f')} | {cell(runs, 'seconds', '.1f')} |")
        else:
            images.append(f"| {data} | {family}{failed} | {steps} | {cell(ok, 'fid', '.2f')} "
                          f"(real floor {cell(ok, 'fid_real_floor', '.2f')}) | {cell(ok, 'kid', '.4f')} | "
                          f"{cell(ok, 'feature_precision', '.3f')} | {cell(ok, 'feature_recall', '.3f')} | "
                          f"{cell(runs, 'seconds', '.1f')} |")
    parts = [t for t in (points, images) if len(t) > 2]
    return "\n\n".join("\n".join(t) for t in parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=[*POINT_SETS, "mnist5k"],
                        help="ring8, grid25 (points) and image sets of 28x28 gray digits (mnist5k, mnist)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--point-steps", type=int, default=None, help="steps for points [default: the recipe's 20000]")
    parser.add_argument("--image-steps", type=int, default=None, help="steps for images [default: the recipe's 3000]")
    parser.add_argument("--eval-n", type=int, default=2500, help="generated images scored per image run")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--out", type=Path, default=Path("bench-out/gan_vs_vae.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.sets:
            steps = args.point_steps if data in POINT_SETS else args.image_steps
            for seed in range(args.seeds):
                for family in args.families:
                    r = one_run(data, family, seed, steps, args.eval_n, Path(tmp))
                    print(json.dumps(r), file=sys.stderr, flush=True)
                    results.append(r)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(tables(results))


if __name__ == "__main__":
    main()
