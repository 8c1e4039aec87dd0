"""Tests of the weighted NSGA-II search (scarlet_lib.search): survival vs pymoo, convergence on problems
with known fronts, PPO vs random mutation, constraint, checkpoint/resume, shared-prefix evaluation."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.callback import Callback
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.indicators.hv import HV
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.optimize import minimize
from pymoo.problems import get_problem

from scarlet_lib.evaluation import evaluate_path, recalibrate_bn
from scarlet_lib.costs import CostTable
from scarlet_lib.space import CHOICES, NUM_LAYERS, SPACE_NO_SE, SPACE_SE, Architecture
from scarlet_lib.search import (
    CHECKPOINT_NAME, ArchitectureProblem, CheapEvaluator, SearchConfig, SupernetEvaluator, WeightedNSGA2,
    WeightedRankAndCrowding, pick_models, run_search, weighted_crowding_distance, weighted_rewards,
)
from scarlet_lib.supernet import Supernet


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_costs() -> CostTable:
    """A made-up cost table (not the paper's counts: those take a minute to build) with the same shape:
    cost grows with expansion, kernel and SE, identity is free; uniform models span ~380M-540M MAdds."""
    size = np.array([0 if c.is_identity else c.expansion * c.kernel ** 0.5 * (1.1 if c.se else 1) for c in CHOICES])
    scale = np.linspace(2.0, 1.0, NUM_LAYERS)[:, None]
    return CostTable(50_000_000, 2_000_000, (scale * size * 1.5e6).astype(np.int64),
                     (scale[::-1] * size * 2e4).astype(np.int64))


# -- weighted survival ------------------------------------------------------------------------------
class _Plain(Problem):
    def __init__(self, n_obj):
        super().__init__(n_var=1, n_obj=n_obj, xl=0, xu=1)


@pytest.mark.parametrize("n_obj", [2, 3])
def test_equal_weights_order_populations_exactly_as_pymoo(n_obj):
    rng = np.random.default_rng(n_obj)
    for trial in range(40):
        n = int(rng.integers(10, 80))
        # half the trials on a coarse integer grid: many ties, as MAdds / params produce
        F = rng.integers(0, 6, (n, n_obj)).astype(float) if trial % 2 else rng.random((n, n_obj))
        n_survive = int(rng.integers(2, n))
        out = []
        for survival in (RankAndCrowding(), WeightedRankAndCrowding([1 / n_obj] * n_obj)):
            pop = Population.new("X", np.zeros((n, 1)), "F", F)
            idx = survival.do(_Plain(n_obj), pop, n_survive=n_survive, return_indices=True,
                              random_state=np.random.default_rng(trial))
            out.append((idx, pop.get("rank"), pop.get("crowding")))
        (i_ref, r_ref, c_ref), (i_w, r_w, c_w) = out
        assert list(i_ref) == list(i_w)
        assert [x for x in r_ref] == [x for x in r_w]
        assert [x for x in c_ref] == [x for x in c_w]


def test_weighted_crowding_distance_by_hand():
    # front sorted by f1: (0,4) (1,2) (3,1) (4,0); both ranges are 4
    F = np.array([[0, 4], [1, 2], [3, 1], [4, 0]], dtype=float)
    # point 1: f1 gap (3-0)/4, f2 gap (4-1)/4; point 2: f1 gap (4-1)/4, f2 gap (2-0)/4
    np.testing.assert_allclose(weighted_crowding_distance(F, [0.8, 0.2]), [np.inf, 0.75, 0.8 * 0.75 + 0.2 * 0.5, np.inf])
    np.testing.assert_allclose(weighted_crowding_distance(F, [0.2, 0.8]), [np.inf, 0.75, 0.2 * 0.75 + 0.8 * 0.5, np.inf])
    # a zero weight ignores that objective, its extremes included
    assert weighted_crowding_distance(F, [1.0, 0.0])[0] == np.inf
    with pytest.raises(ValueError, match="sum to 1"):
        weighted_crowding_distance(F, [0.5, 0.6])
    with pytest.raises(ValueError, match="2 objectives"):
        weighted_crowding_distance(F, [0.4, 0.4, 0.2])


def test_zdt1_front_reached_with_weighted_survival():
    problem = get_problem("zdt1", n_var=10)
    hv = HV(ref_point=np.array([1.1, 1.1]))
    true = hv(problem.pareto_front(1000))
    res = minimize(problem, NSGA2(pop_size=50, survival=WeightedRankAndCrowding([0.4, 0.6])), ("n_gen", 120), seed=1)
    assert hv(res.F) / true > 0.97


class DiscreteZDT1(Problem):
    """ZDT1 on 19 integer genes 0..12: f1 = x0/12, g = 1 + 9 mean(x1..)/12, f2 = g (1 - sqrt(f1/g)).
    Known front: x1.. = 0, f2 = 1 - sqrt(f1) at the 13 values of f1."""

    def __init__(self):
        super().__init__(n_var=NUM_LAYERS, n_obj=2, xl=0, xu=12, vtype=int)

    def _evaluate(self, X, out, *args, **kwargs):
        X = X.astype(float)
        f1, g = X[:, 0] / 12, 1 + 9 * X[:, 1:].mean(1) / 12
        out["F"] = np.column_stack([f1, g * (1 - np.sqrt(f1 / g))])


def test_full_search_algorithm_reaches_known_discrete_front():
    hv = HV(ref_point=np.array([1.1, 1.1]))
    f1 = np.arange(13) / 12
    true = hv(np.column_stack([f1, 1 - np.sqrt(f1)]))
    config = SearchConfig(population=40, generations=120)  # paper operators and probabilities
    res = minimize(DiscreteZDT1(), WeightedNSGA2(config, [13] * NUM_LAYERS, weights=(0.5, 0.5)),
                   ("n_gen", config.generations), seed=0)
    assert hv(res.F) / true > 0.97


# -- PPO mutation ------------------------------------------------------------------------------------
class MatchTarget(Problem):
    """Toy objective: minimise minus the fraction of genes equal to a hidden target."""

    def __init__(self, target):
        self.target = np.asarray(target)
        super().__init__(n_var=NUM_LAYERS, n_obj=1, xl=0, xu=12, vtype=int)

    def _evaluate(self, X, out, *args, **kwargs):
        out["F"] = -(X.astype(int) == self.target).mean(1, keepdims=True)


class BestSoFar(Callback):
    def __init__(self):
        super().__init__()
        self.best = []

    def notify(self, algorithm):
        self.best.append(float(-algorithm.pop.get("F").min()))


def test_ppo_mutation_improves_toy_objective_faster_than_random_mutation():
    curves = {}
    for name, (p_rm, p_pr) in {"random": (1.0, 0.0), "ppo": (0.0, 1.0)}.items():
        runs = []
        for seed in range(8):
            target = np.random.default_rng(100 + seed).integers(0, 13, NUM_LAYERS)
            config = SearchConfig(population=16, generations=15, p_rm=p_rm, p_re=0.0, p_pr=p_pr, mutation_ratio=1.0)
            cb = BestSoFar()
            minimize(MatchTarget(target), WeightedNSGA2(config, [13] * NUM_LAYERS, weights=(1.0,)),
                     ("n_gen", config.generations), seed=seed, callback=cb)
            runs.append(cb.best)
        curves[name] = np.mean(runs, axis=0)
    # same start (same seeds), then PPO pulls ahead: higher area under the curve and final value
    assert curves["ppo"][0] == curves["random"][0]
    assert curves["ppo"].mean() > curves["random"].mean() + 0.03
    assert curves["ppo"][-1] > curves["random"][-1] + 0.05


def test_weighted_rewards_order_and_infeasible_last():
    F = np.array([[-0.9, 300, -5], [-0.5, 200, -5], [-0.9, 200, -6], [-0.99, 100, -9]])
    r = weighted_rewards(F, np.array([0, 0, 0, 2.0]), (0.4, 0.4, 0.2))
    assert r[2] > r[0] and r[2] > r[1]  # [2] dominates [0] and [1]
    assert r[3] < r[:3].min()  # infeasible ranks below every feasible model
    assert np.all(r[:3] <= 0) and np.all(r[:3] >= -1)


# -- the architecture search ------------------------------------------------------------------------
def small_config(**kw):
    return SearchConfig(**{"population": 12, "generations": 5, "madds_limit": 420e6, **kw})


def test_search_returns_only_feasible_models_and_a_tidy_table():
    costs = synthetic_costs()
    result = run_search(CheapEvaluator(0), small_config(), seed=3, costs=costs, progress=False)
    table = result.table
    assert len(table) == 12 * 5 and set(table.generation) == set(range(1, 6))
    limit = 420e6
    # the table's feasibility is the constraint, recomputed independently from the cost table
    madds = costs.madds_many(np.array([list(map(int, c.split(","))) for c in table.choices]))
    np.testing.assert_array_equal(table.madds.to_numpy(), madds)
    np.testing.assert_array_equal(table.feasible.to_numpy(), madds <= limit)
    assert table.loc[~table.feasible, "accuracy"].isna().all()
    assert (table.loc[~table.feasible, "evaluator"] == "skipped-infeasible").all()
    assert not table.feasible.all()  # the constraint was active
    for frame in (result.front, result.picked):
        assert len(frame) and (frame.madds <= limit).all()
        chosen = np.array([list(map(int, c.split(","))) for c in frame.choices])
        np.testing.assert_array_equal(frame.madds.to_numpy(), costs.madds_many(chosen))
        np.testing.assert_allclose(frame.accuracy.to_numpy(), CheapEvaluator(0).evaluate(chosen))
    assert len(result.picked) == 4
    assert list(result.history.generation) == [1, 2, 3, 4, 5]


def test_no_se_space_maps_genes_to_allowed_choices():
    problem = ArchitectureProblem(CheapEvaluator(0), synthetic_costs(), 1e12, SPACE_NO_SE)
    assert problem.n_choices == [7] * NUM_LAYERS
    X = np.tile(np.arange(7), (NUM_LAYERS, 3))[:, :NUM_LAYERS]
    C = problem.choices(X)
    assert set(np.unique(C)) == {0, 2, 4, 6, 8, 10, 12}
    np.testing.assert_array_equal(problem.genes([Architecture(c) for c in C]), X)
    result = run_search(CheapEvaluator(0), small_config(generations=2), seed=0, costs=synthetic_costs(),
                        progress=False, space=SPACE_NO_SE)
    assert all(Architecture.parse(a).in_space(SPACE_NO_SE) for a in result.table.arch)


def test_checkpoint_resume_reaches_the_same_result(tmp_path):
    costs, config = synthetic_costs(), small_config(generations=6)
    straight = run_search(CheapEvaluator(1), config, seed=7, costs=costs, progress=False)

    class Interrupted(Exception):
        pass

    class FailingAfter(CheapEvaluator):
        def __init__(self, calls):
            super().__init__(1)
            self.calls = calls

        def evaluate(self, archs):
            self.calls -= 1
            if self.calls < 0:
                raise Interrupted
            return super().evaluate(archs)

    with pytest.raises(Interrupted):
        run_search(FailingAfter(3), config, seed=7, checkpoint_dir=tmp_path, costs=costs, progress=False)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert saved["generation"] == 3
    counting = FailingAfter(10 ** 9)
    resumed = run_search(counting, config, seed=7, checkpoint_dir=tmp_path, costs=costs, progress=False)
    assert 10 ** 9 - counting.calls == 3  # generations 4-6 only
    drop = lambda df, col: df.drop(columns=[col])
    pd.testing.assert_frame_equal(drop(straight.table, "eval_seconds"), drop(resumed.table, "eval_seconds"))
    pd.testing.assert_frame_equal(drop(straight.history, "seconds"), drop(resumed.history, "seconds"))
    pd.testing.assert_frame_equal(straight.front, resumed.front)
    pd.testing.assert_frame_equal(straight.picked, resumed.picked)
    with pytest.raises(ValueError, match="another search"):
        run_search(CheapEvaluator(1), config, seed=8, checkpoint_dir=tmp_path, costs=costs, progress=False)


def test_config_rejects_inconsistent_probabilities():
    with pytest.raises(ValueError, match="p_rm \\+ p_re \\+ p_pr"):
        SearchConfig(p_rm=0.5)
    with pytest.raises(ValueError, match="p_M \\+ p_K-M"):
        SearchConfig(p_M=0.5)
    with pytest.raises(ValueError, match="sum to 1"):
        SearchConfig(weights=(0.5, 0.5, 0.5))
    defaults = SearchConfig()
    assert (defaults.population, defaults.generations, defaults.weights) == (70, 120, (0.4, 0.4, 0.2))


def test_pick_models_spreads_evenly_along_the_front():
    # a 2-objective front, dense near one end: 20 points in [0, 0.1] and 4 beyond
    x = np.concatenate([np.linspace(0, 0.1, 20), [0.33, 0.5, 0.67, 1.0]])
    F = np.column_stack([1 - x, x])  # sorted by objective 1 descending x
    picked = pick_models(F, 4, weights=(0.5, 0.5), sort_by=1)
    np.testing.assert_allclose(np.sort(x[picked]), [0.0, 0.33, 0.67, 1.0])
    assert len(pick_models(F[:3], 4, weights=(0.5, 0.5))) == 3


def test_cheap_evaluator_is_deterministic_seeded_and_capacity_driven():
    archs = SPACE_SE.sample_uniform(0, n=50)
    a = CheapEvaluator(0).evaluate(archs)
    assert np.array_equal(a, CheapEvaluator(0).evaluate(archs))
    assert not np.array_equal(a, CheapEvaluator(1).evaluate(archs))
    assert np.all((0 <= a) & (a <= 1))
    small, big = CheapEvaluator(0).evaluate([[12] * 19, [11] * 19])
    assert big > small + 0.3


# -- supernet evaluation ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_supernet_and_batches():
    net = Supernet(SPACE_SE, "let", width_mult=0.25, num_classes=10, small_input=True, seed=0)
    g = torch.Generator().manual_seed(0)
    batch = lambda: (torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g))
    return net, [batch() for _ in range(2)], [batch() for _ in range(3)]


def test_shared_prefix_evaluation_equals_one_by_one(tiny_supernet_and_batches):
    net, calib, evals = tiny_supernet_and_batches
    archs = SPACE_SE.sample_uniform(1, n=4)
    base = archs[0].tolist()
    archs += [Architecture(base[:10] + archs[1].tolist()[10:]),  # shares 10 layers with archs[0]
              Architecture(base[:18] + [(base[18] + 1) % 13]),  # differs only in the last layer
              Architecture([12] * 19), archs[2]]  # all identity (LET) and a duplicate
    before = {k: v.clone() for k, v in net.state_dict().items()}
    shared = SupernetEvaluator(net, calib, evals, share_prefix=True).evaluate(archs)
    for k, v in net.state_dict().items():  # the supernet's own BN statistics are left as they were
        assert torch.equal(v, before[k]), k
    reference = np.array([evaluate_path(net, a, calib, evals) for a in archs])
    np.testing.assert_array_equal(shared, reference)
    # stronger than accuracies: the logits themselves
    logits = SupernetEvaluator(net, calib, evals).logits(archs)
    for a in archs[:3]:
        recalibrate_bn(lambda x: net(x, a), net, calib)
        net.eval()
        with torch.no_grad():
            ref = torch.cat([net(x, a) for x, _ in evals])
        net.load_state_dict(before)
        torch.testing.assert_close(logits[a.choices], ref, rtol=1e-5, atol=1e-6)
    assert len({float(x) for x in reference}) > 1  # not a degenerate all-equal case


def test_search_with_supernet_evaluator_runs(tiny_supernet_and_batches):
    net, calib, evals = tiny_supernet_and_batches
    result = run_search(SupernetEvaluator(net, calib, evals), small_config(population=6, generations=2),
                        seed=0, costs=synthetic_costs(), progress=False)
    fresh = result.table[~result.table.cached & result.table.feasible]
    assert (fresh.evaluator == "supernet-shared-prefix").all()
    check = fresh.iloc[0]
    assert check.accuracy == evaluate_path(net, Architecture.parse(check.choices), calib, evals)


def test_madds_limit_scales_with_input_size_and_width():
    from scarlet_lib.models import SCARLET_A, ScarletNet
    from scarlet_lib.costs import count_madds
    from scarlet_lib.search import scaled_madds_limit

    assert scaled_madds_limit(500e6) == pytest.approx(500e6, rel=1e-12)
    options = dict(input_size=32, width_mult=0.5, small_input=True, num_classes=10)
    # independent reference: whole-model counts of SCARLET-A under both settings
    ratio = (count_madds(ScarletNet(SCARLET_A, num_classes=10, width_mult=0.5, small_input=True), 32)
             / count_madds(ScarletNet(SCARLET_A), 224))
    limit = scaled_madds_limit(500e6, **options)
    assert limit == pytest.approx(500e6 * ratio, rel=1e-12) and limit < 500e6
    # the default search counts with these settings and applies the scaled limit
    result = run_search(CheapEvaluator(0), SearchConfig(population=8, generations=2, **options), seed=0,
                        progress=False)
    assert (result.table.madds_limit == limit).all()
    assert (result.table.feasible == (result.table.madds <= limit)).all()
