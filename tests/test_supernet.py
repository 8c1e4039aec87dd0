"""Supernet: shared weights across identity modes, paths vs extracted models, fused == sequential step."""
import copy

import pytest
import torch
from torch import nn

from scarlet_lib.space import IDENTITY, SPACE_NO_SE, SPACE_SE, ArchitectureError
from scarlet_lib.models import layer_shapes
from scarlet_lib.fair import fair_step, single_path_step
from scarlet_lib.supernet import Supernet

WIDTH = 0.25


def grads(net):
    return {n: p.grad for n, p in net.named_parameters()}



def test_identity_and_let_supernets_share_common_weights():
    ident = Supernet(SPACE_SE, "identity", WIDTH, seed=3).state_dict()
    let = Supernet(SPACE_SE, "let", WIDTH, seed=3).state_dict()
    common = set(ident) & set(let)
    assert set(ident) <= set(let) and len(set(let) - set(ident)) == 19  # one LET conv per layer extra
    assert all(torch.equal(ident[k], let[k]) for k in common)
    other = Supernet(SPACE_SE, "identity", WIDTH, seed=4).state_dict()
    assert not torch.equal(ident["layers.0.candidates.0.conv1.weight"], other["layers.0.candidates.0.conv1.weight"])


@pytest.mark.parametrize("mode", ["identity", "let"])
def test_path_forward_equals_extracted_model(one_thread, mode):
    net = Supernet(SPACE_SE, mode, WIDTH, seed=0, zero_init_residual=False).eval()
    x = torch.randn(4, 3, 32, 32)
    for arch in SPACE_SE.sample_fair(1)[:4]:
        model = net.extract(arch).eval()
        torch.testing.assert_close(net(x, arch), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("space", [SPACE_SE, SPACE_NO_SE], ids=["13", "7"])
@pytest.mark.parametrize("mode", ["identity", "let", "let_relu"])
@pytest.mark.parametrize("reduction", ["per_weight", "mean", "sum"])
def test_fused_step_equals_sequential(one_thread, space, mode, reduction):
    # ImageNet layout at 32x32 reaches 1x1, so every fast kernel is exercised (sequential: plain modules).
    # released init: with zero-initialised residual BNs, the residual branches' conv grads would be zero
    seq = Supernet(space, mode, WIDTH, small_input=False, seed=1, zero_init_residual=False).double()
    fused = copy.deepcopy(seq)
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    archs = space.sample_fair(2)
    a = fair_step(seq, x, y, archs, reduction=reduction, fused=False, kernels="plain")
    b = fair_step(fused, x, y, archs, reduction=reduction, fused=True, kernels="fast")
    torch.testing.assert_close(a["loss"], b["loss"])
    assert torch.equal(a["correct"], b["correct"])
    ga, gb = grads(seq), grads(fused)
    assert [n for n, g in ga.items() if g is None] == [n for n, g in gb.items() if g is None]
    for n in ga:
        if ga[n] is not None:
            torch.testing.assert_close(ga[n], gb[n], rtol=1e-7, atol=1e-9)
    # BN running statistics too (the stem's counted as m updates)
    for (n, ba), bb in zip(seq.named_buffers(), fused.buffers()):
        torch.testing.assert_close(ba, bb, rtol=1e-9, atol=1e-12)


def test_zero_init_residual_starts_residual_candidates_as_identity():
    net = Supernet(SPACE_SE, "let", WIDTH, seed=0)
    released = Supernet(SPACE_SE, "let", WIDTH, seed=0, zero_init_residual=False)
    residual = [(i, c) for i, layer in enumerate(net.layers) for c, b in layer.candidates.items()
                if getattr(b, "use_residual", False)]
    keep_shape = [cin == cout and stride == 1 for cin, cout, stride in layer_shapes(WIDTH)]
    assert sum(keep_shape) >= 13  # layers 2, 4-6, 8-10, 12-14, 16-18 (more where rounded widths meet)
    assert len(residual) == sum(keep_shape) * 12  # every inverted-residual choice of those layers
    for i, layer in enumerate(net.layers):
        for c, block in layer.candidates.items():
            if hasattr(block, "bn3"):
                want = 0.0 if (i, c) in residual else 1.0
                assert torch.all(block.bn3.weight == want)
                assert torch.all(released.layers[i].candidates[c].bn3.weight == 1.0)
    # a residual candidate is then the identity at init (eval mode: BN shift 0)
    block = net.layers[1][0].eval()
    x = torch.randn(2, block.in_channels, 8, 8)
    torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize("fused", [True, False])
def test_reduction_scales_gradients(one_thread, fused):
    net = Supernet(SPACE_NO_SE, "let", WIDTH, seed=0, zero_init_residual=False).double()
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    archs = SPACE_NO_SE.sample_fair(0)
    m = len(archs)
    by = {}
    for reduction in ("sum", "mean", "per_weight"):
        net.zero_grad()
        fair_step(net, x, y, archs, reduction=reduction, fused=fused)
        by[reduction] = grads(net)
    for name, g in by["sum"].items():
        torch.testing.assert_close(by["mean"][name], g / m)
        # per weight: shared layers average the m paths, a candidate (one path each) keeps its path's gradient
        torch.testing.assert_close(by["per_weight"][name], g if name.startswith("layers.") else g / m)
    # paths sharing a candidate (uniform sampling): it gets the mean over the paths that used it
    uniform = [archs[0], archs[0], archs[1]]
    for reduction in ("sum", "per_weight"):
        net.zero_grad()
        fair_step(net, x, y, uniform, reduction=reduction, fused=fused)
        by[reduction] = grads(net)
    for name, g in by["sum"].items():
        if g is None:
            continue
        users = 3  # shared layers: all three paths
        if name.startswith("layers."):
            i, c = int(name.split(".")[1]), int(name.split(".")[3])
            users = sum(a[i] == c for a in uniform)
        torch.testing.assert_close(by["per_weight"][name], g / users)
    assert all(not p._backward_hooks for p in net.parameters())  # the step's hooks are removed


def test_strict_fair_step_touches_every_candidate_once(one_thread):
    net = Supernet(SPACE_NO_SE, "let", WIDTH, seed=0)
    calls = {}
    for i, layer in enumerate(net.layers):
        for c, block in layer.candidates.items():
            block.register_forward_hook(lambda m, inp, out, key=(i, c): calls.__setitem__(key, calls.get(key, 0) + 1))
    fair_step(net, torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,)), SPACE_NO_SE.sample_fair(5))
    assert calls == {(i, str(c)): 1 for i in range(19) for c in SPACE_NO_SE.choices}
    assert all(p.grad is not None for p in net.parameters())  # every weight trained in one fair step


def test_single_path_step_matches_one_path_fair_step(one_thread):
    a = Supernet(SPACE_SE, "let", WIDTH, seed=0).double()
    b = copy.deepcopy(a)
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (4,))
    arch = SPACE_SE.sample_uniform(0)
    ra = single_path_step(a, x, y, arch)
    rb = fair_step(b, x, y, [arch], fused=True)
    torch.testing.assert_close(ra["loss"], rb["loss"])
    torch.testing.assert_close(a.classifier.weight.grad, b.classifier.weight.grad)
    unused = [n for n, p in a.named_parameters() if p.grad is None]
    assert unused and all(n.startswith("layers.") for n in unused)


def test_bad_inputs_raise_clear_errors():
    net = Supernet(SPACE_NO_SE, "let", WIDTH)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    with pytest.raises(ArchitectureError, match="not in this space"):
        net(x, [1] * 19)  # choice 1 has SE: not in the 7-choice space
    with pytest.raises(ArchitectureError, match="19"):
        net(x, [0] * 18)
    with pytest.raises(ValueError, match="reduction must be one of .*per_weight"):
        fair_step(net, x, y, SPACE_NO_SE.sample_fair(0), reduction="avg")
    with pytest.raises(ValueError, match="non-empty list"):
        fair_step(net, x, y, [])
    with pytest.raises(ValueError, match="batch size"):
        fair_step(net, x, y[:1], SPACE_NO_SE.sample_fair(0))
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        net(torch.randn(3, 32, 32), [0] * 19)
    with pytest.raises(ValueError, match="1..19"):
        net.capture_features(x, [0] * 19, layers=(0, 20))


def test_capture_features_shapes_and_one_pass():
    x = torch.randn(2, 3, 32, 32)
    arch = [IDENTITY] + [0] * 14 + [IDENTITY] + [0] * 3  # identity at channel-changing layer 1
    ident = Supernet(SPACE_SE, "identity", 0.5, seed=0).eval()
    let = Supernet(SPACE_SE, "let", 0.5, seed=0).eval()
    cin, cout = ident.layers[0].in_channels, ident.layers[0].out_channels
    f = ident.capture_features(x, arch, layers=(1, 15))
    assert set(f) == {1, 15}
    assert f[1].shape == (2, cout, 16, 16) and f[15].shape[1] == ident.layers[14].out_channels
    stem = ident.stem_forward(x)
    torch.testing.assert_close(f[1][:, :cin], stem[:, :, ::2, ::2])  # input channels kept
    assert torch.count_nonzero(f[1][:, cin:]) == 0  # zero pad
    g = let.capture_features(x, arch, layers=(1,))
    assert g[1].shape == f[1].shape and torch.count_nonzero(g[1][:, cin:]) > 0
    torch.testing.assert_close(f[15], ident(x, arch, upto=15))


@pytest.mark.parametrize("space", [SPACE_NO_SE, SPACE_SE], ids=["7", "13"])
@pytest.mark.parametrize("mode", ["identity", "let", "let_relu"])
def test_fused_fast_step_equals_plain_sequential_step_in_the_small_input_layout(one_thread, space, mode):
    # the cpu profile's layout (stem stride 1): at 16x16 the maps are 16, 8, 4, 2 and 1 pixels wide, so the
    # depthwise weight gradient by conv (5x5 / 7x7, stride 1 and 2), dense maps, oneDNN's 3x3 gradient and
    # the stacked head all run
    seq = Supernet(space, mode, WIDTH, small_input=True, seed=2, zero_init_residual=False).double()
    fused = copy.deepcopy(seq)
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.randint(0, 10, (4,))
    archs = space.sample_fair(3)
    a = fair_step(seq, x, y, archs, fused=False, kernels="plain")
    b = fair_step(fused, x, y, archs, fused=True, kernels="fast")
    torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-12, atol=1e-12)
    assert torch.equal(a["correct"], b["correct"])
    for (n, p), q in zip(seq.named_parameters(), fused.parameters()):
        assert (p.grad is None) == (q.grad is None), n
        if p.grad is not None:  # float64 rounding of sums in another order, relative to the tensor's scale
            scale = max(1.0, p.grad.abs().max().item())
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-11 * scale, msg=n)
    for (n, ba), bb in zip(seq.named_buffers(), fused.buffers()):
        torch.testing.assert_close(bb, ba, rtol=1e-12, atol=1e-14, msg=n)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("state", ["train", "eval", "untracked"])
def test_per_path_batch_norm_equals_one_bn_call_per_path_in_path_order(momentum, state):
    from scarlet_lib.fair import _per_path_batch_norm

    m, c = 3, 5
    bn = nn.BatchNorm2d(c, momentum=momentum, track_running_stats=state != "untracked").double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
        if state != "untracked":
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.num_batches_tracked.fill_(4)
    bn.train(state != "eval")
    ref = copy.deepcopy(bn)
    x = torch.randn(6, m * c, 3, 2, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    want = torch.cat([ref(block) for block in x.split(c, 1)], 1)
    got = _per_path_batch_norm(bn, x, m)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    for (n, a), b in zip(ref.named_buffers(), bn.buffers()):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14, msg=n)
