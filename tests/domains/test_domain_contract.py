"""The contract every registered domain inherits, on a small file of its kind written by the test:
load, the encoded tensor, the decode round trip, evaluate, save_samples, plot, summary lines, claims.

The domains are read from the registry when the tests are collected; a newly registered domain
fails ``test_every_registered_domain_has_a_case`` (and its own cases) until it has an entry in
``DOMAIN_CASES``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytest
import torch

from ganforge.config import DataConfig
from ganforge.domains import DOMAINS, Dataset, get_domain, infer_domain

N_SAMPLES = 16  # decoded training samples given to evaluate, save_samples and plot


def sorted_rows(x: np.ndarray) -> np.ndarray:
    """The samples ``[N, ...]`` as rows ``[N, D]`` in lexicographic order (a split shuffles them)."""
    rows = np.asarray(x).reshape(len(x), -1)
    return rows[np.lexsort(rows.T[::-1])]


def sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows in the order of the first column (an integer one, decoded exactly)."""
    return frame.sort_values(frame.columns[0]).reset_index(drop=True)


# --- one small data set per domain, in the user's space ------------------------------------------

def write_points(tmp: Path) -> tuple[Path, np.ndarray]:
    """200 points of 2-D correlated Gaussians in a ``.npy``."""
    raw = np.random.default_rng(0).normal(size=(200, 2)) @ np.array([[2.0, 0.5], [0.0, 0.3]]) + [10.0, -3.0]
    np.save(tmp / "points.npy", raw)
    return tmp / "points.npy", raw


def write_images(tmp: Path) -> tuple[Path, np.ndarray]:
    """A flat folder of 24 RGB 8x8 PNGs."""
    from PIL import Image

    raw = np.random.default_rng(0).integers(0, 256, size=(24, 8, 8, 3), dtype=np.uint8)
    folder = tmp / "pictures"
    folder.mkdir()
    for i, pixels in enumerate(raw):
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return folder, raw


def write_table(tmp: Path) -> tuple[Path, pd.DataFrame]:
    """80 rows: an integer column (a different year in every row), a continuous column of two
    clusters, a categorical column."""
    rng = np.random.default_rng(0)
    n = 80
    raw = pd.DataFrame({
        "built": rng.permutation(np.arange(1900, 1900 + n)),
        "price": np.where(rng.random(n) < 0.5, rng.normal(20, 2, n), rng.normal(60, 5, n)).round(2),
        "city": rng.choice(["paris", "lyon", "nice"], n),
    })
    raw.to_csv(tmp / "homes.csv", index=False)
    return tmp / "homes.csv", raw


SERIES_WINDOW, SERIES_STRIDE = 8, 2


def write_series(tmp: Path) -> tuple[Path, np.ndarray]:
    """40 days of two random walks in a CSV with a date index; returns the windows it is cut into."""
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(size=(40, 2)), axis=0) * [1.0, 50.0] + [5.0, 100.0]
    dates = np.arange("2021-03-01", "2021-04-10", dtype="datetime64[D]")
    lines = ["date,temperature,load"] + [f"{d},{v[0]!r},{v[1]!r}" for d, v in zip(dates, values.tolist())]
    (tmp / "meter.csv").write_text("\n".join(lines) + "\n")
    windows = np.stack([values[s:s + SERIES_WINDOW] for s in range(0, 40 - SERIES_WINDOW + 1, SERIES_STRIDE)])
    return tmp / "meter.csv", windows


# --- how each domain gives its data back ----------------------------------------------------------

def split_rows_restored(decoded: np.ndarray, dataset: Dataset, raw: np.ndarray, atol: float) -> None:
    """Decoded training samples and the held-out ones together are the file's samples."""
    parts = [decoded] + ([dataset.holdout] if dataset.holdout is not None else [])
    np.testing.assert_allclose(sorted_rows(np.concatenate(parts)), sorted_rows(raw), rtol=0, atol=atol)


def images_restored(decoded: np.ndarray, dataset: Dataset, raw: np.ndarray) -> None:
    assert decoded.dtype == np.uint8
    split_rows_restored(decoded, dataset, raw, atol=0)  # 8-bit pixels come back exactly


def table_restored(decoded: pd.DataFrame, dataset: Dataset, raw: pd.DataFrame) -> None:
    parts = [decoded] + ([dataset.holdout] if dataset.holdout is not None else [])
    pd.testing.assert_frame_equal(sorted_frame(pd.concat(parts)), sorted_frame(raw), check_exact=False,
                                  rtol=0, atol=1e-3)


def series_restored(decoded: np.ndarray, dataset: Dataset, raw: np.ndarray) -> None:
    """Every window in order, in the file's units (series scores compare against all of them)."""
    np.testing.assert_allclose(np.asarray(decoded), raw, rtol=1e-5, atol=1e-4)


def read_back(path: Path) -> Any:
    return pd.read_csv(path) if path.suffix == ".csv" else np.load(path, allow_pickle=False)


def assert_same_samples(got: Any, want: Any) -> None:
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
    else:
        np.testing.assert_array_equal(got, np.asarray(want))
        assert got.dtype == np.asarray(want).dtype


@dataclass(frozen=True)
class DomainCase:
    write: Callable[[Path], tuple[Path, Any]]
    """Writes the data file into a folder; returns its path and the data in the user's space."""
    restored: Callable[[Any, Dataset, Any], None]
    """Asserts that the decoded training samples (with the data set) give back the written data."""
    data: dict = field(default_factory=dict)
    """DataConfig settings beyond the source."""


DOMAIN_CASES: dict[str, DomainCase] = {
    "points": DomainCase(write_points, lambda decoded, ds, raw: split_rows_restored(decoded, ds, raw, atol=1e-5)),
    "images": DomainCase(write_images, images_restored),
    "table": DomainCase(write_table, table_restored),
    "series": DomainCase(write_series, series_restored, {"window": SERIES_WINDOW, "stride": SERIES_STRIDE}),
}


@dataclass
class Loaded:
    name: str
    case: DomainCase
    path: Path
    raw: Any
    dataset: Dataset

    @property
    def domain(self):
        return get_domain(self.name)

    def samples(self) -> Any:
        return self.domain.decode(self.dataset.train[:N_SAMPLES], self.dataset.state)


@pytest.fixture(scope="module", params=sorted(DOMAINS))
def loaded(request, tmp_path_factory) -> Loaded:
    """Each domain's file, written and loaded once for the module."""
    name = request.param
    if name not in DOMAIN_CASES:
        pytest.fail(f"domain '{name}' is registered but has no entry in DOMAIN_CASES; add a small file of its kind")
    case = DOMAIN_CASES[name]
    path, raw = case.write(tmp_path_factory.mktemp(name))
    dataset = get_domain(name).load(DataConfig(source=str(path), domain=name, **case.data))
    return Loaded(name, case, path, raw, dataset)


def test_every_registered_domain_has_a_case():
    assert set(DOMAIN_CASES) == set(DOMAINS)


def test_registry_names_match_and_builtin_names_are_described(loaded):
    domain = loaded.domain
    assert domain.name == loaded.name and loaded.dataset.domain == loaded.name
    names = domain.builtin_names()
    assert isinstance(names, dict)
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in names.items())


def test_claims_its_own_file(loaded):
    assert loaded.domain.claims(loaded.path)
    assert infer_domain(str(loaded.path)).name == loaded.name  # and no domain asked earlier takes it


def test_train_is_a_finite_float32_tensor_of_samples(loaded):
    """What the trainers see: the encoded rows (images keep uint8 pixels and encode each minibatch)."""
    train = loaded.dataset.encoded()
    assert isinstance(train, torch.Tensor) and train.dtype == torch.float32
    assert train.dim() >= 2 and len(train) >= 2 and tuple(train.shape[1:]) == loaded.dataset.sample_shape
    assert torch.isfinite(train).all()


def test_decode_gives_back_the_data_written(loaded):
    decoded = loaded.domain.decode(loaded.dataset.train, loaded.dataset.state)
    assert len(decoded) == len(loaded.dataset.train)
    loaded.case.restored(decoded, loaded.dataset, loaded.raw)


def test_state_is_json_and_decodes_alone(loaded):
    """A run decodes its samples from the saved state, without the data."""
    state = json.loads(json.dumps(loaded.dataset.state))
    assert_same_samples(loaded.domain.decode(loaded.dataset.train[:N_SAMPLES], state), loaded.samples())


def numeric_leaves(value: Any, key: str = "scores") -> list[tuple[str, float]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in numeric_leaves(v, f"{key}.{k}")]
    if isinstance(value, (list, tuple)):
        return [leaf for i, v in enumerate(value) for leaf in numeric_leaves(v, f"{key}[{i}]")]
    if isinstance(value, (bool, str)) or value is None:
        return []
    return [(key, float(value))]


@pytest.fixture(scope="module")
def scores(loaded) -> dict:
    return loaded.domain.evaluate(loaded.samples(), loaded.dataset, quick=True)


def test_evaluate_gives_finite_numbers(scores):
    assert isinstance(scores, dict) and scores
    leaves = numeric_leaves(scores)
    assert leaves and not [key for key, v in leaves if not math.isfinite(v)]


def test_summary_lines_are_strings(loaded, scores):
    lines = loaded.domain.summary_lines(scores)
    assert isinstance(lines, list) and all(isinstance(line, str) for line in lines)


def test_saved_samples_read_back_the_same(loaded, tmp_path):
    path = tmp_path / loaded.domain.samples_file
    samples = loaded.samples()
    loaded.domain.save_samples(samples, path)
    assert_same_samples(read_back(path), samples)


def test_plot_writes_a_png(loaded, tmp_path):
    path = tmp_path / "plot.png"
    loaded.domain.plot(loaded.samples(), loaded.dataset, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
