"""The SCARLET supernet: shared stem and head, 19 layers of choice blocks, single-path forward.

Module names are ``layers.{i}.{choice}`` (choice = index into ``space.CHOICES``), the same in every
identity mode and in both spaces, and weights are initialised per module from (seed, name): an identity
supernet and a LET supernet built with the same seed share every weight they have in common.

The strict-fair and single-path training steps that take a supernet are in ``scarlet_lib.fair``.

Speed: parameters and inputs are kept in channels_last
(``channels_last=True``), and the blocks' convs are computed by the ``"fast"`` kernel set
(``kernels``, see ``scarlet_lib.kernels``: depthwise taps that only meet zero padding skipped, 1x1 convs as
matmuls, depthwise convs on tiny maps as dense per-channel maps; exact up to float rounding).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .blocks import LET, check_identity_mode, check_let_init, init_let, make_choice_block
from .kernels import get_kernels
from .models import ScarletNet, init_weights, layer_shapes, make_head, make_stem, stem_and_head_widths
from .seeds import derive_seed
from .space import Architecture, ArchitectureError, NUM_LAYERS, SPACE_SE, SearchSpace

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

    def forward(self, x, choice: int, kernels="plain"):
        return self[choice](x, kernels=kernels)


class Supernet(nn.Module):
    """Weight-sharing supernet over a ``SearchSpace``.

    Args:
        space: ``SPACE_SE`` (13 choices a layer) or ``SPACE_NO_SE`` (7).
        identity_mode: "identity" (plain skip), "let" (paper's LET) or "let_relu" (ablation).
        width_mult, num_classes, small_input, dropout: as in ``models.ScarletNet``.
        seed: initialisation seed (per-module streams derived from module names).
        channels_last: keep conv weights and activations in channels_last memory format (faster on CPU for
            this network, ``scripts/bench_fair_step.py``; values are the same, only the memory layout differs).
        zero_init_residual: start the last BN scale (``bn3.weight``) of every residual candidate at 0, so
            each residual block starts as the identity (Goyal et al. 2017; torchvision's option of that name).
            The supernet's own init, not the released models' (calibration: ``docs/lab_notes.md``). Off gives
            the released init everywhere.
        let_init: how the LET candidates start (``blocks.LET_INITS``): ``"he"`` (released conv init),
            ``"identity"`` (zero-pad identity: the LET supernet starts as the same function as the identity
            supernet of the same seed) or ``"orthogonal"`` (variance-preserving random rotation).
    """

    def __init__(self, space: SearchSpace = SPACE_SE, identity_mode: str = "let", width_mult: float = 1.0,
                 num_classes: int = 10, small_input: bool = True, dropout: float = 0.0, seed: int = 0,
                 channels_last: bool = True, zero_init_residual: bool = True, let_init: str = "he"):
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
        self.zero_init_residual = zero_init_residual
        if zero_init_residual:
            with torch.no_grad():
                for layer in self.layers:
                    for block in layer.candidates.values():
                        if getattr(block, "use_residual", False):
                            block.bn3.weight.zero_()
        self.let_init = check_let_init(let_init)
        for name, module in self.layers.named_modules():
            if isinstance(module, LET):
                gen = torch.Generator().manual_seed(derive_seed(seed, f"layers.{name}:let_init"))
                init_let(module, let_init, gen)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # -- single path -----------------------------------------------------------------------------
    def check_arch(self, arch) -> Architecture:
        return self.space.check(arch)

    def _check_input(self, x):
        if not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] == 3):
            raise ValueError(f"input must be a (batch, 3, H, W) image tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def stem_forward(self, x):
        return self.separable_conv(self.stem(self._check_input(x)))

    def head_forward(self, x, kernels="fast", batch: int | None = None):
        """Logits from the last layer's features; ``batch`` = B normalises each B rows on their own (fused step)."""
        conv, bn, act = self.conv_before_pooling
        h = get_kernels(kernels).pointwise(conv, x)
        h = act(bn(h) if batch is None else torch.cat([bn(chunk) for chunk in h.split(batch)]))
        return self.classifier(self.dropout(h.mean((2, 3))))

    def forward(self, x, arch, upto: int | None = None, kernels="fast"):
        """Logits of the one-shot model ``arch``; with ``upto=k`` the features after layer k (1-based).

        ``kernels``: how the convs are computed, ``"fast"``, ``"trim"`` or ``"plain"`` (the same values;
        see ``scarlet_lib.kernels``).
        """
        arch = self.check_arch(arch)
        kernels = get_kernels(kernels)
        if upto is not None:
            return self.capture_features(x, arch, (upto,), kernels=kernels, no_grad=False)[upto]
        x = self.stem_forward(x)
        for layer, c in zip(self.layers, arch):
            x = layer(x, c, kernels)
        return self.head_forward(x, kernels)

    def capture_features(self, x, arch, layers: Sequence[int] = (1, 15), kernels="fast",
                         no_grad: bool = True) -> dict[int, torch.Tensor]:
        """Activations after the chosen block of each layer in ``layers`` (1-based), in one pass.

        Returns ``{layer: tensor (batch, channels, H, W)}``; the pass stops after the deepest layer asked
        for. An identity choice at a channel-changing layer keeps its input channels and pads zeros (plain
        identity) or gives the LET's output. Computed without autograd unless ``no_grad=False``; the
        module's train/eval mode is the caller's (use eval mode for stable BN statistics).
        """
        arch = self.check_arch(arch)
        kernels = get_kernels(kernels)
        if isinstance(layers, int):
            layers = (layers,)
        wanted = sorted(set(layers))
        bad = [k for k in wanted if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= NUM_LAYERS]
        if not wanted or bad:
            raise ValueError(f"layers must be 1-based layer numbers in 1..{NUM_LAYERS}, got {list(layers)}")
        out = {}
        with torch.set_grad_enabled(not no_grad and torch.is_grad_enabled()):
            x = self.stem_forward(x)
            for i, (layer, c) in enumerate(zip(self.layers, arch)):
                x = layer(x, c, kernels)
                if i + 1 in wanted:
                    out[i + 1] = x
                if i + 1 == wanted[-1]:
                    break
        return out

    def path_parameters(self, arch):
        """Parameters used by one path (shared parts and the chosen candidate of each layer)."""
        arch = self.check_arch(arch)
        mods = [self.stem, self.separable_conv, self.conv_before_pooling, self.classifier]
        mods += [layer[c] for layer, c in zip(self.layers, arch)]
        for m in mods:
            yield from m.parameters()

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
                f"small_input={self.small_input}, let_init={self.let_init!r}, layers={NUM_LAYERS}")
