"""One typed run configuration: dataclasses with defaults, a file, dotted overrides.

Resolution order (later wins): dataclass defaults (tuned for points), the domain's recipe for
keys the user left alone (e.g. DCGAN's Adam settings for images), the data set's own hints (e.g.
the 4-number latent of ``gaussian2d``), a ``--config`` file (JSON or TOML), then ``--set key=value``
and the dedicated CLI flags. Every run saves its resolved configuration as ``config.json``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ganforge.errors import UsageError

Norm = Literal["none", "batch", "layer", "instance"]
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu", "tanh"]


@dataclass
class DataConfig:
    source: str = ""
    """Built-in data set name or a file path."""
    domain: str = ""
    """Kind of data (``points``); empty means inferred from the data."""
    n: int = 100_000
    """Number of training points drawn from a built-in synthetic set (PacGAN uses 100,000), and of
    images in ``stacked-mnist`` (PacGAN uses 128,000)."""
    holdout: float = 0.1
    """Fraction of a user's file held out for evaluation (0 disables the split)."""
    standardize: bool = True
    """Train on per-feature standardised data; samples are mapped back to the original scale."""
    channels: int = 0
    """Images: 1 (gray) or 3 (RGB) to convert to; 0 keeps gray as gray and colour as RGB."""
    size: str = ""
    """Images: resize to ``"32"`` (square) or ``"28x56"`` (height x width); empty keeps the size."""
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos", "box"] = "bicubic"
    """Images: the resampling filter used when resizing."""
    skip_bad: bool = False
    """Images: skip (and count) unreadable image files instead of stopping with an error."""
    task: Literal["none", "class", "sr", "edges", "pairs"] = "none"
    """What G is conditioned on: nothing; the class label (``class``: G and D see the label); a
    low-resolution copy of each image (``sr``, super-resolution by ``data.sr_factor``); the image's
    edge map (``edges``, edges-to-image translation); or the source image of a user's pair
    (``pairs``, image-to-image translation, pix2pix)."""
    sr_factor: int = 2
    """Super-resolution: the condition is the image shrunk by this factor (28x28 -> 14x14)."""
    window: int = 0
    """Series: window length in steps; 0 = whole sequences for a set of sequences (a 3-D ``.npy``,
    a ``.ts`` file, ``basicmotions``), else 24 (TimeGAN's)."""
    stride: int = 1
    """Series: steps between the starts of consecutive windows (TimeGAN's 1: every window)."""
    metric_repeats: int = 10
    """Series: repeats of TimeGAN's discriminative and predictive scores in a full evaluation
    (TimeGAN reports the mean and std over 10); 0 skips the two scores."""
    eval_protocol: Literal["fast", "full"] = "fast"
    """How thoroughly the end of training (and ``ganforge eval``, unless ``--protocol`` says otherwise)
    scores series and tables. ``fast`` (the default) keeps the final scoring to seconds: series get
    TimeGAN's two scores over 2 repeats of 1,000 iterations each, tables detection by logistic
    regression only; ``full`` is each paper's protocol (series: ``data.metric_repeats`` repeats of
    2,000 and 5,000 iterations, about 2 minutes on 2 CPU cores; tables: also gradient-boosted
    detection). The evaluation's ``protocol`` key says which one made its numbers: compare scores
    of the same protocol only."""
    columns: str = ""
    """Tables: column kinds that override the inferred ones, as ``name:kind,...`` with kinds
    continuous, integer, categorical, boolean, datetime (e.g. ``zip:categorical,visits:integer``)."""
    target: str = ""
    """Tables: the column the machine-learning-efficacy evaluation predicts (classification for a
    categorical or boolean column, regression otherwise); empty skips that evaluation."""
    cond_sampling: Literal["log", "rows", "none"] = "log"
    """Tables: how conditions on the discrete columns are drawn in training: ``log`` is CTGAN's
    training-by-sampling (a column uniformly, then one of its values with probability ~ log(1 +
    count), then a real row holding it), ``rows`` conditions each real row on one of its own values
    (no rebalancing), ``none`` trains an unconditional generator."""


@dataclass
class ModelConfig:
    net: str = ""
    """Network family from the net registry; empty means the domain's default (``mlp`` for points)."""
    z_dim: int = 0
    """Latent size; 0 means the data set's hint or the domain default."""
    g_width: int = 96
    g_depth: int = 3
    d_width: int = 64
    d_depth: int = 3
    """Widths and depths: the points recipe's G is 96 units wide and its D 64 (with 20,000 steps, the
    best high-quality share found within a minute on 2 CPU cores; docs/BENCHMARKS.md)."""
    g_activation: Activation = "relu"
    d_activation: Activation = "leaky_relu"
    g_norm: Norm = "none"
    d_norm: Norm = "none"
    spectral_norm: bool = False
    """Spectral normalisation on every linear layer of D (Miyato et al. 2018)."""
    minibatch_stddev: bool = False
    """Append the minibatch standard deviation as a feature before D's last layer (Karras et al. 2018)."""
    upsample: Literal["transposed", "pixelshuffle"] = "transposed"
    """Images: how G doubles its resolution (transposed convolution, or conv + PixelShuffle)."""
    downsample: Literal["strided", "avgpool"] = "strided"
    """Images: how D halves its resolution (strided convolution, or conv + average pooling)."""
    cond_d: Literal["projection", "acgan"] = "projection"
    """Class-conditional D: a projection discriminator (Miyato & Koyama 2018) or an auxiliary
    classifier head (ACGAN, Odena et al. 2017)."""
    pg_grow: float = 0.5
    """Progressive growing (``model.net=progressive``): the fraction of training spent growing from
    the lowest resolution to the full one; the full resolution then trains for the rest (0 = full
    resolution from the first step, no growing)."""
    pg_fade: float = 0.5
    """Progressive growing: the fraction of each level's share of ``model.pg_grow`` spent fading the
    next level in (alpha 0 -> 1); the rest of the share trains the current level alone."""
    family: str = "gan"
    """The model family from the family registry (``ganforge.families``). What trains G: ``gan``, the adversarial game; ``vae``, the variational autoencoder
    baseline (Kingma & Welling 2014; ``ganforge.families.vae``): D's architecture is the encoder, G's the
    decoder, and the decoder is saved as G, so sampling and evaluation treat it as any generator;
    or ``timegan`` (series only), TimeGAN (Yoon et al. 2019; ``ganforge.families.timegan``): embedding,
    supervised and joint adversarial training of five GRU nets, saving ``R(S(G(z)))`` as G."""
    vae_sigma: float = 0.0
    """VAE: the std of the decoder's Gaussian likelihood in encoded units (images: [-1, 1]); 0 uses
    each batch's maximum-likelihood std, sigma^2 = MSE (the optimal-sigma VAE, Rybkin et al. 2021)."""


@dataclass
class TrainConfig:
    steps: int = 20000
    """Generator steps; each is preceded by ``n_critic`` discriminator steps."""
    batch: int = 128
    loss: str = "ns"
    """One of the registered losses: minimax, ns, wasserstein, wgan-gp, hinge, lsgan."""
    n_critic: int = 1
    lr_g: float = 4e-3
    lr_d: float = 4e-3
    beta1: float = 0.0
    beta2: float = 0.9
    lr_decay: float = 1.0
    """Cosine decay of both learning rates to ``lr * (1 - lr_decay)`` at the last step (0 = constant)."""
    ema: float = 0.999
    """Decay of the generator's exponential moving average used for sampling (0 = off)."""
    gp_weight: float = 10.0
    """Lambda of the gradient penalty used by ``wgan-gp`` (Gulrajani et al. 2017)."""
    r1_weight: float = 0.1
    """Gamma of the R1 penalty on real data (Mescheder et al. 2018); 0 = off."""
    r1_every: int = 16
    """Lazy regularisation (Karras et al. 2020, StyleGAN2): apply R1 every this many D steps, scaled
    by the same factor, so its double backward costs 1/r1_every as much (1 = every step)."""
    weight_clip: float = 0.0
    """Clip D's weights to [-c, c] after every D step (the original WGAN); 0 = off."""
    label_smoothing: float = 0.0
    """One-sided label smoothing: real targets become 1 - s (Salimans et al. 2016)."""
    soft_labels: bool = False
    """Real targets drawn from U[0.7, 1.2] and fake from U[0, 0.3] (ganhacks)."""
    label_flip: float = 0.0
    """Probability of swapping a sample's real/fake target in the D step (noisy labels)."""
    instance_noise: float = 0.0
    """Std of Gaussian noise added to D's inputs, real and fake (in standardised units)."""
    instance_noise_steps: int = 0
    """Steps over which the instance noise decays linearly to zero (0 = the whole run)."""
    separate_batches: bool = True
    """Show D all-real and all-fake minibatches separately (ganhacks) instead of one mixed batch."""
    pack: int = 1
    """PacGAN packing degree: D judges ``pack`` samples jointly."""
    l1_weight: float = 0.0
    """Image-conditional tasks: weight of the L1 distance between G's output and the paired target
    in G's loss (pix2pix uses 100)."""
    aux_weight: float = 1.0
    """ACGAN: weight of the auxiliary classification loss in both players' losses."""
    reuse_fakes: bool = False
    """The G step reuses the last D step's fake batch (as the PyTorch DCGAN tutorial does) instead
    of drawing fresh noise as Algorithm 1 does: one forward pass of G fewer per step."""
    augment: str = ""
    """Images: differentiable augmentations of everything D sees, real and fake, in both players'
    steps, as comma-separated names from ``ganforge.engine.augment.OPS``: ``translation``,
    ``cutout``, ``color`` (brightness, saturation and contrast; each also by its own name).
    DiffAugment's policy (Zhao et al. 2020) is ``translation,cutout,color``; empty = off. For small
    image sets (a few thousand images or fewer), where D otherwise memorises the data."""
    augment_p: float = 1.0
    """Probability that each augmentation is applied to each sample when ``train.ada`` is off
    (1 = DiffAugment, every op on every sample)."""
    ada: bool = False
    """Adaptive augmentation (ADA, Karras et al. 2020): the probability p starts at 0 and moves
    towards the point where r_t = E[sign(D(x_real))] is ``train.ada_target``."""
    ada_target: float = 0.6
    """ADA: the target of the overfitting heuristic r_t (the paper's 0.6)."""
    ada_interval: int = 4
    """ADA: adjust p every this many D steps (the paper's 4)."""
    ada_kimg: float = 100.0
    """ADA: thousands of real images over which p can move from 0 to 1. The paper's 500 suits its
    runs of 25,000k images (p can swing in 2% of a run); the images recipe here shows D 192k images
    (3,000 steps of 64), over which 500 would let p reach only 0.38 however much D overfits. With
    100, p can reach 1 in about half of such a run and moves 0.0026 per adjustment, small enough
    that the noise of r_t over 256 images does not make it wander."""
    log_every: int = 100
    ckpt_every: int = 1000
    eval_every: int = 1000
    """Domain metrics (e.g. mode coverage) every this many steps; 0 = only at the end."""
    snapshot_every: int = 0
    """Draw G_ema's samples of fixed latents into ``RUN/progress/step-XXXXXXXX.png`` every this many
    steps (at the first logged step at or after each multiple), and at step 0 and the last step;
    the end of training assembles them into ``RUN/progress.gif``. 0 = off (the default for points,
    whose minute-long runs a scatter plot per frame would slow; images draw one every 500 steps)."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Mixed precision: the networks' forward passes under autocast, losses in float32. ``auto`` is
    bf16 on CUDA devices that support it, fp16 with a gradient scaler on other CUDA devices, and
    off on the CPU (results unchanged); ``bf16`` also runs on the CPU; ``fp16`` needs CUDA."""
    compile: Literal["auto", "off", "on"] = "auto"
    """``torch.compile`` G and D: ``auto`` is on with CUDA and triton (not for progressive nets, whose
    schedule would recompile them), off on the CPU; ``on`` compiles anywhere (the CPU needs a C++
    compiler). Checkpoints are the same either way."""
    tensorboard: bool = False
    """Also write TensorBoard event files to ``RUN/tensorboard/``: every monitor record and
    evaluation score as scalars, the progress frames and the final ``samples.png`` as images.
    Needs the optional ``tensorboard`` package (``pip install tensorboard``); training results
    are the same with it on or off."""


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        # dotted keys given explicitly (file, --set, flags); a domain's defaults never override them
        self.explicit: set[str] = set()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> "RunConfig":
        cfg = cls()
        merge_dict(cfg, values, where)
        return cfg


def _section_fields(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert ``value`` (from a file or the command line) to the field's declared type."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise UsageError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, choices))}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{key}={value!r} is not a boolean; use true or false")
    if hint in (int, float):
        if isinstance(value, bool):
            raise UsageError(f"{key}={value!r} is not a number; give a {hint.__name__}")
        try:
            number = float(value) if hint is float else _to_int(value)
        except (TypeError, ValueError):
            raise UsageError(f"{key}={value!r} is not a number; give a {hint.__name__}") from None
        return number
    if hint is str:
        return str(value)
    raise UsageError(f"{key}: unsupported setting type {hint}")  # pragma: no cover - programming error


def _to_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


def set_value(cfg: RunConfig, key: str, value: Any) -> None:
    """Set a dotted key such as ``train.lr_d`` to ``value``, converting it to the field's type.

    An unknown key is one UsageError that suggests the nearest known key: the same name in its
    section (``loss`` -> ``train.loss``) or the closest spelling (``train.los`` -> ``train.loss``).
    """
    parts = key.split(".")
    target: Any = cfg
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(target) or part not in _section_fields(target):
            raise UsageError(f"unknown setting '{key}'{did_you_mean(cfg, key)}; "
                             f"sections are: {', '.join(_section_fields(cfg))}")
        target = getattr(target, part)
    fields = _section_fields(target) if dataclasses.is_dataclass(target) else {}
    name = parts[-1]
    if name in fields and dataclasses.is_dataclass(getattr(target, name)):
        raise UsageError(f"'{key}' is a section of settings; give one of its keys, e.g. "
                         f"--set {key}.{next(iter(_section_fields(getattr(target, name))))}=...")
    if name not in fields:
        valid = ", ".join(k for k in fields if not dataclasses.is_dataclass(getattr(target, k)))
        where = f"valid keys here: {valid}" if valid else f"sections are: {', '.join(_section_fields(cfg))}"
        raise UsageError(f"unknown setting '{key}'{did_you_mean(cfg, key)}; {where}")
    setattr(target, name, _coerce(value, fields[name], key))
    if isinstance(cfg, RunConfig):
        cfg.explicit.add(key)


def setting_keys(cfg: Any) -> list[str]:
    """Every dotted setting key of a config (``data.source``, ..., ``train.loss``, ``seed``, ``device``)."""
    keys = []
    for name in _section_fields(cfg):
        value = getattr(cfg, name)
        keys += [f"{name}.{k}" for k in setting_keys(value)] if dataclasses.is_dataclass(value) else [name]
    return keys


def did_you_mean(cfg: Any, key: str) -> str:
    """`` (did you mean 'train.loss'?)`` for an unknown ``key``: the known keys with the same last
    part (a key given without its section), else the closest spelling; empty when nothing is close."""
    keys = setting_keys(cfg)
    leaf = key.rpartition(".")[2]
    leaves = {k: k.rpartition(".")[2] for k in keys}
    close = [k for k in keys if leaves[k] == leaf] or difflib.get_close_matches(key, keys, n=1)
    if not close:  # a misspelt name given without its section: the nearest names, wherever they are
        near = difflib.get_close_matches(leaf, list(leaves.values()), n=2)
        close = [k for k in keys if leaves[k] in near]
    return f" (did you mean {' or '.join(repr(k) for k in close)}?)" if close else ""


def get_value(cfg: RunConfig, key: str) -> Any:
    target: Any = cfg
    for part in key.split("."):
        target = getattr(target, part)
    return target


def apply_defaults(cfg: RunConfig, defaults: dict[str, Any]) -> None:
    """Apply a domain's recipe (e.g. the DCGAN learning rates for images) to every key the user
    left alone: not set through a file, ``--set`` or a flag, and still at the global default.

    A value assigned as a Python attribute counts as set only if it differs from the global
    default; to pin a key to the global default from Python, use ``set_value`` (or ``settings=``).
    """
    pristine = RunConfig()
    for key, value in defaults.items():
        if key not in cfg.explicit and get_value(cfg, key) == get_value(pristine, key):
            set_value(cfg, key, value)
            cfg.explicit.discard(key)


def merge_dict(cfg: Any, values: dict[str, Any], where: str, prefix: str = "") -> None:
    if not isinstance(values, dict):
        raise UsageError(f"{where}: '{prefix.rstrip('.') or 'top level'}' must be a table of settings")
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            sub = getattr(cfg, name, None)
            if not dataclasses.is_dataclass(sub):
                raise UsageError(f"{where}: unknown section '{key}'")
            merge_dict(sub, value, where, key + ".")
            if isinstance(cfg, RunConfig):
                cfg.explicit.update(f"{key}.{k}" for k in value if not isinstance(value[k], dict))
        else:
            set_value_on(cfg, name, value, where, key)
            if isinstance(cfg, RunConfig):
                cfg.explicit.add(key)


def set_value_on(section: Any, name: str, value: Any, where: str, key: str) -> None:
    fields = _section_fields(section)
    if name not in fields or dataclasses.is_dataclass(getattr(section, name)):
        raise UsageError(f"{where}: unknown setting '{key}'")
    setattr(section, name, _coerce(value, fields[name], key))


def parse_override(text: str) -> tuple[str, str]:
    """``"train.loss=hinge"`` -> ``("train.loss", "hinge")``; a text without ``=`` or without a key
    is a UsageError (the key itself is checked by :func:`set_value`)."""
    if "=" not in text:
        raise UsageError(f"--set {text!r}: expected key=value, e.g. --set train.lr_d=1e-4")
    key, value = text.split("=", 1)
    if not key.strip():
        raise UsageError(f"--set {text!r}: the key before '=' is missing, e.g. --set train.loss=hinge")
    return key.strip(), value.strip()


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file not found: {path}; give an existing .json or .toml file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            return tomllib.loads(text)
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path} cannot be parsed ({exc}); fix it or give another --config") from None


def validate(cfg: RunConfig) -> None:
    """Reject settings that cannot train, naming the key and a fix."""
    t, m = cfg.train, cfg.model
    checks = [
        (t.steps >= 0, "train.steps must be >= 0"),
        (t.batch >= 1, "train.batch must be >= 1"),
        (t.n_critic >= 1, "train.n_critic must be >= 1"),
        (t.lr_g > 0 and t.lr_d > 0, "learning rates train.lr_g and train.lr_d must be > 0"),
        (0 <= t.ema < 1, "train.ema must be in [0, 1)"),
        (0 <= t.lr_decay <= 1, "train.lr_decay must be in [0, 1]"),
        (0 <= t.label_smoothing < 0.5, "train.label_smoothing must be in [0, 0.5)"),
        (0 <= t.label_flip < 0.5, "train.label_flip must be in [0, 0.5)"),
        (t.instance_noise >= 0, "train.instance_noise must be >= 0"),
        (t.l1_weight >= 0 and t.aux_weight >= 0, "train.l1_weight and train.aux_weight must be >= 0"),
        (cfg.data.sr_factor >= 2, "data.sr_factor must be >= 2"),
        (t.l1_weight == 0 or cfg.data.task in ("sr", "edges", "pairs"),
         "train.l1_weight needs paired data: set data.task=sr, edges or pairs, or train.l1_weight=0"),
        (cfg.data.task == "none" or t.pack == 1, "train.pack > 1 cannot be combined with a conditional data.task; set train.pack=1"),
        (t.pack >= 1, "train.pack must be >= 1"),
        (t.r1_every >= 1, "train.r1_every must be >= 1"),
        (t.batch % t.pack == 0, f"train.batch ({t.batch}) must be a multiple of train.pack ({t.pack})"),
        (t.log_every >= 1, "train.log_every must be >= 1"),
        (t.ckpt_every >= 1 and t.ckpt_every % t.log_every == 0,
         "train.ckpt_every must be a positive multiple of train.log_every"),
        (t.eval_every >= 0, "train.eval_every must be >= 0"),
        (t.snapshot_every >= 0, "train.snapshot_every must be >= 0 (0 turns the progress frames off)"),
        (m.z_dim >= 0, "model.z_dim must be >= 0"),
        (m.vae_sigma >= 0, "model.vae_sigma must be >= 0 (0 learns the decoder's std)"),
        (m.g_depth >= 1 and m.d_depth >= 1, "model.g_depth and model.d_depth must be >= 1"),
        (m.g_width >= 1 and m.d_width >= 1, "model.g_width and model.d_width must be >= 1"),
        (0 <= cfg.data.holdout < 1, "data.holdout must be in [0, 1)"),
        (cfg.data.n >= 2, "data.n must be >= 2"),
    ]
    # augmentation (ganforge.engine.augment checks the op names, and that the samples are images)
    checks += [
        (0 <= t.augment_p <= 1, "train.augment_p must be in [0, 1]"),
        (0 < t.ada_target < 1, "train.ada_target must be in (0, 1) (the ADA paper's 0.6)"),
        (t.ada_interval >= 1, "train.ada_interval must be >= 1 (D steps between adjustments of p)"),
        (t.ada_kimg > 0, "train.ada_kimg must be > 0 (thousands of images for p to go from 0 to 1)"),
        (not t.ada or t.augment.strip(), "train.ada=true steers the probability of train.augment's ops; name them, "
                                         "e.g. train.augment=translation,cutout,color"),
        (not t.augment.strip() or cfg.data.task in ("none", "class"),
         f"train.augment would augment the images but not their data.task={cfg.data.task} source images; "
         "set train.augment= (empty) or data.task=none"),
    ]
    checks += _range_checks(cfg)
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


# --- ranges (issue 15): checked before anything is loaded, built or written ------------------

UPPER_BOUNDS: dict[str, int] = {
    "seed": 2**32 - 1,  # what NumPy's and scikit-learn's seeds take
    "train.steps": 10**9, "train.batch": 2**20, "train.n_critic": 1000, "train.pack": 1024, "train.r1_every": 10**6,
    "train.log_every": 10**9, "train.ckpt_every": 10**9, "train.eval_every": 10**9, "train.snapshot_every": 10**9,
    "train.instance_noise_steps": 10**9,
    "model.z_dim": 2**16, "model.g_width": 2**16, "model.d_width": 2**16, "model.g_depth": 256, "model.d_depth": 256,
    "data.n": 10**8, "data.sr_factor": 64, "data.window": 10**6, "data.stride": 10**6, "data.metric_repeats": 1000,
}
"""The largest value of each whole-number setting: far beyond any useful run, and small enough that
nothing overflows or tries to allocate the impossible (the nets' memory is estimated separately)."""


def _range_checks(cfg: RunConfig) -> list[tuple[bool, str]]:
    """Upper bounds of the whole-number settings, a seed >= 0, and every float setting finite."""
    checks = [(0 <= cfg.seed, f"seed must be >= 0, got {cfg.seed}")]
    checks += [(get_value(cfg, key) <= top, f"{key} must be <= {top:,}, got {get_value(cfg, key):,}")
               for key, top in UPPER_BOUNDS.items()]
    for section in (cfg.data, cfg.model, cfg.train):
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                checks.append((False, f"{_section_name(cfg, section)}.{f.name}={value} must be a finite number"))
    return checks


def _section_name(cfg: RunConfig, section: Any) -> str:
    return next(f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) is section)
