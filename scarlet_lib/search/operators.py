"""pymoo operators of the SCARLET search: sampling, front-share selection, PPO + roulette mutation.

Genes are integers ``0 .. n_choices[j] - 1`` (the problem maps them to choice indices). Crossover is
pymoo's own ``SinglePointCrossover``. How the paper's Table 2 names are read here (the paper does not
define them; the names come from the authors' MoreMNAS):

* ``mutation ratio`` 0.8: probability that an offspring is mutated at all (pymoo ``Mutation.prob``).
* ``p_rm`` 0.2, ``p_re`` 0.65, ``p_pr`` 0.15 (they sum to 1): a mutated offspring draws its new genes
  from one of three sources: *random mutation* (uniform over the other choices), *roulette-wheel
  exploration* (slot of a choice inversely proportional to how often it has been evaluated at that gene:
  rarely tried choices are favoured) or the *PPO reinforced controller* (exploitation).
  Which genes change: each gene with probability ``gene_prob`` (default 1/n_var, pymoo's default),
  at least one.
* ``p_M`` 0.7, ``p_K-M`` 0.3 (they sum to 1): of the K parents picked for mating, a share p_M comes from
  the first non-dominated front (M models) and p_K-M from the remaining K - M; within a group, binary
  tournament by constraint violation, rank, then weighted crowding distance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from pymoo.core.mutation import Mutation
from pymoo.core.sampling import Sampling
from pymoo.core.selection import Selection

from .survival import check_weights

__all__ = ["GeneSampling", "FrontShareSelection", "PPOController", "PPORouletteMutation", "weighted_rewards",
           "sample_categorical"]


def sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of a row-stochastic matrix, drawn with ``rng`` (inverse CDF)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(1), probs.shape[1] - 1)


class GeneSampling(Sampling):
    """Uniform genes; rows the problem reports infeasible (``problem.is_feasible(X)``) are redrawn.

    Redrawing keeps the initial population inside the constraint (a uniform 13-choice model often
    exceeds it), so no supernet evaluation is spent on models survival would discard.
    """

    def __init__(self, max_tries: int = 1000):
        super().__init__()
        self.max_tries = max_tries

    def _do(self, problem, n_samples, random_state=None, **kwargs):
        high = np.asarray(problem.xu, dtype=int) + 1
        X = random_state.integers(0, high, size=(n_samples, problem.n_var))
        feasible = getattr(problem, "is_feasible", None)
        if feasible is None:
            return X
        for _ in range(self.max_tries):
            bad = ~feasible(X)
            if not bad.any():
                return X
            X[bad] = random_state.integers(0, high, size=(int(bad.sum()), problem.n_var))
        raise RuntimeError(f"could not sample {n_samples} feasible models in {self.max_tries} rounds; "
                           "is the constraint satisfiable in this space?")


class FrontShareSelection(Selection):
    """Parents: a share ``p_front`` from the first front, the rest from the other models (see module doc)."""

    def __init__(self, p_front: float = 0.7, p_rest: float = 0.3):
        super().__init__()
        if min(p_front, p_rest) < 0 or not np.isclose(p_front + p_rest, 1.0):
            raise ValueError(f"p_M and p_K-M must be non-negative and sum to 1, got {p_front} and {p_rest}")
        self.p_front = p_front

    def _do(self, problem, pop, n_select, n_parents, random_state=None, **kwargs):
        n = len(pop)
        cv = np.array([ind.CV[0] for ind in pop], dtype=float)
        rank = np.array([np.inf if r is None else r for r in pop.get("rank")], dtype=float)
        crowd = np.array([-np.inf if c is None else c for c in pop.get("crowding")], dtype=float)
        front = np.flatnonzero((rank == 0) & (cv <= 0))
        rest = np.setdiff1d(np.arange(n), front)
        out = np.empty((n_select, n_parents), dtype=int)
        for k in range(n_select * n_parents):
            group = front if random_state.random() < self.p_front else rest
            if len(group) == 0:
                group = np.arange(n)
            a, b = group[random_state.integers(len(group), size=2)]
            out.flat[k] = self._tournament(a, b, cv, rank, crowd, random_state)
        return out

    @staticmethod
    def _tournament(a, b, cv, rank, crowd, rng):
        for key, smaller in ((cv, True), (rank, True), (crowd, False)):
            if key[a] != key[b]:
                return a if (key[a] < key[b]) == smaller else b
        return a if rng.random() < 0.5 else b


def weighted_rewards(F: np.ndarray, CV: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Scalar reward per model from the weighted objectives (all minimised), higher is better.

    Each objective is min-max normalised over the batch, the reward is ``-sum_m w_m f_m_norm`` in
    [-1, 0] for feasible models; infeasible ones get ``-1 - CV / max CV`` (below every feasible one).
    """
    F = np.asarray(F, dtype=float)
    w = check_weights(weights, F.shape[1])
    cv = np.asarray(CV, dtype=float).reshape(len(F))
    feasible = cv <= 0
    r = np.empty(len(F))
    if feasible.any():
        Ff = F[feasible]
        span = Ff.max(0) - Ff.min(0)
        span[span == 0] = 1.0
        r[feasible] = -(((Ff - Ff.min(0)) / span) @ w)
    if (~feasible).any():
        r[~feasible] = -1.0 - cv[~feasible] / cv[~feasible].max()
    return r


@dataclass
class PPOStats:
    loss: float
    entropy: float
    kl: float
    clip_fraction: float


class PPOController:
    """A policy of independent categorical distributions, one per gene (learnable logits), trained by PPO.

    ``update(X, rewards)`` takes evaluated models as actions (each gene is one categorical action) and
    runs ``epochs`` Adam steps on PPO's clipped surrogate ``-E[min(rho A, clip(rho, 1-eps, 1+eps) A)]``
    minus an entropy bonus, with ``rho = pi(x) / pi_old(x)`` (``pi_old`` the policy before this update)
    and ``A`` the batch-standardised rewards. The models come from the genetic operators, not only from
    the policy, so this is PPO used off-policy: the clip keeps each update close to the old policy.
    Runs on the CPU (it is tiny), independent of the device the evaluator uses.
    """

    def __init__(self, n_choices: Sequence[int], lr: float = 0.05, clip: float = 0.2, epochs: int = 4,
                 entropy_coef: float = 0.01):
        self.n_choices = np.asarray(n_choices, dtype=int)
        if self.n_choices.ndim != 1 or np.any(self.n_choices < 1):
            raise ValueError(f"n_choices must be a list of positive counts, got {list(n_choices)}")
        self.clip, self.epochs, self.entropy_coef = clip, epochs, entropy_coef
        width = int(self.n_choices.max())
        self.mask = torch.arange(width)[None, :] < torch.as_tensor(self.n_choices)[:, None]
        self.logits = torch.zeros(len(self.n_choices), width, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.logits], lr=lr)

    def _log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.logits.masked_fill(~self.mask, float("-inf")), dim=1)

    def probs(self) -> np.ndarray:
        """(n_var, max_choices) probabilities (0 outside each gene's range)."""
        with torch.no_grad():
            return self._log_probs().exp().numpy().astype(float)

    def log_prob(self, X) -> torch.Tensor:
        X = torch.as_tensor(np.asarray(X), dtype=torch.long)
        return self._log_probs().gather(1, X.T).sum(0)  # sum over genes: (n,)

    def entropy(self) -> torch.Tensor:
        lp = self._log_probs()
        return -(lp.exp() * lp.masked_fill(~self.mask, 0.0)).sum()

    def update(self, X, rewards) -> PPOStats | None:
        r = torch.as_tensor(np.asarray(rewards, dtype=float), dtype=torch.float32)
        if len(r) < 2 or r.std() == 0:
            return None  # no ranking signal
        adv = (r - r.mean()) / (r.std() + 1e-8)
        with torch.no_grad():
            old = self.log_prob(X)
            old_table = self._log_probs()
        for _ in range(self.epochs):
            ratio = (self.log_prob(X) - old).exp()
            surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - self.clip, 1 + self.clip) * adv)
            entropy = self.entropy()
            loss = -surrogate.mean() - self.entropy_coef * entropy
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            ratio = (self.log_prob(X) - old).exp()
            new_table = self._log_probs()
            kl = (old_table.exp() * (old_table - new_table).masked_fill(~self.mask, 0.0)).sum()  # exact KL(old||new)
            return PPOStats(float(loss), float(self.entropy()), float(kl),
                            float(((ratio - 1).abs() > self.clip).float().mean()))

    def state_dict(self) -> dict:
        return {"logits": self.logits.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["logits"].shape) != tuple(self.logits.shape):
            raise ValueError(f"PPO state has logits {tuple(state['logits'].shape)}, this controller "
                             f"{tuple(self.logits.shape)}")
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.optimizer.load_state_dict(state["optimizer"])


class PPORouletteMutation(Mutation):
    """Mutation mixing random, roulette-wheel (exploration) and PPO (exploitation) gene sources.

    ``observe(X, F, CV)`` must be called with every evaluated batch: it updates the roulette counts and
    trains the PPO controller on ``weighted_rewards``. ``WeightedNSGA2`` does so after each survival.
    """

    SOURCES = ("random", "roulette", "ppo")

    def __init__(self, n_choices: Sequence[int], weights: Sequence[float], p_random: float = 0.2,
                 p_roulette: float = 0.65, p_ppo: float = 0.15, mutation_ratio: float = 0.8,
                 gene_prob: float | None = None, controller: PPOController | None = None):
        super().__init__(prob=mutation_ratio)
        p = np.array([p_random, p_roulette, p_ppo], dtype=float)
        if np.any(p < 0) or not np.isclose(p.sum(), 1.0):
            raise ValueError(f"p_rm, p_re and p_pr must be non-negative and sum to 1, got {p.tolist()}")
        if gene_prob is not None and not 0 < gene_prob <= 1:
            raise ValueError(f"gene_prob must be in (0, 1], got {gene_prob}")
        self.source_probs = p
        self.n_choices = np.asarray(n_choices, dtype=int)
        self.weights = tuple(check_weights(weights))
        self.gene_prob = gene_prob
        self.controller = controller or PPOController(self.n_choices)
        width = int(self.n_choices.max())
        self.valid = np.arange(width)[None, :] < self.n_choices[:, None]
        self.counts = np.zeros((len(self.n_choices), width), dtype=np.int64)
        self.last_stats: PPOStats | None = None

    # -- learning from evaluated models ------------------------------------------------------------
    def observe(self, X, F, CV) -> None:
        X = np.asarray(X, dtype=int)
        np.add.at(self.counts, (np.broadcast_to(np.arange(X.shape[1]), X.shape), X), 1)
        self.last_stats = self.controller.update(X, weighted_rewards(F, CV, self.weights))

    def roulette_probs(self) -> np.ndarray:
        slots = np.where(self.valid, 1.0 / (1.0 + self.counts), 0.0)
        return slots / slots.sum(1, keepdims=True)

    # -- pymoo hook ----------------------------------------------------------------------------------
    def _do(self, problem, X, random_state=None, **kwargs):
        X = np.asarray(X).astype(int, copy=True)
        n, n_var = X.shape
        if n == 0:
            return X
        gene_prob = self.gene_prob if self.gene_prob is not None else 1.0 / n_var
        change = random_state.random((n, n_var)) < gene_prob
        none = ~change.any(1)
        change[none, random_state.integers(n_var, size=int(none.sum()))] = True
        source = sample_categorical(np.broadcast_to(self.source_probs, (n, 3)), random_state)
        tables = {0: np.where(self.valid, 1.0, 0.0), 1: self.roulette_probs(), 2: self.controller.probs()}
        rows, genes = np.nonzero(change)
        probs = np.stack([tables[s][g] for s, g in zip(source[rows], genes)]) if len(rows) else None
        if len(rows):
            # random and roulette move away from the current choice; PPO may keep it (exploitation)
            moving = source[rows] != 2
            probs[moving, X[rows[moving], genes[moving]]] = 0.0
            stuck = probs.sum(1) == 0  # a gene with a single choice
            probs[stuck, X[rows[stuck], genes[stuck]]] = 1.0
            X[rows, genes] = sample_categorical(probs / probs.sum(1, keepdims=True), random_state)
        return X

    def state_dict(self) -> dict:
        return {"controller": self.controller.state_dict(), "counts": torch.as_tensor(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        counts = state["counts"].numpy()
        if counts.shape != self.counts.shape:
            raise ValueError(f"roulette counts of shape {counts.shape}, expected {self.counts.shape}")
        self.counts = counts.astype(np.int64).copy()
