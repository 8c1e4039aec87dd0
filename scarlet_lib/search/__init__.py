"""Weighted NSGA-II architecture search of SCARLET-NAS, built from pymoo components.

* ``survival``: weighted crowding distance and the survival using it (definition in its docstring).
* ``operators``: sampling, front-share parent selection, PPO controller, PPO + roulette mutation.
* ``evaluators``: ``SupernetEvaluator`` (shared-prefix population evaluation), ``CheapEvaluator`` and
  ``MemoEvaluator`` (evaluations shared between searches).
* ``costs``: the deployment setting the search counts at (``DEPLOYMENT``) and tables of how identity
  choices enter the costs and the accuracy (``identity_savings``, ``identity_by_layer``, ``identity_layer_table``,
  ``identity_effect``, ``compare_with_published``, ``identity_layers_figure``).
* ``core``: the pymoo problem and algorithm, model picking, checkpoints and ``run_search``.
"""
from .core import (  # noqa: F401
    CHECKPOINT_NAME, OBJECTIVES, ArchitectureProblem, SearchConfig, SearchResult, WeightedNSGA2, pick_models,
    run_search, scaled_madds_limit,
)
from .costs import (  # noqa: F401
    DEPLOYMENT, compare_with_published, identity_by_layer, identity_effect, identity_layer_table, identity_layers_figure,
    identity_savings,
)
from .evaluators import CheapEvaluator, MemoEvaluator, SupernetEvaluator  # noqa: F401
from .operators import (  # noqa: F401
    FrontShareSelection, GeneSampling, PPOController, PPORouletteMutation, weighted_rewards,
)
from .survival import (  # noqa: F401
    PAPER_WEIGHTS, WeightedCrowding, WeightedRankAndCrowding, check_weights, weighted_crowding_distance,
)

__all__ = ["run_search", "SearchConfig", "SearchResult", "ArchitectureProblem", "WeightedNSGA2", "pick_models",
           "scaled_madds_limit", "OBJECTIVES", "CHECKPOINT_NAME", "CheapEvaluator", "SupernetEvaluator", "MemoEvaluator",
           "DEPLOYMENT", "identity_savings", "identity_by_layer", "identity_layer_table", "identity_effect",
           "compare_with_published",
           "identity_layers_figure",
           "FrontShareSelection", "GeneSampling", "PPOController", "PPORouletteMutation", "weighted_rewards",
           "PAPER_WEIGHTS", "WeightedCrowding", "WeightedRankAndCrowding", "check_weights",
           "weighted_crowding_distance"]
