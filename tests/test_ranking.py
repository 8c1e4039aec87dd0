"""Ranking fidelity statistics (notebook 8) against scipy and hand computations."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scarlet_lib import ranking
from scarlet_lib.recipes import SupernetRecipe
from scarlet_lib.space import SPACE_NO_SE, Architecture


def _models(oneshot: dict, standalone: np.ndarray, archs) -> pd.DataFrame:
    """MODEL_COLUMNS rows: ``oneshot`` {(arm, mode, seed): accuracies}, ``standalone`` (models x seeds)."""
    names = [f"path {i}" for i in range(len(archs))]
    parts = [ranking._model_rows(names, archs, acc, 1000, source="oneshot", arm=a, identity_mode=m, seed=s,
                                 data_seed=s) for (a, m, s), acc in oneshot.items()]
    for ds in sorted({s for _, _, s in oneshot}):
        for j in range(standalone.shape[1]):
            parts.append(ranking._model_rows(names, archs, standalone[:, j], 1000, source="standalone",
                                             arm="standalone", identity_mode="identity", seed=j, data_seed=ds))
    return pd.concat(parts, ignore_index=True)


def _archs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [SPACE_NO_SE.sample_uniform(rng) for _ in range(n)]


def test_rank_statistics_equal_scipy_and_hand_counts():
    rng = np.random.default_rng(1)
    x, y = rng.random(20), rng.random(20)
    k_id = rng.integers(0, 6, 20)
    out = ranking.rank_statistics(x, y, k_id, top_k=5)
    assert out["kendall_tau"] == pytest.approx(stats.kendalltau(x, y).statistic)
    assert out["spearman_rho"] == pytest.approx(stats.spearmanr(x, y).statistic)
    top = len(set(np.argsort(-x)[:5]) & set(np.argsort(-y)[:5])) / 5
    assert out["precision_at_k"] == pytest.approx(top)
    resid = (stats.rankdata(x) - stats.rankdata(y)) / 20
    assert out["residual_slope"] == pytest.approx(np.polyfit(k_id, resid, 1)[0])


def test_identical_orders_give_tau_one_and_zero_residual_slope():
    x = np.linspace(0.2, 0.8, 12)
    out = ranking.rank_statistics(x, x * 0.5 + 0.1, np.arange(12) % 4, top_k=4)
    assert out["kendall_tau"] == pytest.approx(1.0) and out["spearman_rho"] == pytest.approx(1.0)
    assert out["precision_at_k"] == 1.0 and out["residual_slope"] == pytest.approx(0.0)


def test_underestimating_identity_heavy_models_gives_a_negative_residual_slope():
    k_id = np.repeat(np.arange(5), 6)
    stand = np.linspace(0.5, 0.9, 30)[np.random.default_rng(0).permutation(30)]
    one = stand - 0.05 * k_id  # the supernet scores each identity choice 5 points too low
    assert ranking.rank_statistics(one, stand, k_id, 5)["residual_slope"] < 0


def test_ranking_table_interval_covers_the_estimate_and_narrows_with_agreement():
    archs = _archs(30)
    rng = np.random.default_rng(0)
    truth = rng.random(30)
    standalone = truth[:, None] + 0.01 * rng.standard_normal((30, 2))
    oneshot = {("a", "identity", 0): truth + 0.5 * rng.standard_normal(30),
               ("a", "let", 0): truth + 0.02 * rng.standard_normal(30)}
    t = ranking.ranking_table(_models(oneshot, standalone, archs), top_k=5, n_resamples=300)
    assert list(t.columns) == list(ranking.RANKING_COLUMNS)
    tau = t[t["statistic"] == "kendall_tau"].set_index("identity_mode")
    assert ((tau["ci_low"] <= tau["estimate"]) & (tau["estimate"] <= tau["ci_high"])).all()
    assert tau.loc["let", "estimate"] > 0.8 > tau.loc["identity", "estimate"]
    width = tau["ci_high"] - tau["ci_low"]
    assert width["let"] < width["identity"]
    assert (t["n_models"] == 30).all()


def test_tau_by_size_spread_shrinks_with_more_models():
    archs = _archs(40, 1)
    rng = np.random.default_rng(2)
    truth = rng.random(40)
    models = _models({("a", "let", 0): truth + 0.2 * rng.standard_normal(40)},
                     truth[:, None] + np.zeros((40, 2)), archs)
    t = ranking.tau_by_size(models, sizes=(5, 13, 30, 50), n_subsets=400).set_index("n_models")
    assert list(t.index) == [5, 13, 30]  # 50 > 40 models is left out
    spread = t["ci_high"] - t["ci_low"]
    assert spread[5] > spread[13] > spread[30]


def _runs(gain_last: float) -> pd.DataFrame:
    rows = []
    for model in ("path 0", "path 1"):
        for seed in (0, 1):
            accs = [0.3, 0.5, 0.6, 0.6 + gain_last]
            rows += [{"model": model, "seed": seed, "epoch": e, "heldout_acc": a} for e, a in enumerate(accs)]
    return pd.DataFrame(rows)


def test_gates_block_unless_above_chance_and_standalone_flat():
    archs = _archs(2)
    models = _models({("a", "identity", 0): [0.5, 0.6], ("a", "let", 0): [0.15, 0.2]},
                     np.full((2, 2), 0.6), archs)
    flat = ranking.ranking_gates(models, _runs(0.0), chance=0.1).set_index("identity_mode")
    assert flat.loc["identity", "readable"] and not flat.loc["let", "readable"]  # LET 17.5% < 25%
    rising = ranking.ranking_gates(models, _runs(0.1), chance=0.1)
    assert not rising["standalone_plateau"].any() and not rising["readable"].any()


def test_reference_agreement_is_the_seed_to_seed_tau_of_the_standalone_models():
    archs = _archs(12)
    rng = np.random.default_rng(3)
    y0 = rng.uniform(0.3, 0.9, 12)
    y1 = y0 + rng.normal(0, 0.1, 12)
    same = _models({("a", "identity", 0): y0}, np.stack([y0, y0], 1), archs)
    noisy = _models({("a", "identity", 0): y0}, np.stack([y0, y1], 1), archs)
    r_same = ranking.reference_agreement(same, n_resamples=200)
    r_noisy = ranking.reference_agreement(noisy, n_resamples=200).iloc[0]
    assert r_same["estimate"].iloc[0] == pytest.approx(1.0)
    assert r_noisy["estimate"] == pytest.approx(stats.kendalltau(y0, y1).statistic)
    assert r_noisy["ci_low"] <= r_noisy["estimate"] <= r_noisy["ci_high"]
    assert list(r_same.columns) == list(ranking.RANKING_COLUMNS) and r_same["arm"].iloc[0] == "standalone"
    three = _models({("a", "identity", 0): y0}, np.stack([y0, y1, y0], 1), archs)  # mean over the 3 seed pairs
    hand = (2 * stats.kendalltau(y0, y1).statistic + 1.0) / 3
    assert ranking.reference_agreement(three, n_resamples=50)["estimate"].iloc[0] == pytest.approx(hand)
    with pytest.raises(ValueError, match=">= 2 stand-alone seeds"):
        ranking.reference_agreement(_models({("a", "identity", 0): y0}, y0[:, None], archs))


def test_gates_block_when_the_standalone_seeds_do_not_agree_with_each_other():
    archs = _archs(12)
    rng = np.random.default_rng(4)
    sa = rng.uniform(0.3, 0.9, (12, 2))  # two independent seeds: the reference is noise
    models = _models({("a", "identity", 0): sa[:, 0], ("a", "let", 0): sa[:, 0]}, sa, archs)
    ref = ranking.reference_agreement(models, n_resamples=50)
    runs = _runs(0.0)
    gates = ranking.ranking_gates(models, runs, chance=0.1, reference=ref, min_reference_tau=0.5)
    assert not gates["reference_reliable"].any() and not gates["readable"].any()
    assert ranking.ranking_gates(models, runs, chance=0.1, reference=ref, min_reference_tau=-1.0)["readable"].all()
    table = ranking.ranking_table(models, n_resamples=20)
    effects = ranking.ranking_effects(table, gates)
    assert (effects["verdict"] == "uninformative at this scale").all()
    assert effects["reason"].str.contains("stand-alone seeds rank the models at tau").all()


def _table(diffs: dict, arm="a") -> pd.DataFrame:
    rows = []
    for seed, d in diffs.items():
        for stat in ("kendall_tau", "residual_slope"):
            rows.append({"arm": arm, "identity_mode": "identity", "seed": seed, "statistic": stat, "estimate": 0.3})
            rows.append({"arm": arm, "identity_mode": "let", "seed": seed, "statistic": stat, "estimate": 0.3 + d})
    return pd.DataFrame(rows)


def _gates(readable=True, seeds=(0, 1, 2), arm="a"):
    return pd.DataFrame([{"arm": arm, "identity_mode": m, "seed": s, "mean_acc": 0.6, "above_chance": readable,
                          "standalone_plateau": True, "worst_standalone_gain": 0.0, "reference_tau": 0.8,
                          "reference_reliable": True, "readable": readable}
                         for s in seeds for m in ("identity", "let")])


def test_effects_are_paired_t_intervals_with_gated_verdicts():
    diffs = {0: 0.10, 1: 0.12, 2: 0.08}
    e = ranking.ranking_effects(_table(diffs), _gates()).set_index("claim")
    d = np.array(list(diffs.values()))
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert e.loc["R1", "estimate"] == pytest.approx(d.mean())
    assert e.loc["R1", "ci_low"] == pytest.approx(d.mean() - half)
    assert e.loc["R1", "verdict"] == "reproduced"
    against = ranking.ranking_effects(_table({0: -0.1, 1: -0.12, 2: -0.08}), _gates()).set_index("claim")
    assert against.loc["R1", "verdict"] == "not reproduced"
    blocked = ranking.ranking_effects(_table(diffs), _gates(readable=False))
    assert (blocked["verdict"] == "uninformative at this scale").all()
    assert "not well above chance" in blocked["reason"].iloc[0]


def test_ranking_archs_are_a_stratified_subset_of_the_scored_paths_plus_published_where_allowed():
    recipe = SupernetRecipe(space="no_se", eval_paths=108)
    archs = ranking.ranking_archs(recipe, 30)
    assert len(archs) >= 30 and set(archs.values()) <= set(recipe.eval_archs())
    assert not {"Scarlet_A", "Scarlet_B", "Scarlet_C"} & set(archs)  # SE choices: not in the no_se space
    se = ranking.ranking_archs(recipe.replace(space="se"), 30)
    assert {"Scarlet_A", "Scarlet_B", "Scarlet_C"} <= set(se)
    assert {a.num_identity for a in archs.values()} >= {0, 2, 4, 6, 8}
    with pytest.raises(ValueError, match="n_models"):
        ranking.ranking_archs(recipe, 3)


@pytest.mark.parametrize("bad", [dict(epochs=0), dict(lr=float("nan")), dict(lr=-1), dict(seeds=()),
                                 dict(seeds=(0, 0)), dict(steps_per_epoch=1.5), dict(steps_per_epoch=-1)])
def test_standalone_settings_refuse_bad_values(bad):
    with pytest.raises(ValueError, match="StandaloneSettings"):
        ranking.StandaloneSettings(**bad)


def test_standalone_runs_are_cached_and_scored_on_the_common_heldout_set(tmp_path):
    recipe = SupernetRecipe(space="no_se", width=0.25, batch_size=8, eval_images=64, eval_paths=9)
    archs = dict(list(ranking.ranking_archs(recipe, 9).items())[:2])
    settings = ranking.StandaloneSettings(epochs=2, steps_per_epoch=2, seeds=(0, 1))
    runs = ranking.standalone_runs(recipe, archs, settings, cache_dir=tmp_path, processes=1)
    assert len(runs) == 2 * 2 * 2 and runs["heldout_acc"].between(0, 1).all()
    again = ranking.standalone_runs(recipe, archs, settings, cache_dir=tmp_path, processes=1)
    pd.testing.assert_frame_equal(runs, again)
    scores = ranking.standalone_scores(runs, recipe, data_seeds=[0, 1])
    assert len(scores) == 2 * 2 * 2 and (scores["n_images"] == 64).all()
    assert list(scores.columns) == list(ranking.MODEL_COLUMNS)
    assert Architecture.parse(scores["arch"].iloc[0]) in archs.values()
    # on data seed 0 (the held-out set training reported on) the reloaded models give the last epoch's accuracy
    last = runs[runs["epoch"] == 1].set_index(["model", "seed"])["heldout_acc"]
    on0 = scores[scores["data_seed"] == 0].set_index(["model", "seed"])["heldout_acc"]
    pd.testing.assert_series_equal(on0.sort_index(), last.sort_index(), check_names=False)


def test_oneshot_scores_reuse_the_trainers_last_epoch_and_score_the_rest_on_the_same_images(tmp_path):
    from scarlet_lib import cache
    from scarlet_lib.evaluation import score_paths

    recipe = SupernetRecipe(space="no_se", width=0.25, batch_size=8, epochs=1, steps_per_epoch=2, eval_images=64,
                            eval_paths=9, lr=0.05, warmup_steps=0)
    run = cache.supernet_run(recipe, cache_dir=tmp_path)
    archs = dict(list(ranking.ranking_archs(recipe, 9).items())[:3])
    extra = SPACE_NO_SE.sample_uniform(np.random.default_rng(5))
    archs["extra"] = extra
    scores = ranking.oneshot_ranking_scores({("calibrated", "identity", 0): run}, archs)
    last = run.evals[run.evals["epoch"] == run.evals["epoch"].max()].set_index("arch")["heldout_acc"]
    got = scores.set_index("model")["heldout_acc"]
    for name in list(archs)[:3]:
        assert got[name] == last[str(archs[name])]
    data = recipe.data()
    direct = score_paths(run.supernet, [extra], data.calib_batches, list(data.heldout_loader))
    assert got["extra"] == pytest.approx(direct["heldout_acc"].iloc[0])
    assert (scores["data_seed"] == 0).all() and (scores["n_images"] == 64).all()
