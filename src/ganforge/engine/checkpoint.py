"""Atomic save and exact resume of everything a run needs: weights, optimisers, RNG, step.

A checkpoint is a folder ``checkpoints/step-00001000/`` holding ``weights.safetensors`` (every
tensor: network weights and buffers, optimiser moments, generator RNG states) and ``state.json``
(format version, step, the SHA-256 of the weights file, optimiser hyper-parameters, extra loop
state). It is written under a temporary name and renamed into place in one step, so a process
killed at any moment leaves either the previous checkpoint or the complete new one. Nothing is
ever unpickled: a tampered or truncated file fails the hash check or the safetensors parser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from ganforge.errors import UsageError
from ganforge.io import failed_write, file_sha256, fsync_dir, write_json

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{8})$")


def _flatten(
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    generators: dict[str, torch.Generator],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    groups: dict[str, Any] = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        for idx, stats in sd["state"].items():
            for key, value in stats.items():
                tensors[f"{name}.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        groups[name] = sd["param_groups"]
    for name, gen in generators.items():
        tensors[f"rng.{name}"] = gen.get_state().contiguous()
    return tensors, groups


def save_checkpoint(
    run_dir: Path,
    step: int,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    generators: dict[str, torch.Generator],
    extra: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically and keep only the newest ``keep`` checkpoints."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tensors, groups = _flatten(modules, optimizers, generators)
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:08d}.", suffix=".tmp", dir=root))
    try:
        weights = tmp / "weights.safetensors"
        # serialised in memory and written here, so a full disk raises an OSError naming the file
        # (safetensors' own save_file reports it as a SafetensorError without the errno)
        with open(weights, "wb") as fh:
            fh.write(save(tensors, metadata={"format": str(FORMAT_VERSION)}))
            fh.flush()
            os.fsync(fh.fileno())
        state = {
            "format": FORMAT_VERSION,
            "step": step,
            "weights_sha256": file_sha256(weights),
            "optimizers": groups,
            "extra": extra,
        }
        write_json(tmp / "state.json", state)
        final = root / f"step-{step:08d}"
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(root)
    except OSError as exc:
        error = failed_write(exc, tmp)  # the real cause, found while the temporary folder still holds its space
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(error.errno, error.strerror, str(root / f"step-{step:08d}")) from exc  # the checkpoint's name
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first (temporary folders of an interrupted save are skipped)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def remove_partial_saves(run_dir: Path) -> None:
    root = Path(run_dir) / "checkpoints"
    if root.is_dir():
        for p in root.iterdir():
            if p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify one checkpoint folder; a damaged one raises a UsageError naming the file."""
    state_path, weights_path = path / "state.json", path / "weights.safetensors"
    fix = f"delete {path} to fall back to an earlier checkpoint, or start a new run"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
            raise ValueError("unknown format")
        if file_sha256(weights_path) != state["weights_sha256"]:
            raise UsageError(f"checkpoint {weights_path} is truncated or was modified (hash mismatch); {fix}")
        tensors = load_file(str(weights_path))
    except UsageError:
        raise
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise UsageError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); {fix}") from None
    return tensors, state


def restore(
    tensors: dict[str, torch.Tensor],
    state: dict[str, Any],
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    generators: dict[str, torch.Generator],
) -> None:
    """Load what :func:`save_checkpoint` wrote into freshly built modules, optimisers and RNGs."""
    try:
        for name, module in modules.items():
            prefix = f"{name}."
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            module.load_state_dict(sd, strict=True)
        for name, opt in optimizers.items():
            per_param: dict[int, dict[str, torch.Tensor]] = {}
            pattern = re.compile(rf"^{re.escape(name)}\.(\d+)\.(\w+)$")
            for key, value in tensors.items():
                match = pattern.match(key)
                if match:
                    per_param.setdefault(int(match.group(1)), {})[match.group(2)] = value
            opt.load_state_dict({"state": per_param, "param_groups": state["optimizers"][name]})
        for name, gen in generators.items():
            gen.set_state(tensors[f"rng.{name}"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise UsageError(f"checkpoint does not match this run's networks ({str(exc).splitlines()[0]}); "
                         "resume with the run's own config.json") from None


def load_module_weights(tensors: dict[str, torch.Tensor], name: str, module: nn.Module) -> None:
    prefix = f"{name}."
    try:
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    except RuntimeError as exc:
        raise UsageError(f"checkpoint weights for {name} do not match the run's config ({str(exc).splitlines()[0]})") from None
