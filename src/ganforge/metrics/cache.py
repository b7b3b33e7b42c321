"""An on-disk cache of the real images' features and statistics, keyed by content.

Every score of generated images against one real set needs that set's features; with Inception on
a CPU extracting them takes minutes for a few thousand images, and they never change. The cache
keeps, for one (extractor id, SHA-256 of the exact real images array, n), what the image scores
need from the real side:

- ``features``: float32 ``[n, d]`` (KID and precision/recall/density/coverage need the vectors);
- ``mu``, ``sigma``: float64 mean ``[d]`` and covariance ``[d, d]`` (FID);
- ``fid_floor``: the FID between the two halves ``[:n // 2]`` and ``[n // 2 : 2 * (n // 2)]``.

Files live in ``$GANFORGE_CACHE`` (default ``~/.cache/ganforge``) under ``features/``, one ``.npz``
per key, written atomically and read with ``np.load(allow_pickle=False)``. A file is used only if
the key stored inside it equals the key asked for and its arrays have the expected shapes and are
finite; anything else (a truncated, corrupt or foreign file) is recomputed and overwritten. An
unwritable cache directory only costs the speed-up. ``GANFORGE_CACHE=off`` turns the cache off; the
directory can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganforge.io import atomic_write
from ganforge.metrics.features import feature_statistics, frechet_distance

CACHE_FORMAT = 1  # bump when the stored arrays or their meaning change


@dataclass
class RealStatistics:
    """The real side of a feature score (see the module docstring)."""

    features: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    fid_floor: float
    from_cache: bool = False


def cache_dir() -> Path | None:
    """``$GANFORGE_CACHE`` or ``~/.cache/ganforge``; None when the variable is ``off``."""
    root = os.environ.get("GANFORGE_CACHE", "")
    if root.lower() == "off":
        return None
    return Path(root).expanduser() if root else Path.home() / ".cache" / "ganforge"


def images_sha256(images: np.ndarray) -> str:
    """A digest of an array's dtype, shape and values (in C order)."""
    images = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{images.dtype.str}{list(images.shape)}".encode())
    digest.update(memoryview(images).cast("B"))
    return digest.hexdigest()


def cache_key(extractor_id: str, images: np.ndarray) -> str:
    return hashlib.sha256(f"format={CACHE_FORMAT}\0{extractor_id}\0{images_sha256(images)}\0n={len(images)}"
                          .encode()).hexdigest()


def compute_real_statistics(features: np.ndarray) -> RealStatistics:
    """Statistics and FID floor of real features ``[n, d]`` (n >= 4), without the cache."""
    half = len(features) // 2
    mu, sigma = feature_statistics(features)
    return RealStatistics(features, mu, sigma, frechet_distance(features[:half], features[half:2 * half]))


def real_statistics(extractor: Any, real: np.ndarray) -> RealStatistics:
    """``extractor``'s features of the images ``real`` and their statistics, from the cache when it
    holds them for exactly these images, else computed (and stored)."""
    root = cache_dir()
    if root is None:
        return compute_real_statistics(extractor(real))
    key = cache_key(extractor.id, real)
    path = root / "features" / f"{extractor.name}-{key[:32]}.npz"
    cached = _load(path, key, len(real), extractor.dim)
    if cached is not None:
        return cached
    stats = compute_real_statistics(extractor(real))
    try:
        with atomic_write(path, "wb") as fh:
            np.savez(fh, key=np.array(key), features=stats.features, mu=stats.mu, sigma=stats.sigma,
                     fid_floor=np.array(stats.fid_floor, dtype=np.float64))
    except OSError as exc:
        warnings.warn(f"cannot write the feature cache {path} ({exc}); set GANFORGE_CACHE to a writable folder",
                      stacklevel=2)
    return stats


def _load(path: Path, key: str, n: int, dim: int) -> RealStatistics | None:
    """The statistics stored at ``path`` if it is a readable file for ``key``, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            stats = RealStatistics(data["features"], data["mu"], data["sigma"], float(data["fid_floor"]), True)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    shapes_ok = (stats.features.shape == (n, dim) and stats.features.dtype == np.float32
                 and stats.mu.shape == (dim,) and stats.sigma.shape == (dim, dim))
    finite = shapes_ok and np.isfinite(stats.fid_floor) and all(np.isfinite(a).all()
                                                                for a in (stats.features, stats.mu, stats.sigma))
    return stats if finite else None
