"""Figure 3's ablation: the same architecture trained stand-alone as folded (LET-free), linear LET and LET + ReLU.

One run is one (arm, seed); runs are independent, so ``figure3_runs`` trains them in worker processes with
one thread each (``recipes.run_jobs``), which gives the same numbers whatever the number of processes. With a
cache folder every run is kept as a cache entry and checkpoints every epoch while it trains, so a rerun reads
finished runs and continues a killed one from its last epoch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Sequence

import pandas as pd

from .cache import Cache
from .data import get_data
from .evaluation import accuracy
from .let import fold_network
from .models import FIGURE3_ARCH
from .ranking import STANDALONE_CODE
from .recipes import run_jobs
from .train import train_standalone

__all__ = ["FIGURE3_ARMS", "FIGURE3_CODE", "Figure3Settings", "figure3_run", "figure3_runs"]

# arm -> identity_mode of the stand-alone model
FIGURE3_ARMS = {"folded": "identity", "let": "let", "let_relu": "let_relu"}
# the modules whose code decides a run's numbers (its cache key): a stand-alone run's, plus the folding here
FIGURE3_CODE = STANDALONE_CODE + ("ablation", "let")


@dataclass(frozen=True)
class Figure3Settings:
    """Everything one Figure 3 run needs besides its arm and seed (data, model width, SGD schedule)."""
    dataset: str = "gratings"
    data_root: str = ""
    image_size: int = 32
    batch_size: int = 64
    width: float = 0.25
    epochs: int = 4
    steps_per_epoch: int = 25  # 0: the whole epoch
    lr: float = 0.01
    eval_batches: int = 4  # held-out batches evaluated each epoch (0: all)
    device: str = "cpu"

    def __post_init__(self):
        for name, least in (("image_size", 1), ("batch_size", 1), ("epochs", 1), ("steps_per_epoch", 0),
                            ("eval_batches", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"Figure3Settings.{name} must be an integer >= {least}, got {v!r}")
        for name in ("width", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
                raise ValueError(f"Figure3Settings.{name} must be a finite number > 0, got {v!r}")


def figure3_run(arm: str, seed: int, settings: Figure3Settings,
                checkpoint_dir=None) -> tuple[pd.DataFrame, list[dict]]:
    """Train one arm with one seed; return its per-epoch curves and its final held-out accuracy rows.

    For the linear-LET arm the trained model is also folded (``let.fold_network``, ``drop`` and ``exact``)
    and scored again, as rows ``let_folded_drop`` / ``let_folded_exact``. ``checkpoint_dir``: as in
    ``train.train_standalone`` (a rerun continues from the last finished epoch).
    """

    if arm not in FIGURE3_ARMS:
        raise ValueError(f"unknown Figure 3 arm {arm!r}; accepted: {', '.join(FIGURE3_ARMS)}")
    s = settings
    data = get_data(s.dataset, root=s.data_root or None, image_size=s.image_size, batch_size=s.batch_size, seed=0)
    res = train_standalone(FIGURE3_ARCH, data, epochs=s.epochs, identity_mode=FIGURE3_ARMS[arm], seed=seed,
                           width_mult=s.width, lr=s.lr, steps_per_epoch=s.steps_per_epoch or None,
                           eval_batches=s.eval_batches or None, device=s.device, progress=False,
                           checkpoint_dir=checkpoint_dir)
    curves = res.curves.assign(arm=arm, seed=seed)
    final = [{"arm": arm, "seed": seed, "acc": float(curves["heldout_acc"].iloc[-1])}]
    if arm == "let":
        heldout = list(islice(iter(data.heldout_loader), s.eval_batches or None))
        model = res.model.eval()
        for mode in ("drop", "exact"):
            folded, _ = fold_network(model.double(), mode=mode)
            final.append({"arm": f"let_folded_{mode}", "seed": seed,
                          "acc": accuracy(folded.float().eval(), heldout, s.device)[0]})
            model.float()
    return curves, final


def _cached_figure3_run(arm: str, seed: int, settings: Figure3Settings, cache_dir) -> tuple[pd.DataFrame, list[dict]]:
    """``figure3_run`` kept in (and read from) the ``figure3`` cache entry of its arm, seed and settings."""

    def create(folder: Path, checkpoint_dir: Path):
        curves, final = figure3_run(arm, seed, settings, checkpoint_dir=checkpoint_dir)
        curves.to_csv(folder / "curves.csv", index=False)
        pd.DataFrame(final).to_csv(folder / "final.csv", index=False)

    def read(folder: Path):
        return (pd.read_csv(folder / "curves.csv", float_precision="round_trip"),
                pd.read_csv(folder / "final.csv", float_precision="round_trip").to_dict("records"))

    key = {"arm": arm, "seed": int(seed), **asdict(settings)}
    return Cache("figure3", cache_dir, code_modules=FIGURE3_CODE).load(key, create, read, checkpointed=True)


def figure3_runs(settings: Figure3Settings, seeds: Sequence[int], processes: int = 1,
                 arms: Sequence[str] = tuple(FIGURE3_ARMS), cache_dir=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (seed, arm) run, in ``processes`` one-thread workers: ``(curves, final)`` tables.

    ``cache_dir``: the cache root (``cache.default_cache_root()`` is the suite's) where each run is kept and
    checkpointed while it trains; None trains every run again and keeps nothing.
    """

    bad = [a for a in arms if a not in FIGURE3_ARMS]
    if bad:
        raise ValueError(f"unknown Figure 3 arm(s) {bad}; accepted: {', '.join(FIGURE3_ARMS)}")
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    jobs = [(figure3_run, (arm, int(s), settings)) if cache_dir is None
            else (_cached_figure3_run, (arm, int(s), settings, cache_dir)) for s in seeds for arm in arms]
    results = run_jobs(jobs, processes)
    curves = pd.concat([c for c, _ in results], ignore_index=True)
    final = pd.DataFrame([row for _, rows in results for row in rows])
    return curves, final
