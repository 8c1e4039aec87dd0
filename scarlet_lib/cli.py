"""The training command line: ``python -m scarlet_lib.train supernet|standalone ...`` (also under torchrun).

Every value is checked before any work (``_check_args``); the ``supernet`` command's settings become a
``recipes.SupernetRecipe`` (``supernet_recipe_from_args``), the inverse of ``SupernetRecipe.cli_args``.
"""
from __future__ import annotations

import argparse
import math
import sys

import torch

from .blocks import LET_INITS
from .checkpoints import check_output_dir
from .data import DataError, GRATING_DIFFICULTIES, STREAM_LABELS, get_data
from .distributed import init_from_env
from .fair import REDUCTIONS
from .models import CheckpointError
from .recipes import SupernetRecipe
from .space import Architecture
from .train import (
    RECIPES, SAMPLERS, SUPERNET_DEFAULTS, TrainingDiverged, _check_number, _check_positive_int, train_standalone,
    train_supernet,
)
from .validate import resolve_device

__all__ = ["main", "supernet_recipe_from_args"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scarlet_lib.train",
        description="Train a SCARLET supernet (strict-fair / uniform) or one stand-alone architecture. "
                    "Works under torchrun (gradients averaged over ranks; rank 0 writes the outputs).")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("supernet", "standalone"):
        s = sub.add_parser(name)
        s.add_argument("--dataset", default="gratings", help="gratings | cifar10 | cifar100 | imagefolder")
        s.add_argument("--root", default=None, help="data folder (default: the repository's data/)")
        s.add_argument("--image-size", type=int, default=None)
        s.add_argument("--batch-size", type=int, default=32, help="global batch (split over ranks)")
        s.add_argument("--holdout", type=float, default=None, help="held-out fraction (<1) or count (>=1)")
        s.add_argument("--num-train", type=int, default=10000, help="gratings: training images per epoch")
        s.add_argument("--stream", action="store_true", help="gratings: fresh images every step")
        s.add_argument("--difficulty", default="standard", choices=tuple(GRATING_DIFFICULTIES),
                       help="gratings: preset of data.GRATING_DIFFICULTIES")
        s.add_argument("--stream-labels", default="balanced", choices=STREAM_LABELS,
                       help="gratings --stream: each batch's labels, the same class mix (balanced) or independent (iid)")
        s.add_argument("--download", action="store_true")
        s.add_argument("--workers", type=int, default=0)
        s.add_argument("--epochs", type=int, default=1)
        s.add_argument("--no-resume", action="store_true", help="train from the start even if --out holds last.pt")
        s.add_argument("--stop-after", type=int, default=None, help="stop after this many steps (resume later)")
        s.add_argument("--steps-per-epoch", type=int, default=None)
        s.add_argument("--identity-mode", default="let", choices=("identity", "let", "let_relu"))
        s.add_argument("--width", type=float, default=0.5)
        s.add_argument("--lr", type=float, default=None)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--device", default=None)
        s.add_argument("--threads", type=int, default=None)
        s.add_argument("--out", default=None, help="output folder (tables, params.json, checkpoints)")
        s.add_argument("--no-progress", action="store_true")
        if name == "supernet":
            s.add_argument("--space", default="no-se", choices=("se", "no-se"))
            s.add_argument("--sampler", default="fair", choices=SAMPLERS)
            s.add_argument("--reduction", default=SUPERNET_DEFAULTS["reduction"], choices=REDUCTIONS)
            s.add_argument("--warmup-steps", type=int, default=0)
            s.add_argument("--eval-paths", type=int, default=8)
            s.add_argument("--eval-batches", type=int, default=4)
            s.add_argument("--eval-images", type=int, default=None,
                           help="score the paths on this many held-out images (instead of --eval-batches)")
            s.add_argument("--eval-every", type=int, default=1, help="score the fixed paths every this many epochs")
            s.add_argument("--fused", choices=("yes", "no"), default=None)
            s.add_argument("--zero-init-residual", choices=("yes", "no"), default="yes",
                           help="start every residual candidate as the identity (no: the released init)")
            s.add_argument("--let-init", choices=LET_INITS, default="he",
                           help="LET initialisation: he (released conv init), identity (zero-pad identity), "
                                "orthogonal (variance-preserving rotation)")
        else:
            s.add_argument("--arch", required=True, help="19 choice indices or tokens, e.g. 1,3,1,0,12,...")
            s.add_argument("--recipe", default="sgd", choices=RECIPES)
    return p


def supernet_recipe_from_args(a: argparse.Namespace):
    """The ``recipes.SupernetRecipe`` the ``supernet`` command line describes (lr default: 0.1, or 0.1/m for sum)."""

    space = a.space.replace("-", "_")
    m = 13 if space == "se" else 7
    lr = a.lr if a.lr is not None else SUPERNET_DEFAULTS["lr"] / (m if a.reduction == "sum" else 1)
    return SupernetRecipe(identity_mode=a.identity_mode, seed=a.seed, space=space, width=float(a.width),
                          dataset=a.dataset, difficulty=a.difficulty, stream_labels=a.stream_labels,
                          data_root=a.root or "",
                          image_size=a.image_size or 32,
                          batch_size=a.batch_size, lr=float(lr), warmup_steps=a.warmup_steps, epochs=a.epochs,
                          steps_per_epoch=a.steps_per_epoch or 0, zero_init_residual=a.zero_init_residual == "yes",
                          let_init=a.let_init, reduction=a.reduction, eval_paths=a.eval_paths,
                          eval_images=a.eval_images or 2048, eval_every=a.eval_every)


def _check_args(a: argparse.Namespace):
    """Check every command-line value before any work; returns the ``supernet`` command's recipe (else None).

    The ranges are ``SupernetRecipe``'s (lr in (0, 10], width in (0, 4]) for both commands.
    """
    for name in ("batch_size", "epochs", "num_train"):
        _check_positive_int("--" + name.replace("_", "-"), getattr(a, name))
    for name in ("steps_per_epoch", "image_size", "threads"):
        _check_positive_int("--" + name.replace("_", "-"), getattr(a, name), allow_none=True)
    if isinstance(a.workers, bool) or not isinstance(a.workers, int) or a.workers < 0:
        raise ValueError(f"--workers must be an integer >= 0, got {a.workers!r}")
    if a.holdout is not None:
        _check_number("--holdout", a.holdout, 0.0, math.inf, closed_low=False)
    if a.lr is not None:
        _check_number("--lr", a.lr, 0.0, 10.0, closed_low=False)
    _check_number("--width", a.width, 0.0, 4.0, closed_low=False)
    if a.stream_labels != "balanced" and not (a.dataset == "gratings" and a.stream):
        raise ValueError(f"--stream-labels {a.stream_labels} needs --dataset gratings --stream (it draws the labels "
                         "of each fresh batch); other datasets draw batches by shuffling")
    if a.device is not None:
        resolve_device(a.device)  # an unknown device or CUDA without CUDA: a clear error, not an AssertionError
    recipe = None
    _check_positive_int("--stop-after", a.stop_after, allow_none=True)
    if a.command == "supernet":
        _check_positive_int("--eval-batches", a.eval_batches)
        _check_positive_int("--eval-images", a.eval_images, allow_none=True)
        recipe = supernet_recipe_from_args(a)  # checks the remaining settings
    else:
        Architecture.parse(a.arch)
    if a.out:
        check_output_dir(a.out)
    return recipe


def main(argv=None) -> int:

    parser = _parser()
    a = parser.parse_args(argv)
    try:
        recipe = _check_args(a)
    except (ValueError, RuntimeError) as e:  # bad values (ArchitectureError, DataError), no CUDA
        parser.error(str(e))
    try:
        return _run(a, recipe)
    except (CheckpointError, DataError, TrainingDiverged, MemoryError) as e:  # MemoryError: refused up front
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(a: argparse.Namespace, recipe) -> int:
    """The work of ``main`` once the arguments are checked."""

    if a.threads:
        torch.set_num_threads(a.threads)
    ctx, device = init_from_env(a.device)
    holdout = None if a.holdout is None else (int(a.holdout) if a.holdout >= 1 else a.holdout)
    heldout_images = (a.eval_images if a.command == "supernet" else None) or 2000  # stand-alone: no --eval-images
    data = get_data(a.dataset, root=a.root, image_size=a.image_size, batch_size=a.batch_size, holdout=holdout,
                    seed=a.seed, stream=a.stream, download=a.download, num_workers=a.workers,
                    **({"num_train": a.num_train, "difficulty": a.difficulty, "num_heldout": heldout_images,
                        "stream_labels": a.stream_labels} if a.dataset == "gratings" else {}))
    progress = not a.no_progress
    if a.command == "supernet":
        recipe = recipe.replace(image_size=data.image_size)
        net = recipe.build(data.num_classes, data.small_input)
        res = train_supernet(net, data, a.epochs, a.steps_per_epoch, a.sampler, a.reduction, lr=recipe.lr, seed=a.seed,
                             warmup_steps=a.warmup_steps, device=device, eval_paths=recipe.eval_archs(),
                             eval_batches=a.eval_batches, eval_images=a.eval_images, eval_every=a.eval_every,
                             fused=None if a.fused is None else a.fused == "yes", checkpoint_dir=a.out,
                             resume=not a.no_resume, stop_after=a.stop_after, progress=progress, dist_ctx=ctx)
        if ctx.is_main:
            print(res.epoch_summary().to_string(index=False))
    else:
        res = train_standalone(a.arch, data, a.epochs, a.identity_mode, a.seed, a.recipe, a.width, lr=a.lr,
                               steps_per_epoch=a.steps_per_epoch, device=device, progress=progress, dist_ctx=ctx,
                               checkpoint_dir=a.out, resume=not a.no_resume, stop_after=a.stop_after)
        if ctx.is_main:
            print(res.curves.to_string(index=False))
    if ctx.enabled:
        import torch.distributed as dist
        dist.destroy_process_group()
    return 0
