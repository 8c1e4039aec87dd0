"""Regenerate every artifact: run the notebooks headless with papermill and refresh ``figures/``.

    python -m scarlet_lib.reproduce [--profile smoke|cpu|cpu-long|gpu] [--only 02 05 ...] [--device cpu|cuda]
                                    [--set name=value ...] [--set 02:name=value ...]
                                    [--output DIR] [--figures DIR] [--cache DIR]

Executed notebooks go to ``<output>/notebooks/`` (default output ``outputs/<profile>``); figures (PNG,
PDF), tables (CSV) and run records go to the committed folder of the profile (``profiles.COMMITTED_FIGURES``:
``figures/`` for ``cpu-long``, the headline evidence, ``figures/cpu/`` for ``cpu``) and to ``<output>/figures``
for the others (``--figures`` overrides). Everything given on the command line is
checked before any notebook starts: profile, notebook names, device, and every ``--set`` (the name must
be a parameter of a selected notebook, the value must have that parameter's type and lie in its accepted
range, ``PARAMETER_RULES``). A failing notebook
is reported with the cell that failed; the other notebooks still run; the exit status is 1 if any
failed. A summary with durations is printed and written to ``<output>/summary.csv``.
"""
from __future__ import annotations

import argparse
import ast
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from . import artifacts
from .analysis import check_length_pair, check_pooled_length
from .cache import default_cache_root
from .data import DATASETS
from .recipes import SupernetRecipe, arm_recipe
from .space import NUM_LAYERS
from .profiles import (COMMITTED_FIGURES, DEFAULT_PROFILE, NOTEBOOKS, PROFILES, SUPERNET_NOTEBOOKS, profile_parameters,
                       resolve_notebook)

__all__ = ["REPO_ROOT", "NOTEBOOK_DIR", "ParameterError", "PARAMETER_RULES", "RunPlan", "notebook_parameters",
           "parse_override", "check_values",
           "plan_run", "run_notebook", "run", "main"]

REPO_ROOT, NOTEBOOK_DIR = artifacts.REPO_ROOT, artifacts.NOTEBOOK_DIR
DEVICES = ("cpu", "cuda")


class ParameterError(ValueError):
    """Bad command-line input, found before any notebook runs."""


def notebook_parameters(notebook: str, notebook_dir: Path = NOTEBOOK_DIR) -> dict[str, Any]:
    """The ``parameters`` cell of a notebook as ``{name: default value}`` (``artifacts.notebook_parameters``)."""
    try:
        return artifacts.notebook_parameters(notebook, notebook_dir)
    except FileNotFoundError as e:
        raise ParameterError(str(e)) from None


def parse_override(text: str) -> tuple[str | None, str, Any]:
    """``[notebook:]name=value`` -> (notebook or None, name, Python value).

    The value is read as a Python literal (``3``, ``0.5``, ``[0, 1]``, ``True``, ``'x'``) and otherwise
    kept as a string (``--set dataset=cifar10``).
    """
    if "=" not in text:
        raise ParameterError(f"--set expects name=value (or notebook:name=value), got {text!r}")
    name, raw = text.split("=", 1)
    notebook = None
    if ":" in name:
        nb, name = name.split(":", 1)
        try:
            notebook = resolve_notebook(nb)
        except ValueError as e:
            raise ParameterError(f"--set {text!r}: {e}") from None
    name = name.strip()
    if not name.isidentifier():
        raise ParameterError(f"--set {text!r}: {name!r} is not a parameter name")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return notebook, name, value


def _type_name(v) -> str:
    return type(v).__name__


def _coerce(name: str, value: Any, default: Any, notebook: str) -> Any:
    """``value`` converted to the type of the parameter's default, or a ParameterError."""
    if default is None or isinstance(default, str):
        return value if isinstance(value, str) or default is None else str(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, list):
        if isinstance(value, (list, tuple)):
            if default and any(not isinstance(v, type(default[0])) for v in value) and not (
                    isinstance(default[0], float) and all(isinstance(v, (int, float)) for v in value)):
                raise ParameterError(f"{notebook}: parameter {name!r} is a list of {_type_name(default[0])}, "
                                     f"got {value!r}")
            return list(value)
        if isinstance(value, int) and default and isinstance(default[0], int):
            return [value]
    raise ParameterError(f"{notebook}: parameter {name!r} takes a {_type_name(default)} "
                         f"(default {default!r}), got {value!r} ({_type_name(value)})")


def _count(least: int):
    return (lambda v: isinstance(v, int) and v >= least), f"an integer >= {least}"


def _real(low: float, high: float, low_open: bool = False, high_open: bool = False):
    def ok(v):
        return (isinstance(v, (int, float)) and math.isfinite(v) and (v > low if low_open else v >= low)
                and (v < high if high_open else v <= high))
    shown = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return ok, f"a finite number in {shown}"


def _seed_list(least: int = 0, min_len: int = 1):
    return (lambda v: isinstance(v, list) and len(v) >= min_len and len(set(v)) == len(v)
            and all(isinstance(x, int) and x >= least for x in v),
            f"a list of at least {min_len} distinct integers >= {least}")


_POSITIVE = _real(0, math.inf, low_open=True, high_open=True)
# parameter name -> (accepted(value), what is accepted); the same name means the same thing in every notebook
PARAMETER_RULES = {
    **{name: _count(1) for name in (
        "batch_size", "channels", "epochs", "eval_batches", "eval_every", "eval_images",
        "eval_paths", "fold_batch", "fold_input_size", "generations", "image_size", "images", "n_models",
        "n_resamples", "population", "processes", "standalone_epochs", "table_rows", "threads", "top_k")},
    **{name: _count(0) for name in ("block_steps", "eval_limit", "seed", "steps_per_epoch", "standalone_steps_per_epoch",
                                    "warmup_steps")},
    "high_layer": ((lambda v: isinstance(v, int) and 0 <= v < NUM_LAYERS), f"a layer index in 0..{NUM_LAYERS - 1}"),
    **{name: _POSITIVE for name in ("lr", "standalone_lr", "width", "fold_width")},
    **{name: _real(0, 1, low_open=True) for name in ("far_below_points", "plateau_fraction")},
    **{name: _real(0, 1, high_open=True) for name in ("margin", "plateau_tolerance")},
    "min_reference_tau": _real(-1, 1),
    "seeds": _seed_list(), "standalone_seeds": _seed_list(min_len=2),
    "subset_sizes": _seed_list(least=2),
    "dataset": ((lambda v: v in DATASETS), f"one of {', '.join(DATASETS)}"),
    "pool_with": ((lambda v: isinstance(v, list) and all(isinstance(x, str) and artifacts.repo_path(x).is_dir()
                                                          for x in v)),
                  "a list of existing folders (absolute or relative to the repository root), each holding an "
                  "earlier run's tables"),
    "shorter_run": ((lambda v: isinstance(v, str) and (v == "" or artifacts.repo_path(v).is_dir())),
                    "'' or an existing folder (absolute or relative to the repository root) holding an earlier run "
                    "of the same recipe with fewer steps"),
}


def check_values(notebook: str, params: dict[str, Any]) -> None:
    """Every parameter with a rule in ``PARAMETER_RULES`` lies in its accepted range, else a ParameterError
    naming the notebook, the parameter, the value and what is accepted."""
    bad = [f"{name}={value!r} (accepted: {PARAMETER_RULES[name][1]})" for name, value in params.items()
           if name in PARAMETER_RULES and not PARAMETER_RULES[name][0](value)]
    if bad:
        raise ParameterError(f"{notebook}: bad parameter value(s): {'; '.join(bad)}")


@dataclass
class RunPlan:
    profile: str
    notebooks: list[str]
    parameters: dict[str, dict[str, Any]]
    output: Path
    figures: Path
    cache: Path
    notebook_dir: Path = NOTEBOOK_DIR


def plan_run(profile: str = DEFAULT_PROFILE, only: Sequence[str] | None = None, device: str | None = None,
             overrides: Sequence[str] = (), output: str | os.PathLike | None = None,
             figures: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
             notebook_dir: Path = NOTEBOOK_DIR) -> RunPlan:
    """Check everything and compute each notebook's parameters; raises ``ParameterError`` on bad input."""
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; accepted: {', '.join(PROFILES)}")
    if device is not None and device not in DEVICES:
        raise ParameterError(f"unknown device {device!r}; accepted: {', '.join(DEVICES)}")
    try:
        selected = list(dict.fromkeys(resolve_notebook(n) for n in (only or NOTEBOOKS)))
    except ValueError as e:
        raise ParameterError(str(e)) from None
    selected.sort(key=NOTEBOOKS.index)  # 02 trains what 04/06/07 read from the cache
    output = Path(output) if output else REPO_ROOT / "outputs" / profile
    committed = COMMITTED_FIGURES.get(profile)
    figures = Path(figures) if figures else (REPO_ROOT / committed if committed else output / "figures")
    cache = Path(cache) if cache else default_cache_root()
    defaults = {nb: notebook_parameters(nb, notebook_dir) for nb in selected}
    params: dict[str, dict[str, Any]] = {}
    for nb in selected:
        p = profile_parameters(profile, nb, device)
        p.update(output_dir=str(figures.resolve()), cache_dir=str(cache.resolve()))
        unknown = sorted(set(p) - set(defaults[nb]))
        if unknown:  # a profile/notebook mismatch is a bug in the suite, say so plainly
            raise ParameterError(f"profile {profile!r} gives {nb} parameters it does not have: {unknown}")
        params[nb] = {k: _coerce(k, v, defaults[nb][k], nb) for k, v in p.items()}
    for text in overrides:
        nb_scope, name, value = parse_override(text)
        targets = [nb_scope] if nb_scope else selected
        if nb_scope and nb_scope not in selected:
            raise ParameterError(f"--set {text!r}: notebook {nb_scope} is not selected ({', '.join(selected)})")
        hit = [nb for nb in targets if name in defaults[nb]]
        if not hit:
            known = sorted(set().union(*(defaults[nb] for nb in targets)))
            raise ParameterError(f"--set {text!r}: no selected notebook has a parameter {name!r}; "
                                 f"parameters: {', '.join(known)}")
        for nb in hit:
            params[nb][name] = _coerce(name, value, defaults[nb][name], nb)
    for nb in selected:
        check_values(nb, params[nb])
        if nb in SUPERNET_NOTEBOOKS:  # the supernet settings are values of one recipe: check them now
            try:
                recipe = SupernetRecipe.from_params(params[nb])
                for arm in params[nb].get("arms", [params[nb].get("arm", "calibrated")]):
                    arm_recipe(arm, recipe)
            except (TypeError, ValueError) as e:
                raise ParameterError(f"{nb}: {e}") from None
        if params[nb].get("shorter_run"):  # a length check against a run of another recipe is refused now
            try:
                merged = {**defaults[nb], **params[nb]}
                shorter, _ = artifacts.read_run(params[nb]["shorter_run"], nb, ())
                check_length_pair(merged, shorter, label=f"shorter_run {params[nb]['shorter_run']!r}")
                if params[nb].get("pool_with"):  # pooled seeds are length-checked too: each pooled run's own
                    of = {"this run": shorter}
                    for folder in params[nb]["pool_with"]:
                        pooled, _ = artifacts.read_run(folder, nb, ())
                        of[folder] = (artifacts.read_run(pooled["shorter_run"], nb, ())[0]
                                      if pooled.get("shorter_run") else None)
                    check_pooled_length(merged, of)
            except (FileNotFoundError, ValueError) as e:
                raise ParameterError(f"{nb}: {e}") from None
        if params[nb].get("device") == "cuda":
            import torch
            if not torch.cuda.is_available():
                raise ParameterError(f"{nb}: device 'cuda' requested but torch {torch.__version__} sees no GPU")
    return RunPlan(profile, selected, params, output, figures, cache, notebook_dir)


def _failed_source(nb_path: Path) -> str:
    """First source line of the cell papermill marked as failed in an executed notebook ("" if none)."""
    import nbformat

    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception:  # noqa: BLE001 - the notebook may not have been written at all
        return ""
    for cell in nb.cells:
        if cell.get("cell_type") == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return (cell.source.strip().splitlines() or [""])[0][:80]
    return ""


def run_notebook(notebook: str, parameters: dict, output: Path, notebook_dir: Path = NOTEBOOK_DIR,
                 timeout: int | None = None) -> dict:
    """Execute one notebook with papermill; never raises for a failing notebook, returns a summary row.

    A failure is described by ``failed_cell`` (the execution count, ``In [n]`` in the executed notebook),
    ``failed_source`` (the cell's first line) and ``error`` (exception name and message).
    """
    import papermill as pm

    out_nb = output / "notebooks" / f"{notebook}.ipynb"
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    row = {"notebook": notebook, "status": "ok", "seconds": 0.0, "failed_cell": None, "failed_source": "",
           "error": "", "executed": str(out_nb)}
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook_dir / f"{notebook}.ipynb"), str(out_nb), parameters=parameters,
                            kernel_name="python3", cwd=str(notebook_dir), progress_bar=False,
                            execution_timeout=timeout)
    except pm.PapermillExecutionError as e:
        source = _failed_source(out_nb)
        row.update(status="failed", failed_cell=int(e.exec_count), failed_source=source,
                   error=f"{e.ename}: {str(e.evalue)[:300]}")
    except Exception as e:  # noqa: BLE001 - kernel death, timeout, unreadable notebook: report, go on
        source = _failed_source(out_nb)
        row.update(status="failed", failed_source=source, error=f"{type(e).__name__}: {str(e)[:300]}")
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def _log(msg: str) -> None:
    print(msg, flush=True)


def run(plan: RunPlan, timeout: int | None = None, log=_log):
    """Execute the plan's notebooks in order; returns the summary table (pandas)."""
    import pandas as pd

    plan.output.mkdir(parents=True, exist_ok=True)
    plan.figures.mkdir(parents=True, exist_ok=True)
    rows = []
    for nb in plan.notebooks:
        log(f"[{time.strftime('%H:%M:%S')}] {nb} ...")
        row = run_notebook(nb, plan.parameters[nb], plan.output, plan.notebook_dir, timeout=timeout)
        rows.append(row)
        msg = f"    {row['status']} in {row['seconds']:.1f} s"
        if row["status"] != "ok":
            msg += f" at In [{row['failed_cell']}] `{row['failed_source']}`: {row['error']}"
        log(msg)
    summary = pd.DataFrame(rows)
    summary.attrs["total_seconds"] = float(summary["seconds"].sum())
    summary.to_csv(plan.output / "summary.csv", index=False)
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scarlet_lib.reproduce", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(PROFILES)} (default {DEFAULT_PROFILE})")
    p.add_argument("--only", nargs="+", metavar="NB", help="notebooks to run: names or numbers (default: all)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cpu; cuda for the gpu profile)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="[NB:]NAME=VALUE",
                   help="override a notebook parameter (repeatable)")
    p.add_argument("--output", default=None, help="folder for executed notebooks and summary (default outputs/<profile>)")
    p.add_argument("--figures", default=None, help="folder for figures/tables (default figures/ for cpu, else <output>/figures)")
    p.add_argument("--cache", default=None, help="trained-supernet cache folder (default runs/cache)")
    p.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default none)")
    p.add_argument("--list", action="store_true", help="print every notebook's parameters for the profile and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        plan = plan_run(args.profile, args.only, args.device, args.overrides, args.output, args.figures, args.cache)
    except ParameterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.list:
        for nb in plan.notebooks:
            print(nb, plan.parameters[nb])
        return 0
    print(f"profile {plan.profile}: {len(plan.notebooks)} notebook(s) -> {plan.output} (figures: {plan.figures})")
    summary = run(plan, timeout=args.timeout)
    import pandas as pd
    with pd.option_context("display.max_colwidth", 70, "display.width", 160):
        print(summary[["notebook", "status", "seconds", "failed_cell", "failed_source", "error"]].to_string(index=False))
    print(f"total {summary.attrs['total_seconds']:.1f} s; summary: {plan.output / 'summary.csv'}")
    failed = summary[summary["status"] != "ok"]
    if len(failed):
        print(f"{len(failed)} notebook(s) failed: {', '.join(failed['notebook'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
