"""Training throughput of ganforge's default 28x28 DCGAN against the PyTorch DCGAN tutorial's loop.

Both sides train the same architecture (ganforge's DCGAN at 1x28x28, width 64, z 100: G
z -> 256x7x7 -> 128x14x14 -> 1x28x28, D 64x14x14 -> 128x7x7 -> 1) on the same data with batch 64
and 2 threads. The textbook loop is written the way the tutorial writes it: D ends in a Sigmoid
and is trained with BCELoss on a real and then a fake pass, ``.item()`` of D(x), D(G(z)) and both
losses every step, fp32, ``torch.optim.Adam`` with its default implementation. ganforge's side is
its real ``Trainer`` with the images recipe (everything it does per step: the loop, EMA, monitor,
and a monitor record at the end of every timed round). Rounds alternate in one process, the
order flipping every round, so drift of the machine cancels.

    python benchmarks/throughput.py                  # 7 rounds of 40 iterations a side
    python benchmarks/throughput.py --rounds 3 --iters 20

samples/s = real images consumed per second (batch x D steps / wall time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from ganforge.config import RunConfig, apply_defaults, set_value
from ganforge.domains import get_domain
from ganforge.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from ganforge.engine.loop import Trainer, build_players
from ganforge.engine.steps import NullCallbacks




def data(n: int = 4096) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1


class Textbook:
    """The PyTorch DCGAN tutorial's training step, on ganforge's architecture."""

    def __init__(self, images: torch.Tensor, batch: int) -> None:
        torch.manual_seed(0)
        self.images, self.batch = images, batch
        self.netG = DCGANGenerator(100, 1, 28, 28, base_width=64)
        self.netD = nn.Sequential(DCGANDiscriminator(1, 28, 28, base_width=64), nn.Sigmoid())
        self.criterion = nn.BCELoss()
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.i = 0

    def step(self) -> list[float]:
        start = (self.i * self.batch) % (len(self.images) - self.batch)
        self.i += 1
        real = self.images[start:start + self.batch]
        b = real.size(0)
        self.netD.zero_grad()
        label = torch.full((b,), 1.0)
        output = self.netD(real).view(-1)
        err_d_real = self.criterion(output, label)
        err_d_real.backward()
        d_x = output.mean().item()
        noise = torch.randn(b, 100)
        fake = self.netG(noise)
        label.fill_(0.0)
        output = self.netD(fake.detach()).view(-1)
        err_d_fake = self.criterion(output, label)
        err_d_fake.backward()
        d_g_z1 = output.mean().item()
        err_d = err_d_real + err_d_fake
        self.optD.step()
        self.netG.zero_grad()
        label.fill_(1.0)
        output = self.netD(fake).view(-1)
        err_g = self.criterion(output, label)
        err_g.backward()
        d_g_z2 = output.mean().item()
        self.optG.step()
        return [err_d.item(), err_g.item(), d_x, d_g_z1, d_g_z2]

    def run(self, iters: int) -> int:
        for _ in range(iters):
            self.step()
        return iters * self.batch


class Ganforge:
    """ganforge's own Trainer with the images domain's recipe."""

    def __init__(self, images: torch.Tensor, batch: int, settings: dict[str, str]) -> None:
        cfg = RunConfig()
        apply_defaults(cfg, get_domain("images").defaults)
        set_value(cfg, "train.batch", batch)
        set_value(cfg, "train.eval_every", 0)
        for key, value in settings.items():
            if key in ("train.batch", "train.n_critic"):
                raise SystemExit(f"{key} would change the work done, not how fast it is done; use --batch")
            set_value(cfg, key, value)
        cfg.model.net, cfg.model.z_dim, cfg.train.steps = "dcgan", 100, 0
        players = build_players(cfg, "dcgan", 100, (1, 28, 28), torch.device("cpu"))
        self.trainer = Trainer(cfg, players, images, torch.device("cpu"), NullCallbacks())

    def run(self, iters: int) -> int:
        t = self.trainer.t
        t.steps += iters
        self.trainer.run()
        return iters * t.batch * t.n_critic


def timed(side, iters: int) -> float:
    t0 = time.perf_counter()
    n = side.run(iters)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="settings for ganforge's side, e.g. --set train.ema=0")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = data()
    textbook = Textbook(images, args.batch)
    ours = Ganforge(images, args.batch, dict(kv.split("=", 1) for kv in args.overrides))
    for side in (textbook, ours):  # warm-up: allocator, oneDNN primitive caches
        side.run(5)
    rates: dict[str, list[float]] = {"textbook": [], "ganforge": []}
    for round_ in range(args.rounds):
        order = [("textbook", textbook), ("ganforge", ours)]
        for name, side in order if round_ % 2 == 0 else order[::-1]:
            rates[name].append(timed(side, args.iters))
    ratios = [g / t for g, t in zip(rates["ganforge"], rates["textbook"])]
    result = {
        "batch": args.batch, "threads": args.threads, "rounds": args.rounds, "iters": args.iters,
        "settings": args.overrides, "torch": torch.__version__,
        "textbook_samples_per_s": statistics.median(rates["textbook"]),
        "ganforge_samples_per_s": statistics.median(rates["ganforge"]),
        "speedup_median": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
    }
    print("| loop | samples/s (median of rounds) |\n|---|---|")
    print(f"| textbook (tutorial: Sigmoid + BCELoss, .item() every step, fp32) | {result['textbook_samples_per_s']:.0f} |")
    print(f"| ganforge {' '.join(args.overrides)} | {result['ganforge_samples_per_s']:.0f} |")
    print(f"\nspeed-up {result['speedup_median']:.2f}x (rounds: {result['speedup_min']:.2f}-{result['speedup_max']:.2f}x)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
