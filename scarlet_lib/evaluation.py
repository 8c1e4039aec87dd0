"""Evaluating one-shot models: BatchNorm recalibration, then accuracy on held-out batches.

A supernet's BN running statistics mix all paths, so before a sampled path (one-shot model) is ranked
its BN statistics are re-estimated on training batches (cumulative average, as in SPOS/FairNAS).
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import pandas as pd
import torch
from torch import nn

__all__ = ["recalibrate_bn", "accuracy", "evaluate_path", "score_paths"]


@torch.no_grad()
def recalibrate_bn(forward: Callable[[torch.Tensor], torch.Tensor], model: nn.Module,
                   batches: Iterable, device=None) -> None:
    """Reset every BatchNorm of ``model`` and re-estimate running stats with ``forward`` over ``batches``.

    ``momentum=None`` makes BN keep the exact cumulative average over the batches seen. Modules that
    ``forward`` does not reach keep reset statistics, which is harmless for the path being evaluated.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
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


def score_paths(supernet, archs: Sequence, calib_batches: Iterable, eval_batches: Iterable,
                device=None) -> pd.DataFrame:
    """Held-out one-shot accuracy of every architecture in ``archs``, one row per path.

    Each path is scored as ``evaluate_path`` does (BN recalibrated on ``calib_batches``, top-1 on all of
    ``eval_batches``), through ``search.SupernetEvaluator(share_prefix=True)`` so that shared prefixes are
    computed once. Columns: ``path_id`` (position in ``archs``), ``arch``, ``num_identity``,
    ``identity_at_shape_change``, ``heldout_acc`` (fraction), ``n_images`` (held-out images per path).
    All held-out batches are kept on ``device`` during the walk.
    """
    # Imported here: search.evaluators imports this module, so a module-level import would be a cycle.
    from .search.evaluators import SupernetEvaluator

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
