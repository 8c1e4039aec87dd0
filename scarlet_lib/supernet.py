"""The SCARLET supernet: shared stem and head, 19 layers of choice blocks, single-path forward.

Module names are ``layers.{i}.{choice}`` (choice = index into ``space.CHOICES``), the same in every
identity mode and in both spaces, and weights are initialised per module from (seed, name): an identity
supernet and a LET supernet built with the same seed share every weight they have in common.

Training steps (the optimizer update is always the caller's):

* ``fair_step(x, y, archs)``: FairNAS strict-fair step, the m paths of ``space.sample_fair`` on one batch,
  gradients accumulated. ``fused=True`` (default) runs them as one batched forward/backward (stem once,
  layer by layer, the head of all m paths at once with per-path BatchNorm); ``fused=False`` is the plain
  sequential reference (one forward/backward per path). Both give the same gradients and, in
  ``fused`` mode, the same BN running statistics (see ``_fused_fair_step``).
* ``single_path_step(x, y, arch)``: uniform single-path (SPOS) step, one path from
  ``space.sample_uniform``; it is ``fair_step`` with one path.

Speed (measured by ``scripts/bench_fair_step.py``): parameters and inputs are kept in channels_last
(``channels_last=True``), and the blocks' convs are computed by the ``"fast"`` kernel set
(``kernels``, see ``scarlet_lib.kernels``: depthwise taps that only meet zero padding skipped, 1x1 convs as
matmuls, depthwise convs on tiny maps as dense per-channel maps; exact up to float rounding).
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import LET, check_identity_mode, check_let_init, init_let, make_choice_block
from .kernels import get_kernels
from .models import ScarletNet, _seed_for, init_weights, layer_shapes, make_head, make_stem, stem_and_head_widths
from .space import NUM_LAYERS, SPACE_SE, Architecture, ArchitectureError, SearchSpace

__all__ = ["ChoiceLayer", "Supernet", "REDUCTIONS"]

REDUCTIONS = ("per_weight", "mean", "sum")  # how fair_step combines the m paths' gradients


def _batch_norms(*modules: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def _as_if_repeated(bns, times: int):
    """BN running-stat updates inside count as ``times`` updates with the same batch statistics.

    m updates with one statistic s give r <- (1-mu)^m r + (1 - (1-mu)^m) s for momentum mu, and
    r <- r + (s - r) m / (n + m) for the cumulative average (momentum None, n batches seen before).
    """
    saved, adjusted = [bn.momentum for bn in bns], []
    for bn in bns:
        if bn.training and bn.track_running_stats and times > 1:
            n = int(bn.num_batches_tracked)
            bn.momentum = times / (n + times) if bn.momentum is None else 1.0 - (1.0 - bn.momentum) ** times
            adjusted.append(bn)
    try:
        yield
    finally:
        for bn in adjusted:  # it ran once in training mode: count the other m - 1 updates too
            bn.num_batches_tracked.add_(times - 1)
        for bn, mom in zip(bns, saved):
            bn.momentum = mom


def _per_path_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, m: int) -> torch.Tensor:
    """``bn`` applied to each of the m channel blocks of ``x`` (m * bn.num_features channels) on its own.

    Same values as ``torch.cat([bn(block) for block in x.chunk(m, 1)], 1)`` and the same running
    statistics: in training mode the blocks' batch statistics are taken in one BN call (into scratch
    buffers, momentum 1) and then folded into ``bn``'s running statistics one block after the other, as
    m calls of ``bn`` would (``momentum=None``: the cumulative average).
    """
    c = bn.num_features
    weight = None if bn.weight is None else bn.weight.repeat(m)
    bias = None if bn.bias is None else bn.bias.repeat(m)
    if not bn.training and bn.track_running_stats:
        return F.batch_norm(x, bn.running_mean.repeat(m), bn.running_var.repeat(m), weight, bias, False, 0.0,
                            bn.eps)
    if not bn.track_running_stats:
        return F.batch_norm(x, None, None, weight, bias, True, 0.0, bn.eps)
    means, variances = x.new_zeros(m * c), x.new_ones(m * c)
    out = F.batch_norm(x, means, variances, weight, bias, True, 1.0, bn.eps)
    with torch.no_grad():
        for mean, var in zip(means.view(m, c), variances.view(m, c)):
            bn.num_batches_tracked.add_(1)
            f = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            bn.running_mean.mul_(1.0 - f).add_(mean, alpha=f)
            bn.running_var.mul_(1.0 - f).add_(var, alpha=f)
    return out


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
        channels_last: keep conv weights and activations in channels_last memory format (about 2.5x
            faster on CPU for this network; values are the same, only the memory layout differs).
        zero_init_residual: start the last BN scale (``bn3.weight``) of every residual candidate at 0, so
            each residual block starts as the identity (Goyal et al. 2017; torchvision's option of that name).
            The supernet's own init, not the released models': measured on the embedded data (cpu profile
            settings, seed 0, 275 strict-fair steps) it lifted a LET supernet from 12.5% to 26.6% path
            accuracy in the last epoch (``data.CALIBRATION``). Off gives the released init everywhere.
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
                gen = torch.Generator().manual_seed(_seed_for(f"layers.{name}:let_init", seed))
                init_let(module, let_init, gen)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # -- single path -----------------------------------------------------------------------------
    def check_arch(self, arch) -> Architecture:
        return self.space.validate(arch)

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

    # -- strict-fair step --------------------------------------------------------------------------
    def fair_step(self, x, y, archs, criterion=None, reduction: str = "per_weight", fused: bool = True,
                  kernels="fast") -> dict:
        """Forward and backward of every path in ``archs`` on the same batch, accumulating gradients.

        The optimizer step is the caller's. ``reduction`` says how the m paths' gradients combine:

        * ``"per_weight"`` (default): each weight gets the mean gradient of the paths that used it. In a
          strict-fair step the shared stem and head average all m paths while each candidate, used by one
          path, gets that path's whole gradient; with ``"mean"`` the candidates would learn m times slower
          than the shared layers. Measured on the embedded data (cpu profile settings, 275 steps): path
          accuracy in the last epoch 28.4% / 31.3% (seeds 0 / 1) against 26.6% / 27.2% with ``"mean"``
          (``data.CALIBRATION``).
        * ``"mean"``: each path's loss scaled by 1/m (every weight's gradient divided by m).
        * ``"sum"``: the plain accumulated sum (FairNAS's wording); needs a ~m-times smaller learning rate.

        Returns per-path ``loss`` (unscaled) and ``correct`` counts as tensors of shape (m,).

        ``fused=True`` computes the m paths in one batched forward/backward (``_fused_fair_step``): same
        gradients (to float rounding) and same BN running statistics as ``fused=False``, the sequential
        reference that runs one forward/backward per path. With dropout > 0 the two draw different masks.
        ``criterion(logits, y)`` must return a scalar (default cross-entropy). ``kernels``: as in ``forward``.
        """
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if isinstance(archs, (Architecture, str)) or not len(archs):
            raise ValueError("archs must be a non-empty list of architectures (e.g. space.sample_fair(rng))")
        archs = [self.check_arch(a) for a in archs]
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(f"x and y disagree on the batch size: {tuple(x.shape)} vs {tuple(y.shape)}")
        criterion = criterion or F.cross_entropy
        kernels = get_kernels(kernels)
        scale = 1.0 / len(archs) if reduction == "mean" else 1.0
        hooks = self._per_weight_hooks(archs) if reduction == "per_weight" else []
        try:
            if fused:
                return self._fused_fair_step(x, y, archs, criterion, scale, kernels)
            losses, correct = [], []
            for arch in archs:
                logits = self(x, arch, kernels=kernels)
                loss = criterion(logits, y)
                (loss * scale).backward()
                losses.append(loss.detach())
                correct.append((logits.detach().argmax(1) == y).sum())
            return {"loss": torch.stack(losses), "correct": torch.stack(correct)}
        finally:
            for h in hooks:
                h.remove()

    def _per_weight_hooks(self, archs) -> list:
        """Gradient hooks dividing each weight's summed gradient by the number of paths that used it.

        Only weights used more than once get one: in a strict-fair step the ~15 shared tensors (stem,
        head), not the candidates, which each path uses alone (a hook on every candidate weight cost 8% of a
        cpu-profile step: 0.56 s against 0.52 s).
        """
        handles = []

        def divide(params, k):
            handles.extend(p.register_hook(lambda g, k=k: g / k) for p in params if p.requires_grad)

        if len(archs) > 1:
            divide((p for name, p in self.named_parameters() if not name.startswith("layers.")), len(archs))
        for (i, c), k in Counter((i, c) for a in archs for i, c in enumerate(a)).items():
            if k > 1:
                divide(self.layers[i][c].parameters(), k)
        return handles

    def single_path_step(self, x, y, arch, criterion=None, kernels="fast") -> dict:
        """Uniform single-path (SPOS) step: forward/backward of one path (``space.sample_uniform``).

        The same as ``fair_step(x, y, [arch])``; returns ``loss`` and ``correct`` of shape (1,).
        """
        return self.fair_step(x, y, [arch], criterion=criterion, reduction="sum", fused=False, kernels=kernels)

    def _fused_fair_step(self, x, y, archs, criterion, scale, kernels) -> dict:
        """The m paths of a step as one autograd graph.

        * stem + separable conv: the same batch gives the same output for every path, so it runs once;
          its output feeds all m paths and autograd sums their gradients, as the sequential step does.
          Its BN running statistics are updated as if it had run m times (``_as_if_repeated``).
        * choice layers, layer by layer: each path's activations go through that path's choice, so in a
          strict-fair step every candidate sees exactly one path's batch (BN normalises that batch alone,
          running statistics updated once, as in the sequential step; a candidate used by several paths
          runs once per path, in path order).
        * head: conv_before_pooling and the classifier run on all m*B rows at once; its BN normalises and
          updates with each path's B rows on their own, in path order, so its running statistics too are
          those of the sequential step. With a kernel set whose ``stacked_head`` is true this is
          ``_stacked_head`` (one BN call over the m paths side by side), otherwise ``head_forward``.
        * one backward of sum_j scale * loss_j.
        """
        m, batch = len(archs), x.shape[0]
        with _as_if_repeated(_batch_norms(self.stem, self.separable_conv), m):
            shared = self.stem_forward(x)
        feats = [shared] * m
        for i, layer in enumerate(self.layers):
            feats = [layer(f, a[i], kernels) for a, f in zip(archs, feats)]
        if getattr(kernels, "stacked_head", False):
            logits = self._stacked_head(feats)
        else:
            logits = self.head_forward(torch.cat(feats), kernels, batch=batch).view(m, batch, -1)
        losses = [criterion(path_logits, y) for path_logits in logits]
        loss = torch.stack(losses)
        (loss.sum() * scale).backward()
        correct = (logits.detach().argmax(-1) == y.view(1, batch)).sum(1)
        return {"loss": loss.detach(), "correct": correct}

    def _stacked_head(self, feats) -> torch.Tensor:
        """Logits (m, B, classes) of the m paths' last features, the paths side by side in the channels.

        The 1x1 conv runs as one matmul on the (B, H, W, m, C_in) stack, so its output viewed as
        (B, m*C, H, W) is channels_last with path j's channels at j*C: the per-path BatchNorm is then one
        BN call over m*C channels (``_per_path_batch_norm``), and the pooled (B, m, C) features go through
        the classifier at once. Besides the fewer calls, every gradient of the head stays channels_last:
        ``head_forward``'s ``mean((2, 3))`` hands back a contiguous (NCHW) gradient, which makes the
        backward of ReLU6 and BN mix layouts, their slow path.
        """
        conv, bn, act = self.conv_before_pooling
        m = len(feats)
        n, _, h, w = feats[0].shape
        stacked = torch.stack([f.permute(0, 2, 3, 1) for f in feats], 3)  # (B, H, W, m, C_in)
        hidden = F.linear(stacked, conv.weight.flatten(1), conv.bias)  # (B, H, W, m, C)
        c = hidden.shape[-1]
        hidden = act(_per_path_batch_norm(bn, hidden.view(n, h, w, m * c).permute(0, 3, 1, 2), m))
        pooled = hidden.permute(0, 2, 3, 1).reshape(n, h * w, m, c).mean(1)  # (B, m, C)
        return self.classifier(self.dropout(pooled)).transpose(0, 1)

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
