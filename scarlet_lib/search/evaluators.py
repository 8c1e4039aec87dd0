"""Evaluators: accuracy of architectures, one at a time or a whole population at once.

An evaluator has ``name`` and ``evaluate(archs) -> np.ndarray`` of top-1 accuracies (fractions).

* ``SupernetEvaluator``: one-shot accuracy from a trained supernet: BatchNorm recalibrated on training
  batches, then top-1 on held-out batches (``evaluation.evaluate_path`` semantics). With
  ``share_prefix=True`` a population is evaluated through a prefix trie (see the class docstring).
* ``CheapEvaluator``: a **synthetic** accuracy for tests and examples, no network involved.
* ``MemoEvaluator``: any evaluator, each architecture evaluated once across several searches.
"""
from __future__ import annotations

from functools import partial
from itertools import groupby
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..evaluation import accuracy, evaluate_path
from ..space import CHOICES, NUM_LAYERS, SPACE_SE, Architecture, SearchSpace

__all__ = ["CheapEvaluator", "SupernetEvaluator", "MemoEvaluator"]


class CheapEvaluator:
    """Synthetic, deterministic "accuracy" (NOT a measurement): a seeded function of the architecture.

    ``acc = 0.35 + 0.5 * s(capacity) + noise`` where ``capacity`` in [0, 1] grows with expansion,
    kernel size and SE of the non-identity layers (so accuracy trades off against MAdds and params like
    a real space), ``s`` is a saturating curve and ``noise`` a fixed per-(layer, choice) table drawn
    from ``seed`` (so that layers and choices matter individually). Clipped to [0, 1].
    """

    name = "cheap"

    def __init__(self, seed: int = 0, noise: float = 0.05):
        rng = np.random.default_rng(seed)
        self.seed, self.noise = seed, noise
        self.table = rng.normal(0.0, 1.0, (NUM_LAYERS, len(CHOICES)))
        self.capacity = np.array([0.0 if c.is_identity else (c.expansion / 6) * 0.5 + (c.kernel / 7) * 0.3
                                  + 0.2 * c.se for c in CHOICES])

    def evaluate(self, archs: Sequence) -> np.ndarray:
        C = np.array([Architecture.coerce(a).tolist() for a in archs], dtype=int).reshape(-1, NUM_LAYERS)
        cap = self.capacity[C].mean(1)
        curve = (1 - np.exp(-3 * cap)) / (1 - np.exp(-3))
        noise = self.table[np.arange(NUM_LAYERS), C].mean(1) * self.noise * np.sqrt(NUM_LAYERS) / 2
        return np.clip(0.35 + 0.5 * curve + noise, 0.0, 1.0)


class MemoEvaluator:
    """Wraps an evaluator so that an architecture is evaluated once, however many searches ask for it.

    Two searches on one supernet that differ only in how they count costs (notebook 6) share their
    evaluations. Only for deterministic evaluators (``SupernetEvaluator`` is: its accuracy of a model does
    not depend on the population it is evaluated with); ``memo`` maps choices to accuracy.
    """

    def __init__(self, evaluator):
        if not callable(getattr(evaluator, "evaluate", None)):
            raise TypeError(f"expected an evaluator with evaluate(archs), got {type(evaluator).__name__}")
        self.evaluator = evaluator
        self.name = getattr(evaluator, "name", type(evaluator).__name__)
        self.memo: dict[tuple[int, ...], float] = {}

    def evaluate(self, archs: Sequence) -> np.ndarray:
        keys = [Architecture.coerce(a).choices for a in archs]
        new = list(dict.fromkeys(k for k in keys if k not in self.memo))
        if new:
            acc = np.asarray(self.evaluator.evaluate([Architecture(k) for k in new]), dtype=float)
            self.memo.update(zip(new, acc.tolist()))
        return np.array([self.memo[k] for k in keys], dtype=float)


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


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
        bns = [bn for m in modules for bn in _batchnorms(m)]
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
