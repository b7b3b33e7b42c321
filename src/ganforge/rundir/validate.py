"""One validation of what is read back from a run directory, and of what a run will need.

``config.json``, ``data.json`` and a checkpoint's ``state.json`` are JSON that a person may edit or
a disk may damage; each is checked here for the types and ranges the code relies on, and anything
wrong is one UsageError naming the file and the key. ``state.json`` is not covered by the
checkpoint's hash (which guards the binary weights against truncation and damage): it is small,
readable JSON, so it is validated key by key instead, and an edit that passes is honoured.

:func:`check_memory` estimates the memory of a run's networks (built on PyTorch's ``meta`` device,
which allocates nothing) so that a config that cannot fit is refused before anything is written.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import torch

from ganforge.config import RunConfig, validate
from ganforge.domains import DOMAINS
from ganforge.engine.loop import build_discriminator, build_generator
from ganforge.errors import UsageError
from ganforge.io import available_memory, human_bytes

MAX_SAMPLE_VALUES = 2**26
"""The most numbers one sample may hold (a 4096 x 4096 RGB image is 50 million)."""
FLOAT_BYTES = 4
TRAINING_COPIES = {"G": 5, "D": 4}
"""Float32 copies of each net's parameters in training: weights, gradients, Adam's two moments,
and for G its moving average (G_ema)."""


def damaged(where: Path | str, problem: str) -> UsageError:
    """The error for a run file that is not what the code wrote: the file, the problem, the fix."""
    return UsageError(f"{where}: {problem}; restore the file (or fix it by hand), or train a new run")


def read_json(path: Path) -> Any:
    """The JSON value of a run file; a missing, unreadable or cut-short file is a UsageError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise damaged(path, "the file is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, f"cannot be read ({exc})") from None


def load_config(path: Path) -> RunConfig:
    """``config.json`` of a run as a :class:`RunConfig`: a table of known settings of the right
    types, within the ranges :func:`ganforge.config.validate` accepts, and resolved (a latent size)."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise damaged(path, f"expected a table of settings, found a JSON {type(raw).__name__}")
    if isinstance(raw.get("train"), dict):
        raw["train"].setdefault("r1_every", 1)  # runs from before lazy R1 applied it on every D step
    try:
        cfg = RunConfig.from_dict(raw, where=str(path))
        validate(cfg)
    except UsageError as exc:
        text = str(exc)
        raise damaged(path, text.removeprefix(f"{path}: ")) from None
    if cfg.model.z_dim < 1:
        raise damaged(path, f"model.z_dim is {cfg.model.z_dim}; a trained run has a latent size >= 1")
    return cfg


def load_data_facts(path: Path) -> dict[str, Any]:
    """``data.json`` of a run: its domain (a registered one), the sample shape (positive sizes, not
    more than ``MAX_SAMPLE_VALUES`` numbers), the data's fingerprint and the nets' data facts."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise damaged(path, f"expected a table, found a JSON {type(raw).__name__}")
    domain = raw.get("domain")
    if not isinstance(domain, str) or domain not in DOMAINS:
        raise damaged(path, f"'domain' is {domain!r}; expected one of {', '.join(DOMAINS)}")
    shape = raw.get("sample_shape")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4 and all(_is_int(s) and s >= 1 for s in shape)):
        raise damaged(path, f"'sample_shape' is {shape!r}; expected a list of 1 to 4 sizes >= 1")
    if math.prod(shape) > MAX_SAMPLE_VALUES:
        raise damaged(path, f"'sample_shape' {shape} holds {math.prod(shape):,} numbers per sample, more than "
                            f"{MAX_SAMPLE_VALUES:,}")
    for key, kind in (("fingerprint", str), ("net_args", dict), ("task", str), ("class_names", (list, type(None)))):
        if key in raw and not isinstance(raw[key], kind):
            raise damaged(path, f"'{key}' is {_shown(raw[key])}; expected {_JSON_NAMES[kind]}")
    if not isinstance(raw.get("fingerprint"), str):
        raise damaged(path, "'fingerprint' is missing; it identifies the data the run was trained on")
    return raw


def check_state(state: dict[str, Any], tensors: dict[str, torch.Tensor], where: Path) -> None:
    """A checkpoint's ``state.json`` (already known to be a table of the right format version) and
    its RNG tensors: the step, the optimisers' groups, the loop's extra state (elapsed seconds, the
    monitor's streaks and warnings, the fp16 loss scaler) and uint8 generator states."""
    step = state.get("step")
    if not (_is_int(step) and step >= 0):
        raise damaged(where, f"'step' is {_shown(step)}; expected a whole number >= 0")
    optimizers = state.get("optimizers")
    if not (isinstance(optimizers, dict) and all(isinstance(groups, list) and groups and
                                                  all(isinstance(g, dict) for g in groups)
                                                  for groups in optimizers.values())):
        raise damaged(where, "'optimizers' must map each optimiser to a list of parameter groups (tables)")
    extra = state.get("extra", {})
    if not isinstance(extra, dict):
        raise damaged(where, f"'extra' is {_shown(extra)}; expected a table")
    _check_extra(extra, where)
    for name, tensor in tensors.items():
        if name.startswith("rng.") and (tensor.dtype != torch.uint8 or tensor.dim() != 1):
            raise damaged(where.parent / "weights.safetensors",
                          f"the generator state '{name}' is {tensor.dtype} of shape {list(tensor.shape)}; "
                          "expected a 1-D uint8 tensor")


def _check_extra(extra: dict[str, Any], where: Path) -> None:
    elapsed = extra.get("elapsed", 0.0)
    if not (_is_number(elapsed) and math.isfinite(elapsed) and elapsed >= 0):
        raise damaged(where, f"'extra.elapsed' is {_shown(elapsed)}; expected seconds >= 0")
    if "family" in extra and not isinstance(extra["family"], str):
        raise damaged(where, f"'extra.family' is {_shown(extra['family'])}; expected a family's name")
    monitor = extra.get("monitor", {})
    streaks = monitor.get("streak", {}) if isinstance(monitor, dict) else None
    warnings = monitor.get("warnings", []) if isinstance(monitor, dict) else None
    if not (isinstance(streaks, dict) and all(_is_int(v) and v >= 0 for v in streaks.values())):
        raise damaged(where, "'extra.monitor.streak' must be a table of counts >= 0")
    if not (isinstance(warnings, list) and all(isinstance(w, dict) and isinstance(w.get("warning"), str)
                                               for w in warnings)):
        raise damaged(where, "'extra.monitor.warnings' must be a list of tables, each with a 'warning' text")
    scaler = extra.get("grad_scaler")
    if scaler is not None and not isinstance(scaler, dict):
        raise damaged(where, f"'extra.grad_scaler' is {_shown(scaler)}; expected a table or null")


_NUMBER = (int, float)
SUMMARY_TYPES: dict[str, tuple[type, ...]] = {
    "status": (str,), "run_dir": (str,), "data": (str,), "domain": (str,), "family": (str,), "loss": (str,),
    "steps": (int,), "seconds": _NUMBER, "train_seconds": _NUMBER, "eval_seconds": _NUMBER,
    "samples_per_s": (*_NUMBER, type(None)), "last_log": (dict,), "eval": (dict,), "warnings": (list,),
    "samples_file": (str,),
}
"""The types of ``summary.json``'s keys that its readers (the summary lines, ``ganforge runs``, the
report, a resume) rely on; a key may be missing (older runs, a diverged run's summary)."""


def load_summary(path: Path) -> dict[str, Any] | None:
    """``summary.json`` of a run (None when there is none), its keys of the types in ``SUMMARY_TYPES``
    and its warnings tables with a ``warning`` text; a damaged one is a UsageError naming the key."""
    if not path.exists():
        return None
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise damaged(path, f"expected a table, found a JSON {type(raw).__name__}")
    for key, types in SUMMARY_TYPES.items():
        if key in raw and (not isinstance(raw[key], types) or isinstance(raw[key], bool)):
            raise damaged(path, f"'{key}' is {_shown(raw[key])}; expected a {_KIND_NAMES[types[0]]}")
    if not all(isinstance(w, dict) and isinstance(w.get("warning"), str) for w in raw.get("warnings", [])):
        raise damaged(path, "'warnings' must be a list of tables, each with a 'warning' text")
    return raw


def check_memory(cfg: RunConfig, sample_shape: tuple[int, ...], net_args: dict[str, Any], device: torch.device,
                 training: bool = True) -> None:
    """Refuse nets whose parameters cannot fit in the memory free on ``device`` (in training with
    their gradients, Adam's moments and G's moving average; else G alone), estimated by building
    them on the ``meta`` device, which allocates nothing."""
    free = _free_memory(device)
    if free is None:
        return
    try:
        counts = _parameter_counts(cfg, sample_shape, net_args, training)
    except UsageError:
        return  # a net that is not a GAN's G and D (TimeGAN's): its family builds and checks its own nets
    need = FLOAT_BYTES * sum(TRAINING_COPIES[k] * n if training else n for k, n in counts.items())
    if need > free:
        sizes = ", ".join(f"{k} {n:,}" for k, n in counts.items())
        raise UsageError(f"the networks need about {human_bytes(need)} ({sizes} parameters"
                         f"{', with gradients and optimiser state' if training else ''}), more than the "
                         f"{human_bytes(free)} free on {device.type}; lower model.g_width / model.d_width, "
                         "model.g_depth / model.d_depth or model.z_dim")


def _parameter_counts(cfg: RunConfig, sample_shape: tuple[int, ...], net_args: dict[str, Any],
                      training: bool) -> dict[str, int]:
    meta = torch.device("meta")
    with meta:
        nets = {"G": build_generator(cfg, cfg.model.net, cfg.model.z_dim, sample_shape, meta, net_args)}
        if training:
            nets["D"] = build_discriminator(cfg, cfg.model.net, sample_shape, meta, net_args)
    return {k: sum(t.numel() for t in itertools.chain(m.parameters(), m.buffers())) for k, m in nets.items()}


def _free_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory() if device.type == "cpu" else None


_KIND_NAMES = {str: "text", int: "number", dict: "table", list: "list"}
_JSON_NAMES = {str: "a JSON string", dict: "a JSON table", (list, type(None)): "a JSON list or null"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
