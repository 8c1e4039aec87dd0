"""Checkpoints of training runs: atomic writes, weights-only reads that name a corrupt file, RNG and resume state.

A run writes ``last.pt`` (``CHECKPOINT_NAME``) after every epoch: model, optimizer, scheduler, RNG states, the
logs so far and the parameters (``CHECKPOINT_KEYS``). ``_resume_state`` / ``_restore_training`` continue a run
from it; the parameters that define the run must match, or the folder is refused.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import torch

from .models import CheckpointError, read_torch_file

__all__ = ["CHECKPOINT_NAME", "CHECKPOINT_KEYS", "CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint_file",
           "check_output_dir"]

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_KEYS = ("format", "params", "epoch", "model", "optimizer", "scheduler", "rng", "logs")
CHECKPOINT_FORMAT = "scarlet-train/1"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process / not a pid: leave its file alone
        return True
    return True


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file, then an atomic rename: a crash never leaves half a checkpoint.

    Temporary files that killed writes left beside ``path`` (``.last.pt.tmp<PID>`` of a process that is
    gone) are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp"
    for orphan in path.parent.glob(f"{prefix}*"):
        pid = orphan.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            orphan.unlink(missing_ok=True)
    tmp = path.with_name(f"{prefix}{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint_file(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a training checkpoint with ``weights_only=True`` (tensors and plain Python values only).

    A missing, corrupt, truncated or foreign file is one ``models.CheckpointError`` naming it and what to do.
    """
    remedy = (f"delete {os.fspath(path)!r} to train this run again from its start (or pass resume=False / "
              "--no-resume, which overwrites it)")
    ckpt = read_torch_file(path, "training checkpoint", remedy, map_location, keys=CHECKPOINT_KEYS)
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"training checkpoint {os.fspath(path)!r} has format {ckpt['format']!r}, expected "
                              f"{CHECKPOINT_FORMAT!r}; {remedy}")
    return ckpt


def check_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and make sure files can be written there, before any training.

    Refuses a path that exists as a file (or under a file), or a folder this process cannot write to,
    so that a run never trains and then fails at its first save.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output folder {str(path)!r} exists and is not a folder; pass a folder path "
                         "(or move the file away)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ValueError(f"cannot write to output folder {str(path)!r} ({type(e).__name__}: "
                         f"{e.strerror or e}); pass a writable folder") from e
    if (path / CHECKPOINT_NAME).exists() and not (path / CHECKPOINT_NAME).is_file():
        raise ValueError(f"{str(path / CHECKPOINT_NAME)!r} exists and is not a file; the checkpoint goes there: "
                         "move it away or pass another folder")
    return path


def _write_params(path: Path, params: dict) -> None:
    """params.json as strict JSON (a NaN or infinity is refused, never written as a bare ``NaN``)."""
    try:
        text = json.dumps(params, indent=2, default=str, allow_nan=False)
    except ValueError as e:
        bad = [k for k, v in params.items() if isinstance(v, float) and not math.isfinite(v)]
        raise ValueError(f"cannot write {str(path)!r}: {', '.join(bad) or 'a nested parameter'} is not finite "
                         f"({e})") from e
    path.write_text(text)


def _columns(rows: list[dict]) -> dict:
    """Rows -> dict of lists (what a checkpoint stores; pandas reads it back directly)."""
    keys = list(rows[0]) if rows else []
    return {k: [r[k] for r in rows] for k in keys}


def _rows(columns: dict) -> list[dict]:
    keys = list(columns)
    return [dict(zip(keys, vals)) for vals in zip(*columns.values())] if keys else []


def _rng_state(device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _resume_state(checkpoint_dir, resume, params, identity_keys, device):
    """The checkpoint to continue from (or None); refuses one written with different settings."""
    if checkpoint_dir is None or not resume:
        return None
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.is_file():
        return None
    ckpt = load_checkpoint_file(path, map_location=device)
    if not isinstance(ckpt["params"], dict):
        raise CheckpointError(f"training checkpoint {str(path)!r} holds no parameter record; delete it to train "
                              "this run again from its start")
    diff = {k: (ckpt["params"].get(k), params.get(k)) for k in identity_keys if ckpt["params"].get(k) != params.get(k)}
    if diff:
        raise ValueError(f"checkpoint {path} was written with other settings {diff} (saved, requested); "
                         "use another checkpoint_dir or resume=False")
    return ckpt


def _restore_training(ckpt: dict, model, optimizer, scheduler, checkpoint_dir) -> tuple[dict, int]:
    """Load a checkpoint's model, optimizer, scheduler and RNG states; return its logs and the epoch to start
    from. A checkpoint that does not fit the run is one ``CheckpointError`` naming the file."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"])
        return dict(ckpt["logs"]), int(ckpt["epoch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        path = Path(checkpoint_dir) / CHECKPOINT_NAME
        raise CheckpointError(f"training checkpoint {str(path)!r} does not fit this run ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); delete it to train "
                              "this run again from its start") from e
