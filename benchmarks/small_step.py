"""Milliseconds a training step of the 2-D (points) recipe, against the same step elsewhere.

Each configuration is a child process that builds the real :class:`ganforge.engine.loop.Trainer`
for ``ring8`` (as ``ganforge train ring8`` does, without the run directory), takes 300 warm-up
steps and then times ``--steps`` calls of ``Trainer.iteration`` (one D step, one G step, EMA,
monitor statistics, lazy R1: everything but logging and evaluation, which the whole-run seconds of
``benchmarks/toy2d.py`` include). Rounds alternate the configurations, so drift of the machine
cancels; the median of the rounds is reported.

    python benchmarks/small_step.py                               # this checkout's configurations
    python benchmarks/small_step.py --old-src ../old/src          # also an older checkout's src/

Configurations:

- ``default``: today's defaults, on the threads the loop chooses for them (one, for these nets);
- ``w128-2threads`` / ``w128-1thread``: the 0.1 recipe's nets (G and D 128 wide) on 2 and 1
  torch threads (0.1 ran them on torch's default, 2 threads on a 2-core machine);
- ``bare``: the least a step of the default nets can be in eager PyTorch: the two MLPs, one D call
  on [real; fake], the non-saturating losses, fused Adam, D frozen for the G step; no EMA, no
  monitor, no R1, no schedule (1 thread);
- with ``--old-src``: ``old-default`` (that checkout's defaults on torch's default threads) and
  ``old-w128-1thread``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
spec = json.loads(sys.argv[1])
if spec["threads"]:
    torch.set_num_threads(spec["threads"])
if spec["kind"] == "bare":
    import torch.nn.functional as F
    from torch import nn
    def mlp(i, w, o, act):
        return nn.Sequential(nn.Linear(i, w), act(), nn.Linear(w, w), act(), nn.Linear(w, w), act(), nn.Linear(w, o))
    G, D = mlp(16, 96, 2, nn.ReLU), mlp(2, 64, 1, lambda: nn.LeakyReLU(0.2))
    opt_G = torch.optim.Adam(G.parameters(), 4e-3, (0.0, 0.9), fused=True)
    opt_D = torch.optim.Adam(D.parameters(), 4e-3, (0.0, 0.9), fused=True)
    data, gen = torch.randn(100_000, 2), torch.Generator().manual_seed(0)
    def step():
        real = data[torch.randint(len(data), (128,), generator=gen)]
        with torch.no_grad():
            fake = G(torch.randn(128, 16, generator=gen))
        real_logits, fake_logits = D(torch.cat([real, fake])).squeeze(1).chunk(2)
        loss_d = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        opt_D.zero_grad(set_to_none=True); loss_d.backward(); opt_D.step()
        D.requires_grad_(False)
        loss_g = F.softplus(-D(G(torch.randn(128, 16, generator=gen))).squeeze(1)).mean()
        opt_G.zero_grad(set_to_none=True); loss_g.backward(); opt_G.step()
        D.requires_grad_(True)
    threads = torch.get_num_threads()
else:
    from ganforge.config import RunConfig, set_value
    from ganforge.engine.distributed import Shard
    from ganforge.engine.steps import NullCallbacks
    from ganforge.families import get_family
    from ganforge.rundir.resolve import resolve
    cfg = RunConfig()
    cfg.data.source = "ring8"
    for key, value in spec["settings"].items():
        set_value(cfg, key, value)
    dataset = resolve(cfg)
    trainer = get_family(cfg.model.family).trainer(cfg, dataset, torch.device("cpu"), NullCallbacks(), Shard(),
                                                   dataset.state.get("net_args", {}))
    trainer.begin()
    step = trainer.iteration
    if not spec["threads"] and hasattr(trainer, "threads"):
        chosen = trainer.threads()  # the loop's own choice of threads, as StepLoop.run makes it (kept
        chosen.__enter__()          # referenced: a collected context manager would restore the setting)
    threads = torch.get_num_threads()
for _ in range(300):
    step()
t0 = time.perf_counter()
for _ in range(spec["steps"]):
    step()
print(json.dumps({"ms": 1000 * (time.perf_counter() - t0) / spec["steps"], "threads": threads}))
"""


def configurations(old_src: str | None) -> dict[str, dict]:
    w128 = {"model.g_width": 128, "model.d_width": 128}
    configs = {
        "default": {"kind": "ganforge", "settings": {}, "threads": 0},
        "w128-2threads": {"kind": "ganforge", "settings": w128, "threads": 2},
        "w128-1thread": {"kind": "ganforge", "settings": w128, "threads": 1},
        "bare": {"kind": "bare", "settings": {}, "threads": 1},
    }
    if old_src:
        configs["old-default"] = {"kind": "ganforge", "settings": {}, "threads": 0, "src": old_src}
        configs["old-w128-1thread"] = {"kind": "ganforge", "settings": w128, "threads": 1, "src": old_src}
    return configs


def measure(spec: dict, steps: int) -> dict:
    env = dict(os.environ)
    if spec.get("src"):
        env["PYTHONPATH"] = os.path.abspath(spec["src"]) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps({**spec, "steps": steps})], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--old-src", default=None, help="an older checkout's src/ folder, timed the same way")
    args = parser.parse_args()
    configs = configurations(args.old_src)
    times: dict[str, list[float]] = {name: [] for name in configs}
    threads: dict[str, int] = {}
    order = list(configs)
    start = time.time()
    for r in range(args.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            result = measure(configs[name], args.steps)
            times[name].append(result["ms"])
            threads[name] = result["threads"]
            print(f"round {r} {name}: {result['ms']:.3f} ms ({result['threads']} threads)", file=sys.stderr)
    reference = "old-default" if args.old_src else "w128-2threads"
    ref = statistics.median(times[reference])
    print(f"{args.rounds} rounds of {args.steps} steps, {time.time() - start:.0f} s")
    print(f"| configuration | threads | ms a step (median; range) | speed-up over {reference} |")
    print("|---|---|---|---|")
    for name in configs:
        med = statistics.median(times[name])
        print(f"| {name} | {threads[name]} | {med:.2f} ({min(times[name]):.2f}–{max(times[name]):.2f}) | "
              f"{ref / med:.2f}x |")


if __name__ == "__main__":
    main()
