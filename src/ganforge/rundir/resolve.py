"""From what the user asked for to what will train: the device, the data set and the resolved config."""

from __future__ import annotations

from pathlib import Path

import torch

from ganforge.config import RunConfig, apply_defaults, validate
from ganforge.domains import Dataset, get_domain, infer_domain
from ganforge.engine.precision import resolve_amp
from ganforge.errors import UsageError
from ganforge.families import get_family
from ganforge.io import check_array_file
from ganforge.losses import get_loss
from ganforge.render.tracking import require_tensorboard
from ganforge.rundir.validate import check_memory


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device=cuda was asked for but no CUDA device is available; use device=auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_dataset(cfg: RunConfig) -> Dataset:
    source = Path(cfg.data.source)
    if source.suffix.lower() in (".npy", ".npz") and source.is_file():
        # an empty, truncated or object array, or one larger than memory, is refused before any
        # domain opens it to guess its kind
        check_array_file(source)
    domain = get_domain(cfg.data.domain) if cfg.data.domain else infer_domain(cfg.data.source)
    cfg.data.domain = domain.name
    return domain.load(cfg.data)


def resolve(cfg: RunConfig) -> Dataset:
    """Resolve ``cfg`` in place as training will use it, and load its data; raises UsageError on
    anything that would fail later (unknown family, loss or net, a net that does not fit the data).

    Order: the user's keys, then the domain's recipe for keys left alone (with the data set's
    ``meta["defaults"]`` hints over it, and the family's recipe over both), then the family's own
    decisions, the data set's latent size and the domain's net; last, the family builds its nets once.
    """
    validate(cfg)
    family = get_family(cfg.model.family)
    if cfg.train.tensorboard:
        require_tensorboard()  # before the data is loaded or anything is written
    dataset = load_dataset(cfg)
    domain = get_domain(dataset.domain)
    if cfg.data.task != "none" and dataset.cond is None:
        raise UsageError(f"data.task={cfg.data.task} is not available for {domain.name} data; use data.task=none")
    # the domain's recipe, with the data set's own hints on top (e.g. a table's steps by its size); hints
    # that name a net are that net's recipe, for a user who did not ask for another one
    hints = dataset.meta.get("defaults", {})
    if "model.net" in hints and "model.net" in cfg.explicit and cfg.model.net != hints["model.net"]:
        hints = {}
    apply_defaults(cfg, {**domain.defaults, **hints, **family.defaults})
    family.configure(cfg, dataset)
    loss = get_loss(cfg.train.loss)
    if (loss.penalty == "gp" or cfg.train.r1_weight > 0) and cfg.model.d_norm == "batch":
        if "model.d_norm" in cfg.explicit:
            raise UsageError("a gradient penalty (wgan-gp or train.r1_weight > 0) is per sample, which batch norm in D "
                             "breaks; set model.d_norm=layer or none")
        cfg.model.d_norm = "layer"  # the WGAN-GP paper's choice for a penalised critic
    validate(cfg)
    resolve_amp(cfg.train.amp, resolve_device(cfg.device))  # fp16 without CUDA stops before anything is written
    cfg.model.net = cfg.model.net or domain.default_net
    cfg.model.z_dim = cfg.model.z_dim or int(dataset.meta.get("z_dim", domain.default_z_dim))
    # the nets' memory, estimated without allocating it, then the nets built once on the CPU: one that
    # cannot fit or cannot take this data fails here
    check_memory(cfg, dataset.sample_shape, dataset.state.get("net_args", {}), resolve_device(cfg.device))
    family.check(cfg, dataset)
    return dataset
