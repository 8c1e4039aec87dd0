"""Figure 1's effects from several notebook-2 runs side by side, with the recipe differences as named factors.

    .venv/bin/python scripts/figure1_factors.py figures figures/lr0.02 ... [--out figures/02_factors]

Each FOLDER is a finished run of notebook 2 (its run record and ``02_effects``, ``02_verdicts``, ``02_gates``
tables); a run that pooled earlier runs' seeds (``pool_with``) stands for all its pooled seeds. ``FOLDER:ARM,ARM``
takes only those arms of the run (e.g. when two pooled runs of one recipe and length share an arm's seeds).
``analysis.factor_effects`` puts every arm and claim of every run in one table, with a column for each recipe
parameter whose value differs between the runs (learning rate, steps, ...). Writes ``<out>.csv``,
``<out>_supernets.csv`` (every supernet's accuracy and last-part gain per run), ``<out>_length.csv`` (how each
effect and level moved between runs that differ only in length, ``analysis.length_changes``; the main table's
``checked_verdict`` keeps a verdict only where that check passed), ``<out>.md`` (both tables plus each run's
commit, CPU, instruction set and thread count) and ``<out>.png|pdf`` (one forest per claim, one row per run and
arm, the paper's effect dashed), and prints the markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scarlet_lib import analysis, plots
from scarlet_lib.artifacts import markdown_table, read_run, repo_path

NOTEBOOK = "02_supernet_stability"
TABLES = ("02_effects", "02_verdicts", "02_gates", "02_oneshot_summary")
POOLED_TABLES = ("02_pooled_effects", "02_pooled_verdicts", "02_pooled_gates")


def _read(spec):
    """A run as the factor tables take it: ``(params, effects, verdicts, gates), (params, summary)``. A run that
    pooled earlier runs' seeds (``pool_with``) stands for all of them: its pooled tables, and the one-shot
    summaries of every pooled run. ``spec``: ``FOLDER`` or ``FOLDER:ARM,ARM`` (only those arms)."""
    folder, sep, wanted = spec.partition(":")
    params, tables = read_run(folder, NOTEBOOK, TABLES)
    if not params.get("pool_with"):
        effects, verdicts, gates, summary = (tables[t] for t in TABLES)
    else:
        _, pooled = read_run(folder, NOTEBOOK, POOLED_TABLES)
        effects, verdicts, gates = (pooled[t] for t in POOLED_TABLES)
        summary = analysis.pool_summaries([(params, tables["02_oneshot_summary"])] + [
            (p, t["02_oneshot_summary"]) for p, t in (read_run(f, NOTEBOOK, ("02_oneshot_summary",))
                                                       for f in params["pool_with"])])[1]
    if sep:
        arms = [a.strip() for a in wanted.split(",") if a.strip()]
        held = list(dict.fromkeys(effects["arm"]))
        if not arms or set(arms) - set(held):
            raise ValueError(f"{spec!r}: the run in {folder} holds arms {', '.join(held)}; name some of them after "
                             f"the colon (FOLDER:ARM,ARM), got {wanted!r}")
        effects, verdicts, gates, summary = (t[t["arm"].isin(arms)].reset_index(drop=True)
                                             for t in (effects, verdicts, gates, summary))
    return (params, effects, verdicts, gates), (params, summary)


def _supernet_columns(supernets):
    """One row per (arm, identity mode, seed), one column per run: "accuracy % (gain)"."""
    cell = supernets.assign(cell=[f"{100 * a:.1f} ({100 * g:+.1f})"
                                  for a, g in zip(supernets["mean_acc"], supernets["plateau_gain"])])
    wide = cell.pivot_table(index=["arm", "identity_mode", "seed"], columns="run", values="cell", aggfunc="first",
                            sort=False)
    return wide[list(dict.fromkeys(supernets["run"]))].fillna("").reset_index()


def _length_rows(lengths):
    """The length table as the markdown shows it: one decimal, the interval in one column."""
    shown = lengths.drop(columns=["short_run"]).copy()
    shown["interval"] = [f"{lo:+.1f} to {hi:+.1f}" for lo, hi in zip(shown["ci_low"], shown["ci_high"])]
    level = shown["quantity"].str.endswith("level")
    for c in ("short_estimate", "long_estimate"):
        shown[c] = [f"{v:.1f}" if lv else f"{v:+.1f}" for v, lv in zip(shown[c], level)]
    shown["change"] = shown["change"].map("{:+.1f}".format)
    shown["stable"] = shown["stable"].map({True: "yes", False: "no"}).fillna("")
    return shown[[c for c in shown.columns if c not in ("ci_low", "ci_high", "tolerance", "interval", "per_seed")]
                 + ["interval", "per_seed"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="folders of finished notebook-2 runs (relative to the repository), "
                    "each optionally FOLDER:ARM,ARM for only those arms")
    ap.add_argument("--out", default="figures/02_factors", help="output stem (default figures/02_factors)")
    args = ap.parse_args(argv)
    if len(set(args.folders)) != len(args.folders):
        ap.error(f"a folder is named twice: {args.folders}")
    runs, summaries, records = {}, {}, {}
    for folder in args.folders:
        try:
            runs[folder], summaries[folder] = _read(folder)
        except (FileNotFoundError, ValueError) as e:
            ap.error(str(e))
        run_json = repo_path(folder.partition(":")[0]) / f"{NOTEBOOK}.run.json"
        versions = json.loads(run_json.read_text()).get("versions", {})
        records[folder] = {**versions, "pool_with": runs[folder][0].get("pool_with") or []}
    try:  # refused before anything is written: e.g. two folders of one recipe and length (pool them instead)
        lengths = analysis.length_changes(summaries)
        table = analysis.length_checked(analysis.factor_effects(runs), lengths)
        supernets = analysis.factor_supernets(runs)
    except ValueError as e:
        ap.error(str(e))
    out = repo_path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    supernets.to_csv(out.with_name(out.name + "_supernets.csv"), index=False)
    lengths.to_csv(out.with_name(out.name + "_length.csv"), index=False)
    plots.save_figure(plots.factor_effects_figure(table), out.name, out.parent)
    shown = table.drop(columns=["paper_effect", "length_change", "length_ci_low", "length_ci_high",
                                "length_from_steps", "length_reason"]).copy()
    for c in ("estimate", "ci_low", "ci_high"):
        shown[c] = shown[c].map("{:+.1f}".format)
    shown["worst_plateau_gain"] = (100 * shown["worst_plateau_gain"]).map("{:+.1f}".format)
    shown["lowest_mean_acc"] = (100 * shown["lowest_mean_acc"]).map("{:.1f}".format)
    shown["paper_effect_in_ci"] = shown["paper_effect_in_ci"].map({True: "yes", False: "no"}).fillna("")
    lines = [f"`python scripts/figure1_factors.py {' '.join(args.folders)} --out {args.out}`", "",
             "Figure 1's effects (LET - identity; C1 in points of mean one-shot accuracy, C2 in points of excess s.d., "
             "C3 in points of share far below) from several notebook-2 runs; the columns between `run` and `arm` are "
             "the recipe parameters that differ between the runs. `worst_plateau_gain`: the largest last-part gain "
             "of the arm's supernets (points; the gate is < 2); `lowest_mean_acc`: the arm's lowest mean one-shot "
             "accuracy (%). `verdict` is the row's own run's; `checked_verdict` keeps it only where a shorter run of the "
             "same recipe shows the effect no longer moving with length (next table), because under a decaying "
             "schedule the last part of training moves little by construction.", "", markdown_table(shown), "",
             "Length check (`<out>_length.csv`, `analysis.length_changes`): per pair of runs that differ only in "
             "length, the per-seed change (longer - shorter) of each claim and of each supernet kind's mean one-shot "
             "accuracy (points), paired t interval over the seeds both ran. `stable`: C1's interval lies within "
             f"+-{analysis.LENGTH_TOLERANCE['C1']:g} points (half the paper's effect).", "",
             markdown_table(_length_rows(lengths)), "",
             "Every supernet's mean one-shot accuracy at the end of its run (%), and in brackets its last-part gain "
             "(points), one column per run (`<out>_supernets.csv`). Where runs differ only in length, a supernet "
             "that ends higher in the longer run was not at its plateau in the shorter one, whatever its last-part "
             "gain said.", "", markdown_table(_supernet_columns(supernets)), "", "Runs:", ""]
    for folder, v in records.items():
        lines.append(f"- `{folder}`: commit {v.get('git_commit')}, {v.get('cpu')} ({v.get('cpu_capability')}), "
                     f"{v.get('torch_threads')} threads, torch {v.get('torch')}"
                     + (f"; its seeds pooled with {', '.join(f'`{f}`' for f in v['pool_with'])} (the row shows all)"
                        if v["pool_with"] else ""))
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
