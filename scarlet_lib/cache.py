"""A small on-disk cache for expensive results: trained supernets (with their logs) and cost tables.

Nothing is trained twice: an entry is keyed by the parameters that produced it plus a fingerprint of
the source files that compute it, so a rerun with the same parameters and code loads the result, and a
change of either makes a new entry (a change of the code, not of its comments, docstrings or layout:
``code_text``). Entries are written to a temporary folder and renamed into place, so an interrupted run
never leaves a half-written entry behind.

Layout: ``<root>/<kind>/<key>/`` holding whatever the producer wrote plus ``cache.json`` (the key's
parameters; written last, it marks a complete entry). An entry that cannot be read back (a file corrupted
or truncated after the fact) is treated as a miss: it is removed, with a warning naming it, and rebuilt.
The default root is ``runs/cache`` in the repository (git-ignored), or ``$SCARLET_CACHE``.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from . import costs
from .models import read_torch_file
from .recipes import SupernetRecipe, default_processes, run_jobs
from .space import SPACE_NO_SE, SPACE_SE
from .train import train_recipe

__all__ = ["default_cache_root", "cache_key", "code_text", "source_fingerprint", "Cache", "cost_table", "supernet_data",
           "supernet_run", "supernet_runs", "SupernetRun", "SPACES", "space_by_name"]

_PKG = Path(__file__).resolve().parent
MARKER = "cache.json"


def default_cache_root() -> Path:
    env = os.environ.get("SCARLET_CACHE")
    return Path(env) if env else _PKG.parent / "runs" / "cache"


def code_text(source: str) -> str:
    """What of a Python source decides what it computes: its syntax tree without docstrings, comments, blank lines
    or layout (``ast.dump``; a file that does not parse counts as its text). So editing a comment or a docstring
    keeps the cache entries that code trained; changing a statement does not."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def source_fingerprint(modules: Iterable[str]) -> str:
    """Hash of the named ``scarlet_lib`` source files (e.g. ``["supernet", "train"]``), each as ``code_text``."""
    h = hashlib.sha256()
    for name in sorted(modules):
        path = _PKG / f"{name.replace('.', '/')}.py"
        if not path.exists():
            path = _PKG / name.replace(".", "/") / "__init__.py"
        h.update(name.encode())
        h.update(code_text(path.read_text(encoding="utf-8")).encode() if path.exists() else b"<missing>")
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

    def discard(self, params: Mapping[str, Any], reason: str) -> None:
        """Remove an unreadable entry (moved aside first, so no reader sees half of it), with a warning."""
        final = self.path(params)
        warnings.warn(f"cache entry {final} cannot be read ({reason}); it is removed and will be rebuilt",
                      RuntimeWarning, stacklevel=3)
        if final.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".discarded-{final.name}-", dir=final.parent))
            os.replace(final, aside)  # onto the empty folder just made: atomic
            shutil.rmtree(aside, ignore_errors=True)

    def load(self, params: Mapping[str, Any], create: Callable[..., None], read: Callable[[Path], Any],
             checkpointed: bool = False):
        """``read(folder)`` of the entry, created first if missing; an entry ``read`` fails on is rebuilt once.

        ``checkpointed``: ``create`` takes ``(folder, checkpoint_dir)`` and is run by ``get_or_train``.
        """
        make = self.get_or_train if checkpointed else self.get_or_create
        folder, created = make(params, create)
        try:
            return read(folder)
        except Exception as e:  # any failure to read a file back: the entry is damaged
            if created:
                raise
            self.discard(params, f"{type(e).__name__}: {e}")
        return read(make(params, create)[0])

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

    def get_or_train(self, params: Mapping[str, Any], train: Callable[[Path, Path], None]) -> tuple[Path, bool]:
        """``get_or_create`` for work that checkpoints: ``train(tmp_folder, checkpoint_dir)`` fills the entry.

        ``checkpoint_dir`` is a stable ``.partial-<key>`` folder beside the entry, kept until the entry is
        complete, so a run killed at any point continues from its last checkpoint when asked again.
        """
        final = self.path(params)
        partial = final.with_name(f".partial-{final.name}")
        folder, created = self.get_or_create(params, lambda tmp: train(tmp, partial))
        shutil.rmtree(partial, ignore_errors=True)
        return folder, created


def cost_table(root: str | os.PathLike | None = None, **kwargs):
    """``costs.cost_table(**kwargs)`` kept on disk: the 224x224 table costs tens of seconds to count.

    Keyed by the options and the source of the modules that define the counted blocks.
    """
    import inspect


    bound = inspect.signature(costs.cost_table.__wrapped__).bind(**kwargs)
    bound.apply_defaults()
    kwargs = dict(bound.arguments)
    cache = Cache("cost_tables", root, code_modules=("costs", "blocks", "models", "space"))

    def create(folder: Path):
        t = costs.cost_table(**kwargs)
        np.savez(folder / "table.npz", fixed=np.array([t.fixed_madds, t.fixed_params], dtype=np.int64),
                 layer_madds=t.layer_madds, layer_params=t.layer_params)

    def read(folder: Path):
        with np.load(folder / "table.npz") as z:
            fixed = z["fixed"]
            return costs.CostTable(int(fixed[0]), int(fixed[1]), z["layer_madds"].copy(),
                                       z["layer_params"].copy())

    return cache.load(kwargs, create, read)


# ------------------------------------------------------------------------------------------------
# Trained supernets: notebook 2 trains them, notebooks 4, 6 and 7 (and reruns) load them
# ------------------------------------------------------------------------------------------------

SUPERNET_CODE = ("supernet", "fair", "blocks", "kernels", "models", "space", "train", "data", "evaluation", "recipes")
SPACES = ("se", "no_se")


def supernet_data(recipe, **kwargs):
    """The ``DataBundle`` a cached supernet of ``recipe`` is trained and evaluated on (``recipe.data()``)."""
    return recipe.data(**kwargs)


def space_by_name(space: str):
    """``SPACE_SE`` for "se" (13 choices), ``SPACE_NO_SE`` for "no_se" (7)."""

    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}; accepted: {SPACES} (13 choices with SE, 7 without)")
    return SPACE_SE if space == "se" else SPACE_NO_SE


class SupernetRun:
    """A trained supernet with its logs: ``supernet``, ``steps`` and ``evals`` (tables of ``train``), ``recipe``."""

    def __init__(self, supernet, steps, evals, recipe, folder: Path, created: bool):
        self.supernet, self.steps, self.evals, self.recipe = supernet, steps, evals, recipe
        self.folder, self.created = folder, created

    @property
    def params(self) -> dict:
        return self.recipe.key()

    def __repr__(self):
        r = self.recipe
        return (f"SupernetRun({r.identity_mode}, seed={r.seed}, let_init={r.let_init}, zero_init_residual="
                f"{r.zero_init_residual}, reduction={r.reduction}: {'trained now' if self.created else 'from cache'}: "
                f"{self.folder})")


def _supernet_cache(cache_dir) -> Cache:
    return Cache("supernets", cache_dir or None, code_modules=SUPERNET_CODE)


def _supernet_key(recipe, device: str) -> dict:
    return {**recipe.key(), "device": str(device)}


def _check_recipe(recipe):

    if not isinstance(recipe, SupernetRecipe):
        raise TypeError(f"expected a recipes.SupernetRecipe, got {type(recipe).__name__}; build one with "
                        "SupernetRecipe(...) or SupernetRecipe.from_params(params)")
    return recipe


def _train_into_cache(recipe, device: str, cache_dir, progress: bool = False) -> str:
    """Train ``recipe`` into its cache entry unless present; returns the entry's folder.

    Training checkpoints every epoch (``Cache.get_or_train``), so a run killed mid-training continues from
    its last finished epoch when asked again.
    """
    import torch

    def create(folder: Path, checkpoint_dir: Path):
        result = train_recipe(recipe, device=device, checkpoint_dir=checkpoint_dir, progress=progress)
        result.save(folder)
        net = result.supernet
        torch.save({"model": net.state_dict(), "num_classes": net.num_classes, "small_input": net.small_input},
                   folder / "supernet.pt")

    folder, _ = _supernet_cache(cache_dir).get_or_train(_supernet_key(recipe, device), create)
    return str(folder)


def _read_supernet_entry(cache: Cache, recipe, device: str, created: bool, fresh: bool = False) -> SupernetRun | None:
    """The cached run of ``recipe``, or None if absent; a damaged entry is discarded (warning) and None returned.

    ``fresh``: the entry was just trained, so failing to read it is an error, not a miss.
    """
    import pandas as pd


    key = _supernet_key(recipe, device)
    folder = cache.path(key)
    if not cache.has(key):
        if fresh:
            raise RuntimeError(f"training {recipe} left no complete cache entry in {folder}")
        return None
    try:
        state = read_torch_file(folder / "supernet.pt", "cached supernet", map_location=device,
                                keys=("model", "num_classes", "small_input"))
        net = recipe.build(int(state["num_classes"]), bool(state["small_input"])).to(device)
        net.load_state_dict(state["model"])
        steps, evals = pd.read_csv(folder / "steps.csv"), pd.read_csv(folder / "evals.csv")
    except Exception as e:  # any failure to read a file back: the entry is damaged
        if fresh:
            raise
        cache.discard(key, f"{type(e).__name__}: {e}")
        return None
    return SupernetRun(net, steps, evals, recipe, folder, created)


def supernet_run(recipe, device: str = "cpu", cache_dir: str | os.PathLike | None = None, train: bool = True,
                 progress: bool = False) -> SupernetRun | None:
    """The supernet of a ``recipes.SupernetRecipe``: from the cache, or trained now and cached.

    ``train=False`` returns None instead of training when the cache lacks the entry. The key is the recipe,
    the device and the source of the modules that train it. Training here uses ``recipes.TRAIN_THREADS``
    thread(s), as ``supernet_runs`` does in its workers, so an entry is the same however it was made.
    An entry that cannot be read back is removed with a warning and counts as missing (trained again).
    """

    recipe = _check_recipe(recipe)
    cache = _supernet_cache(cache_dir)
    run = _read_supernet_entry(cache, recipe, device, created=False)
    if run is not None or not train:
        return run
    run_jobs([(_train_into_cache, (recipe, device, cache_dir, progress))], processes=1)
    return _read_supernet_entry(cache, recipe, device, created=True, fresh=True)


def supernet_runs(recipes, device: str = "cpu", cache_dir: str | os.PathLike | None = None,
                  processes: int | None = None) -> list[SupernetRun]:
    """``supernet_run`` for several recipes; the missing ones are trained in ``processes`` worker processes
    (default: one per core), one thread each, so the entries are the same whatever ``processes`` is."""

    recipes = [_check_recipe(r) for r in recipes]
    cache = _supernet_cache(cache_dir)
    runs = [_read_supernet_entry(cache, r, device, created=False) for r in recipes]  # damaged entries: None
    missing, seen = [], set()
    for r, run in zip(recipes, runs):
        k = cache_key(_supernet_key(r, device), cache.code)
        if run is None and k not in seen:
            seen.add(k)
            missing.append(r)
    run_jobs([(_train_into_cache, (r, device, cache_dir)) for r in missing],
             processes=default_processes() if processes is None else processes)
    return [run if run is not None else _read_supernet_entry(cache, r, device, created=True, fresh=True)
            for r, run in zip(recipes, runs)]
