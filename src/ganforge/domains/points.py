"""Points: 2-D toy distributions and user point sets of any dimension (``.npy`` or ``.csv``).

Built-in sets are drawn with a fixed data seed, so every run of a name sees the same data:
``ring8`` and ``grid25`` exactly as in the PacGAN code (Lin et al. 2018): 8 Gaussians on the unit
circle with std 0.01, and 25 Gaussians at {-4,-2,0,2,4}^2 with std 0.05, equal weights, 100,000
training points. Training happens on per-feature standardised points (``data.standardize``) and
samples are mapped back to the original scale.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ganforge.config import DataConfig
from ganforge.domains.base import (BaseDomain, Dataset, decimal_text, distance_line, holdout_indices, modes_line,
                                   register_domain)
from ganforge.errors import UsageError
from ganforge.io import check_scale, csv_delimiter, file_sha256, is_number, load_npy, title_line
from ganforge.metrics import energy_distance, mixture_metrics, mmd_rbf, prdc

DATA_SEED = 20140610  # fixed: a built-in name always means the same points
EVAL_N = 2500


@dataclass(frozen=True)
class PointSet:
    description: str
    draw: Callable[[int, np.random.Generator], np.ndarray]
    centres: np.ndarray | None = None
    std: float | None = None
    z_dim: int | None = None


def _mixture(centres: np.ndarray, std: float) -> Callable[[int, np.random.Generator], np.ndarray]:
    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        which = rng.integers(len(centres), size=n)
        return centres[which] + std * rng.standard_normal((n, centres.shape[1]))

    return draw


RING8_CENTRES = np.array([[np.cos(2 * np.pi * i / 8), np.sin(2 * np.pi * i / 8)] for i in range(8)])
GRID25_CENTRES = np.array([[x, y] for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)], dtype=np.float64)
GAUSSIAN2D_MEAN = np.array([1.0, 2.0])
GAUSSIAN2D_COV = np.array([[1.0, 0.8], [0.8, 1.0]])


def _gaussian2d(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.multivariate_normal(GAUSSIAN2D_MEAN, GAUSSIAN2D_COV, size=n)


def _swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n, noise=0.25, random_state=int(rng.integers(2**31)))
    return x[:, [0, 2]] / 7.5  # the 2-D roll of the WGAN-GP toy experiments


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=0.05, random_state=int(rng.integers(2**31)))
    return x


POINT_SETS: dict[str, PointSet] = {
    "gaussian2d": PointSet("2-D correlated Gaussian learned from a 4-number latent (Goodfellow et al.)", _gaussian2d, z_dim=4),
    "ring8": PointSet("8 Gaussians on the unit circle, std 0.01 (PacGAN)", _mixture(RING8_CENTRES, 0.01), RING8_CENTRES, 0.01),
    "grid25": PointSet("5x5 Gaussians at {-4,-2,0,2,4}^2, std 0.05 (PacGAN)", _mixture(GRID25_CENTRES, 0.05), GRID25_CENTRES, 0.05),
    "swissroll": PointSet("2-D swiss roll, noise 0.25, scaled by 1/7.5", _swissroll),
    "moons": PointSet("two interleaving half circles, noise 0.05", _moons),
}


def _read_csv_points(path: Path) -> np.ndarray:
    """Parse a numeric CSV (fields separated by ``,`` or a sniffed ``;``, tab or ``|``); one
    optional header row; every row the same width."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [(line, row) for line, row in enumerate(csv.reader(fh, delimiter=csv_delimiter(path)), start=1)
                    if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read {path}: {exc}; give a readable UTF-8 .csv of numbers") from None
    title = title_line([row for _, row in rows[:6]])
    if title is not None or (len(rows) > 2 and not _all_numeric(rows[0][1]) and not _all_numeric(rows[1][1])
                             and _all_numeric(rows[2][1])):
        raise UsageError(f"{path}: the first line ({(title or ','.join(rows[0][1]))[:40]!r}) looks like a title above "
                         "the header; remove it (a points file is an optional header row, then rows of numbers)")
    if rows and not _all_numeric(rows[0][1]):
        rows = rows[1:]  # a header row
    if not rows:
        raise UsageError(f"{path} holds no rows of numbers; give at least two rows")
    width = len(rows[0][1])
    for line, row in rows:
        if len(row) != width:
            raise UsageError(f"{path}: ragged rows, row {line} has {len(row)} values where the first had {width}; "
                             "make every row the same width")
        if not _all_numeric(row):
            bad = next(c for c in row if not is_number(c))
            raise UsageError(f"{path}: non-numeric value {bad.strip()!r} in row {line}; points files hold numbers only")
    return np.array([[float(c) for c in row] for _, row in rows], dtype=np.float64)




def _all_numeric(row: list[str]) -> bool:
    return all(is_number(c) for c in row)


POINTS_MAX_COLUMNS = 4


def csv_is_points(path: Path, max_rows: int = 1000) -> bool:
    """Whether a CSV is a points file rather than a table: after an optional header row, every cell
    of its first ``max_rows`` rows is a number and no row has more than ``POINTS_MAX_COLUMNS``
    fields. Anything wider, with text or with empty cells is a table (``--domain`` overrides this)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = []
            for row in csv.reader(fh, delimiter=csv_delimiter(path)):
                if row and any(cell.strip() for cell in row):
                    rows.append(row)
                if len(rows) > max_rows:
                    break
    except (OSError, UnicodeDecodeError, csv.Error):
        return True  # the points reader names what is wrong with it
    if rows and not _all_numeric(rows[0]):
        rows = rows[1:]
    return bool(rows) and all(len(row) <= POINTS_MAX_COLUMNS and _all_numeric(row) for row in rows)


def read_points_file(path: Path) -> np.ndarray:
    """Load ``[N, d]`` points from ``.npy`` or ``.csv`` and check them, or raise a UsageError."""
    if not path.is_file():
        raise UsageError(f"data file not found: {path}; check the path")
    if path.suffix == ".npy":
        array = load_npy(path)
    elif path.suffix == ".csv":
        array = _read_csv_points(path)
    else:
        raise UsageError(f"{path}: points files must be .npy or .csv")
    if array.dtype.kind not in "biuf":
        raise UsageError(f"{path}: expected numbers, found dtype {array.dtype}; save a numeric array")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] == 0:
        raise UsageError(f"{path}: points must be a 2-D array [N, d] with d >= 1, got shape {tuple(array.shape)}")
    if len(array) < 2:
        raise UsageError(f"{path}: need at least 2 points, found {len(array)}")
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise UsageError(f"{path}: {int(bad.any(axis=1).sum())} row(s) hold NaN or inf (first: row {row}); "
                         "remove or impute them")
    check_scale(array, str(path))
    return array.astype(np.float64)


class PointsDomain(BaseDomain):
    name = "points"
    default_net = "mlp"
    default_z_dim = 16
    defaults: dict[str, Any] = {}  # the dataclass defaults are the points recipe
    headline = ("modes", "hq_fraction", "reverse_kl", "energy_distance")

    def builtin_names(self) -> dict[str, str]:
        return {name: s.description for name, s in POINT_SETS.items()}

    def claims(self, path: Path) -> bool:
        if path.suffix == ".csv":
            return csv_is_points(path)
        if path.suffix == ".npy":
            try:
                return np.load(path, mmap_mode="r", allow_pickle=False).ndim in (1, 2)
            except (ValueError, OSError, EOFError):
                return True  # let load() report what is wrong with it
        return False

    def load(self, cfg: DataConfig) -> Dataset:
        meta: dict[str, Any] = {}
        if cfg.source in POINT_SETS:
            spec = POINT_SETS[cfg.source]
            rng = np.random.default_rng(DATA_SEED)
            raw = spec.draw(cfg.n, rng)
            holdout = spec.draw(EVAL_N, np.random.default_rng(DATA_SEED + 1))
            fingerprint = f"builtin:{cfg.source}:n={cfg.n}"
            if spec.centres is not None:
                meta.update(centres=spec.centres, std=spec.std)
            if spec.z_dim:
                meta["z_dim"] = spec.z_dim
        else:
            path = Path(cfg.source)
            array = read_points_file(path)
            fingerprint = "sha256:" + file_sha256(path)
            keep, hold = holdout_indices(len(array), cfg.holdout, DATA_SEED)
            holdout = array[hold] if len(hold) else None
            raw = array[keep]
        mean = raw.mean(axis=0) if cfg.standardize else np.zeros(raw.shape[1])
        std = raw.std(axis=0) if cfg.standardize else np.ones(raw.shape[1])
        std = np.where(std > 0, std, 1.0)
        train = torch.from_numpy(((raw - mean) / std).astype(np.float32))
        state = {"mean": mean.tolist(), "std": std.tolist(), "fingerprint": fingerprint, "dim": int(raw.shape[1])}
        return Dataset(cfg.source, self.name, train, state, holdout, meta)

    def decode(self, encoded: torch.Tensor, state: dict[str, Any]) -> np.ndarray:
        x = encoded.detach().cpu().double().numpy()
        return x * np.asarray(state["std"]) + np.asarray(state["mean"])

    def evaluate(self, samples: np.ndarray, dataset: Dataset, quick: bool = False,
                 features: str | None = None) -> dict[str, Any]:
        """Mixture metrics where the modes are known, distances to held-out real points always.

        ``quick`` (used during training) keeps the cheap metrics: the mixture protocol, or the energy
        distance on 1,000 points where no modes are known.
        """
        if features:
            raise UsageError(f"--features {features} scores images; points are scored directly, without it")
        result: dict[str, Any] = {"n": int(len(samples))}
        if "centres" in dataset.meta:
            result.update(mixture_metrics(samples, dataset.meta["centres"], dataset.meta["std"]))
        if dataset.holdout is not None and len(dataset.holdout) >= 10 and not (quick and "centres" in dataset.meta):
            n = 1000 if quick else EVAL_N
            scale = np.asarray(dataset.state["std"])  # distances in standardised units
            real, fake = dataset.holdout[:n] / scale, samples[:n] / scale
            result["energy_distance"] = energy_distance(real, fake)
            if not quick:
                result["mmd_rbf"] = mmd_rbf(real, fake)
                result.update(prdc(real, fake, k=5))
        return result

    def save_samples(self, samples: np.ndarray, path: Path, columns: int | None = None) -> None:
        """``.npy`` or ``.csv`` rows; ``columns`` is for pictures and does not apply to points."""
        from ganforge.io import atomic_write

        if path.suffix == ".npy":
            with atomic_write(path, "wb") as fh:
                np.save(fh, samples)
        elif path.suffix == ".csv":  # plain decimals (4.4110758250208, not 4.411075825020800423e+00)
            with atomic_write(path, "w") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(f"x{i}" for i in range(samples.shape[1]))
                writer.writerows(decimal_text(samples))
        else:
            raise UsageError(f"--out {path}: points are written as .npy or .csv")

    def plot(self, samples: np.ndarray, dataset: Dataset, path: Path) -> None:
        """Scatter of generated samples over real data (first two coordinates)."""
        from ganforge.render.plots import scatter_over_real

        real = dataset.holdout if dataset.holdout is not None else self.decode(dataset.train[:EVAL_N], dataset.state)
        scatter_over_real(real, samples, dataset.meta.get("centres"), dataset.name, path)

    def summary_lines(self, scores: dict[str, Any]) -> list[str]:
        return modes_line(scores) + distance_line(scores)


register_domain(PointsDomain())
