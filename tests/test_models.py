"""Released models, blocks, identity variants, model options and checkpoint loading.

The expected state-dict layout is rebuilt here from the released model file (layer table written out below as
(expansion, kernel, SE) tuples), independently of ``scarlet_lib.space``/``models``.
"""
import math
import pickle

import pytest
import torch
import torch.nn.functional as F

from scarlet_lib.blocks import LET, InvertedResidual, Shortcut, SqueezeExcite, make_choice_block
from scarlet_lib.models import (
    SCARLET_A, SCARLET_B, SCARLET_C, CheckpointError, build_model, get_model, init_weights, load_checkpoint,
    read_state_dict,
)

ID = None
# The released architectures (the authors' model file, Scarlet_A/B/C), written out by hand.
RELEASED = {
    "Scarlet_A": [(3, 7, 0), (6, 5, 0), (3, 5, 0), (3, 7, 1), (6, 3, 1), (3, 5, 1), (6, 3, 1), (3, 3, 0),
                  (3, 7, 1), (3, 7, 0), (3, 5, 0), (3, 7, 1), (3, 3, 0), (3, 7, 1), (6, 3, 1), (6, 5, 1),
                  (3, 3, 1), (6, 3, 1), (6, 7, 1)],
    "Scarlet_B": [(3, 3, 1), (3, 5, 1), (3, 3, 1), (6, 7, 1), (3, 3, 0), (3, 5, 0), (6, 7, 1), (3, 3, 1), ID,
                  (3, 5, 0), (3, 3, 1), (3, 3, 1), (6, 7, 1), (3, 3, 1), (6, 5, 1), (6, 5, 1), ID, (6, 7, 1),
                  (6, 5, 1)],
    "Scarlet_C": [(3, 5, 1), (3, 3, 1), (3, 5, 1), ID, ID, (3, 3, 0), (6, 7, 1), (3, 3, 1), (3, 3, 1), (3, 5, 0),
                  (3, 7, 1), (3, 7, 0), (3, 3, 1), (3, 7, 1), (3, 3, 1), ID, (6, 3, 1), (6, 7, 1), (6, 5, 1)],
}
OUT = [32, 32, 40, 40, 40, 40, 80, 80, 80, 80, 96, 96, 96, 96, 192, 192, 192, 192, 320]
STRIDE = [2, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
IN = [16] + OUT[:-1]


def _bn(prefix, c):
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def expected_layout(layers):
    sd = {"stem.0.weight": (32, 3, 3, 3), **_bn("stem.1", 32),
          "separable_conv.0.weight": (32, 1, 3, 3), **_bn("separable_conv.1", 32),
          "separable_conv.3.weight": (16, 32, 1, 1), **_bn("separable_conv.4", 16)}
    for i, spec in enumerate(layers):
        if spec is ID:
            continue
        e, k, se = spec
        cin, cout, hid, p = IN[i], OUT[i], IN[i] * e, f"mb_module.{i}"
        sd.update({f"{p}.conv1.weight": (hid, cin, 1, 1), **_bn(f"{p}.bn1", hid),
                   f"{p}.conv2.weight": (hid, 1, k, k), **_bn(f"{p}.bn2", hid),
                   f"{p}.conv3.weight": (cout, hid, 1, 1), **_bn(f"{p}.bn3", cout)})
        if se:
            sd.update({f"{p}.mid_se.squeeze_conv.weight": (hid // 4, hid, 1, 1),
                       f"{p}.mid_se.squeeze_conv.bias": (hid // 4,),
                       f"{p}.mid_se.excite_conv.weight": (hid, hid // 4, 1, 1),
                       f"{p}.mid_se.excite_conv.bias": (hid,)})
    sd.update({"conv_before_pooling.0.weight": (1280, 320, 1, 1), **_bn("conv_before_pooling.1", 1280),
               "classifier.weight": (1000, 1280), "classifier.bias": (1000,)})
    return sd


@pytest.fixture(scope="module")
def released():
    return {name: get_model(name) for name in RELEASED}


@pytest.mark.parametrize("name", list(RELEASED))
def test_state_dict_matches_released_layout(released, name):
    got = {k: tuple(v.shape) for k, v in released[name].state_dict().items()}
    want = expected_layout(RELEASED[name])
    assert sorted(got) == sorted(want)
    assert got == want


@pytest.mark.parametrize("name, absent", [("Scarlet_A", []), ("Scarlet_B", [8, 16]), ("Scarlet_C", [3, 4, 15])])
def test_identity_slots_hold_no_keys(released, name, absent):
    present = {int(k.split(".")[1]) for k in released[name].state_dict() if k.startswith("mb_module.")}
    assert present == set(range(19)) - set(absent)
    assert len(released[name].mb_module) == 19  # identity slots keep their index
    assert released[name].arch.depth == 19 - len(absent)


def test_published_architectures_match_the_released_model_file():
    for arch, name in [(SCARLET_A, "Scarlet_A"), (SCARLET_B, "Scarlet_B"), (SCARLET_C, "Scarlet_C")]:
        got = [None if b.is_identity else (b.expansion, b.kernel, int(b.se)) for b in arch.blocks]
        assert got == RELEASED[name]


def test_block_structure(released):
    model = released["Scarlet_A"]
    for i, block in enumerate(model.mb_module):
        e, k, se = RELEASED["Scarlet_A"][i]
        assert isinstance(block, InvertedResidual)
        assert block.conv2.kernel_size == (k, k) and block.conv2.stride == (STRIDE[i],) * 2
        assert block.conv2.padding == (k // 2,) * 2 and block.conv2.groups == IN[i] * e
        assert block.use_residual == (STRIDE[i] == 1 and IN[i] == OUT[i])
        assert all(c.bias is None for c in (block.conv1, block.conv2, block.conv3))
        assert (block.mid_se is not None) == bool(se)
    # no dropout in the released classifier; head and stem as released
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    assert isinstance(model.stem[2], torch.nn.ReLU6) and isinstance(model.conv_before_pooling[2], torch.nn.ReLU6)
    assert len(model.separable_conv) == 5  # dw conv, BN, ReLU6, pw conv, BN (no activation)


def _randomise_bn(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


def _reference_block(block, x):
    """The released block written with torch.nn.functional from its weights (eval-mode BN)."""
    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    def hswish(t):
        return t * torch.clamp(t + 3, 0, 6) / 6

    y = hswish(bn(F.conv2d(x, block.conv1.weight), block.bn1))
    k = block.conv2.weight.shape[-1]
    y = hswish(bn(F.conv2d(y, block.conv2.weight, stride=block.stride, padding=k // 2, groups=y.shape[1]),
                  block.bn2))
    if block.mid_se is not None:
        se = block.mid_se
        s = y.mean((2, 3), keepdim=True)
        s = torch.clamp(F.conv2d(s, se.squeeze_conv.weight, se.squeeze_conv.bias), min=0)
        s = F.conv2d(s, se.excite_conv.weight, se.excite_conv.bias)
        y = y * torch.clamp(s + 3, 0, 6) / 6
    y = bn(F.conv2d(y, block.conv3.weight), block.bn3)
    if x.shape == y.shape and block.stride == 1:
        y = y + x
    return y


@pytest.mark.parametrize("cin, cout, e, k, s, se", [
    (40, 40, 3, 7, 1, True),    # residual + SE (SCARLET-A layer 4)
    (80, 96, 3, 5, 1, False),   # channel change, no residual
    (96, 192, 6, 3, 2, True),   # stride 2 + SE
])
def test_block_forward_matches_functional_reference(cin, cout, e, k, s, se):
    gen = torch.Generator().manual_seed(1)
    block = InvertedResidual(cin, cout, e, k, s, se)
    init_weights(block, seed=3)
    _randomise_bn(block, gen)
    if se:  # non-zero SE biases so that they are exercised
        with torch.no_grad():
            block.mid_se.squeeze_conv.bias.normal_(0, 0.5, generator=gen)
            block.mid_se.excite_conv.bias.normal_(0, 0.5, generator=gen)
    block.eval()
    x = torch.randn(2, cin, 15, 15, generator=gen, dtype=torch.float64)
    block.double()
    with torch.no_grad():
        got, want = block(x), _reference_block(block, x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert block.use_residual == (s == 1 and cin == cout)


def test_se_reduction_on_expanded_width():
    block = InvertedResidual(40, 40, 6, 3, 1, True)
    assert block.hidden == 240
    assert block.mid_se.squeeze_conv.out_channels == 60 and block.mid_se.squeeze_conv.in_channels == 240
    assert block.mid_se.squeeze_conv.bias is not None and block.mid_se.excite_conv.bias is not None
    # the gate is hard-sigmoid of the excitation: with zero weights and bias b it scales by relu6(b+3)/6
    se = SqueezeExcite(8)
    with torch.no_grad():
        for c in (se.squeeze_conv, se.excite_conv):
            c.weight.zero_()
        se.excite_conv.bias.copy_(torch.linspace(-4, 4, 8))
    x = torch.ones(1, 8, 3, 3)
    gate = torch.clamp(torch.linspace(-4, 4, 8) + 3, 0, 6) / 6
    torch.testing.assert_close(se(x)[0, :, 0, 0], gate)


def test_released_forward_matches_blockwise_reference(released):
    """Whole-model forward = stem, separable conv, the blocks (reference), head, mean pool, classifier."""
    model = _randomise_bn(get_model("Scarlet_C"), torch.Generator().manual_seed(2)).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        y = model.separable_conv(model.stem(x))
        for block in model.mb_module:
            y = y if isinstance(block, Shortcut) else _reference_block(block, y)
        assert y.shape == (1, 320, 7, 7)
        y = model.conv_before_pooling(y).mean((2, 3))
        want = F.linear(y, model.classifier.weight, model.classifier.bias)
        got = model(x)
    assert got.shape == (1, 1000)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_init_statistics():
    model = build_model(SCARLET_A)
    w = model.conv_before_pooling[0].weight  # 1x1, 1280 outputs: std sqrt(2/1280)
    assert abs(w.std().item() / math.sqrt(2 / 1280) - 1) < 0.02 and abs(w.mean().item()) < 1e-3
    dw = torch.cat([b.conv2.weight.flatten() for b in model.mb_module if b.kernel == 7 and b.hidden == 120])
    # depthwise 7x7 on 120 channels: n = 7*7*120
    assert abs(dw.std().item() / math.sqrt(2 / (49 * 120)) - 1) < 0.1
    bound = 1 / math.sqrt(1000)
    lin = model.classifier.weight
    assert lin.abs().max().item() <= bound
    assert abs(lin.std().item() / (bound / math.sqrt(3)) - 1) < 0.02
    assert torch.count_nonzero(model.classifier.bias) == 0
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        if isinstance(m, SqueezeExcite):
            assert torch.count_nonzero(m.squeeze_conv.bias) == 0 and torch.count_nonzero(m.excite_conv.bias) == 0


def test_init_seeded_by_module_name():
    a, b = init_weights(get_model("Scarlet_B"), seed=7), init_weights(get_model("Scarlet_B"), seed=7)
    c = init_weights(get_model("Scarlet_B"), seed=8)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    # modules shared by name get the same weights whatever else the network holds
    d = init_weights(get_model("Scarlet_A"), seed=7)
    assert torch.equal(a.stem[0].weight, d.stem[0].weight)


@pytest.mark.parametrize("kwargs, size, feat", [
    (dict(small_input=True, num_classes=10), 32, (320, 2, 2)),
    (dict(num_classes=10, width_mult=0.5, small_input=True), 32, (160, 2, 2)),
    (dict(num_classes=7, width_mult=0.5), 224, (160, 7, 7)),
    (dict(num_classes=1000), 32, (320, 1, 1)),
])
def test_model_options_output_shapes(kwargs, size, feat):
    model = build_model(SCARLET_B, **kwargs).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert model.features(x).shape == (2, *feat)
        assert model(x).shape == (2, kwargs["num_classes"])
    assert model.classifier.in_features == 1280  # head kept at >= 1280 channels


def test_width_multiplier_scales_channels():
    half = build_model(SCARLET_A, width_mult=0.5)
    outs = [b.out_channels for b in half.mb_module]
    assert all(c % 8 == 0 for c in outs)
    assert outs[0] == 16 and outs[-1] == 160 and half.stem[0].out_channels == 16
    assert sum(p.numel() for p in half.parameters()) < sum(p.numel() for p in get_model("Scarlet_A").parameters())
    with pytest.raises(ValueError, match="width_mult"):
        build_model(SCARLET_A, width_mult=0)


def test_small_input_changes_only_stem_stride():
    small, full = build_model(SCARLET_C, small_input=True), build_model(SCARLET_C)
    assert small.stem[0].stride == (1, 1) and full.stem[0].stride == (2, 2)
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in full.state_dict().items()}


# ---------------------------------------------------------------- identity variants

def test_shortcut_shape_preserving_is_identity():
    x = torch.randn(2, 40, 9, 9)
    assert torch.equal(Shortcut(40, 40, 1)(x), x)
    assert sum(p.numel() for p in Shortcut(40, 40, 1).parameters()) == 0


@pytest.mark.parametrize("size", [8, 7, 56])
def test_shortcut_stride2_channel_change(size):
    x = torch.randn(2, 16, size, size)
    y = Shortcut(16, 32, 2)(x)
    # subsampling keeps every other pixel, the new channels are zero
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    # same spatial size as the other choices of that layer (k x k conv, padding k//2, stride 2)
    for k in (3, 5, 7):
        assert y.shape == InvertedResidual(16, 32, 3, k, 2, False)(x).shape


def test_shortcut_channel_change_stride1_and_reduction_refused():
    x = torch.randn(1, 80, 5, 5)
    y = Shortcut(80, 96, 1)(x)
    assert torch.equal(y[:, :80], x) and torch.count_nonzero(y[:, 80:]) == 0
    with pytest.raises(ValueError, match="cannot reduce channels"):
        Shortcut(96, 80, 1)


@pytest.mark.parametrize("cin, cout, s", [(40, 40, 1), (16, 32, 2), (80, 96, 1)])
def test_let_is_bias_free_linear_map(cin, cout, s):
    let = LET(cin, cout, s)
    assert [n for n, _ in let.named_parameters()] == ["conv.weight"]
    x = torch.randn(2, cin, 9, 9, dtype=torch.float64)
    let.double()
    w = let.conv.weight[:, :, 0, 0]
    want = torch.einsum("oc,nchw->nohw", w, x[:, :, ::s, ::s])
    torch.testing.assert_close(let(x), want, rtol=1e-12, atol=1e-12)
    # linear: LET(a x + b y) = a LET(x) + b LET(y)
    y = torch.randn_like(x)
    torch.testing.assert_close(let(2 * x - 3 * y), 2 * let(x) - 3 * let(y), rtol=1e-10, atol=1e-10)
    relu = LET(cin, cout, s, relu=True).double()
    relu.conv.weight.data.copy_(let.conv.weight)
    torch.testing.assert_close(relu(x), F.relu(want), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(relu(x), let(x))  # LET+ReLU is not linear


def test_make_choice_block_modes():
    assert isinstance(make_choice_block(12, 40, 40, 1), Shortcut)
    assert isinstance(make_choice_block(12, 40, 40, 1, "let"), LET)
    assert make_choice_block(12, 40, 40, 1, "let_relu").relu
    assert isinstance(make_choice_block(7, 40, 40, 1), InvertedResidual)
    with pytest.raises(ValueError, match="identity_mode"):
        make_choice_block(12, 40, 40, 1, "zero")
    let_model = get_model("Scarlet_B", identity_mode="let")
    sd = let_model.state_dict()
    assert sd["mb_module.8.conv.weight"].shape == (80, 80, 1, 1)
    assert sd["mb_module.16.conv.weight"].shape == (192, 192, 1, 1)


# ---------------------------------------------------------------- names and checkpoints

def test_get_model_names():
    assert get_model("scarlet-a").arch == SCARLET_A
    assert get_model("Scarlet_C", num_classes=10).classifier.out_features == 10
    with pytest.raises(ValueError, match=r"unknown model 'Scarlet_D'.*Scarlet_A"):
        get_model("Scarlet_D")


def _trained_like(name="Scarlet_B", seed=5):
    model = init_weights(get_model(name), seed=seed)
    return _randomise_bn(model, torch.Generator().manual_seed(seed)).eval()


@pytest.mark.parametrize("wrap", ["model_state", "bare", "dataparallel"])
def test_checkpoint_round_trip(tmp_path, wrap):
    src = _trained_like()
    sd = src.state_dict()
    if wrap == "model_state":
        obj = {"model_state": sd}
    elif wrap == "bare":
        obj = sd
    else:
        obj = {"model_state": {"module." + k: v for k, v in sd.items()}}
    path = tmp_path / "ScarletB.pth.tar"
    torch.save(obj, path)
    dst = load_checkpoint(get_model("Scarlet_B"), path).eval()
    for k, v in dst.state_dict().items():
        assert torch.equal(v, sd[k]), k
    x = torch.randn(2, 3, 64, 64)  # any size works: global pooling before the classifier
    with torch.no_grad():
        assert torch.equal(dst(x), src(x))


def test_checkpoint_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(get_model("Scarlet_A"), tmp_path / "nope.pth.tar")


def test_checkpoint_corrupt_and_truncated(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_state_dict(garbage)
    good = tmp_path / "good.pth"
    torch.save({"model_state": get_model("Scarlet_C").state_dict()}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(get_model("Scarlet_C"), truncated)


class NotATensor:
    """An arbitrary object: ``weights_only=True`` must refuse to unpickle it."""

    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"model_state": get_model("Scarlet_C").state_dict(), "extra": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(get_model("Scarlet_C"), path)
    assert "code ran" not in capsys.readouterr().out
    # a plain pickle file is not a torch file either
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"model_state": {}}))
    with pytest.raises(CheckpointError):
        read_state_dict(raw)


def test_checkpoint_non_tensor_values(tmp_path):
    path = tmp_path / "ints.pth"
    torch.save({"model_state": {"stem.0.weight": 3}}, path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(path)


def test_checkpoint_key_and_shape_errors_name_the_keys(tmp_path):
    sd = get_model("Scarlet_B").state_dict()
    # B's checkpoint into C: C lacks mb_module.16 etc. and has keys B lacks
    path = tmp_path / "b.pth"
    torch.save({"model_state": sd}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(get_model("Scarlet_C"), path)
    msg = str(info.value)
    assert "missing keys" in msg and "mb_module.8.conv1.weight" in msg  # C has layer 9, B does not
    assert "unexpected keys" in msg and "mb_module.3.conv1.weight" in msg  # B has layer 4, C does not
    assert "shape mismatches" in msg
    # a single missing key, a single extra key, a single wrong shape
    for edit, needle in [
        (lambda d: d.pop("classifier.bias"), "missing keys: classifier.bias"),
        (lambda d: d.__setitem__("extra.weight", torch.zeros(1)), "unexpected keys: extra.weight"),
        (lambda d: d.__setitem__("classifier.weight", torch.zeros(10, 1280)),
         "classifier.weight: checkpoint (10, 1280) vs model (1000, 1280)"),
    ]:
        d = dict(sd)
        edit(d)
        torch.save({"model_state": d}, path)
        with pytest.raises(CheckpointError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            load_checkpoint(get_model("Scarlet_B"), path)
