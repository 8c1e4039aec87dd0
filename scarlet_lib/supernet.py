"""The SCARLET supernet: shared stem and head, 19 layers of choice blocks, single-path forward.

Module names are ``layers.{i}.{choice}`` (choice = index into ``space.CHOICES``), the same in every
identity mode and in both spaces, and weights are initialised per module from (seed, name): an identity
supernet and a LET supernet built with the same seed share every weight they have in common.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import check_identity_mode, make_choice_block
from .models import ScarletNet, init_weights, layer_shapes, make_head, make_stem, stem_and_head_widths
from .space import NUM_LAYERS, SPACE_SE, Architecture, ArchitectureError, SearchSpace

__all__ = ["ChoiceLayer", "Supernet"]


class ChoiceLayer(nn.Module):
    """One searchable layer: a candidate block per choice of the space."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, choices: Sequence[int],
                 identity_mode: str):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.candidates = nn.ModuleDict(
            {str(c): make_choice_block(c, in_channels, out_channels, stride, identity_mode) for c in choices})

    def __getitem__(self, choice: int) -> nn.Module:
        return self.candidates[str(int(choice))]

    def forward(self, x, choice: int):
        return self[choice](x)


class Supernet(nn.Module):
    """Weight-sharing supernet over a ``SearchSpace``.

    Args:
        space: ``SPACE_SE`` (13 choices a layer) or ``SPACE_NO_SE`` (7).
        identity_mode: "identity" (plain skip), "let" (paper's LET) or "let_relu" (ablation).
        width_mult, num_classes, small_input, dropout: as in ``models.ScarletNet``.
        seed: initialisation seed (per-module streams derived from module names).
    """

    def __init__(self, space: SearchSpace = SPACE_SE, identity_mode: str = "let", width_mult: float = 1.0,
                 num_classes: int = 10, small_input: bool = True, dropout: float = 0.0, seed: int = 0):
        super().__init__()
        if not space.identity_everywhere:
            raise ArchitectureError("the supernet offers identity at every layer; pass a space with "
                                    "identity_everywhere=True")
        self.space = space
        self.identity_mode = check_identity_mode(identity_mode)
        self.width_mult, self.num_classes, self.small_input, self.dropout_p = width_mult, num_classes, small_input, dropout
        self.seed = seed
        stem, head = stem_and_head_widths(width_mult)
        shapes = layer_shapes(width_mult)
        self.stem, self.separable_conv = make_stem(stem, shapes[0][0], small_input)
        self.layers = nn.ModuleList(
            ChoiceLayer(cin, cout, s, space.choices, identity_mode) for cin, cout, s in shapes)
        self.conv_before_pooling, self.dropout, self.classifier = make_head(shapes[-1][1], head, num_classes, dropout)
        init_weights(self, seed)

    # -- single path -----------------------------------------------------------------------------
    def check_arch(self, arch) -> Architecture:
        return self.space.validate(arch)

    def stem_forward(self, x):
        return self.separable_conv(self.stem(x))

    def head_forward(self, x):
        x = self.conv_before_pooling(x).mean((2, 3))
        return self.classifier(self.dropout(x))

    def forward(self, x, arch, upto: int | None = None):
        """Logits of the one-shot model ``arch``; with ``upto=k`` the features after layer k (1-based)."""
        arch = self.check_arch(arch)
        x = self.stem_forward(x)
        for i, (layer, c) in enumerate(zip(self.layers, arch)):
            x = layer(x, c)
            if upto is not None and i + 1 == upto:
                return x
        return self.head_forward(x)

    def path_parameters(self, arch):
        """Parameters used by one path (shared parts and the chosen candidate of each layer)."""
        arch = self.check_arch(arch)
        mods = [self.stem, self.separable_conv, self.conv_before_pooling, self.classifier]
        mods += [layer[c] for layer, c in zip(self.layers, arch)]
        for m in mods:
            yield from m.parameters()

    # -- strict-fair step --------------------------------------------------------------------------
    def fair_step(self, x, y, archs, criterion=None, reduction: str = "mean") -> dict:
        """Forward and backward of every path in ``archs`` on the same batch, accumulating gradients.

        The optimizer step is the caller's. ``reduction="mean"`` scales each path's loss by 1/m so the
        update has the size of one path's gradient (the default; ``"sum"`` needs a ~m-times smaller
        learning rate). Returns per-path ``loss`` (unscaled) and ``correct`` counts as tensors of shape (m,).
        """
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        criterion = criterion or nn.functional.cross_entropy
        scale = 1.0 / len(archs) if reduction == "mean" else 1.0
        losses, correct = [], []
        for arch in archs:
            logits = self(x, arch)
            loss = criterion(logits, y)
            (loss * scale).backward()
            losses.append(loss.detach())
            correct.append((logits.detach().argmax(1) == y).sum())
        return {"loss": torch.stack(losses), "correct": torch.stack(correct)}

    # -- stand-alone extraction ------------------------------------------------------------------
    def extract(self, arch) -> ScarletNet:
        """The one-shot model ``arch`` as a stand-alone ``ScarletNet`` holding a copy of the shared weights."""
        arch = self.check_arch(arch)
        net = ScarletNet(arch, num_classes=self.num_classes, width_mult=self.width_mult,
                         small_input=self.small_input, identity_mode=self.identity_mode, dropout=self.dropout_p)
        sd = {}
        for k, v in self.state_dict().items():
            if k.startswith("layers."):
                _, i, _, c, rest = k.split(".", 4)
                if int(c) != arch[int(i)]:
                    continue
                k = f"mb_module.{i}.{rest}"
            sd[k] = v
        net.load_state_dict(sd, strict=True)
        net.to(next(self.parameters()).device)
        return net

    def extra_repr(self):
        return (f"space={self.space}, identity_mode={self.identity_mode!r}, width_mult={self.width_mult}, "
                f"small_input={self.small_input}, layers={NUM_LAYERS}")
