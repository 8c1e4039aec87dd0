"""Evaluators: accuracy of architectures, one at a time or a whole population at once.

An evaluator has ``name`` and ``evaluate(archs) -> np.ndarray`` of top-1 accuracies (fractions).

* ``SupernetEvaluator`` (defined in ``scarlet_lib.evaluation``, where every one-shot score comes from):
  one-shot accuracy from a trained supernet, a population at once through a prefix trie.
* ``CheapEvaluator``: a **synthetic** accuracy for tests and examples, no network involved.
* ``MemoEvaluator``: any evaluator, each architecture evaluated once across several searches.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..evaluation import SupernetEvaluator  # noqa: F401 (re-exported: defined in scarlet_lib.evaluation)
from ..space import Architecture, CHOICES, NUM_LAYERS

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
