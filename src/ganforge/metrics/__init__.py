"""Metrics: each a plain function of arrays, validated against a reference in the tests."""

from ganforge.metrics.distances import energy_distance, mmd_rbf, prdc
from ganforge.metrics.features import frechet_distance, kernel_distance
from ganforge.metrics.mixture import mixture_metrics

__all__ = ["energy_distance", "frechet_distance", "kernel_distance", "mmd_rbf", "mixture_metrics", "prdc"]
