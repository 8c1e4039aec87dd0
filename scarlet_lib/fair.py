"""The strict-fair training step of FairNAS, and the uniform single-path step, on a ``Supernet``.

The supernet module builds and runs forward; these functions take it and accumulate the gradients of a
step (the optimizer update is the caller's, ``train.train_supernet``):

* ``fair_step(supernet, x, y, archs)``: the m paths of ``space.sample_fair`` on one batch, gradients
  accumulated. ``fused=True`` (default) runs them as one batched forward/backward (stem once, layer by
  layer, the head of all m paths at once with per-path BatchNorm); ``fused=False`` is the plain sequential
  reference (one forward/backward per path). Both give the same gradients and the same BN running
  statistics (tested).
* ``single_path_step(supernet, x, y, arch)``: uniform single-path (SPOS) step; ``fair_step`` with one path.
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import batch_norms
from .kernels import get_kernels
from .space import Architecture

__all__ = ["REDUCTIONS", "fair_step", "single_path_step"]

REDUCTIONS = ("per_weight", "mean", "sum")  # how fair_step combines the m paths' gradients


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


def fair_step(supernet, x, y, archs, criterion=None, reduction: str = "per_weight", fused: bool = True,
              kernels="fast") -> dict:
    """Forward and backward of every path in ``archs`` on the same batch, accumulating gradients.

    The optimizer step is the caller's. ``reduction`` says how the m paths' gradients combine:

    * ``"per_weight"`` (default): each weight gets the mean gradient of the paths that used it. In a
      strict-fair step the shared stem and head average all m paths while each candidate, used by one
      path, gets that path's whole gradient; with ``"mean"`` the candidates would learn m times slower
      than the shared layers (calibration runs: ``docs/lab_notes.md``).
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
    archs = [supernet.check_arch(a) for a in archs]
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"x and y disagree on the batch size: {tuple(x.shape)} vs {tuple(y.shape)}")
    criterion = criterion or F.cross_entropy
    kernels = get_kernels(kernels)
    scale = 1.0 / len(archs) if reduction == "mean" else 1.0
    hooks = _per_weight_hooks(supernet, archs) if reduction == "per_weight" else []
    try:
        if fused:
            return _fused_fair_step(supernet, x, y, archs, criterion, scale, kernels)
        losses, correct = [], []
        for arch in archs:
            logits = supernet(x, arch, kernels=kernels)
            loss = criterion(logits, y)
            (loss * scale).backward()
            losses.append(loss.detach())
            correct.append((logits.detach().argmax(1) == y).sum())
        return {"loss": torch.stack(losses), "correct": torch.stack(correct)}
    finally:
        for h in hooks:
            h.remove()

def _per_weight_hooks(supernet, archs) -> list:
    """Gradient hooks dividing each weight's summed gradient by the number of paths that used it.

    Only weights used more than once get one: in a strict-fair step the ~15 shared tensors (stem,
    head), not the candidates, which each path uses alone (a hook on every one would only cost time).
    """
    handles = []

    def divide(params, k):
        handles.extend(p.register_hook(lambda g, k=k: g / k) for p in params if p.requires_grad)

    if len(archs) > 1:
        divide((p for name, p in supernet.named_parameters() if not name.startswith("layers.")), len(archs))
    for (i, c), k in Counter((i, c) for a in archs for i, c in enumerate(a)).items():
        if k > 1:
            divide(supernet.layers[i][c].parameters(), k)
    return handles

def single_path_step(supernet, x, y, arch, criterion=None, kernels="fast") -> dict:
    """Uniform single-path (SPOS) step: forward/backward of one path (``space.sample_uniform``).

    The same as ``fair_step(supernet, x, y, [arch])``; returns ``loss`` and ``correct`` of shape (1,).
    """
    return fair_step(supernet, x, y, [arch], criterion=criterion, reduction="sum", fused=False, kernels=kernels)

def _fused_fair_step(supernet, x, y, archs, criterion, scale, kernels) -> dict:
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
    with _as_if_repeated(batch_norms(supernet.stem, supernet.separable_conv), m):
        shared = supernet.stem_forward(x)
    feats = [shared] * m
    for i, layer in enumerate(supernet.layers):
        feats = [layer(f, a[i], kernels) for a, f in zip(archs, feats)]
    if getattr(kernels, "stacked_head", False):
        logits = _stacked_head(supernet, feats)
    else:
        logits = supernet.head_forward(torch.cat(feats), kernels, batch=batch).view(m, batch, -1)
    losses = [criterion(path_logits, y) for path_logits in logits]
    loss = torch.stack(losses)
    (loss.sum() * scale).backward()
    correct = (logits.detach().argmax(-1) == y.view(1, batch)).sum(1)
    return {"loss": loss.detach(), "correct": correct}

def _stacked_head(supernet, feats) -> torch.Tensor:
    """Logits (m, B, classes) of the m paths' last features, the paths side by side in the channels.

    The 1x1 conv runs as one matmul on the (B, H, W, m, C_in) stack, so its output viewed as
    (B, m*C, H, W) is channels_last with path j's channels at j*C: the per-path BatchNorm is then one
    BN call over m*C channels (``_per_path_batch_norm``), and the pooled (B, m, C) features go through
    the classifier at once. Besides the fewer calls, every gradient of the head stays channels_last:
    ``head_forward``'s ``mean((2, 3))`` hands back a contiguous (NCHW) gradient, which makes the
    backward of ReLU6 and BN mix layouts, their slow path.
    """
    conv, bn, act = supernet.conv_before_pooling
    m = len(feats)
    n, _, h, w = feats[0].shape
    stacked = torch.stack([f.permute(0, 2, 3, 1) for f in feats], 3)  # (B, H, W, m, C_in)
    hidden = F.linear(stacked, conv.weight.flatten(1), conv.bias)  # (B, H, W, m, C)
    c = hidden.shape[-1]
    hidden = act(_per_path_batch_norm(bn, hidden.view(n, h, w, m * c).permute(0, 3, 1, 2), m))
    pooled = hidden.permute(0, 2, 3, 1).reshape(n, h * w, m, c).mean(1)  # (B, m, C)
    return supernet.classifier(supernet.dropout(pooled)).transpose(0, 1)
