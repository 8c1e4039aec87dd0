"""Where the notebooks put what they produce: figures (PNG + PDF), tables (CSV) and a run record.

Every artifact of a notebook goes under one output folder (``figures/`` by default). Next to the
figures and tables a ``<notebook>.run.json`` records the parameters and package versions that
produced them, so a figure can always be traced back to the run that drew it.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

__all__ = ["output_dir", "save_table", "versions", "record_run", "FIGURE_FORMATS"]

FIGURE_FORMATS = ("png", "pdf")


def output_dir(path: str | os.PathLike) -> Path:
    """The output folder as a ``Path``, created if missing."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p


def save_table(df, name: str, out_dir: str | os.PathLike) -> Path:
    """Write a tidy table as ``<out_dir>/<name>.csv`` (no index) and return the path."""
    path = output_dir(out_dir) / f"{name}.csv"
    df.to_csv(path, index=False)
    return path


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages that decide the numbers, plus the git commit of the suite."""
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("scarlet_lib", "torch", "torchvision", "numpy", "pandas", "matplotlib", "pymoo", "papermill"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    out["git_commit"] = _git_commit()
    try:
        import torch
        out["cuda"] = torch.version.cuda
        out["torch_threads"] = str(torch.get_num_threads())
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return out


def _jsonable(value: Any):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def record_run(notebook: str, params: Mapping[str, Any], out_dir: str | os.PathLike,
               results: Mapping[str, Any] | None = None) -> Path:
    """Write ``<out_dir>/<notebook>.run.json``: parameters, versions, time, argv and headline results."""
    record = {
        "notebook": notebook,
        "parameters": _jsonable(dict(params)),
        "versions": versions(),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv,
        "results": _jsonable(dict(results or {})),
    }
    path = output_dir(out_dir) / f"{notebook}.run.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    return path
