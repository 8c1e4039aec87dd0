"""LET algebra: the paper's Lemmas 1 and 2 as folding functions, checked with numbers.

A LET is linear (a 1x1 conv, no bias, BN or activation), so the layer after it can absorb it: ``fold_fc``
(Lemma 1), ``fold_conv`` (Lemma 2, per kernel offset; ``fold_conv_printed`` is the paper's formula as printed,
which is wrong for k > 1), with strides and zero padding handled in ``let_then_conv`` /
``folded_conv_on_input``. ``lemma_checks``, ``bias_border_check`` and ``let_relu_counterexample`` measure where
the equivalence holds and where it stops holding. The derivation: ``docs/let_algebra.md``.
"""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fold_fc", "fold_conv", "fold_conv_printed", "let_then_conv", "folded_conv_on_input", "lemma_checks",
           "let_relu_counterexample", "bias_border_check"]


def _as_matrix(let_weight: torch.Tensor, name: str = "let_weight") -> torch.Tensor:
    """A LET weight as an ``out x in`` matrix (accepts ``(out, in)`` or a 1x1 conv's ``(out, in, 1, 1)``)."""
    if let_weight.dim() == 4 and let_weight.shape[2:] == (1, 1):
        return let_weight[:, :, 0, 0]
    if let_weight.dim() == 2:
        return let_weight
    raise ValueError(f"{name} must be a matrix (out, in) or a 1x1 conv weight (out, in, 1, 1); "
                     f"got shape {tuple(let_weight.shape)}")


def fold_fc(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """Lemma 1: ``FC(w1)`` then ``FC(w2)`` is one ``FC(w2 @ w1)``.

    Weights are in torch's ``out x in`` convention: ``w1`` is ``c_l x c_{l-1}``, ``w2`` is ``m x c_l``,
    the result ``m x c_{l-1}``. (The paper's ``W3 = W1 W2`` is the transpose, for row vectors.)
    1x1 conv weights ``(out, in, 1, 1)`` are accepted and give a matrix.
    """
    a, b = _as_matrix(w1, "w1"), _as_matrix(w2, "w2")
    if b.shape[1] != a.shape[0]:
        raise ValueError(f"cannot fold: first FC gives {a.shape[0]} features but the second expects "
                         f"{b.shape[1]} (w1 {tuple(a.shape)}, w2 {tuple(b.shape)}; both out x in)")
    return b @ a


def _check_conv_pair(let_weight, conv_weight):
    w1 = _as_matrix(let_weight)
    if conv_weight.dim() != 4:
        raise ValueError(f"conv_weight must be a conv kernel (out, in, kh, kw); got shape {tuple(conv_weight.shape)}")
    if conv_weight.shape[1] != w1.shape[0]:
        raise ValueError(
            f"cannot fold: the LET gives {w1.shape[0]} channels but the conv takes {conv_weight.shape[1]} "
            "(a grouped/depthwise conv cannot absorb a dense LET; fold into a dense conv)")
    return w1


def fold_conv(let_weight: torch.Tensor, conv_weight: torch.Tensor) -> torch.Tensor:
    """Lemma 2: a bias-free 1x1 conv (``c_{l-1} -> c_l``) then a kxk conv (``c_l -> m``) as one kxk conv.

    ``W3[m, u, q, r] = sum_p W2[m, p, q, r] W1[p, u]`` for every kernel offset pair ``(q, r)``.
    Exact with zero padding, and with a strided kxk conv; if the LET itself is strided, apply the
    result to the subsampled input (see :func:`folded_conv_on_input`).
    """
    w1 = _check_conv_pair(let_weight, conv_weight)
    return torch.einsum("mpqr,pu->muqr", conv_weight, w1)


def fold_conv_printed(let_weight: torch.Tensor, conv_weight: torch.Tensor) -> torch.Tensor:
    """Lemma 2 read as printed, with one kernel offset ``q`` (the diagonal ``W3[:, :, q, q]``); off-diagonal taps 0.

    Kept only to show that it is wrong for k > 1 (it agrees with :func:`fold_conv` for k = 1).
    """
    w1 = _check_conv_pair(let_weight, conv_weight)
    k = min(conv_weight.shape[2:])
    diag = torch.zeros(conv_weight.shape[2:], dtype=torch.bool, device=conv_weight.device)
    diag[torch.arange(k), torch.arange(k)] = True
    return torch.einsum("mpqr,pu->muqr", conv_weight * diag, w1)


def let_then_conv(x, let_weight, conv_weight, let_stride: int = 1, conv_stride: int = 1, let_bias=None,
                  relu: bool = False):
    """The unfolded pair: LET (1x1 conv, optional bias / ReLU) with ``let_stride``, then the kxk conv, padding k//2."""
    w1 = _as_matrix(let_weight)
    y = F.conv2d(x, w1[:, :, None, None], let_bias, stride=let_stride)
    if relu:
        y = F.relu(y)
    return F.conv2d(y, conv_weight, stride=conv_stride, padding=conv_weight.shape[-1] // 2)


def folded_conv_on_input(x, folded_weight, let_stride: int = 1, conv_stride: int = 1, form: str = "subsample"):
    """Apply a folded kernel so that it equals :func:`let_then_conv`, or a naive form that does not.

    ``form``: ``"subsample"`` (conv with ``conv_stride`` on ``x[:, :, ::let_stride, ::let_stride]``; exact),
    ``"dilated"`` (one conv on ``x`` with dilation ``let_stride`` and stride ``let_stride * conv_stride``;
    exact), ``"plain"`` (one ordinary kxk conv on ``x`` with stride ``let_stride * conv_stride``; exact
    only when ``let_stride == 1`` or k == 1).
    """
    k = folded_weight.shape[-1]
    if form == "subsample":
        xs = x[:, :, ::let_stride, ::let_stride]
        return F.conv2d(xs, folded_weight, stride=conv_stride, padding=k // 2)
    if form == "dilated":
        return F.conv2d(x, folded_weight, stride=let_stride * conv_stride, padding=let_stride * (k // 2),
                        dilation=let_stride)
    if form == "plain":
        return F.conv2d(x, folded_weight, stride=let_stride * conv_stride, padding=k // 2)
    raise ValueError(f"unknown form {form!r}; accepted: 'subsample', 'dilated', 'plain'")


def _rel_error(ref: torch.Tensor, other: torch.Tensor) -> float:
    """max |ref - other| / max |ref| (inf where the shapes differ: a different map altogether)."""
    if ref.shape != other.shape:
        return math.inf
    return float((ref - other).abs().max() / ref.abs().max().clamp_min(torch.finfo(ref.dtype).tiny))


def _strided_name(let_stride: int, conv_stride: int) -> str:
    return {(1, 1): "none", (1, 2): "conv", (2, 1): "let", (2, 2): "both"}[(let_stride, conv_stride)]


def lemma_checks(dtype: torch.dtype = torch.float64, seed: int = 0, kernel_sizes: Sequence[int] = (1, 3, 5, 7),
                 strides: Sequence[int] = (1, 2), channels: tuple[int, int, int] = (5, 6, 4),
                 spatial: tuple[int, int] = (13, 10), batch: int = 2, tol: float = 1e-12,
                 device: str | torch.device = "cpu") -> pd.DataFrame:
    """Relative error of every fold against the unfolded layers, on random weights and inputs.

    One row per (lemma, form, kernel, let_stride, conv_stride). Columns: ``lemma`` (1 or 2), ``form``
    (which folded formula / way of applying it), ``kernel``, ``let_stride``, ``conv_stride``, ``strided``
    (which conv is strided: none / conv / let / both), ``rel_error`` (max abs difference over max abs
    output), ``expected_exact`` (what the math says), ``exact`` (``rel_error <= tol``) and ``as_expected``.
    A spatial size with an odd side (13 x 10 by default) exercises the borders and uneven subsampling.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)

    c0, c1, m = channels
    rows = []

    # Lemma 1: FC then FC (and the paper's row-vector notation, which is the transpose).
    w1, w2, xv = rand(c1, c0), rand(m, c1), rand(8, c0)
    ref = F.linear(F.linear(xv, w1), w2)
    w3 = fold_fc(w1, w2)
    rows.append(dict(lemma=1, form="torch: W3 = W2 @ W1", rel_error=_rel_error(ref, F.linear(xv, w3)),
                     expected_exact=True))
    paper_w1, paper_w2 = w1.T, w2.T  # paper: c_{l-1} x c_l and c_l x m, acting on row vectors
    rows.append(dict(lemma=1, form="paper: x W1 W2 = x (W1 W2)", rel_error=_rel_error(ref, xv @ (paper_w1 @ paper_w2)),
                     expected_exact=True))

    # Lemma 2: 1x1 conv then kxk conv, all strides.
    x = rand(batch, c0, *spatial)
    for k in kernel_sizes:
        for ls in strides:
            for cs in strides:
                w1, w2 = rand(c1, c0), rand(m, c1, k, k)
                ref = let_then_conv(x, w1, w2, ls, cs)
                good, printed = fold_conv(w1, w2), fold_conv_printed(w1, w2)
                cases = [
                    ("double sum, on x[::s_let]", good, "subsample", True),
                    ("double sum, dilated conv on x", good, "dilated", True),
                    ("double sum, plain kxk conv on x", good, "plain", ls == 1 or k == 1),
                    ("printed diagonal, on x[::s_let]", printed, "subsample", k == 1),
                ]
                for form, w, how, expected in cases:
                    out = folded_conv_on_input(x, w, ls, cs, form=how)
                    rows.append(dict(lemma=2, form=form, kernel=k, let_stride=ls, conv_stride=cs,
                                     strided=_strided_name(ls, cs), rel_error=_rel_error(ref, out),
                                     expected_exact=expected))
    df = pd.DataFrame(rows).astype({"kernel": "Int64", "let_stride": "Int64", "conv_stride": "Int64"})
    df["exact"] = df["rel_error"] <= tol
    df["as_expected"] = df["exact"] == df["expected_exact"]
    return df


def let_relu_counterexample() -> pd.DataFrame:
    """A LET followed by ReLU cannot be folded: a concrete 1 -> 2 -> 1 example.

    ``W1 = [[1], [-1]]`` (one channel to two), ReLU, ``W2 = [[1, 1]]`` (two back to one) computes
    ``relu(x) + relu(-x) = |x|``. The would-be fold ``W2 W1 = 0`` gives 0, and no linear map can give
    ``|x|`` (it would have to send both 1 and -1 to 1). Rows: input ``x``, the LET+ReLU output, the folded
    output, the error.
    """
    w1 = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    w2 = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    xs = torch.tensor([[-2.0], [-1.0], [0.0], [0.5], [1.0]], dtype=torch.float64)
    with_relu = F.linear(F.relu(F.linear(xs, w1)), w2)[:, 0]
    folded = F.linear(xs, fold_fc(w1, w2))[:, 0]
    linear = F.linear(F.linear(xs, w1), w2)[:, 0]
    return pd.DataFrame({"x": xs[:, 0].numpy(), "let_relu_path": with_relu.numpy(), "linear_let_path": linear.numpy(),
                         "folded": folded.numpy(), "error_with_relu": (with_relu - folded).abs().numpy(),
                         "error_linear": (linear - folded).abs().numpy()})


def bias_border_check(kernel: int = 3, shift: str = "bias", seed: int = 0, dtype: torch.dtype = torch.float64,
                      channels: tuple[int, int, int] = (5, 6, 4), spatial: int = 9) -> pd.DataFrame:
    """A LET with a bias (or followed by an eval-mode BatchNorm) is not exactly foldable at zero-padded borders.

    The best fold is ``W3 = fold_conv(W1, W2)`` plus a constant ``b3[m] = sum_{p,q,r} W2[m,p,q,r] b[p]``.
    Inside the image that is exact; at the border the unfolded conv sees zero padding where the fold
    assumed ``b``. ``shift="bn"`` uses ``BN(W1 x)`` in eval mode, which is ``(g/s) W1 x + (beta - g mu / s)``:
    the scale folds, the shift is a bias. Rows: region (interior / border), max abs error, max abs output.
    """
    if shift not in ("bias", "bn"):
        raise ValueError(f"shift must be 'bias' or 'bn', got {shift!r}")
    gen = torch.Generator().manual_seed(seed)
    c0, c1, m = channels
    w1 = torch.randn(c1, c0, generator=gen, dtype=torch.float64)
    w2 = torch.randn(m, c1, kernel, kernel, generator=gen, dtype=torch.float64)
    x = torch.randn(2, c0, spatial, spatial, generator=gen, dtype=torch.float64)
    if shift == "bias":
        bias = torch.randn(c1, generator=gen, dtype=torch.float64)
        ref = let_then_conv(x, w1, w2, let_bias=bias)
    else:
        bn = nn.BatchNorm2d(c1).double().eval()
        with torch.no_grad():
            bn.running_mean.copy_(torch.randn(c1, generator=gen, dtype=torch.float64))
            bn.running_var.copy_(torch.rand(c1, generator=gen, dtype=torch.float64) + 0.5)
            bn.weight.copy_(torch.rand(c1, generator=gen, dtype=torch.float64) + 0.5)
            bn.bias.copy_(torch.randn(c1, generator=gen, dtype=torch.float64))
            ref = F.conv2d(bn(F.conv2d(x, w1[:, :, None, None])), w2, padding=kernel // 2)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w1 = scale[:, None] * w1
            bias = bn.bias - scale * bn.running_mean
    w3 = fold_conv(w1, w2)
    b3 = torch.einsum("mpqr,p->m", w2, bias)
    ref, out = ref.to(dtype), F.conv2d(x, w3, b3, padding=kernel // 2).to(dtype)
    err = (ref - out).abs()
    p = kernel // 2
    interior = torch.zeros(spatial, spatial, dtype=torch.bool)
    interior[p:spatial - p, p:spatial - p] = True
    rows = []
    for region, mask in (("interior", interior), ("border", ~interior)):
        if mask.any():
            rows.append(dict(shift=shift, kernel=kernel, region=region, pixels=int(mask.sum()),
                             max_abs_error=float(err[..., mask].max()), max_abs_output=float(ref[..., mask].abs().max())))
    return pd.DataFrame(rows)
