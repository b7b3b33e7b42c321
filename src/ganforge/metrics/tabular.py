"""How good a synthetic table is, as plain functions of two pandas DataFrames.

Fidelity, as SDMetrics' quality report computes it (a test checks the numbers against the
``sdmetrics`` package on the same frames):

- column shapes: ``1 - KS statistic`` for numeric and datetime columns (KSComplement) and ``1 -
  total variation distance`` for categorical and boolean columns (TVComplement), both on the
  non-missing values; missing values are scored apart, ``1 - |missing rate difference|``;
- column pair trends: ``1 - |Pearson_real - Pearson_synthetic| / 2`` for two numeric columns
  (CorrelationSimilarity), else ``1 - TVD`` of the two columns' joint frequencies, numbers cut into
  10 equal-width bins over the real range, missing values a category of their own
  (ContingencySimilarity).

Detection: the cross-validated ROC AUC of a classifier telling real rows from synthetic ones (0.5 =
indistinguishable), logistic regression as in SDMetrics' LogisticDetection, and gradient boosting.

Machine-learning efficacy, the SDGym protocol of the CTGAN paper (Xu et al. 2019, §5.1): the same
models (decision tree of depth 20, AdaBoost, logistic regression, MLP; their regression counterparts
for a numeric target) trained once on real training rows and once on synthetic rows, each scored on
real held-out rows: F1 of the minority class for a binary target, macro-F1 for several classes,
R^2 for a number.

Privacy: the distance of each synthetic row to its closest training row (DCR) beside the same
distance for real held-out rows (a generator that copies sits much closer), the share of synthetic
rows closer to the training rows than to the holdout (SDMetrics' DCROverfittingProtection; a
generator that memorises nothing stays near n_train / (n_train + n_holdout)), and the rate of exact
copies of training rows.
"""

from __future__ import annotations

import sys
import warnings
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np

from ganforge import progress

if TYPE_CHECKING:
    import pandas as pd

NUMERIC = ("continuous", "integer", "datetime")
FEW_VALUES = 10
ROUND_DECIMALS = sys.float_info.dig - 1  # SDMetrics rounds before its KS test
BINS = 10


def _pandas():
    import pandas as pd

    return pd


def one_thread():
    """Run scikit-learn's OpenMP/BLAS code on one thread: gradient boosting and k-means spin their
    threads, and on a busy machine (or beside torch's threads) two threads ran 30x slower than one."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def infer_kinds(frame: "pd.DataFrame") -> dict[Any, str]:
    """Metric kinds when none are given: datetime, boolean, continuous (numbers with more than 10
    distinct values) or categorical (everything else)."""
    pd = _pandas()
    kinds = {}
    for name in frame.columns:
        s = frame[name]
        if pd.api.types.is_bool_dtype(s.dtype):
            kinds[name] = "boolean"
        elif pd.api.types.is_datetime64_any_dtype(s.dtype):
            kinds[name] = "datetime"
        elif pd.api.types.is_numeric_dtype(s.dtype) and s.nunique() > FEW_VALUES:
            kinds[name] = "continuous"
        else:
            kinds[name] = "categorical"
    return kinds


def datetimes_to_ns(series: "pd.Series") -> np.ndarray:
    """Nanoseconds since the epoch as floats (UTC for aware times), NaN where missing."""
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    out = np.full(len(series), np.nan)
    present = series.notna().to_numpy()
    out[present] = series[present].to_numpy().astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    return out


def _numbers(series: "pd.Series", kind: str) -> np.ndarray:
    """Float64 values (datetimes as ns since the epoch, text dates parsed), NaN where missing."""
    pd = _pandas()
    if kind == "datetime":
        if not pd.api.types.is_datetime64_any_dtype(series.dtype):
            series = pd.to_datetime(series, errors="coerce", format="mixed")
        return datetimes_to_ns(series)
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _labels(series: "pd.Series") -> np.ndarray:
    """Values as hashable objects with one shared token for every kind of missing value."""
    values = series.astype(object).to_numpy().copy()
    missing = series.isna().to_numpy()
    values[missing] = "\0missing"
    return values


# --- fidelity ----------------------------------------------------------------------------------

def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    """``1 - D`` of the two-sample Kolmogorov-Smirnov test on the finite values (NaN if either has none)."""
    from scipy.stats import ks_2samp

    r, s = real[np.isfinite(real)], synthetic[np.isfinite(synthetic)]
    if len(r) == 0 or len(s) == 0:
        return float("nan")
    return float(1.0 - ks_2samp(np.round(r, ROUND_DECIMALS), np.round(s, ROUND_DECIMALS)).statistic)


def tv_complement(real: "pd.Series", synthetic: "pd.Series") -> float:
    """``1 - 0.5 * sum |p_real - p_synthetic|`` over the non-missing values (NaN if either has none)."""
    r, s = real.dropna(), synthetic.dropna()
    if len(r) == 0 or len(s) == 0:
        return float("nan")
    p = r.astype(object).value_counts(normalize=True)
    q = s.astype(object).value_counts(normalize=True)
    index = p.index.union(q.index, sort=False)
    return float(1.0 - 0.5 * np.abs(p.reindex(index, fill_value=0.0) - q.reindex(index, fill_value=0.0)).sum())


def column_shapes(real: "pd.DataFrame", synthetic: "pd.DataFrame", kinds: dict) -> dict[Any, float]:
    """Per column: KS complement (numeric, datetime) or TV complement (categorical, boolean)."""
    return {name: ks_complement(_numbers(real[name], kinds[name]), _numbers(synthetic[name], kinds[name]))
            if kinds[name] in NUMERIC else tv_complement(real[name], synthetic[name]) for name in real.columns}


def missing_similarity(real: "pd.DataFrame", synthetic: "pd.DataFrame") -> dict[Any, float]:
    """Per column: ``1 - |missing rate real - missing rate synthetic|``."""
    return {name: float(1.0 - abs(real[name].isna().mean() - synthetic[name].isna().mean())) for name in real.columns}


def correlation_similarity(real: np.ndarray, synthetic: np.ndarray) -> float:
    """``1 - |rho_real - rho_synthetic| / 2`` (Pearson) on rows where both values are present; real
    inputs ``[N, 2]``. NaN when a column is constant."""
    r = real[np.isfinite(real).all(axis=1)]
    s = synthetic[np.isfinite(synthetic).all(axis=1)]
    if len(r) < 2 or len(s) < 2 or (r.std(axis=0) == 0).any() or (s.std(axis=0) == 0).any():
        return float("nan")
    rho_r = np.corrcoef(r[:, 0], r[:, 1])[0, 1]
    rho_s = np.corrcoef(s[:, 0], s[:, 1])[0, 1]
    return float(1.0 - abs(rho_r - rho_s) / 2.0)


def _discrete_codes(real: "pd.Series", synthetic: "pd.Series", kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Shared integer codes of one column in both frames: numbers binned over the real range."""
    pd = _pandas()
    if kind in NUMERIC:
        r, s = _numbers(real, kind), _numbers(synthetic, kind)
        edges = np.histogram_bin_edges(r[np.isfinite(r)], bins=BINS)
        edges[0], edges[-1] = -np.inf, np.inf
        return np.digitize(r, edges), np.digitize(s, edges)  # NaN lands past the last edge: its own bin
    codes, _ = pd.factorize(np.concatenate([_labels(real), _labels(synthetic)]))
    return codes[:len(real)], codes[len(real):]


def contingency_similarity(real: "pd.DataFrame", synthetic: "pd.DataFrame", kinds: dict) -> float:
    """``1 - TVD`` of the joint frequencies of two columns (numbers binned, missing its own value)."""
    a, b = real.columns[:2]
    ra, sa = _discrete_codes(real[a], synthetic[a], kinds[a])
    rb, sb = _discrete_codes(real[b], synthetic[b], kinds[b])
    width = int(max(rb.max(), sb.max())) + 1
    r_pairs, s_pairs = ra.astype(np.int64) * width + rb, sa.astype(np.int64) * width + sb
    size = int(max(r_pairs.max(), s_pairs.max())) + 1
    p = np.bincount(r_pairs, minlength=size) / len(r_pairs)
    q = np.bincount(s_pairs, minlength=size) / len(s_pairs)
    return float(1.0 - 0.5 * np.abs(p - q).sum())


def column_pair_trends(real: "pd.DataFrame", synthetic: "pd.DataFrame", kinds: dict) -> dict[tuple, float]:
    """Per pair of columns: correlation similarity (both numeric) or contingency similarity."""
    numbers = {name: _numbers(real[name], kinds[name]) for name in real.columns if kinds[name] in NUMERIC}
    synth_numbers = {name: _numbers(synthetic[name], kinds[name]) for name in numbers}
    out = {}
    for a, b in combinations(real.columns, 2):
        if a in numbers and b in numbers:
            out[(a, b)] = correlation_similarity(np.stack([numbers[a], numbers[b]], axis=1),
                                                 np.stack([synth_numbers[a], synth_numbers[b]], axis=1))
        else:
            out[(a, b)] = contingency_similarity(real[[a, b]], synthetic[[a, b]], kinds)
    return out


# --- features for the classifiers and distances -------------------------------------------------

class TableFeatures:
    """A numeric design matrix of a table: numbers standardised (or divided by their range) with a
    missing indicator where needed, categories one-hot (missing and unseen values all zeros but for
    the missing indicator). Fitted on one frame, applied to others."""

    def __init__(self, kinds: dict, scale: str = "standard") -> None:
        self.kinds, self.scale = kinds, scale

    def fit(self, frame: "pd.DataFrame") -> "TableFeatures":
        self.columns = list(frame.columns)
        self.stats: dict[Any, tuple] = {}
        for name in self.columns:
            if self.kinds[name] in NUMERIC:
                x = _numbers(frame[name], self.kinds[name])
                x = x[np.isfinite(x)]
                centre = float(np.mean(x)) if len(x) else 0.0
                spread = float(np.std(x) if self.scale == "standard" else np.ptp(x)) if len(x) else 1.0
                self.stats[name] = (centre, spread or 1.0)
            else:
                self.stats[name] = (list(dict.fromkeys(frame[name].dropna().astype(object)))[:500],)
        return self

    def transform(self, frame: "pd.DataFrame") -> np.ndarray:
        pd = _pandas()
        blocks = []
        for name in self.columns:
            if self.kinds[name] in NUMERIC:
                centre, spread = self.stats[name]
                x = (_numbers(frame[name], self.kinds[name]) - centre) / spread
                missing = ~np.isfinite(x)
                blocks += [np.where(missing, 0.0, x)[:, None], missing[:, None].astype(float)]
            else:
                (categories,) = self.stats[name]
                codes = pd.Categorical(frame[name].astype(object), categories=categories).codes
                onehot = np.zeros((len(frame), len(categories) + 1))
                onehot[np.arange(len(frame)), np.where(codes >= 0, codes, len(categories))] = 1.0
                onehot[~frame[name].isna().to_numpy() & (codes < 0), -1] = 0.0  # unseen value: no column set
                blocks.append(onehot)
        return np.concatenate(blocks, axis=1)


# --- detection ---------------------------------------------------------------------------------

def detection_auc(real: "pd.DataFrame", synthetic: "pd.DataFrame", kinds: dict | None = None,
                  model: str = "logistic", folds: int = 3, seed: int = 0, max_rows: int = 5000) -> float:
    """Cross-validated ROC AUC of ``model`` (``logistic`` or ``gbm``) telling real rows (0) from
    synthetic rows (1): 0.5 means indistinguishable, 1.0 always told apart."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    kinds = kinds or infer_kinds(real)
    rng = np.random.default_rng(seed)
    real = real.iloc[np.sort(rng.permutation(len(real))[:max_rows])]
    synthetic = synthetic.iloc[np.sort(rng.permutation(len(synthetic))[:max_rows])]
    pd = _pandas()
    both = pd.concat([real, synthetic], ignore_index=True)
    x = TableFeatures(kinds).fit(both).transform(both)
    y = np.r_[np.zeros(len(real)), np.ones(len(synthetic))]
    clf = (LogisticRegression(max_iter=1000) if model == "logistic"
           else HistGradientBoostingClassifier(max_iter=100, random_state=seed))
    cv = StratifiedKFold(n_splits=min(folds, len(real), len(synthetic)), shuffle=True, random_state=seed)
    with warnings.catch_warnings(), one_thread():
        warnings.simplefilter("ignore")
        proba = cross_val_predict(clf, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


# --- machine-learning efficacy -----------------------------------------------------------------

def _ml_models(task: str, seed: int) -> dict[str, Any]:
    """SDGym's model set (the CTGAN paper's Table 4 protocol), or its regression counterparts."""
    from sklearn.ensemble import AdaBoostClassifier, AdaBoostRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if task == "regression":
        return {"decision_tree": DecisionTreeRegressor(max_depth=20, random_state=seed),
                "adaboost": AdaBoostRegressor(random_state=seed),
                "linear_regression": LinearRegression(),
                "mlp": MLPRegressor(hidden_layer_sizes=(100,), max_iter=200, early_stopping=True, random_state=seed)}
    return {"decision_tree": DecisionTreeClassifier(max_depth=20, class_weight="balanced", random_state=seed),
            "adaboost": AdaBoostClassifier(random_state=seed),
            "logistic_regression": LogisticRegression(solver="lbfgs", class_weight="balanced", max_iter=50),
            "mlp": MLPClassifier(hidden_layer_sizes=(50,), max_iter=200, early_stopping=True, random_state=seed)}


def ml_task(train: "pd.DataFrame", target: Any, kinds: dict) -> str:
    """``binary``, ``multiclass`` or ``regression`` by the target column's kind and values."""
    if kinds[target] in NUMERIC:
        return "regression"
    return "binary" if train[target].nunique() <= 2 else "multiclass"


def ml_efficacy(train: "pd.DataFrame", synthetic: "pd.DataFrame", test: "pd.DataFrame", target: Any,
                kinds: dict | None = None, seed: int = 0) -> dict[str, Any]:
    """Each model trained on real ``train`` and on ``synthetic`` rows, scored on real ``test`` rows.

    Returns ``{"task", "metric", "real", "synthetic", "models": {name: {"real", "synthetic"}}}``,
    ``real``/``synthetic`` being the mean score over the models.
    """
    from sklearn.metrics import f1_score, r2_score

    kinds = kinds or infer_kinds(train)
    task = ml_task(train, target, kinds)
    features = [c for c in train.columns if c != target]
    train, synthetic, test = (f[f[target].notna()] for f in (train, synthetic, test))
    if task == "regression":
        def target_of(frame):
            return _numbers(frame[target], kinds[target])

        def score(y_true, y_pred):
            return float(r2_score(y_true, y_pred))
        metric, positive = "r2", None
    else:
        def target_of(frame):
            return frame[target].astype(object).map(str).to_numpy()
        counts = train[target].astype(object).map(str).value_counts()
        positive = counts.index[-1]  # the minority class (">50K" on Adult)

        def score(y_true, y_pred):
            if task == "binary":
                return float(f1_score(y_true, y_pred, pos_label=positive, zero_division=0))
            return float(f1_score(y_true, y_pred, average="macro", zero_division=0))
        metric = "f1" if task == "binary" else "macro_f1"
    y_test = target_of(test)
    results: dict[str, dict[str, float]] = {}
    for source, frame in (("real", train), ("synthetic", synthetic)):
        encoder = TableFeatures({c: kinds[c] for c in features}).fit(frame[features])
        x, y, x_test = encoder.transform(frame[features]), target_of(frame), encoder.transform(test[features])
        for name, model in _ml_models(task, seed).items():
            results.setdefault(name, {})[source] = score(y_test, _fit_predict(model, x, y, x_test))
    return {"task": task, "metric": metric,
            "real": float(np.mean([r["real"] for r in results.values()])),
            "synthetic": float(np.mean([r["synthetic"] for r in results.values()])),
            "models": results}


def _fit_predict(model: Any, x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Predictions of ``model`` trained on ``(x, y)``; a training set of one class predicts that class."""
    if y.dtype == object and len(set(y)) < 2:
        return np.full(len(x_test), y[0] if len(y) else "", dtype=object)
    with warnings.catch_warnings(), one_thread():
        warnings.simplefilter("ignore")  # convergence warnings of the short SDGym training budgets
        return model.fit(x, y).predict(x_test)


# --- privacy ------------------------------------------------------------------------------------

def _nearest(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=1).fit(reference).kneighbors(queries)[0][:, 0]


def distance_to_closest_record(train: "pd.DataFrame", synthetic: "pd.DataFrame", holdout: "pd.DataFrame",
                               kinds: dict | None = None, seed: int = 0, max_rows: int = 5000) -> dict[str, float]:
    """Distances to the closest record (Euclidean; numbers divided by their training range,
    categories one-hot, a missing indicator per number).

    ``dcr_*``: median and 5th percentile of the distance of synthetic rows and of held-out real rows
    to the training rows; ``closer_to_train``: the share of synthetic rows nearer to a training row
    than to a held-out row (ties count half), which a generator that samples the real distribution
    keeps near ``closer_to_train_expected`` = n_train / (n_train + n_holdout), 0.5 for equal sizes
    (SDMetrics' DCROverfittingProtection, which compares the same two distances). At most
    ``max_rows`` rows of each table are used.
    """
    kinds = kinds or infer_kinds(train)
    rng = np.random.default_rng(seed)
    features = TableFeatures(kinds, scale="range").fit(train)

    def rows(frame: "pd.DataFrame") -> np.ndarray:
        return features.transform(frame.iloc[np.sort(rng.permutation(len(frame))[:max_rows])])

    reference, fake, held = rows(train), rows(synthetic), rows(holdout)
    d_fake, d_held = _nearest(reference, fake), _nearest(reference, held)
    to_holdout = _nearest(held, fake)
    closer = float(np.mean(d_fake < to_holdout) + 0.5 * np.mean(d_fake == to_holdout))
    return {"dcr_synthetic_median": float(np.median(d_fake)), "dcr_holdout_median": float(np.median(d_held)),
            "dcr_synthetic_p05": float(np.quantile(d_fake, 0.05)), "dcr_holdout_p05": float(np.quantile(d_held, 0.05)),
            "closer_to_train": closer, "closer_to_train_expected": len(reference) / (len(reference) + len(held))}


def exact_copy_rate(train: "pd.DataFrame", rows: "pd.DataFrame") -> float:
    """Share of ``rows`` identical to some training row in every column (missing equals missing)."""
    keys = {tuple(r) for r in _row_keys(train)}
    return float(np.mean([tuple(r) in keys for r in _row_keys(rows)])) if len(rows) else float("nan")


def _row_keys(frame: "pd.DataFrame") -> list:
    return [tuple("\0missing" if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in row)
            for row in frame.astype(object).itertuples(index=False, name=None)]


# --- everything --------------------------------------------------------------------------------

DETECTORS = ("logistic", "gbm")
"""The classifiers of :func:`detection_auc`: ``detection_auc`` (logistic) and ``detection_auc_gbm``."""


def evaluate_tables(real: "pd.DataFrame", synthetic: "pd.DataFrame", real_test: "pd.DataFrame | None" = None,
                    target: Any = None, kinds: dict | None = None, quick: bool = False,
                    full_train: "pd.DataFrame | None" = None, seed: int = 0,
                    detectors: tuple[str, ...] = DETECTORS) -> dict[str, Any]:
    """All of the above for a synthetic table against the real (training) one, with a progress line.

    Args:
        real: real training rows (fidelity and detection compare ``synthetic`` with these).
        synthetic: generated rows with the same columns.
        real_test: real rows never trained on, for ML efficacy and the privacy scores (skipped if None).
        target: column for ML efficacy (skipped if None).
        kinds: column kinds (continuous, integer, datetime, categorical, boolean); inferred if None.
        quick: only fidelity (what training logs while it runs).
        full_train: every training row, for the privacy scores and the real ML baseline (default ``real``).
        detectors: the detection classifiers (of :data:`DETECTORS`) to train.
    """
    if list(real.columns) != list(synthetic.columns):
        raise ValueError(f"the synthetic columns {list(synthetic.columns)} differ from the real {list(real.columns)}")
    kinds = kinds or infer_kinds(real)
    full_train = real if full_train is None else full_train
    held = real_test is not None and len(real_test) >= 2
    total = 1 if quick else 2 + len(detectors) + int(held) + int(held and target is not None)
    with progress.Steps("scoring: table", total=total) as steps:
        steps.next("column shapes and pair trends")
        result = _fidelity(real, synthetic, kinds)
        if quick:
            return result
        for model in detectors:
            steps.next(f"detection AUC ({model})")
            result["detection_auc" if model == "logistic" else f"detection_auc_{model}"] = \
                detection_auc(real, synthetic, kinds, model, seed=seed)
        if held and target is not None:
            steps.next("ML efficacy")
            # as many synthetic rows as real ones, as in SDGym (and the real baseline)
            efficacy = ml_efficacy(real, synthetic.iloc[:len(real)], real_test, target, kinds, seed=seed)
            result.update({"ml_task": efficacy["task"], "ml_metric": efficacy["metric"], "ml_real": efficacy["real"],
                           "ml_synthetic": efficacy["synthetic"], "ml_models": efficacy["models"]})
        if held:
            steps.next("distance to the closest record")
            result.update(distance_to_closest_record(full_train, synthetic, real_test, kinds, seed=seed))
            result["exact_copies_holdout"] = exact_copy_rate(full_train, real_test)
        steps.next("exact copies")
        result["exact_copies"] = exact_copy_rate(full_train, synthetic)
    return result


def _fidelity(real: "pd.DataFrame", synthetic: "pd.DataFrame", kinds: dict) -> dict[str, Any]:
    """SDMetrics' quality: column shapes, column pair trends and missing values, their means."""
    shapes = column_shapes(real, synthetic, kinds)
    pairs = column_pair_trends(real, synthetic, kinds)
    missing = missing_similarity(real, synthetic)
    shape_mean, pair_mean = _mean(shapes.values()), _mean(pairs.values())
    return {
        "n": int(len(synthetic)),
        "quality": _mean([shape_mean, pair_mean]),
        "column_shapes": shape_mean,
        "column_pair_trends": pair_mean,
        "missing_similarity": _mean(missing.values()),
        "columns": {str(k): round(v, 4) for k, v in shapes.items()},
    }


def _mean(values) -> float:
    values = [v for v in values if v == v]  # NaN (not computable) is left out, as SDMetrics does
    return float(np.mean(values)) if values else float("nan")
