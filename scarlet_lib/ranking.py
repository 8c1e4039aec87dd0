"""Ranking fidelity: does a supernet order architectures the way stand-alone training does?

The paper's case for LET is that the identity supernet "severely under-estimates" some models. Here that
becomes measurable: a stratified set of architectures (plus SCARLET-A/B/C) is trained stand-alone, LET-free
as the paper trains its models, and scored one-shot by every supernet of notebook 2's arms; rank agreement
(Kendall tau, Spearman rho, precision at top-k) and the rank residual's slope against the number of identity
choices come with bootstrap intervals over architectures and stand-alone seeds.

Every comparison is on the same images: for a supernet of seed s, its one-shot scores and the stand-alone
models' accuracies are both measured on the held-out set of data seed s (the one the trainer scored on).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .analysis import paired_t_interval, plateau_check
from .cache import Cache, space_by_name
from .evaluation import accuracy, score_paths
from .models import PUBLISHED, build_model
from .recipes import SupernetRecipe, default_processes, run_jobs
from .space import Architecture
from .train import train_standalone

__all__ = ["StandaloneSettings", "STANDALONE_CODE", "ranking_archs", "standalone_data", "standalone_runs",
           "standalone_scores", "oneshot_ranking_scores", "rank_statistics", "ranking_table", "reference_agreement",
           "tau_by_size",
           "ranking_gates", "ranking_effects", "RANKING_CLAIMS", "RANKING_COLUMNS", "MODEL_COLUMNS",
           "settings_dict"]

# source modules whose code defines a stand-alone run (its cache key includes their fingerprint)
STANDALONE_CODE = ("models", "blocks", "kernels", "train", "data", "space", "evaluation")
RANKING_COLUMNS = ("arm", "identity_mode", "seed", "statistic", "estimate", "ci_low", "ci_high", "n_models")
# seed: the supernet's (one-shot) or the training seed (stand-alone); data_seed: whose held-out images
MODEL_COLUMNS = ("model", "arch", "num_identity", "identity_at_shape_change", "source", "arm", "identity_mode",
                 "seed", "data_seed", "heldout_acc", "n_images")
# claim -> statistic whose LET - identity difference is read, the sign the paper implies, what it says
RANKING_CLAIMS = {
    "R1": {"statistic": "kendall_tau", "paper_sign": +1,
           "effect": "R1 Kendall tau with stand-alone accuracy, LET - identity"},
    "R2": {"statistic": "residual_slope", "paper_sign": +1,
           "effect": "R2 rank residual per identity choice, LET - identity (the identity supernet "
                     "under-estimates identity-heavy models)"},
}


@dataclass(frozen=True)
class StandaloneSettings:
    """How the reference models are trained: SGD (``train.train_standalone``'s "sgd" recipe), LET-free.

    The data, batch, width and image size come from the supernet recipe they are compared with.
    ``steps_per_epoch=0``: the whole epoch of the data.
    """
    epochs: int = 4
    steps_per_epoch: int = 100
    lr: float = 0.05
    seeds: tuple = (0, 1)

    def __post_init__(self):
        for name, least in (("epochs", 1), ("steps_per_epoch", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
                raise ValueError(f"StandaloneSettings.{name} must be an integer >= {least}, got {v!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (
                math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"StandaloneSettings.lr must be a finite number > 0, got {self.lr!r}")
        seeds = tuple(self.seeds) if isinstance(self.seeds, (list, tuple)) else None
        if not seeds or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ValueError(f"StandaloneSettings.seeds must be a non-empty list of distinct integers >= 0, "
                             f"got {self.seeds!r}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))


def _check_recipe(recipe):

    if not isinstance(recipe, SupernetRecipe):
        raise TypeError(f"expected a recipes.SupernetRecipe, got {type(recipe).__name__}")
    return recipe


def ranking_archs(recipe, n_models: int, include_published: bool = True) -> dict[str, Architecture]:
    """Named architectures to rank: ``space.sample_stratified(n_models, seed=0)`` (a subset of the paths
    notebook 2 scores, stratified by identity count and identity at a shape-changing layer), then
    SCARLET-A/B/C where the recipe's space holds them. Names: ``path <i>`` and the published names."""

    recipe = _check_recipe(recipe)
    if isinstance(n_models, bool) or not isinstance(n_models, (int, np.integer)) or n_models < 5:
        raise ValueError(f"n_models must be an integer >= 5 (a rank statistic on fewer says little), got {n_models!r}")
    space = space_by_name(recipe.space)
    archs = {f"path {i}": a for i, a in enumerate(space.sample_stratified(int(n_models), seed=0))}
    if include_published:
        for name, arch in PUBLISHED.items():
            try:
                archs[name] = space.check(arch)
            except ValueError:
                continue
    return archs


def standalone_data(recipe, data_seed: int = 0):
    """The ``DataBundle`` of the recipe at ``data_seed``: stand-alone models train on data seed 0 and are
    scored on the held-out set of every supernet seed."""
    return _check_recipe(recipe).replace(seed=int(data_seed)).data()


def _standalone_key(recipe, arch: Architecture, seed: int, settings: StandaloneSettings, device: str) -> dict:
    return {"arch": str(arch), "seed": int(seed), "identity_mode": "identity", "optimizer": "sgd",
            "epochs": settings.epochs, "steps_per_epoch": settings.steps_per_epoch, "lr": settings.lr,
            "dataset": recipe.dataset, "difficulty": recipe.difficulty, "stream_labels": recipe.stream_labels,
            "data_root": recipe.data_root, "image_size": recipe.image_size,
            "batch_size": recipe.batch_size, "width": recipe.width, "eval_images": recipe.eval_images,
            "device": str(device)}


def _train_standalone_into_cache(recipe, arch: str, seed: int, settings: StandaloneSettings, device: str,
                                 cache_dir) -> str:
    import torch


    arch = Architecture.parse(arch)
    cache = Cache("standalone", cache_dir or None, code_modules=STANDALONE_CODE)

    def create(folder, checkpoint_dir):
        result = train_standalone(arch, standalone_data(recipe), epochs=settings.epochs, identity_mode="identity",
                                  seed=seed, recipe="sgd", width_mult=recipe.width, lr=settings.lr,
                                  steps_per_epoch=settings.steps_per_epoch or None, device=device, progress=False,
                                  checkpoint_dir=checkpoint_dir)
        result.save(folder)
        torch.save(result.model.state_dict(), folder / "model.pt")

    # checkpoints every epoch: a run killed mid-training continues when asked again
    folder, _ = cache.get_or_train(_standalone_key(recipe, arch, seed, settings, device), create)
    return str(folder)


def standalone_runs(recipe, archs: Mapping[str, Architecture], settings: StandaloneSettings,
                    device: str = "cpu", cache_dir=None, processes: int | None = None) -> pd.DataFrame:
    """Train (or load from the cache) every architecture with every stand-alone seed; their curves.

    Runs go to ``processes`` one-thread worker processes (``recipes.run_jobs``), so results do not depend on
    it. Returns one row per model, seed and epoch: ``model, arch, seed, epoch, train_loss, train_acc,
    heldout_acc, folder`` (held-out: the common held-out set, all of it).
    """

    recipe = _check_recipe(recipe)
    if not isinstance(settings, StandaloneSettings):
        raise TypeError(f"settings must be a StandaloneSettings, got {type(settings).__name__}")
    jobs = [(name, arch, seed) for name, arch in archs.items() for seed in settings.seeds]
    folders = run_jobs([(_train_standalone_into_cache, (recipe, str(a), s, settings, device, cache_dir))
                        for _, a, s in jobs], processes=default_processes() if processes is None else processes)
    parts = []
    for (name, arch, seed), folder in zip(jobs, folders):
        curves = pd.read_csv(f"{folder}/curves.csv")
        parts.append(curves.assign(model=name, arch=str(arch), seed=seed, folder=folder))
    cols = ["model", "arch", "seed", "epoch", "train_loss", "train_acc", "heldout_acc", "folder"]
    return pd.concat(parts, ignore_index=True)[cols]


def _model_rows(names, archs, accs, n_images, **fields) -> pd.DataFrame:
    archs = [Architecture.coerce(a) for a in archs]
    return pd.DataFrame({"model": list(names), "arch": [str(a) for a in archs],
                         "num_identity": [a.num_identity for a in archs],
                         "identity_at_shape_change": [a.identity_at_shape_change for a in archs],
                         "source": fields.pop("source"), **fields, "heldout_acc": np.asarray(accs, float),
                         "n_images": int(n_images)})[list(MODEL_COLUMNS)]


def _heldout(recipe, data_seed: int):
    data = standalone_data(recipe, data_seed)
    return data, list(data.heldout_loader)


def standalone_scores(runs: pd.DataFrame, recipe, data_seeds: Sequence[int], device: str = "cpu") -> pd.DataFrame:
    """The trained stand-alone models (``standalone_runs``' folders) scored on the held-out set of every data
    seed in ``data_seeds`` (the supernets' seeds), ``MODEL_COLUMNS`` rows with source "standalone"."""
    import torch


    recipe = _check_recipe(recipe)
    last = runs.drop_duplicates(["model", "seed"])[["model", "arch", "seed", "folder"]]
    parts = []
    for ds in dict.fromkeys(int(d) for d in data_seeds):
        data, heldout = _heldout(recipe, ds)
        accs = []
        for r in last.itertuples():
            model = build_model(Architecture.parse(r.arch), num_classes=data.num_classes, width_mult=recipe.width,
                                small_input=data.small_input, identity_mode="identity")
            model.load_state_dict(torch.load(f"{r.folder}/model.pt", map_location=device, weights_only=True))
            model.to(device).eval()
            with torch.no_grad():
                accs.append(accuracy(model, heldout, device)[0])
        n = sum(int(y.numel()) for _, y in heldout)
        parts.append(_model_rows(last["model"], last["arch"], accs, n, source="standalone", arm="standalone",
                                 identity_mode="identity", seed=last["seed"].to_numpy(), data_seed=ds))
    return pd.concat(parts, ignore_index=True)


def oneshot_ranking_scores(supernets: Mapping[tuple, object], archs: Mapping[str, Architecture],
                           device: str = "cpu") -> pd.DataFrame:
    """One-shot held-out accuracy of every named architecture from each supernet, ``MODEL_COLUMNS`` rows.

    ``supernets``: ``{(arm, identity_mode, seed): cache.SupernetRun}``. A model the trainer scored at the last
    epoch (notebook 2's fixed paths) keeps that score; any other is scored now by ``evaluation.score_paths``
    on the recipe's own data (the same calibration and held-out images the trainer used).
    """

    parts = []
    for (arm, mode, seed), run in supernets.items():
        ev = run.evals[run.evals["epoch"] == run.evals["epoch"].max()] if len(run.evals) else run.evals
        found = {a: (acc, n) for a, acc, n in zip(ev.get("arch", []), ev.get("heldout_acc", []), ev.get("n_images", []))}
        missing = [str(a) for a in archs.values() if str(a) not in found]
        if missing:
            data = run.recipe.data()
            s = score_paths(run.supernet, missing, data.calib_batches, list(data.heldout_loader), device=device)
            found.update({a: (acc, n) for a, acc, n in zip(s["arch"], s["heldout_acc"], s["n_images"])})
        accs = [found[str(a)][0] for a in archs.values()]
        n_images = {int(found[str(a)][1]) for a in archs.values()}
        if len(n_images) != 1:
            raise ValueError(f"supernet {(arm, mode, seed)}: models scored on different numbers of images {n_images}")
        parts.append(_model_rows(list(archs), list(archs.values()), accs, n_images.pop(), source="oneshot", arm=arm,
                                 identity_mode=mode, seed=seed, data_seed=run.recipe.seed))
    return pd.concat(parts, ignore_index=True)


def rank_statistics(oneshot: np.ndarray, standalone: np.ndarray, num_identity: np.ndarray,
                    top_k: int) -> dict:
    """Agreement of two accuracy vectors over the same models.

    ``kendall_tau`` (tau-b) and ``spearman_rho`` (scipy); ``precision_at_k``: the share of the k best
    stand-alone models among the k best one-shot ones; ``residual_slope``: slope over ``num_identity`` of
    the rank residual (one-shot rank minus stand-alone rank, both as fractions of the number of models, 1 =
    best), by least squares: negative when the supernet ranks identity-heavy models lower than stand-alone
    training does (the paper's under-estimation).
    """
    from scipy import stats

    x, y, k_id = (np.asarray(v, float) for v in (oneshot, standalone, num_identity))
    n = x.size
    out = {"kendall_tau": stats.kendalltau(x, y).statistic, "spearman_rho": stats.spearmanr(x, y).statistic}
    k = min(int(top_k), n)
    top_x, top_y = set(np.argsort(-x, kind="stable")[:k]), set(np.argsort(-y, kind="stable")[:k])
    out["precision_at_k"] = len(top_x & top_y) / k
    resid = (stats.rankdata(x) - stats.rankdata(y)) / n
    out["residual_slope"] = stats.linregress(k_id, resid).slope if np.ptp(k_id) > 0 else float("nan")
    return {key: float(v) for key, v in out.items()}


def _pivot(models: pd.DataFrame):
    """(one-shot rows, stand-alone accuracies indexed by (data_seed, model) with one column per seed)."""
    sa = models[models["source"] == "standalone"].pivot_table(index=["data_seed", "model"], columns="seed",
                                                              values="heldout_acc")
    one = models[models["source"] == "oneshot"]
    if sa.isna().any().any():
        raise ValueError("every stand-alone model needs every stand-alone seed (a run is missing)")
    return one, sa


def _supernets(models: pd.DataFrame):
    """Per supernet: key, its one-shot rows (indexed by model) and the stand-alone matrix on its data seed."""
    one, sa = _pivot(models)
    for key, g in one.groupby(["arm", "identity_mode", "seed"], sort=False):
        ds = g["data_seed"].iloc[0]
        if ds not in sa.index.get_level_values(0):
            raise ValueError(f"no stand-alone scores on the held-out set of data seed {ds} (supernet {key})")
        sa_ds = sa.loc[ds]
        g = g.set_index("model").loc[[m for m in g["model"] if m in sa_ds.index]]
        yield key, g, sa_ds.loc[g.index].to_numpy(float)


def ranking_table(models: pd.DataFrame, top_k: int = 10, n_resamples: int = 2000, seed: int = 0,
                  confidence: float = 0.95) -> pd.DataFrame:
    """Per supernet, ``rank_statistics`` against the stand-alone mean, with percentile bootstrap intervals.

    ``models``: ``MODEL_COLUMNS`` rows from ``oneshot_ranking_scores`` and ``standalone_scores``. Each
    resample draws the models with replacement and, for each drawn model, the stand-alone seeds with
    replacement (their mean is its stand-alone accuracy), so the interval covers both the choice of models
    and the stand-alone training noise. Columns: ``RANKING_COLUMNS``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    rows = []
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    for (arm, mode, s), g, y_all in _supernets(models):
        x, k_id = g["heldout_acc"].to_numpy(float), g["num_identity"].to_numpy(float)
        n, n_seeds = y_all.shape
        point = rank_statistics(x, y_all.mean(1), k_id, top_k)
        boot = {key: [] for key in point}
        for _ in range(n_resamples):
            idx = rng.integers(n, size=n)
            ys = y_all[idx[:, None], rng.integers(n_seeds, size=(n, n_seeds))].mean(1)
            for key, v in rank_statistics(x[idx], ys, k_id[idx], top_k).items():
                boot[key].append(v)
        for key, est in point.items():
            b = np.asarray(boot[key], float)
            b = b[np.isfinite(b)]
            lo, hi = (np.quantile(b, [alpha, 1 - alpha]) if b.size else (np.nan, np.nan))
            rows.append({"arm": arm, "identity_mode": mode, "seed": s, "statistic": key, "estimate": est,
                         "ci_low": float(lo), "ci_high": float(hi), "n_models": n})
    return pd.DataFrame(rows, columns=list(RANKING_COLUMNS))


def reference_agreement(models: pd.DataFrame, n_resamples: int = 2000, seed: int = 0,
                        confidence: float = 0.95) -> pd.DataFrame:
    """How well the stand-alone reference ranks itself: Kendall tau between two stand-alone training seeds
    of the same models, on each data seed's held-out set (averaged over seed pairs), with a percentile
    bootstrap interval over models.

    This is the ceiling of any one-shot tau: a reference whose own seeds disagree cannot be matched better
    by a supernet, so a low one-shot tau then says nothing about the supernet. Rows in ``RANKING_COLUMNS``
    with ``arm="standalone"``, ``identity_mode=""``, ``seed`` = the data seed and ``statistic =
    "seed_to_seed_tau"``.
    """
    from itertools import combinations

    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    _, sa = _pivot(models)
    if sa.shape[1] < 2:
        raise ValueError(f"the seed-to-seed agreement needs >= 2 stand-alone seeds, got {sa.shape[1]}")
    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2

    def tau(y):
        return float(np.mean([stats.kendalltau(y[:, i], y[:, j]).statistic
                              for i, j in combinations(range(y.shape[1]), 2)]))

    rows = []
    for ds in dict.fromkeys(sa.index.get_level_values(0)):
        y = sa.loc[ds].to_numpy(float)
        n = y.shape[0]
        boot = np.asarray([tau(y[rng.integers(n, size=n)]) for _ in range(n_resamples)], float)
        boot = boot[np.isfinite(boot)]
        lo, hi = (np.quantile(boot, [alpha, 1 - alpha]) if boot.size else (np.nan, np.nan))
        rows.append({"arm": "standalone", "identity_mode": "", "seed": int(ds), "statistic": "seed_to_seed_tau",
                     "estimate": tau(y), "ci_low": float(lo), "ci_high": float(hi), "n_models": n})
    return pd.DataFrame(rows, columns=list(RANKING_COLUMNS))


def tau_by_size(models: pd.DataFrame, sizes: Sequence[int] = (5, 8, 13, 20, 30), n_subsets: int = 1000,
                seed: int = 0, confidence: float = 0.95) -> pd.DataFrame:
    """Kendall tau of random subsets of ``size`` models, per supernet: what ranking 13 models can show.

    Estimate = the median over ``n_subsets`` subsets drawn without replacement, interval = the central
    ``confidence`` range of the subsets' taus. Sizes above the number of models are left out. Columns:
    ``RANKING_COLUMNS`` with statistic ``kendall_tau_subset``.
    """
    from scipy import stats

    rng = np.random.default_rng(seed)
    alpha = (1 - confidence) / 2
    rows = []
    for (arm, mode, s), g, y_all in _supernets(models):
        x, y = g["heldout_acc"].to_numpy(float), y_all.mean(1)
        for size in sizes:
            if size > len(x) or size < 3:
                continue
            taus = np.array([stats.kendalltau(x[sub], y[sub]).statistic for sub in
                             (rng.choice(len(x), size, replace=False) for _ in range(n_subsets))], float)
            taus = taus[np.isfinite(taus)]
            rows.append({"arm": arm, "identity_mode": mode, "seed": s, "statistic": "kendall_tau_subset",
                         "estimate": float(np.median(taus)), "ci_low": float(np.quantile(taus, alpha)),
                         "ci_high": float(np.quantile(taus, 1 - alpha)), "n_models": int(size)})
    return pd.DataFrame(rows, columns=list(RANKING_COLUMNS))


def ranking_gates(models: pd.DataFrame, runs: pd.DataFrame, chance: float, margin: float = 0.15,
                  fraction: float = 0.2, tolerance: float = 0.02, reference: pd.DataFrame | None = None,
                  min_reference_tau: float = 0.5) -> pd.DataFrame:
    """Whether each supernet's taus can be read: its mean one-shot accuracy on the ranked models is at least
    ``margin`` above chance, every stand-alone run is at a plateau (``analysis.plateau_check`` over its
    per-epoch held-out accuracy, training counted from epoch -1) and, given ``reference``
    (``reference_agreement``), the stand-alone seeds agree with each other on that supernet's data seed at
    tau >= ``min_reference_tau``. Columns: ``arm, identity_mode, seed, mean_acc, above_chance,
    standalone_plateau, worst_standalone_gain, reference_tau, reference_reliable, readable``."""
    if not -1 <= min_reference_tau <= 1:
        raise ValueError(f"min_reference_tau must be in [-1, 1], got {min_reference_tau!r}")
    gains = [plateau_check(r, "heldout_acc", fraction, tolerance, x="epoch", start=-1)[0]
             for _, r in runs.groupby(["model", "seed"])]
    gains = np.asarray(gains, float)
    sa_flat = bool(gains.size and np.all(np.isfinite(gains)) and np.all(gains < tolerance))
    worst = float(np.nanmax(gains)) if np.isfinite(gains).any() else float("nan")
    one = models[models["source"] == "oneshot"]
    g = one.groupby(["arm", "identity_mode", "seed"], sort=False)["heldout_acc"].mean().rename("mean_acc")
    out = g.reset_index()
    out["above_chance"] = out["mean_acc"] >= chance + margin
    out["standalone_plateau"] = sa_flat
    out["worst_standalone_gain"] = worst
    data_seed = one.groupby(["arm", "identity_mode", "seed"], sort=False)["data_seed"].first().to_numpy()
    if reference is None:
        out["reference_tau"] = np.nan
        out["reference_reliable"] = True
    else:
        ref = reference[reference["statistic"] == "seed_to_seed_tau"].set_index("seed")["estimate"]
        out["reference_tau"] = [float(ref.get(ds, np.nan)) for ds in data_seed]
        out["reference_reliable"] = out["reference_tau"] >= min_reference_tau
    out["readable"] = out["above_chance"] & sa_flat & out["reference_reliable"]
    return out


def ranking_effects(table: pd.DataFrame, gates: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per arm and claim (``RANKING_CLAIMS``), LET - identity paired over seeds with a t interval, and a
    verdict: "uninformative at this scale" unless every supernet of the arm passes ``ranking_gates`` and
    there are >= 3 paired seeds; then "reproduced" when the interval lies on the paper's side of 0, else
    "not reproduced". Columns: ``arm, claim, effect, estimate, ci_low, ci_high, rerun_low, rerun_high, seeds,
    per_seed, verdict, reason`` (``rerun_*``: where a rerun on another machine falls, ``paired_t_interval``)."""
    rows = []
    for arm in dict.fromkeys(table["arm"]):
        t = table[table["arm"] == arm]
        arm_gates = gates[gates["arm"] == arm]
        for claim, spec in RANKING_CLAIMS.items():
            v = t[t["statistic"] == spec["statistic"]].pivot_table(index="seed", columns="identity_mode",
                                                                    values="estimate")
            if not {"identity", "let"} <= set(v.columns):
                continue
            diffs = (v["let"] - v["identity"]).dropna()
            ci = paired_t_interval(diffs.to_numpy(), confidence)
            shown = (f"LET - identity {ci['mean']:+.3f} ({100 * confidence:.0f}% CI {ci['low']:+.3f} to "
                     f"{ci['high']:+.3f}, {ci['n']} seeds)")
            blocked = arm_gates[~arm_gates["readable"]]
            if len(blocked):
                parts = [f"{r.identity_mode} seed {r.seed}: " + ", ".join(
                    p for p, bad in (("one-shot mean %.1f%% not well above chance" % (100 * r.mean_acc),
                                      not r.above_chance),
                                     ("stand-alone models not at a plateau (worst last-fifth gain %+.1f points)"
                                      % (100 * r.worst_standalone_gain), not r.standalone_plateau),
                                     ("stand-alone seeds rank the models at tau %.2f with each other"
                                      % r.reference_tau, not r.reference_reliable)) if bad)
                         for r in blocked.itertuples()]
                verdict, reason = "uninformative at this scale", "; ".join(parts) + f". Not read: {shown}."
            elif ci["n"] < 3 or not np.isfinite(ci["low"]):
                verdict, reason = "uninformative at this scale", f"fewer than 3 paired seeds. Not read: {shown}."
            elif (ci["low"] > 0) if spec["paper_sign"] > 0 else (ci["high"] < 0):
                verdict, reason = "reproduced", f"{shown}: the interval lies on the paper's side of 0."
            elif (ci["high"] < 0) if spec["paper_sign"] > 0 else (ci["low"] > 0):
                verdict = "not reproduced"
                reason = f"{shown}: the interval lies entirely on the other side of 0" + (
                    ", with the paper's recipe." if arm == "paper" else f", with the {arm} arm's recipe.")
            else:
                verdict, reason = "not reproduced", f"{shown}: the interval includes 0."
            rows.append({"arm": arm, "claim": claim, "effect": spec["effect"], "estimate": ci["mean"],
                         "ci_low": ci["low"], "ci_high": ci["high"], "rerun_low": ci["rerun_low"],
                         "rerun_high": ci["rerun_high"], "seeds": ci["n"],
                         "per_seed": ", ".join(f"{s}: {d:+.3f}" for s, d in diffs.items()),
                         "verdict": verdict, "reason": reason})
    return pd.DataFrame(rows, columns=["arm", "claim", "effect", "estimate", "ci_low", "ci_high", "rerun_low",
                                       "rerun_high", "seeds", "per_seed", "verdict", "reason"])


def settings_dict(settings: StandaloneSettings) -> dict:
    """The settings as plain values (for run records)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}
