"""Figure 1 from one-shot scores and the claims' forest plot: what is drawn matches the tables."""
import numpy as np
import pandas as pd
import pytest
from matplotlib import rcParams

from scarlet_lib import analysis, plots


def _scores(seeds=3, paths=30, arms=("paper", "calibrated")):
    rng = np.random.default_rng(0)
    rows = []
    for arm in arms:
        for seed in range(seeds):
            base = rng.uniform(0.4, 0.7, paths)
            for epoch in (0, 1):
                for mode, shift in (("identity", 0.0), ("let", 0.05)):
                    acc = rng.binomial(5000, np.clip(base + shift + 0.05 * epoch, 0, 1)) / 5000
                    rows.append(pd.DataFrame({"arm": arm, "identity_mode": mode, "seed": seed, "epoch": epoch,
                                              "path_id": range(paths), "arch": [f"a{i}" for i in range(paths)],
                                              "num_identity": 0, "heldout_acc": acc, "n_images": 5000}))
    return pd.concat(rows, ignore_index=True)


def _lines_at(ax, x):
    return [l for l in ax.get_lines() if np.allclose(l.get_xdata(), x)]


def test_figure1_scores_draws_each_arm_with_thresholds_chance_and_banner():
    scores = _scores()
    before = dict(rcParams)
    eff = analysis.oneshot_effects(scores, n_resamples=99)
    gates = analysis.oneshot_gates(scores, chance=0.1).assign(at_plateau=lambda g: g["arm"] == "paper")
    verdicts = analysis.claim_verdicts(eff, gates)
    fig = plots.figure1_scores(scores, chance=0.1, verdicts=verdicts)
    assert dict(rcParams) == before  # no global style change
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["paper (epoch 1)", "calibrated (epoch 1)"]
    summary = analysis.oneshot_summary(scores[scores["epoch"] == 1])
    for ax, arm in zip(axes, ("paper", "calibrated")):
        thr = summary[(summary["arm"] == arm) & (summary["identity_mode"] == "identity")]["threshold"]
        for t in thr:
            assert _lines_at(ax, [100 * t, 100 * t])
        assert _lines_at(ax, [10.0, 10.0])  # chance
        bars = sum(p.get_height() for p in ax.patches)
        assert bars == 2 * 3 * 30  # every path of both modes, pooled over seeds
        assert any("LET (linear): 90 paths, 3 seeds" in t.get_text() for t in ax.get_legend().get_texts())
    assert not any("Not a finding" in t.get_text() for t in axes[0].texts)
    assert any("Not a finding" in t.get_text() for t in axes[1].texts)
    early = plots.figure1_scores(scores, chance=0.1, epoch=0)
    assert [ax.get_title() for ax in early.axes] == ["paper (epoch 0)", "calibrated (epoch 0)"]


def test_effects_figure_one_forest_per_claim_with_verdicts(tmp_path):
    scores = _scores()
    eff = analysis.oneshot_effects(scores, n_resamples=99)
    gates = analysis.oneshot_gates(scores, chance=0.1).assign(at_plateau=True)
    verdicts = analysis.claim_verdicts(eff, gates)
    fig = plots.effects_figure(eff, verdicts)
    assert [ax.get_title() for ax in fig.axes] == ["C1 mean one-shot accuracy", "C2 spread beyond binomial noise",
                                                   "C3 share far below the rest"]
    fig.canvas.draw()
    ticks = {t.get_text(): y for t, y in zip(fig.axes[0].get_yticklabels(), fig.axes[0].get_yticks())}
    assert ticks["paper"] > ticks["calibrated"]  # the first arm on top
    for ax, claim in zip(fig.axes, ("C1", "C2", "C3")):
        assert _lines_at(ax, [0, 0])  # zero line
        texts = [t.get_text() for t in ax.texts]
        for v in verdicts[verdicts["claim"] == claim].itertuples():
            assert any(t.startswith(v.verdict) for t in texts)
        lo, hi = ax.get_xlim()
        e = eff[eff["claim"] == claim]
        assert lo <= e["ci_low"].min() and e["ci_high"].max() <= hi
    assert plots.save_figure(fig, "effects", tmp_path, formats=("png",))[0].exists()
    plain = plots.effects_figure(eff[eff["claim"] != "C3"])  # no verdicts, two claims
    assert len(plain.axes) == 2
    c1 = fig.axes[0]  # the paper's +20 points is drawn and in view; C2 and C3 have no paper size
    assert _lines_at(c1, [20, 20]) and c1.get_xlim()[1] >= 20 and any("paper +20" in t.get_text() for t in c1.texts)
    assert not any("paper +" in t.get_text() for ax in fig.axes[1:] for t in ax.texts)


def test_factor_figure_labels_each_row_with_its_run_factors():
    rows = []
    for run, lr, steps in (("figures", 0.05, 1500), ("figures/lr0.02", 0.02, 1500), ("long", 0.02, 2000)):
        for claim, est in (("C1", 1.0), ("C2", 0.5), ("C3", 2.0)):
            rows.append({"run": run, "lr": lr, "steps": steps, "arm": "let-identity-init", "claim": claim,
                         "estimate": est, "ci_low": est - 3, "ci_high": est + 3, "seeds": 5,
                         "verdict": "not reproduced", "paper_effect": 20.0 if claim == "C1" else np.nan,
                         "paper_effect_in_ci": False, "worst_plateau_gain": 0.01, "lowest_mean_acc": 0.7})
    fig = plots.factor_effects_figure(pd.DataFrame(rows))
    fig.canvas.draw()
    y = {t.get_text(): pos for t, pos in zip(fig.axes[0].get_yticklabels(), fig.axes[0].get_yticks())}
    order = sorted(y, key=y.get, reverse=True)  # top to bottom: the runs in the order given
    assert order == ["let-identity-init\nlr 0.05, steps 1500", "let-identity-init\nlr 0.02, steps 1500",
                     "let-identity-init\nlr 0.02, steps 2000"]


def test_figure1_scores_rejects_a_table_without_scores():
    with pytest.raises(ValueError, match="lacks columns"):
        plots.figure1_scores(pd.DataFrame({"arm": ["a"], "epoch": [0]}), chance=0.1)


def test_factor_figure_writes_the_length_checked_verdict_where_the_table_has_one():
    rows = [{"run": run, "steps": steps, "arm": "let-identity-init", "claim": "C1", "estimate": 1.0, "ci_low": -2.0,
             "ci_high": 4.0, "seeds": 5, "verdict": "not reproduced", "checked_verdict": checked}
            for run, steps, checked in (("short", 2000, "uninformative at this scale"), ("long", 3000, "not reproduced"))]
    fig = plots.factor_effects_figure(pd.DataFrame(rows))
    written = [t.get_text() for t in fig.axes[0].texts]
    assert sum("uninformative" in t for t in written) == 1 and sum("not reproduced" in t for t in written) == 1
