"""Weighted NSGA-II architecture search of SCARLET-NAS, built from pymoo components.

* ``survival``: weighted crowding distance and the survival using it (definition in its docstring).
* ``operators``: sampling, front-share parent selection, PPO controller, PPO + roulette mutation.
* ``evaluators``: ``SupernetEvaluator`` (shared-prefix population evaluation) and ``CheapEvaluator``.
* ``core``: the pymoo problem and algorithm, model picking, checkpoints and ``run_search``.
"""
from .core import (  # noqa: F401
    CHECKPOINT_NAME, OBJECTIVES, ArchitectureProblem, SearchConfig, SearchResult, WeightedNSGA2, pick_models,
    run_search, scaled_madds_limit,
)
from .evaluators import CheapEvaluator, SupernetEvaluator  # noqa: F401
from .operators import (  # noqa: F401
    FrontShareSelection, GeneSampling, PPOController, PPORouletteMutation, weighted_rewards,
)
from .survival import (  # noqa: F401
    PAPER_WEIGHTS, WeightedCrowding, WeightedRankAndCrowding, check_weights, weighted_crowding_distance,
)

__all__ = ["run_search", "SearchConfig", "SearchResult", "ArchitectureProblem", "WeightedNSGA2", "pick_models",
           "scaled_madds_limit", "OBJECTIVES", "CHECKPOINT_NAME", "CheapEvaluator", "SupernetEvaluator",
           "FrontShareSelection", "GeneSampling", "PPOController", "PPORouletteMutation", "weighted_rewards",
           "PAPER_WEIGHTS", "WeightedCrowding", "WeightedRankAndCrowding", "check_weights",
           "weighted_crowding_distance"]
