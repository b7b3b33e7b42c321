"""The net registry: a name maps to builders of G and D from the model config.

Each net module registers its own entry with :func:`register_net` when it is imported.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ganforge.config import ModelConfig
from ganforge.errors import UsageError
from ganforge.registry import Registry


@dataclass(frozen=True)
class NetFamily:
    generator: Callable[[ModelConfig, int, tuple[int, ...]], nn.Module]
    """(model config, z_dim, sample shape) -> G."""
    discriminator: Callable[[ModelConfig, tuple[int, ...]], nn.Module]
    """(model config, D input shape, i.e. the sample shape with packing folded in) -> D."""
    # Both take the data set's ``net_args`` (e.g. ``n_classes``) as keyword arguments.


FACTS = {"n_classes": "class labels (data.task=class)", "cond_shape": "condition images (data.task=sr, edges or pairs)",
         "spans": "a table's column layout", "cond_spans": "a table's conditional columns",
         "cond_probs": "a table's conditional columns"}
"""What each of the data set's ``net_args`` says, for the error when a net cannot take it."""


def check_net_args(name: str, builder: Callable[..., nn.Module], net_args: dict[str, Any]) -> None:
    """Refuse, as one UsageError, data-set facts that net ``name``'s builder has no argument for (a net
    that takes ``**net_args`` checks them itself)."""
    params = inspect.signature(builder).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted({FACTS.get(key, key) for key in net_args if key not in params})
    if unknown:
        raise UsageError(f"model.net={name} cannot take this data's {' and '.join(unknown)}; leave model.net unset "
                         "for the data's own net, or choose one that takes them")


NETS: Registry[NetFamily] = Registry("net")


def register_net(name: str, family: NetFamily) -> None:
    NETS.register(name, family)


def get_net(name: str) -> NetFamily:
    return NETS.get_entry(name)
