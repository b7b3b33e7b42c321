"""Mode coverage on Gaussian mixtures with known centres: the VEEGAN / PacGAN protocol.

Srivastava et al. 2017 (VEEGAN), §5.1, as used by Lin et al. 2018 (PacGAN), §4.1: draw 2,500
samples; a sample is *high quality* if it lies within 3 standard deviations of its nearest mode
centre; a mode is *captured* if it is the nearest mode of at least one high-quality sample; the
reverse KL is KL(p || u) where p is the histogram of the high-quality samples over the modes and u
is the uniform distribution over the modes (empty bins contribute 0 to the sum).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def mixture_metrics(samples: np.ndarray, centres: np.ndarray, std: float, threshold: float = 3.0) -> dict:
    """Score ``samples: [N, d]`` against mixture ``centres: [K, d]`` with per-axis ``std``.

    Returns ``modes`` (captured, int), ``modes_total`` (K), ``hq_fraction`` (0..1),
    ``reverse_kl`` (nats; ``inf`` if no sample is high quality) and ``mode_counts`` (list of K ints).
    """
    samples = np.asarray(samples, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    dist = cdist(samples, centres)  # [N, K]
    nearest = dist.argmin(axis=1)
    high_quality = dist[np.arange(len(samples)), nearest] <= threshold * std
    counts = np.bincount(nearest[high_quality], minlength=len(centres))
    n_hq = int(high_quality.sum())
    if n_hq:
        p = counts / n_hq
        nz = p > 0
        reverse_kl = float(np.sum(p[nz] * np.log(p[nz] * len(centres))))
    else:
        reverse_kl = float("inf")
    return {
        "modes": int((counts > 0).sum()),
        "modes_total": int(len(centres)),
        "hq_fraction": n_hq / max(len(samples), 1),
        "reverse_kl": reverse_kl,
        "mode_counts": counts.tolist(),
    }
