"""Figures: the Figure 4 diagram encodes the architecture, figures save as PNG+PDF, analysis statistics."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

from scarlet_lib import analysis, plots
from scarlet_lib.models import PUBLISHED, SCARLET_B, SCARLET_C
from scarlet_lib.space import CHOICES, IDENTITY, REDUCTION_LAYERS, SPACE_NO_SE, Architecture


def _boxes(ax):
    """The 19 layer boxes (the stem box is left of x = -1)."""
    boxes = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_x() > -1]
    return sorted(boxes, key=lambda p: p.get_x())


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_figure4_boxes_encode_kernel_expansion_se_and_identity(name):
    arch = PUBLISHED[name]
    ax = plots.draw_architecture(arch)
    boxes = _boxes(ax)
    assert len(boxes) == 19
    heights = set()
    for box, choice in zip(boxes, arch.blocks):
        if choice.is_identity:
            assert box.get_linestyle() != "-" and box.get_facecolor()[:3] == (1.0, 1.0, 1.0)
            continue
        assert np.allclose(box.get_facecolor()[:3], plt_rgb(plots.KERNEL_COLOURS[choice.kernel]))
        assert np.allclose(box.get_edgecolor()[:3], plt_rgb(plots.SE_EDGE)) == choice.se
        heights.add((choice.expansion, box.get_height()))
    # one height per expansion rate, taller for 6
    by_e = dict(heights)
    assert len(heights) == len(by_e) and (by_e.get(6, 1) > by_e.get(3, 0))
    dashed_lines = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
    assert len(dashed_lines) == len(REDUCTION_LAYERS)  # one per stride-2 layer
    texts = {t.get_text() for t in ax.texts}
    assert {"112x112x16", "56x56x32", "28x28x40", "14x14x80", "14x14x96", "7x7x192", "7x7x320"} <= texts
    assert sum(t == "id" for t in (t.get_text() for t in ax.texts)) == arch.num_identity


def plt_rgb(colour):
    from matplotlib.colors import to_rgb
    return to_rgb(colour)


def test_layer_geometry_small_input_keeps_the_stem_resolution():
    big, small = plots.layer_geometry(224), plots.layer_geometry(32, small_input=True)
    assert big["out_size"].iloc[-1] == 7 and small["out_size"].iloc[-1] == 2
    assert list(big["out_channels"])[-1] == 320 and list(plots.layer_geometry(224, width_mult=0.5)["out_channels"])[-1] == 160


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig = plots.figure4({"SCARLET-C": SCARLET_C})
    paths = plots.save_figure(fig, "fig", tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[1].read_bytes()[:5] == b"%PDF-"


def _log(seed=0, steps=12, modes=(("identity", 0.3), ("let", 0.5))):
    rng = np.random.default_rng(seed)
    rows = []
    for mode, base in modes:
        for s in range(2):
            for step in range(steps):
                for p, a in enumerate(SPACE_NO_SE.sample_fair(rng)):
                    rows.append(dict(mode=mode, seed=s, epoch=step // 4, step=step, path=p, arch=str(a),
                                     acc=float(np.clip(base + rng.normal(0, 0.05), 0, 1)), batch_size=32))
    return pd.DataFrame(rows)


def test_stability_summary_matches_a_direct_computation():
    log = _log()
    summary = analysis.stability_summary(log, block_steps=4)
    d = log[(log["mode"] == "let") & (log["seed"] == 1) & (log["step"] // 4 == 2)]
    row = summary[(summary["mode"] == "let") & (summary["seed"] == 1) & (summary["block"] == 2)].iloc[0]
    assert row["mean_acc"] == pytest.approx(d["acc"].mean())
    assert row["std_acc"] == pytest.approx(d["acc"].std(ddof=0))
    assert row["within_step_std"] == pytest.approx(d.groupby("step")["acc"].std(ddof=0).mean())
    p = d["acc"].mean()
    assert row["noise_floor"] == pytest.approx(np.sqrt(p * (1 - p) / 32))
    assert row["paths"] == 4 * 7 and row["steps"] == 4


def test_stability_effects_and_far_below_share():
    log = _log()
    last = analysis.last_block(log, block_steps=4)
    assert set(last["step"]) == {8, 9, 10, 11}
    eff = analysis.stability_effects(log, chance=0.1, block_steps=4)
    assert list(eff["seed"]) == [0, 1]
    for _, r in eff.iterrows():
        d = last[last["seed"] == r["seed"]]
        thr = 0.1 + 0.5 * (d["acc"].median() - 0.1)
        assert r["threshold"] == pytest.approx(thr)
        ident = d[d["mode"] == "identity"]["acc"]
        assert r["far_below_identity"] == pytest.approx((ident < thr).mean())
        assert r["diff_mean"] == pytest.approx(d[d["mode"] == "let"]["acc"].mean() - ident.mean())
        assert r["std_ratio"] == pytest.approx(ident.std(ddof=0) / d[d["mode"] == "let"]["acc"].std(ddof=0))


def test_paired_bootstrap_interval():
    few = analysis.paired_bootstrap([0.1, 0.2])
    assert few["n"] == 2 and np.isnan(few["low"]) and few["mean"] == pytest.approx(0.15)
    d = [0.10, 0.12, 0.15, 0.11, 0.13]
    b = analysis.paired_bootstrap(d)
    assert min(d) <= b["low"] <= np.mean(d) <= b["high"] <= max(d)


def test_paired_gaps_pairs_by_seed():
    final = pd.DataFrame({"arm": ["a", "a", "a", "b", "b", "b"], "seed": [0, 1, 2, 0, 1, 2],
                          "acc": [0.5, 0.6, 0.7, 0.55, 0.62, 0.74]})
    g = analysis.paired_gaps(final, [("a", "b")]).iloc[0]
    diffs = np.array([0.05, 0.02, 0.04])
    assert g["comparison"] == "b - a" and g["mean_diff"] == pytest.approx(diffs.mean())
    assert g["cohens_dz"] == pytest.approx(diffs.mean() / diffs.std(ddof=1))


def test_arch_strata():
    s = analysis.arch_strata([SCARLET_B, SCARLET_C, Architecture([IDENTITY] + [0] * 18)])
    assert list(s["n_identity"]) == [2, 3, 1]
    assert list(s["identity_at_shape_change"]) == [False, False, True]


def test_channel_similarity_identical_orthogonal_and_zero_maps():
    a = np.random.default_rng(0).normal(size=(2, 3, 4, 4))
    sims = analysis.channel_similarity({0: a, 1: a.copy(), 2: np.zeros_like(a)}).set_index("choice")
    assert sims.loc[0, "mean_cosine_to_others"] == pytest.approx(0.5)  # 1 with its copy, 0 with the zero map
    assert sims.loc[2, "mean_cosine_to_others"] == 0.0


def test_well_above_chance():
    ok, msg = analysis.well_above_chance({"identity": 0.2, "let": 0.5}, 0.1)
    assert not ok and "Not a finding" in msg and "identity" in msg
    assert analysis.well_above_chance({"identity": 0.3, "let": 0.5}, 0.1)[0]


def test_figure1_carries_the_not_a_finding_banner_only_when_told():
    log = _log()
    summary = analysis.stability_summary(log, 4)
    last = analysis.last_block(log, 4)
    last = pd.concat([last, analysis.arch_strata(last["arch"])], axis=1)
    bad = plots.figure1(summary, last, 0.1, verdict=(False, "Not a finding: test"))
    good = plots.figure1(summary, last, 0.1, verdict=(True, "fine"))
    assert any("Not a finding" in t.get_text() for t in bad.texts)
    assert not any("Not a finding" in t.get_text() for t in good.texts)


def test_pareto_front_mask_matches_brute_force():
    rng = np.random.default_rng(1)
    acc, madds, params = rng.random(40), rng.random(40), rng.random(40)
    mask = plots._front_mask(acc, madds, params)
    F = np.column_stack([-acc, madds, -params])
    brute = [not any(np.all(F[j] <= F[i]) and np.any(F[j] < F[i]) for j in range(40)) for i in range(40)]
    assert mask.tolist() == brute


def test_importing_plots_changes_no_global_matplotlib_setting():
    import subprocess
    import sys

    code = ("import matplotlib; b = matplotlib.get_backend(); import matplotlib.pyplot as plt; "
            "before = dict(plt.rcParams); import scarlet_lib.plots; "
            "assert dict(plt.rcParams) == before; assert matplotlib.get_backend() == b; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_figures_get_the_suite_style_without_leaking_it():
    import matplotlib.pyplot as plt

    from scarlet_lib import plots

    before = plt.rcParams["axes.spines.top"]
    fig = plots.draw_architecture([0] * 19).figure
    assert fig.axes[0].spines["top"].get_visible() is False
    assert plt.rcParams["axes.spines.top"] == before
    plt.close(fig)
