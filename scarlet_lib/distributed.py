"""Data-parallel strict-fair training: each rank runs the whole fair step on its shard of the global batch.

DistributedDataParallel's hooks fire once per backward, but a strict-fair step runs m backward passes
(one per path, or one fused pass) through different sub-networks before a single update, so the
gradients are averaged across ranks explicitly, once per step, after the local step has accumulated
them (one flattened all-reduce). Every rank samples the same paths (same path seed) and holds the same
weights, so the update is identical everywhere. Each rank normalises its own shard in BatchNorm, as
DDP does without SyncBatchNorm: the result equals a single process that averages the gradients of the
shards (tested), not one that normalises the whole global batch at once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_from_env", "all_reduce_gradients", "all_reduce_sum", "broadcast_parameters"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> "DistContext":
        """The context of an already initialised process group (single process otherwise)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
        return cls()


def init_from_env(device: str | None = None) -> tuple[DistContext, str]:
    """Join the process group that ``torchrun`` describes in the environment (no-op without it).

    Returns the context and the device to use (``cuda:<local_rank>`` on GPUs, gloo on CPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device or "cpu"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    else:
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local), device


def all_reduce_gradients(params, world_size: int) -> None:
    """Average ``.grad`` over ranks in one flattened all-reduce (parameters without a gradient skipped).

    Every rank must have gradients for the same parameters (true when all ranks train the same paths).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or world_size <= 1:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (returned; the input is left alone)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    out = tensor.clone()
    dist.all_reduce(out)
    return out


@torch.no_grad()
def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Make every rank hold rank ``src``'s parameters and buffers (after init or resume)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src)
