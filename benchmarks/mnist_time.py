"""Time to quality on MNIST: feature FID against wall-clock training time, ganforge vs the textbook loop.

Both sides train the same 28x28 DCGAN (G z 100 -> 256x7x7 -> 128x14x14 -> 1x28x28, D 64x14x14 ->
128x7x7 -> 1) on the 60,000 MNIST training digits with batch 64 and 2 threads, for a wall-clock
budget, keeping a copy of the generator at each checkpoint minute. ganforge's side is its real
``Trainer`` with the defaults of ``ganforge train mnist`` (plus any ``--set``) and samples from the
EMA generator; the textbook side is the PyTorch DCGAN tutorial's loop (``benchmarks/throughput.py``:
Sigmoid + BCELoss, ``.item()`` every step) and samples from its G. Each snapshot is scored on N
generated images against N MNIST test images with an extractor's features (``digits-cnn`` by
default: fast; ``inception`` for the standard FID if installed); the real-vs-real floor at the same
N is printed too. Training time excludes evaluation.

On a shared machine the clock is not a fair budget. ``--rate SIDE=STEPS_PER_S`` turns each budget
into a number of steps (minutes x 60 x rate), with the rate measured beforehand on a quiet machine:
training then stops at the step count a quiet 2-core machine reaches in that many minutes, whatever
else runs beside it. ``--measure-only`` measures that rate: the side's own loop (this script's
``train_for``, with the ``--set`` settings) for ``--measure-steps`` steps after a warm-up, at
``--threads``. (``benchmarks/throughput.py``'s short rounds of the default step measured 15% more
steps a second than an hour of this loop sustained, so measure the loop itself.) ``--save DIR`` keeps every
snapshot and ``--load DIR`` scores saved snapshots again (another extractor, another N) without
training.

    python benchmarks/mnist_time.py --minutes 10 30 --sides ganforge textbook
    python benchmarks/mnist_time.py --sides ganforge --measure-only          # quiet machine: steps/s of the loop
    python benchmarks/mnist_time.py --minutes 10 30 60 --sides ganforge --rate ganforge=2.36 --save bench-out/mt
    python benchmarks/mnist_time.py --minutes 60 --sides ganforge --load bench-out/mt --features inception --n 2000
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import Textbook  # noqa: E402

from ganforge.config import RunConfig, apply_defaults, set_value  # noqa: E402
from ganforge.domains import get_domain  # noqa: E402
from ganforge.domains.images import feature_scores, load_images, to_uint8_hwc  # noqa: E402
from ganforge.engine.loop import Trainer, build_players  # noqa: E402
from ganforge.engine.steps import NullCallbacks

CHUNK = 50  # training steps between clock checks


def train_for(side: str, images: torch.Tensor, minutes: list[float], settings: dict[str, str], seed: int,
              rate: float | None = None):
    """Train ``side`` until the largest budget; -> {minutes: (generator copy, steps, seconds)}.

    With ``rate`` (steps a second on a quiet machine) a budget is ``60 * minutes * rate`` steps
    instead of wall-clock time."""
    torch.manual_seed(seed)
    if side == "textbook":
        book = Textbook(images[torch.randperm(len(images))], 64)

        def step() -> int:
            book.step()
            return 1

        get_g, steps_per_call = (lambda: book.netG), 1
    else:
        cfg = RunConfig()
        apply_defaults(cfg, get_domain("images").defaults)
        set_value(cfg, "train.eval_every", 0)
        set_value(cfg, "seed", seed)
        for key, value in settings.items():
            set_value(cfg, key, value)
        cfg.model.net, cfg.model.z_dim = "dcgan", 100
        # the schedules (train.lr_decay) span the whole budget, which only a step budget knows
        if rate:
            cfg.train.steps = round(60 * max(minutes) * rate)
        elif cfg.train.lr_decay > 0:
            raise SystemExit("train.lr_decay needs a step budget: give --rate ganforge=STEPS_PER_S")
        else:
            cfg.train.steps = 10**9
        players = build_players(cfg, "dcgan", 100, (1, 28, 28), torch.device("cpu"))
        trainer = Trainer(cfg, players, images, torch.device("cpu"), NullCallbacks())

        def step() -> int:  # -> the steps it trained (the last chunk ends at train.steps, the budget)
            before = trainer.step
            trainer.run(until=trainer.step + CHUNK)
            return trainer.step - before

        get_g, steps_per_call = (lambda: trainer.p.G_ema), CHUNK
    snapshots, done, elapsed = {}, 0, 0.0
    pending = sorted(minutes)
    while pending:
        t0 = time.perf_counter()
        for _ in range(max(1, CHUNK // steps_per_call)):
            done += step()
        elapsed += time.perf_counter() - t0
        while pending and (done >= round(60 * pending[0] * rate) if rate else elapsed >= 60 * pending[0]):
            snapshots[pending.pop(0)] = (copy.deepcopy(get_g()).eval(), done, elapsed)
    return snapshots


def measure_rate(side: str, images: torch.Tensor, settings: dict[str, str], seed: int, steps: int) -> float:
    """Steps a second of ``side``'s training loop as ``train_for`` runs it, over ``steps`` steps after
    a warm-up of 200 (the budget's rate for ``--rate``; run it on a quiet machine)."""
    # at a rate of 1/60 step a second, a budget of m "minutes" is m steps
    (_, warm_steps, warm_s), (_, done, seconds) = train_for(side, images, [200, 200 + steps], settings, seed,
                                                             rate=1 / 60).values()
    return (done - warm_steps) / (seconds - warm_s)


@torch.no_grad()
def generate(G, n: int, seed: int) -> np.ndarray:
    z = torch.randn(n, 100, generator=torch.Generator().manual_seed(seed))
    return to_uint8_hwc(torch.cat([G(chunk) for chunk in z.split(500)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 30])
    parser.add_argument("--sides", nargs="+", default=["ganforge", "textbook"], choices=["ganforge", "textbook"])
    parser.add_argument("--features", default="digits-cnn")
    parser.add_argument("--n", type=int, default=10000, help="generated and real images per score")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--rate", action="append", default=[], metavar="SIDE=STEPS_PER_S",
                        help="budget by steps: the side's steps a second measured on a quiet machine")
    parser.add_argument("--save", type=Path, help="write each snapshot's generator here")
    parser.add_argument("--load", type=Path, help="score snapshots saved by --save instead of training")
    parser.add_argument("--measure-only", action="store_true", help="print each side's steps a second, then stop")
    parser.add_argument("--measure-steps", type=int, default=2000, help="steps timed by --measure-only")
    args = parser.parse_args()
    rates = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.rate)}
    torch.set_num_threads(args.threads)
    train, test, _ = load_images("mnist")
    real = to_uint8_hwc(test.images)[: args.n]
    settings = dict(kv.split("=", 1) for kv in args.overrides)
    if args.measure_only:
        for side in args.sides:
            print(f"{side}: {measure_rate(side, train.images, settings, args.seed, args.measure_steps):.2f} steps/s "
                  f"({args.threads} threads{', ' + ' '.join(args.overrides) if args.overrides else ''})", flush=True)
        return
    rows = []
    for side in args.sides:
        if args.load:
            snapshots = {m: torch.load(args.load / f"{side}-{m:g}min.pt", weights_only=False) for m in args.minutes}
        else:
            snapshots = train_for(side, train.images, args.minutes, settings, args.seed, rates.get(side))
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                for m, snap in snapshots.items():
                    torch.save(snap, args.save / f"{side}-{m:g}min.pt")
        for minute, (G, steps, seconds) in snapshots.items():
            scores = feature_scores(real, generate(G, args.n, args.seed + 1), args.features)
            row = {"side": side, "minutes": minute, "steps": steps, "train_s": round(seconds, 1),
                   "budget": f"{rates[side]} steps/s" if side in rates else "wall-clock",
                   "fid": round(scores["fid"], 3), "floor": round(scores["fid_real_floor"], 3),
                   "kid": round(scores["kid"], 5), "precision": round(scores["feature_precision"], 3),
                   "recall": round(scores["feature_recall"], 3), "extractor": scores["extractor"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n| side | minutes | steps | {args.features} FID ({args.n} vs {args.n} test) | real-vs-real floor | KID | precision | recall |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['side']} | {r['minutes']:g} | {r['steps']} | {r['fid']:.2f} | {r['floor']:.2f} | {r['kid']:.4f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} |")


if __name__ == "__main__":
    main()
