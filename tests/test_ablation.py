"""Figure 3's ablation runs: independent of the number of worker processes and of the cache; settings refused when bad."""
import pandas as pd
import pytest
from torch.optim.optimizer import register_optimizer_step_pre_hook

from scarlet_lib.ablation import FIGURE3_ARMS, Figure3Settings, figure3_run, figure3_runs

TINY = Figure3Settings(batch_size=8, epochs=2, steps_per_epoch=2, eval_batches=1)


def test_runs_in_worker_processes_equal_runs_one_by_one():
    curves1, final1 = figure3_runs(TINY, seeds=[0, 1], processes=1)
    curves2, final2 = figure3_runs(TINY, seeds=[0, 1], processes=2)
    pd.testing.assert_frame_equal(curves1, curves2)
    pd.testing.assert_frame_equal(final1, final2)
    assert set(final1["arm"]) == {*FIGURE3_ARMS, "let_folded_drop", "let_folded_exact"}
    assert len(curves1) == 2 * len(FIGURE3_ARMS) * TINY.epochs


def test_the_exact_fold_keeps_the_trained_let_models_accuracy():
    _, final = figure3_run("let", 0, TINY)
    acc = {r["arm"]: r["acc"] for r in final}
    assert acc["let_folded_exact"] == pytest.approx(acc["let"])


@pytest.mark.parametrize("field,value", [("epochs", 0), ("lr", -1.0), ("width", float("inf")),
                                         ("batch_size", 2.5), ("steps_per_epoch", -1)])
def test_bad_settings_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"Figure3Settings.{field}"):
        Figure3Settings(**{field: value})


def test_unknown_arm_is_refused_with_the_accepted_ones():
    with pytest.raises(ValueError, match="accepted: folded, let, let_relu"):
        figure3_runs(TINY, seeds=[0], arms=["relu"])


def test_cached_runs_equal_fresh_ones_and_a_rerun_reads_them_without_training(tmp_path):
    fresh = figure3_runs(TINY, seeds=[0], processes=1)
    cached = figure3_runs(TINY, seeds=[0], processes=1, cache_dir=tmp_path)
    steps = []
    handle = register_optimizer_step_pre_hook(lambda *args: steps.append(1))
    try:
        again = figure3_runs(TINY, seeds=[0], processes=1, cache_dir=tmp_path)
    finally:
        handle.remove()
    assert not steps  # every run read from its cache entry
    for a, b, c in zip(fresh, cached, again):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        pd.testing.assert_frame_equal(a, c, check_exact=True)
    assert len(list((tmp_path / "figure3").iterdir())) == len(FIGURE3_ARMS)  # one entry per (arm, seed)
    other = figure3_runs(Figure3Settings(**{**TINY.__dict__, "lr": 0.02}), seeds=[0], processes=1,
                         arms=["let"], cache_dir=tmp_path)[1]
    assert len(list((tmp_path / "figure3").iterdir())) == len(FIGURE3_ARMS) + 1  # settings are in the key
    assert not other.equals(fresh[1][fresh[1].arm == "let"].reset_index(drop=True))
