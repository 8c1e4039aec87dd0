"""Multiply-adds and parameters under the paper's Table 3 convention.

MAdds = multiply-accumulates of convolutions and linear layers for one image (224x224 by default),
SE 1x1 convs included; BatchNorm, activations, the SE multiply, pooling and residual adds excluded.
They are read from torch's own ``FlopCounterMode`` (which counts exactly convolutions and matrix
products, 2 FLOPs per multiply-accumulate). Parameters = every parameter, BatchNorm affine included.
The paper prints parameters truncated (not rounded) to one decimal in millions: ``paper_millions``.

Per-architecture counts (thousands of calls in a search) come from a per-(layer, choice) cost table,
filled once with the same counter on each block alone; it is exact because a block's cost depends only
on its own shape (tested against whole-model counts).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from .blocks import make_choice_block
from .models import ScarletNet
from .space import CHOICES, IDENTITY, NUM_LAYERS

__all__ = ["count_madds", "count_params", "paper_millions", "CostTable", "cost_table", "arch_madds",
           "arch_params", "training_memory_bytes", "available_memory_bytes", "check_training_memory"]


def count_madds(model: nn.Module, input_size: int | tuple[int, int] = 224, in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass of one image, under the paper's convention."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    return _count(model, torch.zeros(1, in_channels, h, w))


def _count(module: nn.Module, x: torch.Tensor) -> int:
    was_training = module.training
    module.eval()
    try:
        try:  # shapes are all the counter needs: run on the meta device (no arithmetic, ~10x faster)
            return _flops(lambda: functional_call(module, _meta_state(module), (x.to("meta"),))) // 2
        except (NotImplementedError, RuntimeError):  # a forward that needs real values
            p = next(module.parameters(), None)
            x = x.to(p.device if p is not None else "cpu")
            return _flops(lambda: module(x)) // 2
    finally:
        module.train(was_training)


def _meta_state(module: nn.Module) -> dict[str, torch.Tensor]:
    named = list(module.named_parameters()) + list(module.named_buffers())
    return {name: torch.empty_like(t, device="meta") for name, t in named}


def _flops(run) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def count_params(model: nn.Module) -> int:
    """All parameters (BatchNorm affine included), shared parameters counted once."""
    return sum(p.numel() for p in model.parameters())


def paper_millions(n: int) -> float:
    """Millions truncated to one decimal, as the paper prints parameters (6.708M -> 6.7)."""
    return math.floor(n / 1e5) / 10


@dataclass(frozen=True)
class CostTable:
    """MAdds and parameters of the fixed parts and of every (layer, choice) cell of the skeleton."""

    fixed_madds: int
    fixed_params: int
    layer_madds: np.ndarray  # (19, 13) int64
    layer_params: np.ndarray  # (19, 13) int64

    def madds(self, arch) -> int:
        return int(self.fixed_madds + self.layer_madds[np.arange(len(arch)), list(arch)].sum())

    def params(self, arch) -> int:
        return int(self.fixed_params + self.layer_params[np.arange(len(arch)), list(arch)].sum())

    def madds_many(self, choices: np.ndarray) -> np.ndarray:
        """Vectorised MAdds of an (n, 19) array of choice indices."""
        choices = np.asarray(choices, dtype=np.int64)
        return self.fixed_madds + self.layer_madds[np.arange(choices.shape[1]), choices].sum(1)

    def params_many(self, choices: np.ndarray) -> np.ndarray:
        choices = np.asarray(choices, dtype=np.int64)
        return self.fixed_params + self.layer_params[np.arange(choices.shape[1]), choices].sum(1)


@lru_cache(maxsize=32)
def cost_table(input_size: int = 224, width_mult: float = 1.0, small_input: bool = False,
               num_classes: int = 1000, identity_mode: str = "identity") -> CostTable:
    """Cost table for stand-alone models built with these options (see ``models.ScarletNet``)."""

    # Fixed parts: an all-identity network minus its (parameter-free) identity slots.
    base = ScarletNet([IDENTITY] * NUM_LAYERS, num_classes=num_classes, width_mult=width_mult,
                      small_input=small_input, identity_mode="identity")
    x = torch.zeros(1, 3, input_size, input_size)
    fixed_madds = count_madds(base, input_size)
    fixed_params = count_params(base)
    madds = np.zeros((NUM_LAYERS, len(CHOICES)), dtype=np.int64)
    params = np.zeros_like(madds)
    with torch.no_grad():
        feats = base.separable_conv(base.stem(x))
    for i, layer in enumerate(base.mb_module):
        for c in CHOICES:
            block = make_choice_block(c.index, layer.in_channels, layer.out_channels, layer.stride, identity_mode)
            madds[i, c.index] = _count(block, feats)
            params[i, c.index] = count_params(block)
        with torch.no_grad():
            feats = layer(feats)  # the next layer's input shape does not depend on the choice
    return CostTable(fixed_madds, fixed_params, madds, params)


def arch_madds(arch, input_size: int = 224, **model_kwargs) -> int:
    """MAdds of the stand-alone model of ``arch`` (model options as in ``ScarletNet``)."""
    return cost_table(input_size, **model_kwargs).madds(arch)


def arch_params(arch, input_size: int = 224, **model_kwargs) -> int:
    return cost_table(input_size, **model_kwargs).params(arch)


# -- memory a training run needs, known before anything is allocated -------------------------------------
def training_memory_bytes(build: Callable[[], nn.Module], batch_size: int, input_size: int | tuple[int, int],
                          in_channels: int = 3) -> int:
    """Estimated bytes of one float32 SGD training step of the model ``build()`` returns.

    Parameters three times (weights, gradients, momentum) plus the output of every leaf module for
    ``batch_size`` images (what autograd keeps for the backward pass). The model is built and run on the
    meta device, so a model too large to allocate is measured without allocating it. Temporaries and
    allocator slack are not counted: the estimate is a lower bound of the peak.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    with torch.device("meta"):
        model = build()
    outputs = 0

    def count(_module, _inputs, out):
        nonlocal outputs
        if isinstance(out, torch.Tensor):
            outputs += out.numel()

    handles = [m.register_forward_hook(count) for m in model.modules() if next(m.children(), None) is None]
    try:
        with torch.no_grad():
            model.train()(torch.empty(1, in_channels, h, w, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return 4 * (3 * count_params(model) + batch_size * outputs)


def available_memory_bytes(device) -> int | None:
    """Memory free for a new run on ``device`` (CPU: the kernel's MemAvailable; CUDA: free device memory);
    None where it cannot be read."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_training_memory(build: Callable[[], nn.Module], batch_size: int, input_size: int, device,
                          what: str = "the model") -> int:
    """Refuse, before any allocation, a run whose estimated training memory exceeds what ``device`` has free.

    Returns the estimate in bytes. The error names the estimate, what is free and what to lower.
    """
    needed = training_memory_bytes(build, batch_size, input_size)
    free = available_memory_bytes(device)
    if free is not None and needed > free:
        gib = 2 ** 30
        raise MemoryError(f"{what} needs at least {needed / gib:.1f} GiB to train (batch {batch_size}, "
                          f"{input_size}x{input_size} images) but {torch.device(device)} has {free / gib:.1f} GiB "
                          "free; lower width_mult, the batch size or the image size")
    return needed
