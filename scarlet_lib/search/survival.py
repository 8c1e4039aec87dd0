"""Weighted non-dominated sorting and weighted crowding distance, as a pymoo survival.

Definition implemented (the paper names the idea, not the formula):

* **Ranks** are pymoo's fast non-dominated sorting, unchanged. Pareto dominance is invariant under a
  positive rescaling of each objective, so objective weights cannot change which front a model is in;
  weighting plain dominance would be a no-op.
* **Weighted crowding distance.** For a front with objective values ``f[i, m]`` and weights ``w_m >= 0``
  summing to 1: sort the front by each objective ``m``; the two extreme points of that sort get an
  infinite gap, every other point ``i`` gets the normalised gap between its neighbours
  ``g[i, m] = (f[next, m] - f[prev, m]) / (max_m f - min_m f)`` (0 when the objective is constant).
  Then ``cd_w(i) = sum_m w_m * g[i, m]``. With equal weights ``w_m = 1/M`` this is NSGA-II's crowding
  distance exactly as pymoo computes it (``sum_m g[i, m] / M``), down to the floating-point operations,
  so populations are ordered identically (tested). A zero weight drops that objective (its extremes
  are then no longer infinite).
* Survival: fronts are filled in rank order; the front that does not fit is truncated by descending
  ``cd_w`` (ties broken randomly by pymoo's ``randomized_argsort``, as in pymoo). Every survivor carries
  ``rank`` and (weighted) ``crowding``, which the mating selection and the model picking read.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.operators.survival.rank_and_crowding.metrics import FunctionalDiversity

__all__ = ["PAPER_WEIGHTS", "check_weights", "weighted_crowding_distance", "WeightedCrowding",
           "WeightedRankAndCrowding"]

# Paper section 4: accuracy 0.4, MAdds 0.4, parameters 0.2 (objective order: -acc, MAdds, -params).
PAPER_WEIGHTS = (0.4, 0.4, 0.2)


def check_weights(weights: Sequence[float], n_obj: int | None = None) -> np.ndarray:
    """Objective weights as an array; they must be non-negative, finite and sum to 1."""
    w = np.asarray(weights, dtype=float).ravel()
    if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"objective weights must be finite and non-negative, got {list(weights)}")
    if not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-9):
        raise ValueError(f"objective weights must sum to 1 (paper: acc 0.4, MAdds 0.4, params 0.2), "
                         f"got {list(weights)} summing to {w.sum():g}")
    if n_obj is not None and w.size != n_obj:
        raise ValueError(f"{w.size} objective weights given for {n_obj} objectives")
    return w


def weighted_crowding_distance(F: np.ndarray, weights: Sequence[float], **_) -> np.ndarray:
    """Weighted crowding distance of every point of one front ``F`` (n, M); see the module docstring."""
    F = np.asarray(F, dtype=float)
    n_points, n_obj = F.shape
    w = check_weights(weights, n_obj)
    # Relative weights: exactly 1.0 when the weights are equal, so the sums below are pymoo's own.
    rel = np.ones(n_obj) if np.all(w == w[0]) else w * n_obj

    # Same steps as pymoo's calc_crowding_distance, kept so that equal weights reproduce it bit for bit.
    order = np.argsort(F, axis=0, kind="mergesort")
    Fs = F[order, np.arange(n_obj)]
    dist = np.vstack([Fs, np.full(n_obj, np.inf)]) - np.vstack([np.full(n_obj, -np.inf), Fs])
    norm = np.max(Fs, axis=0) - np.min(Fs, axis=0)
    norm[norm == 0] = np.nan
    to_last, to_next = dist[:-1] / norm, np.copy(dist)[1:] / norm
    to_last[np.isnan(to_last)] = 0.0
    to_next[np.isnan(to_next)] = 0.0
    back = np.argsort(order, axis=0)
    gaps = to_last[back, np.arange(n_obj)] + to_next[back, np.arange(n_obj)]
    with np.errstate(invalid="ignore"):
        weighted = np.where(rel == 0, 0.0, gaps * rel)  # inf * 0 would be nan
    return np.sum(weighted, axis=1) / n_obj


class WeightedCrowding(FunctionalDiversity):
    """pymoo crowding metric object for ``weighted_crowding_distance`` (fronts of <= 2 points: inf)."""

    def __init__(self, weights: Sequence[float] = PAPER_WEIGHTS):
        self.weights = tuple(float(x) for x in check_weights(weights))
        super().__init__(self._distance, filter_out_duplicates=False)

    def _distance(self, F, **kwargs):
        return weighted_crowding_distance(F, self.weights)


class WeightedRankAndCrowding(RankAndCrowding):
    """NSGA-II survival with weighted crowding distance (pymoo ``RankAndCrowding`` with another metric).

    Constraint handling is pymoo's: feasible models first (ranked as above), then the least violating.
    """

    def __init__(self, weights: Sequence[float] = PAPER_WEIGHTS, nds=None):
        self.weights = tuple(float(x) for x in check_weights(weights))
        super().__init__(nds=nds, crowding_func=WeightedCrowding(self.weights))
