"""The contract every registered net inherits: shapes, finite outputs, gradients, save/load, determinism.

The nets are read from the registry when the tests are collected, so a newly registered net is
tested as soon as it is registered; until it has an entry in ``NET_CASES`` (a sample shape and the
data set's facts it needs) ``test_every_registered_net_has_a_case`` and its own cases fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from ganforge.config import RunConfig, set_value
from ganforge.engine.loop import build_discriminator, build_generator, set_progress
from ganforge.errors import UsageError
from ganforge.nets import NETS

CPU = torch.device("cpu")
N = 4  # samples per forward pass (a multiple of the minibatch-stddev group)
SMALL = {"model.g_width": 16, "model.d_width": 16, "model.g_depth": 2, "model.d_depth": 2}
SETTINGS = {
    "plain": {},
    # what a state dict must carry besides the weights (batch-norm statistics, spectral-norm vectors)
    # and the extra paths of D (the minibatch-stddev feature)
    "normed": {"model.g_norm": "batch", "model.d_norm": "batch", "model.spectral_norm": True,
               "model.minibatch_stddev": True},
}
# fractions of training for nets with a schedule (progressive growing): mid-fade points of every level
SCHEDULE = [(i + 0.5) / 16 for i in range(16)]

Condition = Callable[[int, torch.Generator], Tensor]


def class_labels(k: int) -> Condition:
    return lambda n, gen: torch.arange(n) % k


def condition_images(shape: tuple[int, ...]) -> Condition:
    return lambda n, gen: torch.rand(n, *shape, generator=gen) * 2 - 1


@dataclass(frozen=True)
class NetCase:
    sample_shape: tuple[int, ...]
    z_dim: int = 8
    net_args: dict = field(default_factory=dict)
    """The data set's facts beyond the sample shape (``Dataset.state["net_args"]``)."""
    condition: Condition | None = None
    """Conditional nets: the conditions of ``n`` samples, for ``G(z, c)`` and ``D(x, c)``."""
    settings: dict = field(default_factory=dict)
    discriminator: bool = True
    """False: the net has no D of samples, and its D builder must refuse with a UsageError."""


# a table of a numeric column (CTGAN: a scalar and 2 modes) and two categorical columns (3 and 2 values)
TABLE_SPANS = [["tanh", 1], ["softmax", 2], ["softmax", 3], ["softmax", 2]]
TABLE_CONDITIONS = {"cond_spans": [[3, 3], [6, 2]], "cond_probs": [0.2, 0.1, 0.2, 0.3, 0.2]}
WINDOW = NetCase((8, 2), z_dim=16)  # 8 steps of 2 features, 2 latent entries a step

NET_CASES: dict[str, dict[str, NetCase]] = {
    "mlp": {
        "points": NetCase((2,), z_dim=4),
        "class-projection": NetCase((1, 8, 8), net_args={"n_classes": 3}, condition=class_labels(3),
                                    settings={"model.cond_d": "projection"}),
        "class-acgan": NetCase((1, 8, 8), net_args={"n_classes": 3}, condition=class_labels(3),
                               settings={"model.cond_d": "acgan"}),
    },
    "dcgan": {
        "images": NetCase((3, 16, 16)),
        "class-projection": NetCase((1, 16, 16), net_args={"n_classes": 3}, condition=class_labels(3),
                                    settings={"model.cond_d": "projection"}),
        "class-acgan": NetCase((1, 16, 16), net_args={"n_classes": 3}, condition=class_labels(3),
                               settings={"model.cond_d": "acgan"}),
    },
    "progressive": {"images": NetCase((1, 16, 16))},
    "pix2pix": {"sr": NetCase((3, 16, 16), net_args={"cond_shape": [1, 8, 8]}, condition=condition_images((1, 8, 8)))},
    "gru": {"windows": WINDOW},
    "lstm": {"windows": WINDOW},
    "tcn": {"windows": WINDOW},
    "tabular": {
        "conditional": NetCase((8,), net_args={"spans": TABLE_SPANS, **TABLE_CONDITIONS}, condition=class_labels(5)),
        "unconditional": NetCase((8,), net_args={"spans": TABLE_SPANS, "cond_spans": [], "cond_probs": []}),
    },
    # TimeGAN's saved generator R(S(G(z))); its D judges latents and is trained by ganforge.families.timegan
    "timegan": {"windows": NetCase((8, 2), z_dim=16, discriminator=False)},
}


def _case_params() -> list:
    params = []
    for net in sorted(NETS):
        for variant in NET_CASES.get(net, {"no-case": None}):
            for setting in SETTINGS:
                params.append(pytest.param(net, variant, setting, id=f"{net}-{variant}-{setting}"))
    return params


CASES = pytest.mark.parametrize("net,variant,setting", _case_params())


def config(settings: dict) -> RunConfig:
    cfg = RunConfig(device="cpu")
    for key, value in {**SMALL, **settings}.items():
        set_value(cfg, key, value)
    return cfg


def cases_of(net: str) -> dict[str, NetCase]:
    if net not in NET_CASES:
        pytest.fail(f"net '{net}' is registered but has no entry in NET_CASES; add its sample shape and net_args")
    return NET_CASES[net]


def build(net: str, variant: str, setting: str, seed: int = 0) -> tuple[NetCase, nn.Module, nn.Module | None]:
    """``(case, G, D)`` built as ``build_players`` builds them (G, then D, after one seed); D is None
    for a net without a discriminator of samples."""
    case = cases_of(net)[variant]
    cfg = config({**SETTINGS[setting], **case.settings})
    torch.manual_seed(seed)
    G = build_generator(cfg, net, case.z_dim, case.sample_shape, CPU, case.net_args)
    D = build_discriminator(cfg, net, case.sample_shape, CPU, case.net_args) if case.discriminator else None
    return case, G, D


def inputs(case: NetCase, n: int = N, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, case.z_dim, generator=gen)
    return z, case.condition(n, gen) if case.condition is not None else None


def call(module: nn.Module, x: Tensor, c: Tensor | None) -> Tensor | tuple[Tensor, ...]:
    return module(x) if c is None else module(x, c)


def as_tuple(out: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def fractions(*modules: nn.Module | None) -> list[float | None]:
    """The points of a training schedule to look at: the sweep for nets with one, else the net as built."""
    return SCHEDULE if any(hasattr(m, "set_progress") for m in modules if m is not None) else [None]


def eval_outputs(G: nn.Module, D: nn.Module | None, z: Tensor, c: Tensor | None) -> list[Tensor]:
    """Every output of G and D in eval mode (D judging G's samples), at every point of the schedule."""
    outputs = []
    G.eval()
    if D is not None:
        D.eval()
    with torch.no_grad():
        for fraction in fractions(G, D):
            if fraction is not None:
                set_progress((G, D), fraction)
            x = call(G, z, c)
            outputs += [x, *(as_tuple(call(D, x, c)) if D is not None else ())]
    return outputs


def test_every_registered_net_has_a_case():
    assert set(NET_CASES) == set(NETS)


@CASES
def test_output_shapes_and_finite_values(net, variant, setting):
    case, G, D = build(net, variant, setting)
    z, c = inputs(case)
    x = call(G, z, c)
    assert x.shape == (N, *case.sample_shape) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    if D is None:
        with pytest.raises(UsageError):
            build_discriminator(config(SETTINGS[setting]), net, case.sample_shape, CPU, case.net_args)
        return
    out = as_tuple(call(D, x, c))
    assert out[0].shape == (N,), "D returns one logit per sample"
    if len(out) > 1:  # ACGAN: (logits, class logits)
        assert len(out) == 2 and out[1].shape == (N, case.net_args["n_classes"])
    assert all(torch.isfinite(o).all() for o in out)


def weighted_sum(outputs: tuple[Tensor, ...]) -> Tensor:
    """A scalar of the outputs with fixed random weights: a plain ``sum()`` has exactly zero gradient
    through a softmax group (it sums to 1) and through batch-normalised features (they sum to 0)."""
    gen = torch.Generator().manual_seed(1)
    return sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outputs)


def reached_parameters(module: nn.Module, loss_at: Callable[[], Tensor], points: list[float | None]) -> set[str]:
    """Names of the parameters with a non-zero gradient at some point of ``points``; every gradient finite."""
    reached = set()
    for fraction in points:
        if fraction is not None:
            set_progress((module,), fraction)
        module.zero_grad(set_to_none=True)
        loss_at().backward()
        for name, p in module.named_parameters():
            if p.grad is not None:
                assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
                if p.grad.abs().sum() > 0:
                    reached.add(name)
    return reached


@CASES
def test_gradients_reach_every_parameter(net, variant, setting):
    """Every trainable parameter of G (from its samples) and of D (from its logits) gets a finite,
    non-zero gradient. A net with a schedule (progressive growing) uses only the levels it has grown,
    by design: there every parameter must be reached at some point of the schedule."""
    case, G, D = build(net, variant, setting)
    z, c = inputs(case)
    for module, loss_at in (
        (G, lambda: weighted_sum((call(G, z, c),))),
        (D, lambda: weighted_sum(as_tuple(call(D, call(G, z, c).detach(), c)))),
    ):
        if module is None:
            continue
        trainable = {name for name, p in module.named_parameters() if p.requires_grad}
        assert trainable, "a net with nothing to train"
        missing = trainable - reached_parameters(module, loss_at, fractions(module))
        assert not missing, f"{type(module).__name__}: no gradient reaches {sorted(missing)}"


@CASES
def test_state_dict_round_trip_through_safetensors(net, variant, setting):
    """Nets built with another seed and given the weights (as a checkpoint stores them) compute the same."""
    case, G, D = build(net, variant, setting, seed=0)
    z, c = inputs(case)
    with torch.no_grad():  # one training-mode pass moves batch-norm statistics and spectral-norm vectors
        x = call(G, z, c)
        if D is not None:
            call(D, x, c)
    _, G2, D2 = build(net, variant, setting, seed=1)
    before = eval_outputs(G2, D2, z, c)
    expected = eval_outputs(G, D, z, c)
    assert any(not torch.allclose(a, b) for a, b in zip(before, expected)), "another seed should give other nets"
    for source, target in ((G, G2), (D, D2)):
        if source is not None:
            tensors = {k: v.detach().contiguous() for k, v in source.state_dict().items()}
            target.load_state_dict(load_safetensors(save_safetensors(tensors)), strict=True)
    for got, want in zip(eval_outputs(G2, D2, z, c), expected, strict=True):
        torch.testing.assert_close(got, want)


@CASES
def test_same_seed_same_nets(net, variant, setting):
    case, G, D = build(net, variant, setting, seed=0)
    _, G2, D2 = build(net, variant, setting, seed=0)
    z, c = inputs(case)
    for got, want in zip(eval_outputs(G2, D2, z, c), eval_outputs(G, D, z, c), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


# --- what a net cannot take is refused with a UsageError ---------------------------------------

# the facts of each kind of data set, and a sample of each kind of data
FOREIGN_NET_ARGS = {"class labels": {"n_classes": 3}, "condition images": {"cond_shape": [1, 8, 8]},
                    "table spans": {"spans": TABLE_SPANS, "cond_spans": [], "cond_probs": []}}
SAMPLE_SHAPES = {"points": (2,), "images": (1, 16, 16), "windows": (8, 2), "rows": (8,)}

def refusal_failures(net: str, trials: list[tuple[str, tuple[int, ...], dict]], fits_allowed: bool) -> list[str]:
    """What the builders of ``net`` did, per ``(what, sample shape, net_args)`` trial, instead of raising a
    UsageError (or, with ``fits_allowed``, building a G and D that fit the shape)."""
    failures = []
    cfg = config({})
    for what, shape, net_args in trials:
        try:
            G = build_generator(cfg, net, 16, shape, CPU, net_args)
            D = build_discriminator(cfg, net, shape, CPU, net_args)
            if not fits_allowed:
                failures.append(f"{what}: built without complaint")
                continue
            x = G(torch.randn(N, 16))
            if x.shape != (N, *shape):
                failures.append(f"{what}: G makes {list(x.shape)} for samples {list(shape)}")
            logits = D(torch.rand(N, *shape))  # D judges real samples of the shape too
            if logits.shape != (N,):
                failures.append(f"{what}: D makes {list(logits.shape)} for samples {list(shape)}")
        except UsageError:
            continue
        except Exception as exc:  # noqa: BLE001 - the point is to name what went wrong instead
            failures.append(f"{what}: {type(exc).__name__}: {exc}")
    return failures


@pytest.mark.parametrize("net", sorted(NETS))
def test_facts_of_another_kind_of_data_are_refused(net):
    """e.g. ``--set data.task=class --set model.net=mlp`` on images, or ``model.net=dcgan`` on a table."""
    own = {key for case in cases_of(net).values() for key in case.net_args}
    shape = next(iter(cases_of(net).values())).sample_shape
    trials = [(what, shape, args) for what, args in FOREIGN_NET_ARGS.items() if not own & set(args)]
    failures = refusal_failures(net, trials, fits_allowed=False)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("net", sorted(NETS))
def test_samples_of_another_shape_are_refused_or_fit(net):
    """e.g. ``model.net=mlp`` on images or series: it flattens them (D) and shapes its output (G)."""
    own = {case.sample_shape for case in cases_of(net).values()}
    trials = [(what, shape, {}) for what, shape in SAMPLE_SHAPES.items() if shape not in own]
    failures = refusal_failures(net, trials, fits_allowed=True)
    assert not failures, "\n".join(failures)
