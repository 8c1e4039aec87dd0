"""The SCARLET weighted NSGA-II search: problem, algorithm, picking, checkpoints, ``run_search``.

Everything runs inside pymoo: ``ArchitectureProblem`` (a pymoo ``Problem``), ``WeightedNSGA2`` (pymoo's
``NSGA2`` wired with this paper's survival, selection and mutation, plus pymoo's single-point crossover),
driven generation by generation with pymoo's ``setup``/``has_next``/``next`` so that each generation can
be checkpointed.

Objectives (minimised): ``-accuracy``, ``MAdds`` (millions), ``-params`` (millions). Constraint:
``MAdds <= limit`` (pymoo's ``G <= 0``). MAdds and params are those of the stand-alone model
(``identity_mode="identity"``: an identity slot is a parameter-free ``Shortcut``, the LET is dropped) from
``costs.cost_table``, by default at the deployed model's setting (``costs.DEPLOYMENT``: 224x224, width
1.0, 1000 classes), where the paper and its Table 3 count them and its 500M limit applies as is. Other
settings can be given (e.g. a proxy supernet's); the limit is then scaled by the ratio of SCARLET-A's
MAdds under both settings (``scaled_madds_limit``), but such a costing ranks the layers differently
(channel rounding, resolution; see ``costs``), so it is not the paper's search.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.crossover.pntx import SinglePointCrossover
from tqdm.auto import tqdm

from ..costs import cost_table
from ..models import CheckpointError, SCARLET_A, read_torch_file
from ..space import Architecture, NUM_LAYERS, SPACE_SE, SearchSpace
from .costs import DEPLOYMENT
from .operators import FrontShareSelection, GeneSampling, PPOController, PPORouletteMutation
from .survival import PAPER_WEIGHTS, WeightedRankAndCrowding, check_weights, weighted_crowding_distance

__all__ = ["SearchConfig", "ArchitectureProblem", "WeightedNSGA2", "SearchResult", "run_search",
           "scaled_madds_limit", "pick_models", "check_accuracies", "OBJECTIVES", "CHECKPOINT_NAME"]

OBJECTIVES = ("neg_accuracy", "madds_m", "neg_params_m")
CHECKPOINT_NAME = "search_state.pt"
PAPER_MADDS_LIMIT = 500e6


@dataclass(frozen=True)
class SearchConfig:
    """Search settings; defaults are the paper's (Table 2, section 4). See ``operators`` for the
    reading of p_rm / p_re / p_pr / p_M / p_K-M.

    ``input_size``, ``width_mult``, ``small_input``, ``num_classes`` say what MAdds and params count:
    by default the deployed model (``costs.DEPLOYMENT``), as the paper; not the supernet's proxy setting,
    whose relative layer costs differ. ``madds_limit`` is an absolute limit; ``None`` scales
    ``madds_limit_224`` to these settings with ``scaled_madds_limit`` (500M as is at the default).
    """

    population: int = 70
    generations: int = 120
    weights: tuple[float, ...] = PAPER_WEIGHTS
    mutation_ratio: float = 0.8
    p_rm: float = 0.2
    p_re: float = 0.65
    p_pr: float = 0.15
    p_M: float = 0.7
    p_K_M: float = 0.3
    gene_prob: float | None = None  # None: 1 / 19 (pymoo's default per-variable rate)
    crossover_prob: float = 0.9  # not given in the paper: pymoo's default
    ppo_lr: float = 0.05
    ppo_clip: float = 0.2
    ppo_epochs: int = 4
    ppo_entropy: float = 0.01
    n_picked: int = 4
    input_size: int = DEPLOYMENT["input_size"]
    width_mult: float = DEPLOYMENT["width_mult"]
    small_input: bool = DEPLOYMENT["small_input"]
    num_classes: int = DEPLOYMENT["num_classes"]
    madds_limit_224: float = PAPER_MADDS_LIMIT
    madds_limit: float | None = None
    evaluate_infeasible: bool = False  # infeasible models are not sent to the evaluator (accuracy NaN)

    def __post_init__(self):
        if self.population < 2 or self.generations < 1:
            raise ValueError(f"population must be >= 2 and generations >= 1, got {self.population}, "
                             f"{self.generations}")
        check_weights(self.weights, len(OBJECTIVES))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        for name in ("mutation_ratio", "crossover_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not math.isclose(self.p_rm + self.p_re + self.p_pr, 1.0, abs_tol=1e-9):
            raise ValueError(f"p_rm + p_re + p_pr must be 1, got {self.p_rm} + {self.p_re} + {self.p_pr}")
        if not math.isclose(self.p_M + self.p_K_M, 1.0, abs_tol=1e-9):
            raise ValueError(f"p_M + p_K-M must be 1, got {self.p_M} + {self.p_K_M}")

    def cost_options(self) -> dict:
        return dict(input_size=self.input_size, width_mult=self.width_mult, small_input=self.small_input,
                    num_classes=self.num_classes)


def scaled_madds_limit(limit_224: float = PAPER_MADDS_LIMIT, input_size: int = 224, width_mult: float = 1.0,
                       small_input: bool = False, num_classes: int = 1000, reference=None) -> float:
    """``limit_224`` (for 224x224, width 1.0, 1000 classes) scaled to other model settings.

    Scaled by ``madds(reference | settings) / madds(reference | 224, 1.0, 1000)`` with SCARLET-A as the
    default reference. (Builds two ``cost_table``s, which takes a while the first time.)
    """

    ref = Architecture.coerce(reference) if reference is not None else SCARLET_A
    base = cost_table(224, width_mult=1.0, small_input=False, num_classes=1000).madds(ref)
    here = cost_table(input_size, width_mult=width_mult, small_input=small_input, num_classes=num_classes).madds(ref)
    return float(limit_224) * here / base


def _evaluator_name(evaluator) -> str:
    return getattr(evaluator, "name", type(evaluator).__name__)


def check_accuracies(evaluator, archs: Sequence[Architecture], values) -> np.ndarray:
    """What ``evaluator.evaluate(archs)`` returned, as floats, if it is one finite accuracy in [0, 1] per model.

    Anything else (too few or too many values, non-numbers, NaN, infinity, a percentage) is a ``ValueError``
    naming the evaluator and the bad values, instead of being scored (a missing or NaN value would rank as
    accuracy 0, a 5.0 above every real model).
    """
    name = _evaluator_name(evaluator)
    try:
        acc = np.asarray(values, dtype=float)
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"evaluator {name!r} returned {type(values).__name__} that is not a list of numbers "
                         f"({e}); evaluate(archs) must return one accuracy in [0, 1] per architecture") from e
    if acc.shape != (len(archs),):
        raise ValueError(f"evaluator {name!r} returned {acc.size} value(s) of shape {acc.shape} for {len(archs)} "
                         f"architectures; evaluate(archs) must return one accuracy in [0, 1] per architecture")
    bad = np.flatnonzero(~(np.isfinite(acc) & (acc >= 0) & (acc <= 1)))
    if len(bad):
        shown = ", ".join(f"{archs[i]}: {float(acc[i])!r}" for i in bad[:5]) + (f", ... ({len(bad)} in all)" if len(bad) > 5
                                                                          else "")
        raise ValueError(f"evaluator {name!r} returned {len(bad)} accuracy(ies) that are not finite fractions in "
                         f"[0, 1]: {shown}; accuracies are top-1 fractions (not percentages), one per architecture")
    return acc


class ArchitectureProblem(Problem):
    """The search as a pymoo problem over 19 integer genes (gene j = position in ``space.allowed(j)``).

    Evaluations are memoised by architecture (a model seen before is not re-evaluated) and every model
    the algorithm asks for is recorded in ``records`` (one tidy row per request; ``cached`` says whether
    the accuracy came from the memo).
    """

    def __init__(self, evaluator, costs, madds_limit: float, space: SearchSpace = SPACE_SE,
                 evaluate_infeasible: bool = False):
        self.evaluator, self.costs, self.space = evaluator, costs, space
        self.madds_limit = float(madds_limit)
        self.evaluate_infeasible = evaluate_infeasible
        self.allowed = [np.asarray(space.allowed(i), dtype=int) for i in range(NUM_LAYERS)]
        width = max(len(a) for a in self.allowed)
        self._gene_to_choice = np.array([np.pad(a, (0, width - len(a)), constant_values=-1) for a in self.allowed])
        self.records: list[dict] = []
        self.memo: dict[tuple[int, ...], float] = {}
        super().__init__(n_var=NUM_LAYERS, n_obj=len(OBJECTIVES), n_ieq_constr=1, xl=0,
                         xu=np.array([len(a) - 1 for a in self.allowed]), vtype=int,
                         requires_kwargs=True)  # so that _evaluate sees the algorithm (generation)

    @property
    def n_choices(self) -> list[int]:
        return [len(a) for a in self.allowed]

    def choices(self, X) -> np.ndarray:
        """(n, 19) choice indices of genes ``X``."""
        X = np.asarray(X).astype(int)
        return self._gene_to_choice[np.arange(NUM_LAYERS), X]

    def genes(self, archs) -> np.ndarray:
        """Inverse of ``choices`` (validates the architectures against the space)."""
        archs = [self.space.check(a) for a in archs]
        return np.array([[int(np.flatnonzero(self.allowed[j] == c)[0]) for j, c in enumerate(a)] for a in archs])

    def is_feasible(self, X) -> np.ndarray:
        return self.costs.madds_many(self.choices(X)) <= self.madds_limit

    def _evaluate(self, X, out, *args, algorithm=None, **kwargs):
        generation = int(algorithm.n_iter) if algorithm is not None else 0
        C = self.choices(X)
        madds = self.costs.madds_many(C).astype(float)
        params = self.costs.params_many(C).astype(float)
        feasible = madds <= self.madds_limit
        keys = [tuple(int(c) for c in row) for row in C]
        wanted = [k for k, ok in zip(keys, feasible) if (ok or self.evaluate_infeasible)]
        new = list(dict.fromkeys(k for k in wanted if k not in self.memo))
        seconds = 0.0
        if new:
            start = time.perf_counter()
            archs = [Architecture(k) for k in new]
            acc = check_accuracies(self.evaluator, archs, self.evaluator.evaluate(archs))
            seconds = (time.perf_counter() - start) / len(new)
            self.memo.update(zip(new, acc.tolist()))
        fresh = set(new)
        accuracy = np.array([self.memo.get(k, np.nan) if (ok or self.evaluate_infeasible) else np.nan
                             for k, ok in zip(keys, feasible)])
        # An infeasible model that was not evaluated scores accuracy 0 in F; survival ranks it by its
        # constraint violation alone, so that value never decides anything.
        F = np.column_stack([-np.nan_to_num(accuracy, nan=0.0), madds / 1e6, -params / 1e6])
        out["F"] = F
        out["G"] = ((madds - self.madds_limit) / 1e6)[:, None]
        for k, c_row, f, m, p, a, ok in zip(keys, X, F, madds, params, accuracy, feasible):
            evaluated = ok or self.evaluate_infeasible
            self.records.append({
                "generation": generation, "arch": str(Architecture(k)), "choices": ",".join(map(str, k)),
                "genes": ",".join(str(int(g)) for g in c_row), "accuracy": float(a), "madds": float(m),
                "params": float(p), "neg_accuracy": float(f[0]), "madds_m": float(f[1]),
                "neg_params_m": float(f[2]), "feasible": bool(ok), "madds_limit": self.madds_limit,
                "evaluator": _evaluator_name(self.evaluator) if evaluated
                else "skipped-infeasible",
                "cached": bool(evaluated and k not in fresh), "eval_seconds": seconds if k in fresh else 0.0,
            })


class WeightedNSGA2(NSGA2):
    """pymoo NSGA-II with the paper's parts: weighted survival, p_M front-share selection, single-point
    crossover, PPO + roulette mutation. After each survival the evaluated offspring are fed to the
    mutation (roulette counts, PPO update). Works on any pymoo problem with integer genes ``0..xu``.
    """

    def __init__(self, config: SearchConfig, n_choices: Sequence[int], weights: Sequence[float] | None = None,
                 **kwargs):
        weights = tuple(config.weights if weights is None else weights)
        controller = PPOController(n_choices, lr=config.ppo_lr, clip=config.ppo_clip, epochs=config.ppo_epochs,
                                   entropy_coef=config.ppo_entropy)
        mutation = PPORouletteMutation(n_choices, weights, p_random=config.p_rm, p_roulette=config.p_re,
                                       p_ppo=config.p_pr, mutation_ratio=config.mutation_ratio,
                                       gene_prob=config.gene_prob, controller=controller)
        kwargs.setdefault("sampling", GeneSampling())
        super().__init__(pop_size=config.population, selection=FrontShareSelection(config.p_M, config.p_K_M),
                         crossover=SinglePointCrossover(prob=config.crossover_prob), mutation=mutation,
                         survival=WeightedRankAndCrowding(weights), eliminate_duplicates=True, **kwargs)

    @property
    def ppo_mutation(self) -> PPORouletteMutation:
        return self.mating.mutation

    def _learn(self, infills):
        if infills is not None and len(infills):
            self.ppo_mutation.observe(infills.get("X"), infills.get("F"), infills.get("CV"))

    def _initialize_advance(self, infills=None, **kwargs):
        super()._initialize_advance(infills=infills, **kwargs)
        self._learn(infills)

    def _advance(self, infills=None, **kwargs):
        ret = super()._advance(infills=infills, **kwargs)
        self._learn(infills)
        return ret


def pick_models(F: np.ndarray, k: int = 4, weights: Sequence[float] = PAPER_WEIGHTS, sort_by: int = 1) -> np.ndarray:
    """Indices of ``k`` points of a front at about equal (weighted crowding) distance from each other.

    The front is ordered by objective ``sort_by`` (MAdds); the distance between neighbours is the
    weighted, range-normalised L1 gap ``sum_m w_m |df_m| / range_m`` (the quantity the weighted crowding
    distance adds up). Picks are the points nearest to ``k`` equally spaced positions along the
    cumulative distance, both extremes included, so consecutive picks are about equally far apart.
    """
    F = np.asarray(F, dtype=float)
    if len(F) <= k:
        return np.arange(len(F))
    w = check_weights(weights, F.shape[1])
    order = np.argsort(F[:, sort_by], kind="mergesort")
    Fs = F[order]
    span = Fs.max(0) - Fs.min(0)
    span[span == 0] = 1.0
    position = np.concatenate([[0.0], np.cumsum((np.abs(np.diff(Fs, axis=0)) / span) @ w)])
    chosen: list[int] = []
    for target in np.linspace(0.0, position[-1], k):
        for j in np.argsort(np.abs(position - target), kind="mergesort"):
            if j not in chosen:
                chosen.append(int(j))
                break
    return order[np.sort(chosen)]


@dataclass
class SearchResult:
    """``table``: every evaluated model (tidy); ``front``: final feasible first front; ``picked``: the
    ``n_picked`` models of ``pick_models``; ``history``: one row per generation."""

    table: pd.DataFrame
    front: pd.DataFrame
    picked: pd.DataFrame
    history: pd.DataFrame
    config: SearchConfig = field(default_factory=SearchConfig)


# -- checkpoints ---------------------------------------------------------------------------------------
def _config_dict(config: SearchConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}


def _save_state(path, algorithm: WeightedNSGA2, problem: ArchitectureProblem, history: list[dict],
                config: SearchConfig, seed: int) -> None:
    pop = algorithm.pop
    nan_if_none = lambda values: torch.tensor([np.nan if v is None else float(v) for v in values], dtype=torch.float64)
    state = {
        "format": 1, "config": _config_dict(config), "seed": int(seed), "generation": int(algorithm.n_iter - 1),
        "n_eval": int(algorithm.evaluator.n_eval),
        "pop": {"X": torch.as_tensor(pop.get("X").astype(np.int64)), "F": torch.as_tensor(pop.get("F")),
                "G": torch.as_tensor(pop.get("G")), "rank": nan_if_none(pop.get("rank")),
                "crowding": nan_if_none(pop.get("crowding"))},
        "rng": algorithm.random_state.bit_generator.state,
        "mutation": algorithm.ppo_mutation.state_dict(),
        "records": {k: [r[k] for r in problem.records] for k in (problem.records[0] if problem.records else {})},
        "history": {k: [h[k] for h in history] for k in (history[0] if history else {})},
    }
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a broken checkpoint


_STATE_KEYS = ("format", "config", "seed", "generation", "n_eval", "pop", "rng", "mutation", "records", "history")


def _load_state(path, algorithm: WeightedNSGA2, problem: ArchitectureProblem, config: SearchConfig,
                seed: int) -> list[dict]:
    remedy = f"delete {os.fspath(path)!r} to run the search again from its first generation"
    state = read_torch_file(path, "search checkpoint", remedy, keys=_STATE_KEYS)
    # Only the number of generations may change between runs (extending a finished search).
    same = lambda d: {k: v for k, v in d.items() if k != "generations"}
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"search checkpoint {os.fspath(path)!r} holds no config; {remedy}")
    if same(state["config"]) != same(_config_dict(config)) or state["seed"] != int(seed):
        raise ValueError(f"checkpoint {path!r} was written by another search (config or seed differ); "
                         "use a new checkpoint_dir, or the same config (generations may grow) and seed")
    try:
        return _restore_state(state, algorithm, problem)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
        raise CheckpointError(f"search checkpoint {os.fspath(path)!r} does not fit this search "
                              f"({type(e).__name__}: {e}); {remedy}") from e


def _restore_state(state: dict, algorithm: WeightedNSGA2, problem: ArchitectureProblem) -> list[dict]:
    p = state["pop"]
    none_if_nan = lambda t: [None if math.isnan(v) else v for v in t.tolist()]
    pop = Population.new("X", p["X"].numpy(), "F", p["F"].numpy(), "G", p["G"].numpy())
    pop.set("rank", none_if_nan(p["rank"]))
    pop.set("crowding", none_if_nan(p["crowding"]))
    pop.apply(lambda ind: ind.evaluated.update({"F", "G", "H"}))
    generation = state["generation"]
    algorithm.pop, algorithm.off, algorithm.is_initialized = pop, None, True
    algorithm.start_time = time.time()
    algorithm.evaluator.n_eval = state["n_eval"]
    algorithm.random_state.bit_generator.state = state["rng"]
    algorithm.ppo_mutation.load_state_dict(state["mutation"])
    algorithm.n_iter = generation
    algorithm._set_optimum()
    algorithm.termination.update(algorithm)
    algorithm.n_iter = generation + 1
    rec = state["records"]
    problem.records = [dict(zip(rec, row)) for row in zip(*rec.values())] if rec else []
    problem.memo = {tuple(int(c) for c in r["choices"].split(",")): r["accuracy"] for r in problem.records
                    if r["evaluator"] != "skipped-infeasible"}
    hist = state["history"]
    return [dict(zip(hist, row)) for row in zip(*hist.values())] if hist else []


# -- the entry point -----------------------------------------------------------------------------------
def _generation_summary(algorithm: WeightedNSGA2, problem: ArchitectureProblem, seconds: float) -> dict:
    pop = algorithm.pop
    gen = int(algorithm.n_iter - 1)
    F, cv = pop.get("F"), pop.get("CV")[:, 0]
    feas = cv <= 0
    rank = np.array([np.inf if r is None else r for r in pop.get("rank")])
    new = [r for r in problem.records if r["generation"] == gen]
    stats = algorithm.ppo_mutation.last_stats
    return {"generation": gen, "evaluated": len(new), "evaluated_fresh": sum(not r["cached"] for r in new),
            "feasible_offspring": sum(r["feasible"] for r in new), "population_feasible": int(feas.sum()),
            "front_size": int(((rank == 0) & feas).sum()),
            "best_accuracy": float(-F[feas, 0].min()) if feas.any() else np.nan,
            "mean_accuracy": float(-F[feas, 0].mean()) if feas.any() else np.nan,
            "min_madds_m": float(F[feas, 1].min()) if feas.any() else np.nan,
            "ppo_entropy": stats.entropy if stats else np.nan, "ppo_kl": stats.kl if stats else np.nan,
            "seconds": seconds}


def _front_table(algorithm: WeightedNSGA2, problem: ArchitectureProblem, weights) -> pd.DataFrame:
    pop = algorithm.pop
    X, F, cv = pop.get("X").astype(int), pop.get("F"), pop.get("CV")[:, 0]
    rank = np.array([np.inf if r is None else r for r in pop.get("rank")])
    keep = np.flatnonzero((rank == 0) & (cv <= 0))
    C = problem.choices(X[keep])
    crowd = weighted_crowding_distance(F[keep], weights) if len(keep) > 2 else np.full(len(keep), np.inf)
    return pd.DataFrame({
        "arch": [str(Architecture(c)) for c in C], "choices": [",".join(map(str, c)) for c in C],
        "accuracy": -F[keep, 0], "madds": problem.costs.madds_many(C).astype(float),
        "params": problem.costs.params_many(C).astype(float), "feasible": True,
        "weighted_crowding": crowd}).sort_values("madds", kind="mergesort").reset_index(drop=True)


def run_search(evaluator, config: SearchConfig = SearchConfig(), seed: int = 0, checkpoint_dir=None,
               progress: bool = True, space: SearchSpace = SPACE_SE, costs=None) -> SearchResult:
    """Run the weighted NSGA-II search; resume from ``checkpoint_dir`` if it holds a checkpoint.

    Args:
        evaluator: object with ``evaluate(archs) -> accuracies`` (``SupernetEvaluator``, ``CheapEvaluator``).
        config: ``SearchConfig`` (paper defaults).
        seed: seed of every random choice of the search (pymoo's generator; the PPO update is deterministic).
        checkpoint_dir: if given, the state is saved there after every generation (``search_state.pt``,
            loadable with ``weights_only=True``) and a run with the same config and seed resumes from it,
            reaching the same result as an uninterrupted run.
        progress: tqdm progress bar over generations.
        space: search space (``SPACE_SE`` 13 choices, ``SPACE_NO_SE`` 7).
        costs: a ``costs.CostTable`` to count MAdds/params with (default: ``cost_table`` of the config).
    """
    if costs is None:
        costs = cost_table(config.input_size, width_mult=config.width_mult, small_input=config.small_input,
                           num_classes=config.num_classes)
    limit = config.madds_limit if config.madds_limit is not None else scaled_madds_limit(
        config.madds_limit_224, **config.cost_options())
    problem = ArchitectureProblem(evaluator, costs, limit, space, config.evaluate_infeasible)
    algorithm = WeightedNSGA2(config, problem.n_choices)
    algorithm.setup(problem, termination=("n_gen", config.generations), seed=seed, verbose=False)

    history: list[dict] = []
    path = os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_NAME) if checkpoint_dir is not None else None
    if path is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        if os.path.exists(path):
            history = _load_state(path, algorithm, problem, config, seed)
    with tqdm(total=config.generations, initial=len(history), desc="search", unit="gen",
              disable=not progress) as bar:
        while algorithm.has_next():
            start = time.perf_counter()
            algorithm.next()
            history.append(_generation_summary(algorithm, problem, time.perf_counter() - start))
            if path is not None:
                _save_state(path, algorithm, problem, history, config, seed)
            bar.update(1)
            bar.set_postfix(best=f"{history[-1]['best_accuracy']:.3f}", front=history[-1]["front_size"])

    front = _front_table(algorithm, problem, config.weights)
    F = front[["accuracy", "madds", "params"]].to_numpy() * np.array([-1.0, 1e-6, -1e-6])
    picked = front.iloc[pick_models(F, config.n_picked, config.weights)].reset_index(drop=True)
    return SearchResult(pd.DataFrame.from_records(problem.records), front, picked, pd.DataFrame(history), config)
