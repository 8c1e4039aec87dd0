"""Compare the tables of two runs of the same notebooks (e.g. two thread counts, two machines).

    .venv/bin/python scripts/compare_runs.py FIGURES_A FIGURES_B [--out figures/cpu/rerun_comparison]

For every CSV present in both folders, each numeric column's largest absolute difference, and whether the
tables are identical; where a rerun covers only some arms or seeds, over the rows both runs hold (matched on
their key columns, ``shared_rows``). For every table of effects with an interval (``estimate`` or
``mean_diff`` with ``ci_low``/``ci_high``), whether B's estimate falls inside A's confidence interval and
inside A's rerun interval (``rerun_low``/``rerun_high``; where A predates those columns, the confidence
interval widened by sqrt(2) about its centre: exactly ``analysis.paired_t_interval``'s for a t interval, an
approximation for a bootstrap one). Per table, how many of B's estimates miss A's rerun intervals, and how
likely at least that many misses are if the intervals hold their nominal 95% (rows taken as independent): one miss
in 9 is not evidence of intervals too narrow, five would be. Writes ``<out>.csv``, ``<out>_intervals.csv``,
``<out>_coverage.csv`` and ``<out>.md`` (with both runs' recorded versions, CPU and thread counts) and prints the
markdown.
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


KEY_COLUMNS = ("arm", "claim", "comparison", "identity_mode", "seed", "statistic")
ROW_KEYS = KEY_COLUMNS + ("epoch", "path_id")  # what names a row when two runs hold different rows


def shared_rows(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The rows both runs hold, in A's order, when they hold different ones (a rerun of some arms or seeds).

    Rows are matched on the key columns both tables have, where those name every row once in each; otherwise
    (or when the row counts agree) the tables come back as they are. The note says how many rows each run had."""
    keys = [c for c in ROW_KEYS if c in a.columns and c in b.columns]
    if len(a) == len(b) or not keys or a.duplicated(keys).any() or b.duplicated(keys).any():
        return a, b, ""
    index = pd.MultiIndex.from_frame(a[keys].astype(str))
    other = pd.MultiIndex.from_frame(b[keys].astype(str))
    both = index.isin(other)
    order = other.get_indexer(index[both])
    return (a[both].reset_index(drop=True), b.iloc[order].reset_index(drop=True),
            f"the {int(both.sum())} rows both hold (A {len(a)}, B {len(b)})")


def interval_coverage(a: pd.DataFrame, b: pd.DataFrame) -> list[dict]:
    """Per row of an effects table: is B's estimate inside A's confidence interval and A's rerun interval?"""
    value = next((c for c in ("estimate", "mean_diff") if c in a.columns), None)
    if value is None or not {"ci_low", "ci_high"} <= set(a.columns) or value not in b.columns or len(a) != len(b):
        return []
    rows = []
    for (_, ra), (_, rb) in zip(a.iterrows(), b.iterrows()):
        key = " / ".join(str(ra[c]) for c in KEY_COLUMNS if c in a.columns)
        if not all(np.isfinite([ra[value], rb[value], ra["ci_low"], ra["ci_high"]])):
            continue
        if {"rerun_low", "rerun_high"} <= set(a.columns) and np.isfinite([ra["rerun_low"], ra["rerun_high"]]).all():
            low, high = ra["rerun_low"], ra["rerun_high"]
        else:
            mid, half = (ra["ci_low"] + ra["ci_high"]) / 2, (ra["ci_high"] - ra["ci_low"]) / 2
            low, high = mid - np.sqrt(2) * half, mid + np.sqrt(2) * half
        rows.append({"row": key, "a_estimate": ra[value], "b_estimate": rb[value], "a_ci_low": ra["ci_low"],
                     "a_ci_high": ra["ci_high"], "in_ci": bool(ra["ci_low"] <= rb[value] <= ra["ci_high"]),
                     "a_rerun_low": low, "a_rerun_high": high, "in_rerun": bool(low <= rb[value] <= high)})
    return rows


def coverage_summary(cover: pd.DataFrame, nominal: float = 0.95) -> pd.DataFrame:
    """Per table of ``interval_coverage`` rows, and for all of them: rows, how many of B's estimates fall inside A's
    confidence and rerun intervals, the rerun misses, and ``p_at_least_misses``: the binomial probability of at
    least that many misses among that many independent rows whose intervals cover with probability ``nominal``."""
    from scipy import stats

    rows = []
    for table, group in [*cover.groupby("table", sort=False), ("all", cover)]:
        n, misses = len(group), int((~group["in_rerun"].astype(bool)).sum())
        rows.append({"table": table, "rows": n, "in_ci": int(group["in_ci"].sum()),
                     "in_rerun": n - misses, "rerun_misses": misses,
                     "p_at_least_misses": float(stats.binom.sf(misses - 1, n, 1 - nominal))})
    return pd.DataFrame(rows, columns=["table", "rows", "in_ci", "in_rerun", "rerun_misses", "p_at_least_misses"])


def _record(folder: Path, shared: list[str]) -> str:
    """What ``folder``'s run records named ``shared`` (those both folders hold) say, one line per distinct one."""
    if not shared:
        return "no run record"
    notebooks_of: dict[str, list[str]] = {}  # one description, the notebooks whose records say it
    for name in shared:
        v = json.loads((folder / name).read_text()).get("versions", {})
        described = (f"commit {v.get('git_commit')}, {v.get('cpu')} ({v.get('cpu_capability')}), "
                     f"torch {v.get('torch')}, notebook threads {v.get('torch_threads')}")
        notebooks_of.setdefault(described, []).append(name.removesuffix(".run.json"))
    return "; ".join(f"{', '.join(names)}: {described}" for described, names in notebooks_of.items())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--out", type=Path, default=None, help="write <out>.csv and <out>.md")
    p.add_argument("--note", default="", help="how the runs were made (the commands), written into <out>.md")
    args = p.parse_args(argv)
    for folder in (args.a, args.b):
        if not folder.is_dir():
            p.error(f"{folder} is not a folder of run tables")
    names = sorted({f.name for f in args.a.glob("*.csv")} & {f.name for f in args.b.glob("*.csv")})
    if not names:
        p.error(f"no CSV table is in both {args.a} and {args.b}")
    records = sorted({f.name for f in args.a.glob("*.run.json")} & {f.name for f in args.b.glob("*.run.json")})
    rows, covered = [], []
    for name in names:  # each table read once, for both comparisons
        a, b, subset = shared_rows(pd.read_csv(args.a / name), pd.read_csv(args.b / name))
        rows += [{"table": name, **r, "note": "; ".join(x for x in (r["note"], subset) if x)}
                 for r in compare_tables(a, b)]
        covered += [{"table": name, **r} for r in interval_coverage(a, b)]
    table = pd.DataFrame(rows, columns=["table", "column", "max_abs_diff", "identical", "note"])
    cover = pd.DataFrame(covered, columns=["table", "row", "a_estimate", "b_estimate", "a_ci_low", "a_ci_high", "in_ci",
                                           "a_rerun_low", "a_rerun_high", "in_rerun"])
    summary = coverage_summary(cover) if len(cover) else pd.DataFrame()
    md = (f"# Two runs compared\n\n`python scripts/compare_runs.py {args.a} {args.b}`\n\n"
          f"- A: {args.a} ({_record(args.a, records)})\n- B: {args.b} ({_record(args.b, records)})\n\n"
          + (f"{args.note}\n\n" if args.note else "")
          + f"{int(table['identical'].sum())} of {len(table)} compared columns identical.\n\n"
          + markdown_table(table) + "\n\n## B's effects against A's intervals\n\n"
          + (f"B's estimate inside A's confidence interval: {int(cover['in_ci'].sum())} of {len(cover)}; inside A's "
             f"rerun interval: {int(cover['in_rerun'].sum())} of {len(cover)}.\n\n"
             "Per table (`p_at_least_misses`: the chance of at least that many rerun misses if every interval "
             "covered 95% of reruns, rows taken as independent; a small value says the intervals are too narrow):"
             f"\n\n{markdown_table(summary)}\n\n" + markdown_table(cover)
             if len(cover) else "No effects table with intervals in both runs.") + "\n")
    print(md)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out.with_suffix(".csv"), index=False)
        cover.to_csv(args.out.with_name(args.out.name + "_intervals.csv"), index=False)
        summary.to_csv(args.out.with_name(args.out.name + "_coverage.csv"), index=False)
        args.out.with_suffix(".md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
