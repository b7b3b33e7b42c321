"""Distances and precision/recall against independent reference computations."""

import numpy as np
import pytest
from scipy.stats import energy_distance as scipy_energy
from sklearn.neighbors import NearestNeighbors

from ganforge.metrics import energy_distance, mmd_rbf, prdc


def test_energy_distance_matches_scipy_in_one_dimension():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 1)), rng.normal(0.5, 1.2, size=(250, 1))
    # scipy returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|)
    assert energy_distance(x, y) == pytest.approx(scipy_energy(x[:, 0], y[:, 0]) ** 2, rel=1e-9)


def test_energy_distance_is_zero_for_identical_samples():
    x = np.random.default_rng(1).normal(size=(50, 3))
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)


def test_mmd_matches_a_direct_double_sum():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 2)), rng.normal(1.0, 1.0, size=(20, 2))
    h = 1.3
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * h * h))  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(30) for j in range(30) if i != j) / (30 * 29)
    yy = sum(k(y[i], y[j]) for i in range(20) for j in range(20) if i != j) / (20 * 19)
    xy = sum(k(a, b) for a in x for b in y) / (30 * 20)
    assert mmd_rbf(x, y, bandwidth=h) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


def reference_prdc(real, fake, k):
    """Independent formulation with scikit-learn's neighbour search."""
    r_rad = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)[0][:, k]
    f_rad = NearestNeighbors(n_neighbors=k + 1).fit(fake).kneighbors(fake)[0][:, k]
    precision = np.mean([any(np.linalg.norm(f - r) < rr for r, rr in zip(real, r_rad)) for f in fake])
    recall = np.mean([any(np.linalg.norm(r - f) < fr for f, fr in zip(fake, f_rad)) for r in real])
    density = np.mean([sum(np.linalg.norm(f - r) < rr for r, rr in zip(real, r_rad)) for f in fake]) / k
    nearest_fake = NearestNeighbors(n_neighbors=1).fit(fake).kneighbors(real)[0][:, 0]
    coverage = np.mean(nearest_fake < r_rad)
    return precision, recall, density, coverage


def test_prdc_matches_reference():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(120, 2)), rng.normal(0.3, 1.3, size=(100, 2))
    got = prdc(real, fake, k=5)
    p, r, d, c = reference_prdc(real, fake, 5)
    assert (got["precision"], got["recall"], got["density"], got["coverage"]) == pytest.approx((p, r, d, c))


def test_prdc_of_a_copy_is_perfect():
    real = np.random.default_rng(4).normal(size=(100, 2))
    got = prdc(real, real.copy(), k=5)
    assert got["precision"] == 1.0 and got["recall"] == 1.0 and got["coverage"] == 1.0
