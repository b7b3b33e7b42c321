"""One D and G step of the 28x28 DCGAN in each memory layout and precision: what channels_last and
bf16 autocast would buy ganforge's training step on this CPU, before either is wired into the loop.

The networks are the issue's like-for-like DCGAN (G: z 100 -> 256x7x7 -> 128x14x14 -> 1x28x28 by
transposed convolutions; D: 64x14x14 -> 128x7x7 -> 1), batch 64, 2 threads. A step is D's forward
on a real and a fake batch and its backward, then G's loss through D and its backward (no
optimiser: the convolutions are the cost). Every combination is timed twice, interleaved, so drift
shows as the spread between the two passes.

    python benchmarks/layout_precision.py
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


def generator() -> nn.Module:
    return nn.Sequential(
        nn.ConvTranspose2d(100, 256, 7, 1, 0, bias=False), nn.BatchNorm2d(256), nn.ReLU(True),
        nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(True),
        nn.ConvTranspose2d(128, 1, 4, 2, 1, bias=False), nn.Tanh())


def discriminator() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, True),
        nn.Conv2d(128, 1, 7, 1, 0, bias=False))


def ms_per_step(channels_last: bool, bf16: bool, batch: int, iters: int, warmup: int = 5) -> float:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    G, D = generator().to(memory_format=layout), discriminator().to(memory_format=layout)
    real = torch.randn(batch, 1, 28, 28).to(memory_format=layout)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            fake = G(torch.randn(batch, 100, 1, 1).to(memory_format=layout))
            loss_d = D(real).mean() - D(fake.detach()).mean()
        loss_d.backward()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss_g = -D(fake).mean()
        loss_g.backward()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - start) / iters * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    combos = [(cl, bf) for cl in (False, True) for bf in (False, True)]
    times: dict[tuple[bool, bool], list[float]] = {c: [] for c in combos}
    for _ in range(2):
        for combo in combos:
            times[combo].append(ms_per_step(*combo, args.batch, args.iters))
    print(f"| layout | precision | ms a step (two passes) |  # {args.threads} threads, batch {args.batch}")
    print("|---|---|---|")
    for (cl, bf), ms in times.items():
        print(f"| {'channels_last' if cl else 'contiguous'} | {'bf16 autocast' if bf else 'fp32'} | "
              f"{' / '.join(f'{m:.1f}' for m in ms)} |")


if __name__ == "__main__":
    main()
