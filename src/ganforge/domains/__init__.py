"""Domains: everything that depends on the kind of data (loading, encoding, metrics, plots).

The engine sees only ``Dataset.train``, a float tensor ``[N, *sample_shape]`` in the encoded
space, and asks the domain to decode generated tensors back to the user's space. A new kind of
data is one new file here that calls :func:`register_domain`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from ganforge.config import DataConfig
from ganforge.errors import UsageError


@dataclass
class Dataset:
    """A loaded data set, ready for the engine."""

    name: str
    domain: str
    train: torch.Tensor
    """Encoded training samples ``[N, *sample_shape]``, float32."""
    state: dict[str, Any]
    """JSON-serialisable facts needed to decode samples later without the data (e.g. scaler stats).
    ``state["net_args"]`` (optional) holds what a net family needs beyond the sample shape, e.g.
    ``{"n_classes": 10}``; it is passed to the net builders when training and when sampling."""
    holdout: np.ndarray | None = None
    """Held-out real samples in the user's space, for evaluation."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Known structure (mixture centres, latent hint) for metrics and defaults; ``meta["defaults"]``
    (dotted settings, e.g. a table's steps by its number of rows) tops the domain's recipe."""
    cond: torch.Tensor | None = None
    """Conditional tasks: one condition per training sample, int64 class labels ``[N]`` or encoded
    source images ``[N, C, h, w]``; G is trained as ``G(z, c)`` and D as ``D(x, c)``."""
    holdout_cond: torch.Tensor | None = None
    """The conditions of the held-out samples, in the same encoding as ``cond``."""
    sampler: Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]] | None = None
    """Optional minibatch sampler for conditional data, ``(batch, generator) -> (row indices, conditions)``,
    used by the loop instead of uniform rows (tables: CTGAN's training-by-sampling); see ``train.loop.Sampler``."""

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


class Domain(Protocol):
    name: str
    default_net: str
    default_z_dim: int
    defaults: dict[str, Any]
    """The domain's training recipe as dotted settings, applied to keys the user left alone."""

    def builtin_names(self) -> dict[str, str]:
        """Built-in data set names and one-line descriptions."""

    def claims(self, path: Path) -> bool:
        """Whether a user file or folder at ``path`` is this domain's kind of data."""

    def load(self, cfg: DataConfig) -> Dataset: ...

    def decode(self, encoded: torch.Tensor, state: dict[str, Any]) -> np.ndarray: ...

    def evaluate(self, samples: np.ndarray, dataset: Dataset, quick: bool = False,
                 features: str | None = None) -> dict[str, Any]:
        """Scores in the user's space; ``features`` names a feature extractor where the domain has them."""

    def save_samples(self, samples: np.ndarray, path: Path, columns: int | None = None) -> None:
        """Write samples to ``path``; ``columns`` lays out a picture (e.g. one interpolation path a row)."""

    def plot(self, samples: np.ndarray, dataset: Dataset, path: Path) -> None: ...


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, hold)`` indices of a fixed-seed shuffle of ``n`` items, ``round(fraction * n)`` held
    out for evaluation; nothing is held out from fewer than 20 items."""
    perm = np.random.default_rng(seed).permutation(n)
    n_hold = int(round(fraction * n)) if n >= 20 else 0
    return perm[n_hold:], perm[:n_hold]


DOMAINS: dict[str, Domain] = {}


def register_domain(domain: Domain) -> Domain:
    DOMAINS[domain.name] = domain
    return domain


def get_domain(name: str) -> Domain:
    if name not in DOMAINS:
        raise UsageError(f"unknown domain '{name}'; choose one of {', '.join(DOMAINS)}")
    return DOMAINS[name]


def all_builtin() -> dict[str, tuple[str, str]]:
    """Built-in data set name -> (domain, description)."""
    return {name: (d.name, text) for d in DOMAINS.values() for name, text in d.builtin_names().items()}


def infer_domain(source: str) -> Domain:
    """The domain of a built-in name or a file path, with a clear error when neither fits."""
    builtin = all_builtin()
    if source in builtin:
        return DOMAINS[builtin[source][0]]
    path = Path(source)
    if not path.exists():
        raise UsageError(
            f"'{source}' is neither a built-in data set nor an existing file; "
            f"run 'ganforge datasets' for the names, or check the path"
        )
    for domain in DOMAINS.values():
        if domain.claims(path):
            return domain
    raise UsageError(f"cannot tell what kind of data '{source}' holds; name it with --domain ({', '.join(DOMAINS)})")


# Domains register themselves on import, and are asked to claim a file in this order: series
# claims only CSVs with a time index, tables CSVs with non-numeric columns, so both go before
# points, which takes every other CSV.
from ganforge.domains import images, timeseries, tabular, points  # noqa: E402,F401
