"""Exact, faster ways to compute the blocks' convolutions, for the supernet's hot loop.

A kernel set computes the two convolutions of an inverted residual: ``pointwise(conv, x)`` for a 1x1
conv and ``depthwise(conv, x)`` for a kxk depthwise conv (padding k // 2). Blocks take one as
``block(x, kernels=...)``; every set gives the same values and gradients as ``conv(x)`` up to float
rounding (tested), they only differ in how the work is laid out:

* ``"plain"``: ``conv(x)``, the modules themselves: the reference.
* ``"trim"``: depthwise taps that can only ever meet the zero padding are cut (``trimmed_depthwise``).
* ``"fast"`` (the supernet's default): ``"trim"``, plus 1x1 convs on channels_last activations as one
  matrix multiply over the channel dimension (``pointwise_matmul``: a view, no copy), plus depthwise convs
  on maps of at most ``DENSE_DEPTHWISE_MAX_PIXELS`` pixels as a per-channel dense map (``dense_depthwise``).

Why: on CPU, oneDNN's backward of 1x1 convs and of depthwise convs is slow on the tiny maps of a 32x32
step through the ImageNet layout (1x1 and 2x2 in the last ten layers): profiled on 2 threads, a 13-path
step spent half its time there. ``scripts/bench_fair_step.py`` measures the whole step side by side:
fused with "fast" 1.59 s against 2.46 s with "trim" and 2.83 s with "plain" (README, Measured speed).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KERNELS", "get_kernels", "PlainKernels", "TrimKernels", "FastKernels", "trimmed_depthwise",
           "pointwise_matmul", "dense_depthwise", "DENSE_DEPTHWISE_MAX_PIXELS"]

# Largest input map (H * W) computed by ``dense_depthwise``: it won at 1x1 and 2x2, lost at 4x4 (2 CPU threads).
DENSE_DEPTHWISE_MAX_PIXELS = 4


def _trim_radius(kernel: int, size: int) -> int:
    """Half-width of the kernel taps that can reach a real input pixel (padding = kernel // 2)."""
    return min(kernel // 2, max(size - 1, 0))


def _trimmed_weight(conv: nn.Conv2d, x: torch.Tensor):
    """The central taps of ``conv``'s kernel that can meet ``x`` (a view), and the matching padding."""
    kh, kw = conv.kernel_size
    rh, rw = _trim_radius(kh, x.shape[-2]), _trim_radius(kw, x.shape[-1])
    if (rh, rw) == (kh // 2, kw // 2):
        return conv.weight, conv.padding
    return conv.weight[:, :, kh // 2 - rh: kh // 2 + rh + 1, kw // 2 - rw: kw // 2 + rw + 1], (rh, rw)


def trimmed_depthwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a conv with padding ``k // 2``, skipping taps that only meet padding.

    With padding p = k // 2 and an input of size H, output position i reads input i*s + a - p; every
    tap a with |a - p| > H - 1 reads padding for every i, so the kernel can be cut to its central
    (2r+1) taps, r = min(p, H - 1), with padding r: same output shape, same values, and the cut taps'
    weight gradient is exactly zero as before. (At 1x1 input a kxk depthwise conv is a per-channel scale.)
    """
    w, padding = _trimmed_weight(conv, x)
    if w is conv.weight:
        return conv(x)
    return F.conv2d(x, w, conv.bias, conv.stride, padding, conv.dilation, conv.groups)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def pointwise_matmul(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 1x1 conv (any stride, bias or not) as one matmul over channels.

    In channels_last memory the channels are the innermost dimension, so ``x.permute(0, 2, 3, 1)`` is a
    contiguous (N, H, W, C) view and the conv is ``F.linear`` on it; the result, permuted back, is
    channels_last again. Other layouts fall back to ``conv(x)`` (the permute would copy).
    """
    if conv.kernel_size != (1, 1) or conv.groups != 1 or conv.padding != (0, 0) or conv.dilation != (1, 1):
        raise ValueError(f"pointwise_matmul needs a plain 1x1 conv, got {conv}")
    if not _is_channels_last(x):
        return conv(x)
    sh, sw = conv.stride
    if (sh, sw) != (1, 1):  # a strided 1x1 conv reads every s-th pixel and nothing else
        x = x[:, :, ::sh, ::sw]
    return F.linear(x.permute(0, 2, 3, 1), conv.weight.flatten(1), conv.bias).permute(0, 3, 1, 2)


@lru_cache(maxsize=256)
def _tap_map(h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
             device: torch.device) -> tuple[torch.Tensor, int, int]:
    """For each (output pixel, input pixel) pair the kernel tap that links them, or kh*kw for none."""
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    oy, ox = torch.arange(ho).view(-1, 1, 1, 1), torch.arange(wo).view(1, -1, 1, 1)
    iy, ix = torch.arange(h).view(1, 1, -1, 1), torch.arange(w).view(1, 1, 1, -1)
    a, b = iy - oy * sh + ph, ix - ox * sw + pw  # tap row/column reading input (iy, ix) for output (oy, ox)
    valid = (a >= 0) & (a < kh) & (b >= 0) & (b < kw)
    taps = torch.where(valid, a * kw + b, kh * kw)
    return taps.reshape(ho * wo, h * w).to(device), ho, wo


def dense_depthwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a bias-free depthwise conv on a tiny map, as a dense per-channel (out x in) map.

    Each output pixel is a weighted sum of the input pixels of its channel; on an H x W map that is an
    (Ho*Wo) x (H*W) matrix per channel whose entries are kernel taps (or zero). At H*W <= 4 this matrix is
    smaller than the kernel, and a broadcast multiply-and-sum over it beats oneDNN's depthwise backward.
    """
    n, c, h, w = x.shape
    weight, (ph, pw) = _trimmed_weight(conv, x)
    kh, kw = weight.shape[-2:]
    taps, ho, wo = _tap_map(h, w, kh, kw, *conv.stride, ph, pw, x.device)
    table = torch.cat([weight.reshape(c, kh * kw), weight.new_zeros(c, 1)], 1).t()  # (taps + zero, C)
    dense = table[taps]  # (Ho*Wo, H*W, C)
    y = (x.permute(0, 2, 3, 1).reshape(n, 1, h * w, c) * dense).sum(2)
    return y.view(n, ho, wo, c).permute(0, 3, 1, 2)


class PlainKernels:
    """The modules themselves: ``conv(x)``."""
    name = "plain"

    def pointwise(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return conv(x)

    def depthwise(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return conv(x)

    def __repr__(self):
        return f"<{self.name} kernels>"


class TrimKernels(PlainKernels):
    """Depthwise taps that only meet zero padding are skipped."""
    name = "trim"

    def depthwise(self, conv, x):
        return trimmed_depthwise(conv, x)


class FastKernels(TrimKernels):
    """Trimmed depthwise convs, 1x1 convs as matmuls, depthwise convs on tiny maps as dense maps."""
    name = "fast"

    def pointwise(self, conv, x):
        return pointwise_matmul(conv, x)

    def depthwise(self, conv, x):
        if (conv.bias is None and _is_channels_last(x) and conv.groups == x.shape[1] == conv.out_channels
                and x.shape[-2] * x.shape[-1] <= DENSE_DEPTHWISE_MAX_PIXELS):
            return dense_depthwise(conv, x)
        return trimmed_depthwise(conv, x)


KERNELS = {k.name: k for k in (PlainKernels(), TrimKernels(), FastKernels())}
PLAIN = KERNELS["plain"]


def get_kernels(kernels) -> PlainKernels:
    """A kernel set from its name (``"plain"``, ``"trim"``, ``"fast"``) or the set itself."""
    if isinstance(kernels, PlainKernels):
        return kernels
    if kernels not in KERNELS:
        raise ValueError(f"unknown kernels {kernels!r}; accepted: {tuple(KERNELS)}")
    return KERNELS[kernels]
