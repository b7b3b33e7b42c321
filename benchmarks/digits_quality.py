"""Are the default `ganforge train digits` samples digits? An independent classifier's verdict.

A multilayer perceptron (scikit-learn's MLPClassifier: 256 hidden units, softmax output) is trained
on the 1,797 real 8x8 digits bundled with scikit-learn; each run's samples (``samples.npy``, uint8
[N, 8, 8, 1]) are classified, and the table reports the share it reads with confidence p >= 0.9,
the class shares of all samples (ten near-equal shares = no mode dropped), and the training time.
The same classifier on held-out real digits gives the floor (5 stratified shuffled folds, out-of-fold
probabilities): measured, 98.1% accuracy and 94% of real digits read with p >= 0.9. (An RBF SVC with
Platt-scaled probabilities was used before: 98.8% accurate but confident on only 86% of real digits,
too timid a judge for a 90% target.)

    python benchmarks/digits_quality.py --variants default dcgan dcgan-fp32    # 3 seeds each
    python benchmarks/digits_quality.py --seeds 1 --variants default --set train.steps=3000

Variants are whole `ganforge train digits` processes with extra settings: ``default`` is the digits
set's own MLP recipe, ``dcgan`` the images recipe's DCGAN (``train.amp=auto``, bf16 autocast on a
CPU with bf16 in hardware) and ``dcgan-fp32`` the same in float32: the quality check behind
``train.amp=auto`` choosing bf16 for convolutional nets on such CPUs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VARIANTS = {
    "default": [],  # the digits set's own recipe: an MLP pair (see ganforge.domains.images.sources.DIGITS_RECIPE)
    "dcgan": ["model.net=dcgan"],  # the images recipe's DCGAN (the default before): train.amp=auto
    "dcgan-fp32": ["model.net=dcgan", "train.amp=off"],  # the same in float32: auto's bf16 must not lose quality
    "bf16": ["train.amp=bf16"],
}
CONFIDENT = 0.9


def judge():
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-3, max_iter=1000, random_state=0)


def classifier():
    """The judge trained on every real digit, pixels in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return judge().fit(digits.data / 16.0, digits.target), digits


def real_floor() -> dict[str, float]:
    """The judge on real digits it did not train on: its accuracy and confident share."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    digits = load_digits()
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    proba = cross_val_predict(judge(), digits.data / 16.0, digits.target, cv=folds, method="predict_proba")
    return {"confident": float((proba.max(axis=1) >= CONFIDENT).mean()),
            "accuracy": float((proba.argmax(axis=1) == digits.target).mean())}


def score(samples: np.ndarray, model) -> dict[str, float]:
    """``samples`` uint8 [N, 8, 8, 1]: the confident share and the class shares."""
    x = samples.reshape(len(samples), -1).astype(np.float64) / 255.0
    proba = model.predict_proba(x)
    shares = np.bincount(proba.argmax(axis=1), minlength=10) / len(x)
    return {"confident": float((proba.max(axis=1) >= CONFIDENT).mean()),
            "min_share": float(shares.min()), "max_share": float(shares.max())}


def train(workdir: Path, variant: str, seed: int, extra: list[str]) -> tuple[np.ndarray, dict]:
    out = workdir / f"{variant}-{seed}"
    sets = [a for kv in (*VARIANTS[variant], *extra) for a in ("--set", kv)]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ganforge", "train", "digits", "--seed", str(seed), "--out", str(out),
                           "--quiet", "--json", *sets], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    summary = json.loads(done.stdout)
    return np.load(out / "samples.npy"), {"wall": wall, "precision": summary.get("precision", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["default", "dcgan", "dcgan-fp32"], choices=list(VARIANTS))
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    model, _ = classifier()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            scores = []
            for seed in range(args.seeds):
                samples, info = train(Path(tmp), variant, seed, args.extra)
                scores.append({**score(samples, model), **info})
                print(f"{variant} seed {seed}: {scores[-1]}", file=sys.stderr)
            rows.append((variant, scores))
    floor = real_floor()
    print(f"real digits (5 folds, same classifier): accuracy {floor['accuracy']:.3f}, confident {floor['confident']:.3f}")
    print("| variant | settings | confident (p >= 0.9) | smallest / largest class share | wall s (whole process) |")
    print("|---|---|---|---|---|")
    for variant, scores in rows:
        def cell(key: str, fmt: str = ".3f") -> str:
            values = [s[key] for s in scores]
            return f"{statistics.mean(values):{fmt}}" + (f" ± {statistics.stdev(values):{fmt}}" if len(values) > 1 else "")
        settings = " ".join([*VARIANTS[variant], *args.extra]) or "defaults"
        print(f"| {variant} | {settings} | {cell('confident')} | {cell('min_share')} / {cell('max_share')} | "
              f"{cell('wall', '.1f')} |")


if __name__ == "__main__":
    main()
