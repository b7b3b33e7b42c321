"""Training on several processes: torch.distributed set up from torchrun's environment.

``torchrun --nproc_per_node N -m ganforge train ...`` starts N copies of the command with RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set. Each copy is a rank; together they train
one run with ``train.batch`` as the *global* batch:

- every rank makes the random draws of the whole global batch (minibatch rows, latents, instance
  noise, label noise, penalty mixing weights) from the same seeded generator, exactly as a single
  process would, and keeps its own ``batch / world`` rows of them (:meth:`Shard.take`). The union
  over ranks is the single process's minibatch, and the generator's state stays the same on every
  rank and equal to a single process's, so a checkpoint resumes with any number of ranks;
- losses are means over a rank's rows, and DistributedDataParallel averages the gradients, which
  is the gradient of the mean over the global batch (equal shards). Batch-dependent layers (batch
  norm, minibatch-stddev) see only their rank's rows, as in any data-parallel training; on CUDA
  batch norm is made SyncBatchNorm, which computes the statistics over the global batch.

Rank 0 alone writes the run directory; the other ranks wait for it at barriers.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ganforge.errors import UsageError

TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` ranks (``world == 1``: a single process, nothing changes)."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, x: Tensor, segments: int = 1) -> Tensor:
        """This rank's rows of a global draw ``x: [segments * world * n, ...]`` -> ``[segments * n, ...]``.

        ``x`` is ``segments`` global batches one after the other (e.g. ``[real; fake]``), each split
        into ``world`` consecutive shards; the rank keeps its shard of each, in the same order.
        """
        if self.world == 1:
            return x
        n = x.shape[0] // (segments * self.world)
        if n * segments * self.world != x.shape[0]:
            raise ValueError(f"{x.shape[0]} rows cannot be split into {segments} x {self.world} equal shards")
        return x.reshape(segments, self.world, n, *x.shape[1:])[:, self.rank].reshape(segments * n, *x.shape[1:])

    def local_batch(self, batch: int, pack: int = 1) -> int:
        """A rank's share of the global ``batch``; raises a UsageError when it does not divide."""
        if self.world == 1:
            return batch  # config.validate checks the packing of a single process's batch
        if batch % self.world:
            raise UsageError(f"train.batch ({batch}) is the global batch and must be divisible by the "
                             f"{self.world} processes; use a multiple of {self.world}")
        if (batch // self.world) % pack:
            raise UsageError(f"each of the {self.world} processes gets {batch // self.world} samples of train.batch "
                             f"({batch}), which train.pack ({pack}) must divide; use a multiple of {self.world * pack}")
        return batch // self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_reduce_sum(self, x: Tensor) -> None:
        if self.world > 1:
            dist.all_reduce(x, op=dist.ReduceOp.SUM)

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def init_from_env() -> Shard:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), else a single process.

    The backend is NCCL with CUDA (one device per local rank) and gloo on the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    if not dist.is_available():
        raise UsageError(f"WORLD_SIZE={world} asks for {world} processes but this PyTorch has no torch.distributed")
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return Shard(dist.get_rank(), dist.get_world_size())


def seed_other_ranks(shard: Shard, seed: int, step: int) -> None:
    """Give ranks other than 0 their own torch global generator (dropout masks), derived from the
    seed, the rank and the step training starts from.

    The training generator is the same on every rank by design; the global one, left alike, would
    give every rank the same dropout masks for its different rows. Rank 0 keeps its (checkpointed)
    stream. Nets that draw from it therefore match one process only in distribution, not number
    for number, and a resumed multi-process run repeats itself only up to those masks.
    """
    if shard.rank > 0:
        torch.manual_seed(((seed * 1_000_003 + shard.rank) * 1_000_003 + step) % 2**63)


def shutdown(shard: Shard) -> None:
    if shard.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def device_for(shard: Shard, device: torch.device) -> torch.device:
    """Each rank's own GPU (cuda:LOCAL_RANK) when training on CUDA; the CPU stays the CPU."""
    if shard.world > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def data_parallel(module: nn.Module, shard: Shard, device: torch.device, unused: bool = False) -> nn.Module:
    """``module`` wrapped for training on ``shard.world`` ranks (itself for a single process).

    The wrapper shares the module's parameters: checkpoints keep saving the plain module. Nets with a
    growing schedule (progressive) leave the layers of later levels unused, and ``unused`` says the
    caller knows of parameters no loss reaches (an ACGAN head at ``train.aux_weight=0``): DDP must
    be told of both, or its second backward pass fails waiting for their gradients.
    """
    if shard.world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    growing = hasattr(module, "set_progress")
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=growing or unused)


def sync_batch_norm(module: nn.Module, shard: Shard, device: torch.device) -> nn.Module:
    """Batch norm over the global batch on CUDA (SyncBatchNorm has no CPU kernel; there each rank
    normalises with its own rows' statistics)."""
    if shard.world > 1 and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module
