"""Evaluating one-shot models: BatchNorm recalibration, then accuracy on held-out batches.

A supernet's BN running statistics mix all paths, so before a sampled path (one-shot model) is ranked
its BN statistics are re-estimated on training batches (cumulative average, as in SPOS/FairNAS).
"""
from __future__ import annotations

from functools import partial
from itertools import groupby
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .blocks import batch_norms
from .space import NUM_LAYERS

__all__ = ["recalibrate_bn", "accuracy", "evaluate_path", "batch_stat_accuracy", "SupernetEvaluator", "score_paths"]


@torch.no_grad()
def recalibrate_bn(forward: Callable[[torch.Tensor], torch.Tensor], model: nn.Module,
                   batches: Iterable, device=None) -> None:
    """Reset every BatchNorm of ``model`` and re-estimate running stats with ``forward`` over ``batches``.

    ``momentum=None`` makes BN keep the exact cumulative average over the batches seen. Modules that
    ``forward`` does not reach keep reset statistics, which is harmless for the path being evaluated.
    """
    bns = batch_norms(model)
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for x, *_ in batches:
            forward(x.to(device) if device is not None else x)
    finally:
        for m, (mom, tr) in zip(bns, saved):
            m.momentum = mom
            m.train(tr)


@torch.no_grad()
def accuracy(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable, device=None,
             topk: tuple[int, ...] = (1,)) -> tuple[float, ...]:
    """Top-k accuracies (fractions) of ``forward`` over ``(x, y)`` batches."""
    correct = torch.zeros(len(topk), dtype=torch.long)
    total = 0
    for x, y in batches:
        if device is not None:
            x, y = x.to(device), y.to(device)
        pred = forward(x).topk(max(topk), dim=1).indices
        hits = pred.eq(y[:, None])
        for j, k in enumerate(topk):
            correct[j] += hits[:, :k].any(1).sum().cpu()
        total += y.numel()
    if total == 0:
        raise ValueError("no evaluation batches")
    return tuple((correct.double() / total).tolist())


@torch.no_grad()
def batch_stat_accuracy(supernet, arch, batches: Iterable, device=None) -> float:
    """Top-1 of ``arch`` with train-mode BatchNorm: each batch normalised by its own statistics.

    What the running training accuracy measures (there on the batch before the update), without updating
    any weight or running statistic. Set beside ``evaluate_path`` it shows how much a path's accuracy depends
    on which images share its batch (``scripts/bn_batch_mix.py``).
    """
    bns = batch_norms(supernet)
    saved = [(m.momentum, m.training) for m in bns]
    counts = {k: v.clone() for k, v in supernet.state_dict().items() if "num_batches" in k}
    try:
        for m in bns:
            m.train()
            m.momentum = 0.0  # running statistics stay as they are
        return accuracy(lambda x: supernet(x, arch), batches, device)[0]
    finally:
        for m, (mom, tr) in zip(bns, saved):
            m.momentum = mom
            m.train(tr)
        supernet.load_state_dict(counts, strict=False)


def evaluate_path(supernet, arch, calib_batches: Iterable, eval_batches: Iterable, device=None) -> float:
    """One-shot accuracy of ``arch``: BN recalibrated on ``calib_batches``, top-1 on ``eval_batches``.

    The supernet's own BN statistics are restored afterwards.
    """
    state = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k or "num_batches" in k}
    was_training = supernet.training
    try:
        recalibrate_bn(lambda x: supernet(x, arch), supernet, calib_batches, device)
        supernet.eval()
        return accuracy(lambda x: supernet(x, arch), eval_batches, device)[0]
    finally:
        supernet.load_state_dict(state, strict=False)
        supernet.train(was_training)


class SupernetEvaluator:
    """One-shot accuracy of architectures from a supernet (BN recalibration, then held-out top-1).

    Args:
        supernet: a ``Supernet``.
        calib_batches: ``(x, y)`` training batches for BN recalibration (labels unused).
        eval_batches: ``(x, y)`` held-out batches for accuracy.
        device: where to compute (default: the supernet's device); batches are moved there once.
        share_prefix: evaluate populations through a prefix trie (same results, less work).

    Shared-prefix evaluation. With BN recalibrated by a cumulative average over the calibration batches,
    the activations a layer receives, and so the statistics its BatchNorms recalibrate to, depend only on
    the choices of the layers before it. The population is sorted lexicographically, which makes it a
    depth-first walk of its prefix trie; each trie node holds, per batch, the calibration activations
    (train-mode BN, batch statistics, exactly as during ``recalibrate_bn``) and the evaluation activations
    (eval mode with the recalibrated running statistics). A child node runs only its own layer's candidate
    module on its parent's activations; the head (whose BN depends on the whole path) runs at each leaf.
    Stem and early layers are thus computed once per distinct prefix instead of once per model. The
    supernet's own BN statistics are restored afterwards. Memory: the activations of all calibration and
    held-out batches along one root-to-leaf path are alive at once (about 20x one model's activations
    for those batches), so keep the batch counts to what BN recalibration needs.
    """

    name = "supernet"

    def __init__(self, supernet, calib_batches: Iterable, eval_batches: Iterable, device=None,
                 share_prefix: bool = True):
        self.supernet = supernet
        self.device = torch.device(device) if device is not None else next(supernet.parameters()).device
        self.calib = [(x.to(self.device), y.to(self.device)) for x, y, *_ in calib_batches]
        self.eval_batches = [(x.to(self.device), y.to(self.device)) for x, y, *_ in eval_batches]
        if not self.calib or not self.eval_batches:
            raise ValueError("SupernetEvaluator needs at least one calibration and one evaluation batch")
        self.share_prefix = share_prefix
        if share_prefix:
            self.name = "supernet-shared-prefix"

    # -- one by one (the reference) ----------------------------------------------------------------
    def evaluate_one(self, arch) -> float:
        return evaluate_path(self.supernet, arch, self.calib, self.eval_batches, self.device)

    def evaluate(self, archs: Sequence) -> np.ndarray:
        archs = [self.supernet.check_arch(a) for a in archs]
        if not self.share_prefix:
            return np.array([self.evaluate_one(a) for a in archs])
        acc = self._walk(archs, self._accuracy_at_leaf)
        return np.array([acc[a.choices] for a in archs])

    def logits(self, archs: Sequence) -> dict[tuple[int, ...], torch.Tensor]:
        """Held-out logits (concatenated over batches) of each architecture, via the prefix trie."""
        archs = [self.supernet.check_arch(a) for a in archs]
        return self._walk(archs, self._logits_at_leaf)

    # -- the prefix-trie walk ------------------------------------------------------------------------
    @torch.no_grad()
    def _walk(self, archs, at_leaf) -> dict:
        net = self.supernet
        was_training = net.training
        saved: dict = {}  # BN statistics of the modules the walk touches, restored at the end
        results: dict = {}
        try:
            net.eval()
            calib, evals = self._through(net.stem_forward, [net.stem, net.separable_conv],
                                         [x for x, _ in self.calib], [x for x, _ in self.eval_batches], saved)
            self._descend(sorted({a.choices for a in archs}), 0, calib, evals, at_leaf, results, saved)
        finally:
            for bn, buffers in saved.values():
                for name, value in buffers.items():
                    getattr(bn, name).copy_(value)
            net.train(was_training)
        return results

    def _descend(self, group, depth, calib, evals, at_leaf, results, saved) -> None:
        if depth == NUM_LAYERS:
            results[group[0]] = at_leaf(calib, evals, saved)
            return
        for choice, members in groupby(group, key=lambda c: c[depth]):
            module = self.supernet.layers[depth][choice]
            child_calib, child_evals = self._through(partial(module, kernels="fast"), [module], calib, evals, saved)
            self._descend(list(members), depth + 1, child_calib, child_evals, at_leaf, results, saved)

    @staticmethod
    def _through(forward, modules, calib, evals, saved):
        """Recalibrate the BNs of ``modules`` on ``calib`` inputs, then run ``evals`` in eval mode."""
        bns = batch_norms(*modules)
        for bn in bns:
            if id(bn) not in saved:
                saved[id(bn)] = (bn, {name: getattr(bn, name).clone() for name in
                                      ("running_mean", "running_var", "num_batches_tracked")})
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average, as recalibrate_bn
            bn.train()
        try:
            calib_out = [forward(x) for x in calib]
        finally:
            for bn, momentum in zip(bns, momenta):
                bn.momentum = momentum
                bn.eval()
        return calib_out, [forward(x) for x in evals]

    def _head(self, calib, evals, saved):
        """Recalibrate the head's BN on the path's calibration activations; held-out logits per batch."""
        head = self.supernet.conv_before_pooling
        self._through(head, [head], calib, [], saved)
        return [self.supernet.head_forward(x) for x in evals]

    def _accuracy_at_leaf(self, calib, evals, saved) -> float:
        logits = iter(self._head(calib, evals, saved))  # one per held-out batch, in order
        return accuracy(lambda _: next(logits), self.eval_batches)[0]

    def _logits_at_leaf(self, calib, evals, saved) -> torch.Tensor:
        return torch.cat(self._head(calib, evals, saved))


def score_paths(supernet, archs: Sequence, calib_batches: Iterable, eval_batches: Iterable,
                device=None) -> pd.DataFrame:
    """Held-out one-shot accuracy of every architecture in ``archs``, one row per path.

    Each path is scored as ``evaluate_path`` does (BN recalibrated on ``calib_batches``, top-1 on all of
    ``eval_batches``), through ``SupernetEvaluator(share_prefix=True)`` so that shared prefixes are
    computed once. Columns: ``path_id`` (position in ``archs``), ``arch``, ``num_identity``,
    ``identity_at_shape_change``, ``heldout_acc`` (fraction), ``n_images`` (held-out images per path).
    All held-out batches are kept on ``device`` during the walk.
    """
    archs = [supernet.check_arch(a) for a in archs]
    if not archs:
        raise ValueError("score_paths needs at least one architecture")
    evaluator = SupernetEvaluator(supernet, calib_batches, eval_batches, device=device, share_prefix=True)
    acc = evaluator.evaluate(archs)
    n_images = int(sum(y.numel() for _, y in evaluator.eval_batches))
    return pd.DataFrame({
        "path_id": range(len(archs)),
        "arch": [str(a) for a in archs],
        "num_identity": [a.num_identity for a in archs],
        "identity_at_shape_change": [a.identity_at_shape_change for a in archs],
        "heldout_acc": acc.astype(float),
        "n_images": n_images,
    })
