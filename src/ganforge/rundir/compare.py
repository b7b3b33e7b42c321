"""FID, KID and precision/recall/density/coverage between two sets of images: ``ganforge fid A B``.

Each side is one of:

- an image folder, an ``.npy``/``.npz`` or MNIST IDX file, or a built-in set name (``mnist``), read
  by the images domain's :func:`~ganforge.domains.images.load_images` in every layout it reads;
- a run directory: ``n`` samples drawn from its EMA generator (``Run.sample(n, seed)``);
- a uint8 array ``[N, H, W, C]`` (``[N, H, W]`` is gray), or a :class:`Run`, from Python.

Both sides must hold images of one size and number of channels. The features are those of an
extractor of :mod:`ganforge.metrics.extractors` (``inception``: the TF FID Inception-v3 pool3,
any size, in bf16 on a CPU with native bf16; ``inception-fp32``: the same in float32 everywhere;
``digits-cnn``: 28x28 gray digits); the features and statistics of a folder, file or
array side come from the on-disk cache of :mod:`ganforge.metrics.cache` (keyed by the extractor
and the SHA-256 of the exact images) when it holds them, so comparing against one real set again
extracts only the other side. Generated samples are never cached.

A is the set being judged and B the reference, as torch-fidelity's ``input1`` / ``input2``: FID
and KID are symmetric, but precision is the share of A's images inside B's k-NN manifold and
recall the share of B's inside A's (Kynkäänniemi et al. 2019; density and coverage, Naeem et
al. 2020, likewise measure A against B).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ganforge.domains.images import BUILTIN_IMAGES, DATA_SEED, load_images, to_uint8_hwc
from ganforge.errors import UsageError
from ganforge.metrics import kernel_distance, prdc
from ganforge.metrics.cache import RealStatistics, real_statistics
from ganforge.metrics.extractors import BATCH, check_images, get_extractor
from ganforge.metrics.features import feature_statistics, frechet_distance_from_statistics
from ganforge.rundir.run import Run

MIN_IMAGES = 20  # a side; fewer make every score noise
RUN_N = 10_000  # samples drawn from a run when neither --n nor the other side's size says how many
PRDC_MAX = 5_000  # precision/recall on at most this many images a side: its distance matrices grow as n^2
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000  # as in the KID paper and torch-fidelity
PRDC_K = 5  # neighbours, as in both papers

Source = str | Path | np.ndarray | Run


@dataclass
class Side:
    """One side of a comparison: what the user named, what it is, and its uint8 ``[N, H, W, C]`` images."""

    name: str
    kind: str  # run, folder, file, builtin or array
    images: np.ndarray


def compare(a: Source, b: Source, features: str = "inception", n: int | None = None, seed: int = 0,
            batch: int | None = None, progress: bool = True) -> dict[str, Any]:
    """FID, KID (mean and std over 100 subsets) and precision/recall/density/coverage of ``a``
    against ``b`` on ``features``' features (see the module docstring for what a side can be).

    Args:
        n: images a side: a run draws ``n`` samples (default: as many as the other side holds, up to
            10,000); a folder or file uses a fixed random subset of ``n`` when it holds more
            (default: all).
        seed: the seed of a run's latents and of KID's subsets.
        batch: images per forward pass of the feature network.
        progress: a progress bar on stderr (on a terminal) while extracting features.

    Returns a flat dict: ``a``, ``a_kind``, ``n_a``, ``a_cached`` (and the same for ``b``),
    ``image_shape`` ``[H, W, C]``, ``extractor`` (the id of the weights), ``fid``, ``kid``,
    ``kid_std``, ``precision``, ``recall``, ``density``, ``coverage`` and ``prdc_n``.
    """
    if n is not None and n < MIN_IMAGES:
        raise UsageError(f"--n must be >= {MIN_IMAGES} (fewer images make every score noise), got {n}")
    if batch is not None and batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    ext = get_extractor(features)  # an unknown name fails before any image is read
    sides = _read_sides(a, b, n, seed)
    stats = [_statistics(side, label, ext, batch, progress) for side, label in zip(sides, "AB")]
    return _scores(sides, stats, ext.id, seed)


def _read_sides(a: Source, b: Source, n: int | None, seed: int) -> list[Side]:
    """Both sides' images: files first, so that a run draws as many samples as the other side holds."""
    sides: list[Side | None] = [None, None]
    for i in sorted((0, 1), key=lambda i: _is_run([a, b][i])):
        other = sides[1 - i]
        run_n = n or (min(len(other.images), RUN_N) if other is not None else RUN_N)
        sides[i] = _read_side([a, b][i], "AB"[i], n, run_n, seed)
    first, second = sides
    if first.images.shape[1:] != second.images.shape[1:]:
        raise UsageError(f"A ({first.name}) holds {_shape_text(first.images)} images and B ({second.name}) "
                         f"{_shape_text(second.images)} ones; compare images of one size and colour (resize or "
                         "convert one side first)")
    return sides


def _is_run(source: Source) -> bool:
    return isinstance(source, Run) or (isinstance(source, (str, Path)) and (Path(source) / "config.json").is_file())


def _read_side(source: Source, label: str, n: int | None, run_n: int, seed: int) -> Side:
    """The images of one side (``label`` is A or B, for messages)."""
    if _is_run(source):
        run = source if isinstance(source, Run) else Run(source)
        if len(run.sample_shape) != 3:
            raise UsageError(f"{label} ({run.path}) is a run of {run.domain.name} data; fid compares images")
        images = check_images(run.sample(run_n, seed=seed), f"{label} ({run.path})")
        return Side(str(run.path), "run", images)
    if isinstance(source, np.ndarray):
        return _subset(Side("array", "array", check_images(source, f"{label} (array)")), n, label)
    text = str(source)
    path = Path(text)
    kind = "builtin" if text in BUILTIN_IMAGES else "folder" if path.is_dir() else "file" if path.is_file() else ""
    if not kind:
        raise UsageError(f"{label}: '{text}' not found; give an image folder, an .npy/.npz file, a run directory "
                         f"or a built-in set ({', '.join(BUILTIN_IMAGES)})")
    image_set = load_images(text, n=n or RUN_N)[0]  # built-in sets: their training split (n: sets drawn at random)
    return _subset(Side(text, kind, to_uint8_hwc(image_set.pixels)), n, label)


def _subset(side: Side, n: int | None, label: str) -> Side:
    """A fixed random ``n`` of the side's images when it holds more (sets are often stored sorted by class)."""
    total = len(side.images)
    if total < MIN_IMAGES:
        raise UsageError(f"{label} ({side.name}) holds {total} images; give at least {MIN_IMAGES}")
    if n is not None and n < total:
        side.images = side.images[np.sort(np.random.default_rng(DATA_SEED).permutation(total)[:n])]
    return side


def _shape_text(images: np.ndarray) -> str:
    h, w, c = images.shape[1:]
    return f"{h}x{w} {'gray' if c == 1 else 'RGB'}"


class _Extraction:
    """An extractor that extracts ``batch`` images at a time under a progress bar; what
    :func:`ganforge.metrics.cache.real_statistics` calls (it reads ``id``, ``name`` and ``dim``)."""

    def __init__(self, extractor: Any, label: str, batch: int, progress: bool) -> None:
        self.extractor, self.label, self.batch, self.progress = extractor, label, batch, progress
        self.id, self.name, self.dim = extractor.id, extractor.name, extractor.dim

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``[N, H, W, C]`` -> float32 ``[N, dim]``."""
        from tqdm import tqdm

        out = np.empty((len(images), self.dim), dtype=np.float32)
        bar = tqdm(total=len(images), unit="img", desc=f"{self.label}: {self.name} features", leave=False,
                   dynamic_ncols=True, mininterval=1.0, disable=None if self.progress else True)
        with bar, _network_batch(self.extractor, self.batch):
            for start in range(0, len(images), self.batch):
                chunk = images[start:start + self.batch]
                try:
                    out[start:start + len(chunk)] = self.extractor(chunk)
                except UsageError as exc:  # e.g. digits-cnn given colour images: say which side
                    raise UsageError(f"{self.label}: {exc}") from None
                bar.update(len(chunk))
        return out


@contextlib.contextmanager
def _network_batch(extractor: Any, batch: int) -> Iterator[None]:
    """The extractor's own batch size (where it has one) set to ``batch`` for a block."""
    before = getattr(extractor, "batch", None)
    if before is not None:
        extractor.batch = batch
    try:
        yield
    finally:
        if before is not None:
            extractor.batch = before


def _statistics(side: Side, label: str, ext: Any, batch: int | None, progress: bool) -> RealStatistics:
    """Features, mean and covariance of one side: from the cache for data, computed for a run's samples."""
    extraction = _Extraction(ext, f"{label} ({side.name})", batch or getattr(ext, "batch", BATCH), progress)
    if side.kind != "run":
        return real_statistics(extraction, side.images)
    features = extraction(side.images)
    return RealStatistics(features, *feature_statistics(features), fid_floor=float("nan"))


def _scores(sides: list[Side], stats: list[RealStatistics], extractor_id: str, seed: int) -> dict[str, Any]:
    a, b = stats
    n = min(len(a.features), len(b.features))
    kid, kid_std = kernel_distance(a.features, b.features, subsets=KID_SUBSETS,
                                   subset_size=min(KID_SUBSET_SIZE, n // 2), seed=seed)
    rng = np.random.default_rng(DATA_SEED)
    prdc_a, prdc_b = (s.features[np.sort(rng.permutation(len(s.features))[:PRDC_MAX])] for s in stats)
    result: dict[str, Any] = {}
    for label, side, st in zip("ab", sides, stats):
        result.update({label: side.name, f"{label}_kind": side.kind, f"n_{label}": int(len(side.images)),
                       f"{label}_cached": bool(st.from_cache)})
    return {**result, "image_shape": list(sides[0].images.shape[1:]), "extractor": extractor_id,
            "fid": frechet_distance_from_statistics(a.mu, a.sigma, b.mu, b.sigma), "kid": kid, "kid_std": kid_std,
            **prdc(real=prdc_b, fake=prdc_a, k=PRDC_K), "prdc_n": int(min(len(prdc_a), len(prdc_b)))}


NOTES = {"precision": "share of A on B's manifold", "recall": "share of B on A's manifold",
         "density": "how densely A fills B's neighbourhoods; about 1 when A is like B",
         "coverage": "share of B's neighbourhoods holding an image of A"}


def format_comparison(result: dict[str, Any]) -> str:
    """The text of ``ganforge fid``: one aligned line per side and per score."""
    def side(label: str) -> str:
        kind, cached = result[f"{label}_kind"], result[f"{label}_cached"]
        what = "samples" if kind == "run" else "images"
        return (f"{result[label]}  ({kind}, {result[f'n_{label}']} {what}"
                f"{', statistics from the cache' if cached else ''})")

    h, w, c = result["image_shape"]
    fid = round(result["fid"], 4) + 0.0  # + 0.0: a rounding error of -1e-12 shows as 0.0000, not -0.0000
    lines = [("A", side("a")), ("B", side("b")), ("images", f"{h}x{w}x{c}"), ("features", result["extractor"]),
             ("fid", f"{fid:.4f}"), ("kid", f"{result['kid']:.6f}  (std {result['kid_std']:.6f})")]
    lines += [(key, f"{result[key]:.4f}  ({note})") for key, note in NOTES.items()]
    width = max(len(key) for key, _ in lines)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in lines)
