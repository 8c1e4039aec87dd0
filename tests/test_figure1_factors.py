"""scripts/figure1_factors.py: several notebook-2 runs in one effects table, the differing recipe as factors."""
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from scarlet_lib import analysis

_spec = importlib.util.spec_from_file_location("figure1_factors",
                                               Path(__file__).parents[1] / "scripts" / "figure1_factors.py")
figure1_factors = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(figure1_factors)


def _write_run(folder: Path, lr: float, c1: tuple[float, float, float], steps_per_epoch: int = 150,
               let_acc: float = 0.7) -> None:
    folder.mkdir()
    params = {**{k: 1 for k in analysis.POOL_KEYS}, "epochs": 10, "steps_per_epoch": steps_per_epoch, "lr": lr}
    versions = {"git_commit": "abc1234", "cpu": "Test CPU", "cpu_capability": "AVX2", "torch_threads": "2",
                "torch": "2.13.0"}
    (folder / "02_supernet_stability.run.json").write_text(json.dumps({"parameters": params, "versions": versions}))
    effects = pd.DataFrame([{"arm": "let-identity-init", "claim": "C1", "estimate": c1[0], "ci_low": c1[1],
                             "ci_high": c1[2], "seeds": 5}])
    gates = pd.DataFrame([{"arm": "let-identity-init", "identity_mode": m, "seed": 0, "chance": 0.1, "mean_acc": 0.7,
                           "plateau_gain": 0.01, "at_plateau": True} for m in ("identity", "let")])
    effects.to_csv(folder / "02_effects.csv", index=False)
    gates.to_csv(folder / "02_gates.csv", index=False)
    analysis.claim_verdicts(effects, gates).to_csv(folder / "02_verdicts.csv", index=False)
    summary = pd.DataFrame([{"arm": "let-identity-init", "identity_mode": m, "seed": s, "epoch": 9, "n_paths": 108,
                             "mean_acc": (let_acc if m == "let" else 0.7) + 0.01 * s, "excess_sd": 0.02,
                             "far_below_share": 0.0} for m in ("identity", "let") for s in range(3)])
    summary.to_csv(folder / "02_oneshot_summary.csv", index=False)


def test_command_writes_the_factor_table_figure_and_run_records(tmp_path, capsys):
    _write_run(tmp_path / "a", 0.05, (0.8, -21.3, 22.8))
    _write_run(tmp_path / "b", 0.02, (1.7, -10.7, 14.2))
    out = tmp_path / "f" / "factors"
    assert figure1_factors.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    t = pd.read_csv(out.with_suffix(".csv"))
    assert list(t["lr"]) == [0.05, 0.02] and list(t["paper_effect_in_ci"]) == [True, False]
    assert out.with_suffix(".png").exists() and out.with_suffix(".pdf").exists()
    supernets = pd.read_csv(out.with_name("factors_supernets.csv"))
    assert len(supernets) == 4 and set(supernets["lr"]) == {0.05, 0.02}
    md = out.with_suffix(".md").read_text()
    assert md.strip() in capsys.readouterr().out
    assert "commit abc1234, Test CPU (AVX2), 2 threads" in md and "| +1.7 | -10.7 | +14.2 |" in md
    assert "| let-identity-init | let | 0 | 70.0 (+1.0) | 70.0 (+1.0) |" in md  # one column per run


def test_command_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    _write_run(tmp_path / "a", 0.05, (0.8, -21.3, 22.8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        figure1_factors.main([str(tmp_path / "a"), str(tmp_path / "empty"), "--out", str(tmp_path / "x")])
    assert "is not a finished run of 02_supernet_stability" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_command_checks_each_verdict_against_the_shorter_run_of_the_same_recipe(tmp_path):
    _write_run(tmp_path / "short", 0.02, (1.7, -10.7, 14.2), steps_per_epoch=150, let_acc=0.7)
    _write_run(tmp_path / "long", 0.02, (3.8, -4.9, 12.5), steps_per_epoch=300, let_acc=0.72)
    out = tmp_path / "factors"
    assert figure1_factors.main([str(tmp_path / "short"), str(tmp_path / "long"), "--out", str(out)]) == 0
    lengths = pd.read_csv(out.with_name("factors_length.csv")).set_index("quantity")
    assert lengths.loc["C1", "change"] == pytest.approx(2.0) and lengths.loc["C1", "long_steps"] == 3000
    t = pd.read_csv(out.with_suffix(".csv")).set_index("run")
    # the long run's "not reproduced" stands (C1 moved by exactly +2 on every seed); the short run has nothing
    # shorter to be checked against
    assert t.loc[str(tmp_path / "long"), "checked_verdict"] == "not reproduced"
    assert t.loc[str(tmp_path / "short"), "checked_verdict"] == "uninformative at this scale"
    assert "| +2.0 |" in out.with_suffix(".md").read_text()


def test_a_pooled_run_stands_for_all_its_pooled_seeds(tmp_path, capsys):
    _write_run(tmp_path / "short", 0.02, (1.7, -10.7, 14.2), steps_per_epoch=150)
    _write_run(tmp_path / "long", 0.02, (3.8, -4.9, 12.5), steps_per_epoch=300, let_acc=0.72)
    _write_run(tmp_path / "more", 0.02, (0.5, -3.0, 4.0), steps_per_epoch=300, let_acc=0.72)
    more = tmp_path / "more"
    record = json.loads((more / "02_supernet_stability.run.json").read_text())
    record["parameters"]["pool_with"] = [str(tmp_path / "long")]
    (more / "02_supernet_stability.run.json").write_text(json.dumps(record))
    summary = pd.read_csv(more / "02_oneshot_summary.csv")
    summary.assign(seed=summary["seed"] + 10).to_csv(more / "02_oneshot_summary.csv", index=False)
    pooled = pd.DataFrame([{"arm": "let-identity-init", "claim": "C1", "estimate": 2.0, "ci_low": -1.0,
                            "ci_high": 5.0, "seeds": 6}])
    pooled.to_csv(more / "02_pooled_effects.csv", index=False)
    gates = pd.read_csv(more / "02_gates.csv")
    gates.to_csv(more / "02_pooled_gates.csv", index=False)
    analysis.claim_verdicts(pooled, gates).to_csv(more / "02_pooled_verdicts.csv", index=False)
    out = tmp_path / "factors"
    with pytest.raises(SystemExit):  # the pooled run's own recipe and length twice: nothing to compare
        figure1_factors.main([str(tmp_path / "long"), str(more), "--out", str(out)])
    assert "have the same recipe and length" in capsys.readouterr().err and not out.with_suffix(".csv").exists()
    assert figure1_factors.main([str(tmp_path / "short"), str(more), "--out", str(out)]) == 0
    t = pd.read_csv(out.with_suffix(".csv")).set_index("run")
    assert t.loc[str(more), "seeds"] == 6 and t.loc[str(more), "estimate"] == 2.0  # the pooled effects
    lengths = pd.read_csv(out.with_name("factors_length.csv")).set_index("quantity")
    assert lengths.loc["C1", "seeds"] == 3  # only seeds 0-2 ran at both lengths
    assert f"its seeds pooled with `{tmp_path / 'long'}` (the row shows all)" in out.with_suffix(".md").read_text()


def _add_arm(folder: Path, arm: str, let_shift: float = 0.0) -> None:
    """Give the run in ``folder`` a second arm: a copy of its tables with ``arm``, LET ``let_shift`` higher."""
    for name in ("02_effects", "02_gates", "02_oneshot_summary"):
        t = pd.read_csv(folder / f"{name}.csv")
        other = t.assign(arm=arm)
        if name == "02_oneshot_summary":
            other.loc[other["identity_mode"] == "let", "mean_acc"] += let_shift
        pd.concat([t, other], ignore_index=True).to_csv(folder / f"{name}.csv", index=False)
    analysis.claim_verdicts(pd.read_csv(folder / "02_effects.csv"), pd.read_csv(folder / "02_gates.csv")).to_csv(
        folder / "02_verdicts.csv", index=False)


def test_folder_arms_take_one_arm_of_a_run_so_two_runs_of_one_length_can_share_a_recipe(tmp_path, capsys):
    _write_run(tmp_path / "short", 0.02, (1.7, -10.7, 14.2), steps_per_epoch=150)
    _write_run(tmp_path / "long", 0.02, (3.8, -4.9, 12.5), steps_per_epoch=300, let_acc=0.72)
    _write_run(tmp_path / "cal", 0.02, (-20.0, -30.0, -10.0), steps_per_epoch=300, let_acc=0.5)
    for folder in ("short", "long"):
        _add_arm(tmp_path / folder, "calibrated", let_shift=-0.3 if folder == "short" else -0.25)
    (tmp_path / "cal" / "02_effects.csv").write_text(
        (tmp_path / "cal" / "02_effects.csv").read_text().replace("let-identity-init", "calibrated"))
    for name in ("02_gates", "02_oneshot_summary", "02_verdicts"):
        t = pd.read_csv(tmp_path / "cal" / f"{name}.csv")
        t.assign(arm="calibrated").to_csv(tmp_path / "cal" / f"{name}.csv", index=False)
    out = tmp_path / "factors"
    folders = [str(tmp_path / "short"), str(tmp_path / "long"), str(tmp_path / "cal")]
    with pytest.raises(SystemExit):  # "long" and "cal" both hold calibrated at one length
        figure1_factors.main(folders + ["--out", str(out)])
    assert "both hold arm 'calibrated'" in capsys.readouterr().err
    long_only = f"{tmp_path / 'long'}:let-identity-init"
    assert figure1_factors.main([folders[0], long_only, folders[2], "--out", str(out)]) == 0
    lengths = pd.read_csv(out.with_name("factors_length.csv"))
    c1 = lengths[lengths["quantity"] == "C1"].set_index("arm")
    assert c1.loc["let-identity-init", "long_run"] == long_only and c1.loc["calibrated", "long_run"] == folders[2]
    # calibrated: C1 per seed -30 (short) -> -20 (cal): +10 on every seed
    assert c1.loc["calibrated", "change"] == pytest.approx(10.0)
    t = pd.read_csv(out.with_suffix(".csv"))
    assert set(t.loc[t["run"] == long_only, "arm"]) == {"let-identity-init"}
    with pytest.raises(SystemExit):
        figure1_factors.main([f"{tmp_path / 'cal'}:paper", "--out", str(out)])
    assert "holds arms calibrated; name some of them after the colon" in capsys.readouterr().err
