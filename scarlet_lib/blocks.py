"""Building blocks: the released inverted residual with optional SE, and the identity-choice variants.

Module and attribute names follow the released SCARLET definitions so that state-dict keys match the
released checkpoints (``conv1``/``bn1``/``conv2``/``bn2``/``mid_se``/``conv3``/``bn3``,
``mid_se.squeeze_conv``/``mid_se.excite_conv``).

Identity choice variants (``identity_mode``):

* ``"identity"``: parameter-free. Where the layer preserves the shape this is ``x``. Where it does not
  (stride 2 and/or more output channels; the supernet allows identity there, as the authors said in
  SCARLET-NAS issue 2) it is the parameter-free shortcut of ResNet's "option A": subsample by the stride
  (``x[:, :, ::s, ::s]``) and zero-pad the new channels. The input channels pass through unchanged, as in
  the paper's Figure 5 (16 channels kept where other choices give 32), and the padded channels are zero.
* ``"let"``: the paper's linearly equivalent transformation, a 1x1 conv ``in -> out`` with the layer's
  stride, no bias, no BatchNorm, no activation (``W x``), so it can be folded into the next layer.
* ``"let_relu"``: LET followed by ReLU, the non-equivalent ablation of the paper's Figure 3.

Blocks with convolutions take an optional ``kernels`` argument (``block(x, kernels="fast")``): how their
1x1 and depthwise convs are computed (``scarlet_lib.kernels``; same values, the default is the modules).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import PLAIN, get_kernels
from .space import CHOICES

IDENTITY_MODES = ("identity", "let", "let_relu")
LET_INITS = ("he", "identity", "orthogonal")

__all__ = ["IDENTITY_MODES", "LET_INITS", "SqueezeExcite", "InvertedResidual", "Shortcut", "LET", "make_choice_block",
           "check_identity_mode", "check_let_init", "init_let", "batch_norms"]


def batch_norms(*modules: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm inside ``modules`` (what recalibration resets and the fair step adjusts)."""
    return [m for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def check_identity_mode(mode: str) -> str:
    if mode not in IDENTITY_MODES:
        raise ValueError(f"unknown identity_mode {mode!r}; accepted: {IDENTITY_MODES}")
    return mode


class SqueezeExcite(nn.Module):
    """SE as released: reduction taken on the expanded width, ReLU inside, hard-sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        mid = channels // reduction
        self.squeeze_conv = nn.Conv2d(channels, mid, 1, bias=True)
        self.excite_conv = nn.Conv2d(mid, channels, 1, bias=True)

    def forward(self, x, kernels=PLAIN):
        k = get_kernels(kernels)
        s = x.mean((2, 3), keepdim=True)
        s = k.pointwise(self.excite_conv, F.relu(k.pointwise(self.squeeze_conv, s)))
        return x * F.hardsigmoid(s)


class InvertedResidual(nn.Module):
    """MobileNetV2/V3 inverted residual as released: 1x1 expand, kxk depthwise, optional SE, 1x1 project.

    h-swish after the first two convs, none after the projection; residual add when stride is 1 and
    ``in_channels == out_channels``. ``hidden`` defaults to ``round(in_channels * expansion)``.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: float, kernel: int, stride: int,
                 se: bool, hidden: int | None = None):
        super().__init__()
        hidden = int(round(in_channels * expansion)) if hidden is None else hidden
        self.in_channels, self.out_channels, self.hidden = in_channels, out_channels, hidden
        self.kernel, self.stride, self.expansion = kernel, stride, expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv1 = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.mid_se = SqueezeExcite(hidden) if se else None
        self.conv3 = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)

    def forward(self, x, kernels=PLAIN):
        k = get_kernels(kernels)
        y = F.hardswish(self.bn1(k.pointwise(self.conv1, x)))
        y = F.hardswish(self.bn2(k.depthwise(self.conv2, y)))
        if self.mid_se is not None:
            y = self.mid_se(y, kernels=k)
        y = self.bn3(k.pointwise(self.conv3, y))
        return x + y if self.use_residual else y

    def extra_repr(self):
        return (f"{self.in_channels}->{self.out_channels}, e={self.expansion}, k={self.kernel}, "
                f"s={self.stride}, se={self.mid_se is not None}, residual={self.use_residual}")


class Shortcut(nn.Module):
    """Parameter-free identity: ``x`` where the shape is preserved, otherwise subsample + zero-pad channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"identity cannot reduce channels ({in_channels} -> {out_channels})")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x, kernels=PLAIN):  # noqa: ARG002 (no convs; same call signature as the other choices)
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.out_channels > self.in_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))
        return x

    def extra_repr(self):
        return f"{self.in_channels}->{self.out_channels}, s={self.stride}"


class LET(nn.Module):
    """Linearly equivalent transformation: a bias-free 1x1 conv (``W x``), optionally followed by ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, relu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
        self.relu = relu

    def forward(self, x, kernels=PLAIN):
        x = get_kernels(kernels).pointwise(self.conv, x)
        return F.relu(x) if self.relu else x

    def extra_repr(self):
        return f"relu={self.relu}"


def check_let_init(init: str) -> str:
    if init not in LET_INITS:
        raise ValueError(f"unknown let_init {init!r}; accepted: {LET_INITS}")
    return init


@torch.no_grad()
def init_let(let: LET, init: str, generator: torch.Generator | None = None) -> LET:
    """Set a LET's weight by one of ``LET_INITS``.

    * ``"he"``: the released conv init, N(0, sqrt(2 / out)) (what ``models.init_weights`` draws; left as is).
    * ``"identity"``: the zero-pad identity, W[o, i] = 1 if o == i else 0. With the conv's stride this
      computes exactly what the plain identity (``Shortcut``) computes, so a LET supernet starts as the same
      function as an identity supernet: any later difference comes from LET being learnable.
    * ``"orthogonal"``: a random semi-orthogonal W (orthonormal columns when out >= in), so ||W x|| = ||x||:
      variance preserving like the identity, but a random rotation of the channels.
    """
    check_let_init(init)
    w = let.conv.weight  # (out, in, 1, 1)
    out_c, in_c = w.shape[:2]
    if init == "identity":
        if out_c < in_c:
            raise ValueError(f"the zero-pad identity needs out >= in channels, got {in_c} -> {out_c}")
        w.zero_()
        w[torch.arange(in_c), torch.arange(in_c), 0, 0] = 1.0
    elif init == "orthogonal":
        q = torch.empty(out_c, in_c)
        torch.nn.init.orthogonal_(q, generator=generator)
        w.copy_(q.view_as(w))
    return let


def make_choice_block(choice: int, in_channels: int, out_channels: int, stride: int,
                      identity_mode: str = "identity") -> nn.Module:
    """The module for one choice (index into ``space.CHOICES``) at a layer of the given shape."""

    c = CHOICES[choice]
    if c.is_identity:
        check_identity_mode(identity_mode)
        if identity_mode == "identity":
            return Shortcut(in_channels, out_channels, stride)
        return LET(in_channels, out_channels, stride, relu=identity_mode == "let_relu")
    return InvertedResidual(in_channels, out_channels, c.expansion, c.kernel, stride, c.se)
