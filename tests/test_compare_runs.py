"""scripts/compare_runs.py: the largest difference per numeric column of two runs' tables."""
import importlib.util
import json
import math
from pathlib import Path

import pandas as pd

_spec = importlib.util.spec_from_file_location("compare_runs", Path(__file__).parents[1] / "scripts" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_runs)


def test_identical_tables_and_a_perturbed_column():
    a = pd.DataFrame({"arm": ["x", "y"], "acc": [0.5, float("nan")], "n": [3, 4]})
    same = compare_runs.compare_tables(a, a.copy())
    assert all(r["identical"] for r in same) and {r["column"] for r in same} == {"acc", "n"}
    b = a.assign(acc=[0.53, float("nan")])
    rows = {r["column"]: r for r in compare_runs.compare_tables(a, b)}
    assert math.isclose(rows["acc"]["max_abs_diff"], 0.03) and not rows["acc"]["identical"]
    assert rows["n"]["identical"]
    shape = compare_runs.compare_tables(a, a.iloc[:1])
    assert shape[0]["column"] == "(shape)" and not shape[0]["identical"]


def test_command_writes_the_comparison(tmp_path, capsys):
    for name, acc in (("a", 0.5), ("b", 0.25)):
        (tmp_path / name).mkdir()
        pd.DataFrame({"acc": [acc]}).to_csv(tmp_path / name / "t.csv", index=False)
    assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0
    out = pd.read_csv(tmp_path / "cmp.csv")
    assert out.loc[0, "max_abs_diff"] == 0.25 and "0 of 1 compared columns identical" in capsys.readouterr().out


def test_the_header_names_the_run_records_of_the_notebooks_both_folders_hold(tmp_path, capsys):
    # A holds two notebooks' records (made at two commits), B only one: the header describes that one in both
    for name, records in (("a", {"02_x": "aaa1111", "03_y": "bbb2222"}), ("b", {"03_y": "ccc3333"})):
        (tmp_path / name).mkdir()
        pd.DataFrame({"acc": [0.5]}).to_csv(tmp_path / name / "03_t.csv", index=False)
        for notebook, commit in records.items():
            versions = {"git_commit": commit, "cpu": "cpu", "cpu_capability": "AVX2", "torch": "2", "torch_threads": "1"}
            (tmp_path / name / f"{notebook}.run.json").write_text(json.dumps({"versions": versions}))
    compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")])
    header = capsys.readouterr().out.split("compared columns")[0]
    assert "03_y: commit bbb2222" in header and "03_y: commit ccc3333" in header and "aaa1111" not in header


def test_a_rerun_estimate_is_checked_against_the_first_runs_intervals(tmp_path, capsys):
    # A: t interval 1 +- 1 (rerun interval given); second row has no rerun columns: CI widened by sqrt(2)
    a = pd.DataFrame({"arm": ["x", "y"], "claim": ["C1", "C1"], "estimate": [1.0, 0.0], "ci_low": [0.0, -1.0],
                      "ci_high": [2.0, 1.0], "rerun_low": [-0.5, float("nan")], "rerun_high": [2.5, float("nan")]})
    b = a.assign(estimate=[2.2, -1.3])
    rows = compare_runs.interval_coverage(a, b)
    assert [r["row"] for r in rows] == ["x / C1", "y / C1"]
    assert [(r["in_ci"], r["in_rerun"]) for r in rows] == [(False, True), (False, True)]
    assert math.isclose(rows[1]["a_rerun_low"], -math.sqrt(2))
    assert compare_runs.interval_coverage(a, b.assign(estimate=[2.6, 0.0]))[0]["in_rerun"] is False
    for name, t in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        t.to_csv(tmp_path / name / "02_effects.csv", index=False)
    compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")])
    assert "inside A's rerun interval: 2 of 2" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "cmp_intervals.csv")["in_rerun"].all()


def test_coverage_summary_says_how_likely_the_misses_are_at_nominal_coverage():
    cover = pd.DataFrame({"table": ["e.csv"] * 9 + ["g.csv"] * 4, "in_ci": [True] * 7 + [False] * 2 + [True] * 4,
                          "in_rerun": [True] * 8 + [False] + [True] * 4})
    s = compare_runs.coverage_summary(cover).set_index("table")
    assert s.loc["e.csv", ["rows", "in_ci", "in_rerun", "rerun_misses"]].tolist() == [9, 7, 8, 1]
    assert math.isclose(s.loc["e.csv", "p_at_least_misses"], 1 - 0.95 ** 9)  # P(at least one miss in 9), by hand
    assert s.loc["g.csv", "p_at_least_misses"] == 1.0  # no miss: certain
    assert s.loc["all", "rows"] == 13 and math.isclose(s.loc["all", "p_at_least_misses"], 1 - 0.95 ** 13)


def test_a_rerun_of_some_arms_is_compared_on_the_rows_both_runs_hold(tmp_path, capsys):
    a = pd.DataFrame({"arm": ["paper", "calibrated", "let"], "claim": ["C1"] * 3, "estimate": [0.0, 1.0, 2.0],
                      "ci_low": [-1.0, 0.0, 1.0], "ci_high": [1.0, 2.0, 3.0]})
    b = pd.DataFrame({"arm": ["let", "calibrated"], "claim": ["C1"] * 2, "estimate": [9.0, 1.5],
                      "ci_low": [8.0, 0.5], "ci_high": [10.0, 2.5]})  # another order, no paper arm
    a2, b2, note = compare_runs.shared_rows(a, b)
    assert list(a2["arm"]) == list(b2["arm"]) == ["calibrated", "let"] and note == "the 2 rows both hold (A 3, B 2)"
    same = compare_runs.shared_rows(a, a)
    assert same[0] is a and same[1] is a and same[2] == ""
    for name, t in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        t.to_csv(tmp_path / name / "02_effects.csv", index=False)
    compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")])
    cover = pd.read_csv(tmp_path / "cmp_intervals.csv")
    assert list(cover["row"]) == ["calibrated / C1", "let / C1"] and list(cover["in_ci"]) == [True, False]
    assert "the 2 rows both hold" in pd.read_csv(tmp_path / "cmp.csv")["note"].dropna().iloc[0]
