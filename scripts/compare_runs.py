"""Compare the tables of two runs of the same notebooks (e.g. two thread counts, two machines).

    .venv/bin/python scripts/compare_runs.py FIGURES_A FIGURES_B [--out figures/cpu/rerun_comparison]

For every CSV present in both folders with the same rows, each numeric column's largest absolute
difference, and whether the tables are identical. Writes ``<out>.csv`` and ``<out>.md`` (with both runs'
recorded versions, CPU and thread counts) and prints the markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from scarlet_lib.artifacts import markdown_table


def compare_tables(a: pd.DataFrame, b: pd.DataFrame) -> list[dict]:
    """One row per numeric column: its largest absolute difference (NaN in both places counts as equal)."""
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        return [{"column": "(shape)", "max_abs_diff": np.nan, "identical": False,
                 "note": f"shapes {a.shape} vs {b.shape}"}]
    rows = []
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xv, yv = x.to_numpy(float), y.to_numpy(float)
            both_nan = np.isnan(xv) & np.isnan(yv)
            d = np.where(both_nan, 0.0, np.abs(xv - yv))
            rows.append({"column": col, "max_abs_diff": float(np.nanmax(d)) if d.size else 0.0,
                         "identical": bool(np.all(d == 0)), "note": ""})
        elif not x.astype(str).equals(y.astype(str)):
            rows.append({"column": col, "max_abs_diff": np.nan, "identical": False, "note": "text differs"})
    return rows


def _record(folder: Path) -> str:
    runs = sorted(folder.glob("*.run.json"))
    if not runs:
        return "no run record"
    v = json.loads(runs[0].read_text()).get("versions", {})
    return (f"commit {v.get('git_commit')}, {v.get('cpu')} ({v.get('cpu_capability')}), torch {v.get('torch')}, "
            f"notebook threads {v.get('torch_threads')}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, default=None, help="write <out>.csv and <out>.md")
    args = p.parse_args(argv)
    for folder in (args.a, args.b):
        if not folder.is_dir():
            p.error(f"{folder} is not a folder of run tables")
    names = sorted({f.name for f in args.a.glob("*.csv")} & {f.name for f in args.b.glob("*.csv")})
    if not names:
        p.error(f"no CSV table is in both {args.a} and {args.b}")
    rows = []
    for name in names:
        for r in compare_tables(pd.read_csv(args.a / name), pd.read_csv(args.b / name)):
            rows.append({"table": name, **r})
    table = pd.DataFrame(rows, columns=["table", "column", "max_abs_diff", "identical", "note"])
    md = (f"# Two runs compared\n\n`python scripts/compare_runs.py {args.a} {args.b}`\n\n"
          f"- A: {args.a} ({_record(args.a)})\n- B: {args.b} ({_record(args.b)})\n\n"
          f"{int(table['identical'].sum())} of {len(table)} compared columns identical.\n\n"
          + markdown_table(table) + "\n")
    print(md)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out.with_suffix(".csv"), index=False)
        args.out.with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
