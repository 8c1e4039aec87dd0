"""One function per paper figure, drawn from the tidy tables that training and search write.

* ``draw_architecture`` / ``figure4``: architecture diagrams in the style of the paper's Figure 4
  (colour = kernel size, box height = expansion rate, thick outline = SE, dashed lines at the
  downsampling points, feature-map shape above; identity slots drawn as empty dashed boxes).
* ``figure1``: supernet stability, identity vs LET (top: running training accuracy of the sampled
  paths per epoch/block, held-out accuracy after BN recalibration; bottom: last-block histograms,
  stratified).
* ``figure1_scores`` / ``effects_figure``: Figure 1 from one-shot scores of a fixed path set (histograms per
  arm, identity vs LET) and the claims' paired effects with their verdicts.
* ``figure3``: stand-alone training curves of the ablation arms.
* ``figure5`` / ``figure5_pages``: feature-map grids, every choice at one layer, identity vs LET supernets,
  page by page over all channels; ``figure5_similarity``: the choices' channel-matched cosine and linear CKA.
* ``pareto_fronts``: the search's fronts per generation, picked models, SCARLET-A/B/C on the cost axes.

All figures are saved through ``save_figure`` (PNG and PDF). A figure whose supernets are not yet
well above chance carries a visible warning instead of being presented as a finding
(``not_a_finding_banner``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import functools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from .analysis import (CLAIMS, _SUPERNET, _check_scores, _chosen_epochs, _paper_effect, _require, oneshot_summary,
                       stability_summary)
from .artifacts import FIGURE_FORMATS, output_dir
from .models import layer_shapes
from .space import Architecture, CHOICES, LAYERS, NUM_LAYERS

__all__ = [
    "save_figure", "KERNEL_COLOURS", "MODE_COLOURS", "layer_geometry", "draw_architecture", "figure4",
    "not_a_finding_banner", "figure1", "figure1_histograms", "figure1_scores", "effects_figure", "factor_effects_figure",
    "VERDICT_COLOURS",
    "figure1_running", "oneshot_strata", "ranking_scatter", "tau_by_size_figure", "standalone_curves",
    "figure3", "figure5", "figure5_pages", "figure5_similarity", "channel_pages", "pareto_fronts",
]

KERNEL_COLOURS = {3: "#4C72B0", 5: "#55A868", 7: "#DD8452"}  # colour-blind safe (seaborn "deep")
SE_EDGE = "#8B0000"
MODE_COLOURS = {"identity": "#C44E52", "let": "#4C72B0", "let_relu": "#DD8452", "folded": "#55A868"}
MODE_LABELS = {"identity": "identity", "let": "LET (linear)", "let_relu": "LET + ReLU",
               "folded": "folded stand-alone"}


# the suite's look, applied inside each figure function only (a caller's own rcParams are left alone)
STYLE = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5, "figure.dpi": 100,
         "axes.spines.top": False, "axes.spines.right": False}


def _styled(fn):
    """Run a figure function under ``plt.rc_context(STYLE)``."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with plt.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def save_figure(fig, name: str, out_dir: str | os.PathLike, formats: Sequence[str] = FIGURE_FORMATS,
                dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``<out_dir>/<name>.<fmt>`` for every format (PNG and PDF by default)."""
    out = output_dir(out_dir)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def not_a_finding_banner(fig_or_ax, text: str, y: float = 0.5, fontsize: float = 10) -> None:
    """A red banner across a figure (or axes), centred at height ``y``, saying why what is drawn is not a finding."""
    kw = dict(ha="center", va="center", fontsize=fontsize, color="white", wrap=True, zorder=10,
              bbox=dict(boxstyle="round", fc="#B22222", ec="none", alpha=0.9))
    if hasattr(fig_or_ax, "transAxes"):
        fig_or_ax.text(0.5, y, text, transform=fig_or_ax.transAxes, **kw)
    else:
        fig_or_ax.text(0.5, y, text, **kw)


# ------------------------------------------------------------------------------------------------
# Figure 4: architecture diagrams
# ------------------------------------------------------------------------------------------------

def layer_geometry(input_size: int = 224, width_mult: float = 1.0, small_input: bool = False) -> pd.DataFrame:
    """Shapes along the skeleton: one row per layer with in/out channels, stride and output resolution."""

    size = input_size if small_input else input_size // 2  # stem stride
    rows = []
    for i, (cin, cout, s) in enumerate(layer_shapes(width_mult)):
        size_in = size
        size = (size + s - 1) // s
        rows.append(dict(layer=i + 1, in_channels=cin, out_channels=cout, stride=s, in_size=size_in, out_size=size))
    return pd.DataFrame(rows)


@_styled
def draw_architecture(arch, ax=None, title: str | None = None, input_size: int = 224, width_mult: float = 1.0,
                      small_input: bool = False, show_tokens: bool = True, legend: bool = False):
    """Draw one architecture as a row of blocks in the paper's Figure 4 style; returns the axes.

    Box colour = kernel size (3/5/7), box height = expansion rate (3 short, 6 tall), dark-red thick
    outline = squeeze-excitation, empty dashed box = identity slot, dashed vertical line = a
    downsampling (stride-2) layer starts, ``HxWxC`` above = feature-map shape after that layer,
    written wherever the shape changes.
    """
    arch = Architecture.coerce(arch)
    geo = layer_geometry(input_size, width_mult, small_input)
    if ax is None:
        _, ax = plt.subplots(figsize=(13, 2.6))
    step, box_w, base = 1.0, 0.72, 0.0
    heights = {3: 0.55, 6: 1.0}
    first = geo.iloc[0]
    stem_x = -1.6
    ax.text(stem_x, 1.3, f"{first.in_size}x{first.in_size}x{first.in_channels}", ha="center", fontsize=7.5,
            color="0.25")
    ax.add_patch(Rectangle((stem_x - box_w / 2, base), box_w, 0.4, fc="0.8", ec="0.4"))
    ax.text(stem_x, -0.18, "stem", ha="center", va="top", fontsize=7.5)
    for i, choice in enumerate(arch.blocks):
        x = i * step
        row = geo.iloc[i]
        if row.stride == 2:
            ax.axvline(x - step / 2, ls="--", lw=1, color="0.45", ymin=0.05, ymax=0.8)
        if choice.is_identity:
            ax.add_patch(Rectangle((x - box_w / 2, base), box_w, 0.3, fc="white", ec="0.5", ls=(0, (2, 2)), lw=1))
            label = "id"
        else:
            h = heights[choice.expansion]
            ax.add_patch(Rectangle((x - box_w / 2, base), box_w, h, fc=KERNEL_COLOURS[choice.kernel],
                                   ec=SE_EDGE if choice.se else "0.15", lw=2.6 if choice.se else 0.8))
            label = f"e{choice.expansion}k{choice.kernel}"
        if show_tokens:
            ax.text(x, -0.18, label, ha="center", va="top", fontsize=7, rotation=90)
        changes = row.stride != 1 or row.in_channels != row.out_channels or i == NUM_LAYERS - 1
        if changes:
            ax.text(x, 1.3, f"{row.out_size}x{row.out_size}x{row.out_channels}", ha="center", fontsize=7.5,
                    color="0.25")
    ax.set_xlim(-2.3, NUM_LAYERS - 0.3)
    ax.set_ylim(-1.0, 1.6)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        ax.set_title(title, loc="left", fontsize=11)
    if legend:
        ax.legend(handles=architecture_legend_handles(), loc="upper left", bbox_to_anchor=(1.0, 1.0),
                  frameon=False, fontsize=8)
    return ax


def architecture_legend_handles():
    return ([Patch(fc=c, ec="0.15", label=f"kernel {k}x{k}") for k, c in KERNEL_COLOURS.items()]
            + [Patch(fc="white", ec=SE_EDGE, lw=2.6, label="with SE"),
               Patch(fc="white", ec="0.5", ls="--", label="identity"),
               Patch(fc="0.9", ec="0.15", label="tall = expansion 6, short = 3"),
               Line2D([], [], ls="--", color="0.45", label="downsampling")])


@_styled
def figure4(archs: Mapping[str, object], costs: Mapping[str, tuple[float, float]] | None = None,
            input_size: int = 224, width_mult: float = 1.0, small_input: bool = False):
    """Several architectures stacked, one row each (paper Figure 4). ``costs``: name -> (MAdds M, params M)."""
    archs = dict(archs)
    fig, axes = plt.subplots(len(archs), 1, figsize=(14, 2.5 * len(archs) + 0.4), squeeze=False)
    for ax, (name, arch) in zip(axes[:, 0], archs.items()):
        title = name
        if costs and name in costs:
            m, p = costs[name]
            title += f"   ({m:.1f}M MAdds, {p:.2f}M params, depth {Architecture.coerce(arch).depth})"
        draw_architecture(arch, ax=ax, title=title, input_size=input_size, width_mult=width_mult,
                          small_input=small_input)
    fig.legend(handles=architecture_legend_handles(), loc="lower center", ncol=7, frameon=False, fontsize=8.5)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


# ------------------------------------------------------------------------------------------------
# Figure 1: supernet stability, identity vs LET
# ------------------------------------------------------------------------------------------------

def _mode_label(m):
    return MODE_LABELS.get(m, str(m))


@_styled
def figure1(summary: pd.DataFrame, last: pd.DataFrame, chance: float, eval_table: pd.DataFrame | None = None,
            verdict: tuple[bool, str] | None = None, threshold: float | None = None, block_name: str = "epoch"):
    """Paper Figure 1 with the extra controls the issue asks for, as one 2x3 figure.

    Top: running training accuracy of the sampled paths (mean over seeds of the per-block mean, band =
    spread among paths, thin lines = seeds); the spreads against the batch-noise floor; held-out accuracy
    of a fixed set of paths after BN recalibration. Bottom: histogram of every path accuracy of the last
    block, then the same stratified by number of identities and by identity at a shape-changing layer.

    ``summary`` comes from ``analysis.stability_summary``, ``last`` from ``analysis.last_block`` joined
    with ``analysis.arch_strata``, ``eval_table`` has ``mode, seed, epoch, acc``. ``verdict`` from
    ``analysis.well_above_chance``: when it is False the figure carries a "not a finding" banner.
    """
    import seaborn as sns

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.2))
    modes = [m for m in ("identity", "let", "let_relu") if m in set(summary["mode"])]
    ax = axes[0, 0]
    for m in modes:
        s = summary[summary["mode"] == m]
        g = s.groupby("block")
        mean, spread = g["mean_acc"].mean(), g["std_acc"].mean()
        c = MODE_COLOURS.get(m)
        ax.plot(mean.index, 100 * mean, color=c, lw=2, label=f"{_mode_label(m)} (mean of paths)")
        ax.fill_between(mean.index, 100 * (mean - spread), 100 * (mean + spread), color=c, alpha=0.18)
        for _, ss in s.groupby("seed"):
            ax.plot(ss["block"], 100 * ss["mean_acc"], color=c, lw=0.7, alpha=0.5)
    ax.axhline(100 * chance, color="0.4", ls=":", lw=1, label="chance")
    ax.set_ylim(bottom=0)
    ax.set(xlabel=block_name, ylabel="running training accuracy (%)",
           title="Sampled paths: mean ± s.d. among paths")
    ax.legend(loc="upper left")

    ax = axes[0, 1]
    for m in modes:
        g = summary[summary["mode"] == m].groupby("block")
        c = MODE_COLOURS.get(m)
        ax.plot(g["std_acc"].mean().index, 100 * g["std_acc"].mean(), color=c, lw=2,
                label=f"{_mode_label(m)}: among all paths")
        ax.plot(g["within_step_std"].mean().index, 100 * g["within_step_std"].mean(), color=c, lw=1.5, ls=":",
                label=f"{_mode_label(m)}: among paths of one step")
        ax.plot(g["noise_floor"].mean().index, 100 * g["noise_floor"].mean(), color=c, lw=1, ls="--", alpha=0.7,
                label=f"{_mode_label(m)}: batch-noise floor")
    ax.set(xlabel=block_name, ylabel="standard deviation (points)", title="Spread of path accuracies")
    ax.legend(fontsize=7.5)

    ax = axes[0, 2]
    if eval_table is not None and len(eval_table):
        for m in modes:
            e = eval_table[eval_table["mode"] == m]
            if not len(e):
                continue
            g = e.groupby("epoch")["acc"]
            c = MODE_COLOURS.get(m)
            ax.errorbar(g.mean().index, 100 * g.mean(), yerr=100 * g.std(ddof=0), color=c, marker="o", capsize=3,
                        label=_mode_label(m))
        ax.axhline(100 * chance, color="0.4", ls=":", lw=1, label="chance")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no held-out evaluation in this run", ha="center", transform=ax.transAxes)
    ax.set(xlabel="epoch", ylabel="held-out accuracy (%)", title="Fixed paths, BN recalibrated, held-out")

    ax = axes[1, 0]
    bins = np.linspace(0, 100, 41)
    for m in modes:
        d = last[last["mode"] == m]["acc"]
        ax.hist(100 * d, bins=bins, alpha=0.55, color=MODE_COLOURS.get(m), label=f"{_mode_label(m)} (n={len(d)})")
    ax.axvline(100 * chance, color="0.4", ls=":", lw=1, label="chance")
    if threshold is not None:
        ax.axvline(100 * threshold, color="k", ls="--", lw=1, label="far-below threshold")
    ax.set(xlabel="path training accuracy in the last block (%)", ylabel="paths", title="Last-block paths")
    ax.legend()

    strata = [("n_identity", "number of identity choices in the path"),
              ("identity_at_shape_change", "identity at a stride-2 / channel-changing layer")]
    for ax, (col, label) in zip(axes[1, 1:], strata):
        if col in last.columns:
            d = last.assign(acc_pct=100 * last["acc"], mode_label=last["mode"].map(_mode_label))
            if d[col].dtype == bool:
                d[col] = d[col].map({False: "no", True: "yes"})
            palette = {_mode_label(m): MODE_COLOURS.get(m) for m in modes}
            sns.boxplot(data=d, x=col, y="acc_pct", hue="mode_label", palette=palette, ax=ax, fliersize=0,
                        boxprops=dict(alpha=0.45))
            sns.stripplot(data=d, x=col, y="acc_pct", hue="mode_label", palette=palette, ax=ax, dodge=True,
                          size=2.5, alpha=0.6, legend=False)
            counts = d.groupby(col).size()
            ax.set_xticks(range(len(counts)), [f"{k}\n(n={v})" for k, v in counts.items()])
            ax.axhline(100 * chance, color="0.4", ls=":", lw=1)
            ax.set(xlabel=label, ylabel="path training accuracy (%)", title="Last block, stratified")
            ax.legend(title=None, fontsize=8)
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    if verdict is not None and not verdict[0]:
        fig.subplots_adjust(top=0.86)
        not_a_finding_banner(fig, verdict[1], y=0.95)
    return fig


@_styled
def figure1_histograms(last: pd.DataFrame, chance: float):
    """Paper Figure 1 bottom alone: histograms of last-block path accuracies, one panel per mode."""
    modes = [m for m in ("identity", "let", "let_relu") if m in set(last["mode"])]
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 3.4), sharey=True, squeeze=False)
    bins = np.linspace(0, 100, 41)
    for ax, m in zip(axes[0], modes):
        d = last[last["mode"] == m]["acc"]
        ax.hist(100 * d, bins=bins, color=MODE_COLOURS.get(m))
        ax.axvline(100 * chance, color="0.4", ls=":", lw=1)
        ax.set(title=_mode_label(m), xlabel="path training accuracy (%)", ylabel="paths")
    fig.tight_layout()
    return fig


@_styled
def figure1_scores(scores: pd.DataFrame, chance: float, epoch: int | None = None, far_below_points: float = 0.2,
                   verdicts: pd.DataFrame | None = None):
    """Paper Figure 1 bottom from proper one-shot scores: per arm, identity vs LET histograms over seeds.

    ``scores``: the tidy one-shot scores table (``analysis.SCORE_COLUMNS``); each arm is read at ``epoch``
    (None: its last). Dashed lines: the far-below threshold of each seed (``analysis.oneshot_summary``);
    dotted: chance. ``verdicts`` (``analysis.claim_verdicts``): an arm whose claims are all
    "uninformative at this scale" carries a "not a finding" banner.
    """
    import textwrap


    _check_scores(scores, _SUPERNET + ["path_id", "heldout_acc", "n_images"])
    chosen = _chosen_epochs(scores, epoch)
    arms = list(chosen)
    fig, axes = plt.subplots(1, len(arms), figsize=(5.6 * len(arms), 4.8), squeeze=False)
    for ax, arm in zip(axes[0], arms):
        d = scores[(scores["arm"] == arm) & (scores["epoch"] == chosen[arm])]
        summ = oneshot_summary(d, far_below_points)
        thresholds = 100 * summ.loc[summ["identity_mode"] == "identity", "threshold"].dropna().to_numpy()
        values = np.concatenate([100 * d["heldout_acc"].to_numpy(float), thresholds])
        bins = np.histogram_bin_edges(values, bins=30)
        for m in [m for m in ("identity", "let", "let_relu") if m in set(d["identity_mode"])]:
            dm, sm = d[d["identity_mode"] == m], summ[summ["identity_mode"] == m]
            label = (f"{_mode_label(m)}: {len(dm)} paths, {dm['seed'].nunique()} seeds, "
                     f"mean {100 * dm['heldout_acc'].mean():.1f}%")
            if sm["far_below_share"].notna().any():
                label += f", {100 * sm['far_below_share'].mean():.1f}% far below"
            ax.hist(100 * dm["heldout_acc"], bins=bins, alpha=0.55, color=MODE_COLOURS.get(m), label=label)
        for i, t in enumerate(thresholds):
            ax.axvline(t, color="k", ls="--", lw=1, alpha=0.8,
                       label=(f"far below: identity median - {100 * far_below_points:.0f} points (per seed)"
                              if i == 0 else None))
        ax.axvline(100 * chance, color="0.4", ls=":", lw=1.2, label=f"chance {100 * chance:.0f}%")
        ax.set_xlim(max(0.0, min(bins[0], 100 * chance) - 2), min(100.0, bins[-1] + 2))
        ax.set(xlabel="held-out one-shot accuracy, BN recalibrated (%)", ylabel="paths",
               title=f"{arm} (epoch {chosen[arm]})")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
        if verdicts is not None and len(verdicts):
            v = verdicts[verdicts["arm"] == arm]
            if len(v) and (v["verdict"] == "uninformative at this scale").all():
                not_a_finding_banner(ax, "\n".join(textwrap.wrap("Not a finding: " + v["reason"].iloc[0], 48)))
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"reproduced": "#55A868", "not reproduced": "#C44E52", "uninformative at this scale": "0.55"}


@_styled
def effects_figure(effects: pd.DataFrame, verdicts: pd.DataFrame | None = None):
    """Forest plot per claim (C1-C3): LET - identity estimate and interval per arm, zero line, verdicts.

    ``effects`` from ``analysis.oneshot_effects``, ``verdicts`` from ``analysis.claim_verdicts`` (colour and
    the verdict written over each estimate). The shaded side of zero is the paper's; a dashed line marks the
    paper's effect size where it gives one (``analysis.PAPER_EFFECTS``).
    """

    claims = [c for c in CLAIMS if c in set(effects["claim"])]
    arms = list(dict.fromkeys(effects["arm"]))
    fig, axes = plt.subplots(1, len(claims), figsize=(4.8 * len(claims), 1.0 + 0.75 * len(arms) + 1.0),
                             sharey=True, squeeze=False)
    y_of = {a: len(arms) - 1 - i for i, a in enumerate(arms)}
    for ax, claim in zip(axes[0], claims):
        spec = CLAIMS[claim]
        e = effects[effects["claim"] == claim]
        ends = [0.0]
        for r in e.itertuples():
            verdict = None
            if verdicts is not None:
                v = verdicts[(verdicts["arm"] == r.arm) & (verdicts["claim"] == claim)]
                verdict = v["verdict"].iloc[0] if len(v) else None
            colour = VERDICT_COLOURS.get(verdict, "k")
            y = y_of[r.arm]
            if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
                ax.errorbar([r.estimate], [y], xerr=[[r.estimate - r.ci_low], [r.ci_high - r.estimate]], fmt="o",
                            color=colour, capsize=4, ms=6)
                ends += [r.ci_low, r.ci_high]
            elif np.isfinite(r.estimate):
                ax.plot([r.estimate], [y], "o", mfc="white", color=colour, ms=6)
                ends.append(r.estimate)
            note = f"{r.estimate:+.1f}, {int(r.seeds)} seeds" + ("" if np.isfinite(r.ci_low) else ", no interval")
            if verdict:
                note = f"{verdict} ({note})"
            ax.annotate(note, (r.estimate if np.isfinite(r.estimate) else 0.0, y), textcoords="offset points",
                        xytext=(0, 8), ha="center", fontsize=8, color=colour)
        target = _paper_effect(claim)
        if target is not None:
            ends.append(target)
            ax.axvline(target, color="0.3", lw=1, ls="--")
            ax.text(target, 0.98, f"paper {target:+.0f} ", transform=ax.get_xaxis_transform(), rotation=90,
                    ha="right", va="top", fontsize=8, color="0.35")
        half = 1.25 * max(abs(min(ends)), abs(max(ends)), 1.0)
        ax.set_xlim(-half, half)
        ax.axvline(0, color="0.3", lw=1)
        if spec["paper_sign"] > 0:
            ax.axvspan(0, half, color=VERDICT_COLOURS["reproduced"], alpha=0.08, lw=0)
        else:
            ax.axvspan(-half, 0, color=VERDICT_COLOURS["reproduced"], alpha=0.08, lw=0)
        ax.text(0.98 if spec["paper_sign"] > 0 else 0.02, 0.02, "paper's side",
                ha="right" if spec["paper_sign"] > 0 else "left", va="bottom", fontsize=8, color="0.35",
                transform=ax.transAxes)
        ax.set_ylim(-0.7, len(arms) - 0.3)
        ax.set_yticks([y_of[a] for a in arms], arms)
        conf = float(e["confidence"].iloc[0]) if "confidence" in e and len(e) else 0.95
        ax.set(xlabel=f"LET - identity ({spec['unit']}): mean over seeds, {100 * conf:.0f}% CI",
               title=spec["effect"].split(", LET")[0])
    fig.tight_layout()
    return fig


def factor_effects_figure(table: pd.DataFrame):
    """``effects_figure`` for ``analysis.factor_effects``: one row per run and arm, labelled with the run's factors.

    The verdict shown is ``checked_verdict`` where the table has it (``analysis.length_checked``), else ``verdict``.
    """
    _require(table, ["run", "arm", "claim", "estimate", "ci_low", "ci_high", "seeds", "verdict"], "factor table")
    factors = list(table.columns[1:table.columns.get_loc("arm")])  # factor_effects puts them between run and arm

    def label(r) -> str:
        named = ", ".join(f"{k} {r[k]:g}" if isinstance(r[k], (int, float)) and not isinstance(r[k], bool)
                          else f"{k} {r[k]}" for k in factors)
        return f"{r['arm']}\n{named}" if named else f"{r['arm']} ({r['run']})"

    rows = table.assign(arm=table.apply(label, axis=1))
    shown = rows["checked_verdict"] if "checked_verdict" in rows else rows["verdict"]
    return effects_figure(rows, rows[["arm", "claim"]].assign(verdict=shown))


# ------------------------------------------------------------------------------------------------
# Figure 3: ReLU vs linear LET ablation (stand-alone training curves)
# ------------------------------------------------------------------------------------------------

@_styled
def figure3(curves: pd.DataFrame, value: str = "acc", split_col: str = "split", gaps: pd.DataFrame | None = None,
            chance: float | None = None, verdict: tuple[bool, str] | None = None):
    """Training curves per arm (mean ± s.d. over seeds, thin lines = seeds), one panel per split.

    ``curves`` has ``arm, seed, epoch, <split_col>, <value>``; ``gaps`` (from ``analysis.paired_gaps``) is
    drawn as a last panel of per-comparison mean differences with their bootstrap intervals.
    """
    splits = list(dict.fromkeys(curves[split_col])) if split_col in curves else [None]
    n = len(splits) + (gaps is not None)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.9), squeeze=False)
    for ax, split in zip(axes[0], splits):
        d = curves if split is None else curves[curves[split_col] == split]
        for arm, da in d.groupby("arm", sort=False):
            c = MODE_COLOURS.get(arm)
            g = da.groupby("epoch")[value]
            ax.plot(g.mean().index, 100 * g.mean(), color=c, lw=2, label=f"{_mode_label(arm)} (n={da['seed'].nunique()})")
            ax.fill_between(g.mean().index, 100 * (g.mean() - g.std(ddof=0)), 100 * (g.mean() + g.std(ddof=0)),
                            color=c, alpha=0.15)
            for _, ds in da.groupby("seed"):
                ax.plot(ds["epoch"], 100 * ds[value], color=c, lw=0.6, alpha=0.4)
        if chance is not None:
            ax.axhline(100 * chance, color="0.4", ls=":", lw=1)
        ax.set(xlabel="epoch", ylabel=f"{split or ''} accuracy (%)".strip(), title=f"{split or value}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    if gaps is not None:
        ax = axes[0, -1]
        y = np.arange(len(gaps))
        ax.errorbar(100 * gaps["mean_diff"], y, xerr=[100 * (gaps["mean_diff"] - gaps["ci_low"]).fillna(0),
                                                      100 * (gaps["ci_high"] - gaps["mean_diff"]).fillna(0)],
                    fmt="o", color="k", capsize=4)
        ax.axvline(0, color="0.5", lw=1)
        ax.set_yticks(y, gaps["comparison"].map(lambda s: " - ".join(_mode_label(p) for p in s.split(" - "))))
        ax.set(xlabel="final held-out accuracy difference (points)", title="Paired gap, 95% bootstrap CI")
    fig.tight_layout()
    if verdict is not None and not verdict[0]:
        fig.subplots_adjust(top=0.78)
        not_a_finding_banner(fig, verdict[1], y=0.93, fontsize=9.5)
    return fig


# ------------------------------------------------------------------------------------------------
# Figure 5: feature maps
# ------------------------------------------------------------------------------------------------

def _as_maps(f) -> np.ndarray:
    return np.asarray(f.detach().cpu() if hasattr(f, "detach") else f)


def channel_pages(n_channels: int, per_page: int) -> list[tuple[int, int]]:
    """``(start, stop)`` channel ranges of ``per_page`` channels that together cover all ``n_channels``."""
    if n_channels < 1 or per_page < 1:
        raise ValueError(f"need at least one channel and one channel per page; got {n_channels}, {per_page}")
    return [(a, min(a + per_page, n_channels)) for a in range(0, n_channels, per_page)]


def _row_label(choice, sims: Mapping) -> str:
    label = CHOICES[int(choice)].token
    cos, cka = sims.get(("mean_cosine_to_others", choice)), sims.get(("mean_cka_to_others", choice))
    if cos is not None and np.isfinite(cos):
        label += f"\ncos {cos:.2f}"
    if cka is not None and np.isfinite(cka):
        label += f"\nCKA {cka:.2f}"
    return label


def _map_strip(maps: np.ndarray, chans: Sequence[int], gap_px: int, scale: int) -> tuple[np.ndarray, list[bool]]:
    """Channels ``chans`` of ``maps`` (C, H, W), each scaled to its own range and enlarged ``scale`` times
    (nearest), side by side with ``gap_px`` NaN columns between them; which of them are all zero."""
    tiles, zero = [], []
    for ch in chans:
        if ch >= maps.shape[0]:
            tiles.append(np.full((maps.shape[1] * scale, maps.shape[2] * scale), np.nan))
            zero.append(False)
            continue
        img = maps[ch].astype(float)
        lo, hi = float(img.min()), float(img.max())
        zero.append(lo == hi == 0)
        tiles.append(np.kron((img - lo) / (hi - lo) if hi > lo else np.zeros_like(img), np.ones((scale, scale))))
    gap = np.full((tiles[0].shape[0], gap_px), np.nan)
    strip = [t for tile in tiles for t in (tile, gap)][:-1]
    return np.concatenate(strip, axis=1), zero


@_styled
def figure5(grids: Mapping[str, Mapping[int, object]], similarity: Mapping[str, pd.DataFrame] | None = None,
            channels: int = 8, title: str = "", image_index: int = 0, channel_start: int = 0, cell: float = 1.0):
    """Feature-map grids, the modes side by side: a row per choice, a column per channel.

    ``grids``: mode -> {choice: tensor (N, C, H, W)} captured at one layer for the same images with the
    same prefix path. Channels ``channel_start`` to ``channel_start + channels`` of image ``image_index`` are
    drawn, each map ``cell`` inches high and wide whatever its resolution (``figure5_pages`` covers every
    channel). Each map is scaled to its own range (the point is structure, not magnitude); an all-zero map
    (a plain identity's padded channel) is marked "zero". ``similarity``: mode -> table from
    ``analysis.channel_similarity``; its cosine and CKA columns are printed next to each row.
    """
    from matplotlib import colormaps

    modes = list(grids)
    choices = list(dict.fromkeys(c for m in modes for c in grids[m]))
    shapes = [_as_maps(f).shape for m in modes for f in grids[m].values()]
    n_ch, side = max(sh[1] for sh in shapes), max(sh[2] for sh in shapes)
    if not 0 <= channel_start < n_ch:
        raise ValueError(f"channel_start must be in 0..{n_ch - 1}, got {channel_start}")
    chans = list(range(channel_start, min(channel_start + channels, n_ch)))
    scale = max(1, -(-64 // side))  # every map drawn from >= 64 pixels a side, so thin gaps can separate them
    gap_px = max(1, round(0.07 * side * scale / cell))
    strip_w = cell * (len(chans) + (len(chans) - 1) * gap_px / (side * scale))  # inches
    label_w, row_gap, top, bottom = 1.1, 0.07, 1.0 if title else 0.65, 0.1
    ratios = [label_w, strip_w] * len(modes)
    width = sum(ratios) + 0.3 * (len(modes) - 1) + 0.2
    height = cell * len(choices) + row_gap * (len(choices) - 1) + top + bottom
    fig = plt.figure(figsize=(width, height))
    gs = fig.add_gridspec(len(choices), len(ratios), width_ratios=ratios, left=0.1 / width, right=1 - 0.1 / width,
                          top=1 - top / height, bottom=bottom / height, hspace=row_gap / cell,
                          wspace=0.3 * (len(modes) - 1) / max(1, len(ratios) - 1) / (sum(ratios) / len(ratios)))
    cmap = colormaps["viridis"].with_extremes(bad="white")
    centres = [(side * scale + gap_px) * j + (side * scale - 1) / 2 for j in range(len(chans))]
    for k, m in enumerate(modes):
        sims = {}
        if similarity is not None and m in similarity:
            table = similarity[m]
            for col in ("mean_cosine_to_others", "mean_cka_to_others"):
                if col in table:
                    sims.update({(col, c): v for c, v in zip(table["choice"], table[col])})
        for r, c in enumerate(choices):
            lab = fig.add_subplot(gs[r, 2 * k])
            lab.axis("off")
            ax = fig.add_subplot(gs[r, 2 * k + 1])
            ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            ax.tick_params(length=0, labelsize=8, top=r == 0, labeltop=r == 0, bottom=False, labelbottom=False)
            ax.set_xticks(centres, [f"ch {ch}" for ch in chans] if r == 0 else [])
            if r == 0:
                ax.set_title(_mode_label(m), fontsize=11, fontweight="bold", pad=16)
            if c not in grids[m]:
                ax.set_xlim(-0.5, centres[-1] + side * scale / 2)
                continue
            lab.text(0.95, 0.5, _row_label(c, sims), transform=lab.transAxes, ha="right", va="center", fontsize=9)
            strip, zero = _map_strip(_as_maps(grids[m][c])[image_index], chans, gap_px, scale)
            ax.imshow(strip, cmap=cmap, vmin=0, vmax=1, interpolation="nearest", aspect="equal")
            for x, z in zip(centres, zero):
                if z:
                    ax.text(x, (strip.shape[0] - 1) / 2, "zero", ha="center", va="center", fontsize=8, color="w")
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.08 / height, va="top")
    return fig


def figure5_pages(grids: Mapping[str, Mapping[int, object]], similarity: Mapping[str, pd.DataFrame] | None = None,
                  channels: int = 8, title: str = "", image_index: int = 0, cell: float = 1.0) -> list:
    """``figure5`` once per page of ``channels`` channels, so that every channel of the layer is drawn.

    Returns ``[(start, stop, figure)]``; each title ends with the page's channel range.
    """
    n_ch = max(_as_maps(f).shape[1] for m in grids for f in grids[m].values())
    pages = []
    for a, b in channel_pages(n_ch, channels):
        head = f"{title}: " if title else ""
        fig = figure5(grids, similarity, channels=channels, channel_start=a, image_index=image_index, cell=cell,
                      title=f"{head}channels {a}-{b - 1} of {n_ch}")
        pages.append((a, b, fig))
    return pages


@_styled
def figure5_similarity(pairs: pd.DataFrame, title: str = ""):
    """Choice-by-choice similarity matrices: a row per layer, channel-matched cosine and linear CKA per mode.

    ``pairs``: ``analysis.choice_similarity_pairs`` rows with ``layer`` and ``mode`` columns added. Cosine is
    drawn on [-1, 1] (0 = unrelated channels), CKA on [0, 1]; every cell carries its value.
    """

    _require(pairs, ["layer", "mode", "choice_a", "choice_b", "cosine", "cka"], "similarity pairs")
    layers, modes = sorted(pairs["layer"].unique()), list(dict.fromkeys(pairs["mode"]))
    measures = [("cosine", "channel-matched cosine", "RdBu_r", -1.0), ("cka", "linear CKA", "viridis", 0.0)]
    n = pairs["choice_a"].nunique()
    size = max(2.6, 0.42 * n + 1.0)
    fig, axes = plt.subplots(len(layers), len(modes) * len(measures), squeeze=False, layout="constrained",
                             figsize=(size * len(modes) * len(measures) + 0.8, size * len(layers) + 0.6))
    for r, layer in enumerate(layers):
        for i, (col, name, cmap, vmin) in enumerate(measures):
            for k, m in enumerate(modes):
                ax = axes[r, i * len(modes) + k]
                d = pairs[(pairs["layer"] == layer) & (pairs["mode"] == m)]
                mat = d.pivot(index="choice_a", columns="choice_b", values=col)
                labels = [CHOICES[int(c)].token for c in mat.index]
                im = ax.imshow(mat.to_numpy(float), cmap=cmap, vmin=vmin, vmax=1.0)
                ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
                ax.set_yticks(range(len(labels)), labels, fontsize=8)
                for (a, b), v in np.ndenumerate(mat.to_numpy(float)):
                    if np.isfinite(v):
                        light = (v - vmin) / (1 - vmin)
                        colour = "k" if (0.3 < light < 0.75 if cmap == "RdBu_r" else light > 0.55) else "w"
                        ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=6.5, color=colour)
                ax.set_title(f"layer {layer}, {_mode_label(m)}\n{name}", fontsize=9)
                for sp in ax.spines.values():
                    sp.set_visible(False)
            fig.colorbar(im, ax=list(axes[r, i * len(modes):(i + 1) * len(modes)]), shrink=0.8, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


# ------------------------------------------------------------------------------------------------
# Search: Pareto fronts
# ------------------------------------------------------------------------------------------------

def _front_mask(acc: np.ndarray, madds: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
    """Non-dominated points of min {-acc, MAdds, -params} (or {-acc, MAdds} without params; pymoo's sorting)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    cols = [-acc, madds] + ([-params] if params is not None else [])
    F = np.column_stack(cols).astype(float)
    mask = np.zeros(len(F), dtype=bool)
    if len(F):
        mask[NonDominatedSorting().do(F, only_non_dominated_front=True)] = True
    return mask


@_styled
def pareto_fronts(history: pd.DataFrame, references: Mapping[str, tuple[float, float]] | None = None,
                  picked: pd.DataFrame | None = None, acc: str = "acc", madds: str = "madds_m",
                  params: str = "params_m", generation: str = "generation", n_generations: int = 5):
    """Search result on two panels.

    Left: one-shot accuracy vs MAdds front (2-D, feasible models evaluated up to each shown generation),
    SCARLET-A/B/C as labelled vertical lines: their accuracy is ImageNet top-1 and is not drawn
    on the same axis as one-shot accuracy on other data. Right: params vs MAdds of every evaluated
    model (grey), the final front, the picked models and SCARLET-A/B/C.
    ``references``: name -> (MAdds M, params M) at the same input size and width as the history's costs.
    """
    h = history
    if "feasible" in h.columns:
        h = h[h["feasible"].astype(bool)]
    gens = sorted(h[generation].unique())
    shown = sorted(set(np.linspace(0, len(gens) - 1, min(n_generations, len(gens))).round().astype(int)))
    cmap = plt.get_cmap("viridis")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.6))
    for k, gi in enumerate(shown):
        g = gens[gi]
        d = h[h[generation] <= g].drop_duplicates("arch") if "arch" in h.columns else h[h[generation] <= g]
        d = d[_front_mask(d[acc].values, d[madds].values)].sort_values(madds)  # accuracy-MAdds front
        colour = cmap(k / max(1, len(shown) - 1))
        a1.step(d[madds], 100 * d[acc], where="post", marker="o", ms=3.5, lw=1.2, color=colour,
                label=f"up to generation {g}")
    for name, (m, _) in (references or {}).items():
        a1.axvline(m, color="0.3", ls="--", lw=0.9)
        a1.text(m, 1.0, name, rotation=90, va="top", ha="right", fontsize=8, transform=a1.get_xaxis_transform())
    a1.set(xlabel="MAdds (M)", ylabel="one-shot accuracy (%)", title="Accuracy-MAdds front of all models so far")
    a1.legend(fontsize=8)
    a2.scatter(h[madds], h[params], s=6, color="0.75", label="evaluated")
    final = h.drop_duplicates("arch") if "arch" in h.columns else h
    final = final[_front_mask(final[acc].values, final[madds].values, final[params].values)]
    a2.scatter(final[madds], final[params], s=18, color=cmap(1.0), label="final front (3 objectives)")
    if picked is not None and len(picked):
        a2.scatter(picked[madds], picked[params], s=140, marker="*", color="#C44E52", ec="k", label="picked", zorder=5)
    for name, (m, p) in (references or {}).items():
        a2.scatter([m], [p], marker="s", s=50, color="k", zorder=6)
        a2.annotate(name, (m, p), textcoords="offset points", xytext=(5, 4), fontsize=8)
    a2.set(xlabel="MAdds (M)", ylabel="parameters (M)", title="Cost axes: search vs SCARLET-A/B/C")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# LET equivalence (notebook 1): measured errors
# ------------------------------------------------------------------------------------------------

@_styled
def let_errors(checks: pd.DataFrame, study: pd.DataFrame | None = None, tol: float = 1e-12):
    """Relative errors of the LET folds (log scale), exact cases vs the ones the math says fail.

    Left: every Lemma 2 check (``let.lemma_checks``), one marker per case, grouped by folding form,
    coloured by whether the math says it is exact. Right: whole-network folding error per architecture
    and LET weight kind (``let.drop_error_study``), "drop" vs "exact" mode.
    """
    n = 1 + (study is not None)
    fig, axes = plt.subplots(1, n, figsize=(6.8 * n, 4.2), squeeze=False)
    ax = axes[0, 0]
    c = checks[checks["lemma"] == 2].copy()
    forms = list(dict.fromkeys(c["form"]))
    floor = 1e-18
    for i, form in enumerate(forms):
        d = c[c["form"] == form]
        jitter = np.linspace(-0.25, 0.25, len(d)) if len(d) > 1 else np.zeros(1)
        colours = np.where(d["expected_exact"], "#4C72B0", "#C44E52")
        ax.scatter(np.clip(d["rel_error"], floor, None), i + jitter, c=colours, s=14)
    ax.axvline(tol, color="k", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(forms)), [f.replace(", ", ",\n") for f in forms], fontsize=8)
    ax.set(xlabel="relative error vs 1x1 conv then kxk conv (float64)", title="Lemma 2: every kernel and stride")
    ax.legend(handles=[Line2D([], [], marker="o", ls="", color="#4C72B0", label="math says exact"),
                       Line2D([], [], marker="o", ls="", color="#C44E52", label="math says not exact"),
                       Line2D([], [], ls="--", color="k", label=f"tolerance {tol:g}")], fontsize=8, loc="lower right")
    if study is not None:
        import seaborn as sns

        ax = axes[0, 1]
        d = study.assign(err=np.clip(study["max_rel_error"], floor, None),
                         case=study["arch"] + " / " + study["let_weights"])
        sns.barplot(data=d, y="case", x="err", hue="mode", ax=ax, palette={"drop": "#C44E52", "exact": "#4C72B0"},
                    errorbar=None)
        ax.set_xscale("log")
        ax.set(xlabel="max |logit difference| / max |logit|", ylabel="",
               title="Whole network: LET network vs LET-free model")
        ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


@_styled
def cost_scatter(table: pd.DataFrame, hue: str = "source", madds: str = "madds_m", params: str = "params_m"):
    """Parameters vs MAdds of a table of architectures, coloured by ``hue`` (e.g. where each came from)."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.scatterplot(data=table, x=madds, y=params, hue=hue if hue in table else None, style=hue if hue in table else None,
                    s=45, ax=ax)
    ax.set(xlabel="MAdds (M, 224x224)", ylabel="parameters (M)", title="Architectures in the browser table")
    if hue in table:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


@_styled
def figure1_running(log: pd.DataFrame, chance: float, block_steps: int | None = None):
    """The paper's Figure 1 top, literally: running training accuracy of the sampled paths per block, per arm.

    Mean over seeds of the per-block mean (thick), band = spread among paths, thin lines = seeds, dashed =
    the batch-noise floor ``sqrt(p(1-p)/batch)`` drawn as a band of that half-width around the mean: a
    spread inside it is sampling noise. ``log`` from ``analysis.arm_path_log``.
    """

    arms = list(dict.fromkeys(log["arm"]))
    fig, axes = plt.subplots(1, len(arms), figsize=(4.6 * len(arms), 3.6), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        summary = stability_summary(log[log["arm"] == arm], block_steps)
        x_scale = block_steps or 1
        for m in [m for m in ("identity", "let", "let_relu") if m in set(summary["mode"])]:
            s = summary[summary["mode"] == m]
            g = s.groupby("block")
            mean, spread, floor = g["mean_acc"].mean(), g["std_acc"].mean(), g["noise_floor"].mean()
            x = (mean.index + 0.5) * x_scale
            c = MODE_COLOURS.get(m)
            ax.plot(x, 100 * mean, color=c, lw=2, label=f"{_mode_label(m)}: mean ± s.d. among paths")
            ax.fill_between(x, 100 * (mean - spread), 100 * (mean + spread), color=c, alpha=0.15)
            ax.plot(x, 100 * (mean - floor), color=c, lw=0.9, ls="--", alpha=0.8)
            ax.plot(x, 100 * (mean + floor), color=c, lw=0.9, ls="--", alpha=0.8,
                    label=f"{_mode_label(m)}: ± batch-noise floor")
            for _, ss in s.groupby("seed"):
                ax.plot((ss["block"] + 0.5) * x_scale, 100 * ss["mean_acc"], color=c, lw=0.6, alpha=0.45)
        ax.axhline(100 * chance, color="0.4", ls=":", lw=1, label="chance")
        ax.set_ylim(0, 100)
        ax.set(xlabel="strict-fair step" if block_steps else "epoch", title=f"arm: {arm}")
    axes[0, 0].set_ylabel("running path training accuracy (%)")
    axes[0, -1].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


@_styled
def oneshot_strata(scores: pd.DataFrame, chance: float):
    """Held-out one-shot scores by number of identity choices (x) and identity at a shape-changing layer
    (rows), identity vs LET supernet, one column per arm."""
    import seaborn as sns

    arms = list(dict.fromkeys(scores["arm"]))
    fig, axes = plt.subplots(2, len(arms), figsize=(4.6 * len(arms), 6.4), sharey=True, squeeze=False)
    d = scores.assign(acc_pct=100 * scores["heldout_acc"], mode_label=scores["identity_mode"].map(_mode_label))
    palette = {_mode_label(m): MODE_COLOURS[m] for m in ("identity", "let")}
    for col, arm in enumerate(arms):
        for row, flag in enumerate((False, True)):
            ax = axes[row, col]
            sub = d[(d["arm"] == arm) & (d["identity_at_shape_change"] == flag)]
            if len(sub):
                sns.boxplot(data=sub, x="num_identity", y="acc_pct", hue="mode_label", palette=palette, ax=ax,
                            fliersize=2, boxprops=dict(alpha=0.5))
                ax.legend(title=None, fontsize=7)
            ax.axhline(100 * chance, color="0.4", ls=":", lw=1)
            ax.set(xlabel="identity choices in the path", ylabel="held-out one-shot accuracy (%)" if col == 0 else "",
                   title=f"{arm}: identity at a shape-changing layer: {'yes' if flag else 'no'}")
    fig.tight_layout()
    return fig


@_styled
def ranking_scatter(models: pd.DataFrame, seed: int | None = None):
    """One-shot vs stand-alone held-out accuracy of the ranked models, one panel per arm, identity and LET
    supernet of one ``seed`` (default: the first) in colour; error bars = range over stand-alone seeds.
    ``models`` from ``ranking.oneshot_ranking_scores`` + ``ranking.standalone_scores``."""
    one = models[models["source"] == "oneshot"]
    seed = one["seed"].iloc[0] if seed is None else seed
    sa = models[models["source"] == "standalone"]
    if "data_seed" in sa:  # the stand-alone accuracies on the same held-out images as this supernet seed
        sa = sa[sa["data_seed"] == one.loc[one["seed"] == seed, "data_seed"].iloc[0]]
    sa = sa.groupby("model")["heldout_acc"].agg(["mean", "min", "max"])
    arms = list(dict.fromkeys(one["arm"]))
    fig, axes = plt.subplots(1, len(arms), figsize=(4.4 * len(arms), 4), sharex=True, sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        for mode in ("identity", "let"):
            g = one[(one["arm"] == arm) & (one["identity_mode"] == mode) & (one["seed"] == seed)]
            g = g[g["model"].isin(sa.index)]
            s = sa.loc[g["model"]]
            ax.errorbar(100 * s["mean"], 100 * g["heldout_acc"].to_numpy(),
                        xerr=100 * np.vstack([s["mean"] - s["min"], s["max"] - s["mean"]]), fmt="o", ms=4,
                        lw=0.6, color=MODE_COLOURS[mode], alpha=0.8, label=f"{_mode_label(mode)} supernet")
            for name, x, y in zip(g["model"], s["mean"], g["heldout_acc"]):
                if not name.startswith("path "):
                    ax.annotate(name, (100 * x, 100 * y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(title=f"arm: {arm}, supernet seed {seed}", xlabel="stand-alone held-out accuracy (%)")
    axes[0, 0].set_ylabel("one-shot held-out accuracy (%)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


@_styled
def tau_by_size_figure(table: pd.DataFrame):
    """Kendall tau of random subsets of n models (median and central interval over subsets, seeds pooled
    as separate lines) against n, per arm: how much a tau on 13 models can vary. ``table`` from
    ``ranking.tau_by_size``."""
    arms = list(dict.fromkeys(table["arm"]))
    fig, axes = plt.subplots(1, len(arms), figsize=(4.4 * len(arms), 3.6), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        for (mode, seed), g in table[table["arm"] == arm].groupby(["identity_mode", "seed"]):
            g = g.sort_values("n_models")
            c = MODE_COLOURS.get(mode)
            first = seed == table["seed"].min()
            ax.plot(g["n_models"], g["estimate"], "o-", color=c, lw=1.2, ms=3,
                    label=f"{_mode_label(mode)} supernet" if first else None)
            ax.fill_between(g["n_models"], g["ci_low"], g["ci_high"], color=c, alpha=0.08)
        ax.axvline(13, color="0.5", ls=":", lw=1)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set(title=f"arm: {arm}", xlabel="models ranked (n)")
    axes[0, 0].set_ylabel("Kendall tau (median, 95% of subsets)")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


@_styled
def standalone_curves(runs: pd.DataFrame):
    """Held-out accuracy per epoch of every stand-alone run (thin) and their mean (thick): the plateau the
    ranking gate checks. ``runs`` from ``ranking.standalone_runs``."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for _, g in runs.groupby(["model", "seed"]):
        ax.plot(g["epoch"] + 1, 100 * g["heldout_acc"], color="0.6", lw=0.5, alpha=0.6)
    mean = runs.groupby("epoch")["heldout_acc"].mean()
    ax.plot(mean.index + 1, 100 * mean, color="k", lw=2, label="mean over models and seeds")
    ax.set(xlabel="epoch", ylabel="stand-alone held-out accuracy (%)",
           title=f"{runs.groupby(['model', 'seed']).ngroups} stand-alone runs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
