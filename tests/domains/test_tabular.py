"""The table domain: kinds, the reversible encoding, missing values, conditions, the API and CLI, bad input."""

import json

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas")

import ganforge  # noqa: E402
from ganforge.config import DataConfig, RunConfig, set_value  # noqa: E402
from ganforge.domains import get_domain, infer_domain  # noqa: E402
from ganforge.domains.tabular import TrainingBySampling, infer_kind  # noqa: E402
from ganforge.errors import UsageError  # noqa: E402
from ganforge.nets import get_net  # noqa: E402

TINY = {"model.g_width": 32, "model.d_width": 32, "train.batch": 100, "train.log_every": 10,
        "train.ckpt_every": 50, "model.z_dim": 16}


def mixed_frame(n: int = 300, seed: int = 0) -> "pd.DataFrame":
    """Every column kind, missing values in a number and a category, an imbalanced category."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 90, n),
        "income": np.where(rng.random(n) < 0.5, rng.normal(30, 5, n), rng.normal(80, 10, n)).round(3),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], n, p=[0.6, 0.3, 0.08, 0.02]),
        "member": rng.random(n) < 0.3,
        "joined": (pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")).strftime("%Y-%m-%d"),
        "visits": rng.integers(0, 4, n),
        "score": rng.normal(0, 1, n),
    })
    frame.loc[rng.random(n) < 0.25, "score"] = np.nan
    frame.loc[rng.random(n) < 0.15, "city"] = np.nan
    return frame


@pytest.fixture
def mixed_csv(tmp_path):
    path = tmp_path / "mixed.csv"
    mixed_frame().to_csv(path, index=False)
    return path


def load(path, **data) -> "object":
    cfg = DataConfig(source=str(path), **data)
    return get_domain("table").load(cfg)


# --- kinds -------------------------------------------------------------------------------------

def test_kinds_are_inferred_and_can_be_overridden(mixed_csv):
    frame = pd.read_csv(mixed_csv)
    kinds = {name: infer_kind(frame[name])[0] for name in frame.columns}
    assert kinds == {"age": "integer", "income": "continuous", "city": "categorical", "member": "boolean",
                     "joined": "datetime", "visits": "categorical", "score": "continuous"}
    dataset = load(mixed_csv, columns="visits:integer, age:continuous")
    assert dataset.meta["kinds"]["visits"] == "integer" and dataset.meta["kinds"]["age"] == "continuous"
    assert infer_kind(pd.Series(pd.to_datetime(["2020-01-01", "2021-03-04"])))[0] == "datetime"
    with pytest.raises(UsageError, match="unknown kind 'colour'"):
        load(mixed_csv, columns="city:colour")
    with pytest.raises(UsageError, match="no column named 'nope'"):
        load(mixed_csv, columns="nope:integer")


def test_csv_domain_rule(tmp_path, mixed_csv):
    (tmp_path / "xy.csv").write_text("x,y\n1,2\n3,4\n")
    (tmp_path / "wide.csv").write_text("a,b,c,d,e\n1,2,3,4,5\n6,7,8,9,10\n")
    (tmp_path / "holes.csv").write_text("a,b\n1,2\n3,\n")
    assert infer_domain(str(tmp_path / "xy.csv")).name == "points"  # a few numeric columns: points
    assert infer_domain(str(tmp_path / "wide.csv")).name == "table"
    assert infer_domain(str(tmp_path / "holes.csv")).name == "table"  # missing values: a table
    assert infer_domain(str(mixed_csv)).name == "table"


# --- the encoding ------------------------------------------------------------------------------

def test_encoding_round_trip_keeps_categories_integers_dates_and_dtypes(mixed_csv):
    dataset = load(mixed_csv, holdout=0.0)
    real = pd.read_csv(mixed_csv, skipinitialspace=True)
    state = json.loads(json.dumps(dataset.state))  # everything needed to decode is JSON
    decoded = get_domain("table").decode(dataset.train, state)
    assert list(decoded.columns) == list(real.columns)
    assert decoded.dtypes.equals(real.dtypes)
    for name in ("age", "city", "member", "joined", "visits"):
        pd.testing.assert_series_equal(decoded[name], real[name], check_names=True)
    pd.testing.assert_series_equal(decoded["score"].isna(), real["score"].isna())
    # continuous values come back up to the float32 scalar (and a clip at 4 sigma of their mode)
    close = np.isclose(decoded["income"], real["income"], rtol=1e-4)
    assert close.mean() > 0.97


def test_layout_spans_and_conditions(mixed_csv):
    dataset = load(mixed_csv)
    spans = dataset.state["net_args"]["spans"]
    assert sum(w for _, w in spans) == dataset.train.shape[1]
    x = dataset.train
    start = 0
    for kind, width in spans:
        block = x[:, start:start + width]
        if kind == "tanh":
            assert block.abs().max() <= 1
        else:
            assert torch.equal(block.sum(1), torch.ones(len(x)))  # one-hot
        start += width
    cond_spans = dataset.state["net_args"]["cond_spans"]
    cond_dim = sum(w for _, w in cond_spans)
    assert len(cond_spans) == 3  # city (with its missing category), member, visits
    assert dataset.cond.shape == (len(x),) and int(dataset.cond.max()) < cond_dim
    # each row's own condition is one of its own values
    offsets = np.cumsum([0] + [w for _, w in cond_spans])
    for i in range(0, len(x), 37):
        c = int(dataset.cond[i])
        j = int(np.searchsorted(offsets, c, side="right") - 1)
        start, width = cond_spans[j]
        assert x[i, start + c - offsets[j]] == 1


def test_training_by_sampling_rebalances_by_log_frequency():
    codes = [np.r_[np.zeros(990, int), np.ones(10, int)]]  # 99% / 1%
    sampler = TrainingBySampling(codes, [2])
    gen = torch.Generator().manual_seed(0)
    index, cond = sampler(20000, gen)
    assert torch.equal(torch.from_numpy(codes[0])[index], cond)  # every row holds its condition
    rare = cond.float().mean().item()
    expected = np.log1p(10) / (np.log1p(10) + np.log1p(990))
    assert rare == pytest.approx(expected, abs=0.01)  # ~0.27 instead of 0.01
    again, _ = sampler(20000, torch.Generator().manual_seed(0))
    assert torch.equal(index, again)


# --- the nets ----------------------------------------------------------------------------------

def test_generator_outputs_spans_and_fixes_the_condition(mixed_csv):
    dataset = load(mixed_csv)
    cfg = RunConfig()
    for key, value in TINY.items():
        set_value(cfg, key, value)
    set_value(cfg, "model.g_norm", "batch")
    family = get_net("tabular")
    net_args = dataset.state["net_args"]
    G = family.generator(cfg.model, 16, dataset.sample_shape, **net_args).eval()
    D = family.discriminator(cfg.model, (dataset.sample_shape[0] * 10,), **net_args)
    z = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    c = torch.full((40,), 2, dtype=torch.long)
    x = G(z, c)
    assert x.shape == (40, dataset.sample_shape[0])
    assert torch.equal(G(z, c), x) and torch.equal(G(z), G(z))  # a function of z (and c) alone
    start = 0
    for kind, width in net_args["spans"]:
        block = x[:, start:start + width]
        if kind == "tanh":
            assert block.abs().max() <= 1
        else:
            torch.testing.assert_close(block.sum(1), torch.ones(40))
        start += width
    city_start, _ = net_args["cond_spans"][0]
    assert torch.all(x[:, city_start + 2] == 1)  # condition 2 = the third city: fixed in every row
    assert D(x.reshape(4, -1), c).shape == (4,)


# --- training, sampling, saving ----------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    frame = mixed_frame(400)
    gan = ganforge.TabularGAN(steps=150, progress=False, target="member", settings=TINY,
                              out=tmp_path_factory.mktemp("gan") / "run").fit(frame)
    return gan, frame


def test_fit_samples_the_same_columns_and_dtypes(fitted):
    gan, frame = fitted
    synth = gan.sample(500, seed=3)
    assert list(synth.columns) == list(frame.columns) and synth.dtypes.equals(frame.dtypes)
    assert synth["city"].dropna().isin(["paris", "lyon", "nice", "lille"]).all()
    assert synth["visits"].isin([0, 1, 2, 3]).all()
    assert synth["age"].between(18, 89).all() and (synth["age"] == synth["age"].round()).all()
    assert pd.to_datetime(synth["joined"], format="%Y-%m-%d").notna().all()
    pd.testing.assert_frame_equal(gan.sample(50, seed=3), synth.head(50))  # reproducible by seed


def test_missing_rate_is_reproduced(fitted):
    gan, frame = fitted
    synth = gan.sample(2000, seed=0)
    for name in ("score", "city"):
        assert synth[name].isna().mean() == pytest.approx(frame[name].isna().mean(), abs=0.08), name
    assert synth["age"].notna().all()


def test_conditions_are_respected(fitted):
    gan, _ = fitted
    one = gan.sample(200, conditions={"city": "lille"}, seed=1)
    assert (one["city"] == "lille").all()
    two = gan.sample(200, conditions={"city": "nice", "member": True, "visits": 3}, seed=1)
    assert (two["city"] == "nice").all() and two["member"].all() and (two["visits"] == 3).all()
    missing = gan.sample(50, conditions={"city": None}, seed=1)
    assert missing["city"].isna().all()
    with pytest.raises(UsageError, match="not a value of 'city'"):
        gan.sample(5, conditions={"city": "rome"})
    with pytest.raises(UsageError, match="continuous column"):
        gan.sample(5, conditions={"income": 3.0})
    with pytest.raises(UsageError, match="no column named"):
        gan.sample(5, conditions={"town": "nice"})


def test_save_load_and_evaluate(fitted, tmp_path):
    gan, frame = fitted
    saved = gan.save(tmp_path / "model")
    run = ganforge.load(saved)
    pd.testing.assert_frame_equal(run.sample(20, seed=5), gan.sample(20, seed=5))
    again = ganforge.TabularGAN.load(saved)
    pd.testing.assert_frame_equal(again.sample(20, conditions={"member": False}, seed=2),
                                  gan.sample(20, conditions={"member": False}, seed=2))
    with pytest.raises(UsageError, match="not empty"):
        gan.save(saved)
    scores = gan.summary["eval"]
    for key in ("quality", "column_shapes", "column_pair_trends", "detection_auc", "ml_real", "ml_synthetic",
                "closer_to_train", "exact_copies"):
        assert key in scores, key
    with pytest.raises(UsageError, match="in-memory DataFrame"):
        run.evaluate(200)  # the frame is not saved with the model
    assert 0 <= gan.evaluate(frame, n=300)["quality"] <= 1


def test_interpolation_gives_rows(fitted):
    gan, _ = fitted
    rows = gan.run.interpolate(pairs=2, steps=5)
    assert len(rows) == 10 and list(rows.columns) == list(gan.sample(1).columns)


def test_parquet_in_and_out(tmp_path):
    pytest.importorskip("pyarrow")
    frame = mixed_frame(60)
    frame["joined"] = pd.to_datetime(frame["joined"])
    frame["city"] = frame["city"].astype("category")
    frame.to_parquet(tmp_path / "t.parquet")
    assert infer_domain(str(tmp_path / "t.parquet")).name == "table"
    dataset = load(tmp_path / "t.parquet", holdout=0.0)
    decoded = get_domain("table").decode(dataset.train, dataset.state)
    assert decoded.dtypes.equals(frame.dtypes)
    get_domain("table").save_samples(decoded, tmp_path / "out.parquet")
    assert pd.read_parquet(tmp_path / "out.parquet").shape == frame.shape


# --- the command line (in-process: the same main() the console script runs, without a new interpreter)

def cli(capsys, *args) -> tuple[int, str, str]:
    from ganforge.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_train_sample_eval(tmp_path, capsys):
    path = tmp_path / "t.csv"
    mixed_frame(120).to_csv(path, index=False)
    out = tmp_path / "run"
    sets = [a for kv in ("model.g_width=32", "model.d_width=32", "train.batch=60", "train.log_every=10",
                         "train.ckpt_every=20", "model.z_dim=8", "data.target=member") for a in ("--set", kv)]
    code, stdout, stderr = cli(capsys, "train", str(path), "--out", str(out), "--steps", "20", "--quiet", *sets)
    assert code == 0, stderr
    assert (out / "samples.csv").is_file() and (out / "samples.png").is_file()
    assert "(table)" in stdout and "column shapes" in stdout and "samples.csv" in stdout
    code, _, stderr = cli(capsys, "sample", str(out), "--n", "30", "--out", str(tmp_path / "synth.csv"))
    assert code == 0, stderr
    synth = pd.read_csv(tmp_path / "synth.csv")
    assert synth.shape == (30, 7) and list(synth.columns) == list(mixed_frame(2).columns)
    code, stdout, stderr = cli(capsys, "eval", str(out), "--json", "--n", "100")
    assert code == 0, stderr
    scores = json.loads(stdout)
    assert {"column_shapes", "column_pair_trends", "detection_auc", "ml_synthetic", "closer_to_train"} <= set(scores)
    code, _, stderr = cli(capsys, "sample", str(out), "--n", "3", "--out", str(tmp_path / "s.npy"))
    assert code == 2 and stderr.strip().startswith("ganforge: error:") and ".csv or .parquet" in stderr


def test_bad_table_on_the_command_line(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,x\n2,y\n3,7\n4,8\n5,9\n")
    out = tmp_path / "run"
    code, _, stderr = cli(capsys, "train", str(path), "--out", str(out))
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ganforge: error: "), stderr
    assert "'b' mixes numbers and text" in lines[0] and "data.columns=b:categorical" in lines[0]
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("content, fragment", [
    ("", "empty table"),
    ("a,b\n", "empty table"),
    ("a,b\nx,1\n", "single row"),
    ("a,b,c\n1,,x\n2,,y\n3,,z\n", "column 'b' is entirely missing"),
    ("a,b\n1,x\n2,y\n3,7\n4,8\n5,9\n", "column 'b' mixes numbers and text"),
])
def test_bad_tables_are_usage_errors(tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UsageError, match=fragment):
        ganforge.train(str(path), out=tmp_path / "run", settings={"data.domain": "table"})
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_bad_dataframes_fail_clearly():
    with pytest.raises(UsageError, match="empty table"):
        ganforge.TabularGAN(progress=False).fit(pd.DataFrame())
    with pytest.raises(UsageError, match="single row"):
        ganforge.TabularGAN(progress=False).fit(pd.DataFrame({"a": [1.0], "b": ["x"]}))
    with pytest.raises(UsageError, match="mixes numbers and text"):
        ganforge.TabularGAN(progress=False).fit(pd.DataFrame({"a": [1, "x", 2, 3]}))
    with pytest.raises(UsageError, match="not fitted"):
        ganforge.TabularGAN().sample(3)


def test_builtin_tables_load_with_their_target():
    assert infer_domain("wine").name == "table"
    data = get_domain("table").load(DataConfig(source="wine", holdout=0.2))
    assert data.state["target"] == "target" and data.state["fingerprint"].startswith("wine:")
    assert data.state["n_train"] + len(data.holdout) == 178
    assert {spec["name"]: spec["kind"] for spec in data.state["columns"]}["target"] == "categorical"
    chosen = get_domain("table").load(DataConfig(source="wine", target="alcohol"))
    assert chosen.state["target"] == "alcohol"
