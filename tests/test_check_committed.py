"""scripts/check_committed.py: a retrained supernet or stand-alone model matches the scores it committed, and a
committed score the code does not give again is found."""
import dataclasses
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from scarlet_lib import analysis, artifacts, cache, ranking
from scarlet_lib.recipes import SupernetRecipe, arm_recipe
from scarlet_lib.space import SPACE_NO_SE

_spec = importlib.util.spec_from_file_location("check_committed",
                                               Path(__file__).parents[1] / "scripts" / "check_committed.py")
check_committed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_committed)

RECIPE = SupernetRecipe(width=0.25, batch_size=8, epochs=1, steps_per_epoch=2, warmup_steps=0, eval_paths=3,
                        eval_images=16)


def _record(folder: Path, notebook: str, parameters: dict):
    (folder / f"{notebook}.run.json").write_text(json.dumps({"parameters": parameters,
                                                             "versions": artifacts.versions()}))


def _check(folder: Path, tmp_path: Path, *args) -> pd.DataFrame:
    out = tmp_path / "check"
    assert check_committed.main([str(folder), *args, "--cache-dir", str(tmp_path / "again"), "--out", str(out)]) == 0
    assert "scores identical" in out.with_suffix(".md").read_text()
    return pd.read_csv(out.with_suffix(".csv"))


def test_a_retrained_supernet_gives_its_committed_scores_and_a_changed_one_is_found(tmp_path):
    folder = tmp_path / "figures"
    folder.mkdir()
    run = cache.supernet_run(arm_recipe("calibrated", RECIPE).replace(identity_mode="let", seed=0), "cpu",
                             tmp_path / "made")
    scores = analysis.oneshot_scores({("calibrated", "let", 0): run.evals})
    scores.to_csv(folder / "02_oneshot_scores.csv", index=False)
    _record(folder, "02_supernet_stability", dataclasses.asdict(RECIPE))
    row = _check(folder, tmp_path, "--supernet", "calibrated:let:0").iloc[0]
    assert row.matched == row.committed == row.identical == len(scores) and row.max_abs_diff == 0

    scores.loc[1, "heldout_acc"] += 0.125  # a committed number this code does not give
    scores.to_csv(folder / "02_oneshot_scores.csv", index=False)
    row = _check(folder, tmp_path, "--supernet", "calibrated:let:0").iloc[0]
    assert row.identical == len(scores) - 1 and row.max_abs_diff == pytest.approx(0.125)


def test_a_retrained_standalone_model_gives_its_committed_scores(tmp_path):
    folder = tmp_path / "figures"
    folder.mkdir()
    params = {**dataclasses.asdict(RECIPE), "standalone_epochs": 1, "standalone_steps_per_epoch": 2,
              "standalone_lr": 0.05, "standalone_seeds": [0, 1]}
    arch = SPACE_NO_SE.sample_stratified(1, seed=0)[0]
    settings = ranking.StandaloneSettings(epochs=1, steps_per_epoch=2, lr=0.05, seeds=(0, 1))
    runs = ranking.standalone_runs(RECIPE, {"path 0": arch}, settings, "cpu", tmp_path / "made", processes=1)
    ranking.standalone_scores(runs, RECIPE, [0, 1]).to_csv(folder / "08_models.csv", index=False)
    _record(folder, "08_ranking_fidelity", params)
    row = _check(folder, tmp_path, "--standalone", "path 0").iloc[0]
    assert row.matched == row.committed == row.identical == 4 and row.max_abs_diff == 0  # 2 seeds x 2 data seeds


@pytest.mark.parametrize("args,message", [
    (["--supernet", "calibrated:let"], "expected ARM:MODE:SEED"),
    (["--supernet", "fair:let:0"], "arms"),
    (["--supernet", "calibrated:let:0"], "02_supernet_stability.run.json is missing"),
    (["--standalone", "path 0"], "08_ranking_fidelity.run.json is missing"),
])
def test_bad_requests_are_refused_naming_what_is_accepted_before_any_training(args, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        check_committed.main([str(tmp_path), *args, "--cache-dir", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()
