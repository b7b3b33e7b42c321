"""Table metrics: parity with SDMetrics on the same frames, and each score moving the right way."""

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from ganforge.metrics import tabular as tm  # noqa: E402

KINDS = {"x": "continuous", "y": "continuous", "n": "integer", "cat": "categorical", "flag": "boolean",
         "when": "datetime"}


def frames(seed: int = 0, n: int = 400):
    """A 'real' table and a distorted 'synthetic' one, with missing values in both."""
    rng = np.random.default_rng(seed)

    def table(shift: float, p: list, rho: float, m: int) -> "pd.DataFrame":
        x = rng.normal(shift, 1, m)
        frame = pd.DataFrame({
            "x": x,
            "y": rho * x + np.sqrt(1 - rho**2) * rng.normal(0, 1, m),
            "n": rng.integers(0, 50, m),
            "cat": rng.choice(["a", "b", "c", "d"], m, p=p),
            "flag": rng.random(m) < 0.4 + shift / 4,
            "when": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 300 + int(100 * shift), m), unit="D"),
        })
        frame.loc[rng.random(m) < 0.1, "x"] = np.nan
        frame.loc[rng.random(m) < 0.1 + shift / 10, "cat"] = np.nan
        return frame

    return table(0.0, [0.5, 0.3, 0.15, 0.05], 0.8, n), table(0.5, [0.3, 0.3, 0.3, 0.1], 0.3, n + 57)


def test_column_and_pair_scores_match_sdmetrics():
    sdm = pytest.importorskip("sdmetrics")
    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
    from sdmetrics.single_column import KSComplement, TVComplement

    real, synth = frames()
    ours = tm.column_shapes(real, synth, KINDS)
    for name, kind in KINDS.items():
        metric = KSComplement if kind in tm.NUMERIC else TVComplement
        assert ours[name] == pytest.approx(metric.compute(real[name], synth[name]), abs=1e-6), name
    pairs = tm.column_pair_trends(real, synth, KINDS)
    assert len(pairs) == 15
    # SDMetrics' pair metrics take datetimes as numbers (its quality report converts them first)
    real, synth = (f.assign(when=tm._numbers(f["when"], "datetime")) for f in (real, synth))
    for (a, b), value in pairs.items():
        if KINDS[a] in tm.NUMERIC and KINDS[b] in tm.NUMERIC:
            reference = CorrelationSimilarity.compute(real[[a, b]], synth[[a, b]])
        else:
            continuous = [c for c in (a, b) if KINDS[c] in tm.NUMERIC]
            reference = ContingencySimilarity.compute(real[[a, b]], synth[[a, b]],
                                                      continuous_column_names=continuous or None)
        assert value == pytest.approx(reference, abs=1e-6), (a, b)
    assert sdm is not None


def test_fidelity_is_perfect_on_itself_and_drops_with_distortion():
    real, synth = frames()
    same = tm.evaluate_tables(real, real, kinds=KINDS, quick=True)
    assert same["column_shapes"] == pytest.approx(1.0) and same["column_pair_trends"] == pytest.approx(1.0)
    other = tm.evaluate_tables(real, synth, kinds=KINDS, quick=True)
    assert other["column_shapes"] < 0.95 and other["column_pair_trends"] < 0.95
    assert tm.missing_similarity(real, synth)["cat"] < 0.99


def test_detection_auc_tells_different_tables_apart():
    real, synth = frames(n=600)
    twin, _ = frames(seed=1, n=600)  # the same distribution, other rows
    assert abs(tm.detection_auc(real, twin, KINDS) - 0.5) < 0.08
    assert tm.detection_auc(real, synth, KINDS) > 0.7
    assert tm.detection_auc(real, synth, KINDS, model="gbm") > 0.7


def classification_frames(seed: int, n: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3))
    label = np.where(x[:, 0] + 0.5 * x[:, 1] + 0.2 * rng.normal(size=n) > 0.8, "yes", "no")
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "colour": rng.choice(["r", "g"], n), "label": label})


def test_ml_efficacy_rewards_signal_and_punishes_noise():
    kinds = {"a": "continuous", "b": "continuous", "c": "continuous", "colour": "categorical", "label": "categorical"}
    train, test = classification_frames(0, 600), classification_frames(1, 300)
    scrambled = train.assign(label=np.random.default_rng(2).permutation(train["label"].to_numpy()))
    good = tm.ml_efficacy(train, train, test, "label", kinds)
    bad = tm.ml_efficacy(train, scrambled, test, "label", kinds)
    assert good["task"] == "binary" and good["metric"] == "f1"
    assert good["real"] == pytest.approx(good["synthetic"]) and good["real"] > 0.8
    assert bad["synthetic"] < good["synthetic"] - 0.3
    assert set(good["models"]) == {"decision_tree", "adaboost", "logistic_regression", "mlp"}
    regression = tm.ml_efficacy(train, train, test, "a", {**kinds, "label": "categorical"})
    assert regression["task"] == "regression" and regression["metric"] == "r2"


def test_privacy_scores_flag_copies():
    real, _ = frames(n=600)
    train, holdout = real.iloc[:400], real.iloc[400:]
    fresh, _ = frames(seed=3, n=400)
    copies = tm.distance_to_closest_record(train, train.sample(200, random_state=0), holdout, KINDS)
    honest = tm.distance_to_closest_record(train, fresh, holdout, KINDS)
    assert copies["closer_to_train"] > 0.95 and copies["dcr_synthetic_median"] == 0.0
    expected = honest["closer_to_train_expected"]
    assert expected == pytest.approx(400 / 600)
    assert abs(honest["closer_to_train"] - expected) < 0.1 and honest["dcr_synthetic_median"] > 0
    assert tm.exact_copy_rate(train, train.iloc[:50]) == 1.0  # missing values compare equal to missing
    assert tm.exact_copy_rate(train, fresh) == 0.0
