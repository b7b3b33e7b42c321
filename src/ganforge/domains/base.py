"""What every domain is and shares: the ``Dataset`` it hands the engine, the ``Domain`` protocol,
a base class with the behaviour most domains share, and the registry.

The engine sees only ``Dataset.train``, a tensor ``[N, *sample_shape]`` in the encoded space (or
stored compactly, with a ``batch_transform`` that encodes each minibatch), and asks the domain to
decode generated tensors back to the user's space. A new kind of
data is one new module in this package that subclasses :class:`BaseDomain` (or implements
:class:`Domain`) and calls :func:`register_domain`, plus its place in ``CLAIM_ORDER``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn

from ganforge.config import DataConfig
from ganforge.errors import UsageError
from ganforge.registry import Registry


@dataclass
class Dataset:
    """A loaded data set, ready for the engine."""

    name: str
    domain: str
    train: torch.Tensor
    """Training samples ``[N, *sample_shape]``: encoded, float32, or in a compact storage type that
    ``batch_transform`` encodes (images: uint8 pixels, possibly memory-mapped); see :meth:`encoded`."""
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
    used by the loop instead of uniform rows (tables: CTGAN's training-by-sampling); see ``engine.loop.Sampler``."""
    batch_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    """Applied by the trainers to each minibatch of ``train`` rows before anything sees them, e.g.
    uint8 pixels ``[B, C, H, W]`` -> float32 in [-1, 1]; deterministic. None: ``train`` is encoded."""

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    def encoded(self, rows: torch.Tensor | slice | None = None) -> torch.Tensor:
        """``train[rows]`` (every row by default) as the engine sees them: encoded floats
        ``[len(rows), *sample_shape]``, through ``batch_transform``."""
        x = self.train if rows is None else self.train[rows]
        return x if self.batch_transform is None else self.batch_transform(x)


class RunView(Protocol):
    """What a domain may ask of a trained run (``ganforge.rundir.run.Run`` provides it) when it
    chooses a run's conditions or scores its generator; domains never import the run directory."""

    task: str
    net_args: dict[str, Any]

    def class_index(self, label: str | int) -> int: ...

    def load_data(self) -> Dataset: ...

    def sample(self, n: int, seed: int = 0, truncation: float | None = None, G: nn.Module | None = None,
               labels: Any = None, cond: torch.Tensor | None = None, dataset: Dataset | None = None) -> Any: ...


class Domain(Protocol):
    """Everything ganforge asks of a kind of data, in the order a run meets it."""

    name: str
    default_net: str
    default_z_dim: int
    defaults: dict[str, Any]
    """The domain's training recipe as dotted settings, applied to keys the user left alone."""
    samples_file: str
    """The file name of a finished run's samples (``samples.npy``; tables ``samples.csv``)."""
    grids: bool
    """Whether its ``save_samples`` draws a ``.png`` as a grid of pictures and takes ``scale`` (images)."""
    windows: bool
    """Whether its samples are windows ``[L, C]`` of time series (what sequence models such as
    TimeGAN train on)."""
    headline: tuple[str, ...]
    """The evaluation keys ``ganforge runs`` shows for this domain's runs, most telling first."""

    def builtin_names(self) -> dict[str, str]:
        """Built-in data set names and one-line descriptions."""

    def claims(self, path: Path) -> bool:
        """Whether a user file or folder at ``path`` is this domain's kind of data."""

    def load(self, cfg: DataConfig) -> Dataset: ...

    def decode(self, encoded: torch.Tensor, state: dict[str, Any]) -> Any:
        """Encoded samples ``[N, *sample_shape]`` to the user's space."""

    def decode_parts(self, parts: Iterable[torch.Tensor], state: dict[str, Any]) -> Any:
        """What :meth:`decode` makes of the encoded samples ``parts`` joined in order (G's output
        chunk by chunk); a domain whose decoding goes row by row may decode each part as it comes,
        so that the encoded whole never exists at once."""

    def conditions(self, run: RunView, n: int, labels: Any = None, cond: torch.Tensor | None = None,
                   dataset: Dataset | None = None) -> torch.Tensor | None:
        """The ``n`` conditions G is given when sampling ``run`` (None for an unconditional run)."""

    def read_conditions(self, run: RunView, path: Path) -> torch.Tensor:
        """Conditions read from a user's file for ``run`` (``sample --cond``), encoded as G takes them."""

    def score(self, run: RunView, n: int, seed: int, dataset: Dataset, G: nn.Module | None = None,
              quick: bool = False, features: str | None = None) -> dict[str, Any]:
        """Sample ``n`` from ``run`` (with the conditions its task needs) and :meth:`evaluate` them."""

    def evaluate(self, samples: Any, dataset: Dataset, quick: bool = False,
                 features: str | None = None) -> dict[str, Any]:
        """Scores in the user's space; ``features`` names a feature extractor where the domain has them."""

    def save_samples(self, samples: Any, path: Path, columns: int | None = None) -> None:
        """Write samples to ``path``; ``columns`` lays out a picture (e.g. one interpolation path a row)."""

    def plot(self, samples: Any, dataset: Dataset, path: Path) -> None: ...

    def summary_lines(self, scores: dict[str, Any]) -> list[str]:
        """The lines of the end-of-training summary that show this domain's scores."""


DISTANCE_KEYS = ("energy_distance", "mmd_rbf", "precision", "recall", "coverage")


def distance_line(scores: dict[str, Any], keys: tuple[str, ...] = DISTANCE_KEYS) -> list[str]:
    """``distances  energy_distance 0.0012   ...`` for the keys ``scores`` has (no line without any)."""
    shown = [k for k in keys if k in scores]
    return ["distances  " + "   ".join(f"{k} {scores[k]:.4f}" for k in shown)] if shown else []


def modes_line(scores: dict[str, Any]) -> list[str]:
    """Mode coverage, high-quality fraction and reverse KL (with the real data's floor where known)."""
    if "modes" not in scores:
        return []
    hq = f"   high quality {100 * scores['hq_fraction']:.1f}%" if "hq_fraction" in scores else ""
    floor = (f"   (real images: {scores['modes_real_floor']}, KL {scores['reverse_kl_real_floor']:.4f})"
             if "modes_real_floor" in scores else "")
    return [f"modes      {scores['modes']}/{scores['modes_total']}{hq}   reverse KL {scores['reverse_kl']:.4f}{floor}"]


def decimal_text(values: np.ndarray) -> list[list[str]]:
    """Rows of numbers ``[N, d]`` as CSV cells in plain decimal notation: the shortest text that reads
    back as the same float64 (``4.4110758250208``, ``0.00001``, never ``4.41e+00``), NaN empty."""
    def cell(v: float) -> str:
        return np.format_float_positional(v, trim="-") if np.isfinite(v) else ("" if np.isnan(v) else str(v))

    return [[cell(v) for v in row] for row in np.asarray(values, dtype=np.float64).tolist()]


class BaseDomain:
    """What most domains share: unconditional and class-conditional sampling and scoring, samples in
    ``samples.npy``, and a summary of the distances. A domain overrides what it does differently."""

    samples_file = "samples.npy"
    grids = False
    windows = False
    summary_keys: tuple[str, ...] = DISTANCE_KEYS
    headline: tuple[str, ...] = ("energy_distance", "precision", "recall")

    def decode_parts(self, parts: Iterable[torch.Tensor], state: dict[str, Any]) -> Any:
        """:meth:`decode` of the parts joined (a domain that decodes row by row may do better)."""
        return self.decode(torch.cat(list(parts)), state)

    def conditions(self, run: RunView, n: int, labels: Any = None, cond: torch.Tensor | None = None,
                   dataset: Dataset | None = None) -> torch.Tensor | None:
        """Unconditional runs: None. Class-conditional runs (``data.task=class``): ``labels`` is one
        class (name or index) for all ``n`` samples, or a list of ``n``; by default the classes in
        turn (0, 1, ..., K-1, 0, 1, ...)."""
        if run.task == "none":
            if labels is not None or cond is not None:
                raise UsageError("this run is unconditional; --label and --cond need a run trained with "
                                 "data.task=class, sr, edges or pairs")
            return None
        if run.task != "class":
            raise UsageError(f"data.task={run.task} is not available for {self.name} data")
        if cond is not None:
            raise UsageError("this run is class-conditional; give --label, not --cond")
        n_classes = int(run.net_args["n_classes"])
        if labels is None:
            return torch.arange(n) % n_classes
        if isinstance(labels, (list, tuple, np.ndarray)):
            if len(labels) != n:
                raise UsageError(f"{len(labels)} labels for {n} samples; give one label, or one per sample")
            return torch.tensor([run.class_index(label) for label in labels], dtype=torch.long)
        return torch.full((n,), run.class_index(labels), dtype=torch.long)

    def read_conditions(self, run: RunView, path: Path) -> torch.Tensor:
        raise UsageError("--cond is for image-conditional runs (data.task=sr, edges or pairs)")

    def score(self, run: RunView, n: int, seed: int, dataset: Dataset, G: nn.Module | None = None,
              quick: bool = False, features: str | None = None) -> dict[str, Any]:
        """Unconditional runs: ``n`` samples scored by :meth:`evaluate`. Class-conditional runs: samples of
        every class in turn, with the class each was made for passed on as ``labels``."""
        if run.task == "class":
            labels = self.conditions(run, n)
            samples = run.sample(n, seed, G=G, labels=labels.tolist(), dataset=dataset)
            return self.evaluate(samples, dataset, quick=quick, features=features, labels=labels.numpy())
        samples = run.sample(n, seed, G=G, dataset=dataset)
        return self.evaluate(samples, dataset, quick=quick, features=features)

    def summary_lines(self, scores: dict[str, Any]) -> list[str]:
        return distance_line(scores, self.summary_keys)


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, hold)`` indices of a fixed-seed shuffle of ``n`` items, ``round(fraction * n)`` held
    out for evaluation; nothing is held out from fewer than 20 items."""
    perm = np.random.default_rng(seed).permutation(n)
    n_hold = int(round(fraction * n)) if n >= 20 else 0
    return perm[n_hold:], perm[:n_hold]


DOMAINS: Registry[Domain] = Registry("domain")

CLAIM_ORDER: list[str] = []
"""The order in which domains are asked to claim a user's file (see ``ganforge.domains``)."""


def register_domain(domain: Domain) -> Domain:
    return DOMAINS.register(domain.name, domain)


def get_domain(name: str) -> Domain:
    return DOMAINS.get_entry(name)


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
        close = difflib.get_close_matches(source.lower(), list(builtin), n=1)  # "rign8", "Sines"
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UsageError(
            f"'{source}' is neither a built-in data set nor an existing file{hint}; "
            f"run 'ganforge datasets' for the names, or check the path"
        )
    for name in CLAIM_ORDER:
        if DOMAINS[name].claims(path):
            return DOMAINS[name]
    raise UsageError(f"cannot tell what kind of data '{source}' holds; name it with --domain ({', '.join(DOMAINS)})")
