"""Stacked MNIST (1,000 modes) within a wall-clock budget: ganforge's image defaults and named variants.

Each variant is one `ganforge train stacked-mnist` process (128,000 training images, as PacGAN)
whose number of steps fills the budget: the seconds per step are measured first, in this process,
with the variant's own settings, and the steps are set to what fits in 92% of `--minutes` (the
rest is for the quick evaluations every tenth of the run, checkpoints and the final evaluation).
Each trained generator (its EMA) is then scored with the PacGAN protocol on 26,000 samples:
every channel is read by ccexam's MNIST CNN, and the modes hit (of 1,000) and the KL of the
mode histogram to uniform are reported, beside the same scores of 26,000 real stacks of MNIST
test digits (the floor of a perfect generator at this sample size).

    python benchmarks/stacked_mnist.py --minutes 60                  # every variant, 60 minutes each
    python benchmarks/stacked_mnist.py --minutes 60 --variants recipe --seeds 3
    python benchmarks/stacked_mnist.py --minutes 3 --variants default --set train.batch=32   # smoke
    python benchmarks/stacked_mnist.py --steps 20000 --variants recipe                     # fixed steps

On a shared machine, measure the seconds a step while it is quiet (``--measure-only``) and pass
them in later (``--per-step recipe=0.31``): the budget is then the steps a quiet machine fits in
``--minutes``, and the training itself may run beside other work (at fewer threads, say).

Prints a Markdown table for docs/BENCHMARKS.md and writes every run's numbers to
bench-out/stacked_mnist.json; the run directories (samples.png, metrics.jsonl) stay in --runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

EVAL_N = 26_000  # PacGAN scores 26,000 samples
TRAIN_N = 128_000  # PacGAN's training set
BUDGET_FRACTION = 0.92  # of the budget for the steps; the rest for evaluations, checkpoints, the final eval

VARIANTS = {
    # ganforge's images recipe as it is: DCGAN width 64, batch 64, Adam 2e-4 (0.5, 0.999), batch norm,
    # non-saturating loss, EMA generator, constant learning rate, and (since 2026-12-07) the G step
    # reusing the D step's fakes
    "default": [],
    # PacDCGAN2 (Lin et al. 2018): D judges pairs of images
    "pacgan2": ["train.pack=2"],
    # minibatch standard deviation before D's last layer (Karras et al. 2018)
    "mbstd": ["model.minibatch_stddev=true"],
    # the proposed 60-minute CPU recipe: packing against collapse (and D judges half as many
    # inputs, so a step is cheaper), the learning rate decayed to 0 so the EMA generator settles
    # onto balanced modes, and the G step reusing the D step's fakes (one G forward fewer; named here
    # so the recipe stays what was measured whatever the default): about 1.4x the steps of the
    # default of 2026-12-02, which drew fresh noise for the G step, in the same time
    "recipe": ["train.pack=2", "train.lr_decay=1", "train.reuse_fakes=true"],
    # the same with half G's width: about 2x the recipe's steps, at some cost in digit quality
    "recipe-g32": ["train.pack=2", "train.lr_decay=1", "train.reuse_fakes=true", "model.g_width=32"],
}
TARGET_MODES, TARGET_KL = 1000, 0.05




def seconds_per_step(settings: list[str], warmup: int = 3, iters: int = 20) -> float:
    """Wall seconds of one training step with ``settings``, measured on a small stacked-mnist set
    (a step costs the same whatever the size of the set)."""
    import torch

    from ganforge.config import RunConfig, set_value
    from ganforge.rundir.resolve import resolve, resolve_device
    from ganforge.engine.loop import Trainer, build_players
    from ganforge.engine.steps import NullCallbacks

    cfg = RunConfig()
    for kv in settings:
        set_value(cfg, *kv.split("=", 1))
    cfg.data.source, cfg.data.n = "stacked-mnist", 4096
    dataset = resolve(cfg)
    device = resolve_device(cfg.device)
    players = build_players(cfg, cfg.model.net, cfg.model.z_dim, dataset.sample_shape, device,
                            dataset.state.get("net_args"))
    trainer = Trainer(cfg, players, dataset.train, device, NullCallbacks(), batch_transform=dataset.batch_transform)
    trainer.t.steps = warmup
    trainer.run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.t.steps += iters
    trainer.run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def train_one(variant: str, settings: list[str], steps: int, seed: int, runs: Path) -> dict:
    out = runs / f"{variant}-seed{seed}-{steps}steps"
    cmd = [sys.executable, "-m", "ganforge", "train", "stacked-mnist", "--out", str(out), "--seed", str(seed),
           "--quiet", "--json"]
    # modes of 2,500 samples every tenth of the run (each costs seconds: 7,500 digits to classify)
    for kv in [*settings, f"train.steps={steps}", f"train.eval_every={max(steps // 10, 500)}"]:
        cmd += ["--set", kv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"failed": (proc.stderr.strip().splitlines() or ["?"])[-1], "process_seconds": wall}
    summary = json.loads(proc.stdout)
    batch = json.loads((out / "config.json").read_text())["train"]["batch"]
    curve = [(r["step"], r["eval"]["modes"], r["eval"]["reverse_kl"])
             for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval" in r]
    return {"run_dir": str(out), "batch": batch, "train_seconds": summary["seconds"], "process_seconds": wall,
            "samples_per_s": summary["samples_per_s"], "curve_2500_samples": curve}


def score(run_dir: str, real) -> dict:
    """Modes and KL of 26,000 samples of the run's EMA generator, with the real-image floor."""
    from ganforge.rundir.run import Run

    t0 = time.perf_counter()
    ev = Run(run_dir).evaluate(EVAL_N, seed=0, dataset=real)
    keys = ("modes", "modes_total", "reverse_kl", "reverse_kl_digits", "reverse_kl_dependence", "digit_share_min",
            "digit_share_max", "digit_confidence", "modes_real_floor", "reverse_kl_real_floor",
            "reverse_kl_dependence_real_floor",
            "mode_classifier")
    return {**{k: ev[k] for k in keys}, "eval_seconds": time.perf_counter() - t0}


def table(results: list[dict], minutes: float | None) -> str:
    rows = ["| variant | settings | steps x batch | train min | modes (of 1000) | reverse KL | of which: uneven digits / "
            "dependence | digit shares (min-max) | digit confidence | meets target |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        settings = " ".join(f"`{kv}`" for kv in r["settings"] if not kv.startswith("data.n=")) or "(none)"
        if "failed" in r:
            rows.append(f"| {r['variant']} | {settings} | {r['steps']} | - | failed: {r['failed']} | | | | | no |")
            continue
        in_time = minutes is None or r["train_seconds"] <= 60 * minutes
        meets = r["modes"] >= TARGET_MODES and r["reverse_kl"] <= TARGET_KL and in_time
        rows.append(f"| {r['variant']} (seed {r['seed']}) | {settings} | {r['steps']} x {r['batch']} | "
                    f"{r['train_seconds'] / 60:.1f} | {r['modes']} | {r['reverse_kl']:.3f} | "
                    f"{r['reverse_kl_digits']:.3f} / {r['reverse_kl_dependence']:.3f} | "
                    f"{r['digit_share_min']:.3f}-{r['digit_share_max']:.3f} | {r['digit_confidence']:.3f} | "
                    f"{'yes' if meets else 'no'} |")
    floors = {(r["modes_real_floor"], round(r["reverse_kl_real_floor"], 4), round(r["reverse_kl_dependence_real_floor"], 4))
              for r in results if "failed" not in r}
    for modes, kl, dependence in sorted(floors):
        rows.append(f"\nReal images (26,000 held-out stacks of MNIST test digits, same classifier): "
                    f"{modes} modes, reverse KL {kl:.3f} (dependence {dependence:.3f}).")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=60.0, help="wall-clock training budget per run")
    budget.add_argument("--steps", type=int, default=None, help="a fixed number of steps instead of a budget")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra settings for every variant (after the variant's own)")
    parser.add_argument("--runs", type=Path, default=Path("bench-out/stacked_mnist_runs"))
    parser.add_argument("--out", type=Path, default=Path("bench-out/stacked_mnist.json"))
    parser.add_argument("--measure-only", action="store_true", help="print each variant's seconds a step, then stop")
    parser.add_argument("--per-step", action="append", default=[], metavar="VARIANT=SECONDS",
                        help="seconds a step measured earlier on a quiet machine (with --minutes)")
    args = parser.parse_args()
    given = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.per_step)}

    from ganforge.config import DataConfig
    from ganforge.domains import get_domain

    # the real floor: the hold-out (26,000 stacks of test digits) does not depend on data.n
    real = get_domain("images").load(DataConfig(source="stacked-mnist", n=64))
    minutes = None if args.steps else args.minutes
    results = []
    for variant in args.variants:
        settings = [f"data.n={TRAIN_N}", *VARIANTS[variant], *args.overrides]
        per_step = given.get(variant) or (seconds_per_step(settings, iters=100 if args.measure_only else 20)
                                           if args.steps is None else None)
        if args.measure_only:
            print(f"{variant}: {per_step:.4f} s a step ({' '.join(settings)})", flush=True)
            continue
        steps = args.steps or max(int(BUDGET_FRACTION * 60 * args.minutes / per_step), 1)
        print(f"{variant}: {steps} steps" + (f" ({per_step:.3f} s a step measured)" if per_step else ""),
              file=sys.stderr, flush=True)
        for seed in range(args.seeds):
            r = {"variant": variant, "seed": seed, "settings": settings, "steps": steps,
                 "measured_seconds_per_step": per_step, **train_one(variant, settings, steps, seed, args.runs)}
            if "failed" not in r:
                r.update(score(r["run_dir"], real))
            results.append(r)
            print(json.dumps(r), file=sys.stderr, flush=True)
    if args.measure_only:
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(table(results, minutes))
    spread = [r["reverse_kl"] for r in results if "failed" not in r]
    if len(spread) > 1:
        print(f"\nreverse KL over all runs: mean {statistics.mean(spread):.3f}, max {max(spread):.3f}")


if __name__ == "__main__":
    main()
