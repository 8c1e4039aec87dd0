"""Statistics behind the figures: supernet stability summaries, effect sizes, paired bootstrap intervals.

Inputs are the tidy tables training writes (one row per sampled path per step; one row per evaluated
path per epoch). Nothing here trains; everything here is a plain function of a table, so the notebooks
only call and show.

Definitions (used in notebook 2 and in the README):

* *block*: the unit the running accuracy is averaged over: an epoch, or ``block_steps`` consecutive
  steps for short runs.
* *spread among paths*: standard deviation of the per-path running training accuracies in a block
  (the paper's Figure 1 band). *Spread within a step*: the same over the m paths of one step (they saw
  the same batch), averaged over the block's steps.
* *batch-noise floor*: ``sqrt(p (1 - p) / batch)``, the standard deviation a path's accuracy on one
  batch would have from sampling alone at accuracy p; spreads near it are noise, not path differences.
* *far below the rest*: a path whose accuracy is below ``chance + 0.5 * (reference - chance)``, i.e.
  it kept less than half of the typical path's gain over chance (``reference`` = median of both arms
  of the same seed). The paper's "below 30%" is an ImageNet number; this is its chance-relative form.

One-shot scores (``evaluation.score_paths``: a fixed set of paths, each BN-recalibrated and scored on
``n_images`` held-out images; tidy columns ``arm, identity_mode, seed, epoch, path_id, arch, num_identity,
heldout_acc, n_images``):

* *supernet*: one (arm, identity_mode, seed, epoch). An *arm* is a training recipe; each seed of an arm
  trains one identity and one LET supernet, scored on the same paths.
* *binomial variance*: the part of the among-path variance that measurement alone gives, the mean over
  paths of ``p (1 - p) / (n - 1)`` (``p`` the measured accuracy; ``n - 1`` makes it unbiased).
  *Excess variance* = among-path variance (ddof=1) - binomial variance: the spread of the paths' true
  accuracies. *Excess s.d.* = ``sqrt(max(excess variance, 0))``.
* *far below the rest* (one-shot): under the median score of the arm's identity supernet of the same seed
  and epoch minus ``far_below_points`` (0.20), a threshold fixed before looking at the LET supernet.
* *effects* (paper Figure 1): per arm, per-seed differences LET - identity in points, mean and paired
  bootstrap interval over seeds. C1 mean one-shot accuracy (paper: > 0), C2 excess s.d. (paper: < 0),
  C3 share far below the rest (paper: < 0).
* *gates*: an arm's effects are read only when all its supernets are ``margin`` (0.15) above chance
  and at a plateau (``plateau_check``); otherwise its verdicts are "uninformative at this scale".
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .evaluation import recalibrate_bn
from .space import Architecture, NUM_LAYERS, SHAPE_CHANGE_LAYERS

__all__ = ["stability_log", "add_blocks", "stability_summary", "last_block", "arch_strata", "far_below_threshold",
           "stability_effects", "paired_bootstrap", "paired_t_interval", "share_variance_floor", "well_above_chance",
           "paired_gaps",
           "channel_similarity", "SHAPE_CHANGE_LAYERS", "layer_choice_features", "SCORE_COLUMNS", "CLAIMS", "VERDICTS",
           "oneshot_scores", "arm_path_log", "oneshot_summary", "oneshot_effects", "plateau_check", "oneshot_gates",
           "supernet_gates", "claim_verdicts"]


def _require(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it has {list(df.columns)}")


def stability_log(runs: Iterable[tuple[str, int, pd.DataFrame, int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One tidy path log and one tidy evaluation table from several supernet runs.

    ``runs``: ``(mode, seed, steps, batch_size)`` per run, ``steps`` as ``train.train_supernet`` logs it
    (``epoch, global_step, path_id, arch, train_acc, ...``), or ``(mode, seed, steps, batch_size, evals)``
    with its ``evals`` table (``epoch, path_id, arch, heldout_acc``). Returns ``(log, evals)`` with columns
    ``mode, seed, epoch, step, path, arch, num_identity, loss, acc, batch_size`` and ``mode, seed, epoch,
    path, arch, acc``.
    """
    logs, evals = [], []
    for run in runs:
        mode, seed, steps, batch = run[:4]
        logs.append(pd.DataFrame({
            "mode": mode, "seed": seed, "epoch": steps["epoch"].to_numpy(), "step": steps["global_step"].to_numpy(),
            "path": steps["path_id"].to_numpy(), "arch": steps["arch"].to_numpy(),
            "num_identity": steps["num_identity"].to_numpy(), "loss": steps["loss"].to_numpy(),
            "acc": steps["train_acc"].to_numpy(), "batch_size": batch}))
        if len(run) > 4 and run[4] is not None and len(run[4]):
            e = run[4]
            evals.append(pd.DataFrame({"mode": mode, "seed": seed, "epoch": e["epoch"].to_numpy(),
                                       "path": e["path_id"].to_numpy(), "arch": e["arch"].to_numpy(),
                                       "acc": e["heldout_acc"].to_numpy()}))
    log = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame()
    ev = pd.concat(evals, ignore_index=True) if evals else pd.DataFrame(columns=["mode", "seed", "epoch", "path", "arch", "acc"])
    return log, ev


def add_blocks(log: pd.DataFrame, block_steps: int | None = None) -> pd.DataFrame:
    """Copy of ``log`` with a ``block`` column: the epoch, or ``step // block_steps`` for short runs."""
    out = log.copy()
    if block_steps is None:
        _require(log, ["epoch"], "path log")
        out["block"] = out["epoch"].astype(int)
    else:
        if block_steps < 1:
            raise ValueError(f"block_steps must be >= 1, got {block_steps}")
        _require(log, ["step"], "path log")
        out["block"] = out["step"].astype(int) // int(block_steps)
    return out


def stability_summary(log: pd.DataFrame, block_steps: int | None = None) -> pd.DataFrame:
    """Per (mode, seed, block): mean and spread of path accuracies, spread within a step, noise floor.

    ``log`` needs ``mode, seed, step, acc, batch_size`` (and ``epoch`` when ``block_steps`` is None).
    """
    _require(log, ["mode", "seed", "step", "acc", "batch_size"], "path log")
    log = add_blocks(log, block_steps)
    within = (log.groupby(["mode", "seed", "block", "step"])["acc"].std(ddof=0)
              .groupby(["mode", "seed", "block"]).mean().rename("within_step_std"))
    g = log.groupby(["mode", "seed", "block"])
    out = pd.DataFrame({
        "steps": g["step"].nunique(),
        "paths": g["acc"].size(),
        "mean_acc": g["acc"].mean(),
        "std_acc": g["acc"].std(ddof=0),
        "batch_size": g["batch_size"].median(),
    }).join(within).reset_index()
    p = out["mean_acc"].clip(0, 1)
    out["noise_floor"] = np.sqrt(p * (1 - p) / out["batch_size"])
    return out


def last_block(log: pd.DataFrame, block_steps: int | None = None) -> pd.DataFrame:
    """The rows of the last block of every (mode, seed) run."""
    log = add_blocks(log, block_steps)
    last = log.groupby(["mode", "seed"])["block"].transform("max")
    return log[log["block"] == last].reset_index(drop=True)


def arch_strata(archs: Iterable) -> pd.DataFrame:
    """For each architecture: number of identities and whether one sits at a shape-changing layer."""
    rows = []
    for a in archs:
        arch = Architecture.coerce(a)
        rows.append({"n_identity": arch.num_identity, "identity_at_shape_change": arch.identity_at_shape_change})
    return pd.DataFrame(rows)


def far_below_threshold(chance: float, reference: float) -> float:
    """Accuracy under which a path counts as "far below the rest" (see the module docstring)."""
    return chance + 0.5 * (reference - chance)


def stability_effects(log: pd.DataFrame, chance: float, block_steps: int | None = None,
                      modes: Sequence[str] = ("identity", "let")) -> pd.DataFrame:
    """Per seed, on the last block: means, spreads and collapsed shares of both arms and their contrasts.

    Columns: ``seed``, ``mean_<mode>``, ``std_<mode>``, ``far_below_<mode>`` (share of path accuracies
    far below the rest), ``threshold``, ``diff_mean`` (second minus first mode, in accuracy points as a
    fraction), ``std_ratio`` (first / second mode).
    """
    a, b = modes
    last = last_block(log, block_steps)
    rows = []
    for seed, d in last.groupby("seed"):
        present = set(d["mode"])
        if not {a, b} <= present:
            continue
        thr = far_below_threshold(chance, float(d["acc"].median()))
        row = {"seed": seed, "threshold": thr}
        for m in modes:
            acc = d.loc[d["mode"] == m, "acc"]
            row[f"mean_{m}"] = acc.mean()
            row[f"std_{m}"] = acc.std(ddof=0)
            row[f"far_below_{m}"] = float((acc < thr).mean())
            row[f"paths_{m}"] = int(acc.size)
        row["diff_mean"] = row[f"mean_{b}"] - row[f"mean_{a}"]
        row["std_ratio"] = row[f"std_{a}"] / row[f"std_{b}"] if row[f"std_{b}"] > 0 else np.inf
        rows.append(row)
    if not rows:
        raise ValueError(f"no seed has both modes {modes} in the log (modes present: {sorted(set(log['mode']))})")
    return pd.DataFrame(rows)


def paired_bootstrap(diffs: Sequence[float], confidence: float = 0.95, n_resamples: int = 9999,
                     seed: int = 0) -> dict:
    """Mean of paired differences (one per seed) with a percentile bootstrap interval (scipy).

    With fewer than 3 seeds the interval is not meaningful and is returned as NaN.
    """
    from scipy import stats

    d = np.asarray(list(diffs), dtype=float)
    d = d[np.isfinite(d)]
    out = {"n": int(d.size), "mean": float(d.mean()) if d.size else float("nan"),
           "low": float("nan"), "high": float("nan"), "confidence": confidence}
    if d.size >= 3 and np.ptp(d) > 0:
        res = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                              method="percentile", rng=np.random.default_rng(seed))
        out["low"], out["high"] = float(res.confidence_interval.low), float(res.confidence_interval.high)
    elif d.size >= 3:
        out["low"] = out["high"] = out["mean"]
    return out


def paired_t_interval(diffs: Sequence[float], confidence: float = 0.95, var_floor: float = 0.0) -> dict:
    """Mean of paired differences (one per seed) with Student's t interval (scipy).

    With 3-5 seeds a percentile bootstrap interval is about [smallest, largest] difference and covers far
    less often than its nominal level; the t interval keeps its level for normal differences. NaN with fewer
    than 2 seeds. ``var_floor``: the smallest variance the per-seed differences are credited with (a count
    that is 0 in every seed has sample variance 0 but not zero uncertainty; ``share_variance_floor``).

    ``rerun_low``/``rerun_high``: where the same command's mean falls when rerun elsewhere (another
    instruction set or thread count), a prediction interval ``mean +- t * s * sqrt(2 / n)``. Floating-point
    differences make a long training run diverge like a new seed, so a rerun's mean is treated as n fresh
    draws; runs that share init and data vary less, so the interval is conservative for them.
    """
    from scipy import stats

    d = np.asarray(list(diffs), dtype=float)
    d = d[np.isfinite(d)]
    out = {"n": int(d.size), "mean": float(d.mean()) if d.size else float("nan"),
           "low": float("nan"), "high": float("nan"), "rerun_low": float("nan"), "rerun_high": float("nan"),
           "confidence": confidence}
    if d.size >= 2:
        t_s = stats.t.ppf(0.5 + confidence / 2, d.size - 1) * np.sqrt(max(d.var(ddof=1), var_floor))
        out["low"], out["high"] = out["mean"] - t_s / np.sqrt(d.size), out["mean"] + t_s / np.sqrt(d.size)
        half = t_s * np.sqrt(2.0 / d.size)
        out["rerun_low"], out["rerun_high"] = out["mean"] - half, out["mean"] + half
    return out


def share_variance_floor(n_paths: int, seeds: int) -> float:
    """The smallest variance of a per-seed difference of two shares, each over ``n_paths`` paths, ``seeds`` seeds.

    That of one event in each supernet kind's ``seeds * n_paths`` paths (add-one: p = 1 / (seeds * n_paths + 2)),
    as a fraction squared. Without it, seeds that all give a share of 0 get a zero-width interval that a rerun
    finding one far-below path lands outside of (measured: ``figures/lr0.02_3000steps_seeds5-8/rerun_avx2.md``);
    where events were seen the sample variance exceeds the floor and nothing changes. Under independent
    paths it brings the rerun interval's coverage back to about 95% for rare events (tested by simulation).
    """
    if n_paths < 1 or seeds < 1:
        raise ValueError(f"share_variance_floor needs n_paths >= 1 and seeds >= 1, got {n_paths}, {seeds}")
    p = 1.0 / (seeds * n_paths + 2)
    return 2.0 * p * (1.0 - p) / n_paths


def well_above_chance(accuracies: dict, chance: float, margin: float = 0.15) -> tuple[bool, str]:
    """Whether every named accuracy is at least ``margin`` above chance, and a sentence saying so."""
    low = {k: v for k, v in accuracies.items() if not (v >= chance + margin)}
    shown = ", ".join(f"{k} {100 * v:.1f}%" for k, v in accuracies.items())
    if low:
        return False, (f"Not a finding: {', '.join(low)} not well above chance "
                       f"({shown}; chance {100 * chance:.0f}%, required +{100 * margin:.0f} points). "
                       "Train longer or use a larger profile.")
    return True, f"All well above chance ({shown}; chance {100 * chance:.0f}%)."


def paired_gaps(final: pd.DataFrame, pairs: Sequence[tuple[str, str]], value: str = "acc",
                arm: str = "arm", seed: str = "seed", confidence: float = 0.95) -> pd.DataFrame:
    """For each (a, b) pair of arms: per-seed differences b - a of ``value``, their bootstrap interval and
    where a rerun on another machine falls (``rerun_low``/``rerun_high``, ``paired_t_interval``)."""
    _require(final, [value, arm, seed], "final table")
    wide = final.pivot_table(index=seed, columns=arm, values=value, aggfunc="mean")
    rows = []
    for a, b in pairs:
        if a not in wide or b not in wide:
            continue
        d = (wide[b] - wide[a]).dropna()
        boot = paired_bootstrap(d.values, confidence=confidence)
        rerun = paired_t_interval(d.values, confidence=confidence)
        sd = d.std(ddof=1) if d.size > 1 else float("nan")
        rows.append({"comparison": f"{b} - {a}", "seeds": boot["n"], "mean_diff": boot["mean"],
                     "ci_low": boot["low"], "ci_high": boot["high"],
                     "rerun_low": rerun["rerun_low"], "rerun_high": rerun["rerun_high"],
                     "cohens_dz": boot["mean"] / sd if sd and np.isfinite(sd) and sd > 0 else float("nan"),
                     "per_seed": ", ".join(f"{v:+.3f}" for v in d.values)})
    return pd.DataFrame(rows)


def channel_similarity(features: dict, cka: bool = True) -> pd.DataFrame:
    """Mean cosine similarity of matching channels between every pair of choices at one layer, and mean linear CKA.

    ``features``: choice -> tensor/array (N, C, H, W) for the same N images. For each choice, the
    similarity of its channel c map to channel c of every other choice with the same shape, averaged
    over channels, images and other choices. All-zero maps (e.g. a plain identity's padded channels)
    count as similarity 0. With ``cka``, ``mean_cka_to_others`` is the choice's linear CKA with every
    other choice (``layer_cka``: positions as samples, channels as features), averaged: unlike the cosine
    it does not drop when a choice's channels are a rotated (or zero-padded) version of another's.
    """
    flat = {c: _as_array(f) for c, f in features.items()}
    rows = []
    for c, a in flat.items():
        sims = [channel_cosine(a, b) for o, b in flat.items() if o != c and b.shape == a.shape]
        rows.append({"choice": c, "mean_cosine_to_others": float(np.mean(sims)) if sims else float("nan")})
    out = pd.DataFrame(rows)
    if cka:
        out["mean_cka_to_others"] = [_mean_to_others(flat, c, layer_cka) for c in flat]
    return out


def layer_choice_features(supernet, x, prefix, layer: int, calib_batches=None, choices=None) -> dict:
    """Activations after ``layer`` (1-based) for every choice there, with one fixed prefix path before it.

    For each choice ``c`` the path is ``prefix[:layer-1] + [c]``; BatchNorm statistics are re-estimated
    for that path on ``calib_batches`` (as for one-shot evaluation) when given, the features are taken
    in eval mode, and the supernet's own statistics are restored. Returns ``{choice: tensor (N, C, H, W)}``.
    """
    import torch


    prefix = Architecture.coerce(prefix)
    choices = list(choices if choices is not None else supernet.space.allowed(layer - 1))
    state = {k: v.clone() for k, v in supernet.state_dict().items() if "running" in k or "num_batches" in k}
    was = supernet.training
    out = {}
    try:
        for c in choices:
            arch = Architecture(list(prefix)[: layer - 1] + [c] + list(prefix)[layer:NUM_LAYERS])
            fwd = lambda inp, a=arch: supernet.capture_features(inp, a, layers=(layer,))[layer]  # noqa: E731
            if calib_batches is not None:
                recalibrate_bn(fwd, supernet, calib_batches, next(supernet.parameters()).device)
            supernet.eval()
            with torch.no_grad():
                out[c] = fwd(x).detach().cpu()
    finally:
        supernet.load_state_dict(state, strict=False)
        supernet.train(was)
    return out


# ------------------------------------------------------------------------------------------------
# One-shot scores of a fixed path set (paper Figure 1 claims C1-C3)
# ------------------------------------------------------------------------------------------------

SCORE_COLUMNS = ("arm", "identity_mode", "seed", "epoch", "path_id", "arch", "num_identity", "heldout_acc",
                 "n_images")
_SUPERNET = ["arm", "identity_mode", "seed", "epoch"]

# claim -> summary column, effect label, sign of LET - identity the paper reports, unit of the estimate
CLAIMS = {
    "C1": {"column": "mean_acc", "effect": "C1 mean one-shot accuracy, LET - identity (points)",
           "paper_sign": +1, "unit": "points"},
    "C2": {"column": "excess_sd", "effect": "C2 spread beyond binomial noise, LET - identity (points of s.d.)",
           "paper_sign": -1, "unit": "points of s.d."},
    "C3": {"column": "far_below_share", "effect": "C3 share far below the rest, LET - identity (points)",
           "paper_sign": -1, "unit": "points", "share": True},
}
VERDICTS = ("reproduced", "not reproduced", "uninformative at this scale")

# The size of the paper's Figure 1 effect, in the units of ``CLAIMS``: LET's supernet training accuracy is
# "about 20% higher" than identity's (read as points). C2 and C3 are drawn, not quantified, in the paper.
PAPER_EFFECTS = {"C1": 20.0}


def _paper_effect(claim: str, paper_effects: Mapping[str, float] = PAPER_EFFECTS) -> float | None:
    """The paper's effect for ``claim`` with the sign the paper reports (None where it gives no size)."""
    return CLAIMS[claim]["paper_sign"] * abs(paper_effects[claim]) if claim in paper_effects else None


def _check_scores(scores: pd.DataFrame, columns: Iterable[str]) -> None:
    _require(scores, columns, "scores table")
    if not len(scores):
        raise ValueError("scores table is empty")
    acc = pd.to_numeric(scores["heldout_acc"], errors="coerce").to_numpy(float)
    if not np.all((acc >= 0) & (acc <= 1)):
        raise ValueError("heldout_acc must be accuracies as fractions in [0, 1] (no NaN)")
    n = pd.to_numeric(scores["n_images"], errors="coerce").to_numpy(float)
    if not np.all(n >= 2):
        raise ValueError("n_images must be at least 2 for every path (the held-out images it was scored on)")
    dup = scores.duplicated(_SUPERNET + ["path_id"])
    if dup.any():
        first = scores.loc[dup, _SUPERNET + ["path_id"]].iloc[0].to_dict()
        raise ValueError(f"{int(dup.sum())} rows repeat a path_id within one supernet "
                         f"(arm, identity_mode, seed, epoch), e.g. {first}")


def _check_fraction(name: str, value: float, low: float = 0.0, high: float = 1.0, closed_low: bool = True) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and np.isfinite(value) and (value >= low if closed_low else value > low) and value <= high
    if not ok:
        raise ValueError(f"{name} must be a number in {'[' if closed_low else '('}{low}, {high}], got {value!r}")
    return float(value)


def oneshot_summary(scores: pd.DataFrame, far_below_points: float = 0.20) -> pd.DataFrame:
    """Per supernet (arm, identity_mode, seed, epoch): mean one-shot accuracy, spread beyond noise, far-below share.

    Columns: ``arm, identity_mode, seed, epoch, n_paths, mean_acc, among_var`` (ddof=1), ``binomial_var``,
    ``excess_var``, ``excess_sd``, ``threshold`` (identity median of the same arm, seed and epoch minus
    ``far_below_points``; NaN without that identity supernet) and ``far_below_share``. Definitions in the
    module docstring.
    """
    _check_scores(scores, _SUPERNET + ["path_id", "heldout_acc", "n_images"])
    far_below_points = _check_fraction("far_below_points", far_below_points)
    d = scores[_SUPERNET + ["heldout_acc", "n_images"]].copy()
    p, n = d["heldout_acc"].astype(float), d["n_images"].astype(float)
    d["binomial_var"] = p * (1 - p) / (n - 1)
    ident = d[d["identity_mode"] == "identity"]
    thr = (ident.groupby(["arm", "seed", "epoch"])["heldout_acc"].median() - far_below_points).rename("threshold")
    d = d.join(thr, on=["arm", "seed", "epoch"])
    d["far_below"] = np.where(d["threshold"].notna(), (d["heldout_acc"] < d["threshold"]).astype(float), np.nan)
    g = d.groupby(_SUPERNET, sort=True)
    out = pd.DataFrame({
        "n_paths": g.size(),
        "mean_acc": g["heldout_acc"].mean(),
        "among_var": g["heldout_acc"].var(ddof=1),
        "binomial_var": g["binomial_var"].mean(),
    })
    out["excess_var"] = out["among_var"] - out["binomial_var"]
    out["excess_sd"] = np.sqrt(out["excess_var"].clip(lower=0))
    out["threshold"] = g["threshold"].first()
    out["far_below_share"] = g["far_below"].mean()
    return out.reset_index()


def _per_seed(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    """One supernet summary column in points, one row per seed, one column per identity mode."""
    return 100 * summary.pivot(index="seed", columns="identity_mode", values=column)


def _chosen_epochs(table: pd.DataFrame, epoch: int | None) -> dict:
    """Arm -> the epoch read: ``epoch`` where the arm has it, else (None) the arm's last epoch."""
    arms = list(dict.fromkeys(table["arm"]))
    if epoch is None:
        return {a: table.loc[table["arm"] == a, "epoch"].max() for a in arms}
    chosen = {a: epoch for a in arms if (table.loc[table["arm"] == a, "epoch"] == epoch).any()}
    if not chosen:
        raise ValueError(f"no arm has scores at epoch {epoch!r}; epochs present: {sorted(set(table['epoch']))}")
    return chosen


def oneshot_effects(scores: pd.DataFrame, epoch: int | None = None, n_resamples: int = 9999, seed: int = 0,
                    far_below_points: float = 0.20, confidence: float = 0.95) -> pd.DataFrame:
    """Per arm, the paper's Figure 1 claims as paired LET - identity differences over seeds, in points.

    ``epoch``: the epoch read (None: each arm's last). Seeds are paired within an arm; a seed lacking
    either supernet is left out (``seeds`` counts those used). The interval (``ci_low``, ``ci_high``) is
    ``paired_t_interval``'s, NaN with fewer than 3 seeds; ``boot_low``/``boot_high`` give the percentile
    bootstrap beside it, ``rerun_low``/``rerun_high`` where a rerun on another machine falls
    (``paired_t_interval``; both intervals of the share C3 credit the per-seed differences with at least
    ``share_variance_floor``'s variance), ``sd_seeds`` the standard deviation of the per-seed differences
    (what ``seeds_for_power`` reads). Columns: ``arm, claim, effect, estimate, ci_low, ci_high, seeds,
    epoch, confidence, interval, boot_low, boot_high, rerun_low, rerun_high, sd_seeds, per_seed``. Raises if
    the two supernets of a seed were scored on different paths.
    """
    _check_scores(scores, SCORE_COLUMNS)
    summary = oneshot_summary(scores, far_below_points)
    chosen = _chosen_epochs(scores, epoch)
    for (arm, sd, ep), d in scores.groupby(["arm", "seed", "epoch"], sort=False):
        if chosen.get(arm) != ep:
            continue
        sets = {m: set(d.loc[d["identity_mode"] == m, "arch"]) for m in ("identity", "let")}
        if sets["identity"] and sets["let"] and sets["identity"] != sets["let"]:
            raise ValueError(f"arm {arm!r}, seed {sd}, epoch {ep}: the identity and LET supernets were scored on "
                             f"different paths ({len(sets['identity'] ^ sets['let'])} differ); the claims compare "
                             "the same fixed path set")
    rows = []
    for arm, ep in chosen.items():
        s = summary[(summary["arm"] == arm) & (summary["epoch"] == ep)]
        for claim, spec in CLAIMS.items():
            wide = _per_seed(s, spec["column"])
            diffs = (wide["let"] - wide["identity"]).dropna() if {"identity", "let"} <= set(wide.columns) \
                else pd.Series(dtype=float)
            floor = 0.0
            if spec.get("share") and len(diffs):
                paths = int(s.loc[s["seed"].isin(diffs.index), "n_paths"].min())
                floor = 1e4 * share_variance_floor(paths, len(diffs))
            t = paired_t_interval(diffs.to_numpy(), confidence=confidence, var_floor=floor)
            boot = paired_bootstrap(diffs.to_numpy(), confidence=confidence, n_resamples=n_resamples, seed=seed)
            rows.append({"arm": arm, "claim": claim, "effect": spec["effect"], "estimate": t["mean"],
                         "ci_low": t["low"] if t["n"] >= 3 else np.nan, "ci_high": t["high"] if t["n"] >= 3 else np.nan,
                         "seeds": t["n"], "epoch": ep, "confidence": confidence,
                         "interval": "paired t over seeds" + (", variance at least one event's" if floor else ""),
                         "boot_low": boot["low"], "boot_high": boot["high"],
                         "rerun_low": t["rerun_low"] if t["n"] >= 3 else np.nan,
                         "rerun_high": t["rerun_high"] if t["n"] >= 3 else np.nan,
                         "sd_seeds": float(diffs.std(ddof=1)) if len(diffs) > 1 else np.nan,
                         "per_seed": ", ".join(f"{k}: {v:+.2f}" for k, v in diffs.items())})
    return pd.DataFrame(rows)


def plateau_check(curve: pd.DataFrame, value: str, fraction: float = 0.2, tolerance: float = 0.02,
                  x: str | None = None, start: float | None = None) -> tuple[float, bool]:
    """Whether a supernet had stopped improving: ``(gain, gain < tolerance)`` over the last ``fraction``.

    ``curve``: one supernet's table with a progress column ``x`` (default: ``epoch``, else ``global_step``,
    else ``step``) and ``value`` (an accuracy as a fraction); several rows at one ``x`` (e.g. one per path)
    are averaged. ``gain`` = value at the last ``x`` minus the value, linearly interpolated, at
    ``x_last - fraction * (x_last - start)``; ``start`` is where training began (default: the first ``x``).
    With fewer than two points, or a curve that does not reach back that far, it returns ``(nan, False)``:
    a plateau that cannot be seen is not assumed.
    """
    if not isinstance(curve, pd.DataFrame):
        raise ValueError(f"curve must be a DataFrame, got {type(curve).__name__}")
    if x is None:
        x = next((c for c in ("epoch", "global_step", "step") if c in curve.columns), None)
        if x is None:
            raise ValueError(f"curve has no epoch/global_step/step column; name its progress column with x= "
                             f"(columns: {list(curve.columns)})")
    _require(curve, [x, value], "curve")
    fraction = _check_fraction("fraction", fraction, closed_low=False)
    tolerance = _check_fraction("tolerance", tolerance, closed_low=False)
    c = curve[[x, value]].dropna().groupby(x)[value].mean().sort_index()
    if len(c) < 2:
        return float("nan"), False
    xs, ys = c.index.to_numpy(float), c.to_numpy(float)
    origin = xs[0] if start is None else float(start)
    x_from = xs[-1] - fraction * (xs[-1] - origin)
    if x_from < xs[0]:
        return float("nan"), False
    gain = float(ys[-1] - np.interp(x_from, xs, ys))
    return gain, bool(gain < tolerance)


def plateau_table(curves: pd.DataFrame, value: str, by: Sequence[str], fraction: float = 0.2,
                  tolerance: float = 0.02, x: str = "epoch", start: float | None = -1) -> pd.DataFrame:
    """``plateau_check`` for every run of a long table: one row per group of ``by`` with ``gain`` (what the
    last ``fraction`` of training added) and ``at_plateau``. ``start=-1``: training counted from before the
    first evaluated epoch."""
    _require(curves, [*by, x, value], "curves")
    rows = []
    for key, g in curves.groupby(list(by), sort=False):
        gain, flat = plateau_check(g, value, fraction, tolerance, x=x, start=start)
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "gain": gain, "at_plateau": flat})
    return pd.DataFrame(rows, columns=[*by, "gain", "at_plateau"])


def figure3_verdict(final_means: Mapping[str, float], plateau: pd.DataFrame, chance: float,
                    margin: float = 0.15, reference_arms: Sequence[str] = ("folded", "let")) -> tuple[bool, str]:
    """Whether Figure 3's gaps can be read: the reference arms well above chance (``well_above_chance``) and
    every run at a plateau (``plateau_table``). LET+ReLU falling towards chance is the effect under test, so
    only the reference arms must learn; every arm must have stopped improving, else a gap may be a
    difference in speed rather than in what the networks can represent."""
    ok, sentence = well_above_chance({a: float(final_means[a]) for a in reference_arms}, chance, margin)
    rising = plateau[~plateau["at_plateau"].astype(bool)]
    if len(rising):
        shown = ", ".join(f"{r.arm} seed {r.seed} {100 * r.gain:+.1f}" if np.isfinite(r.gain)
                          else f"{r.arm} seed {r.seed} (curve too short)" for r in rising.itertuples())
        msg = (f"Not a finding: not at a plateau, the last part of training still added points ({shown}). "
               "A gap here may be a difference in training speed; train longer (the cpu-long profile).")
        return False, (msg if ok else sentence + " " + msg)
    return ok, sentence + (" Every run at a plateau." if ok else "")


def oneshot_gates(scores: pd.DataFrame, chance: float, epoch: int | None = None, fraction: float = 0.2,
                  tolerance: float = 0.02, start: float | None = None) -> pd.DataFrame:
    """The gate table ``claim_verdicts`` reads, from the scores' own per-epoch curves.

    One row per supernet (arm, identity_mode, seed): ``epoch`` (as ``oneshot_effects`` chooses it),
    ``chance``, ``mean_acc`` (mean one-shot accuracy there), ``plateau_gain`` and ``at_plateau``
    (``plateau_check`` on the per-epoch mean one-shot accuracy up to that epoch). Gates built from other
    curves (e.g. the training log) need the same columns.
    """
    _check_scores(scores, _SUPERNET + ["path_id", "heldout_acc", "n_images"])
    chance = _check_fraction("chance", chance, closed_low=False)
    chosen = _chosen_epochs(scores, epoch)
    rows = []
    for (arm, mode, sd), d in scores.groupby(["arm", "identity_mode", "seed"], sort=False):
        if arm not in chosen:
            continue
        d = d[d["epoch"] <= chosen[arm]]
        now = d.loc[d["epoch"] == chosen[arm], "heldout_acc"]
        gain, flat = plateau_check(d, "heldout_acc", fraction, tolerance, x="epoch", start=start)
        rows.append({"arm": arm, "identity_mode": mode, "seed": sd, "epoch": chosen[arm], "chance": chance,
                     "mean_acc": float(now.mean()) if len(now) else float("nan"), "plateau_gain": gain,
                     "at_plateau": flat})
    return pd.DataFrame(rows)


def _gate_problems(g: pd.DataFrame, chance: float | None, margin: float) -> list[str]:
    """Why an arm's supernets cannot carry a verdict (empty when they can)."""
    if g.empty:
        return ["no gate rows for this arm"]
    problems = []
    missing = [m for m in ("identity", "let") if m not in set(g["identity_mode"])]
    if missing:
        problems.append(f"no gate rows for the {' and '.join(missing)} supernets")
    need = (g["chance"].astype(float) if chance is None else pd.Series(chance, index=g.index)) + margin
    low = g[~(g["mean_acc"].astype(float) >= need)]
    if len(low):
        listed = ", ".join(f"{r.identity_mode} seed {r.seed} {100 * r.mean_acc:.1f}%" for r in low.itertuples())
        problems.append(f"not all well above chance (mean one-shot accuracy needs >= {100 * need.min():.1f}%): "
                        f"{listed}")
    rising = g[~g["at_plateau"].astype(bool)]
    if len(rising):
        listed = ", ".join(f"{r.identity_mode} seed {r.seed} " + (
            f"{100 * r.plateau_gain:+.1f} points in the last part of training" if np.isfinite(r.plateau_gain)
            else "plateau not measurable") for r in rising.itertuples())
        problems.append(f"not at a plateau: {listed}")
    return problems


def claim_verdicts(effects: pd.DataFrame, gates: pd.DataFrame, chance: float | None = None,
                   margin: float = 0.15) -> pd.DataFrame:
    """A verdict per arm and claim (C1-C3): "reproduced", "not reproduced" or "uninformative at this scale".

    ``effects`` from ``oneshot_effects``. ``gates``: one row per supernet with ``arm, identity_mode, seed,
    mean_acc, plateau_gain, at_plateau`` and ``chance`` (or pass ``chance``), e.g. from ``oneshot_gates``.
    An arm is read only when every one of its gate rows (both identity modes) is at least ``margin`` above
    chance and at a plateau, and an interval exists (>= 3 seeds); otherwise "uninformative at this scale".
    "reproduced": the interval lies entirely on the paper's side of 0 (C1 above, C2 and C3 below); "not
    reproduced" otherwise. "Opposite sign" is said only for the "paper" arm with the interval entirely on
    the other side: other arms change the recipe, so they cannot contradict the paper. A "not reproduced"
    reason also says whether the paper's effect size (``PAPER_EFFECTS``) lies inside the interval.
    Columns: ``arm, claim, verdict, reason``.
    """
    _require(effects, ["arm", "claim", "estimate", "ci_low", "ci_high", "seeds"], "effects table")
    _require(gates, ["arm", "identity_mode", "seed", "mean_acc", "plateau_gain", "at_plateau"], "gates table")
    if chance is None and "chance" not in gates.columns:
        raise ValueError("gates table lacks a 'chance' column; add it or pass chance=")
    if chance is not None:
        chance = _check_fraction("chance", chance, closed_low=False)
    margin = _check_fraction("margin", margin)
    unknown = sorted(set(effects["claim"]) - set(CLAIMS))
    if unknown:
        raise ValueError(f"unknown claims {unknown}; accepted: {list(CLAIMS)}")
    rows = []
    for arm in dict.fromkeys(effects["arm"]):
        problems = _gate_problems(gates[gates["arm"] == arm], chance, margin)
        for e in effects[effects["arm"] == arm].itertuples():
            spec = CLAIMS[e.claim]
            conf = getattr(e, "confidence", 0.95)
            interval = (f"{100 * conf:.0f}% CI {e.ci_low:+.1f} to {e.ci_high:+.1f}"
                        if np.isfinite(e.ci_low) and np.isfinite(e.ci_high) else "no interval")
            shown = f"LET - identity {e.estimate:+.1f} {spec['unit']} ({interval}, {int(e.seeds)} seeds)"
            paper_side = "above" if spec["paper_sign"] > 0 else "below"
            other_side = "below" if spec["paper_sign"] > 0 else "above"
            if problems:
                verdict, reason = VERDICTS[2], "; ".join(problems) + f". Not read: {shown}."
            elif not (np.isfinite(e.ci_low) and np.isfinite(e.ci_high)):
                verdict = VERDICTS[2]
                reason = f"only {int(e.seeds)} paired seeds, an interval needs >= 3. Not read: {shown}."
            else:
                on_paper = e.ci_low > 0 if spec["paper_sign"] > 0 else e.ci_high < 0
                against = e.ci_high < 0 if spec["paper_sign"] > 0 else e.ci_low > 0
                if on_paper:
                    verdict, reason = VERDICTS[0], f"{shown}: interval entirely {paper_side} 0, the paper's side."
                elif against and arm == "paper":
                    verdict = VERDICTS[1]
                    reason = f"{shown}: opposite sign, the interval lies entirely {other_side} 0."
                elif against:
                    verdict = VERDICTS[1]
                    reason = (f"{shown}: interval entirely {other_side} 0 with this arm's recipe, which is not "
                              "the paper's.")
                else:
                    verdict, reason = VERDICTS[1], f"{shown}: the interval includes 0."
                target = _paper_effect(e.claim)
                if verdict == VERDICTS[1] and target is not None:
                    inside = e.ci_low <= target <= e.ci_high
                    reason += (f" The paper's {target:+.0f} {spec['unit']} lies "
                               f"{'inside' if inside else 'outside'} the interval.")
            rows.append({"arm": arm, "claim": e.claim, "verdict": verdict, "reason": reason})
    return pd.DataFrame(rows, columns=["arm", "claim", "verdict", "reason"])


def oneshot_scores(evals: Mapping[tuple, pd.DataFrame]) -> pd.DataFrame:
    """One tidy scores table from the trainer's per-epoch path scores of several supernets.

    ``evals``: ``{(arm, identity_mode, seed): evals}`` with each ``evals`` as ``train.train_supernet`` writes it
    (``epoch, path_id, arch, num_identity, heldout_acc, n_images``). Columns: ``SCORE_COLUMNS`` plus
    ``identity_at_shape_change``.
    """
    parts = []
    for (arm, mode, seed), e in evals.items():
        _require(e, ["epoch", "path_id", "arch", "num_identity", "heldout_acc", "n_images"], "evals table")
        parts.append(e.assign(arm=arm, identity_mode=mode, seed=seed))
    if not parts:
        raise ValueError("no supernet scores given")
    out = pd.concat(parts, ignore_index=True)
    out["identity_at_shape_change"] = [Architecture.parse(a).identity_at_shape_change for a in out["arch"]]
    return out[list(SCORE_COLUMNS) + ["identity_at_shape_change"]]


def arm_path_log(steps: Mapping[tuple, tuple[pd.DataFrame, int]]) -> pd.DataFrame:
    """The running path log (``stability_log``'s columns) of several supernets, with an ``arm`` column.

    ``steps``: ``{(arm, identity_mode, seed): (steps, batch_size)}``, ``steps`` as ``train.train_supernet`` logs it.
    """
    parts = []
    for (arm, mode, seed), (s, batch) in steps.items():
        log, _ = stability_log([(mode, seed, s, batch)])
        parts.append(log.assign(arm=arm))
    if not parts:
        raise ValueError("no supernet logs given")
    return pd.concat(parts, ignore_index=True)


def supernet_gates(scores: pd.DataFrame, log: pd.DataFrame | None, chance: float, fraction: float = 0.2,
                   tolerance: float = 0.02, min_scored_epochs: int = 2) -> pd.DataFrame:
    """``oneshot_gates`` with the plateau read from the best curve available, named in ``plateau_from``.

    The per-epoch held-out scores when at least ``min_scored_epochs`` epochs were scored and they reach back
    over the last ``fraction`` of training (e.g. scores at 80% and 100% of it: the gain is measured, not
    interpolated); otherwise the running training accuracy of the sampled paths (``log`` with ``arm, mode,
    seed, step, acc``; the gratings stream shows every batch once, so it is a held-out curve too), in blocks of
    a tenth of the run.
    """
    # epoch e is scored after e + 1 epochs, so training starts at epoch index -1
    gates = oneshot_gates(scores, chance, fraction=fraction, tolerance=tolerance, start=-1)
    gates["plateau_from"] = "held-out scores per epoch"
    for i, g in gates.iterrows():
        scored = scores[(scores["arm"] == g["arm"]) & (scores["identity_mode"] == g["identity_mode"])
                        & (scores["seed"] == g["seed"])]["epoch"].nunique()
        if (scored >= min_scored_epochs and np.isfinite(g["plateau_gain"])) or log is None:
            continue
        run = log[(log["arm"] == g["arm"]) & (log["mode"] == g["identity_mode"]) & (log["seed"] == g["seed"])]
        if not len(run):
            continue
        steps = int(run["step"].max()) + 1
        block = max(1, steps // 10)
        curve = run.assign(block=(run["step"] // block) * block + block / 2)
        gain, flat = plateau_check(curve, "acc", fraction, tolerance, x="block", start=0.0)
        gates.loc[i, ["plateau_gain", "at_plateau", "plateau_from"]] = [gain, flat, "running training accuracy"]
    gates["at_plateau"] = gates["at_plateau"].astype(bool)
    return gates


# ------------------------------------------------------------------------------------------------
# Figure 5: similarity of a layer's choices that a change of channel basis (a LET) does not punish
# ------------------------------------------------------------------------------------------------

__all__ += ["plateau_table", "figure3_verdict"]
__all__ += ["linear_cka", "feature_matrix", "layer_cka", "channel_cosine", "choice_similarity_pairs"]


def _as_array(f) -> np.ndarray:
    return np.asarray(f.detach().cpu() if hasattr(f, "detach") else f, dtype=np.float64)


def linear_cka(x, y) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) of two representations of the same samples.

    ``x`` (n, p), ``y`` (n, q): a row per sample, a column per feature (the columns are centred here).
    ``CKA = ||y'x||_F^2 / (||x'x||_F ||y'y||_F)``, in [0, 1]. It is 1 when ``y`` is ``x`` up to an orthogonal
    transform and an isotropic scale (so a rotated basis is not a difference), but not invariant to a general
    invertible linear map. NaN when either representation is constant over the samples.
    """
    x, y = _as_array(x), _as_array(y)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError("x and y must be (samples, features) matrices with the same samples; "
                         f"got {x.shape}, {y.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"linear CKA needs at least 2 samples; got {x.shape[0]}")
    x, y = x - x.mean(0), y - y.mean(0)
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        return float("nan")
    x, y = x / nx, y / ny  # CKA ignores scale; this keeps the products away from overflow and underflow
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def feature_matrix(f, samples: str = "positions") -> np.ndarray:
    """Activations (N, C, H, W) as a (samples, features) matrix for ``linear_cka``.

    ``"positions"``: every position of every image is a sample and the channels are the features
    (N*H*W, C): the representation a 1x1 conv (a LET) acts on, so its rotation of the channels is invisible.
    ``"images"``: every image is a sample with its whole map as features (N, C*H*W).
    """
    a = _as_array(f)
    if a.ndim != 4:
        raise ValueError(f"expected activations (N, C, H, W), got shape {a.shape}")
    if samples == "positions":
        return a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])
    if samples == "images":
        return a.reshape(a.shape[0], -1)
    raise ValueError(f"samples must be 'positions' or 'images', got {samples!r}")


def layer_cka(a, b, samples: str = "positions") -> float:
    """Linear CKA between two choices' activations (N, C, H, W) of the same images (``feature_matrix`` layout)."""
    return linear_cka(feature_matrix(a, samples), feature_matrix(b, samples))


def channel_cosine(a, b) -> float:
    """Cosine similarity of channel c of ``a`` with channel c of ``b`` (N, C, H, W), averaged over images and channels.

    Channels are matched by index, so a permutation or rotation of ``b``'s channels lowers it; a map that is
    all zero counts as 0.
    """
    a, b = _as_array(a), _as_array(b)
    if a.shape != b.shape:
        raise ValueError(f"channel-matched cosine needs equal shapes; got {a.shape}, {b.shape}")
    a, b = a.reshape(a.shape[0], a.shape[1], -1), b.reshape(b.shape[0], b.shape[1], -1)
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return float(np.where(den > 0, num / np.where(den > 0, den, 1), 0.0).mean())


def _mean_to_others(flat: Mapping, c, measure) -> float:
    """Mean of ``measure`` between choice ``c`` and every other choice of the same shape (NaNs left out)."""
    vals = [measure(flat[c], b) for o, b in flat.items() if o != c and b.shape[0] == flat[c].shape[0]
            and b.shape[2:] == flat[c].shape[2:]]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def choice_similarity_pairs(features: Mapping, samples: str = "positions") -> pd.DataFrame:
    """Every ordered pair of a layer's choices with its channel-matched cosine and its linear CKA.

    ``features``: choice -> activations (N, C, H, W) of the same images (``layer_choice_features``). Columns
    ``choice_a, choice_b, cosine, cka``; the diagonal is included (cosine of a non-zero map with itself is
    1, CKA 1). Cosine is NaN where the shapes differ.
    """
    flat = {c: _as_array(f) for c, f in features.items()}
    rows = []
    for ca, a in flat.items():
        for cb, b in flat.items():
            same_samples = a.shape[0] == b.shape[0] and a.shape[2:] == b.shape[2:]
            rows.append({"choice_a": ca, "choice_b": cb,
                         "cosine": channel_cosine(a, b) if a.shape == b.shape else float("nan"),
                         "cka": layer_cka(a, b, samples) if same_samples else float("nan")})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# More seeds: pooling runs of one recipe, and how many seeds a claim needs
# ------------------------------------------------------------------------------------------------

__all__ += ["PAPER_EFFECTS", "POOL_KEYS", "pool_seed_runs", "pool_summaries", "seeds_for_power", "power_table"]

# Notebook-2 parameters that define what a seed measures; runs are pooled only when all of them agree.
POOL_KEYS = ("dataset", "difficulty", "stream_labels", "data_root", "image_size", "width", "space", "epochs",
             "steps_per_epoch", "batch_size", "lr", "warmup_steps", "zero_init_residual", "let_init", "reduction",
             "eval_paths", "eval_images", "eval_every", "far_below_points", "plateau_fraction", "plateau_tolerance")


# Recipe parameters added after runs were recorded, with the value those earlier runs used.
_ADDED_LATER = {"stream_labels": "balanced"}


def _recipe_param(params: Mapping, key: str):
    """A recipe parameter of a run record; a parameter added later reads as the value earlier runs used."""
    return params.get(key, _ADDED_LATER.get(key))


def _check_one_recipe(params: Mapping[str, Mapping], what: str = "run") -> None:
    """Raise, naming the parameter and both values, unless every run's ``POOL_KEYS`` parameters agree."""
    (first_label, first), *rest = params.items()
    for label, p in rest:
        differ = [f"{k} ({_recipe_param(first, k)!r} vs {_recipe_param(p, k)!r})" for k in POOL_KEYS
                  if _recipe_param(first, k) != _recipe_param(p, k)]
        if differ:
            raise ValueError(f"{what} {label} differs from {what} {first_label} in {', '.join(differ)}; only runs of "
                             "one recipe (the parameters in analysis.POOL_KEYS) can be pooled")


def _check_disjoint_seeds(tables: Sequence[pd.DataFrame], what: str = "run") -> None:
    """Raise when an arm has the same seed in two tables (the same seed twice is a rerun, not a new draw)."""
    seen: dict[tuple, int] = {}
    for i, table in enumerate(tables):
        for key in table[["arm", "seed"]].drop_duplicates().itertuples(index=False, name=None):
            if key in seen:
                raise ValueError(f"arm {key[0]!r} seed {key[1]} is in {what} {seen[key]} and {what} {i}; pooled "
                                 "runs need disjoint seeds (the same seed twice is a rerun, not a new draw)")
            seen[key] = i


def pool_seed_runs(runs: Sequence[tuple[pd.DataFrame, pd.DataFrame, Mapping]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scores and gates of several runs of notebook 2 with the same recipe and disjoint seeds, as one run.

    ``runs``: ``(scores, gates, parameters)`` per run (tables as notebook 2 writes them, ``parameters`` as its
    run record holds them). Seeds are independent draws, so a claim read over the pooled seeds is the same
    experiment with more seeds, wherever each run was made. Raises, before pooling anything, when a parameter of
    ``POOL_KEYS`` differs (naming it and both values) or when an arm has the same seed in two runs.
    """
    runs = list(runs)
    if len(runs) < 2:
        raise ValueError(f"pooling needs at least two runs, got {len(runs)}")
    _check_one_recipe({i: r[2] for i, r in enumerate(runs)})
    for scores, gates, _ in runs:
        _check_scores(scores, SCORE_COLUMNS)
        _require(gates, ["arm", "identity_mode", "seed", "mean_acc", "plateau_gain", "at_plateau"], "gates table")
    _check_disjoint_seeds([r[0] for r in runs])
    scores = pd.concat([r[0] for r in runs], ignore_index=True)
    gates = pd.concat([r[1] for r in runs], ignore_index=True)
    return scores, gates


def pool_summaries(runs: Sequence[tuple[Mapping, pd.DataFrame]]) -> tuple[Mapping, pd.DataFrame]:
    """The one-shot summaries (``oneshot_summary``) of several runs of one recipe with disjoint seeds as one run,
    ``(parameters, summary)``, the form ``length_changes`` takes; same refusals as ``pool_seed_runs``."""
    runs = list(runs)
    if not runs:
        raise ValueError("pooling needs at least one run, got none")
    _check_one_recipe({i: r[0] for i, r in enumerate(runs)})
    for _, summary in runs:
        _require(summary, ["arm", "identity_mode", "seed", "epoch"], "one-shot summary")
    _check_disjoint_seeds([r[1] for r in runs])
    return runs[0][0], pd.concat([r[1] for r in runs], ignore_index=True)


def seeds_for_power(sd: float, effect: float, confidence: float = 0.95, power: float = 0.8,
                    max_seeds: int = 100_000) -> int:
    """Smallest number of paired seeds at which the two-sided paired t test at level ``1 - confidence`` finds a
    true mean difference ``effect`` with probability ``power``, when the per-seed differences have standard
    deviation ``sd`` (exact, from scipy's noncentral t). ``max_seeds + 1`` when even ``max_seeds`` is too few."""
    from scipy import stats

    sd, effect = float(sd), abs(float(effect))
    if not (np.isfinite(sd) and sd > 0 and np.isfinite(effect) and effect > 0):
        raise ValueError(f"sd and effect must be finite and > 0, got sd={sd!r}, effect={effect!r}")
    confidence, power = _check_fraction("confidence", confidence, closed_low=False), _check_fraction("power", power)

    def achieved(n: int) -> float:
        df, nc = n - 1, effect / sd * np.sqrt(n)
        crit = stats.t.ppf(0.5 + confidence / 2, df)
        return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))

    lo, hi = 2, 2
    while achieved(hi) < power:  # power rises with n: double, then bisect
        if hi > max_seeds:
            return max_seeds + 1
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if achieved(mid) < power else (lo, mid)
    return lo


def power_table(effects: pd.DataFrame, paper_effects: Mapping[str, float] = PAPER_EFFECTS,
                confidence: float = 0.95, power: float = 0.8) -> pd.DataFrame:
    """What the seeds of each arm can tell: per arm and claim with a paper effect size, the per-seed s.d., the
    interval's half-width, whether the paper's effect lies inside the interval, and the seeds a paired t test
    needs to find the paper's effect (``seeds_for_power``) and to tell the observed one from 0.

    Columns: ``arm, claim, seeds, estimate, ci_low, ci_high, sd_seeds, half_width, paper_effect,
    paper_effect_in_ci, seeds_for_paper_effect, seeds_for_estimate``.
    """
    _require(effects, ["arm", "claim", "seeds", "estimate", "ci_low", "ci_high", "sd_seeds"], "effects table")
    rows = []
    for e in effects.itertuples():
        target = _paper_effect(e.claim, paper_effects)
        if target is None:
            continue
        usable = np.isfinite(e.sd_seeds) and e.sd_seeds > 0
        rows.append({"arm": e.arm, "claim": e.claim, "seeds": int(e.seeds), "estimate": e.estimate,
                     "ci_low": e.ci_low, "ci_high": e.ci_high, "sd_seeds": e.sd_seeds,
                     "half_width": (e.ci_high - e.ci_low) / 2, "paper_effect": target,
                     "paper_effect_in_ci": bool(e.ci_low <= target <= e.ci_high) if np.isfinite(e.ci_low) else np.nan,
                     "seeds_for_paper_effect": seeds_for_power(e.sd_seeds, target, confidence, power) if usable else np.nan,
                     "seeds_for_estimate": (seeds_for_power(e.sd_seeds, e.estimate, confidence, power)
                                            if usable and e.estimate != 0 else np.nan)})
    return pd.DataFrame(rows, columns=["arm", "claim", "seeds", "estimate", "ci_low", "ci_high", "sd_seeds",
                                       "half_width", "paper_effect", "paper_effect_in_ci", "seeds_for_paper_effect",
                                       "seeds_for_estimate"])


__all__ += ["factor_effects", "factor_supernets"]


def _factor_value(params: Mapping, key: str):
    """A recipe parameter as the factor tables show it (``steps`` = epochs x steps per epoch)."""
    if key == "steps":
        return int(params["epochs"]) * int(params["steps_per_epoch"])
    return _recipe_param(params, key)


def _run_factors(runs: Mapping[str, tuple], check_tables: bool = True) -> tuple[dict, list[str]]:
    """Each run's recipe values and the recipe parameters that differ between the runs (checked inputs).

    ``runs``: ``{label: (parameters, effects, verdicts, gates)}``; ``check_tables=False`` checks the parameters only.
    """
    if not runs:
        raise ValueError("a factor table needs at least one run")
    keys = [k for k in POOL_KEYS if k not in ("epochs", "steps_per_epoch")] + ["steps"]
    for label, (params, effects, verdicts, gates) in runs.items():
        missing = [k for k in POOL_KEYS if k not in params and k not in _ADDED_LATER]
        if missing:
            raise ValueError(f"run {label!r}: its parameters lack {missing}; is it a run of notebook 2?")
        if not check_tables:
            continue
        _require(effects, ["arm", "claim", "estimate", "ci_low", "ci_high", "seeds"], f"run {label!r} effects table")
        _require(verdicts, ["arm", "claim", "verdict"], f"run {label!r} verdicts table")
        _require(gates, ["arm", "identity_mode", "seed", "mean_acc", "plateau_gain"], f"run {label!r} gates table")
    values = {label: {k: _factor_value(r[0], k) for k in keys} for label, r in runs.items()}
    return values, [k for k in keys if len({repr(v[k]) for v in values.values()}) > 1]


def factor_supernets(runs: Mapping[str, tuple[Mapping, pd.DataFrame, pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """Every supernet of several notebook-2 runs in one table, with the recipe parameters that differ as columns.

    Same ``runs`` as ``factor_effects``. Where two runs differ only in length, a supernet (arm, identity mode,
    seed) that ends higher in the longer run was not at its plateau in the shorter one, whatever its last-part
    gain said: under a schedule that decays to 0 the last part moves little by construction.
    Columns: ``run``, the differing factors, ``arm, identity_mode, seed, mean_acc, plateau_gain``.
    """
    values, factors = _run_factors(runs)
    parts = []
    for label, (_, _, _, gates) in runs.items():
        g = gates[["arm", "identity_mode", "seed", "mean_acc", "plateau_gain"]].copy()
        for k in reversed(factors):
            g.insert(0, k, [values[label][k]] * len(g))
        g.insert(0, "run", label)
        parts.append(g)
    return pd.concat(parts, ignore_index=True)


def factor_effects(runs: Mapping[str, tuple[Mapping, pd.DataFrame, pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """Figure 1's effects from several notebook-2 runs whose recipes differ, with what differs as named factors.

    ``runs``: ``{label: (parameters, effects, verdicts, gates)}`` (tables as notebook 2 writes them,
    ``parameters`` as its run record holds them). Every recipe parameter of ``POOL_KEYS`` whose value differs
    between the runs becomes a column (``epochs`` and ``steps_per_epoch`` as one ``steps`` column), so a reader
    sees which factor separates two rows; a run's effects stay as that run's notebook computed them. Per row
    also the worst last-part gain and the lowest mean accuracy over the arm's supernets (the two gates).

    Columns: ``run``, the differing factors, ``arm, claim, estimate, ci_low, ci_high, seeds, verdict,
    paper_effect, paper_effect_in_ci, worst_plateau_gain, lowest_mean_acc``.
    """
    values, factors = _run_factors(runs)
    rows = []
    for label, (params, effects, verdicts, gates) in runs.items():
        verdict_of = {(v.arm, v.claim): v.verdict for v in verdicts.itertuples()}
        for e in effects.itertuples():
            g = gates[gates["arm"] == e.arm]
            target = _paper_effect(e.claim)
            inside = (bool(e.ci_low <= target <= e.ci_high) if target is not None and np.isfinite(e.ci_low)
                      and np.isfinite(e.ci_high) else np.nan)
            rows.append({"run": label, **{k: values[label][k] for k in factors}, "arm": e.arm, "claim": e.claim,
                         "estimate": e.estimate, "ci_low": e.ci_low, "ci_high": e.ci_high, "seeds": int(e.seeds),
                         "verdict": verdict_of.get((e.arm, e.claim), ""),
                         "paper_effect": np.nan if target is None else target, "paper_effect_in_ci": inside,
                         "worst_plateau_gain": float(g["plateau_gain"].max()) if len(g) else np.nan,
                         "lowest_mean_acc": float(g["mean_acc"].min()) if len(g) else np.nan})
    return pd.DataFrame(rows, columns=["run", *factors, "arm", "claim", "estimate", "ci_low", "ci_high", "seeds",
                                       "verdict", "paper_effect", "paper_effect_in_ci", "worst_plateau_gain",
                                       "lowest_mean_acc"])


__all__ += ["LENGTH_TOLERANCE", "length_changes"]

# How far an effect may still move with a longer schedule for the shorter schedule's reading to stand: half the
# paper's effect size, in the claim's units (only claims with a paper effect size get a stability call).
LENGTH_TOLERANCE = {claim: effect / 2 for claim, effect in PAPER_EFFECTS.items()}


def _seed_values(summary: pd.DataFrame, arm: str) -> dict:
    """Per claim and identity mode: seed -> value (points) at the arm's last scored epoch, from ``oneshot_summary``."""
    s = summary[(summary["arm"] == arm) & (summary["epoch"] == _chosen_epochs(summary, None)[arm])]
    out = {}
    for claim, spec in CLAIMS.items():
        wide = _per_seed(s, spec["column"])
        if {"identity", "let"} <= set(wide.columns):
            out[claim] = (wide["let"] - wide["identity"]).dropna()
        for mode in ("identity", "let"):
            if claim == "C1" and mode in wide.columns:
                out[f"{mode} level"] = wide[mode].dropna()
    return out


def length_changes(runs: Mapping[str, tuple[Mapping, pd.DataFrame]],
                   tolerance: Mapping[str, float] = LENGTH_TOLERANCE, confidence: float = 0.95) -> pd.DataFrame:
    """How Figure 1's effects and the supernets' levels move when only the schedule is made longer.

    ``runs``: ``{label: (parameters, summary)}``, ``summary`` as ``oneshot_summary`` writes it
    (``02_oneshot_summary.csv``). For each arm, the runs holding it whose recipes agree on every ``POOL_KEYS``
    parameter except the length (epochs x steps per epoch) are ordered by length (so runs of one recipe and
    length may hold different arms); for each consecutive pair and each quantity (claims C1-C3 as LET -
    identity, and the mean one-shot accuracy of the identity and LET supernets), the per-seed change longer -
    shorter is paired over the seeds both ran, with ``paired_t_interval`` (for the share C3, with at least
    twice ``share_variance_floor``'s variance). Under a schedule that decays to 0 the last part of a run moves
    little by construction, so this change, not the last-part gain, says whether more training would move a
    reading.
    ``stable`` (claims with an entry in ``tolerance`` only, given in ``tolerance``): the interval lies within
    +-tolerance, i.e. the longer schedule could not have moved the effect by that much; NaN otherwise.

    Columns: ``short_run, long_run, short_steps, long_steps``, the other differing factors, ``arm, quantity,
    short_estimate, long_estimate, change, ci_low, ci_high, seeds, tolerance, stable, per_seed``.
    """
    values, factors = _run_factors({k: (p, None, None, None) for k, (p, _) in runs.items()}, check_tables=False)
    others = [f for f in factors if f != "steps"]
    for label, (_, summary) in runs.items():
        _require(summary, ["arm", "identity_mode", "seed", "epoch", "n_paths", "mean_acc", "excess_sd",
                           "far_below_share"],
                 f"run {label!r} one-shot summary")
    groups: dict = {}  # (recipe, arm) -> the runs of that arm: two runs of one recipe may hold different arms
    for label, (_, summary) in runs.items():
        recipe = tuple(repr(values[label][f]) for f in others)
        for arm in dict.fromkeys(summary["arm"]):
            groups.setdefault((recipe, arm), []).append(label)
    rows = []
    for (_, arm), labels in groups.items():
        labels = sorted(labels, key=lambda r: values[r]["steps"])
        for short, long in zip(labels, labels[1:]):
            if values[short]["steps"] == values[long]["steps"]:
                raise ValueError(f"runs {short!r} and {long!r} have the same recipe and length and both hold arm "
                                 f"{arm!r}; a length comparison needs runs that differ in length (pool runs of "
                                 "one length instead)")
            before, after = _seed_values(runs[short][1], arm), _seed_values(runs[long][1], arm)
            for quantity in [q for q in after if q in before]:
                b, a = before[quantity], after[quantity]
                change = (a - b).dropna()
                floor = 0.0
                if CLAIMS.get(quantity, {}).get("share") and len(change):
                    # a change of a share difference: two share differences, twice the floor of one
                    paths = min(int(runs[r][1].loc[runs[r][1]["arm"] == arm, "n_paths"].min())
                                for r in (short, long))
                    floor = 2e4 * share_variance_floor(paths, len(change))
                t = paired_t_interval(change.to_numpy(), confidence=confidence, var_floor=floor)
                low, high = (t["low"], t["high"]) if t["n"] >= 3 else (np.nan, np.nan)
                tol = tolerance.get(quantity)
                stable = (bool(-tol <= low and high <= tol) if tol is not None and np.isfinite(low)
                          else np.nan)
                rows.append({"short_run": short, "long_run": long, "short_steps": values[short]["steps"],
                             "long_steps": values[long]["steps"], **{f: values[long][f] for f in others},
                             "arm": arm, "quantity": quantity, "short_estimate": float(b[change.index].mean()),
                             "long_estimate": float(a[change.index].mean()), "change": t["mean"],
                             "ci_low": low, "ci_high": high, "seeds": t["n"],
                             "tolerance": np.nan if tol is None else tol, "stable": stable,
                             "per_seed": ", ".join(f"{k}: {v:+.2f}" for k, v in change.items())})
    return pd.DataFrame(rows, columns=["short_run", "long_run", "short_steps", "long_steps", *others, "arm",
                                       "quantity", "short_estimate", "long_estimate", "change", "ci_low", "ci_high",
                                       "seeds", "tolerance", "stable", "per_seed"])


__all__ += ["length_checked"]


def length_checked(table: pd.DataFrame, lengths: pd.DataFrame) -> pd.DataFrame:
    """``factor_effects``'s table with each verdict checked against a longer schedule (``length_changes``).

    The notebook's gate (last part of training adds < 2 points) is necessary but not sufficient under a
    decaying schedule, so a verdict other than "uninformative at this scale" stands only where a shorter run of
    the same recipe exists and the effect did not move between the two: the change's interval within
    +-``tolerance`` (``stable``) for claims with one (C1: ``LENGTH_TOLERANCE``), including 0 for the others.
    Adds ``length_change, length_ci_low, length_ci_high, length_from_steps, checked_verdict, length_reason``.
    """
    _require(table, ["run", "arm", "claim", "verdict"], "factor table")
    _require(lengths, ["short_run", "long_run", "short_steps", "long_steps", "arm", "quantity", "change", "ci_low",
                       "ci_high", "tolerance", "stable"], "length table")
    by = {(r.long_run, r.arm, r.quantity): r for r in lengths.itertuples()}
    added = []
    for e in table.itertuples():
        c = by.get((e.run, e.arm, e.claim))
        row = {"length_change": np.nan, "length_ci_low": np.nan, "length_ci_high": np.nan,
               "length_from_steps": np.nan, "checked_verdict": e.verdict}
        ok = False
        if c is None:
            reason = "no shorter run of the same recipe to check the plateau against"
        else:
            row.update(length_change=c.change, length_ci_low=c.ci_low, length_ci_high=c.ci_high,
                       length_from_steps=c.short_steps)
            moved = f"{c.change:+.1f} ({c.ci_low:+.1f} to {c.ci_high:+.1f}) from {c.short_steps} to {c.long_steps} steps"
            if not np.isfinite(c.ci_low):
                reason, ok = f"changed {moved}, too few seeds for an interval", False
            elif np.isfinite(c.tolerance):
                ok = bool(c.stable)
                reason = f"changed {moved}: {'within' if ok else 'beyond'} +-{c.tolerance:g}"
            else:
                ok = bool(c.ci_low <= 0 <= c.ci_high)
                reason = f"changed {moved}: the interval {'includes' if ok else 'excludes'} 0"
        if not ok and e.verdict != VERDICTS[2]:
            row["checked_verdict"] = VERDICTS[2]
        row["length_reason"] = reason
        added.append(row)
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(added)], axis=1)


__all__ += ["check_length_pair", "check_pooled_length"]


def check_length_pair(params: Mapping, shorter: Mapping, label: str = "the shorter run") -> None:
    """Refuse a length comparison that is not one: ``shorter``'s recipe must equal ``params``' in every
    ``POOL_KEYS`` parameter except the length, and be shorter. Raises ValueError naming what differs."""
    values, factors = _run_factors({"this run": (params, None, None, None), label: (shorter, None, None, None)},
                                   check_tables=False)
    other = [f for f in factors if f != "steps"]
    if other:
        mine, theirs = values["this run"], values[label]
        shown = ", ".join(f"{f} {theirs[f]!r} vs {mine[f]!r}" for f in other)
        raise ValueError(f"{label} differs from this run in {shown}; a length check needs the same recipe with "
                         "fewer steps")
    if values[label]["steps"] >= values["this run"]["steps"]:
        raise ValueError(f"{label} has {values[label]['steps']} steps, this run {values['this run']['steps']}; "
                         "a length check needs a run with fewer steps")


def check_pooled_length(params: Mapping, shorter: Mapping[str, Mapping | None]) -> None:
    """Refuse a length check of pooled runs that is not one. ``shorter``: for each pooled run (this one first),
    label -> the parameters of the shorter run it names (None: it names none). Every pooled run needs a shorter
    run; these must be one recipe (so their seeds pool) with fewer steps than ``params``' recipe. Raises
    ValueError naming the run and what is wrong."""
    if not shorter:
        raise ValueError("a pooled length check needs at least one shorter run, got none")
    missing = [label for label, p in shorter.items() if p is None]
    if missing:
        raise ValueError(f"{', '.join(map(str, missing))} names no shorter run; to length-check pooled seeds every "
                         "pooled run needs its own (rerun it with shorter_run set; from the cache that takes seconds) "
                         "or leave shorter_run empty")
    _check_one_recipe(dict(shorter), what="shorter run of")
    label, first = next(iter(shorter.items()))
    check_length_pair(params, first, label=f"the shorter run of {label}")
