"""Data-parallel training under torchrun: process group from the environment, gradient all-reduce.

The context is one small tensor, so the trainer all-reduces its gradient directly (no DDP wrapper):
each rank computes its share of the batch loss (summed, divided by the full batch size), and the sum
over ranks is exactly the one-process gradient. Recording and projection happen after the all-reduce;
only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Rank and world size of this process (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    # a process group is up (torchrun, even with one process): collectives run through it
    grouped: bool = False

    @property
    def is_main(self) -> bool:
        """Whether this process writes files."""
        return self.rank == 0

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` over ranks in place (no-op for one process without a process group)."""
        if self.grouped:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process without a process group)."""
        if self.grouped:
            dist.barrier()


def init_from_env(device: str) -> tuple[DistContext, str]:
    """Join the process group torchrun describes; returns the context and this rank's device.

    A process group is set up when WORLD_SIZE > 1, and also for one process launched by torchrun (which sets
    TORCHELASTIC_RUN_ID), so that a one-process torchrun runs the real NCCL (or gloo) path.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return DistContext(), device
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    return DistContext(rank, world, local, grouped=True), device
