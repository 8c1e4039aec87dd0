"""Exact, faster ways to compute the blocks' convolutions, for the supernet's hot loop.

A kernel set computes the two convolutions of an inverted residual: ``pointwise(conv, x)`` for a 1x1
conv and ``depthwise(conv, x)`` for a kxk depthwise conv (padding k // 2). Blocks take one as
``block(x, kernels=...)``; every set gives the same values and gradients as ``conv(x)`` up to float
rounding (tested), they only differ in how the work is laid out:

* ``"plain"``: ``conv(x)``, the modules themselves: the reference.
* ``"trim"``: depthwise taps that can only ever meet the zero padding are cut (``trimmed_depthwise``).
* ``"fast_v1"``: ``"trim"``, plus 1x1 convs on channels_last activations as one matrix multiply over the
  channel dimension (``pointwise_matmul``: a view, no copy), plus depthwise convs on maps of at most
  ``DENSE_DEPTHWISE_MAX_PIXELS`` pixels as a per-channel dense map (``dense_depthwise``).
* ``"fast"`` (the supernet's default): ``"fast_v1"``, plus the weight gradient of depthwise kernels larger
  than 3x3 computed as a depthwise conv of the input with the output gradient (``depthwise_weight_grad``),
  dense maps also for such kernels on stride-2 3x3/4x4 maps, and the fused step's head of all paths in
  one BN call (``stacked_head``).

Why: on CPU, oneDNN's backward of 1x1 convs and of depthwise convs is slow on the tiny maps of a 32x32
step through the ImageNet layout (1x1 and 2x2 in the last ten layers): profiled on 2 threads, a 13-path
step spent half its time there. On the larger maps of the small-input layout the slow part is oneDNN's
depthwise weight gradient for 5x5 and 7x7 kernels (its forward and input gradient are fast), which
``depthwise_weight_grad`` computes with the forward kernel instead. ``scripts/bench_fair_step.py``
measures the whole step side by side (README, Measured speed; ``figures/bench_fair_step_*.md``).
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KERNELS", "get_kernels", "PlainKernels", "TrimKernels", "FastKernels", "FastV1Kernels",
           "trimmed_depthwise", "pointwise_matmul", "dense_depthwise", "depthwise_weight_grad",
           "depthwise_fast_grad", "DENSE_DEPTHWISE_MAX_PIXELS", "DENSE_DEPTHWISE_MAX_PAIRS",
           "NATIVE_DEPTHWISE_GRAD_MAX_TAPS"]

# Largest input map (H * W) computed by ``dense_depthwise``: it won at 1x1 and 2x2, lost at 4x4 (2 CPU threads).
DENSE_DEPTHWISE_MAX_PIXELS = 4
# "fast" also computes a depthwise conv with more than NATIVE_DEPTHWISE_GRAD_MAX_TAPS taps densely when its
# (output pixels x input pixels) map has at most this many entries: stride 2 on 3x3 and 4x4 maps.
DENSE_DEPTHWISE_MAX_PAIRS = 64
# Kernels of at most this many taps keep oneDNN's own depthwise weight gradient (fast for 3x3 kernels).
NATIVE_DEPTHWISE_GRAD_MAX_TAPS = 9


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


def depthwise_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size, stride,
                          padding) -> torch.Tensor:
    """Weight gradient (C, 1, kh, kw) of a bias-free depthwise conv (groups = C), as one depthwise conv.

    dL/dw[c, a, b] = sum over n, i, j of xpad[n, c, s*i + a, s*j + b] * g[n, c, i, j]. Split the padded
    input into its s x s stride phases P_rq[t, u] = xpad[s*t + r, s*u + q]; then tap (s*a' + r, s*b' + q)
    is sum over i, j of P_rq[i + a', j + b'] * g[i, j], a stride-1 correlation of the phase with the
    output gradient. With every (sample, channel) pair as its own channel, the s*s phases as the batch
    and g as the (Ho x Wo) kernels, that is a single depthwise conv (the direction oneDNN computes fast;
    its own weight-gradient kernel is slow for kernels larger than 3x3), followed by a sum over samples.
    Same value up to float rounding. The phases are laid out channels_last, the layout oneDNN's
    depthwise kernels take without a reorder.
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    ho, wo = grad_out.shape[-2:]
    filters = grad_out.contiguous().view(n * c, 1, ho, wo)  # one per (sample, channel): depthwise channels
    if (sh, sw) == (1, 1):  # a single phase: the conv pads it itself
        phases = x.permute(2, 3, 0, 1).contiguous().view(1, h, w, n * c).permute(0, 3, 1, 2)
        out = F.conv2d(phases, filters, None, 1, (ph, pw), 1, n * c)
    else:
        hs, ws = -(-(h + 2 * ph) // sh), -(-(w + 2 * pw) // sw)  # phase sizes of the padded input
        buf = x.new_empty(sh, sw, hs, ws, n, c)
        for r in range(sh):
            y0 = (r - ph) % sh  # first input row whose padded row index is r modulo sh
            for q in range(sw):
                x0 = (q - pw) % sw
                part = x[:, :, y0::sh, x0::sw].permute(2, 3, 0, 1)  # (rows, cols, n, c)
                t0, u0 = (y0 + ph) // sh, (x0 + pw) // sw
                t1, u1 = t0 + part.shape[0], u0 + part.shape[1]
                phase = buf[r, q]
                phase[t1:].zero_()  # only the padding is zeroed; the rest is the input's
                phase[:t0].zero_()
                phase[t0:t1, :u0].zero_()
                phase[t0:t1, u1:].zero_()
                phase[t0:t1, u0:u1] = part
        phases = buf.view(sh * sw, hs, ws, n * c).permute(0, 3, 1, 2)
        out = F.conv2d(phases, filters, None, 1, 0, 1, n * c)
    oh, ow = out.shape[-2:]  # out[r*s + q, (n, c), a', b'] is tap (s*a' + r, s*b' + q) of sample n
    # the sum over samples in the conv's own (channels_last) memory order: a contiguous reduction
    taps = out.permute(0, 2, 3, 1).reshape(sh, sw, oh, ow, n, c).sum(4)  # (sh, sw, oh, ow, c)
    grad = taps.permute(4, 2, 0, 3, 1).reshape(c, oh * sh, ow * sw)[:, :kh, :kw]
    return grad.unsqueeze(1).contiguous()


class _DepthwiseConv(torch.autograd.Function):
    """Bias-free depthwise conv (dilation 1) whose weight gradient is ``depthwise_weight_grad``.

    Forward and input gradient are oneDNN's (its fast directions); only the weight gradient is computed
    the other way.
    """

    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.conf = stride, padding
        return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.conf
        grad = grad.contiguous(memory_format=torch.channels_last) if _is_channels_last(x) else grad.contiguous()
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, list(stride), list(padding), [1, 1], False, [0, 0], x.shape[1],
                [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(x, grad, weight.shape[-2:], stride, padding)
        return grad_x, grad_w, None, None


def depthwise_fast_grad(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``trimmed_depthwise(conv, x)`` whose weight gradient is ``depthwise_weight_grad`` where that pays.

    That is for bias-free depthwise convs (dilation 1) on CPU whose trimmed kernel has more than
    ``NATIVE_DEPTHWISE_GRAD_MAX_TAPS`` taps, in training; anything else is ``trimmed_depthwise``.
    """
    weight, padding = _trimmed_weight(conv, x)
    if (conv.bias is not None or conv.dilation != (1, 1) or x.device.type != "cpu"
            or conv.groups != x.shape[1] or conv.out_channels != conv.groups
            or weight.shape[-2] * weight.shape[-1] <= NATIVE_DEPTHWISE_GRAD_MAX_TAPS
            or not (torch.is_grad_enabled() and weight.requires_grad)):
        return trimmed_depthwise(conv, x)
    return _DepthwiseConv.apply(x, weight, tuple(conv.stride), tuple(padding))


def _dense_applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """A bias-free depthwise conv on channels_last input: the case ``dense_depthwise`` handles."""
    return conv.bias is None and _is_channels_last(x) and conv.groups == x.shape[1] == conv.out_channels


class PlainKernels:
    """The modules themselves: ``conv(x)``.

    ``stacked_head``: whether ``Supernet``'s fused step runs the head of its m paths as one stacked matmul
    and one BN call (``fair._stacked_head``) instead of per-path BN calls.
    """
    name = "plain"
    stacked_head = False

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


class FastV1Kernels(TrimKernels):
    """The first ``"fast"`` set: trimmed depthwise convs, 1x1 convs as matmuls, tiny maps as dense maps.

    Depthwise weight gradients are oneDNN's and the fused step's head runs per path. Kept as the
    baseline of ``scripts/bench_fair_step.py``.
    """
    name = "fast_v1"

    def pointwise(self, conv, x):
        return pointwise_matmul(conv, x)

    def depthwise(self, conv, x):
        if _dense_applies(conv, x) and x.shape[-2] * x.shape[-1] <= DENSE_DEPTHWISE_MAX_PIXELS:
            return dense_depthwise(conv, x)
        return trimmed_depthwise(conv, x)


class FastKernels(FastV1Kernels):
    """1x1 convs as matmuls; depthwise convs dense on tiny maps, else trimmed with ``depthwise_fast_grad``.

    Dense where the input has at most ``DENSE_DEPTHWISE_MAX_PIXELS`` pixels, or where a kernel of more
    than ``NATIVE_DEPTHWISE_GRAD_MAX_TAPS`` taps meets a map whose dense (output x input pixels) matrix
    has at most ``DENSE_DEPTHWISE_MAX_PAIRS`` entries (a stride-2 conv on a 3x3 or 4x4 map). The fused
    step stacks the paths' heads (``stacked_head``).
    """
    name = "fast"
    stacked_head = True

    def depthwise(self, conv, x):
        if _dense_applies(conv, x):
            h, w = x.shape[-2:]
            (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
            taps = (2 * _trim_radius(kh, h) + 1) * (2 * _trim_radius(kw, w) + 1)
            pairs = h * w * ((h - 1) // sh + 1) * ((w - 1) // sw + 1)
            if h * w <= DENSE_DEPTHWISE_MAX_PIXELS or (
                    taps > NATIVE_DEPTHWISE_GRAD_MAX_TAPS and pairs <= DENSE_DEPTHWISE_MAX_PAIRS):
                return dense_depthwise(conv, x)
        return depthwise_fast_grad(conv, x)


KERNELS = {k.name: k for k in (PlainKernels(), TrimKernels(), FastKernels(), FastV1Kernels())}
PLAIN = KERNELS["plain"]


def get_kernels(kernels) -> PlainKernels:
    """A kernel set from its name (``"plain"``, ``"trim"``, ``"fast"``, ``"fast_v1"``) or the set itself."""
    if isinstance(kernels, PlainKernels):
        return kernels
    if kernels not in KERNELS:
        raise ValueError(f"unknown kernels {kernels!r}; accepted: {tuple(KERNELS)}")
    return KERNELS[kernels]
