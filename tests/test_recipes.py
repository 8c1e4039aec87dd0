"""Supernet recipes: LET initialisations, the named arms, round trips through cache / CLI / runner, parallel training."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from scarlet_lib import cache, reproduce
from scarlet_lib.blocks import LET
from scarlet_lib.models import init_weights
from scarlet_lib.recipes import ARMS, RECIPE_FIELDS, SupernetRecipe, arm_recipe, run_jobs
from scarlet_lib.space import SPACE_NO_SE, SPACE_SE
from scarlet_lib.cli import _check_args, _parser, supernet_recipe_from_args

TINY = SupernetRecipe(width=0.25, batch_size=8, epochs=2, steps_per_epoch=2, warmup_steps=0, eval_paths=9,
                      eval_images=16)


def _lets(net):
    return [m for m in net.layers.modules() if isinstance(m, LET)]


@pytest.mark.parametrize("space", [SPACE_NO_SE, SPACE_SE], ids=["no_se", "se"])
def test_identity_let_init_makes_the_let_supernet_the_same_function_as_the_identity_supernet(space):
    recipe = TINY.replace(space="se" if space is SPACE_SE else "no_se", let_init="identity")
    let_net = recipe.build(10, True).eval()
    id_net = recipe.replace(identity_mode="identity").build(10, True).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    archs = space.sample_fair(0) + space.sample_stratified(9, seed=1)
    assert any(a.identity_at_shape_change for a in archs)  # the zero-pad identity with stride and new channels
    with torch.no_grad():
        for arch in archs:
            assert torch.equal(let_net(x, arch), id_net(x, arch)), arch


def test_he_let_init_is_the_released_conv_init():
    net = TINY.build(10, True)
    reference = init_weights(TINY.replace(let_init="identity").build(10, True), seed=TINY.seed)
    for a, b in zip(_lets(net), _lets(reference)):
        assert torch.equal(a.conv.weight, b.conv.weight)
    w = torch.cat([m.conv.weight.flatten() / np.sqrt(2.0 / m.conv.out_channels) for m in _lets(net)])
    assert abs(float(w.std()) - 1.0) < 0.05  # N(0, sqrt(2 / out)): a variance gain of about 2 per LET


def test_orthogonal_let_init_preserves_the_norm_of_every_input():
    net = TINY.replace(let_init="orthogonal").build(10, True)
    for m in _lets(net):
        w = m.conv.weight.flatten(1)  # (out, in), out >= in
        assert torch.allclose(w.t() @ w, torch.eye(w.shape[1]), atol=1e-5)
        assert not torch.allclose(w[: w.shape[1]], torch.eye(w.shape[1]))  # a rotation, not the identity


def test_arms_depart_from_the_calibrated_recipe_as_named():
    base = SupernetRecipe()
    paper = arm_recipe("paper", base)
    assert (paper.zero_init_residual, paper.let_init, paper.reduction) == (False, "he", "sum")
    assert paper.lr == pytest.approx(base.lr / 7)  # accumulate-then-update at lr / m
    assert arm_recipe("calibrated", base) == base
    assert arm_recipe("let-identity-init", base) == base.replace(let_init="identity")
    assert set(ARMS) == {"paper", "calibrated", "let-identity-init"}
    with pytest.raises(ValueError, match="unknown arm 'nope'.*paper"):
        arm_recipe("nope", base)


@pytest.mark.parametrize("change, message", [
    (dict(let_init="zero"), "let_init='zero'.*he"), (dict(lr=float("nan")), "lr=nan"), (dict(lr=-1.0), "lr=-1.0"),
    (dict(width=float("inf")), "width=inf"), (dict(epochs=0), "epochs=0"), (dict(dataset="nonsense"), "dataset"),
    (dict(reduction="max"), "reduction='max'"), (dict(zero_init_residual="yes"), "zero_init_residual"),
    (dict(space="big"), "space='big'"), (dict(eval_images=0), "eval_images=0"),
    (dict(difficulty="trivial"), "difficulty='trivial'.*standard"),
    (dict(dataset="cifar10", difficulty="hard"), "difficulty='hard'.*cifar10")])
def test_bad_recipe_values_are_refused_with_what_is_accepted(change, message):
    with pytest.raises(ValueError, match=message):
        SupernetRecipe(**change)
    with pytest.raises(ValueError, match="unknown recipe settings"):
        SupernetRecipe().replace(colour="red")


def test_recipe_difficulty_chooses_the_grating_preset_of_every_image_the_supernet_sees():
    from scarlet_lib.data import GRATING_DIFFICULTIES

    for name, spec in GRATING_DIFFICULTIES.items():
        data = TINY.replace(difficulty=name).data()
        assert data.grating_spec == spec
    standard, hard = TINY.data(), TINY.replace(difficulty="hard").data()
    assert not torch.equal(standard.heldout_set[0][0], hard.heldout_set[0][0])


def test_recipe_stream_labels_reach_the_stream_and_are_refused_where_there_is_none():
    balanced, iid = TINY.data(), TINY.replace(stream_labels="iid").data()
    assert (balanced.stream_labels, iid.stream_labels) == ("balanced", "iid")
    mixes = {tuple(torch.bincount(y, minlength=10).tolist()) for _, y in balanced.train_batches(0)}
    assert len(mixes) == 1  # balanced: every batch the same class mix
    assert len({tuple(torch.bincount(y, minlength=10).tolist()) for _, y in iid.train_batches(0)}) > 1
    with pytest.raises(ValueError, match="stream_labels='shuffled' is not accepted; accepted: .'balanced', 'iid'."):
        TINY.replace(stream_labels="shuffled")
    with pytest.raises(ValueError, match="accepted with dataset='cifar10': 'balanced'"):
        TINY.replace(dataset="cifar10", stream_labels="iid")
    args = _parser().parse_args(["supernet", "--stream-labels", "iid", "--dataset", "gratings"])
    with pytest.raises(ValueError, match="--stream-labels iid needs --dataset gratings --stream"):
        _check_args(args)


def test_identity_supernets_ignore_let_init_so_arms_share_them():
    assert TINY.replace(identity_mode="identity", let_init="identity") == TINY.replace(identity_mode="identity")


@pytest.mark.parametrize("recipe", [TINY, arm_recipe("paper", TINY).replace(identity_mode="identity", seed=3),
                                    TINY.replace(let_init="orthogonal", space="se", eval_every=2, difficulty="hard"),
                                    TINY.replace(stream_labels="iid")])
def test_recipe_round_trips_through_the_command_line(recipe):
    args = _parser().parse_args(["supernet"] + recipe.cli_args())
    assert supernet_recipe_from_args(args) == recipe


def test_recipe_round_trips_through_the_runner(tmp_path):
    plan = reproduce.plan_run("smoke", only=["2", "4"], output=tmp_path, cache=tmp_path / "c",
                              overrides=["let_init=orthogonal", "zero_init_residual=False", "reduction=mean"])
    for nb in plan.notebooks:
        recipe = SupernetRecipe.from_params(plan.parameters[nb])
        assert (recipe.let_init, recipe.zero_init_residual, recipe.reduction) == ("orthogonal", False, "mean")
        assert recipe == SupernetRecipe.from_params(plan.parameters["02_supernet_stability"])
    with pytest.raises(reproduce.ParameterError, match="let_init"):
        reproduce.plan_run("smoke", only=["2"], output=tmp_path, overrides=["let_init=3"])


def test_recipe_round_trips_through_the_cache_key_and_is_trained_once(tmp_path):
    run = cache.supernet_run(TINY, "cpu", tmp_path)
    assert run.created and run.recipe == TINY
    stored = json.loads((run.folder / "cache.json").read_text())["params"]
    assert SupernetRecipe.from_params(stored) == TINY and stored["device"] == "cpu"
    again = cache.supernet_run(TINY, "cpu", tmp_path)
    assert not again.created and again.folder == run.folder
    for a, b in zip(run.supernet.state_dict().values(), again.supernet.state_dict().values()):
        assert torch.equal(a, b)
    assert cache.supernet_run(TINY.replace(let_init="identity"), "cpu", tmp_path, train=False) is None
    # the scored paths: the recipe's fixed stratified set, on eval_images held-out images each
    assert sorted(run.evals["arch"].unique()) == sorted(str(a) for a in TINY.eval_archs())
    assert set(run.evals["n_images"]) == {TINY.eval_images}
    with pytest.raises(TypeError, match="SupernetRecipe"):
        cache.supernet_run("let", "cpu", tmp_path)


def test_supernets_trained_in_parallel_processes_equal_those_trained_one_by_one(tmp_path):
    recipes = [TINY.replace(identity_mode=m, seed=s) for m in ("identity", "let") for s in (0, 1)]
    serial = cache.supernet_runs(recipes, "cpu", tmp_path / "serial", processes=1)
    parallel = cache.supernet_runs(recipes, "cpu", tmp_path / "parallel", processes=2)
    for a, b in zip(serial, parallel):
        assert a.recipe == b.recipe and a.created and b.created
        pd.testing.assert_frame_equal(a.steps, b.steps)
        pd.testing.assert_frame_equal(a.evals, b.evals)
        for (k, x), y in zip(a.supernet.state_dict().items(), b.supernet.state_dict().values()):
            assert torch.equal(x, y), k


def test_run_jobs_refuses_a_bad_process_count():
    with pytest.raises(ValueError, match="processes must be an integer >= 1"):
        run_jobs([(sum, ([1],))], processes=0)
    assert run_jobs([(sum, ([1, 2],)), (max, ([1, 5],))], processes=1) == [3, 5]


def test_recipe_fields_are_the_supernet_settings_the_profiles_give():
    from scarlet_lib.profiles import profile_parameters

    for profile in ("smoke", "cpu", "cpu-long", "gpu"):
        params = profile_parameters(profile, "02")
        assert set(RECIPE_FIELDS) - {"identity_mode", "seed"} <= set(params), profile
        SupernetRecipe.from_params(params)  # valid values
