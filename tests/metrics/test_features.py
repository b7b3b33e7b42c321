"""FID, KID and precision/recall on features, against independent references."""

import numpy as np
import pytest
from scipy import linalg

from ganforge.metrics import prdc
from ganforge.metrics.features import frechet_distance, kernel_distance


def random_features(seed, n=400, d=32, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return (rng.normal(size=(n, d)) @ mixing) * scale + shift


def reference_fid(a, b):
    # the formula of the TTUR reference code: scipy's general matrix square root
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean))


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.3, 1.0), (0.0, 1.7), (1.0, 0.5)])
def test_fid_equals_the_sqrtm_reference(shift, scale):
    a, b = random_features(1), random_features(2, shift=shift, scale=scale)
    assert frechet_distance(a, b) == pytest.approx(reference_fid(a, b), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_the_shift():
    a = random_features(3)
    assert abs(frechet_distance(a, a)) < 1e-8
    assert frechet_distance(a, a + 0.5) == pytest.approx(0.25 * a.shape[1], rel=1e-6)  # |mu shift|^2 only


def reference_kid_one_subset(x, y):
    # the unbiased polynomial-kernel MMD^2 written as explicit sums over pairs
    d = x.shape[1]
    k = lambda u, v: (u @ v / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_equals_the_unbiased_polynomial_estimator():
    a, b = random_features(4, n=40, d=8), random_features(5, n=40, d=8, shift=0.2)
    mean, std = kernel_distance(a, b, subsets=1, subset_size=40)  # one subset = the whole sets, permuted
    assert mean == pytest.approx(reference_kid_one_subset(a, b), rel=1e-6)
    assert std == 0.0


def test_kid_over_subsets_is_reproducible_and_orders_distances():
    a = random_features(6)
    near, far = random_features(7, shift=0.05), random_features(8, shift=0.5)
    assert kernel_distance(a, near, subsets=10, subset_size=100, seed=1) == kernel_distance(
        a, near, subsets=10, subset_size=100, seed=1)
    assert kernel_distance(a, near, subsets=10, subset_size=100)[0] < kernel_distance(a, far, subsets=10, subset_size=100)[0]


def test_prdc_equals_the_prdc_package():
    reference = pytest.importorskip("prdc")
    real, fake = random_features(9, n=300, d=16), random_features(10, n=250, d=16, shift=0.3, scale=1.2)
    expected = reference.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    ours = prdc(real, fake, k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(expected[key]), rel=1e-9), key


def test_bad_features_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="sizes differ"):
        kernel_distance(np.zeros((5, 3)), np.zeros((5, 4)))
