"""Data-parallel training across torchrun processes: process group, rank, parameter broadcast, gradient averaging.

The book's loop averages gradients with one all_reduce per optimisation phase instead of wrapping networks in
torch's DistributedDataParallel class: the GAN phases of the papers call a network several times in one backward
pass (real and fake through D) and differentiate twice for R1, which the wrapper does not support. The arithmetic is
the same as DDP's (mean of the per-rank gradients of the same parameters), and the data split is a DistributedSampler.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and writes checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun started this process (even as its only one) or another launcher set WORLD_SIZE > 1."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_world(device: torch.device) -> World:
    """Join the process group when launched by torchrun (nccl on CUDA, gloo on CPU); a 1-process world otherwise."""
    if not launched_by_torchrun():
        return World()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":  # NCCL collectives (barrier) use the current device: make it this rank's GPU
        torch.cuda.set_device(device.index if device.index is not None else local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def broadcast_state(modules: Iterable[torch.nn.Module], world: World) -> None:
    """Copy rank 0's parameters and buffers to every rank (the start state DDP would give)."""
    if world.size == 1:
        return
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter], world: World) -> None:
    """Replace each gradient by its mean over ranks, in one flattened all_reduce."""
    if world.size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier(world: World) -> None:
    """Wait for every rank (no-op in a 1-process world)."""
    if world.size > 1:
        dist.barrier()
