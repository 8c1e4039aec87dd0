"""ImageNet validation of the released SCARLET models, with the original command line's flags.

    python -m scarlet_lib.validate --model Scarlet_A --device cpu --val-dataset-root PATH/valid \\
        --pretrained-path pretrained/ScarletA.pth.tar [--batch-size 128] [--workers N] [--limit N]

The validation images are laid out one folder per class (``valid/<wnid>/*.JPEG``, read with
torchvision's ``ImageFolder``, classes in sorted order as in the original). Preprocessing as released:
Resize(256, bilinear) on the shorter side, CenterCrop(224), ToTensor, Normalize(ImageNet mean/std);
no shuffling. Top-1 and top-5 are correct counts x 100 / total, over every image: a folder holding an
unreadable image (header check up front, or a decoding failure while reading) is refused with an error
naming the file, never counted around. The original script no longer runs on
current torch/torchvision (``RandomSizedCrop`` is gone and ``correct[:k].view(-1)`` fails); this one
shares nothing with it but the flags and the numbers it computes.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _torchvision_compat
from .data import UnreadableImage, describe_unreadable, scan_image_folder  # noqa: E402
from .evaluation import accuracy  # noqa: E402
from .models import CheckpointError, MODEL_NAMES, get_model, load_checkpoint  # noqa: E402

_torchvision_compat.ensure_torchvision_importable()

from torchvision import datasets, transforms  # noqa: E402


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "imagenet_transform", "image_folder", "resolve_device", "validate",
           "default_checkpoint_path", "build_parser", "main"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_transform(resize: int = 256, crop: int = 224) -> transforms.Compose:
    """The released evaluation preprocessing."""
    return transforms.Compose([
        transforms.Resize(resize, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(crop),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def image_folder(root: str | os.PathLike, transform=None) -> datasets.ImageFolder:
    """An ``ImageFolder`` over ``root`` with errors that say what layout is expected.

    Every image file's header is checked first; an unreadable one is an ``UnreadableImage`` naming the
    files (the accuracy has to count every image). Images are read with ``data.read_image``, so a file
    that fails later, while decoding, is an ``UnreadableImage`` naming it too.
    """
    root = os.fspath(root)
    layout = "expected one sub-folder per class holding its images, e.g. valid/n01440764/*.JPEG"
    if not os.path.isdir(root):
        raise FileNotFoundError(f"validation root {root!r} does not exist or is not a folder; {layout}")
    if not any(entry.is_dir() for entry in os.scandir(root)):
        raise FileNotFoundError(f"validation root {root!r} has no class folders; {layout}")
    try:
        dataset, unreadable = scan_image_folder(root, transform if transform is not None else imagenet_transform())
    except FileNotFoundError as e:  # class folders without any readable image file
        raise FileNotFoundError(f"no images found under {root!r} ({e}); {layout}") from e
    if unreadable:
        raise UnreadableImage(f"validation root {root!r} holds {describe_unreadable(unreadable)}; replace or remove "
                              "them (the accuracy counts every image)", next(iter(unreadable)))
    return dataset


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device`` for ``device``; a CUDA device that this torch cannot use is an error, not a fallback."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}; accepted: 'cpu', 'cuda', 'cuda:N'") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {device!r} requested but CUDA is not available to this torch "
                f"({torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA "
                               "device(s) are visible")
    return dev


def _evenly_spaced(n_total: int, limit: int) -> list[int]:
    """``limit`` indices spread over the whole (class-sorted) dataset, so that a subset covers all classes."""
    return sorted(set(np.linspace(0, n_total - 1, num=min(limit, n_total)).round().astype(int).tolist()))


def _num_outputs(model: nn.Module) -> int | None:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def validate(model: nn.Module, root: str | os.PathLike, device: str | torch.device = "cpu",
             batch_size: int = 128, workers: int = 0, limit: int | None = None,
             progress: bool = True) -> dict:
    """Top-1/top-5 of ``model`` on the image folder ``root`` with the released preprocessing.

    Returns ``{"top1", "top5"`` (percent), ``"correct_top1", "correct_top5", "total", "num_classes",
    "device"}``. ``limit`` evaluates that many images spread evenly over the folder (for quick checks).
    The model is moved to ``device`` and put in eval mode.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for all images), got {limit}")
    dev = resolve_device(device)
    dataset = image_folder(root)
    outputs = _num_outputs(model)
    if outputs is not None and len(dataset.classes) > outputs:
        raise ValueError(f"{root!r} has {len(dataset.classes)} class folders but the model has only "
                         f"{outputs} outputs")
    data = dataset if limit is None else torch.utils.data.Subset(dataset, _evenly_spaced(len(dataset), limit))
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         pin_memory=dev.type == "cuda")
    model = model.to(dev).eval()

    def forward(x):
        logits = model(x)
        if logits.shape[1] < 5:  # fewer than 5 classes: pad so top-5 is defined (padding never matches)
            logits = F.pad(logits, (0, 5 - logits.shape[1]), value=float("-inf"))
        return logits

    batches = loader
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(loader, desc="validate", unit="batch")
    top1, top5 = accuracy(forward, batches, dev, topk=(1, 5))
    total = len(data)
    correct1, correct5 = round(top1 * total), round(top5 * total)
    return {"top1": correct1 * 100 / total, "top5": correct5 * 100 / total, "correct_top1": correct1,
            "correct_top5": correct5, "total": total, "num_classes": len(dataset.classes), "device": str(dev)}


def default_checkpoint_path(model_name: str) -> str:
    """The released default location, e.g. ``pretrained/ScarletA.pth.tar``."""
    return os.path.join("pretrained", model_name.replace("_", "") + ".pth.tar")


def _error_line(e: BaseException) -> str:
    """The message for the ``error:`` line; an error re-raised from a DataLoader worker keeps the worker's own."""
    text = str(e).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        text = re.sub(r"^[A-Za-z_][\w.]*: ", "", text.splitlines()[-1])
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scarlet_lib.validate",
                                description="ImageNet top-1/top-5 of a released SCARLET model.")
    p.add_argument("--model", required=True, choices=MODEL_NAMES, help="released model name")
    p.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (default: cuda, as released)")
    p.add_argument("--val-dataset-root", required=True, help="folder with one sub-folder of images per class")
    p.add_argument("--pretrained-path", default=None,
                   help="checkpoint ({'model_state': state_dict} or a bare state_dict); "
                        "default pretrained/<Model>.pth.tar, e.g. pretrained/ScarletA.pth.tar")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="data-loading processes")
    p.add_argument("--limit", type=int, default=None, help="evaluate only this many images, spread evenly")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = args.pretrained_path or default_checkpoint_path(args.model)
    try:
        resolve_device(args.device)
        model = load_checkpoint(get_model(args.model), path)
        result = validate(model, args.val_dataset_root, args.device, args.batch_size, args.workers, args.limit,
                          progress=not args.no_progress)
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {_error_line(e)}", file=sys.stderr)
        return 2
    print(f"{args.model}: top-1 {result['top1']:.3f}% ({result['correct_top1']}/{result['total']}), "
          f"top-5 {result['top5']:.3f}% ({result['correct_top5']}/{result['total']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
