"""Kernel sets: every faster way of computing a conv equals the module itself, values and gradients."""
import pytest
import torch
from torch import nn

from scarlet_lib.blocks import LET, InvertedResidual, SqueezeExcite
from scarlet_lib.kernels import (DENSE_DEPTHWISE_MAX_PIXELS, KERNELS, dense_depthwise, depthwise_fast_grad,
                                 depthwise_weight_grad, get_kernels, pointwise_matmul, trimmed_depthwise)

CL = torch.channels_last



def _input(shape, channels_last=True, seed=0):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return (x.contiguous(memory_format=CL) if channels_last else x).requires_grad_()


def _assert_same_op(reference, candidate, conv, x):
    """Same output and same gradients for the input and every conv parameter."""
    want, got = reference(conv, x), candidate(conv, x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g = torch.randn(want.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    params = [x] + list(conv.parameters())
    for a, b in zip(torch.autograd.grad(want, params, g), torch.autograd.grad(got, params, g)):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    return got


@pytest.mark.parametrize("size", [1, 2, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("channels_last", [True, False])
def test_pointwise_matmul_equals_1x1_conv(size, stride, bias, channels_last):
    conv = nn.Conv2d(6, 10, 1, stride, bias=bias).double().to(memory_format=CL)
    x = _input((3, 6, size, size), channels_last)
    got = _assert_same_op(lambda c, t: c(t), pointwise_matmul, conv, x)
    if channels_last:  # stays in channels_last, so the next block's matmul is a view again
        assert got.is_contiguous(memory_format=CL)


def test_pointwise_matmul_rejects_other_convs():
    with pytest.raises(ValueError, match="1x1"):
        pointwise_matmul(nn.Conv2d(4, 4, 3, padding=1), torch.randn(1, 4, 3, 3))


@pytest.mark.parametrize("size,stride", [(1, 1), (2, 1), (2, 2), (3, 2), (4, 1), (6, 2)])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_trimmed_and_dense_depthwise_equal_conv(one_thread, size, stride, k):
    conv = nn.Conv2d(6, 6, k, stride, k // 2, groups=6, bias=False).double().to(memory_format=CL)
    x = _input((2, 6, size, size))
    _assert_same_op(lambda c, t: c(t), trimmed_depthwise, conv, x)
    _assert_same_op(lambda c, t: c(t), dense_depthwise, conv, x)  # exact at any size; used on tiny maps
    _assert_same_op(lambda c, t: c(t), KERNELS["fast"].depthwise, conv, x)


def test_fast_depthwise_chooses_dense_only_on_tiny_maps(monkeypatch):
    import scarlet_lib.kernels as kernels
    conv = nn.Conv2d(4, 4, 3, 1, 1, groups=4, bias=False).to(memory_format=CL)
    used = []
    real = kernels.dense_depthwise
    monkeypatch.setattr(kernels, "dense_depthwise", lambda c, x: used.append(x.shape[-1]) or real(c, x))
    for size in (1, 2, 3, 4):
        KERNELS["fast"].depthwise(conv, torch.randn(2, 4, size, size).contiguous(memory_format=CL))
    assert used == [s for s in (1, 2, 3, 4) if s * s <= DENSE_DEPTHWISE_MAX_PIXELS]


@pytest.mark.parametrize("kernels", ["trim", "fast", "fast_v1"])
@pytest.mark.parametrize("cin,cout,e,k,s,se,size", [
    (8, 8, 3, 7, 1, True, 2),   # residual + SE, 7x7 on a 2x2 map
    (8, 12, 6, 5, 2, False, 4),  # stride 2, channel change
    (12, 12, 6, 3, 1, True, 1),  # 1x1 map: depthwise is a per-channel scale
    (8, 8, 6, 5, 1, True, 6),  # 5x5 on a 6x6 map: the depthwise weight gradient by conv
])
def test_blocks_with_kernel_sets_equal_plain_blocks(one_thread, kernels, cin, cout, e, k, s, se, size):
    block = InvertedResidual(cin, cout, e, k, s, se).double().to(memory_format=CL)
    x = _input((3, cin, size, size))
    _assert_same_op(lambda b, t: b(t), lambda b, t: b(t, kernels=kernels), block, x)
    let = LET(cin, cout, s).double().to(memory_format=CL)
    _assert_same_op(lambda b, t: b(t), lambda b, t: b(t, kernels=kernels), let, x)
    sq = SqueezeExcite(cin).double().to(memory_format=CL)
    _assert_same_op(lambda b, t: b(t), lambda b, t: b(t, kernels=kernels), sq, x)


def test_unknown_kernel_set_is_named():
    with pytest.raises(ValueError, match=r"unknown kernels 'quick'.*'plain', 'trim', 'fast', 'fast_v1'"):
        get_kernels("quick")
    assert get_kernels(KERNELS["trim"]) is KERNELS["trim"]


@pytest.mark.parametrize("hw", [(3, 3), (4, 4), (5, 8), (8, 8)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_depthwise_weight_grad_equals_conv_weight_gradient(one_thread, hw, stride, k):
    conv = nn.Conv2d(5, 5, k, stride, k // 2, groups=5, bias=False).double().to(memory_format=CL)
    x = _input((3, 5) + hw)
    g = torch.randn(conv(x).shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    want = torch.autograd.grad(conv(x), conv.weight, g)[0]
    got = depthwise_weight_grad(x.detach(), g.contiguous(memory_format=CL), conv.kernel_size, conv.stride,
                                conv.padding)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size,stride", [(3, 1), (4, 1), (5, 2), (8, 1), (8, 2), (9, 2)])
@pytest.mark.parametrize("k", [5, 7])
@pytest.mark.parametrize("channels_last", [True, False])
def test_depthwise_with_fast_weight_grad_equals_conv_values_and_gradients(one_thread, size, stride, k,
                                                                          channels_last):
    conv = nn.Conv2d(4, 4, k, stride, k // 2, groups=4, bias=False).double().to(memory_format=CL)
    x = _input((2, 4, size, size), channels_last)
    _assert_same_op(lambda c, t: c(t), depthwise_fast_grad, conv, x)
    for name in ("fast", "fast_v1"):
        _assert_same_op(lambda c, t: c(t), KERNELS[name].depthwise, conv, x)


def test_fast_depthwise_computes_weight_grad_by_conv_only_for_kernels_above_3x3(monkeypatch):
    import scarlet_lib.kernels as kernels
    calls = []
    real = kernels.depthwise_weight_grad
    monkeypatch.setattr(kernels, "depthwise_weight_grad", lambda *a: calls.append(a[2]) or real(*a))
    for k, size in [(3, 8), (5, 8), (7, 4), (7, 2)]:  # 7x7 on a 2x2 map is trimmed to 3x3 (and dense)
        conv = nn.Conv2d(4, 4, k, 1, k // 2, groups=4, bias=False).to(memory_format=CL)
        x = torch.randn(2, 4, size, size).contiguous(memory_format=CL).requires_grad_()
        KERNELS["fast"].depthwise(conv, x).sum().backward()
    assert [tuple(s) for s in calls] == [(5, 5), (7, 7)]
    with torch.no_grad():  # nothing to differentiate: the plain trimmed conv
        KERNELS["fast"].depthwise(nn.Conv2d(4, 4, 5, 1, 2, groups=4, bias=False), torch.randn(2, 4, 8, 8))
    assert len(calls) == 2


def test_fast_depthwise_goes_dense_for_large_kernels_at_stride_2_on_tiny_maps(monkeypatch):
    import scarlet_lib.kernels as kernels
    used = []
    real = kernels.dense_depthwise
    monkeypatch.setattr(kernels, "dense_depthwise",
                        lambda c, x: used.append((c.kernel_size[0], x.shape[-1])) or real(c, x))
    for k, size in [(7, 4), (5, 3), (3, 4), (7, 8)]:
        conv = nn.Conv2d(4, 4, k, 2, k // 2, groups=4, bias=False).to(memory_format=CL)
        KERNELS["fast"].depthwise(conv, torch.randn(2, 4, size, size).contiguous(memory_format=CL))
        KERNELS["fast_v1"].depthwise(conv, torch.randn(2, 4, size, size).contiguous(memory_format=CL))
    assert used == [(7, 4), (5, 3)]  # 3x3 kernels keep oneDNN, 4x4 outputs are not tiny; fast_v1 never
