"""Calibration runs of supernet recipes: how far a recipe trains in how much time, recorded as a table.

Each ``--run NAME:key=value,key=value`` is a ``recipes.SupernetRecipe`` (the calibrated defaults of the cpu
profile, changed by the given fields); all runs train in ``--processes`` worker processes with one thread
each. Per run and epoch the table holds the running path training accuracy (the gratings stream shows every
batch once, so it is a held-out estimate too), the mean held-out one-shot accuracy of the recipe's scored
paths after BN recalibration, and the wall time. Rows are appended to ``figures/calibration_supernets.csv``
(with the CPU model and thread count) and the markdown ``figures/calibration_supernets.md`` is rewritten
from the whole CSV, so every calibration the profiles rely on stays on record.

    python scripts/calibrate_supernets.py --run b16:batch_size=16,epochs=6,steps_per_epoch=200 \\
        --run b32:batch_size=32,epochs=6,steps_per_epoch=100 --processes 2
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import scarlet_lib  # noqa: E402,F401
import pandas as pd  # noqa: E402

from scarlet_lib.artifacts import markdown_table, versions  # noqa: E402
from scarlet_lib.profiles import profile_parameters  # noqa: E402
from scarlet_lib.recipes import RECIPE_FIELDS, SupernetRecipe, run_jobs  # noqa: E402
from scarlet_lib.train import train_recipe  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "figures")


def parse_run(text: str, base: SupernetRecipe) -> tuple[str, SupernetRecipe]:
    name, _, spec = text.partition(":")
    if not name or not spec:
        raise SystemExit(f"--run expects NAME:key=value,... got {text!r}")
    changes = {}
    for item in spec.split(","):
        key, _, raw = item.partition("=")
        if key not in RECIPE_FIELDS:
            raise SystemExit(f"--run {name}: unknown recipe field {key!r}; accepted: {', '.join(RECIPE_FIELDS)}")
        try:
            changes[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            changes[key] = raw
    try:
        return name, base.replace(**changes)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--run {name}: {e}") from None


def train_one(name: str, recipe: SupernetRecipe) -> pd.DataFrame:
    started = time.time()
    result = train_recipe(recipe)
    wall = time.time() - started
    steps = result.steps.groupby("epoch")["train_acc"].mean().rename("running_acc")
    held = result.evals.groupby("epoch")["heldout_acc"].mean().rename("heldout_acc")
    table = pd.concat([steps, held], axis=1).reset_index()
    table.insert(0, "run", name)
    table["step_end"] = (table["epoch"] + 1) * recipe.steps_per_epoch
    table["wall_s"] = round(wall, 1)
    for k, v in recipe.key().items():
        table[k] = v
    return table


SHOW = ["recorded", "run", "identity_mode", "let_init", "zero_init_residual", "reduction", "stream_labels", "batch_size",
        "lr", "epoch", "step_end", "running_acc", "heldout_acc", "wall_s", "concurrent_runs", "note"]


def write_markdown(table: pd.DataFrame) -> None:
    if "stream_labels" in table.columns:  # rows recorded before the setting existed ran the balanced mix
        table = table.assign(stream_labels=table["stream_labels"].fillna("balanced"))
    with open(os.path.join(OUT, "calibration_supernets.md"), "w") as f:
        f.write("# Supernet calibration runs\n\nWritten by `scripts/calibrate_supernets.py` (one thread per run, "
                "`concurrent_runs` runs at a time on the machine named in the CSV). Accuracies are fractions: "
                "`running_acc` = mean running training accuracy of the sampled paths in the epoch (fresh images), "
                "`heldout_acc` = mean held-out one-shot accuracy of the recipe's scored paths after BN "
                "recalibration. Other recipe fields are in the CSV.\n\n")
        f.write(markdown_table(table[[c for c in SHOW if c in table.columns]], "{:.3f}"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", default=[], help="NAME:field=value,... (recipe fields)")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--note", default="", help="what the runs were for (kept in the table)")
    p.add_argument("--render", action="store_true", help="only rewrite the markdown from the CSV")
    a = p.parse_args(argv)
    csv = os.path.join(OUT, "calibration_supernets.csv")
    if a.render:
        write_markdown(pd.read_csv(csv, float_precision="round_trip"))
        return 0
    if not a.run:
        p.error("give at least one --run (or --render)")
    base = SupernetRecipe.from_params(profile_parameters("cpu", "02"))
    runs = [parse_run(r, base) for r in a.run]
    tables = run_jobs([(train_one, run) for run in runs], processes=a.processes)
    v = versions()
    new = pd.concat(tables, ignore_index=True).assign(
        note=a.note, cpu=v.get("cpu"), cpu_capability=v.get("cpu_capability"), threads=1,
        concurrent_runs=min(a.processes, len(runs)), torch=v.get("torch"),
        recorded=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    table = pd.concat([pd.read_csv(csv, float_precision="round_trip"), new], ignore_index=True) if os.path.exists(csv) else new
    table.to_csv(csv, index=False)
    write_markdown(table)
    print(new[[c for c in SHOW if c in new.columns]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
