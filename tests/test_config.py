import json

import pytest

from ganforge.config import RunConfig, load_config_file, merge_dict, parse_override, set_value, validate
from ganforge.errors import UsageError


def test_dotted_overrides_are_typed():
    cfg = RunConfig()
    set_value(cfg, "train.lr_d", "1e-4")
    set_value(cfg, "train.steps", "2500")
    set_value(cfg, "model.spectral_norm", "true")
    set_value(cfg, "train.loss", "hinge")
    assert cfg.train.lr_d == 1e-4 and cfg.train.steps == 2500 and cfg.model.spectral_norm is True
    assert cfg.train.loss == "hinge"


@pytest.mark.parametrize("key,value,message", [
    ("train.steps", "1.5", "not a number"),
    ("train.lr_g", "fast", "not a number"),
    ("model.spectral_norm", "maybe", "not a boolean"),
    ("model.g_norm", "group", "choose one of"),
    ("train.nope", "1", "unknown setting"),
    ("nope.lr", "1", "unknown setting"),
])
def test_bad_overrides_name_the_key(key, value, message):
    with pytest.raises(UsageError, match=message):
        set_value(RunConfig(), key, value)


def test_parse_override_needs_an_equals_sign():
    assert parse_override("train.lr_d = 3") == ("train.lr_d", "3")
    with pytest.raises(UsageError, match="key=value"):
        parse_override("train.lr_d")


def test_json_and_toml_files(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"train": {"loss": "lsgan", "batch": 64}, "seed": 3}))
    (tmp_path / "c.toml").write_text("seed = 4\n[model]\nz_dim = 8\n")
    cfg = RunConfig()
    merge_dict(cfg, load_config_file(tmp_path / "c.json"), "c.json")
    merge_dict(cfg, load_config_file(tmp_path / "c.toml"), "c.toml")
    assert (cfg.train.loss, cfg.train.batch, cfg.seed, cfg.model.z_dim) == ("lsgan", 64, 4, 8)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UsageError, match="cannot be parsed"):
        load_config_file(tmp_path / "bad.json")
    with pytest.raises(UsageError, match="unknown section"):
        merge_dict(RunConfig(), {"trian": {"steps": 1}}, "x")


def test_round_trip_through_a_dict():
    cfg = RunConfig()
    set_value(cfg, "train.pack", "4")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("key,value", [("train.batch", 0), ("train.n_critic", 0), ("train.ema", 1.0),
                                       ("train.pack", 3), ("train.ckpt_every", 150), ("train.steps", -1)])
def test_validate_rejects_settings_that_cannot_train(key, value):
    cfg = RunConfig()
    set_value(cfg, key, value)
    with pytest.raises(UsageError):
        validate(cfg)


def test_domain_recipe_fills_only_the_keys_the_user_left_alone(tmp_path):
    from ganforge.config import apply_defaults

    recipe = {"train.lr_g": 2e-4, "train.lr_d": 2e-4, "train.batch": 64, "model.g_norm": "batch", "seed": 5}
    cfg = RunConfig()
    set_value(cfg, "train.lr_g", "1e-3")  # --set
    path = tmp_path / "c.toml"
    path.write_text("[train]\nbatch = 128\n")  # a file that states the global default explicitly
    merge_dict(cfg, load_config_file(path), str(path))
    cfg.model.g_norm = "layer"  # Python API: an attribute changed from the default
    apply_defaults(cfg, recipe)
    assert cfg.train.lr_g == 1e-3 and cfg.train.batch == 128 and cfg.model.g_norm == "layer"
    assert cfg.train.lr_d == 2e-4 and cfg.seed == 5
    assert "train.lr_d" not in cfg.explicit


def test_digits_train_with_their_mlp_recipe_unless_the_user_names_another_net():
    # 8x8 digits get the MLP recipe of their built-in set (docs/BENCHMARKS.md); a user who names
    # another net gets that net with the images recipe, not an MLP's learning rates
    from ganforge.rundir.resolve import resolve

    def resolved(**settings):
        cfg = RunConfig()
        cfg.data.source = "digits"
        for key, value in settings.items():
            set_value(cfg, key.replace("__", "."), value)
        resolve(cfg)
        return cfg

    mine = resolved()
    assert (mine.model.net, mine.model.g_width, mine.model.d_norm, mine.train.lr_g) == ("mlp", 256, "none", 1e-3)
    dcgan = resolved(model__net="dcgan")
    assert (dcgan.model.net, dcgan.model.g_width, dcgan.model.d_norm, dcgan.train.lr_g) == ("dcgan", 64, "batch", 2e-4)
    # the DCGAN recipe's G step reuses the D step's fakes; the MLP recipe keeps Algorithm 1's fresh noise,
    # and a user's own choice wins over either
    assert dcgan.train.reuse_fakes is True and mine.train.reuse_fakes is False
    assert resolved(model__net="dcgan", train__reuse_fakes="false").train.reuse_fakes is False
    assert resolved(train__reuse_fakes="true").train.reuse_fakes is True
    narrow = resolved(model__net="mlp", model__g_width="64")
    assert (narrow.model.g_width, narrow.model.d_width, narrow.train.steps) == (64, 256, 25000)
    assert narrow.train.r1_weight == 1.0
    conditional = resolved(data__task="class")  # the same recipe, class-conditional (an MLP takes labels)
    assert (conditional.model.net, conditional.model.g_width, conditional.train.r1_weight) == ("mlp", 256, 1.0)
    assert resolved(data__task="class", model__net="dcgan").model.g_width == 64
