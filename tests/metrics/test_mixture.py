"""The VEEGAN/PacGAN mixture protocol on cases small enough to count by hand."""

import math

import numpy as np
import pytest

from ganforge.metrics import mixture_metrics

CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])


def test_counts_high_quality_samples_and_captured_modes():
    std = 1.0  # high quality = within 3.0 of the nearest centre
    samples = np.array([
        [0.5, 0.0],     # mode 0, distance 0.5: HQ
        [0.0, 2.9],     # mode 0, distance 2.9: HQ
        [10.0, 3.1],    # nearest mode 1, distance 3.1: not HQ
        [9.0, 10.0],    # mode 3: HQ
        [5.0, 5.0],     # between everything: not HQ
    ])
    m = mixture_metrics(samples, CENTRES, std)
    assert m["modes"] == 2 and m["modes_total"] == 4
    assert m["hq_fraction"] == pytest.approx(3 / 5)
    assert m["mode_counts"] == [2, 0, 0, 1]
    # p = (2/3, 0, 0, 1/3) over 4 modes: KL = 2/3 log(4 * 2/3) + 1/3 log(4 * 1/3)
    assert m["reverse_kl"] == pytest.approx(2 / 3 * math.log(8 / 3) + 1 / 3 * math.log(4 / 3))


def test_uniform_coverage_has_zero_reverse_kl():
    samples = np.repeat(CENTRES, 5, axis=0) + 0.1
    m = mixture_metrics(samples, CENTRES, 0.5)
    assert m["modes"] == 4 and m["hq_fraction"] == 1.0 and m["reverse_kl"] == pytest.approx(0.0)


def test_collapse_to_one_mode_has_reverse_kl_log_k():
    m = mixture_metrics(np.zeros((10, 2)), CENTRES, 0.5)
    assert m["modes"] == 1 and m["reverse_kl"] == pytest.approx(math.log(4))


def test_no_high_quality_sample():
    m = mixture_metrics(np.full((3, 2), 5.0), CENTRES, 0.1)
    assert m["modes"] == 0 and m["hq_fraction"] == 0.0 and math.isinf(m["reverse_kl"])


def test_real_ring_data_scores_like_the_gaussian_tail():
    """On data drawn from the mixture itself, HQ = P(chi_2 <= 9) = 1 - exp(-4.5) = 98.89%."""
    from ganforge.domains.points import POINT_SETS

    ring = POINT_SETS["ring8"]
    m = mixture_metrics(ring.draw(100_000, np.random.default_rng(0)), ring.centres, ring.std)
    assert m["modes"] == 8
    assert m["hq_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.002)
    assert m["reverse_kl"] < 0.001
