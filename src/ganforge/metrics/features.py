"""Distances between two sets of feature vectors (e.g. Inception pool3 features of images).

- ``frechet_distance`` (FID, Heusel et al. 2017): ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``
  of Gaussians fitted to the two sets. The trace of the matrix square root is computed as
  ``Tr (S_a^(1/2) S_b S_a^(1/2))^(1/2)`` (the same eigenvalues as ``S_a S_b``) with two symmetric
  eigendecompositions, which is exact and several times faster than a general ``sqrtm`` at 2048
  dimensions; tiny negative eigenvalues from rounding are clipped to 0.
- ``kernel_distance`` (KID, Bińkowski et al. 2018): the unbiased MMD^2 estimator with the cubic
  polynomial kernel ``k(x, y) = (x . y / d + 1)^3``, averaged over random subsets of equal size
  (100 subsets of 1,000 as in the paper and in torch-fidelity), with its standard deviation.

Both take float arrays ``[N, d]``; precision/recall/density/coverage of the same features are
:func:`ganforge.metrics.distances.prdc`.
"""

from __future__ import annotations

import numpy as np


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[d]`` and covariance ``[d, d]`` (unbiased, as numpy's ``cov``) of ``features: [N, d]``."""
    x = _as_features(features, "features")
    if len(x) < 2:
        raise ValueError("need at least 2 feature vectors for a covariance")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance_from_statistics(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """FID between two Gaussians given by their means and covariances."""
    mu_a, mu_b = np.asarray(mu_a, dtype=np.float64), np.asarray(mu_b, dtype=np.float64)
    cov_a, cov_b = np.asarray(cov_a, dtype=np.float64), np.asarray(cov_b, dtype=np.float64)
    if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != (len(mu_a), len(mu_a)):
        raise ValueError(f"statistics do not match: {mu_a.shape}, {cov_a.shape} vs {mu_b.shape}, {cov_b.shape}")
    # Tr (S_a S_b)^(1/2) = Tr (S_a^(1/2) S_b S_a^(1/2))^(1/2): two symmetric eigendecompositions
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    eigenvalues = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets ``[N, d]`` and ``[M, d]``."""
    return frechet_distance_from_statistics(*feature_statistics(features_a), *feature_statistics(features_b))


def _polynomial_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    term_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    term_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(term_x + term_y - 2.0 * k_xy.mean())


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation over ``subsets`` random subsets of ``subset_size`` a side
    (capped by the smaller set) of the unbiased polynomial-kernel MMD^2."""
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError("need at least 2 feature vectors a side")
    rng = np.random.default_rng(seed)
    values = [_polynomial_mmd2_unbiased(a[rng.choice(len(a), size, replace=False)],
                                        b[rng.choice(len(b), size, replace=False)]) for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


def _as_features(features: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected features [N, d], got shape {list(x.shape)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return x
