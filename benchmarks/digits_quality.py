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
``train.amp=auto`` choosing bf16 for convolutional nets on such CPUs. ``class`` is the MLP recipe
class-conditional (``data.task=class``); its samples are drawn for the classes in turn, and the table
adds the share the judge reads as the class asked for. The floor of the class shares is what 2,500
real digits drawn at random show (9.0% / 11.1%): a perfect generator's shares are that uneven too.

    python benchmarks/digits_quality.py --seeds 2 --first-seed 2 --variants default --set train.r1_weight=0.1
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
    "class": ["data.task=class"],  # the same recipe, class-conditional: G(z, y) and a projection D(x, y)
}
CONFIDENT = 0.9
SAMPLES = 2500  # what `ganforge train` draws from the final generator into samples.npy


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
    # the class shares a perfect generator would show on SAMPLES draws: real digits drawn with replacement
    # (the data has 9.7-10.2% of each class), read by the judge; averaged over 200 draws
    rng = np.random.default_rng(0)
    read = proba.argmax(axis=1)
    draws = [np.bincount(read[rng.integers(0, len(read), SAMPLES)], minlength=10) / SAMPLES for _ in range(200)]
    return {"confident": float((proba.max(axis=1) >= CONFIDENT).mean()),
            "accuracy": float((proba.argmax(axis=1) == digits.target).mean()),
            "min_share": float(np.mean([d.min() for d in draws])),
            "max_share": float(np.mean([d.max() for d in draws]))}


def score(samples: np.ndarray, model, conditional: bool = False) -> dict[str, float]:
    """``samples`` uint8 [N, 8, 8, 1]: the confident share and the class shares; for a class-conditional
    run (samples drawn for the classes in turn, 0, 1, ..., 9, 0, ...) also the share the judge reads as
    the class asked for, and confidently so."""
    x = samples.reshape(len(samples), -1).astype(np.float64) / 255.0
    proba = model.predict_proba(x)
    read = proba.argmax(axis=1)
    shares = np.bincount(read, minlength=10) / len(x)
    out = {"confident": float((proba.max(axis=1) >= CONFIDENT).mean()),
           "min_share": float(shares.min()), "max_share": float(shares.max())}
    if conditional:
        asked = np.arange(len(x)) % 10
        out["as_asked"] = float((read == asked).mean())
        out["confident_as_asked"] = float(((read == asked) & (proba.max(axis=1) >= CONFIDENT)).mean())
    return out


def train(workdir: Path, variant: str, seed: int, extra: list[str]) -> tuple[np.ndarray, dict]:
    out = workdir / f"{variant}-{seed}"
    sets = [a for kv in (*VARIANTS[variant], *extra) for a in ("--set", kv)]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ganforge", "train", "digits", "--seed", str(seed), "--out", str(out),
                           "--quiet", "--json", *sets], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    summary = json.loads(done.stdout)
    warned = [w["step"] for w in summary.get("warnings", []) if w["warning"].startswith("D is ahead")]
    task = json.loads((out / "config.json").read_text())["data"]["task"]
    return np.load(out / "samples.npy"), {"wall": wall, "d_ahead_warnings": len(warned), "task": task,
                                          "first_warning_step": warned[0] if warned else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--variants", nargs="+", default=["default", "dcgan", "dcgan-fp32"], choices=list(VARIANTS))
    parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    model, _ = classifier()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            scores = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                samples, info = train(Path(tmp), variant, seed, args.extra)
                scores.append({**score(samples, model, info["task"] == "class"), **info})
                print(f"{variant} seed {seed}: {scores[-1]}", file=sys.stderr)
            rows.append((variant, scores))
    floor = real_floor()
    print(f"real digits (5 folds, same classifier): accuracy {floor['accuracy']:.3f}, "
          f"confident {floor['confident']:.3f}; {SAMPLES:,} real digits drawn: smallest / largest class share "
          f"{floor['min_share']:.3f} / {floor['max_share']:.3f}")
    print("| variant | settings | confident (p >= 0.9) | smallest / largest class share | read as asked (confidently) "
          "| D-ahead warnings | wall s (whole process) |")
    print("|---|---|---|---|---|---|---|")
    for variant, scores in rows:
        def cell(key: str, fmt: str = ".3f") -> str:
            values = [s[key] for s in scores]
            return f"{statistics.mean(values):{fmt}}" + (f" ± {statistics.stdev(values):{fmt}}" if len(values) > 1 else "")
        settings = " ".join([*VARIANTS[variant], *args.extra]) or "defaults"
        asked = f"{cell('as_asked')} ({cell('confident_as_asked')})" if "as_asked" in scores[0] else "-"
        print(f"| {variant} | {settings} | {cell('confident')} | {cell('min_share')} / {cell('max_share')} | {asked} | "
              f"{sum(s['d_ahead_warnings'] for s in scores)} in {len(scores)} runs | {cell('wall', '.1f')} |")


if __name__ == "__main__":
    main()
