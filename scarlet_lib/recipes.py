"""A supernet run as one value: every setting that defines it, the named arms, parallel training.

``SupernetRecipe`` is what the trainer, the supernet cache (its key), the runner profiles, the command line
and the notebooks pass around instead of a dozen loose arguments; ``recipe.replace(...)`` derives a variant.
``ARMS`` names the recipes Figure 1 compares identity and LET under:

* ``paper``: the released init everywhere (no zero-init residuals), LET with the released conv init ("he"),
  FairNAS's accumulate-then-update (``reduction="sum"``) at the learning rate divided by m (the paths a step);
* ``calibrated``: the suite's calibrated settings (zero-init residuals, per-weight gradient mean, "he" LET);
* ``let-identity-init``: calibrated, with every LET starting as the zero-pad identity, so the identity and
  LET supernets of a seed start as the same function.

``run_jobs`` trains several supernets in worker processes with one thread each: a supernet's numbers
depend on its thread count, not on how many run beside it, so the tables are the same whatever
``processes`` is (tested), and two one-thread processes use a 2-core machine better than one two-thread one.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from multiprocessing import get_context
from typing import Any, Iterable, Mapping, Sequence

from .blocks import IDENTITY_MODES, LET_INITS
from .data import DATASETS, GRATING_DIFFICULTIES, STREAM_LABELS, get_data
from .space import SPACE_NO_SE, SPACE_SE
from .supernet import Supernet

__all__ = ["SupernetRecipe", "ARMS", "arm_recipe", "RECIPE_FIELDS", "run_jobs", "TRAIN_THREADS", "default_processes"]

SPACES = ("se", "no_se")
REDUCTIONS = ("per_weight", "mean", "sum")
CALIB_IMAGES = 512  # training images each scored path's BatchNorm is recalibrated on (at least)
TRAIN_THREADS = 1  # threads of every supernet training process (results depend on it; kept fixed)


def _fail(name, value, accepted):
    raise ValueError(f"recipe {name}={value!r} is not accepted; {accepted}")


@dataclass(frozen=True)
class SupernetRecipe:
    """Everything that defines one strict-fair supernet run (what is trained, on what, how long, from where).

    ``steps_per_epoch=0`` means the data's whole epoch. ``lr`` is the learning rate actually used (for
    ``reduction="sum"`` pass the m-times smaller one, as ``arm_recipe("paper", ...)`` does).
    Scoring (what Figure 1 reads): every ``eval_every`` epochs (and after the last) the trainer scores
    ``eval_paths`` fixed paths (``eval_archs()``: stratified by number of identity choices and identity at a
    shape-changing layer, the same set for every seed and arm) on ``eval_images`` held-out images, each after
    BN recalibration; ``eval_paths=0`` turns it off.
    """

    identity_mode: str = "let"
    seed: int = 0
    space: str = "no_se"
    width: float = 0.25
    dataset: str = "gratings"
    difficulty: str = "standard"
    stream_labels: str = "balanced"
    data_root: str = ""
    image_size: int = 32
    batch_size: int = 32
    lr: float = 0.05
    warmup_steps: int = 20
    epochs: int = 4
    steps_per_epoch: int = 55
    zero_init_residual: bool = True
    let_init: str = "he"
    reduction: str = "per_weight"
    eval_paths: int = 4
    eval_images: int = 2048
    eval_every: int = 1

    def __post_init__(self):
        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if self.identity_mode not in IDENTITY_MODES:
            _fail("identity_mode", self.identity_mode, f"accepted: {IDENTITY_MODES}")
        if self.space not in SPACES:
            _fail("space", self.space, f"accepted: {SPACES} (13 choices with SE, 7 without)")
        if str(self.dataset).lower() not in DATASETS:
            _fail("dataset", self.dataset, f"accepted: {DATASETS}")
        if self.difficulty not in GRATING_DIFFICULTIES:
            _fail("difficulty", self.difficulty, f"accepted: {tuple(GRATING_DIFFICULTIES)} (the grating presets)")
        if str(self.dataset).lower() != "gratings" and self.difficulty != "standard":
            _fail("difficulty", self.difficulty, f"accepted with dataset={self.dataset!r}: 'standard' (a grating "
                  "preset; other datasets have no difficulty)")
        if self.stream_labels not in STREAM_LABELS:
            _fail("stream_labels", self.stream_labels, f"accepted: {STREAM_LABELS} (how each batch's labels are drawn)")
        if str(self.dataset).lower() != "gratings" and self.stream_labels != "balanced":
            _fail("stream_labels", self.stream_labels, f"accepted with dataset={self.dataset!r}: 'balanced' (a "
                  "gratings-stream setting; other datasets draw batches by shuffling)")
        if self.let_init not in LET_INITS:
            _fail("let_init", self.let_init, f"accepted: {LET_INITS}")
        if self.identity_mode == "identity" and self.let_init != "he":
            # no LET to initialise: the same supernet, so one value (and one cache entry) for it
            object.__setattr__(self, "let_init", "he")
        if self.reduction not in REDUCTIONS:
            _fail("reduction", self.reduction, f"accepted: {REDUCTIONS}")
        if not isinstance(self.zero_init_residual, bool):
            _fail("zero_init_residual", self.zero_init_residual, "accepted: True or False")
        if not isinstance(self.data_root, str):
            _fail("data_root", self.data_root, "accepted: a folder path as a string ('' for data/)")
        for name in ("seed", "warmup_steps", "steps_per_epoch", "eval_paths"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 0:
                _fail(name, getattr(self, name), "accepted: an integer >= 0")
        for name in ("image_size", "batch_size", "epochs", "eval_images", "eval_every"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                _fail(name, getattr(self, name), "accepted: an integer >= 1")
        if not is_num(self.width) or not 0 < self.width <= 4:
            _fail("width", self.width, "accepted: a width multiplier in (0, 4]")
        if not is_num(self.lr) or not 0 < self.lr <= 10:
            _fail("lr", self.lr, "accepted: a finite learning rate in (0, 10]")

    # -- views of the value ------------------------------------------------------------------------
    def key(self) -> dict:
        """The settings as a plain dict (the cache key's parameters; JSON-ready)."""
        return asdict(self)

    def replace(self, **changes) -> "SupernetRecipe":
        unknown = sorted(set(changes) - set(RECIPE_FIELDS))
        if unknown:
            raise ValueError(f"unknown recipe settings {unknown}; accepted: {list(RECIPE_FIELDS)}")
        return replace(self, **changes)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **overrides) -> "SupernetRecipe":
        """The recipe from a notebook's or profile's parameters (other keys ignored), then ``overrides``."""
        values = {k: params[k] for k in RECIPE_FIELDS if k in params}
        values.update(overrides)
        if isinstance(values.get("width"), int):
            values["width"] = float(values["width"])
        if isinstance(values.get("lr"), int):
            values["lr"] = float(values["lr"])
        return cls(**values)

    @property
    def paths_per_step(self) -> int:
        return 13 if self.space == "se" else 7

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def eval_archs(self) -> list:
        """The fixed scored paths: ``space.sample_stratified(eval_paths, seed=0)`` (same for every seed and arm)."""

        if not self.eval_paths:
            return []
        return (SPACE_SE if self.space == "se" else SPACE_NO_SE).sample_stratified(self.eval_paths, seed=0)

    def cli_args(self) -> list[str]:
        """The ``python -m scarlet_lib.train supernet`` flags that train this recipe."""
        a = ["--identity-mode", self.identity_mode, "--seed", str(self.seed), "--space", self.space.replace("_", "-"),
             "--width", repr(float(self.width)), "--dataset", self.dataset, "--difficulty", self.difficulty,
             "--image-size", str(self.image_size),
             "--batch-size", str(self.batch_size), "--lr", repr(float(self.lr)), "--warmup-steps", str(self.warmup_steps),
             "--epochs", str(self.epochs), "--steps-per-epoch", str(self.steps_per_epoch),
             "--zero-init-residual", "yes" if self.zero_init_residual else "no", "--let-init", self.let_init,
             "--reduction", self.reduction, "--eval-paths", str(self.eval_paths),
             "--eval-images", str(self.eval_images), "--eval-every", str(self.eval_every)]
        if self.data_root:
            a += ["--root", self.data_root]
        if self.dataset == "gratings":
            a += ["--stream", "--stream-labels", self.stream_labels]
        return a

    # -- what the recipe makes -------------------------------------------------------------------
    def data(self, **kwargs):
        """The ``DataBundle`` the supernet is trained and evaluated on (gratings: a fresh-image stream)."""

        if self.dataset == "gratings":
            kwargs.setdefault("num_heldout", self.eval_images)
            kwargs.setdefault("difficulty", self.difficulty)
            kwargs.setdefault("stream_labels", self.stream_labels)
        kwargs.setdefault("calib_batches", math.ceil(CALIB_IMAGES / self.batch_size))
        return get_data(self.dataset, root=self.data_root or None, image_size=self.image_size,
                        batch_size=self.batch_size, seed=self.seed, stream=self.dataset == "gratings", **kwargs)

    def build(self, num_classes: int, small_input: bool):
        """The untrained ``Supernet`` (initial weights from ``seed``)."""

        return Supernet(space=SPACE_SE if self.space == "se" else SPACE_NO_SE, identity_mode=self.identity_mode,
                        width_mult=self.width, num_classes=num_classes, small_input=small_input, seed=self.seed,
                        zero_init_residual=self.zero_init_residual, let_init=self.let_init)


RECIPE_FIELDS = tuple(f.name for f in fields(SupernetRecipe))

# Arm name -> how it departs from the base (calibrated) recipe; "lr_divisor": divide lr by the paths a step.
ARMS: dict[str, dict] = {
    "paper": dict(zero_init_residual=False, let_init="he", reduction="sum", lr_divisor="paths_per_step"),
    "calibrated": dict(),
    "let-identity-init": dict(let_init="identity"),
}


def arm_recipe(arm: str, base: SupernetRecipe) -> SupernetRecipe:
    """The recipe of a named arm (``ARMS``) derived from the calibrated ``base``."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; accepted: {list(ARMS)}")
    changes = dict(ARMS[arm])
    divisor = changes.pop("lr_divisor", None)
    if divisor == "paths_per_step":
        changes["lr"] = base.lr / base.paths_per_step
    return base.replace(**changes)


# -- several supernets at once ----------------------------------------------------------------------
def _run_in_worker(job):
    """Worker body: one thread, then the job's function (a module-level callable and its arguments)."""
    import torch

    fn, args = job
    torch.set_num_threads(TRAIN_THREADS)
    return fn(*args)


def run_jobs(jobs: Sequence[tuple], processes: int = 1) -> list:
    """Run ``fn(*args)`` for each ``(fn, args)`` in ``jobs``, each with ``TRAIN_THREADS`` thread(s).

    ``processes > 1`` runs them in that many spawned worker processes (``fn`` must be importable, e.g. a
    ``scarlet_lib`` function); ``processes=1`` runs them here, one after another, with the thread count set
    to ``TRAIN_THREADS`` for the duration, so the results do not depend on ``processes``.
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be an integer >= 1, got {processes!r}")
    jobs = list(jobs)
    if not jobs:
        return []
    if processes == 1 or len(jobs) == 1:
        import torch

        saved = torch.get_num_threads()
        try:
            return [_run_in_worker(job) for job in jobs]
        finally:
            torch.set_num_threads(saved)
    with ProcessPoolExecutor(max_workers=min(processes, len(jobs)), mp_context=get_context("spawn")) as pool:
        return list(pool.map(_run_in_worker, jobs))


def default_processes() -> int:
    """Worker processes for independent supernets: one per available core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
