"""A small on-disk cache for expensive results: trained supernets (with their logs) and cost tables.

Nothing is trained twice: an entry is keyed by the parameters that produced it plus a fingerprint of
the source files that compute it, so a rerun with the same parameters and code loads the result, and a
change of either makes a new entry. Entries are written to a temporary folder and renamed into place,
so an interrupted run never leaves a half-written entry behind.

Layout: ``<root>/<kind>/<key>/`` holding whatever the producer wrote plus ``cache.json`` (the key's
parameters; written last, it marks a complete entry).
The default root is ``runs/cache`` in the repository (git-ignored), or ``$SCARLET_CACHE``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

__all__ = ["default_cache_root", "cache_key", "source_fingerprint", "Cache", "cost_table", "supernet_data",
           "supernet_run", "SupernetRun", "SPACES", "space_by_name"]

_PKG = Path(__file__).resolve().parent
MARKER = "cache.json"


def default_cache_root() -> Path:
    env = os.environ.get("SCARLET_CACHE")
    return Path(env) if env else _PKG.parent / "runs" / "cache"


def source_fingerprint(modules: Iterable[str]) -> str:
    """Hash of the named ``scarlet_lib`` source files (e.g. ``["supernet", "train"]``)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        path = _PKG / f"{name.replace('.', '/')}.py"
        if not path.exists():
            path = _PKG / name.replace(".", "/") / "__init__.py"
        h.update(name.encode())
        h.update(path.read_bytes() if path.exists() else b"<missing>")
    return h.hexdigest()[:12]


def _canonical(value: Any):
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 are the same parameter value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def cache_key(params: Mapping[str, Any], code: str = "") -> str:
    """Stable short hash of a parameter mapping (order-independent) and a code fingerprint."""
    blob = json.dumps({"params": _canonical(params), "code": code}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Cache:
    """Entries of one ``kind`` under ``root``; see the module docstring."""

    def __init__(self, kind: str, root: str | os.PathLike | None = None, code_modules: Iterable[str] = ()):
        if not kind or "/" in kind:
            raise ValueError(f"cache kind must be a plain name, got {kind!r}")
        self.kind = kind
        self.root = Path(root) if root else default_cache_root()
        self.code = source_fingerprint(code_modules) if code_modules else ""

    def path(self, params: Mapping[str, Any]) -> Path:
        return self.root / self.kind / cache_key(params, self.code)

    def has(self, params: Mapping[str, Any]) -> bool:
        return (self.path(params) / MARKER).exists()

    def get_or_create(self, params: Mapping[str, Any], create: Callable[[Path], None]) -> tuple[Path, bool]:
        """The entry's folder, calling ``create(tmp_folder)`` to fill it if missing.

        Returns ``(folder, created)``. ``cache.json`` is written last, so it marks a complete entry.
        """
        final = self.path(params)
        if (final / MARKER).exists():
            return final, False
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            create(tmp)
            (tmp / MARKER).write_text(json.dumps({"params": _canonical(params), "code": self.code},
                                                        indent=2) + "\n")
            if final.exists():  # an incomplete entry from an interrupted run
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final, True


def cost_table(root: str | os.PathLike | None = None, **kwargs):
    """``profiling.cost_table(**kwargs)`` kept on disk: the 224x224 table costs tens of seconds to count.

    Keyed by the options and the source of the modules that define the counted blocks.
    """
    import inspect

    from . import profiling

    bound = inspect.signature(profiling.cost_table.__wrapped__).bind(**kwargs)
    bound.apply_defaults()
    kwargs = dict(bound.arguments)
    cache = Cache("cost_tables", root, code_modules=("profiling", "blocks", "models", "space"))

    def create(folder: Path):
        t = profiling.cost_table(**kwargs)
        np.savez(folder / "table.npz", fixed=np.array([t.fixed_madds, t.fixed_params], dtype=np.int64),
                 layer_madds=t.layer_madds, layer_params=t.layer_params)

    folder, _ = cache.get_or_create(kwargs, create)
    with np.load(folder / "table.npz") as z:
        fixed = z["fixed"]
        return profiling.CostTable(int(fixed[0]), int(fixed[1]), z["layer_madds"].copy(), z["layer_params"].copy())


# ------------------------------------------------------------------------------------------------
# Trained supernets: notebook 2 trains them, notebooks 4, 6 and 7 (and reruns) load them
# ------------------------------------------------------------------------------------------------

SUPERNET_CODE = ("supernet", "blocks", "models", "space", "train", "data", "evaluation")
SPACES = ("se", "no_se")


def supernet_data(dataset: str = "gratings", data_root: str = "", image_size: int = 32, batch_size: int = 32,
                  seed: int = 0):
    """The ``DataBundle`` a cached supernet is trained and evaluated on (same arguments, same data).

    The embedded gratings are streamed (fresh images every step), so the running training accuracy of
    a path is also a held-out estimate.
    """
    from .data import get_data

    return get_data(dataset, root=data_root or None, image_size=image_size, batch_size=batch_size, seed=seed,
                    stream=dataset == "gratings")


def space_by_name(space: str):
    """``SPACE_SE`` for "se" (13 choices), ``SPACE_NO_SE`` for "no_se" (7)."""
    from .space import SPACE_NO_SE, SPACE_SE

    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; accepted: {SPACES} (13 choices with SE, 7 without)")
    return SPACE_SE if space == "se" else SPACE_NO_SE


class SupernetRun:
    """A trained supernet with its logs: ``supernet``, ``steps`` and ``evals`` (tables of ``train``), ``params``."""

    def __init__(self, supernet, steps, evals, params: dict, folder: Path, created: bool):
        self.supernet, self.steps, self.evals, self.params = supernet, steps, evals, params
        self.folder, self.created = folder, created

    def __repr__(self):
        return (f"SupernetRun({self.params['identity_mode']}, seed={self.params['seed']}, "
                f"{'trained now' if self.created else 'from cache'}: {self.folder})")


def supernet_run(identity_mode: str = "let", seed: int = 0, dataset: str = "gratings", data_root: str = "",
                 image_size: int = 32, width: float = 0.5, space: str = "no_se", epochs: int = 1,
                 steps_per_epoch: int = 0, batch_size: int = 32, lr: float = 0.05, warmup_steps: int = 0,
                 eval_paths: int = 8, device: str = "cpu", cache_dir: str | os.PathLike | None = None, train: bool = True,
                 progress: bool = False) -> SupernetRun | None:
    """A strict-fair supernet trained with these settings: from the cache, or trained now and cached.

    ``steps_per_epoch=0`` means the data's full epoch. ``train=False`` returns None instead of training
    when the cache lacks the entry. The key is every argument except ``cache_dir``/``train``/``progress``,
    plus the source of the modules that train it.
    """
    import pandas as pd
    import torch

    from .supernet import Supernet
    from .train import train_supernet

    key = dict(identity_mode=identity_mode, seed=seed, dataset=dataset, data_root=data_root, image_size=image_size,
               width=width, space=space, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
               lr=lr, warmup_steps=warmup_steps, eval_paths=eval_paths, device=device)
    sp = space_by_name(space)
    cache = Cache("supernets", cache_dir or None, code_modules=SUPERNET_CODE)

    def build(num_classes, small_input):
        return Supernet(space=sp, identity_mode=identity_mode, width_mult=width, num_classes=num_classes,
                        small_input=small_input, seed=seed)

    def create(folder: Path):
        data = supernet_data(dataset, data_root, image_size, batch_size, seed)
        net = build(data.num_classes, data.small_input)
        result = train_supernet(net, data, epochs=epochs, steps_per_epoch=steps_per_epoch or None, lr=lr, seed=seed,
                                warmup_steps=warmup_steps, device=device, eval_paths=eval_paths, progress=progress)
        result.save(folder)
        torch.save({"model": net.state_dict(), "num_classes": data.num_classes, "small_input": data.small_input},
                   folder / "supernet.pt")

    if not train and not cache.has(key):
        return None
    folder, created = cache.get_or_create(key, create)
    state = torch.load(folder / "supernet.pt", map_location=device, weights_only=True)
    net = build(int(state["num_classes"]), bool(state["small_input"])).to(device)
    net.load_state_dict(state["model"])
    steps = pd.read_csv(folder / "steps.csv")
    evals = pd.read_csv(folder / "evals.csv")
    return SupernetRun(net, steps, evals, key, folder, created)
