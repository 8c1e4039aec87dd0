"""Retrain some of a committed run's supernets and stand-alone models with the current code; compare their scores.

    .venv/bin/python scripts/check_committed.py figures --supernet calibrated:let:0 paper:identity:0 \\
        --standalone "path 0" [--cache-dir DIR] [--out figures/committed_check]

On the instruction set and thread count a run record names, the same code retrains a supernet or a stand-alone
model exactly, so "identical" for every score says the committed tables still come from this code, without
rerunning the whole gallery (hours on a CPU); a difference on that machine kind says the code changed what they
compute. Elsewhere the scores differ like a rerun (``scripts/compare_runs.py`` is the check there).

``--supernet ARM:MODE:SEED`` retrains notebook 2's supernet (its recipe from ``02_supernet_stability.run.json``)
and compares its held-out path scores with ``02_oneshot_scores.csv``; ``--standalone MODEL`` retrains notebook
8's stand-alone model of that name with every stand-alone seed (``08_ranking_fidelity.run.json``) and compares
its scores with the ``standalone`` rows of ``08_models.csv``. Writes ``<out>.csv`` and ``<out>.md`` (with the
versions of this run and of the committed records) and prints the markdown.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scarlet_lib import analysis, artifacts, cache, ranking
from scarlet_lib.recipes import ARMS, SupernetRecipe, arm_recipe
from scarlet_lib.space import Architecture

COLUMNS = ["kind", "item", "committed", "matched", "identical", "max_abs_diff", "seconds"]
RECORD_KEYS = ("git_commit", "cpu", "cpu_capability", "torch_threads", "torch")


def _record(folder: Path, notebook: str) -> dict:
    path = folder / f"{notebook}.run.json"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing: {folder} holds no committed run of {notebook}")
    return json.loads(path.read_text())


def _compare(kind: str, item: str, head: pd.DataFrame, committed: pd.DataFrame, on: list[str], seconds: float) -> dict:
    m = head.merge(committed, on=on, suffixes=("_head", "_committed"))
    diff = np.abs(m["heldout_acc_head"].to_numpy(float) - m["heldout_acc_committed"].to_numpy(float))
    return {"kind": kind, "item": item, "committed": len(committed), "matched": len(m),
            "identical": int((diff == 0).sum()), "max_abs_diff": float(diff.max()) if len(diff) else np.nan,
            "seconds": round(seconds, 1)}


def parse_supernet(spec: str) -> tuple[str, str, int]:
    """``ARM:MODE:SEED`` as ``(arm, mode, seed)``, refused with what is accepted."""
    try:
        arm, mode, seed = spec.split(":")
        seed = int(seed)
    except ValueError:
        raise SystemExit(f"error: --supernet {spec!r}: expected ARM:MODE:SEED, e.g. calibrated:let:0") from None
    if arm not in ARMS or mode not in ("identity", "let"):
        raise SystemExit(f"error: --supernet {spec!r}: arms {list(ARMS)}, modes ['identity', 'let']")
    return arm, mode, seed


def check_supernet(folder: Path, spec: str, params: dict, cache_dir) -> dict:
    """Retrain notebook 2's supernet ``ARM:MODE:SEED`` (``params``: its run record's) and compare its path scores
    with the committed ones."""
    arm, mode, seed = parse_supernet(spec)
    base = SupernetRecipe.from_params(params)
    committed = pd.read_csv(folder / "02_oneshot_scores.csv")
    committed = committed[(committed.arm == arm) & (committed.identity_mode == mode) & (committed.seed == seed)]
    if committed.empty:
        raise SystemExit(f"error: --supernet {spec!r}: {folder / '02_oneshot_scores.csv'} has no scores of it")
    started = time.time()
    run = cache.supernet_run(arm_recipe(arm, base).replace(identity_mode=mode, seed=seed), "cpu", cache_dir)
    head = analysis.oneshot_scores({(arm, mode, seed): run.evals})
    return _compare("supernet", spec, head, committed, ["arm", "identity_mode", "seed", "epoch", "path_id", "arch"],
                    time.time() - started)


def check_standalone(folder: Path, model: str, params: dict, cache_dir) -> dict:
    """Retrain notebook 8's stand-alone ``model`` (every stand-alone seed; ``params``: its run record's) and
    compare its held-out scores."""
    committed = pd.read_csv(folder / "08_models.csv")
    committed = committed[(committed.source == "standalone") & (committed.model == model)]
    if committed.empty:
        raise SystemExit(f"error: --standalone {model!r}: {folder / '08_models.csv'} has no stand-alone model of "
                         "that name (e.g. 'path 0')")
    base = SupernetRecipe.from_params(params)
    settings = ranking.StandaloneSettings(epochs=params["standalone_epochs"],
                                          steps_per_epoch=params["standalone_steps_per_epoch"],
                                          lr=params["standalone_lr"], seeds=tuple(params["standalone_seeds"]))
    started = time.time()
    runs = ranking.standalone_runs(base, {model: Architecture.parse(committed.arch.iloc[0])}, settings, "cpu",
                                   cache_dir, processes=1)
    head = ranking.standalone_scores(runs, base, sorted(int(d) for d in committed.data_seed.unique()))
    return _compare("stand-alone", model, head, committed, ["model", "arch", "seed", "data_seed"],
                    time.time() - started)


def _without_note(argv: list[str]) -> list[str]:
    """The command line as typed, less ``--note`` and its text (written below it instead)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--note":
            skip = True
        elif not a.startswith("--note="):
            out.append(a)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="a folder of committed run tables, e.g. figures")
    p.add_argument("--supernet", nargs="*", default=[], metavar="ARM:MODE:SEED")
    p.add_argument("--standalone", nargs="*", default=[], metavar="MODEL")
    p.add_argument("--cache-dir", default=None, help="where the retrained runs are kept (default: runs/cache)")
    p.add_argument("--out", type=Path, default=None, help="write <out>.csv and <out>.md")
    p.add_argument("--note", default="", help="how the runs were made, written into <out>.md")
    args = p.parse_args(argv)
    if not args.folder.is_dir():
        p.error(f"{args.folder} is not a folder of run tables")
    if not args.supernet and not args.standalone:
        p.error("name at least one --supernet ARM:MODE:SEED or --standalone MODEL")
    for spec in args.supernet:
        parse_supernet(spec)
    notebooks = (["02_supernet_stability"] if args.supernet else []) + (["08_ranking_fidelity"] if args.standalone else [])
    records = {nb: _record(args.folder, nb) for nb in notebooks}  # every record read before any training
    rows = [check_supernet(args.folder, s, records["02_supernet_stability"]["parameters"], args.cache_dir)
            for s in args.supernet]
    rows += [check_standalone(args.folder, m, records["08_ranking_fidelity"]["parameters"], args.cache_dir)
             for m in args.standalone]
    table = pd.DataFrame(rows, columns=COLUMNS)
    now = artifacts.versions()
    lines = ["# Committed scores retrained with the current code\n",
             f"`python scripts/check_committed.py {shlex.join(_without_note(sys.argv[1:] if argv is None else argv))}`\n",
             "- this run: " + ", ".join(f"{k} {now.get(k)}" for k in RECORD_KEYS)]
    lines += [f"- committed {nb}: " + ", ".join(f"{k} {r['versions'].get(k)}" for k in RECORD_KEYS)
              for nb, r in records.items()]
    lines += [f"\n{args.note}"] if args.note else []
    lines += ["", f"{int(table.identical.sum())} of {int(table.matched.sum())} scores identical.", "",
              artifacts.markdown_table(table)]
    md = "\n".join(lines) + "\n"
    print(md)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out.with_suffix(".csv"), index=False)
        args.out.with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
