"""Training: the strict-fair (or uniform) supernet loop and stand-alone training of one architecture.

Supernet training (:func:`train_supernet`) follows FairNAS: each step samples m paths so that every
choice is used once per layer (``sampler="fair"``; ``"uniform"`` samples single paths as in SPOS),
runs them on the same batch with accumulated gradients (``fair.fair_step``) and makes one update.
Defaults (FairNAS-like, scaled down for CPU runs): SGD, momentum 0.9, Nesterov, weight decay 4e-5,
cosine decay of the learning rate per step to 0, ``reduction="per_weight"`` (each weight's gradient is
the mean over the paths that used it: the shared stem and head average the m paths, each candidate gets
its one path's gradient; see ``fair.fair_step``) with lr 0.1; ``"mean"`` averages every gradient
over the m paths (same lr). With ``reduction="sum"`` use an m-times smaller lr: summed gradients at lr
0.05 were seen to collapse to one constant prediction.

Random streams are separate: the supernet's initialisation comes from its own seed (per-module, by
name); the data order and the sampled paths are functions of (``seed``, epoch, step) (derived seeds),
the fixed evaluation paths of (``seed``, "eval"). Resuming therefore needs no sampler state; the
torch RNG (dropout, augmentation in the main process) is saved in the checkpoints as well.

Every epoch a checkpoint ``last.pt`` is written atomically (model, optimizer, scheduler, RNG states,
the logs so far, the parameters); ``torch.load(..., weights_only=True)`` reads it. A run stopped at
any point and started again with ``resume=True`` continues from the last finished epoch and ends with
the same numbers as an uninterrupted run (bit for bit on CPU; tested). A NaN or infinite training loss
stops a run at that step, before its update (``TrainingDiverged``), so ``last.pt`` stays the last good
one; a corrupt or truncated ``last.pt`` is one ``models.CheckpointError`` naming it and what to do.

Logs are tidy tables (:class:`TrainResult`): ``steps`` has one row per sampled path per step (epoch,
step, global_step, path_id, arch, num_identity, loss, train_acc, lr) -- training accuracy is the batch
accuracy with BatchNorm in training mode, before the update; ``evals`` one row per evaluation path per
evaluated epoch (held-out accuracy after BN recalibration, ``evaluation.score_paths``).

Distributed (``torchrun --nproc_per_node N -m scarlet_lib.train supernet ...``): see
``scarlet_lib.distributed``; each rank runs the fair step on its slice of the global batch and the
gradients are averaged before the update.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..analysis import _check_fraction
from ..artifacts import versions
from ..checkpoints import (  # noqa: F401 (CHECKPOINT_NAME, load_checkpoint_file: importable from here as before)
    CHECKPOINT_FORMAT, CHECKPOINT_NAME, _columns, _restore_training, _resume_state, _rng_state, _rows,
    _write_params, check_output_dir, load_checkpoint_file, save_checkpoint,
)
from ..costs import check_training_memory
from ..data import DataBundle, check_input_size, derive_seed
from ..distributed import DistContext, all_reduce_gradients, all_reduce_sum, broadcast_parameters
from ..evaluation import accuracy, score_paths
from ..fair import REDUCTIONS, fair_step
from ..models import build_model, init_weights
from ..space import Architecture

__all__ = ["train_supernet", "train_recipe", "train_standalone", "TrainResult", "StandaloneResult", "SAMPLERS", "RECIPES",
           "SUPERNET_DEFAULTS", "save_checkpoint", "load_checkpoint_file", "check_output_dir", "TrainingDiverged"]

SAMPLERS = ("fair", "uniform")
RECIPES = ("sgd", "paper")
SUPERNET_DEFAULTS = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5, reduction="per_weight")


class TrainingDiverged(FloatingPointError):
    """A NaN or infinite training loss: the run stops at that step; the last checkpoint on disk is kept."""


# -- argument checks ---------------------------------------------------------------------------------
def _check_finite_loss(losses: list, epoch: int, step: int, global_step: int, lr: float, checkpoint) -> None:
    """Stop a run whose training loss is NaN or infinite, naming the step; the last checkpoint is not touched."""
    bad = {i: v for i, v in enumerate(losses) if not math.isfinite(v)}
    if not bad:
        return
    if checkpoint is not None and Path(checkpoint).is_file():
        kept = (f"the last good checkpoint {str(checkpoint)!r} is kept (resuming from it with these settings "
                "repeats the divergence: lower the lr or add warm-up steps, in a new output folder)")
    else:
        kept = "no checkpoint was written (lower the lr or add warm-up steps)"
    paths = ", ".join(f"path {i}: {v}" for i, v in bad.items())
    raise TrainingDiverged(f"training loss is not finite at global step {global_step} (epoch {epoch}, step {step}, "
                           f"0-based as in the step log; lr {lr:g}): {paths}; training stopped, {kept}")


def _check_choice(name, value, accepted):
    if value not in accepted:
        raise ValueError(f"{name} must be one of {list(accepted)}, got {value!r}")


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")


def _check_number(name, value, low=0.0, high=math.inf, closed_low=True) -> float:
    """``analysis._check_fraction`` (a finite number in range) for any int too: numpy cannot hold a huge one."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise ValueError(f"{name} must be a finite number, got an integer of {len(str(abs(value)))} digits") from None
    return _check_fraction(name, value, low, high, closed_low)


def _progress(total, desc, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


# -- results --------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """Tidy logs of a supernet run: ``steps`` (one row per path per step) and ``evals`` (per path per epoch)."""

    steps: pd.DataFrame
    evals: pd.DataFrame
    params: dict
    supernet: nn.Module = field(repr=False, default=None)
    completed: bool = True
    checkpoint: Path | None = None

    def epoch_summary(self) -> pd.DataFrame:
        """Per epoch: mean/std of the sampled paths' training accuracy (Figure 1 top) and held-out accuracy."""
        train = self.steps.groupby("epoch").train_acc.agg(train_acc_mean="mean", train_acc_std="std",
                                                          paths="count")
        train["loss_mean"] = self.steps.groupby("epoch").loss.mean()
        if len(self.evals):
            ev = self.evals.groupby("epoch").heldout_acc.agg(heldout_acc_mean="mean", heldout_acc_std="std")
            train = train.join(ev)
        return train.reset_index()

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write steps.csv, evals.csv, summary.csv and params.json (with versions) into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.steps.to_csv(out / "steps.csv", index=False)
        self.evals.to_csv(out / "evals.csv", index=False)
        if len(self.steps):
            self.epoch_summary().to_csv(out / "summary.csv", index=False)
        _write_params(out / "params.json", self.params)
        return out


@dataclass
class StandaloneResult:
    """A stand-alone run: the trained model and per-epoch curves (train loss/accuracy, held-out accuracy)."""

    curves: pd.DataFrame
    params: dict
    model: nn.Module = field(repr=False, default=None)
    completed: bool = True

    def save(self, out_dir: str | os.PathLike) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.curves.to_csv(out / "curves.csv", index=False)
        _write_params(out / "params.json", self.params)
        return out


# -- supernet training ----------------------------------------------------------------------------
def sample_paths(space, sampler: str, seed: int, epoch: int, step: int, uniform_paths: int = 1) -> list[Architecture]:
    """The paths of one step: a pure function of (seed, epoch, step), so a resumed run samples the same."""
    rng = np.random.default_rng(derive_seed("paths", seed, epoch, step))
    if sampler == "fair":
        return space.sample_fair(rng)
    return space.sample_uniform(rng, n=uniform_paths)


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """lr factor at ``step``: (step+1)/warmup during the warm-up, then a cosine from 1 to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / max(total - warmup, 1)))


def _supernet_description(net) -> dict:
    return {"space_se": bool(net.space.se), "identity_mode": net.identity_mode, "width_mult": net.width_mult,
            "num_classes": net.num_classes, "small_input": bool(net.small_input), "init_seed": net.seed,
            "dropout": net.dropout_p, "zero_init_residual": bool(getattr(net, "zero_init_residual", False)),
            "let_init": getattr(net, "let_init", "he")}


def train_supernet(supernet, data: DataBundle, epochs: int = 1, steps_per_epoch: int | None = None,
                   sampler: str = "fair", reduction: str = SUPERNET_DEFAULTS["reduction"], lr: float | None = None,
                   momentum: float = SUPERNET_DEFAULTS["momentum"], nesterov: bool = SUPERNET_DEFAULTS["nesterov"],
                   weight_decay: float = SUPERNET_DEFAULTS["weight_decay"], warmup_steps: int = 0,
                   uniform_paths: int = 1,
                   seed: int = 0, device=None, eval_every: int = 1, eval_paths: int | Sequence = 8,
                   eval_batches: int | None = 4, eval_images: int | None = None, fused: bool | None = None,
                   checkpoint_dir=None, resume: bool = True,
                   stop_after: int | None = None, progress: bool = True,
                   dist_ctx: DistContext | None = None) -> TrainResult:
    """Train a ``Supernet`` with strict-fair (or uniform) path sampling; see the module docstring.

    Args:
        supernet: a ``supernet.Supernet`` (its seed fixed the initial weights).
        data: a ``data.DataBundle`` (``get_data``); its image size must suit ``supernet.small_input``.
        epochs, steps_per_epoch: length (default: the data's steps per epoch; a smaller number trains
            on the first batches of each epoch). The cosine schedule spans ``epochs * steps_per_epoch``.
        sampler: "fair" (m paths, each choice once per layer) or "uniform" (``uniform_paths`` paths).
        reduction: "per_weight", "mean" or "sum" over the paths of a step (``fair.fair_step``);
            ``lr`` default 0.1, or 0.1 / m for "sum".
        momentum, nesterov, weight_decay: SGD settings (FairNAS-like defaults).
        warmup_steps: linear warm-up of the lr over the first steps, then cosine decay to 0.
        seed: data order and path sampling (init is the supernet's own seed).
        eval_every, eval_paths, eval_batches: every ``eval_every`` epochs (and after the last) evaluate
            a fixed set of paths (a count sampled uniformly from (seed, "eval"), or a list of
            architectures) on ``eval_batches`` held-out batches (None: all) after BN recalibration on
            ``data.calib_batches``. ``eval_paths=0`` turns evaluation off. ``eval_images``: score on the
            first this many held-out images instead of ``eval_batches`` batches. Paths are scored through the
            shared-prefix walk (``evaluation.score_paths``; the same numbers as one path at a time).
        fused: passed to ``fair_step`` when given (the batched strict-fair step).
        checkpoint_dir, resume: write ``last.pt`` and the tables there every epoch; continue from it.
        stop_after: return after this many optimizer steps in this call (a time box; what a crash does).
        progress: tqdm progress bar.
        dist_ctx: ``distributed.DistContext`` (default: the initialised process group, if any).

    Every value is checked before any work (a NaN or infinite lr, a negative ``stop_after``, an output
    folder that is a file are refused). A NaN or infinite training loss stops the run with
    ``TrainingDiverged`` naming the step, before that step's update; the last checkpoint is kept.
    """
    _check_choice("sampler", sampler, SAMPLERS)
    _check_choice("reduction", reduction, REDUCTIONS)
    _check_positive_int("epochs", epochs)
    _check_positive_int("steps_per_epoch", steps_per_epoch, allow_none=True)
    _check_positive_int("eval_every", eval_every)
    _check_positive_int("uniform_paths", uniform_paths)
    _check_positive_int("eval_batches", eval_batches, allow_none=True)
    _check_positive_int("stop_after", stop_after, allow_none=True)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
    if lr is not None:
        _check_number("lr", lr, 0.0, math.inf)
    _check_number("momentum", momentum, 0.0, 1.0)
    _check_number("weight_decay", weight_decay, 0.0, math.inf)
    if checkpoint_dir is not None:
        check_output_dir(checkpoint_dir)
    if not isinstance(data, DataBundle):
        raise TypeError(f"data must be a DataBundle from scarlet_lib.data.get_data, got {type(data).__name__}")
    check_input_size(data.image_size, supernet.small_input)
    if data.num_classes != supernet.num_classes:
        raise ValueError(f"the data has {data.num_classes} classes but the supernet's classifier "
                         f"{supernet.num_classes}; build the supernet with num_classes={data.num_classes}")
    ctx = dist_ctx or DistContext.current()
    device = torch.device(device or next(supernet.parameters()).device)
    supernet.to(device)
    space = supernet.space
    m = space.num_choices if sampler == "fair" else uniform_paths
    if lr is None:
        lr = SUPERNET_DEFAULTS["lr"] / (m if reduction == "sum" else 1)
    steps_per_epoch = min(steps_per_epoch or data.steps_per_epoch, data.steps_per_epoch)
    total_steps = epochs * steps_per_epoch
    fused_kw = {} if fused is None else {"fused": fused}

    if isinstance(eval_paths, (int, np.integer)) and not isinstance(eval_paths, bool):
        eval_archs = space.sample_uniform(np.random.default_rng(derive_seed("eval", seed)), n=int(eval_paths)) \
            if eval_paths > 0 else []
    else:
        eval_archs = [space.check(a) for a in eval_paths]
    heldout = _heldout_batches(data, eval_batches, eval_images) if eval_archs else []

    params = {"kind": "supernet", **_supernet_description(supernet), "dataset": data.name,
              "image_size": data.image_size, "batch_size": data.batch_size, "data_seed": data.seed,
              "stream": data.stream, "epochs": epochs, "steps_per_epoch": steps_per_epoch, "sampler": sampler,
              "paths_per_step": m, "reduction": reduction, "lr": lr, "momentum": momentum, "nesterov": nesterov,
              "weight_decay": weight_decay, "warmup_steps": warmup_steps,
              "schedule": "linear warm-up, then cosine per step to 0", "seed": seed,
              "eval_every": eval_every, "eval_paths": [a.tolist() for a in eval_archs], "eval_batches": eval_batches,
              "eval_images": sum(len(y) for _, y in heldout),
              "calib_batches": len(data.calib_batches), "fused": fused, "world_size": ctx.world_size,
              "device": str(device), "versions": versions()}
    identity_keys = [k for k in params if k not in ("device", "versions", "fused")]

    optimizer = torch.optim.SGD(supernet.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                                weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, warmup_steps, total_steps))
    step_rows, eval_rows, start_epoch = [], [], 0
    ckpt = _resume_state(checkpoint_dir, resume, params, identity_keys, device)
    if ckpt is not None:
        logs, start_epoch = _restore_training(ckpt, supernet, optimizer, scheduler, checkpoint_dir)
        step_rows, eval_rows = _rows(logs["steps"]), _rows(logs["evals"])
    if ctx.enabled:
        broadcast_parameters(supernet)

    supernet.train()
    steps_done, ckpt_path, stopped = 0, None, False
    for epoch in range(start_epoch, epochs):
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{epochs}", progress and ctx.is_main)
        batches = data.train_batches(epoch, order_seed=seed, rank=ctx.rank, world_size=ctx.world_size)
        for step, (x, y) in enumerate(islice(batches, steps_per_epoch)):
            if stop_after is not None and steps_done >= stop_after:
                stopped = True
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            archs = sample_paths(space, sampler, seed, epoch, step, uniform_paths)
            current_lr = optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            out = fair_step(supernet, x, y, archs, reduction=reduction, **fused_kw)
            loss, correct = out["loss"].detach().float(), out["correct"].detach().float()
            if ctx.enabled:
                all_reduce_gradients(supernet.parameters(), ctx.world_size)
                loss = all_reduce_sum(loss) / ctx.world_size
                correct = all_reduce_sum(correct)
            loss, acc = loss.cpu().tolist(), (correct / data.batch_size).cpu().tolist()
            global_step = epoch * steps_per_epoch + step
            _check_finite_loss(loss, epoch, step, global_step, current_lr,
                               Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None)
            optimizer.step()
            scheduler.step()
            for pid, arch in enumerate(archs):
                step_rows.append({"epoch": epoch, "step": step, "global_step": global_step, "path_id": pid,
                                  "arch": str(arch), "num_identity": arch.num_identity, "loss": loss[pid],
                                  "train_acc": acc[pid], "lr": current_lr})
            steps_done += 1
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(loss):.3f}", acc=f"{np.mean(acc):.3f}")
        bar.close()
        if stopped:
            break
        if eval_archs and ctx.is_main and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            scores = score_paths(supernet, eval_archs, data.calib_batches, heldout, device)
            for row in scores.itertuples(index=False):
                eval_rows.append({"epoch": epoch, "path_id": row.path_id, "arch": row.arch,
                                  "num_identity": row.num_identity, "heldout_acc": row.heldout_acc,
                                  "n_images": row.n_images})
        if checkpoint_dir is not None and ctx.is_main:
            ckpt_path = save_checkpoint({
                "format": "scarlet-train/1", "params": params, "epoch": epoch + 1,
                "model": supernet.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": _rng_state(device),
                "logs": {"steps": _columns(step_rows), "evals": _columns(eval_rows)}}, Path(checkpoint_dir) / CHECKPOINT_NAME)
    result = TrainResult(pd.DataFrame(step_rows, columns=_STEP_COLUMNS), pd.DataFrame(eval_rows, columns=_EVAL_COLUMNS),
                         params, supernet, completed=not stopped,
                         checkpoint=Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None)
    if checkpoint_dir is not None and ctx.is_main:
        result.save(checkpoint_dir)
    return result


def train_recipe(recipe, device="cpu", checkpoint_dir=None, progress: bool = False, data=None) -> TrainResult:
    """Build and train the supernet a ``recipes.SupernetRecipe`` describes; its ``supernet`` is the trained net."""
    data = data or recipe.data()
    net = recipe.build(data.num_classes, data.small_input)
    return train_supernet(net, data, epochs=recipe.epochs, steps_per_epoch=recipe.steps_per_epoch or None,
                          reduction=recipe.reduction, lr=recipe.lr, seed=recipe.seed, warmup_steps=recipe.warmup_steps,
                          device=device, eval_paths=recipe.eval_archs(), eval_images=recipe.eval_images,
                          eval_every=recipe.eval_every, checkpoint_dir=checkpoint_dir, progress=progress)


_STEP_COLUMNS = ["epoch", "step", "global_step", "path_id", "arch", "num_identity", "loss", "train_acc", "lr"]
_EVAL_COLUMNS = ["epoch", "path_id", "arch", "num_identity", "heldout_acc", "n_images"]


def _heldout_batches(data: DataBundle, eval_batches: int | None, eval_images: int | None) -> list:
    """The held-out batches paths are scored on: the first ``eval_images`` images, else ``eval_batches`` batches."""
    if eval_images is None:
        return list(islice(iter(data.heldout_loader), eval_batches))
    _check_positive_int("eval_images", eval_images)
    out, seen = [], 0
    for x, y in data.heldout_loader:
        take = min(len(y), eval_images - seen)
        out.append((x[:take], y[:take]))
        seen += take
        if seen >= eval_images:
            break
    return out


# -- stand-alone training -------------------------------------------------------------------------
def _standalone_optimizer(recipe, model, lr, weight_decay, batch_size, steps_per_epoch, total_steps):
    """(optimizer, scheduler, settings) of a recipe; the scheduler steps once per batch.

    "paper" (MnasNet/EfficientNet recipe the paper cites): RMSProp, decay 0.9, momentum 0.9,
    lr 0.256 x batch/4096, x0.97 every 2.4 epochs (the paper writes "decays 0.01"), weight decay
    1e-5. TensorFlow adds RMSProp's epsilon (0.001) inside the square root, PyTorch outside, so
    eps = sqrt(0.001) is used. "sgd": SGD momentum 0.9 Nesterov, cosine to 0, lr 0.05, wd 4e-5.
    """
    if recipe == "paper":
        lr = 0.256 * batch_size / 4096 if lr is None else lr
        wd = 1e-5 if weight_decay is None else weight_decay
        opt = torch.optim.RMSprop(model.parameters(), lr=lr, alpha=0.9, eps=math.sqrt(1e-3), momentum=0.9,
                                  weight_decay=wd)
        every = 2.4 * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.97 ** math.floor(s / every))
        return opt, sched, {"optimizer": "RMSprop(alpha=0.9, momentum=0.9, eps=sqrt(1e-3))", "lr": lr,
                            "weight_decay": wd, "schedule": "x0.97 every 2.4 epochs"}
    lr = 0.05 if lr is None else lr
    wd = 4e-5 if weight_decay is None else weight_decay
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return opt, sched, {"optimizer": "SGD(momentum=0.9, nesterov)", "lr": lr, "weight_decay": wd,
                        "schedule": "cosine per step to 0"}


def train_standalone(arch, data: DataBundle, epochs: int = 1, identity_mode: str = "let", seed: int = 0,
                     recipe: str = "sgd", width_mult: float = 1.0, lr: float | None = None,
                     weight_decay: float | None = None, dropout: float | None = None,
                     steps_per_epoch: int | None = None, eval_batches: int | None = None, device=None,
                     progress: bool = True, dist_ctx: DistContext | None = None, checkpoint_dir=None,
                     resume: bool = True, stop_after: int | None = None) -> StandaloneResult:
    """Train one architecture from scratch; per-epoch train/held-out curves (Figure 3 ablation).

    The initial weights come from ``models.init_weights(model, seed)`` (per module, by name), so the
    same ``arch`` and ``seed`` with ``identity_mode="let"`` and ``"let_relu"`` start from identical
    weights (the LET convs included) and see the same batches: only the ReLU differs.
    ``recipe``: "sgd" (default) or "paper" (see ``_standalone_optimizer``; dropout 0.2 unless given).
    Values are checked before any work (``lr`` 0 is accepted: the weights stay the initial ones). A NaN or
    infinite training loss stops the run with ``TrainingDiverged`` naming the step, before its update.
    ``checkpoint_dir``, ``resume``, ``stop_after``: as in ``train_supernet`` (``last.pt`` every epoch, a rerun
    continues from the last finished epoch and ends exactly like an uninterrupted run).
    """
    _check_choice("recipe", recipe, RECIPES)
    _check_positive_int("epochs", epochs)
    _check_positive_int("steps_per_epoch", steps_per_epoch, allow_none=True)
    _check_positive_int("eval_batches", eval_batches, allow_none=True)
    _check_positive_int("stop_after", stop_after, allow_none=True)
    _check_number("width_mult", width_mult, 0.0, math.inf, closed_low=False)
    for name, value, high in (("lr", lr, math.inf), ("weight_decay", weight_decay, math.inf), ("dropout", dropout, 1.0)):
        if value is not None:
            _check_number(name, value, 0.0, high)
    if not isinstance(data, DataBundle):
        raise TypeError(f"data must be a DataBundle from scarlet_lib.data.get_data, got {type(data).__name__}")
    arch = Architecture.coerce(arch)
    if checkpoint_dir is not None:
        check_output_dir(checkpoint_dir)
    ctx = dist_ctx or DistContext.current()
    device = torch.device(device or "cpu")
    dropout = (0.2 if recipe == "paper" else 0.0) if dropout is None else dropout

    def build():
        return build_model(arch, num_classes=data.num_classes, width_mult=width_mult, small_input=data.small_input,
                           identity_mode=identity_mode, dropout=dropout)

    check_training_memory(build, data.batch_size, data.image_size, device,
                          what=f"the stand-alone model at width_mult {width_mult}")
    model = build()
    init_weights(model, seed)
    model.to(device)
    if ctx.enabled:
        broadcast_parameters(model)
    steps_per_epoch = min(steps_per_epoch or data.steps_per_epoch, data.steps_per_epoch)
    optimizer, scheduler, settings = _standalone_optimizer(recipe, model, lr, weight_decay, data.batch_size,
                                                           steps_per_epoch, epochs * steps_per_epoch)
    params = {"kind": "standalone", "arch": arch.tolist(), "arch_str": str(arch), "identity_mode": identity_mode,
              "recipe": recipe, **settings, "dropout": dropout, "width_mult": width_mult, "dataset": data.name,
              "image_size": data.image_size, "small_input": data.small_input, "batch_size": data.batch_size,
              "epochs": epochs, "steps_per_epoch": steps_per_epoch, "seed": seed, "world_size": ctx.world_size,
              "device": str(device), "versions": versions()}
    identity_keys = [k for k in params if k not in ("device", "versions")]
    heldout = list(islice(iter(data.heldout_loader), eval_batches))
    torch.manual_seed(derive_seed("dropout", seed))
    rows, start_epoch, steps_done, stopped = [], 0, 0, False
    ckpt_file = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    ckpt = _resume_state(checkpoint_dir, resume, params, identity_keys, device)
    if ckpt is not None:
        logs, start_epoch = _restore_training(ckpt, model, optimizer, scheduler, checkpoint_dir)
        rows = _rows(logs["curves"])
        if ctx.enabled:
            broadcast_parameters(model)
    for epoch in range(start_epoch, epochs):
        model.train()
        bar = _progress(steps_per_epoch, f"epoch {epoch + 1}/{epochs}", progress and ctx.is_main)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for step, (x, y) in enumerate(islice(data.train_batches(epoch, order_seed=seed, rank=ctx.rank,
                                                                world_size=ctx.world_size), steps_per_epoch)):
            if stop_after is not None and steps_done >= stop_after:
                stopped = True
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            loss.backward()
            if ctx.enabled:
                all_reduce_gradients(model.parameters(), ctx.world_size)
            seen_loss = all_reduce_sum(loss.detach()) / ctx.world_size if ctx.enabled else loss.detach()
            _check_finite_loss([seen_loss.item()], epoch, step, epoch * steps_per_epoch + step,
                               optimizer.param_groups[0]["lr"], ckpt_file)  # every rank sees the same mean
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
            steps_done += 1
            bar.update(1)
        bar.close()
        if stopped:
            break
        if ctx.enabled:
            loss_sum, correct = all_reduce_sum(loss_sum), all_reduce_sum(correct)
            seen *= ctx.world_size
        model.eval()
        held = accuracy(model, heldout, device)[0] if ctx.is_main else float("nan")
        rows.append({"epoch": epoch, "identity_mode": identity_mode, "train_loss": loss_sum.item() / seen,
                     "train_acc": correct.item() / seen, "heldout_acc": held,
                     "lr": optimizer.param_groups[0]["lr"]})
        if ckpt_file is not None and ctx.is_main:
            save_checkpoint({"format": CHECKPOINT_FORMAT, "params": params, "epoch": epoch + 1,
                             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": _rng_state(device),
                             "logs": {"curves": _columns(rows)}}, ckpt_file)
    result = StandaloneResult(pd.DataFrame(rows), params, model, completed=not stopped)
    if checkpoint_dir is not None and ctx.is_main:
        result.save(checkpoint_dir)
    return result
