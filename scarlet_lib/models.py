"""Stand-alone networks from an architecture, the released SCARLET-A/B/C, and checkpoint loading.

``ScarletNet`` reproduces the released model definitions module for module, so its state-dict keys and
shapes are those of the released checkpoints: ``stem``, ``separable_conv``, ``mb_module.{i}`` (identity
slots keep their index and hold no keys), ``conv_before_pooling``, ``classifier``.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Mapping, Sequence

import torch
from torch import nn

from .blocks import InvertedResidual, check_identity_mode, make_choice_block
from .seeds import derive_seed
from .space import (
    HEAD_CHANNELS, LAYERS, STEM_CHANNELS, Architecture,
)

__all__ = ["SCARLET_A", "SCARLET_B", "SCARLET_C", "PUBLISHED", "FIGURE3_ARCH", "ScarletNet", "get_model",
           "build_model", "make_divisible", "make_stem", "make_head", "stem_and_head_widths", "layer_shapes", "init_weights", "load_checkpoint",
           "read_state_dict", "read_torch_file", "CheckpointError", "MODEL_NAMES"]

# Released architectures (paper Figure 4; SCARLET-NAS repository), as choice indices.
SCARLET_A = Architecture([4, 8, 2, 5, 7, 3, 7, 0, 5, 4, 2, 5, 0, 5, 7, 9, 1, 7, 11])
SCARLET_B = Architecture([1, 3, 1, 11, 0, 2, 11, 1, 12, 2, 1, 1, 11, 1, 9, 9, 12, 11, 9])
SCARLET_C = Architecture([3, 1, 3, 12, 12, 0, 11, 1, 1, 2, 5, 4, 1, 5, 1, 12, 7, 11, 9])
PUBLISHED = {"Scarlet_A": SCARLET_A, "Scarlet_B": SCARLET_B, "Scarlet_C": SCARLET_C}
MODEL_NAMES = tuple(PUBLISHED)
# The model of the paper's Figure 3 (ReLU vs linear LET ablation); 12 = identity.
FIGURE3_ARCH = Architecture([1, 3, 1, 0, 12, 0, 0, 0, 12, 12, 12, 12, 12, 0, 0, 0, 12, 12, 9])


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` (MobileNetV2 rule, never below 90%)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def make_stem(stem: int, first: int, small_input: bool) -> tuple[nn.Sequential, nn.Sequential]:
    """Released stem (conv 3x3 s2, BN, ReLU6) and separable conv (dw 3x3, BN, ReLU6, pw 1x1, BN).

    ``small_input`` uses stride 1 in the stem, for CIFAR-sized images.
    """
    stem_seq = nn.Sequential(
        nn.Conv2d(3, stem, 3, 1 if small_input else 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6(inplace=True))
    separable = nn.Sequential(
        nn.Conv2d(stem, stem, 3, 1, 1, groups=stem, bias=False), nn.BatchNorm2d(stem), nn.ReLU6(inplace=True),
        nn.Conv2d(stem, first, 1, bias=False), nn.BatchNorm2d(first))
    return stem_seq, separable


def make_head(last: int, head: int, num_classes: int, dropout: float = 0.0):
    """Released head: conv_before_pooling (1x1, BN, ReLU6), then (dropout and) the linear classifier."""
    conv = nn.Sequential(nn.Conv2d(last, head, 1, bias=False), nn.BatchNorm2d(head), nn.ReLU6(inplace=True))
    return conv, (nn.Dropout(dropout) if dropout > 0 else nn.Identity()), nn.Linear(head, num_classes)


def stem_and_head_widths(width_mult: float) -> tuple[int, int]:
    """Stem and head channels at a width multiplier (head never below 1280, as in MobileNetV2)."""
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    stem = STEM_CHANNELS if width_mult == 1.0 else make_divisible(STEM_CHANNELS * width_mult)
    return stem, max(HEAD_CHANNELS, make_divisible(HEAD_CHANNELS * width_mult))


def layer_shapes(width_mult: float = 1.0) -> list[tuple[int, int, int]]:
    """(in_channels, out_channels, stride) of the 19 searchable layers at a width multiplier."""
    scale = (lambda c: c) if width_mult == 1.0 else (lambda c: make_divisible(c * width_mult))
    return [(scale(l.in_channels), scale(l.out_channels), l.stride) for l in LAYERS]


IMAGENET_CLASSES = 1000


@torch.no_grad()
def init_weights(model: nn.Module, seed: int | None = None) -> nn.Module:
    """The released initialisation, each module drawn from its own stream seeded by (seed, module name).

    conv ~ N(0, sqrt(2 / (k*k*out))), BN weight 1 / bias 0, Linear ~ U(+-1/sqrt(1000)), bias 0. Seeding
    by name means two networks that share module names (an identity and a LET supernet) get identical
    weights for every module they have in common, whatever else one of them contains.
    """
    for name, m in model.named_modules():
        gen = None
        if seed is not None:
            gen = torch.Generator(device="cpu").manual_seed(derive_seed(seed, name))
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            w = torch.empty(m.weight.shape).normal_(0.0, math.sqrt(2.0 / n), generator=gen)
            m.weight.copy_(w)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()
        elif isinstance(m, nn.Linear):
            # The release draws U(+-1/sqrt(n)) with n = its 1000 classes. Kept at 1000 for any class
            # count: with n = 10 the classifier starts 10x larger (initial loss ~5-6) and a 19-layer
            # supernet was measured to stay at chance where the ImageNet range lets it learn.
            r = 1.0 / math.sqrt(IMAGENET_CLASSES)
            m.weight.copy_(torch.empty(m.weight.shape).uniform_(-r, r, generator=gen))
            if m.bias is not None:
                m.bias.zero_()
    return model


class ScarletNet(nn.Module):
    """A stand-alone network of the SCARLET skeleton for one architecture.

    Args:
        arch: 19 choice indices (``Architecture`` or anything ``Architecture.coerce`` accepts).
        num_classes: classifier outputs (1000 for ImageNet).
        width_mult: channel multiplier (channels rounded to multiples of 8; head kept >= 1280).
        small_input: for CIFAR-sized (32x32) images the stem uses stride 1 instead of 2, so a 32x32
            image reaches the last stage at 2x2 instead of 1x1; all five reductions are otherwise kept.
        identity_mode: what identity choices become ("identity", "let", "let_relu"; see ``blocks``).
        dropout: dropout before the classifier (0 as released; the paper trains with 0.2).
    """

    def __init__(self, arch, num_classes: int = 1000, width_mult: float = 1.0, small_input: bool = False,
                 identity_mode: str = "identity", dropout: float = 0.0):
        super().__init__()
        self.arch = Architecture.coerce(arch)
        check_identity_mode(identity_mode)
        self.num_classes, self.width_mult, self.small_input = num_classes, width_mult, small_input
        self.identity_mode = identity_mode
        stem, head = stem_and_head_widths(width_mult)
        shapes = layer_shapes(width_mult)
        first, last = shapes[0][0], shapes[-1][1]
        self.stem, self.separable_conv = make_stem(stem, first, small_input)
        self.mb_module = nn.Sequential(*[
            make_choice_block(c, cin, cout, s, identity_mode) for c, (cin, cout, s) in zip(self.arch, shapes)])
        self.conv_before_pooling, self.dropout, self.classifier = make_head(last, head, num_classes, dropout)
        init_weights(self)

    def features(self, x):
        return self.mb_module(self.separable_conv(self.stem(x)))

    def forward(self, x):
        x = self.conv_before_pooling(self.features(x))
        x = x.mean((2, 3))
        return self.classifier(self.dropout(x))


def build_model(arch, **kwargs) -> ScarletNet:
    """Stand-alone model for any architecture (see ``ScarletNet`` for the options)."""
    return ScarletNet(arch, **kwargs)


def get_model(name: str, num_classes: int = 1000, **kwargs) -> ScarletNet:
    """SCARLET-A/B/C exactly as released, by the original command line's names (``Scarlet_A`` ...)."""
    key = {n.lower().replace("-", "_"): n for n in PUBLISHED}.get(str(name).lower().replace("-", "_"))
    if key is None:
        raise ValueError(f"unknown model {name!r}; accepted: {list(PUBLISHED)}")
    return ScarletNet(PUBLISHED[key], num_classes=num_classes, **kwargs)


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, unreadable, or does not fit the model."""


def read_torch_file(path: str | os.PathLike, what: str = "checkpoint", remedy: str = "", map_location="cpu",
                    keys: Sequence[str] = ()):
    """``torch.load(path, weights_only=True)`` for any file the suite (or a release) wrote.

    A missing, corrupt or truncated file, one holding non-tensor objects, or a mapping without ``keys``
    becomes one ``CheckpointError`` naming the file, ``what`` it should be and ``remedy`` (what to do),
    instead of the reader's own error (``EOFError``, ``KeyError``, ``OSError`` without a path).
    """
    path = os.fspath(path)
    tail = f"; {remedy}" if remedy else ""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} not found: {path!r}" + (" (it is a folder)" if os.path.isdir(path) else "")
                              + tail)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt, truncated, or holding non-tensor objects
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"cannot read {what} {path!r} as a torch file with weights_only=True (corrupt, "
                              f"truncated or not a torch.save file): {type(e).__name__}: {first}{tail}") from e
    missing = [k for k in keys if not isinstance(obj, Mapping) or k not in obj]
    if missing:
        raise CheckpointError(f"{what} {path!r} lacks {missing}: not a complete file of this kind{tail}")
    return obj


def read_state_dict(path: str | os.PathLike, map_location="cpu") -> "OrderedDict[str, torch.Tensor]":
    """Read a checkpoint safely (``weights_only=True``): ``{"model_state": sd}``, ``{"state_dict": sd}`` or a bare sd.

    A ``module.`` prefix (DataParallel / DDP) is removed.
    """
    path = os.fspath(path)
    obj = read_torch_file(path, map_location=map_location)
    if isinstance(obj, Mapping):
        for key in ("model_state", "state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path!r} holds {type(obj).__name__}, not a state dict; expected {{'model_state': state_dict}} "
            "or a bare state_dict of tensors")
    prefix = "module."
    if obj and all(k.startswith(prefix) for k in obj):
        obj = OrderedDict((k[len(prefix):], v) for k, v in obj.items())
    return OrderedDict(obj)


def load_checkpoint(model: nn.Module, path: str | os.PathLike, map_location="cpu") -> nn.Module:
    """Load a released-format checkpoint into ``model`` strictly, with errors that name what is wrong."""
    sd = read_state_dict(path, map_location)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        def show(xs):
            return ", ".join(xs[:8]) + (f", ... ({len(xs)} in all)" if len(xs) > 8 else "")
        parts = [f"checkpoint {os.fspath(path)!r} does not fit {type(model).__name__}"
                 + (f" ({model.arch})" if hasattr(model, "arch") else "")]
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if wrong:
            parts.append(f"shape mismatches: {show(wrong)}")
        raise CheckpointError("; ".join(parts))
    model.load_state_dict(sd, strict=True)
    return model
