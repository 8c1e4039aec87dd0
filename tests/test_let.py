"""LET algebra as numeric checks: Lemmas 1 and 2, their limits, and whole-network folding."""
import copy
import itertools

import pytest
import torch

from scarlet_lib import let
from scarlet_lib.blocks import LET, Shortcut
from scarlet_lib.models import FIGURE3_ARCH, SCARLET_A, SCARLET_B, SCARLET_C, ScarletNet
from scarlet_lib.costs import cost_table, count_madds, count_params
from scarlet_lib.space import IDENTITY

EXACT = 1e-12  # float64 relative error for claims of exactness
CLEARLY_WRONG = 1e-3  # smallest relative error accepted as "not equal"


def _mixed_arch():
    """SCARLET-A with identities at a stride-1 slot before a non-residual block (layer 2), a stride-2
    channel-changing slot before a residual block (layer 7), a run through a stride-2 slot (15-16) and a
    run into the head through a channel change (18-19)."""
    arch = list(SCARLET_A)
    for i in (1, 6, 14, 15, 17, 18):
        arch[i] = IDENTITY
    return arch


MIXED = _mixed_arch()


WIDTH = 0.5  # keeps every published shape relation (which slots change channels / add residuals), runs faster


def _let_net(arch, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return ScarletNet(arch, num_classes=10, small_input=True, width_mult=WIDTH, identity_mode="let").to(dtype)


def _x(size=16, batch=1, seed=1):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- Lemma 1 and Lemma 2 -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lemma_table():
    return let.lemma_checks(dtype=torch.float64, seed=3)


def test_lemma_table_covers_every_kernel_and_stride(lemma_table):
    conv = lemma_table[lemma_table.lemma == 2]
    combos = set(zip(conv.kernel, conv.let_stride, conv.conv_stride))
    assert combos == set(itertools.product((1, 3, 5, 7), (1, 2), (1, 2)))
    assert set(conv.strided) == {"none", "conv", "let", "both"}
    assert (lemma_table.lemma == 1).sum() == 2


def test_exact_folds_reach_round_off(lemma_table):
    exact = lemma_table[lemma_table.expected_exact]
    assert (exact.rel_error <= EXACT).all(), exact[exact.rel_error > EXACT]
    # the double-sum fold is exact for every kernel and stride when applied to the subsampled input
    good = lemma_table[lemma_table.form.str.startswith("double sum, on")]
    assert len(good) == 16 and (good.rel_error <= EXACT).all()


def test_printed_diagonal_form_is_wrong_for_k_above_1(lemma_table):
    printed = lemma_table[lemma_table.form.str.startswith("printed")]
    assert (printed[printed.kernel == 1].rel_error <= EXACT).all()
    wrong = printed[printed.kernel > 1]
    assert len(wrong) == 12 and (wrong.rel_error > 0.1).all()


def test_stride_two_let_is_a_dilated_conv_not_a_plain_one(lemma_table):
    plain = lemma_table[lemma_table.form == "double sum, plain kxk conv on x"]
    # LET stride 1 (conv strided or not): a plain kxk conv with the conv's stride is exact
    assert (plain[plain.let_stride == 1].rel_error <= EXACT).all()
    # LET stride 2 with k > 1: no plain kxk conv on x; the dilation-2 conv is exact instead
    bad = plain[(plain.let_stride == 2) & (plain.kernel > 1)]
    assert len(bad) == 6 and (bad.rel_error > 0.1).all()
    dilated = lemma_table[lemma_table.form == "double sum, dilated conv on x"]
    assert (dilated.rel_error <= EXACT).all()
    assert lemma_table.as_expected.all()


def test_fold_conv_matches_the_double_sum_written_as_loops():
    g = torch.Generator().manual_seed(0)
    w1 = torch.randn(3, 2, generator=g, dtype=torch.float64)        # 1x1: 2 -> 3
    w2 = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)  # 3x3: 3 -> 4
    ref = torch.zeros(4, 2, 3, 3, dtype=torch.float64)
    for m, u, q, r in itertools.product(range(4), range(2), range(3), range(3)):
        ref[m, u, q, r] = sum(w2[m, p, q, r] * w1[p, u] for p in range(3))
    torch.testing.assert_close(let.fold_conv(w1, w2), ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(let.fold_conv(w1[:, :, None, None], w2), ref, rtol=0, atol=1e-14)
    # k = 1 is Lemma 1 at every pixel
    torch.testing.assert_close(let.fold_conv(w1, w2[:, :, :1, :1])[:, :, 0, 0], let.fold_fc(w1, w2[:, :, 0, 0]))


def test_fold_fc_is_the_transpose_of_the_papers_row_vector_product():
    g = torch.Generator().manual_seed(1)
    w1, w2 = torch.randn(6, 5, generator=g), torch.randn(4, 6, generator=g)
    torch.testing.assert_close(let.fold_fc(w1, w2).T, w1.T @ w2.T)
    layers = torch.nn.Sequential(torch.nn.Linear(5, 6, bias=False), torch.nn.Linear(6, 4, bias=False))
    x = torch.randn(3, 5, generator=g)
    with torch.no_grad():
        layers[0].weight.copy_(w1), layers[1].weight.copy_(w2)
        torch.testing.assert_close(layers(x), x @ let.fold_fc(w1, w2).T)


def test_fold_rejects_mismatched_shapes_with_a_clear_message():
    with pytest.raises(ValueError, match="gives 6 features but the second expects 5"):
        let.fold_fc(torch.zeros(6, 3), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="grouped/depthwise"):
        let.fold_conv(torch.zeros(6, 3), torch.zeros(6, 1, 3, 3))
    with pytest.raises(ValueError, match=r"1x1 conv weight \(out, in, 1, 1\)"):
        let.fold_conv(torch.zeros(6, 3, 3, 3), torch.zeros(2, 6, 3, 3))
    with pytest.raises(ValueError, match="accepted: 'subsample', 'dilated', 'plain'"):
        let.folded_conv_on_input(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 1, 1), form="nope")


def test_let_relu_cannot_be_folded():
    table = let.let_relu_counterexample()
    nonzero = table.x != 0
    assert (table.loc[nonzero, "error_with_relu"] > 0.4).all()
    assert (table.error_linear == 0).all()
    # |x| is even, any fold is odd: the ReLU path gives the same output for x and -x
    assert table.set_index("x").loc[-1.0, "let_relu_path"] == table.set_index("x").loc[1.0, "let_relu_path"] == 1.0
    # and on random weights the ReLU version is far from the fold
    g = torch.Generator().manual_seed(2)
    w1, w2 = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(4, 6, 3, 3, generator=g, dtype=torch.float64)
    x = torch.randn(2, 5, 9, 9, generator=g, dtype=torch.float64)
    ref = let.let_then_conv(x, w1, w2, relu=True)
    out = let.folded_conv_on_input(x, let.fold_conv(w1, w2))
    assert (ref - out).abs().max() / ref.abs().max() > 0.1


@pytest.mark.parametrize("shift,kernel", [("bias", 3), ("bias", 7), ("bn", 5)])
def test_bias_or_bn_shift_breaks_the_fold_only_at_padded_borders(shift, kernel):
    table = let.bias_border_check(kernel=kernel, shift=shift, spatial=11).set_index("region")
    assert table.loc["interior", "max_abs_error"] <= EXACT * table.loc["interior", "max_abs_output"]
    assert table.loc["border", "max_abs_error"] > CLEARLY_WRONG * table.loc["border", "max_abs_output"]


# --- Whole-network folding ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed_folds():
    net = _let_net(MIXED)
    return net, {mode: let.fold_network(net, mode) for mode in let.FOLD_MODES}


def test_runs_and_consumers_are_found(mixed_folds):
    _, folds = mixed_folds
    report = folds["drop"][1]
    assert report.layer.tolist() == ["2", "7", "15-16", "18-19"]
    assert report.consumer.tolist() == ["mb_module.2", "mb_module.7", "mb_module.16", "conv_before_pooling"]
    assert report.residual.tolist() == [False, True, True, False]
    # width 0.5: 32 -> 16, 40 -> 24, 80 -> 40, 96 -> 48, 192 -> 96, 320 -> 160
    assert report.let.tolist() == ["16->16 s1", "24->40 s2", "48->96 s2", "96->160 s1"]


def test_folding_is_exact_where_the_consumer_has_no_residual(mixed_folds):
    _, folds = mixed_folds
    report = folds["drop"][1]
    assert (report.exact == ~report.residual).all()
    assert (report[~report.residual].max_rel_error <= EXACT).all()
    assert (report[report.residual].max_rel_error > CLEARLY_WRONG).all()


def test_exact_mode_reproduces_the_let_network(mixed_folds):
    net, folds = mixed_folds
    folded, report = folds["exact"]
    assert report.exact.all() and (report.max_rel_error <= EXACT).all()
    for x in (_x(16, seed=5), _x(32, seed=6)):
        err = let.output_error(net, folded, x)
        assert err["max_rel_error"] <= 1e-10 and err["top1_agreement"] == 1.0
    drop_err = let.output_error(net, folds["drop"][0], _x(16, seed=5))
    assert drop_err["max_rel_error"] > CLEARLY_WRONG


def test_drop_mode_has_the_builders_layout_widths_and_madds(mixed_folds):
    net, folds = mixed_folds
    folded, _ = folds["drop"]
    builder = ScarletNet(MIXED, num_classes=10, small_input=True, width_mult=WIDTH, identity_mode="identity")
    assert {k: v.shape for k, v in folded.state_dict().items()} == {k: v.shape for k, v in builder.state_dict().items()}
    assert [type(m) for m in folded.mb_module] == [type(m) for m in builder.mb_module]
    assert all(isinstance(folded.mb_module[i], Shortcut) for i in (1, 6, 14, 15, 17, 18))
    assert [m.hidden for m in folded.mb_module if hasattr(m, "hidden")] == \
        [m.hidden for m in builder.mb_module if hasattr(m, "hidden")]
    madds = count_madds(copy.deepcopy(folded).float(), 32)
    assert madds == count_madds(builder, 32)
    assert madds == cost_table(input_size=32, width_mult=WIDTH, small_input=True, num_classes=10).madds(MIXED)
    assert count_params(folded) == count_params(builder)
    # the padded channels of a channel-changing slot meet zero columns in the folded conv1
    assert folded.mb_module[7].conv1.weight[:, 24:].abs().max() == 0
    assert folded.conv_before_pooling[0].weight[:, 96:].abs().max() == 0


def test_exact_mode_costs_what_the_report_says(mixed_folds):
    _, folds = mixed_folds
    drop, exact = (copy.deepcopy(folds[m][0]).float() for m in ("drop", "exact"))
    report = folds["exact"][1]
    assert count_params(exact) - count_params(drop) == report.extra_params.sum() == 40 * 40 + 96 * 96
    assert count_madds(exact, 32) - count_madds(drop, 32) == report.extra_madds.sum()
    assert isinstance(exact.mb_module[7], let.InvertedResidualWithProjection)
    assert "mb_module.7.shortcut.weight" in exact.state_dict()


@pytest.mark.parametrize("arch,residual", [(SCARLET_B, [True, True]), (SCARLET_C, [True, True]),
                                           (FIGURE3_ARCH, [True, True, False])])
def test_published_identity_slots_feed_residual_blocks(arch, residual):
    net = _let_net(arch)
    runs = let.find_let_runs(net)
    assert [r.consumer_residual for r in runs] == residual
    # every LET of a published model is stride 1 (same shape), so the projection is a square W
    assert all(r.stride == 1 for r in runs)


@pytest.fixture(scope="module")
def study():
    # float32 keeps this fast (float64 depthwise convs take torch's slow path on CPU); the exactness
    # claims are checked in float64 elsewhere, here only "round-off" vs "clearly different" matters.
    return let.drop_error_study(kinds=("trained_like",), input_size=16, batch=2, width_mult=WIDTH,
                                dtype=torch.float32)


def test_drop_error_study_on_published_models(study):
    assert set(study.arch) == {"SCARLET-B", "SCARLET-C", "Figure 3"} and len(study) == 6
    exact = study[study["mode"] == "exact"]
    assert (exact.max_rel_error <= 1e-5).all() and (exact.top1_agreement == 1.0).all()
    # a non-orthogonal LET: dropping it changes the logits clearly, on every published model
    # (the identity LET, which makes dropping exact, is checked below on a harder architecture)
    changed = study[study["mode"] == "drop"]
    assert len(changed) == 3 and (changed.max_rel_error > CLEARLY_WRONG).all()
    assert (changed.max_local_rel_error > 0.05).all()


def test_identity_let_weights_make_drop_exact_through_stride_and_padding():
    net = let.set_let_weights_(_let_net(MIXED), "identity")
    folded, report = let.fold_network(net, "drop")
    assert (report.max_rel_error <= EXACT).all()
    assert let.output_error(net, folded, _x(16, seed=7))["max_rel_error"] <= EXACT


def test_supernet_extract_folds_exactly():
    from scarlet_lib.supernet import Supernet

    sn = Supernet(identity_mode="let", width_mult=WIDTH, num_classes=10, small_input=True, seed=4)
    net = sn.extract(SCARLET_C).double()  # only the path goes to float64 (the whole supernet is slow to convert)
    assert sum(isinstance(m, LET) for m in net.mb_module) == 3
    folded, report = let.fold_network(net, "exact")
    assert report.layer.tolist() == ["4-5", "16"]
    x = _x(16, batch=2, seed=8)
    assert let.output_error(net, folded, x)["max_rel_error"] <= 1e-10
    assert let.output_error(net, let.fold_network(net, "drop")[0], x)["max_rel_error"] > CLEARLY_WRONG


def test_residual_counterexample_is_concrete():
    t = let.residual_counterexample()
    assert ((t.drop_error > 0) == (t.x != 0)).all()
    assert (t.projection_error == 0).all()


def test_fold_network_rejects_what_it_cannot_fold():
    with pytest.raises(ValueError, match="identity_mode='let'.*no LET layers"):
        let.fold_network(ScarletNet(SCARLET_B, num_classes=10, small_input=True, width_mult=WIDTH))
    with pytest.raises(ValueError, match="ReLU is not linear"):
        let.fold_network(ScarletNet(SCARLET_B, num_classes=10, small_input=True, width_mult=WIDTH,
                                    identity_mode="let_relu"))
    with pytest.raises(ValueError, match=r"accepted: \('drop', 'exact'\)"):
        let.fold_network(_let_net(SCARLET_B, torch.float32), mode="approx")
    with pytest.raises(TypeError, match="ScarletNet"):
        let.fold_network(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="accepted: \\('identity', 'near_identity'"):
        let.make_let_weight("orthogonal", 3, 3)


def test_model_without_identity_folds_to_a_copy():
    net = _let_net(SCARLET_A, torch.float32)
    folded, report = let.fold_network(net, "drop")
    assert report.empty and list(report.columns)[:3] == ["slot", "slots", "layer"]
    x = _x(16).float()
    assert let.output_error(net, folded, x)["max_abs_error"] == 0.0
