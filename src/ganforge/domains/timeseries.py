"""Series: windows of one or many multivariate series, scaled per feature to [0, 1] as TimeGAN does.

Two spaces, as for every domain:

- encoded (what the engine trains on): float32 ``[N, L, F]`` in [0, 1], each feature min-max
  scaled over every window and step (TimeGAN's ``MinMaxScaler``; a constant feature maps to 0);
  when windows have different lengths, one more channel holds the mask (1 = a real step, 0 =
  padding after the end) and padded steps are 0;
- the user's space (``decode``, ``Dataset.holdout``, ``save_samples``, ``evaluate``, ``plot``):
  float64 ``[N, L, F]`` in the original units, NaN after the end of a shorter window.

Sources: a CSV whose first column is a time index (dates, or a column named date/time/...),
``.npy`` of one series ``[T]`` / ``[T, F]`` or of a set of windows ``[N, L, F]`` (trailing all-NaN
rows end a sequence early), ``.npz`` of several series (one array each), a UCR/UEA ``.ts`` file
(a set of sequences), and in Python a NumPy array, a DataFrame with a time index, or a list of
them (:func:`read_series`). Long series are cut into windows of ``data.window`` steps (24 by
default), ``data.stride`` apart; a set of sequences is used whole unless ``data.window`` is set.

Built-in sets never touch the network: ``sines`` is TimeGAN's generator; ``macrodata``, ``msft``
and ``basicmotions`` are read from data files shipped inside statsmodels, pmdarima and aeon (or
sktime), located through the package metadata without importing the packages.

Scores follow the TimeGAN protocol (:mod:`ganforge.metrics.timeseries`) and are computed where
TimeGAN computes them: on the user's values when every feature already lies in [0, 1] (sines),
otherwise on the min-max scaled values (TimeGAN scales its stock and energy data before anything
else). As in TimeGAN's code, synthetic windows are compared with the data the model was trained
on (``sines``: an independent draw of the same size), so the scores measure fidelity, not
generalisation.
"""

from __future__ import annotations

import csv
import io
import tarfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ganforge.config import DataConfig
from ganforge.domains.base import DISTANCE_KEYS, BaseDomain, Dataset, decimal_text, distance_line, register_domain
from ganforge.errors import UsageError
from ganforge.io import check_scale, csv_delimiter, file_sha256, is_number, load_npy, load_npz, package_file, title_line
from ganforge.registry import Registry

DATA_SEED = 20140610  # fixed: a built-in name always means the same series
DEFAULT_WINDOW = 24  # TimeGAN's sequence length
SINES_N, SINES_LENGTH, SINES_FEATURES = 10_000, 24, 5
Z_STEP = 4  # latent entries per time step of the domain's default latent (z_dim = L * Z_STEP)
MAX_WINDOW_FEATURES = 64  # a 3-D .npy with at most this many features (last axis) ...
MIN_WINDOW_LENGTH = 8  # ... and at least this many steps is a set of windows, unless it looks like images
QUICK_N, QUICK_DISC_ITERATIONS, QUICK_PRED_ITERATIONS = 1000, 200, 400
FAST_REPEATS, FAST_DISC_ITERATIONS, FAST_PRED_ITERATIONS = 2, 1000, 1000
PLOT_N = 1000  # windows per side in the PCA / t-SNE picture (TimeGAN's visualisation uses 1,000)
TIME_NAMES = {"date", "time", "datetime", "timestamp", "period", "t", "step", "index"}


# ---------------------------------------------------------------------------------------------
# Reading series


@dataclass
class SeriesSource:
    """Series read from a source, before windowing."""

    series: list[np.ndarray]
    """Each ``[T_i, F]`` float64, finite (sets of sequences: trailing padding already removed)."""
    columns: list[str]
    is_set: bool
    """A set of sequences (each one a sample, used whole by default), not long series to cut."""
    fingerprint: str = ""


def is_window_array(shape: Sequence[int], dtype: np.dtype) -> bool:
    """Whether a 3-D array is a set of windows ``[N, L, F]`` rather than gray images ``[N, H, W]``.

    Windows: signed integers or floats, at most 64 features (last axis), at least 8 steps, and
    not square (``L != F``). Images keep unsigned integers (uint8 pixels) and square pictures
    (8x8, 28x28); ``--domain`` overrides the guess either way.
    """
    return (len(shape) == 3 and np.dtype(dtype).kind in "if" and shape[2] <= MAX_WINDOW_FEATURES
            and shape[1] >= MIN_WINDOW_LENGTH and shape[1] != shape[2])




def _is_date(cell: str) -> bool:
    text = cell.strip()
    if not text or is_number(text):
        return False
    try:
        datetime.fromisoformat(text)
        return True
    except ValueError:
        pass
    try:
        np.datetime64(text)
        return True
    except ValueError:
        return False


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter=csv_delimiter(path))
            return [(line, row) for line, row in enumerate(reader, start=1) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot read {path}: {exc}; give a readable UTF-8 .csv") from None


def csv_has_time_index(path: Path) -> bool:
    """A CSV whose first column is a time index: named like one (date, time, ...) or holding dates."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter=csv_delimiter(path))
            first = next(reader, [])
            second = next(reader, [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    if not first:
        return False
    return first[0].strip().lower() in TIME_NAMES or _is_date(first[0]) or (bool(second) and _is_date(second[0]))


def _time_key(cell: str) -> Any:
    text = cell.strip()
    if is_number(text):
        return float(text)
    try:
        return np.datetime64(datetime.fromisoformat(text))
    except ValueError:
        return np.datetime64(text)


def read_csv_series(path: Path) -> SeriesSource:
    """One series ``[T, F]`` from a CSV: an optional header row, an optional time index in the
    first column (rows are put in time order), every other cell a number."""
    rows = _csv_rows(path)
    if not rows:
        raise UsageError(f"{path} holds no rows; give a CSV with one row per time step")
    title = title_line([row for _, row in rows[:6]])
    if title is not None:
        raise UsageError(f"{path}: the first line ({title[:40]!r}) has fewer fields than the lines after it: a title "
                         "above the header? remove it (the first line must be the header or the first time step)")
    indexed = csv_has_time_index(path)
    first = 1 if indexed else 0
    header = None
    if not all(is_number(c) for c in rows[0][1][first:]) or (indexed and not _is_date(rows[0][1][0])
                                                               and not is_number(rows[0][1][0])):
        header, rows = rows[0][1], rows[1:]
    if not rows:
        raise UsageError(f"{path} holds a header but no data rows")
    width = len(rows[0][1])
    columns = [c.strip() for c in header[first:]] if header else [f"x{i}" for i in range(width - first)]
    if width - first < 1:
        raise UsageError(f"{path}: no value columns besides the time index")
    values = np.empty((len(rows), width - first))
    for i, (line, row) in enumerate(rows):
        if len(row) != width:
            raise UsageError(f"{path}: row {line} has {len(row)} cells where the first had {width}; "
                             "make every row the same width")
        for j, cell in enumerate(row[first:]):
            values[i, j] = _parse_value(cell, path, line, columns[j] if j < len(columns) else f"x{j}")
    if indexed:
        try:
            keys = [_time_key(row[0]) for _, row in rows]
            order = sorted(range(len(keys)), key=lambda k: keys[k])
        except (ValueError, TypeError):
            raise UsageError(f"{path}: the time index (first column) mixes dates and numbers or holds a value "
                             "that is not a time; fix that column") from None
        values = values[order]
    return SeriesSource([values], columns, is_set=False, fingerprint="sha256:" + file_sha256(path))


def _parse_value(cell: str, path: Path, line: int, column: str) -> float:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        if text.lower() in ("", "na", "nan", "null", "none", "?"):
            raise UsageError(f"{path}: missing value in column '{column}', row {line}; fill or drop it "
                             "(series must be complete)") from None
        raise UsageError(f"{path}: non-numeric value {text!r} in column '{column}', row {line}; series hold numbers "
                         "only") from None
    if np.isnan(value):
        raise UsageError(f"{path}: missing value in column '{column}', row {line}; fill or drop it "
                         "(series must be complete)")
    if not np.isfinite(value):
        raise UsageError(f"{path}: {text} in column '{column}', row {line}; series must be finite, fix it")
    return value


def _check_finite(series: np.ndarray, where: str) -> np.ndarray:
    if series.dtype.kind not in "biuf":
        raise UsageError(f"{where}: non-numeric values (dtype {series.dtype}); series hold numbers only")
    series = np.asarray(series, dtype=np.float64)
    bad = ~np.isfinite(series)
    if bad.any():
        step, feature = (int(v) for v in np.argwhere(bad)[0][:2])
        raise UsageError(f"{where}: {int(bad.sum())} NaN or infinite value(s), the first at step {step}, feature "
                         f"{feature}; fill or drop them (series must be complete)")
    check_scale(series, where)
    return series


def _trim_sequence(seq: np.ndarray, where: str) -> np.ndarray:
    """A sequence ``[L, F]`` whose trailing all-NaN rows are padding: those removed, any other NaN an error."""
    valid = ~np.isnan(seq).all(axis=1)
    length = int(len(seq) - np.argmax(valid[::-1])) if valid.any() else 0
    if length == 0:
        raise UsageError(f"{where} is all NaN; drop it")
    return _check_finite(seq[:length], where)


def _as_2d(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise UsageError(f"{where}: non-numeric values (dtype {array.dtype}); series hold numbers only")
    if array.ndim == 1:
        return array[:, None]
    if array.ndim != 2 or array.shape[1] == 0:
        raise UsageError(f"{where}: a series is [T] or [T, features] with at least one feature, got shape "
                         f"{list(array.shape)}")
    return array


def series_from_array(array: np.ndarray, where: str) -> SeriesSource:
    """``[T]`` / ``[T, F]``: one series; ``[N, L, F]``: a set of sequences (trailing NaN rows end one early)."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise UsageError(f"{where}: non-numeric values (dtype {array.dtype}); series hold numbers only")
    if array.ndim == 3:
        if 0 in array.shape:
            raise UsageError(f"{where}: a set of sequences [N, length, features] with no empty axis, got shape "
                             f"{list(array.shape)}")
        seqs = [_trim_sequence(np.asarray(s, dtype=np.float64), f"{where}: sequence {i}") for i, s in enumerate(array)]
        return SeriesSource(seqs, [f"x{i}" for i in range(array.shape[2])], is_set=True)
    series = _check_finite(_as_2d(array, where), where)
    return SeriesSource([series], [f"x{i}" for i in range(series.shape[1])], is_set=False)


def _from_frame(frame: Any, where: str) -> tuple[np.ndarray, list[str]]:
    """A pandas DataFrame (rows in time order, sorted by its index) -> values and column names."""
    try:
        frame = frame.sort_index()
    except TypeError:
        pass
    columns = [str(c) for c in frame.columns]
    for name in frame.columns:
        if frame[name].dtype.kind not in "biuf":
            raise UsageError(f"{where}: column '{name}' holds non-numeric values ({frame[name].dtype}); series hold "
                             "numbers only")
    return _check_finite(frame.to_numpy(dtype=np.float64), where), columns


def read_series(source: Any, where: str = "series") -> SeriesSource:
    """Series from Python objects: a NumPy array (see :func:`series_from_array`), a DataFrame
    (columns are features, rows in the order of its time index), or a list of arrays / DataFrames
    (many series, each cut into windows)."""
    if isinstance(source, (str, Path)):
        return read_series_file(Path(source))
    if hasattr(source, "to_numpy") and hasattr(source, "columns"):
        values, columns = _from_frame(source, where)
        return SeriesSource([values], columns, is_set=False)
    if isinstance(source, (list, tuple)):
        if not source:
            raise UsageError(f"{where}: an empty list holds no series")
        parts = [read_series(item, f"{where} {i}") for i, item in enumerate(source)]
        widths = {p.series[0].shape[1] for p in parts}
        if len(widths) != 1:
            raise UsageError(f"{where}: the series have different numbers of features ({sorted(widths)}); "
                             "give them the same columns")
        return SeriesSource([s for p in parts for s in p.series], parts[0].columns, is_set=False)
    return series_from_array(np.asarray(source), where)


def read_ts_file(path: Path) -> SeriesSource:
    """A UCR/UEA ``.ts`` file (sktime's format): one case per line, its dimensions separated by
    ``:``, values by ``,``, ``?`` for missing (trailing ones: a shorter case), class label last."""
    lines = _text_lines(path)
    has_label, dims, data_at = False, None, None
    for i, line in enumerate(lines):
        low = line.strip().lower()
        if low.startswith("@timestamps") and low.split()[-1] == "true":
            raise UsageError(f"{path}: .ts files with time stamps are not supported; save the values only")
        if low.startswith("@classlabel"):
            has_label = low.split()[1] == "true"
        if low.startswith("@dimensions"):
            dims = int(low.split()[1])
        if low.startswith("@data"):
            data_at = i + 1
            break
    if data_at is None:
        raise UsageError(f"{path}: no @data line; give a UCR/UEA .ts file")
    seqs = []
    for n, line in enumerate(ln for ln in lines[data_at:] if ln.strip() and not ln.startswith("#")):
        parts = line.strip().split(":")
        channels = parts[:-1] if has_label else parts
        if dims is not None and len(channels) != dims:
            raise UsageError(f"{path}: case {n} has {len(channels)} dimensions, the header says {dims}")
        try:
            values = [[float("nan") if v.strip() == "?" else float(v) for v in ch.split(",")] for ch in channels]
        except ValueError:
            raise UsageError(f"{path}: case {n} holds a non-numeric value; series hold numbers only") from None
        length = max(len(v) for v in values)
        seq = np.full((length, len(values)), np.nan)
        for j, v in enumerate(values):
            seq[: len(v), j] = v
        seqs.append(_trim_sequence(seq, f"{path}: case {n}"))
    if not seqs:
        raise UsageError(f"{path} holds no cases after @data")
    if len({s.shape[1] for s in seqs}) != 1:
        raise UsageError(f"{path}: cases have different numbers of dimensions")
    return SeriesSource(seqs, [f"dim_{i}" for i in range(seqs[0].shape[1])], is_set=True)


def _text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}; give a readable UTF-8 file") from None


def read_series_file(path: Path) -> SeriesSource:
    """Series from ``.csv`` (time index first), ``.npy``, ``.npz`` (one series per array) or ``.ts``."""
    if not path.is_file():
        raise UsageError(f"data file not found: {path}; check the path")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_series(path)
    if suffix == ".ts":
        source = read_ts_file(path)
    elif suffix == ".npy":
        source = series_from_array(load_npy(path), str(path))
    elif suffix == ".npz":
        arrays = load_npz(path)
        if not arrays:
            raise UsageError(f"{path} holds no arrays")
        source = read_series([_as_2d(array, f"{path}[{k}]") for k, array in arrays.items()], str(path))
    else:
        raise UsageError(f"{path}: series files are .csv (time index first), .npy, .npz or .ts")
    source.fingerprint = "sha256:" + file_sha256(path)
    return source


# ---------------------------------------------------------------------------------------------
# Built-in sets (no network at run time)

STATSMODELS_INSTALL = "pip install --no-deps statsmodels"
PMDARIMA_INSTALL = "pip install --no-deps pmdarima"
AEON_INSTALL = "pip install --no-deps aeon"


def sine_data(n: int, length: int, features: int, rng: np.random.Generator) -> np.ndarray:
    """TimeGAN's ``sine_data_generation``: ``[n, length, features]``, feature k of sample i is
    ``(sin(f * t + p) + 1) / 2`` for t = 0..length-1, with its own frequency f and phase p, each
    U(0, 0.1) (drawn in TimeGAN's order: per sample, per feature, frequency then phase)."""
    fp = rng.uniform(0.0, 0.1, size=(n, features, 2))
    t = np.arange(length, dtype=np.float64)[None, :, None]
    freq, phase = fp[:, None, :, 0], fp[:, None, :, 1]  # [n, 1, features]
    return (np.sin(freq * t + phase) + 1.0) * 0.5


def _sines(cfg: DataConfig) -> tuple[SeriesSource, np.ndarray]:
    n = SINES_N if cfg.n == DataConfig().n else cfg.n  # data.n is the points default unless set
    train = sine_data(n, SINES_LENGTH, SINES_FEATURES, np.random.default_rng(DATA_SEED))
    holdout = sine_data(n, SINES_LENGTH, SINES_FEATURES, np.random.default_rng(DATA_SEED + 1))
    source = SeriesSource(list(train), [f"sine{i}" for i in range(SINES_FEATURES)], is_set=True,
                          fingerprint=f"builtin:sines:n={n}")
    return source, holdout


def _macrodata(cfg: DataConfig) -> tuple[SeriesSource, None]:
    path = package_file("statsmodels", "statsmodels/datasets/macrodata/macrodata.csv", "built-in data set 'macrodata'",
                        STATSMODELS_INSTALL)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    header, body = rows[0], [r for r in rows[1:] if r]
    values = np.array([[float(c) for c in r[2:]] for r in body])  # year, quarter are the time index
    if values.shape != (203, 12):
        raise UsageError(f"{path} is not the expected 203 x 14 macrodata table; reinstall: {STATSMODELS_INSTALL}")
    return SeriesSource([values], header[2:], is_set=False, fingerprint="builtin:macrodata"), None


def _msft(cfg: DataConfig) -> tuple[SeriesSource, None]:
    path = package_file("pmdarima", "pmdarima/datasets/data/msft.tar.gz", "built-in data set 'msft'", PMDARIMA_INSTALL)
    try:
        with tarfile.open(path, "r:gz") as archive:  # read one member's bytes; nothing is extracted
            text = archive.extractfile("msft.csv").read().decode("utf-8")
    except (tarfile.TarError, KeyError, AttributeError, OSError) as exc:
        raise UsageError(f"cannot read msft.csv from {path} ({exc}); reinstall: {PMDARIMA_INSTALL}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    header, body = rows[0], rows[1:]
    keep = [header.index(c) for c in ("Open", "High", "Low", "Close", "Volume")]  # OpenInt is always 0
    values = np.array([[float(r[k]) for k in keep] for r in body])
    return SeriesSource([values], [header[k] for k in keep], is_set=False, fingerprint="builtin:msft"), None


def _basicmotions(cfg: DataConfig) -> tuple[SeriesSource, None]:
    from importlib import metadata

    for dist, prefix in (("aeon", "aeon/datasets/data"), ("sktime", "sktime/datasets/data")):
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            continue
        parts = [read_ts_file(package_file(dist, f"{prefix}/BasicMotions/BasicMotions_{split}.ts",
                                           "built-in data set 'basicmotions'", AEON_INSTALL))
                 for split in ("TRAIN", "TEST")]
        source = SeriesSource(parts[0].series + parts[1].series, ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"],
                              is_set=True, fingerprint="builtin:basicmotions")
        return source, None
    raise UsageError(f"built-in data set 'basicmotions' needs the aeon (or sktime) package; install it with: {AEON_INSTALL}")


@dataclass(frozen=True)
class BuiltinSeries:
    description: str
    read: Callable[[DataConfig], tuple[SeriesSource, np.ndarray | None]]
    """-> (the series, an independent real set for scoring or None to score against the training windows)."""


BUILTIN_SERIES: dict[str, BuiltinSeries] = {
    "sines": BuiltinSeries("TimeGAN's sines: 10,000 windows of 24 steps x 5 features, frequency and phase U(0, 0.1)",
                           _sines),
    "macrodata": BuiltinSeries(f"US macroeconomic quarterly data 1959-2009, 203 x 12 series, from statsmodels "
                               f"({STATSMODELS_INSTALL})", _macrodata),
    "msft": BuiltinSeries(f"Microsoft daily prices 1986-2017, 7,983 days x open/high/low/close/volume, from pmdarima "
                          f"({PMDARIMA_INSTALL})", _msft),
    "basicmotions": BuiltinSeries(f"UEA BasicMotions, 80 smart-watch recordings of 100 steps x 6 channels, from aeon "
                                  f"or sktime ({AEON_INSTALL})", _basicmotions),
}


# ---------------------------------------------------------------------------------------------
# Windows and scaling


def make_windows(source: SeriesSource, window: int, stride: int, where: str) -> np.ndarray:
    """``[N, L, F]`` windows (NaN after the end of a shorter sequence) from the source's series."""
    if window < 0 or window == 1:
        raise UsageError(f"data.window must be 0 (automatic) or >= 2, got {window}")
    if stride < 1:
        raise UsageError(f"data.stride must be >= 1, got {stride}")
    if source.is_set and window == 0:
        length = max(len(s) for s in source.series)
        out = np.full((len(source.series), length, source.series[0].shape[1]), np.nan)
        for i, s in enumerate(source.series):
            out[i, : len(s)] = s
        return out
    window = window or DEFAULT_WINDOW
    windows = []
    for i, s in enumerate(source.series):
        if len(s) < window:
            name = f"sequence {i} of {where}" if len(source.series) > 1 else where
            raise UsageError(f"{name} has {len(s)} steps, fewer than the window of {window} (data.window); "
                             f"lower data.window or give longer series")
        view = np.lib.stride_tricks.sliding_window_view(s, window, axis=0)[::stride]  # [n, F, window]
        windows.append(view.transpose(0, 2, 1))
    return np.ascontiguousarray(np.concatenate(windows), dtype=np.float64)


class SeriesWindows(np.ndarray):
    """``[N, L, F]`` windows in the user's units that remember their feature names (``.columns``)."""

    columns: list[str] | None

    def __array_finalize__(self, obj: Any) -> None:
        self.columns = getattr(obj, "columns", None)


def encode(windows: np.ndarray, lo: np.ndarray, scale: np.ndarray, masked: bool) -> torch.Tensor:
    """User-space windows -> float32 ``[N, L, F (+1 mask)]`` in [0, 1], padding 0."""
    x = (windows - lo) / scale
    if masked:
        mask = ~np.isnan(windows).all(axis=2, keepdims=True)
        x = np.concatenate([x, mask.astype(np.float64)], axis=2)
    return torch.from_numpy(np.nan_to_num(x, nan=0.0).astype(np.float32))


def decode_windows(encoded: torch.Tensor | np.ndarray, state: dict[str, Any]) -> SeriesWindows:
    """Encoded ``[N, L, F (+1)]`` -> the user's units; with a mask channel, a window ends at the first
    step whose mask is below 0.5 (at least one step is kept) and is NaN from there on."""
    x = encoded.detach().cpu().double().numpy() if isinstance(encoded, torch.Tensor) else np.asarray(encoded, float)
    features = int(state["features"])
    values = x[..., :features] * np.asarray(state["scale"]) + np.asarray(state["min"])
    if state.get("masked"):
        alive = np.cumprod(x[..., features] >= 0.5, axis=1).astype(bool)
        alive[:, 0] = True
        values[~alive] = np.nan
    out = values.view(SeriesWindows)
    out.columns = list(state["columns"])
    return out


def to_score_space(windows: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """The values TimeGAN scores: the user's when the data lie in [0, 1], else min-max scaled."""
    windows = np.asarray(windows, dtype=np.float64)
    if state.get("score_space") == "raw":
        return windows
    return (windows - np.asarray(state["min"])) / np.asarray(state["scale"])


# ---------------------------------------------------------------------------------------------
# The domain


@dataclass(frozen=True)
class ScoreProtocol:
    """How much work TimeGAN's two post-hoc scores get in one evaluation (see ``data.eval_protocol``)."""

    repeats: int
    """Repeats of each score, at most ``data.metric_repeats`` (0 skips both); 0 here: all of them."""
    disc_iterations: int
    pred_iterations: int
    max_windows: int = 0
    """Windows scored a side, at most (0: as many as there are samples)."""


SCORE_PROTOCOLS: Registry[ScoreProtocol] = Registry("data.eval_protocol")
# measured on sines (2,500 windows a side, one thread, this shared 2-core machine): an iteration of
# 2 repeats side by side costs 8-9 ms of CPU (1 repeat 7-8, 10 repeats 14-23), so "full" (10 x 2,000
# + 5,000) takes about 2 minutes, "fast" about 17 s and "quick" about 5 s. With 1,000 instead of
# 5,000 iterations the predictive score of sines against sines is 0.102 instead of 0.096 (2,000:
# 0.097); the discriminative score of two draws of sines is 0.012-0.019 from 250 to 2,000.
SCORE_PROTOCOLS.register("quick", ScoreProtocol(1, QUICK_DISC_ITERATIONS, QUICK_PRED_ITERATIONS, QUICK_N))
SCORE_PROTOCOLS.register("fast", ScoreProtocol(FAST_REPEATS, FAST_DISC_ITERATIONS, FAST_PRED_ITERATIONS))
SCORE_PROTOCOLS.register("full", ScoreProtocol(0, 2000, 5000))  # TimeGAN's code


class SeriesDomain(BaseDomain):
    name = "series"
    default_net = "tcn"
    default_z_dim = DEFAULT_WINDOW * Z_STEP
    # Temporal convolutions by default: a training step costs about a quarter of the GRU's on a
    # CPU (measured: 93 vs 374 ms of CPU per step on sines at width 64, one thread, loaded machine). StyleGAN2's
    # Adam betas (0, 0.99) with lazy R1 (the points recipe's regulariser) at a middle learning
    # rate; the windows are few steps long, so 3 residual blocks (receptive field 15 plus G's
    # dense projection and D's dense head) see the whole window. Not tuned by a sweep yet: see
    # docs/BENCHMARKS.md for what it reaches.
    defaults: dict[str, Any] = {
        "model.g_width": 64, "model.d_width": 64, "model.g_depth": 3, "model.d_depth": 3,
        "train.steps": 10000, "train.batch": 128, "train.lr_g": 1e-3, "train.lr_d": 1e-3,
        "train.beta1": 0.0, "train.beta2": 0.99, "train.eval_every": 0, "train.ckpt_every": 2000,
    }

    def builtin_names(self) -> dict[str, str]:
        return {name: spec.description for name, spec in BUILTIN_SERIES.items()}

    def claims(self, path: Path) -> bool:
        """CSVs whose first column is a time index, ``.ts`` files, ``.npz`` of 1-D/2-D arrays and
        3-D ``.npy`` that look like windows (:func:`is_window_array`)."""
        suffix = path.suffix.lower()
        if not path.is_file():
            return False
        if suffix == ".csv":
            return csv_has_time_index(path)
        if suffix == ".ts":
            return True
        try:
            if suffix == ".npy":
                array = np.load(path, mmap_mode="r", allow_pickle=False)
                return is_window_array(array.shape, array.dtype)
            if suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    return bool(archive.files) and all(archive[k].ndim in (1, 2) for k in archive.files)
        except (ValueError, OSError, EOFError):
            return False
        return False

    def load(self, cfg: DataConfig) -> Dataset:
        """Training windows encoded in [0, 1]; ``holdout`` the real windows the scores compare
        against (the training windows in the user's units; for ``sines`` an independent draw)."""
        if cfg.source in BUILTIN_SERIES:
            source, holdout = BUILTIN_SERIES[cfg.source].read(cfg)
        else:
            source, holdout = read_series_file(Path(cfg.source)), None
        windows = make_windows(source, cfg.window, cfg.stride, cfg.source)
        if len(windows) < 2:
            raise UsageError(f"{cfg.source} gives {len(windows)} window(s) of {windows.shape[1]} steps; a GAN needs "
                             "more: lower data.window or data.stride, or give longer series")
        lo, hi = np.nanmin(windows, axis=(0, 1)), np.nanmax(windows, axis=(0, 1))
        scale = np.where(hi > lo, hi - lo, 1.0)
        masked = bool(np.isnan(windows).any())
        state = {
            "fingerprint": source.fingerprint, "columns": source.columns, "min": lo.tolist(), "scale": scale.tolist(),
            "length": int(windows.shape[1]), "features": int(windows.shape[2]), "masked": masked,
            "score_space": "raw" if lo.min() >= 0 and hi.max() <= 1 else "minmax",
        }
        meta = {"z_dim": int(windows.shape[1]) * Z_STEP, "metric_repeats": cfg.metric_repeats,
                "eval_protocol": cfg.eval_protocol}
        held = windows if holdout is None else holdout
        return Dataset(cfg.source, self.name, encode(windows, lo, scale, masked), state, held, meta)

    def decode(self, encoded: torch.Tensor, state: dict[str, Any]) -> np.ndarray:
        return decode_windows(encoded, state)

    def evaluate(self, samples: np.ndarray, dataset: Dataset, quick: bool = False,
                 features: str | None = None) -> dict[str, Any]:
        """TimeGAN's discriminative and predictive scores (mean and std over the repeats of the
        run's ``data.eval_protocol``, see :data:`SCORE_PROTOCOLS`; the ``quick`` one during training),
        and the autocorrelation and cross-correlation distances, on as many real windows as samples.
        ``protocol`` in the result names the protocol that made the numbers."""
        from ganforge.metrics.timeseries import acf_distance, timegan_scores, xcorr_distance

        if features:
            raise UsageError(f"--features {features} scores images; series are scored by the TimeGAN protocol, "
                             "without it")
        name = "quick" if quick else dataset.meta.get("eval_protocol", "fast")
        protocol = SCORE_PROTOCOLS.get_entry(name)
        real_all = dataset.holdout
        n = min(len(samples), len(real_all), protocol.max_windows or len(samples))
        pick = np.random.default_rng(DATA_SEED).permutation(len(real_all))[:n]
        real = to_score_space(real_all[np.sort(pick)], dataset.state)
        fake = to_score_space(np.asarray(samples)[:n], dataset.state)
        result: dict[str, Any] = {"n": int(n), "protocol": name}
        asked = int(dataset.meta.get("metric_repeats", 10))  # data.metric_repeats; 0 skips the two scores
        repeats = min(protocol.repeats, asked) if protocol.repeats else asked
        if repeats > 0 and n >= 4:
            result.update(timegan_scores(real, fake, repeats=repeats, disc_iterations=protocol.disc_iterations,
                                         pred_iterations=protocol.pred_iterations))
        result["acf_distance"] = acf_distance(real, fake)
        result["xcorr_distance"] = xcorr_distance(real, fake)
        return result

    def save_samples(self, samples: np.ndarray, path: Path, columns: int | None = None) -> None:
        """``.npy``: ``[N, L, F]`` in the user's units (NaN after a shorter window's end); ``.csv``:
        long format, one row per sample and step (``sample,step,<features>``); ``.png``: one small
        plot per window, ``columns`` per row (an interpolation path per row)."""
        from ganforge.io import atomic_write

        samples_arr = np.asarray(samples, dtype=np.float64)
        names = getattr(samples, "columns", None) or [f"x{i}" for i in range(samples_arr.shape[2])]
        suffix = path.suffix.lower()
        if suffix == ".npy":
            with atomic_write(path, "wb") as fh:
                np.save(fh, samples_arr)
        elif suffix == ".csv":
            n, length, _ = samples_arr.shape
            valid = ~np.isnan(samples_arr).all(axis=2)
            index = np.stack(np.meshgrid(np.arange(n), np.arange(length), indexing="ij"), axis=2)[valid]
            with atomic_write(path, "w") as fh:  # plain decimals, as the points' and tables' CSVs
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["sample", "step", *names])
                writer.writerows([*map(str, ij), *values] for ij, values in zip(index.tolist(),
                                                                              decimal_text(samples_arr[valid])))
        elif suffix == ".png":
            from ganforge.render.plots import series_grid

            series_grid(samples_arr, names, columns or min(len(samples_arr), 8), path)
        else:
            raise UsageError(f"--out {path}: series are written as .npy, .csv (long format) or .png")

    def plot(self, samples: np.ndarray, dataset: Dataset, path: Path) -> None:
        """Real vs synthetic: a few windows of the first feature, and TimeGAN's PCA and t-SNE of the
        windows (each averaged over its features), 1,000 per side."""
        from ganforge.render.plots import series_vs_real

        from ganforge.metrics.tabular import one_thread

        real = to_score_space(dataset.holdout[:PLOT_N], dataset.state)
        fake = to_score_space(np.asarray(samples)[:PLOT_N], dataset.state)
        with one_thread():  # t-SNE: 6 s on one thread, 37 s on two fighting for a busy machine's cores
            series_vs_real(real, fake, dataset.name, path)

    windows = True
    summary_keys = DISTANCE_KEYS + ("acf_distance", "xcorr_distance")
    headline = ("discriminative", "predictive", "acf_distance")

    def summary_lines(self, scores: dict[str, Any]) -> list[str]:
        """TimeGAN's discriminative and predictive scores (with the protocol that made them), then the
        distances (ACF, cross-correlation)."""
        lines = []
        if "discriminative" in scores:
            protocol = scores.get("protocol", "full")  # summaries from before the protocols: the full one
            more = "" if protocol == "full" else "; TimeGAN's: ganforge eval RUN --protocol full"
            lines.append(f"timegan    discriminative {scores['discriminative']:.4f} ± {scores['discriminative_std']:.4f}"
                         f"   predictive {scores['predictive']:.4f} ± {scores['predictive_std']:.4f}"
                         f"   ({protocol} protocol, {scores['repeats']} repeats{more})")
        return lines + distance_line(scores, self.summary_keys)


register_domain(SeriesDomain())
