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

__all__ = ["output_dir", "save_table", "versions", "record_run", "FIGURE_FORMATS", "markdown_table", "notebook_parameters",
           "notebook_params", "NOTEBOOK_DIR", "REPO_ROOT", "repo_path", "read_run"]

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

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


def markdown_table(df, float_format: str = "{:.3g}") -> str:
    """A pipe table of ``df`` for the measurement notes (pandas' ``to_markdown`` needs 'tabulate')."""
    def cell(v):
        return float_format.format(v) if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def notebook_parameters(notebook: str, notebook_dir: str | os.PathLike = NOTEBOOK_DIR) -> dict[str, Any]:
    """The ``parameters`` cell of a notebook as ``{name: default value}`` (read by papermill)."""
    import ast

    import papermill as pm

    path = Path(notebook_dir) / f"{notebook}.ipynb"
    if not path.exists():
        raise FileNotFoundError(f"notebook file missing: {path}")
    out = {}
    for name, info in pm.inspect_notebook(str(path)).items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = info["default"]
    return out


def notebook_params(namespace: Mapping[str, Any], notebook: str,
                    notebook_dir: str | os.PathLike = NOTEBOOK_DIR) -> dict[str, Any]:
    """The current values of a notebook's parameters (names from its ``parameters`` cell) in ``namespace``."""
    return {name: namespace[name] for name in notebook_parameters(notebook, notebook_dir) if name in namespace}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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

    out: dict[str, str | None] = {"python": platform.python_version(), "platform": platform.platform(),
                                  "cpu": _cpu_model(), "cpu_count": str(os.cpu_count())}
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
        out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
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


def repo_path(path: str | os.PathLike) -> Path:
    """``path`` as given when absolute, else relative to the repository root (not to the notebook's folder)."""
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def read_run(folder: str | os.PathLike, notebook: str, tables: tuple[str, ...]):
    """An earlier run of ``notebook`` read back from ``folder``: ``(parameters, {table: DataFrame})``.

    ``folder`` (absolute, or relative to the repository root) must hold ``<notebook>.run.json`` and
    ``<table>.csv`` for every table; otherwise one error names what is missing and where.
    """
    import pandas as pd

    root = repo_path(folder)
    record = root / f"{notebook}.run.json"
    missing = [str(p) for p in [record, *(root / f"{t}.csv" for t in tables)] if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{folder!s} is not a finished run of {notebook}: missing {', '.join(missing)}")
    try:
        params = json.loads(record.read_text())["parameters"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{record}: not a run record written by record_run ({e}); rerun the notebook") from None
    return params, {t: pd.read_csv(root / f"{t}.csv") for t in tables}
