"""Mixed precision and ``torch.compile`` for the loop, each on or off by what the device supports.

``train.amp``: ``auto`` is bf16 autocast on a CUDA device that supports bf16, fp16 autocast with a
``GradScaler`` on older CUDA devices; on the CPU it is bf16 autocast for convolutional nets (the
image nets) on a CPU with bf16 in hardware (AVX512-BF16 or AMX), where it was measured faster with
no loss of quality (docs/BENCHMARKS.md), and off otherwise: the small MLPs of points are slower in
bf16 even there, and an AVX2 CPU emulates it 4x slower. Off, results (random stream included) are
bit for bit those of a build without this module. ``bf16`` may be asked for anywhere on the CPU;
``fp16`` needs CUDA. Only the networks' forward passes run under autocast: their
outputs are cast back to float32, so losses, penalties' norms and the optimisers work in float32.

``train.compile``: ``auto`` compiles G and D on CUDA when triton is installed, never on the CPU
and never for nets with a training schedule (``set_progress``: progressive growing), whose changing
fade-in weight would make torch.compile recompile at every step. The compiled wrappers share the
plain modules' parameters; checkpoints save the plain modules, so they load into compiled and
uncompiled runs alike. The penalties' double backward (R1, the gradient penalty) goes through the
plain D: compiled graphs (AOTAutograd) do not support it.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

import torch
from torch import nn

from ganforge.config import TrainConfig
from ganforge.errors import UsageError
from ganforge.metrics.extractors import native_bf16_cpu  # shared with the Inception extractor, which looks it up there

COMPILE_BACKEND = "inductor"
"""What ``torch.compile`` uses; the tests set ``"eager"`` (no code generation) to run the path on the CPU."""

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def has_convolutions(nets: tuple[nn.Module, ...]) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for net in nets for m in net.modules())


def resolve_amp(setting: str, device: torch.device, nets: tuple[nn.Module, ...] = ()) -> str:
    """``off``, ``bf16`` or ``fp16``: what ``train.amp`` means on ``device`` for ``nets``; fp16 on the CPU
    is a UsageError. ``auto`` on the CPU is bf16 for convolutional nets on a CPU with native bf16."""
    if setting == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and has_convolutions(nets) and native_bf16_cpu() else "off"
    if setting == "fp16" and device.type != "cuda":
        raise UsageError(f"train.amp=fp16 needs a CUDA device, and this run trains on {device.type}; "
                         "use train.amp=bf16 (CPU autocast) or off")
    return setting


def resolve_compile(setting: str, device: torch.device, nets: tuple[nn.Module, ...] = ()) -> bool:
    """Whether ``train.compile`` compiles G and D on ``device``."""
    if setting != "auto":
        return setting == "on"
    if device.type != "cuda" or any(hasattr(net, "set_progress") for net in nets):
        return False
    try:
        from torch.utils._triton import has_triton
    except ImportError:  # pragma: no cover - very old torch
        return False
    return has_triton()


class Precision:
    """Autocast, gradient scaling and compilation for one run, resolved for its device.

    With ``amp == "off"`` and ``compiled`` False every method is the plain operation
    (``autocast`` a null context, ``backward`` ``loss.backward()``, ``step`` ``opt.step()``).
    """

    def __init__(self, t: TrainConfig, device: torch.device, nets: tuple[nn.Module, ...] = ()) -> None:
        self.amp = resolve_amp(t.amp, device, nets)
        self.compiled = resolve_compile(t.compile, device, nets)
        self.device_type = device.type
        # fp16's narrow range needs the loss scaled so small gradients do not underflow; bf16 has fp32's range
        self.scaler = torch.amp.GradScaler(device.type) if self.amp == "fp16" else None
        self.skipped = 0
        """Optimiser steps the scaler skipped (inf/NaN gradients, normal under fp16) since the last flush."""
        self.last_skipped: dict[int, bool] = {}

    def summary(self) -> dict[str, Any]:
        """What ``auto`` resolved to, for the run's summary."""
        return {"amp": self.amp, "compile": self.compiled}

    def autocast(self) -> ContextManager:
        if self.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.amp])

    def compile(self, module: nn.Module) -> nn.Module:
        return torch.compile(module, backend=COMPILE_BACKEND) if self.compiled else module

    @property
    def grad_scale(self) -> float | None:
        """The factor a penalty's input gradient is taken at (None: unscaled), see ganforge.losses."""
        return self.scaler.get_scale() if self.scaler is not None else None

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, opt: torch.optim.Optimizer) -> None:
        """``opt.step()``; under fp16 the gradients are unscaled first (so the monitor reads true
        gradient norms), and a step with inf/NaN gradients is skipped and counted."""
        if self.scaler is None:
            opt.step()
            return
        self.scaler.unscale_(opt)
        scale = self.scaler.get_scale()
        self.scaler.step(opt)
        self.scaler.update()
        skipped = self.scaler.get_scale() < scale  # the scaler backs off exactly when it skipped the step
        self.skipped += skipped
        self.last_skipped[id(opt)] = skipped

    def skipped_last(self, opt: torch.optim.Optimizer) -> bool:
        """Whether the scaler skipped ``opt``'s last step: its gradients are inf/NaN, as expected."""
        return self.last_skipped.get(id(opt), False)

    def state(self) -> dict[str, Any] | None:
        """The scaler's state (JSON: the scale and its growth counter) for a checkpoint; None without one."""
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state(self, state: dict[str, Any] | None) -> None:
        """Restore :meth:`state`; a checkpoint from a run without a scaler (or the other way round) is fine."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
