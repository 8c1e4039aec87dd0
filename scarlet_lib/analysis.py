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
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .space import CHANNEL_CHANGE_LAYERS, IDENTITY, REDUCTION_LAYERS, Architecture

__all__ = ["stability_log", "add_blocks", "stability_summary", "last_block", "arch_strata", "far_below_threshold",
           "stability_effects", "paired_bootstrap", "well_above_chance", "paired_gaps", "channel_similarity",
           "SHAPE_CHANGE_LAYERS", "layer_choice_features"]

# 0-based layers where a plain identity cannot be a true identity (stride 2 or more channels).
SHAPE_CHANGE_LAYERS = tuple(sorted(set(REDUCTION_LAYERS) | set(CHANNEL_CHANGE_LAYERS)))


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
        ids = [i for i, c in enumerate(arch) if c == IDENTITY]
        rows.append({"n_identity": len(ids),
                     "identity_at_shape_change": any(i in SHAPE_CHANGE_LAYERS for i in ids)})
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
    """For each (a, b) pair of arms: per-seed differences b - a of ``value`` and their bootstrap interval."""
    _require(final, [value, arm, seed], "final table")
    wide = final.pivot_table(index=seed, columns=arm, values=value, aggfunc="mean")
    rows = []
    for a, b in pairs:
        if a not in wide or b not in wide:
            continue
        d = (wide[b] - wide[a]).dropna()
        boot = paired_bootstrap(d.values, confidence=confidence)
        sd = d.std(ddof=1) if d.size > 1 else float("nan")
        rows.append({"comparison": f"{b} - {a}", "seeds": boot["n"], "mean_diff": boot["mean"],
                     "ci_low": boot["low"], "ci_high": boot["high"],
                     "cohens_dz": boot["mean"] / sd if sd and np.isfinite(sd) and sd > 0 else float("nan"),
                     "per_seed": ", ".join(f"{v:+.3f}" for v in d.values)})
    return pd.DataFrame(rows)


def channel_similarity(features: dict) -> pd.DataFrame:
    """Mean cosine similarity of matching channels between every pair of choices at one layer.

    ``features``: choice -> tensor/array (N, C, H, W) for the same N images. For each choice, the
    similarity of its channel c map to channel c of every other choice with the same shape, averaged
    over channels, images and other choices. All-zero maps (e.g. a plain identity's padded channels)
    count as similarity 0.
    """
    flat = {}
    for c, f in features.items():
        a = np.asarray(f.detach().cpu() if hasattr(f, "detach") else f, dtype=np.float64)
        flat[c] = a.reshape(a.shape[0], a.shape[1], -1)
    rows = []
    for c, a in flat.items():
        sims = []
        for o, b in flat.items():
            if o == c or b.shape != a.shape:
                continue
            num = (a * b).sum(-1)
            den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
            sims.append(np.where(den > 0, num / np.where(den > 0, den, 1), 0.0).mean())
        rows.append({"choice": c, "mean_cosine_to_others": float(np.mean(sims)) if sims else float("nan")})
    return pd.DataFrame(rows)


def layer_choice_features(supernet, x, prefix, layer: int, calib_batches=None, choices=None) -> dict:
    """Activations after ``layer`` (1-based) for every choice there, with one fixed prefix path before it.

    For each choice ``c`` the path is ``prefix[:layer-1] + [c]``; BatchNorm statistics are re-estimated
    for that path on ``calib_batches`` (as for one-shot evaluation) when given, the features are taken
    in eval mode, and the supernet's own statistics are restored. Returns ``{choice: tensor (N, C, H, W)}``.
    """
    import torch

    from .evaluation import recalibrate_bn
    from .space import NUM_LAYERS

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
