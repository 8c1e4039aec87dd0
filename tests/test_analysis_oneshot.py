"""One-shot statistics of a fixed path set: binomial correction, far-below threshold, effects, gates, verdicts."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from scarlet_lib import analysis
from scarlet_lib.analysis import (
    CLAIMS, claim_verdicts, oneshot_effects, oneshot_gates, oneshot_summary, paired_bootstrap, plateau_check,
)


def _scores(rng, true_acc, n_images, arm="paper", mode="identity", seed=0, epoch=0, archs=None):
    """Rows of one supernet: each path's measured accuracy is Binomial(n_images, true accuracy) / n_images."""
    true_acc = np.asarray(true_acc, dtype=float)
    hits = rng.binomial(n_images, true_acc)
    archs = archs if archs is not None else [f"path{i}" for i in range(len(true_acc))]
    return pd.DataFrame({"arm": arm, "identity_mode": mode, "seed": seed, "epoch": epoch,
                         "path_id": range(len(true_acc)), "arch": archs, "num_identity": 0,
                         "heldout_acc": hits / n_images, "n_images": n_images})


def test_binomial_correction_recovers_a_known_spread():
    rng = np.random.default_rng(0)
    n, paths, true_sd = 1000, 4000, 0.01  # binomial s.d. ~0.016 here, larger than the true spread
    spread = _scores(rng, rng.normal(0.5, true_sd, paths), n, mode="let")
    flat = _scores(rng, np.full(paths, 0.5), n, mode="identity")
    s = oneshot_summary(pd.concat([spread, flat])).set_index("identity_mode")
    assert s.loc["let", "excess_sd"] == pytest.approx(true_sd, rel=0.15)
    assert np.sqrt(s.loc["let", "among_var"]) > 1.5 * true_sd  # uncorrected, the noise dominates
    assert abs(s.loc["identity", "excess_var"]) < 0.1 * s.loc["identity", "binomial_var"]
    assert s.loc["identity", "excess_sd"] < 0.35 * np.sqrt(s.loc["identity", "binomial_var"])
    p = flat["heldout_acc"]
    assert s.loc["identity", "binomial_var"] == pytest.approx((p * (1 - p) / (n - 1)).mean())
    assert s.loc["identity", "among_var"] == pytest.approx(p.var(ddof=1))
    assert s.loc["identity", "n_paths"] == paths


def test_far_below_threshold_is_the_identity_median_of_the_same_seed_and_epoch():
    acc_id = np.array([0.30, 0.55, 0.60, 0.62, 0.70])  # median 0.60 -> threshold 0.40
    acc_let = np.array([0.35, 0.41, 0.80, 0.82, 0.90])  # its own median (0.80) must not matter
    acc_id1 = np.array([0.10, 0.50, 0.52])  # seed 1: median 0.50 -> threshold 0.30
    rows = [dict(mode="identity", seed=0, acc=acc_id), dict(mode="let", seed=0, acc=acc_let),
            dict(mode="identity", seed=1, acc=acc_id1), dict(mode="let", seed=1, acc=acc_id1 + 0.15),
            dict(mode="let", seed=2, acc=acc_let)]  # no identity supernet for seed 2
    table = pd.concat([pd.DataFrame({"arm": "a", "identity_mode": r["mode"], "seed": r["seed"], "epoch": 3,
                                     "path_id": range(len(r["acc"])), "heldout_acc": r["acc"], "n_images": 5000})
                       for r in rows])
    s = oneshot_summary(table).set_index(["identity_mode", "seed"])
    assert s.loc[("identity", 0), "threshold"] == pytest.approx(0.40)
    assert s.loc[("let", 0), "threshold"] == pytest.approx(0.40)
    assert s.loc[("identity", 0), "far_below_share"] == pytest.approx(1 / 5)
    assert s.loc[("let", 0), "far_below_share"] == pytest.approx(1 / 5)  # 0.35 only; 0.41 is above
    assert s.loc[("identity", 1), "threshold"] == pytest.approx(0.30)
    assert s.loc[("let", 1), "far_below_share"] == pytest.approx(1 / 3)  # 0.25 of 0.25, 0.65, 0.67
    assert np.isnan(s.loc[("let", 2), "threshold"]) and np.isnan(s.loc[("let", 2), "far_below_share"])
    s = oneshot_summary(table, far_below_points=0.05).set_index(["identity_mode", "seed"])
    assert s.loc[("let", 0), "threshold"] == pytest.approx(0.55)
    assert s.loc[("let", 0), "far_below_share"] == pytest.approx(2 / 5)


def test_summary_rejects_bad_tables():
    good = _scores(np.random.default_rng(0), [0.5, 0.6], 100)
    with pytest.raises(ValueError, match="lacks columns"):
        oneshot_summary(good.drop(columns="n_images"))
    with pytest.raises(ValueError, match="fractions"):
        oneshot_summary(good.assign(heldout_acc=[50.0, 60.0]))
    with pytest.raises(ValueError, match="repeat a path_id"):
        oneshot_summary(pd.concat([good, good]))
    with pytest.raises(ValueError, match="far_below_points"):
        oneshot_summary(good, far_below_points=20)


def _arm(rng, arm, seeds, let_shift, epochs=(0, 1), paths=40, n=2000, per_epoch=0.1):
    """Identity and LET supernets of one arm scored on the same paths; LET shifted by ``let_shift``."""
    archs = [f"a{i}" for i in range(paths)]
    out = []
    for seed in seeds:
        base = rng.uniform(0.45, 0.65, paths)
        for epoch in epochs:
            grow = per_epoch * epoch
            out.append(_scores(rng, base + grow, n, arm, "identity", seed, epoch, archs))
            out.append(_scores(rng, np.clip(base + grow + let_shift, 0, 1), n, arm, "let", seed, epoch, archs))
    return out


def test_oneshot_effects_are_paired_differences_in_points():
    rng = np.random.default_rng(1)
    scores = pd.concat(_arm(rng, "paper", range(4), 0.05) + _arm(rng, "calibrated", range(2), -0.02),
                       ignore_index=True)
    eff = oneshot_effects(scores, n_resamples=999)
    assert list(eff.columns) == ["arm", "claim", "effect", "estimate", "ci_low", "ci_high", "seeds", "epoch",
                                 "confidence", "interval", "boot_low", "boot_high", "rerun_low", "rerun_high", "sd_seeds",
                                 "per_seed"]
    assert list(eff["arm"]) == ["paper"] * 3 + ["calibrated"] * 3 and list(eff["claim"]) == ["C1", "C2", "C3"] * 2
    assert set(eff["epoch"]) == {1}
    summ = oneshot_summary(scores).query("epoch == 1 and arm == 'paper'").pivot(index="seed", columns="identity_mode")
    for claim, spec in CLAIMS.items():
        row = eff[(eff["arm"] == "paper") & (eff["claim"] == claim)].iloc[0]
        diffs = 100 * (summ[spec["column"]]["let"] - summ[spec["column"]]["identity"])
        boot = paired_bootstrap(diffs, n_resamples=999)
        assert row["effect"] == spec["effect"] and row["seeds"] == 4
        assert row["estimate"] == pytest.approx(diffs.mean())
        # Student's t interval over the 4 paired seeds, by hand (C3, a share: at least one event's variance)
        var = diffs.var(ddof=1)
        if claim == "C3":
            paths = int(summ["n_paths"].min().min())
            var = max(var, 1e4 * (2 / (4 * paths + 2)) * (1 - 1 / (4 * paths + 2)) / paths)
        half = stats.t.ppf(0.975, 3) * np.sqrt(var) / 2
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
        assert (row["boot_low"], row["boot_high"]) == pytest.approx((boot["low"], boot["high"]))
        assert row["sd_seeds"] == pytest.approx(diffs.std(ddof=1))
    c1 = eff[(eff["arm"] == "paper") & (eff["claim"] == "C1")].iloc[0]
    assert 4 < c1["estimate"] < 6 and c1["ci_low"] > 0
    cal = eff[eff["arm"] == "calibrated"]
    assert (cal["seeds"] == 2).all() and cal["ci_low"].isna().all()  # < 3 seeds: no interval
    at0 = oneshot_effects(scores, epoch=0, n_resamples=99)
    assert set(at0["epoch"]) == {0}
    with pytest.raises(ValueError, match="no arm has scores at epoch 7"):
        oneshot_effects(scores, epoch=7)


def test_oneshot_effects_refuse_different_path_sets():
    rng = np.random.default_rng(2)
    ident = _scores(rng, [0.5, 0.6], 500, mode="identity", archs=["x", "y"])
    let = _scores(rng, [0.5, 0.6], 500, mode="let", archs=["x", "z"])
    with pytest.raises(ValueError, match="different paths"):
        oneshot_effects(pd.concat([ident, let]))


def test_plateau_check():
    curve = pd.DataFrame({"epoch": range(11), "acc": [0.1 + 0.05 * e for e in range(6)] + [0.35] * 5})
    assert plateau_check(curve, "acc") == (pytest.approx(0.0), True)  # flat over epochs 8-10
    rising = pd.DataFrame({"epoch": range(11), "acc": [0.1 + 0.02 * e for e in range(11)]})
    gain, flat = plateau_check(rising, "acc")  # from epoch 8 to 10: +0.04
    assert gain == pytest.approx(0.04) and not flat
    assert plateau_check(rising, "acc", tolerance=0.05)[1]
    gain, _ = plateau_check(rising.iloc[[0, 5, 10]], "acc")  # interpolated at epoch 8
    assert gain == pytest.approx(0.04)
    per_path = pd.DataFrame({"step": [0, 0, 10, 10], "acc": [0.1, 0.3, 0.4, 0.6]})  # rows at one step averaged
    assert plateau_check(per_path, "acc", fraction=1.0)[0] == pytest.approx(0.3)
    gain, flat = plateau_check(rising.iloc[[10]], "acc")
    assert np.isnan(gain) and not flat
    gain, flat = plateau_check(rising.iloc[[9, 10]], "acc", start=0)  # last 20% reaches back to epoch 8
    assert np.isnan(gain) and not flat
    with pytest.raises(ValueError, match="fraction"):
        plateau_check(rising, "acc", fraction=0)
    with pytest.raises(ValueError, match="name its progress column"):
        plateau_check(pd.DataFrame({"t": [0, 1], "acc": [0, 1]}), "acc")


def test_oneshot_gates_from_the_scores_curves():
    rng = np.random.default_rng(3)
    scores = pd.concat(_arm(rng, "paper", range(3), 0.0, epochs=range(6), per_epoch=0.05), ignore_index=True)
    gates = oneshot_gates(scores, chance=0.1)
    assert len(gates) == 6 and set(gates["epoch"]) == {5}
    assert list(gates.columns) == ["arm", "identity_mode", "seed", "epoch", "chance", "mean_acc", "plateau_gain",
                                   "at_plateau"]
    assert gates["plateau_gain"].to_numpy() == pytest.approx(0.05, abs=0.01)  # the last epoch of five: +5 points
    assert not gates["at_plateau"].any()
    at1 = oneshot_gates(scores, chance=0.1, epoch=1, start=0)  # read at epoch 1: only epochs 0-1 count
    assert set(at1["epoch"]) == {1} and at1["plateau_gain"].to_numpy() == pytest.approx(0.01, abs=0.01)
    flat = scores.assign(heldout_acc=lambda d: (d["heldout_acc"] - 0.05 * (d["epoch"] - 3).clip(lower=0)))
    g = oneshot_gates(flat, chance=0.1)
    assert g["at_plateau"].all()
    mean5 = flat[flat["epoch"] == 5].groupby(["identity_mode", "seed"])["heldout_acc"].mean()
    assert g.set_index(["identity_mode", "seed"])["mean_acc"].to_dict() == pytest.approx(mean5.to_dict())


def _effects(arm, c1, c2, c3, seeds=3):
    rows = []
    for claim, (est, lo, hi) in zip(("C1", "C2", "C3"), (c1, c2, c3)):
        rows.append({"arm": arm, "claim": claim, "effect": CLAIMS[claim]["effect"], "estimate": est,
                     "ci_low": lo, "ci_high": hi, "seeds": seeds})
    return pd.DataFrame(rows)


def _gates(arm, acc=0.5, at_plateau=True, gain=0.0, seeds=3):
    return pd.DataFrame([{"arm": arm, "identity_mode": m, "seed": s, "mean_acc": acc, "chance": 0.1,
                          "plateau_gain": gain, "at_plateau": at_plateau} for m in ("identity", "let")
                         for s in range(seeds)])


def test_verdict_rules():
    effects = pd.concat([
        _effects("paper", (5.0, 2.0, 8.0), (-2.0, -3.0, -1.0), (-4.0, -6.0, -2.0)),  # all on the paper's side
        _effects("calibrated", (-3.0, -5.0, -1.0), (1.0, -1.0, 3.0), (2.0, 1.0, 3.0)),  # against / includes 0
        _effects("let-identity-init", (-3.0, -5.0, -1.0), (1.0, 0.5, 1.5), (0.0, -1.0, 1.0)),
        _effects("low", (9.0, 8.0, 10.0), (-2.0, -3.0, -1.0), (-2.0, -3.0, -1.0)),
        _effects("rising", (9.0, 8.0, 10.0), (-2.0, -3.0, -1.0), (-2.0, -3.0, -1.0)),
        _effects("two-seeds", (9.0, np.nan, np.nan), (-2.0, np.nan, np.nan), (-2.0, np.nan, np.nan), seeds=2),
    ])
    gates = pd.concat([_gates("paper"), _gates("calibrated"), _gates("let-identity-init"), _gates("low", acc=0.2),
                       _gates("rising", at_plateau=False, gain=0.05), _gates("two-seeds", seeds=2)])
    v = claim_verdicts(effects, gates).set_index(["arm", "claim"])
    assert list(v.columns) == ["verdict", "reason"]
    assert set(v["verdict"]) <= set(analysis.VERDICTS)
    assert (v.loc["paper", "verdict"] == "reproduced").all()
    assert "+5.0 points (95% CI +2.0 to +8.0, 3 seeds)" in v.loc[("paper", "C1"), "reason"]
    assert (v.loc["calibrated", "verdict"] == "not reproduced").all()
    assert "includes 0" in v.loc[("calibrated", "C2"), "reason"]
    assert not v["reason"].str.contains("opposite sign").any()  # only the paper arm can contradict the paper
    assert (v.loc["let-identity-init", "verdict"] == "not reproduced").all()
    for arm in ("low", "rising", "two-seeds"):
        assert (v.loc[arm, "verdict"] == "uninformative at this scale").all()
    assert "well above chance" in v.loc[("low", "C1"), "reason"] and "20.0%" in v.loc[("low", "C1"), "reason"]
    rising = v.loc[("rising", "C2"), "reason"]
    assert "not at a plateau" in rising and "+5.0 points" in rising
    assert "an interval needs >= 3" in v.loc[("two-seeds", "C1"), "reason"]

    against = _effects("paper", (-3.0, -5.0, -1.0), (1.0, 0.5, 1.5), (2.0, 1.0, 3.0))
    v = claim_verdicts(against, _gates("paper")).set_index("claim")
    assert (v["verdict"] == "not reproduced").all() and v["reason"].str.contains("opposite sign").all()
    v = claim_verdicts(against, _gates("paper", acc=0.2)).set_index("claim")  # gated out: no "opposite sign"
    assert (v["verdict"] == "uninformative at this scale").all() and not v["reason"].str.contains("opposite").any()
    only_identity = _gates("paper").query("identity_mode == 'identity'")
    v = claim_verdicts(against, only_identity)
    assert (v["verdict"] == "uninformative at this scale").all() and v["reason"].str.contains("let supernets").all()
    v = claim_verdicts(against, _gates("paper").drop(columns="chance"), chance=0.4)  # 0.5 < 0.4 + 0.15
    assert (v["verdict"] == "uninformative at this scale").all()
    with pytest.raises(ValueError, match="chance"):
        claim_verdicts(against, _gates("paper").drop(columns="chance"))


def _log(arm, mode, seed, accs, batch=16, paths=7):
    """A trainer step log whose running accuracy per step is ``accs[step]`` for every path."""
    rows = [{"epoch": 0, "step": s, "global_step": s, "path_id": p, "arch": "x", "num_identity": 0, "loss": 1.0,
             "train_acc": a, "lr": 0.1} for s, a in enumerate(accs) for p in range(paths)]
    return (arm, mode, seed), (pd.DataFrame(rows), batch)


def test_supernet_gates_read_the_plateau_from_running_accuracy_when_few_epochs_were_scored():
    rng = np.random.default_rng(3)
    rising = np.linspace(0.1, 0.6, 100)  # still gaining 10 points over the last fifth
    flat = np.concatenate([np.linspace(0.1, 0.6, 50), np.full(50, 0.6)])
    log = analysis.arm_path_log(dict([_log("a", "identity", 0, rising), _log("a", "let", 0, flat)]))
    assert set(log["arm"]) == {"a"} and {"mode", "seed", "step", "acc"} <= set(log.columns)
    scores = pd.concat([_scores(rng, np.full(20, 0.6), 1000, "a", m, 0, epoch=5) for m in ("identity", "let")])
    gates = analysis.supernet_gates(scores, log, chance=0.1).set_index("identity_mode")
    assert (gates["plateau_from"] == "running training accuracy").all()
    assert not gates.loc["identity", "at_plateau"] and gates.loc["identity", "plateau_gain"] > 0.05
    assert gates.loc["let", "at_plateau"] and abs(gates.loc["let", "plateau_gain"]) < 0.02
    # with >= 3 scored epochs the held-out curve decides
    many = pd.concat([_scores(rng, np.full(20, 0.6), 100000, "a", m, 0, epoch=e) for m in ("identity", "let")
                      for e in (1, 3, 5)])
    gates = analysis.supernet_gates(many, log, chance=0.1)
    assert (gates["plateau_from"] == "held-out scores per epoch").all() and gates["at_plateau"].all()
    # two scores, after 8 and 10 of 10 epochs, measure the last fifth directly: held-out decides (a 5-point rise)
    two = pd.concat([_scores(rng, np.full(20, acc), 100000, "a", m, 0, epoch=e) for m in ("identity", "let")
                     for e, acc in ((7, 0.55), (9, 0.6))])
    gates = analysis.supernet_gates(two, log, chance=0.1).set_index("identity_mode")
    assert (gates["plateau_from"] == "held-out scores per epoch").all() and not gates["at_plateau"].any()
    assert gates["plateau_gain"].between(0.04, 0.06).all()
    # two scores after 9 and 10 of 10 epochs do not reach back a fifth: the running accuracy decides
    late = pd.concat([_scores(rng, np.full(20, 0.6), 100000, "a", m, 0, epoch=e) for m in ("identity", "let")
                      for e in (8, 9)])
    gates = analysis.supernet_gates(late, log, chance=0.1)
    assert (gates["plateau_from"] == "running training accuracy").all()


def test_oneshot_scores_join_the_trainers_tables_with_their_arm_mode_and_seed():
    ev = pd.DataFrame({"epoch": [0, 0], "path_id": [0, 1], "arch": ["e3k3-" * 18 + "id", "id-" * 18 + "e3k3"],
                       "num_identity": [1, 18], "heldout_acc": [0.5, 0.2], "n_images": [100, 100]})
    out = analysis.oneshot_scores({("paper", "let", 4): ev})
    assert list(out.columns) == list(analysis.SCORE_COLUMNS) + ["identity_at_shape_change"]
    assert (out["arm"] == "paper").all() and (out["seed"] == 4).all()
    assert out["identity_at_shape_change"].tolist() == [True, True]  # layer 19 (-> 320 ch) and layer 1 (s2)


def _fig3_curves(last_gain: float) -> pd.DataFrame:
    rows = []
    for arm in ("folded", "let", "let_relu"):
        for seed in (0, 1):
            for e, acc in enumerate([0.3, 0.5, 0.6, 0.62, 0.62 + (last_gain if arm == "let" and seed == 1 else 0)]):
                rows.append({"arm": arm, "seed": seed, "epoch": e, "heldout_acc": acc})
    return pd.DataFrame(rows)


def test_plateau_table_gives_each_run_the_gain_of_its_last_fifth():
    table = analysis.plateau_table(_fig3_curves(0.05), "heldout_acc", ["arm", "seed"])
    assert len(table) == 6
    # 5 epochs counted from -1: the last fifth starts at epoch 3, so the gain is acc[4] - acc[3]
    row = table[(table["arm"] == "let") & (table["seed"] == 1)].iloc[0]
    assert row["gain"] == pytest.approx(0.05) and not row["at_plateau"]
    assert table.drop(row.name)["at_plateau"].all()


def test_figure3_verdict_needs_reference_arms_above_chance_and_every_run_at_a_plateau():
    means = {"folded": 0.6, "let": 0.62, "let_relu": 0.12}  # LET+ReLU near chance is the effect, not a block
    flat = analysis.plateau_table(_fig3_curves(0.0), "heldout_acc", ["arm", "seed"])
    ok, text = analysis.figure3_verdict(means, flat, chance=0.1)
    assert ok and "plateau" in text
    rising = analysis.plateau_table(_fig3_curves(0.05), "heldout_acc", ["arm", "seed"])
    ok, text = analysis.figure3_verdict(means, rising, chance=0.1)
    assert not ok and "let seed 1 +5.0" in text
    ok, text = analysis.figure3_verdict({**means, "folded": 0.2}, flat, chance=0.1)
    assert not ok and "folded" in text


def test_rerun_interval_is_the_t_prediction_interval_of_a_second_mean():
    from scipy import stats

    from scarlet_lib.analysis import paired_t_interval

    d = [1.0, 2.0, 3.0, 4.0]
    out = paired_t_interval(d)
    low, high = stats.t.interval(0.95, 3, loc=2.5, scale=np.std(d, ddof=1) * np.sqrt(2 / 4))
    assert out["rerun_low"] == pytest.approx(low) and out["rerun_high"] == pytest.approx(high)
    assert out["rerun_high"] - out["rerun_low"] == pytest.approx(np.sqrt(2) * (out["high"] - out["low"]))


def test_a_rerun_of_fresh_seeds_lands_in_the_rerun_interval_95_percent_of_the_time():
    from scarlet_lib.analysis import paired_t_interval

    rng = np.random.default_rng(0)
    first, rerun = rng.normal(3.0, 2.0, (2000, 5)), rng.normal(3.0, 2.0, (2000, 5))
    inside = [paired_t_interval(a)["rerun_low"] <= b.mean() <= paired_t_interval(a)["rerun_high"]
              for a, b in zip(first, rerun)]
    ci_inside = [paired_t_interval(a)["low"] <= b.mean() <= paired_t_interval(a)["high"] for a, b in zip(first, rerun)]
    assert 0.935 <= np.mean(inside) <= 0.965
    assert np.mean(ci_inside) < 0.88  # the confidence interval of the mean does not cover a rerun's mean


@pytest.mark.parametrize("dz,seeds", [(0.5, 34), (0.8, 15), (1.0, 10)])
def test_seeds_for_power_matches_the_published_paired_t_sample_sizes(dz, seeds):
    # G*Power 3 (t test, matched pairs, two-tailed, alpha 0.05, power 0.80): total sizes 34, 15 and 10
    assert analysis.seeds_for_power(sd=10.0, effect=10.0 * dz) == seeds
    assert analysis.seeds_for_power(sd=10.0, effect=-10.0 * dz) == seeds  # the sign does not matter


def test_seeds_for_power_rises_with_noise_and_with_the_power_asked():
    assert analysis.seeds_for_power(5, 2) < analysis.seeds_for_power(10, 2)
    assert analysis.seeds_for_power(10, 5, power=0.5) < analysis.seeds_for_power(10, 5, power=0.9)
    assert analysis.seeds_for_power(1000, 1e-6, max_seeds=50) == 51
    for bad in (dict(sd=0, effect=1), dict(sd=1, effect=0), dict(sd=float("nan"), effect=1),
                dict(sd=1, effect=1, power=1.5)):
        with pytest.raises(ValueError):
            analysis.seeds_for_power(**bad)


def test_a_5_seed_power_estimate_holds_in_simulation():
    # the number seeds_for_power gives finds a true effect about 80% of the time with a t interval
    rng = np.random.default_rng(3)
    n = analysis.seeds_for_power(sd=17.6, effect=20.0)
    found = [analysis.paired_t_interval(rng.normal(20.0, 17.6, n))["low"] > 0 for _ in range(4000)]
    assert 0.77 < np.mean(found) < 0.86
    found = [analysis.paired_t_interval(rng.normal(20.0, 17.6, n - 2))["low"] > 0 for _ in range(4000)]
    assert np.mean(found) < 0.80


def test_power_table_says_whether_the_papers_effect_is_inside_the_interval():
    effects = pd.concat([_effects("a", (0.8, -21.3, 22.8), (1, 0, 2), (0, -1, 1), seeds=5),
                         _effects("b", (-28.6, -49.0, -8.3), (1, 0, 2), (0, -1, 1), seeds=5)])
    effects["sd_seeds"] = [17.6, 1.0, 1.0, 16.4, 1.0, 1.0]
    t = analysis.power_table(effects).set_index("arm")
    assert list(t["claim"]) == ["C1", "C1"]  # only claims with a paper effect size
    assert t.loc["a", "paper_effect_in_ci"] and not t.loc["b", "paper_effect_in_ci"]
    assert t.loc["a", "half_width"] == pytest.approx(22.05)
    assert t.loc["a", "seeds_for_paper_effect"] == analysis.seeds_for_power(17.6, 20.0)
    assert t.loc["a", "seeds_for_estimate"] > 1000  # +0.8 points against s.d. 17.6
    v = claim_verdicts(effects, pd.concat([_gates("a", seeds=5), _gates("b", seeds=5)])).set_index(["arm", "claim"])
    assert "The paper's +20 points lies inside the interval" in v.loc[("a", "C1"), "reason"]
    assert "lies outside the interval" in v.loc[("b", "C1"), "reason"]


def _run(rng, seeds, **params):
    scores = pd.concat(_arm(rng, "calibrated", seeds, 0.03), ignore_index=True)
    gates = analysis.oneshot_gates(scores, chance=0.1)
    return scores, gates, {**{k: 1 for k in analysis.POOL_KEYS}, "seeds": list(seeds), **params}


def test_pooled_runs_read_as_one_run_with_all_their_seeds():
    rng = np.random.default_rng(4)
    a, b = _run(rng, [0, 1, 2]), _run(rng, [3, 4], output_dir="elsewhere", threads=1)
    scores, gates = analysis.pool_seed_runs([a, b])
    pooled = analysis.oneshot_effects(scores).set_index("claim")
    whole = analysis.oneshot_effects(pd.concat([a[0], b[0]], ignore_index=True)).set_index("claim")
    assert (pooled["seeds"] == 5).all()
    assert pooled["estimate"].to_dict() == pytest.approx(whole["estimate"].to_dict())
    assert sorted(gates["seed"].unique()) == [0, 1, 2, 3, 4] and len(gates) == 10


def test_pooling_refuses_other_recipes_and_repeated_seeds():
    rng = np.random.default_rng(5)
    a = _run(rng, [0, 1])
    with pytest.raises(ValueError, match=r"differs from run 0 in lr \(1 vs 0.02\)"):
        analysis.pool_seed_runs([a, _run(rng, [2], lr=0.02)])
    with pytest.raises(ValueError, match="arm 'calibrated' seed 1 is in run 0 and run 1"):
        analysis.pool_seed_runs([a, _run(rng, [1, 2])])
    with pytest.raises(ValueError, match="at least two runs"):
        analysis.pool_seed_runs([a])


def _factor_run(lr, steps_per_epoch, arm="let-identity-init", c1=(1.7, -10.7, 14.2), gain=0.01):
    params = {**{k: 1 for k in analysis.POOL_KEYS}, "epochs": 10, "steps_per_epoch": steps_per_epoch, "lr": lr,
              "threads": 2}
    effects = _effects(arm, c1, (1.6, -0.7, 4.0), (2.4, -3.1, 7.9), seeds=5)
    gates = _gates(arm, acc=0.7, gain=gain, seeds=5)
    gates.loc[gates.index[3], ["mean_acc", "plateau_gain"]] = [0.6, gain + 0.01]
    return params, effects, claim_verdicts(effects, gates), gates


def test_factor_table_names_exactly_the_recipe_parameters_that_differ():
    runs = {"a": _factor_run(0.05, 150, c1=(0.8, -21.3, 22.8)), "b": _factor_run(0.02, 150),
            "c": _factor_run(0.02, 200, gain=0.005)}
    runs["a"][0]["threads"] = 1  # not a recipe parameter: never a factor
    t = analysis.factor_effects(runs)
    assert list(t.columns[:3]) == ["run", "lr", "steps"] and "threads" not in t.columns and "epochs" not in t.columns
    c1 = t[t["claim"] == "C1"].set_index("run")
    assert c1["steps"].to_dict() == {"a": 1500, "b": 1500, "c": 2000}
    assert c1["lr"].to_dict() == {"a": 0.05, "b": 0.02, "c": 0.02}
    assert c1["paper_effect_in_ci"].to_dict() == {"a": True, "b": False, "c": False}  # +20 vs each interval
    assert c1.loc["c", "worst_plateau_gain"] == pytest.approx(0.015)
    assert c1.loc["b", "lowest_mean_acc"] == pytest.approx(0.6)
    assert (c1["verdict"] == "not reproduced").all()  # gates pass, every interval includes 0
    assert t[t["claim"] == "C2"]["paper_effect_in_ci"].isna().all()  # the paper gives no size for C2
    one = analysis.factor_effects({"a": runs["a"]})  # a single run has no factors
    assert list(one.columns[:2]) == ["run", "arm"]


def test_factor_table_refuses_runs_that_are_not_notebook_2():
    params, effects, verdicts, gates = _factor_run(0.02, 150)
    with pytest.raises(ValueError, match=r"run 'x': its parameters lack \['lr'\]"):
        analysis.factor_effects({"x": ({k: v for k, v in params.items() if k != "lr"}, effects, verdicts, gates)})
    with pytest.raises(ValueError, match="run 'x' gates table lacks columns"):
        analysis.factor_effects({"x": (params, effects, verdicts, gates.drop(columns="plateau_gain"))})
    with pytest.raises(ValueError, match="at least one run"):
        analysis.factor_effects({})


def test_factor_supernets_lists_every_supernet_of_every_run_with_its_factors():
    runs = {"short": _factor_run(0.02, 150), "long": _factor_run(0.02, 200)}
    t = analysis.factor_supernets(runs)
    assert list(t.columns) == ["run", "steps", "arm", "identity_mode", "seed", "mean_acc", "plateau_gain"]
    assert len(t) == 2 * 10 and t.groupby("run")["steps"].first().to_dict() == {"short": 1500, "long": 2000}
    short = t[t["run"] == "short"].reset_index(drop=True)
    gates = runs["short"][3].reset_index(drop=True)
    assert short["mean_acc"].tolist() == gates["mean_acc"].tolist()  # each run's own gate values, unchanged


def _length_summary(levels: dict, arm="let-identity-init", last_epoch=9) -> pd.DataFrame:
    """A one-shot summary with given per-seed mean accuracies: ``levels[mode] = [acc per seed]``."""
    rows = []
    for mode, accs in levels.items():
        for seed, acc in enumerate(accs):
            for epoch, shift in ((last_epoch - 2, -0.05), (last_epoch, 0.0)):  # only the last epoch is read
                rows.append({"arm": arm, "identity_mode": mode, "seed": seed, "epoch": epoch, "n_paths": 108,
                             "mean_acc": acc + shift,
                             "excess_sd": 0.03 if mode == "identity" else 0.02, "far_below_share": 0.0})
    return pd.DataFrame(rows)


def _length_params(lr, steps_per_epoch):
    return {**{k: 1 for k in analysis.POOL_KEYS}, "epochs": 10, "steps_per_epoch": steps_per_epoch, "lr": lr}


def test_length_change_pairs_seeds_between_runs_that_differ_only_in_length():
    from scipy import stats

    short = {"identity": [0.80, 0.70, 0.85, 0.75], "let": [0.82, 0.74, 0.84, 0.80]}
    long = {"identity": [0.90, 0.78, 0.88, 0.80], "let": [0.91, 0.83, 0.90, 0.86]}
    runs = {"s": (_length_params(0.02, 150), _length_summary(short)),
            "l": (_length_params(0.02, 300), _length_summary(long)),
            "other_lr": (_length_params(0.05, 150), _length_summary(short))}  # no partner: no row
    t = analysis.length_changes(runs)
    assert set(t["long_run"]) == {"l"} and set(t["short_run"]) == {"s"}
    assert t[["short_steps", "long_steps"]].drop_duplicates().values.tolist() == [[1500, 3000]]
    c1 = t.set_index("quantity").loc["C1"]
    # by hand: C1 per seed short (2, 4, -1, 5), long (1, 5, 2, 6) -> change (-1, 1, 3, 1)
    change = np.array([-1.0, 1.0, 3.0, 1.0])
    ci = stats.ttest_1samp(change, 0).confidence_interval(0.95)
    assert c1["change"] == pytest.approx(1.0) and c1["short_estimate"] == pytest.approx(2.5)
    assert (c1["ci_low"], c1["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert c1["stable"] == True and c1["tolerance"] == 10.0  # noqa: E712  (+-10 points, half the paper's +20)
    ident = t.set_index("quantity").loc["identity level"]
    assert ident["change"] == pytest.approx(100 * np.mean([0.10, 0.08, 0.03, 0.05]))
    assert np.isnan(t.set_index("quantity").loc["C2", "stable"])  # no paper effect size: no stability call
    assert t.set_index("quantity").loc["C2", "change"] == pytest.approx(0.0)
    # C3 is 0 in every supernet: its change is credited with two share differences' floor, not zero width
    c3 = t.set_index("quantity").loc["C3"]
    half = stats.t.ppf(0.975, 3) * np.sqrt(2e4 * analysis.share_variance_floor(108, 4) / 4)
    assert c3["change"] == 0.0 and (c3["ci_low"], c3["ci_high"]) == pytest.approx((-half, half))


def test_length_change_calls_an_effect_that_moves_by_half_the_paper_effect_unstable():
    short = {"identity": [0.80, 0.70, 0.85, 0.75], "let": [0.82, 0.74, 0.84, 0.80]}
    moved = {"identity": [0.60, 0.52, 0.66, 0.54], "let": [0.82, 0.74, 0.84, 0.80]}  # C1 up by ~20 points
    t = analysis.length_changes({"s": (_length_params(0.02, 150), _length_summary(short)),
                                 "l": (_length_params(0.02, 200), _length_summary(moved))})
    assert t.set_index("quantity").loc["C1", "stable"] == False  # noqa: E712


def test_length_change_pairs_per_arm_so_runs_of_one_length_may_hold_different_arms():
    short = {"identity": [0.80, 0.70, 0.85, 0.75], "let": [0.82, 0.74, 0.84, 0.80]}
    long = {"identity": [0.90, 0.78, 0.88, 0.80], "let": [0.91, 0.83, 0.90, 0.86]}
    moved = {"identity": [0.60, 0.52, 0.66, 0.54], "let": [0.82, 0.74, 0.84, 0.80]}
    runs = {"a_short": (_length_params(0.02, 150), _length_summary(short)),
            "c_short": (_length_params(0.02, 150), _length_summary(short, arm="calibrated")),
            "a_long": (_length_params(0.02, 300), _length_summary(long)),
            "c_long": (_length_params(0.02, 300), _length_summary(moved, arm="calibrated"))}
    t = analysis.length_changes(runs)
    pairs = {tuple(r) for r in t[["arm", "short_run", "long_run"]].drop_duplicates().to_numpy()}
    assert pairs == {("let-identity-init", "a_short", "a_long"), ("calibrated", "c_short", "c_long")}
    c1 = t[t["quantity"] == "C1"].set_index("arm")["change"]
    # by hand: let-identity-init C1 per seed (2, 4, -1, 5) -> (1, 5, 2, 6); calibrated -> (22, 22, 18, 26)
    assert c1["let-identity-init"] == pytest.approx(1.0) and c1["calibrated"] == pytest.approx(19.5)


def test_length_change_refuses_two_runs_of_the_same_recipe_and_length_and_bad_tables():
    s = _length_summary({"identity": [0.8, 0.7, 0.8], "let": [0.8, 0.7, 0.8]})
    with pytest.raises(ValueError, match="same recipe and length and both hold arm 'let-identity-init'"):
        analysis.length_changes({"a": (_length_params(0.02, 150), s), "b": (_length_params(0.02, 150), s)})
    with pytest.raises(ValueError, match="run 'a' one-shot summary lacks columns"):
        analysis.length_changes({"a": (_length_params(0.02, 150), s.drop(columns="excess_sd"))})
    with pytest.raises(ValueError, match=r"run 'a': its parameters lack \['lr'\]"):
        analysis.length_changes({"a": ({k: 1 for k in analysis.POOL_KEYS if k != "lr"}, s)})


def test_pooled_length_change_pairs_each_seed_with_its_own_shorter_run():
    from scipy import stats

    def seeds_from(summary, first):
        return summary.assign(seed=summary["seed"] + first)

    short_a = _length_summary({"identity": [0.80, 0.70, 0.85], "let": [0.82, 0.74, 0.84]})
    long_a = _length_summary({"identity": [0.90, 0.78, 0.88], "let": [0.91, 0.83, 0.90]})
    short_b = seeds_from(_length_summary({"identity": [0.75, 0.60], "let": [0.80, 0.50]}), 5)
    long_b = seeds_from(_length_summary({"identity": [0.80, 0.70], "let": [0.86, 0.52]}), 5)
    s, l = _length_params(0.02, 200), _length_params(0.02, 300)
    t = analysis.length_changes({"short": analysis.pool_summaries([(s, short_a), (s, short_b)]),
                                 "long": analysis.pool_summaries([(l, long_a), (l, long_b)])})
    c1 = t.set_index("quantity").loc["C1"]
    # by hand: C1 per seed short (2, 4, -1, 5, -10), long (1, 5, 2, 6, -18) -> change (-1, 1, 3, 1, -8)
    change = np.array([-1.0, 1.0, 3.0, 1.0, -8.0])
    ci = stats.ttest_1samp(change, 0).confidence_interval(0.95)
    assert c1["seeds"] == 5 and c1["change"] == pytest.approx(change.mean())
    assert (c1["ci_low"], c1["ci_high"]) == pytest.approx((ci.low, ci.high))
    assert c1["per_seed"].split(", ")[-1] == "6: -8.00"


def test_pooled_length_check_refuses_runs_without_a_shorter_run_or_of_other_recipes():
    s, l = _length_params(0.02, 200), _length_params(0.02, 300)
    summary = _length_summary({"identity": [0.8, 0.7], "let": [0.8, 0.7]})
    with pytest.raises(ValueError, match="arm 'let-identity-init' seed 0 is in run 0 and run 1"):
        analysis.pool_summaries([(s, summary), (s, summary)])
    with pytest.raises(ValueError, match=r"run 1 differs from run 0 in lr \(0.02 vs 0.05\)"):
        analysis.pool_summaries([(s, summary), (_length_params(0.05, 200), summary.assign(seed=[7] * len(summary)))])
    analysis.check_pooled_length(l, {"this run": s, "figures/b": s})  # one recipe, fewer steps: accepted
    with pytest.raises(ValueError, match="figures/b names no shorter run"):
        analysis.check_pooled_length(l, {"this run": s, "figures/b": None})
    with pytest.raises(ValueError, match=r"shorter run of figures/b differs from shorter run of this run in "
                                         r"steps_per_epoch \(200 vs 100\)"):
        analysis.check_pooled_length(l, {"this run": s, "figures/b": _length_params(0.02, 100)})
    with pytest.raises(ValueError, match="the shorter run of this run has 3000 steps, this run 3000"):
        analysis.check_pooled_length(l, {"this run": l, "figures/b": l})


def test_length_checked_verdict_stands_only_when_a_shorter_run_shows_the_effect_settled():
    table = pd.DataFrame([
        {"run": "l", "arm": "a", "claim": "C1", "verdict": "not reproduced"},
        {"run": "l", "arm": "b", "claim": "C1", "verdict": "reproduced"},
        {"run": "l", "arm": "a", "claim": "C2", "verdict": "not reproduced"},
        {"run": "l", "arm": "c", "claim": "C1", "verdict": "not reproduced"},  # no shorter run of arm c
        {"run": "l", "arm": "d", "claim": "C1", "verdict": "uninformative at this scale"},
    ])
    base = {"short_run": "s", "long_run": "l", "short_steps": 2000, "long_steps": 3000}
    lengths = pd.DataFrame([
        {**base, "arm": "a", "quantity": "C1", "change": 2.0, "ci_low": -4.0, "ci_high": 8.0, "tolerance": 10.0,
         "stable": True},
        {**base, "arm": "b", "quantity": "C1", "change": 9.0, "ci_low": 3.0, "ci_high": 15.0, "tolerance": 10.0,
         "stable": False},
        {**base, "arm": "a", "quantity": "C2", "change": 1.5, "ci_low": 0.5, "ci_high": 2.5, "tolerance": np.nan,
         "stable": np.nan},
        {**base, "arm": "d", "quantity": "C1", "change": 0.0, "ci_low": -1.0, "ci_high": 1.0, "tolerance": 10.0,
         "stable": True},
    ])
    t = analysis.length_checked(table, lengths)
    assert t["checked_verdict"].tolist() == ["not reproduced"] + ["uninformative at this scale"] * 4
    assert t.loc[0, "length_change"] == 2.0 and t.loc[0, "length_from_steps"] == 2000
    assert "within +-10" in t.loc[0, "length_reason"] and "beyond +-10" in t.loc[1, "length_reason"]
    assert "excludes 0" in t.loc[2, "length_reason"]  # C2 has no paper size: its change must include 0
    assert "no shorter run" in t.loc[3, "length_reason"]
    assert t["verdict"].tolist() == table["verdict"].tolist()  # each run's own verdict kept beside


def test_a_share_that_is_zero_in_every_seed_keeps_the_uncertainty_of_one_far_below_path():
    # 4 seeds, 108 paths, no far-below path in any supernet: the sample variance is 0, the floor is one event
    # in 4 * 108 paths of each kind (add-one), by hand
    p = 1 / (4 * 108 + 2)
    floor = 2 * p * (1 - p) / 108
    assert analysis.share_variance_floor(108, 4) == pytest.approx(floor)
    out = analysis.paired_t_interval([0.0, 0.0, 0.0, 0.0], var_floor=1e4 * floor)
    half = stats.t.ppf(0.975, 3) * np.sqrt(1e4 * floor / 4)
    assert (out["low"], out["high"]) == pytest.approx((-half, half))
    assert (out["rerun_low"], out["rerun_high"]) == pytest.approx((-half * np.sqrt(2), half * np.sqrt(2)))
    plain = analysis.paired_t_interval([0.0, 0.0, 0.0, 0.0])
    assert plain["low"] == plain["high"] == plain["rerun_high"] == 0.0  # what the floor is for
    with pytest.raises(ValueError, match="n_paths >= 1"):
        analysis.share_variance_floor(0, 4)


def test_the_share_floor_restores_rerun_coverage_for_rare_far_below_paths_and_leaves_common_ones_alone():
    # Independent paths, each far below with probability q in every supernet; a rerun draws fresh supernets.
    rng = np.random.default_rng(1)
    paths, seeds, reps = 108, 4, 3000

    def coverage(q, floored):
        hits = 0
        for _ in range(reps):
            first = rng.binomial(paths, q, (2, seeds)) / paths
            rerun = rng.binomial(paths, q, (2, seeds)) / paths
            floor = 1e4 * analysis.share_variance_floor(paths, seeds) if floored else 0.0
            t = analysis.paired_t_interval(100 * (first[0] - first[1]), var_floor=floor)
            hits += t["rerun_low"] <= 100 * (rerun[0] - rerun[1]).mean() <= t["rerun_high"]
        return hits / reps

    assert coverage(0.002, False) < 0.9  # all-zero seeds happen often: a zero-width interval
    assert coverage(0.002, True) >= 0.94
    assert 0.93 <= coverage(0.05, True) <= 0.965  # events seen: the floor does not bind


def test_c3_effects_carry_the_share_floor_and_c1_does_not():
    rng = np.random.default_rng(2)
    rows = [_scores(rng, np.full(108, 0.9), 800, arm="a", mode=m, seed=s)
            for s in range(4) for m in ("identity", "let")]
    e = oneshot_effects(pd.concat(rows), n_resamples=99).set_index("claim")
    assert e.loc["C3", "estimate"] == 0.0 and e.loc["C3", "sd_seeds"] == 0.0
    half = stats.t.ppf(0.975, 3) * np.sqrt(1e4 * analysis.share_variance_floor(108, 4) / 4)
    assert (e.loc["C3", "ci_low"], e.loc["C3", "ci_high"]) == pytest.approx((-half, half))
    assert "at least one event" in e.loc["C3", "interval"] and e.loc["C1", "interval"] == "paired t over seeds"
