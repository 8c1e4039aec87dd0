"""LET algebra: why a linearly equivalent transformation can be folded away, checked with numbers.

The paper's LET replaces an identity choice by a learnable ``W x`` (a 1x1 conv, no bias, no BN, no
activation). Because it is linear, the layer after it can absorb it: two linear maps in a row are one
linear map. This module writes that down as small folding functions, checks each claim numerically
(float64, random weights and inputs), and shows where the claim stops holding.

The two lemmas, in plain words
------------------------------
* **Lemma 1 (FC then FC).** ``y = W2 (W1 x) = (W2 W1) x``. In torch's convention a weight is
  ``out x in`` and acts on column vectors, so the folded weight is ``W3 = W2 @ W1``
  (:func:`fold_fc`). The paper writes row vectors (``y = x W1 W2`` with ``W1: c_{l-1} x c_l``), so its
  ``W3 = W1 W2`` is the transpose of the same matrix: ``(W2 W1)^T = W1^T W2^T``.
* **Lemma 2 (1x1 conv then kxk conv).** A 1x1 conv is Lemma 1 applied at every pixel. The kxk conv
  then sums, over every kernel offset ``(q, r)``, its weight slice ``W2[:, :, q, r]`` times the
  1x1-transformed input shifted by that offset. Each such term is FC-then-FC, so it folds
  to ``W2[:, :, q, r] @ W1``. Hence the folded kernel is, for *every* offset pair ``(q, r)``::

      W3[m, u, q, r] = sum_p W2[m, p, q, r] * W1[p, u]         (fold_conv)

  a sum over the middle channels ``p`` done separately at each of the k*k offsets. The formula as
  printed in the paper indexes the kernel with a single offset (only the diagonal ``q == r``); that
  reading (:func:`fold_conv_printed`) is wrong for k > 1, and :func:`lemma_checks` shows it.
  Zero padding is harmless: the 1x1 conv maps a zero pixel to a zero pixel, so padding before or after
  it is the same. A *bias* (or a BatchNorm shift) breaks this at the border (:func:`bias_border_check`),
  and a ReLU after the LET breaks it everywhere (:func:`let_relu_counterexample`).

Stride (which conv is strided matters)
--------------------------------------
* LET with stride 1, kxk conv with stride s: exactly one kxk conv with stride s and the folded kernel.
* LET with stride 2, then a kxk conv: the LET first keeps every other pixel, so the result is the
  folded kxk conv applied to ``x[:, :, ::2, ::2]``; on ``x`` itself that is a kxk conv with *dilation 2*
  and stride ``2 s`` (taps 2 pixels apart), **not** a plain kxk conv on ``x`` (except for k = 1).

Whole networks
--------------
:func:`fold_network` turns a ``ScarletNet`` whose identity slots hold LET layers (e.g.
``Supernet.extract`` of a LET supernet) into the LET-free stand-alone model that
``ScarletNet(arch, identity_mode="identity")`` builds (paper Figure 2, right): each run of consecutive
LETs is combined by Lemma 1 and folded into the first 1x1 conv of its consumer (the next block's
``conv1``, or ``conv_before_pooling``). Where the identity slot subsamples or adds channels, the
stand-alone model's parameter-free ``Shortcut`` (subsample + zero-pad) stands in its place, and the
folded conv gets zero columns for the padded channels. This is exact *unless the consumer adds a
residual of its own input*: then the LET network computes ``Wx + F(Wx)`` but the LET-free one
``x + F(x)`` (with ``F`` already holding the fold). That is the case for every identity slot of
SCARLET-B and SCARLET-C, so "simply drop the LET" (``mode="drop"``, the paper's Figure 2) is an
approximation there, while ``mode="exact"`` moves ``W`` onto the shortcut as a 1x1 projection.

What holds for the published models: every LET run of SCARLET-B (layers 9 and 17) and SCARLET-C
(layers 4-5 and 16) feeds a stride-1, in == out block with its own residual, so none of them folds
exactly by dropping. The Figure 3 model has three runs: layer 5 and layers 9-13 (which passes the
80 -> 96 channel change at layer 11) feed residual blocks; layers 17-18 feed layer 19 (192 -> 320, no
residual) and fold exactly. The exact projection costs as many parameters and MAdds as the LET it
replaces (``in*out`` per pixel), so folding buys nothing in cost there; it only shows the
equivalence. Dropping is exact for any consumer if the LET equals the Shortcut's own map
(``W = [I; 0]``, the identity).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .blocks import LET, InvertedResidual, Shortcut
from .models import FIGURE3_ARCH, SCARLET_B, SCARLET_C, ScarletNet, init_weights

__all__ = [
    "fold_fc", "fold_conv", "fold_conv_printed", "let_then_conv", "folded_conv_on_input", "lemma_checks",
    "let_relu_counterexample", "bias_border_check", "LetRun", "find_let_runs", "fold_network",
    "InvertedResidualWithProjection", "set_let_weights_", "make_let_weight", "LET_WEIGHT_KINDS",
    "output_error", "drop_error_study", "residual_counterexample", "FOLD_MODES",
]

FOLD_MODES = ("drop", "exact")
LET_WEIGHT_KINDS = ("identity", "near_identity", "random", "trained_like")


# ---------------------------------------------------------------------------------------------------
# Lemma 1 and Lemma 2
# ---------------------------------------------------------------------------------------------------

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


def lemma_checks(dtype: torch.dtype = torch.float64, seed: int = 0, kernels: Sequence[int] = (1, 3, 5, 7),
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
    for k in kernels:
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


# ---------------------------------------------------------------------------------------------------
# Whole-network folding
# ---------------------------------------------------------------------------------------------------

@dataclass
class LetRun:
    """A run of consecutive LET slots of a ``ScarletNet`` and the layer that consumes its output.

    ``slots`` are 0-based ``mb_module`` indices; ``consumer`` is ``"mb_module.{j}"`` or
    ``"conv_before_pooling"``; ``weight`` is the combined ``out x in`` matrix (Lemma 1 over the run)
    and ``stride`` the product of the slot strides.
    """

    slots: tuple[int, ...]
    in_channels: int
    out_channels: int
    stride: int
    weight: torch.Tensor
    consumer: str
    consumer_residual: bool

    @property
    def layers(self) -> str:
        """The run's 1-based layer numbers as the paper counts them ("9" or "9-13")."""
        a, b = self.slots[0] + 1, self.slots[-1] + 1
        return str(a) if a == b else f"{a}-{b}"


def _check_let_model(model) -> None:
    if not isinstance(model, ScarletNet):
        raise TypeError(f"fold_network needs a models.ScarletNet, got {type(model).__name__}")
    if model.identity_mode != "let":
        hint = (" (LET followed by ReLU is not linear and cannot be folded; see let_relu_counterexample)"
                if model.identity_mode == "let_relu" else " (it has no LET layers to fold)")
        raise ValueError(f"fold_network needs a model built with identity_mode='let', got "
                         f"{model.identity_mode!r}{hint}")


@torch.no_grad()
def find_let_runs(model: ScarletNet) -> list[LetRun]:
    """The runs of consecutive LET slots of a LET-mode ``ScarletNet``, each with its combined weight and consumer."""
    _check_let_model(model)
    blocks = list(model.mb_module)
    runs, i = [], 0
    while i < len(blocks):
        if not isinstance(blocks[i], LET):
            i += 1
            continue
        start, weight, stride = i, None, 1
        while i < len(blocks) and isinstance(blocks[i], LET):
            conv = blocks[i].conv
            w = _as_matrix(conv.weight)
            weight = w.clone() if weight is None else fold_fc(weight, w)
            stride *= conv.stride[0]
            i += 1
        if i < len(blocks):
            consumer, residual = f"mb_module.{i}", bool(blocks[i].use_residual)
        else:
            consumer, residual = "conv_before_pooling", False
        runs.append(LetRun(tuple(range(start, i)), blocks[start].conv.in_channels, blocks[i - 1].conv.out_channels,
                           stride, weight, consumer, residual))
    return runs


class InvertedResidualWithProjection(InvertedResidual):
    """An inverted residual whose shortcut is a 1x1 projection: ``P x + F(x)`` instead of ``x + F(x)``.

    Built from an existing residual block (same ``conv1 ... bn3`` weights) and the projection matrix
    ``P`` (``out x in``). Extra key: ``shortcut.weight``.
    """

    def __init__(self, block: InvertedResidual, projection: torch.Tensor):
        if not block.use_residual:
            raise ValueError("a projection shortcut replaces an existing residual; this block has none")
        super().__init__(block.in_channels, block.out_channels, block.expansion, block.kernel, block.stride,
                         block.mid_se is not None, hidden=block.hidden)
        ref = block.conv1.weight
        self.to(device=ref.device, dtype=ref.dtype)
        self.load_state_dict(block.state_dict(), strict=True)
        self.train(block.training)
        self.use_residual = False  # the parent's forward then returns F(x) alone
        self.shortcut = nn.Conv2d(block.in_channels, block.out_channels, 1, bias=False).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            self.shortcut.weight.copy_(_as_matrix(projection)[:, :, None, None])

    def forward(self, x):
        return self.shortcut(x) + super().forward(x)

    def extra_repr(self):
        return super().extra_repr().replace("residual=False", "residual=1x1 projection")


def _embed_columns(matrix: torch.Tensor, width: int) -> torch.Tensor:
    """``[matrix, 0]``: the map on the zero-padded input that the parameter-free Shortcut produces.

    The Shortcut keeps the slot's ``in`` channels first and appends zero channels, so the columns that
    meet padded channels never see anything but zeros; we set them to zero.
    """
    out = matrix.new_zeros(matrix.shape[0], width)
    out[:, : matrix.shape[1]] = matrix
    return out


def _consumer_input_size(model: ScarletNet, run: LetRun, input_size: int) -> tuple[int, int]:
    """Spatial size at the consumer's input for a square image (every reduction maps h to ceil(h / 2))."""
    h = input_size if model.small_input else -(-input_size // 2)
    for block in list(model.mb_module)[: run.slots[-1] + 1]:
        stride = block.conv.stride[0] if isinstance(block, LET) else block.stride
        h = -(-h // stride)
    return h, h


def _example_input(model: ScarletNet, seed: int) -> torch.Tensor:
    p = next(model.parameters())
    size = 16 if model.small_input else 64
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, size, size, generator=gen, dtype=torch.float64).to(device=p.device, dtype=p.dtype)


def _module(model: ScarletNet, name: str) -> nn.Module:
    return model.get_submodule(name)


@torch.no_grad()
def _local_errors(model: ScarletNet, folded: ScarletNet, runs: Sequence[LetRun], x: torch.Tensor):
    """Per run: error at the consumer's output when both networks get the same input at the run's start.

    The LET network's own activation before the run is fed to both sides, so each error belongs to that
    fold alone (errors of earlier runs do not leak in).
    """
    captured = {}
    hooks = [model.mb_module[r.slots[0]].register_forward_pre_hook(
        lambda mod, args, key=r.slots[0]: captured.__setitem__(key, args[0])) for r in runs]
    try:
        model.features(x)
    finally:
        for h in hooks:
            h.remove()
    out = []
    for r in runs:
        a = b = captured[r.slots[0]]
        for i in r.slots:
            a, b = model.mb_module[i](a), folded.mb_module[i](b)
        a, b = _module(model, r.consumer)(a), _module(folded, r.consumer)(b)
        err = (a - b).abs().max()
        out.append((float(err), float(err / a.abs().max().clamp_min(torch.finfo(a.dtype).tiny))))
    return out


@torch.no_grad()
def fold_network(model: ScarletNet, mode: str = "drop", example_input: torch.Tensor | None = None,
                 madds_input_size: int | None = None, seed: int = 0) -> tuple[ScarletNet, pd.DataFrame]:
    """Fold every LET of a LET-mode ``ScarletNet`` into its consumer; return the LET-free model and a report.

    The result has the module layout of ``ScarletNet(arch, identity_mode="identity")``: identity slots are
    parameter-free ``Shortcut`` modules (subsample + zero-pad where the slot changes shape) and the consumer's
    first 1x1 conv holds ``[C @ W, 0]`` (``C`` its own weight, ``W`` the run's combined LET, zero columns for
    padded channels), so hidden widths, parameters and MAdds are those of the builder.

    Modes (``FOLD_MODES``):
        ``"drop"``: the paper's LET-free model (Figure 2, right). Exact where the consumer has no residual of
            its own input; where it has one (stride 1, in == out), the LET network computes ``Wx + F(Wx)``
            and this one ``x + F(Wx)`` -- an approximation, exact only if ``W`` is the Shortcut's own map.
        ``"exact"``: as "drop", but a residual consumer becomes an ``InvertedResidualWithProjection`` whose
            shortcut applies ``[W, 0]``; exact always, at ``in*out`` extra parameters and ``in*out*H*W``
            extra MAdds per such run (as many as the LET itself; listed in the report).

    ``example_input`` (default: one random image, 16x16 for ``small_input`` models, else 64x64) is used for
    the report's errors, measured in eval mode at each consumer's output with both networks fed the LET
    network's activation at the run's start. ``madds_input_size`` (default 32 for ``small_input`` models,
    else 224) sizes the ``extra_madds`` column.

    Report columns: ``slot`` (first 0-based ``mb_module`` index), ``slots``, ``layer`` (1-based, "9-13" for a
    run), ``let`` (in->out and stride), ``consumer``, ``residual`` (consumer adds its own input),
    ``mode``, ``exact`` (what the math guarantees), ``extra_params``, ``extra_madds``,
    ``max_abs_error``, ``max_rel_error``.
    """
    _check_let_model(model)
    if mode not in FOLD_MODES:
        raise ValueError(f"unknown mode {mode!r}; accepted: {FOLD_MODES}")
    runs = find_let_runs(model)
    ref = next(model.parameters())
    dropout = model.dropout.p if isinstance(model.dropout, nn.Dropout) else 0.0
    folded = ScarletNet(model.arch, num_classes=model.num_classes, width_mult=model.width_mult,
                        small_input=model.small_input, identity_mode="identity", dropout=dropout)
    folded.to(device=ref.device, dtype=ref.dtype)
    let_keys = {f"mb_module.{i}.conv.weight" for r in runs for i in r.slots}
    folded.load_state_dict({k: v for k, v in model.state_dict().items() if k not in let_keys}, strict=True)
    folded.train(model.training)

    madds_size = madds_input_size or (32 if model.small_input else 224)
    rows = []
    for r in runs:
        for i in r.slots:  # the builder's Shortcut must be the map the fold assumes: subsample + zero-pad
            assert isinstance(folded.mb_module[i], Shortcut)
        if r.consumer == "conv_before_pooling":
            conv = folded.conv_before_pooling[0]
        else:
            conv = _module(folded, r.consumer).conv1
        conv.weight.copy_(_embed_columns(fold_conv(r.weight, conv.weight)[:, :, 0, 0], r.out_channels)[:, :, None, None])
        extra_params = extra_madds = 0
        if mode == "exact" and r.consumer_residual:
            j = int(r.consumer.split(".")[1])
            block = InvertedResidualWithProjection(folded.mb_module[j], _embed_columns(r.weight, r.out_channels))
            folded.mb_module[j] = block
            extra_params = block.shortcut.weight.numel()
            h, w = _consumer_input_size(model, r, madds_size)
            extra_madds = extra_params * h * w
        rows.append(dict(slot=r.slots[0], slots=r.slots, layer=r.layers,
                         let=f"{r.in_channels}->{r.out_channels} s{r.stride}", consumer=r.consumer,
                         residual=r.consumer_residual, mode=mode, exact=(not r.consumer_residual) or mode == "exact",
                         extra_params=extra_params, extra_madds=extra_madds))

    x = _example_input(model, seed) if example_input is None else example_input
    was = model.training, folded.training
    model.eval(), folded.eval()
    try:
        errors = _local_errors(model, folded, runs, x)
    finally:
        model.train(was[0]), folded.train(was[1])
    for row, (abs_err, rel_err) in zip(rows, errors):
        row.update(max_abs_error=abs_err, max_rel_error=rel_err)
    columns = ["slot", "slots", "layer", "let", "consumer", "residual", "mode", "exact", "extra_params",
               "extra_madds", "max_abs_error", "max_rel_error"]
    return folded, pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------------
# How large is the error of dropping the LET?
# ---------------------------------------------------------------------------------------------------

def make_let_weight(kind: str, out_channels: int, in_channels: int, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A LET matrix (``out x in``) of a given kind (``LET_WEIGHT_KINDS``), all synthetic:

    ``"identity"``: the Shortcut's own map ``[I; 0]`` (dropping is then exact);
    ``"near_identity"``: ``[I; 0] + 0.1 G / sqrt(in)`` (a LET that moved little from identity);
    ``"random"``: the released initialisation, ``N(0, 2 / out)`` entries;
    ``"trained_like"``: ``U diag(s) V^T`` with random orthogonal ``U, V`` and gains ``s`` from 2 down to 0.25
    (non-orthogonal: amplifies some directions, damps others, condition number 8). No trained supernet
    is available here, so this stands in for learned weights.
    """
    eye = torch.eye(out_channels, in_channels, dtype=torch.float64)
    g = lambda *s: torch.randn(*s, generator=generator, dtype=torch.float64)  # noqa: E731
    if kind == "identity":
        w = eye
    elif kind == "near_identity":
        w = eye + 0.1 * g(out_channels, in_channels) / math.sqrt(in_channels)
    elif kind == "random":
        w = g(out_channels, in_channels) * math.sqrt(2.0 / out_channels)
    elif kind == "trained_like":
        n = min(out_channels, in_channels)
        u, _ = torch.linalg.qr(g(out_channels, n))
        v, _ = torch.linalg.qr(g(in_channels, n))
        s = torch.tensor(np.geomspace(2.0, 0.25, n), dtype=torch.float64)
        w = u @ torch.diag(s) @ v.T
    else:
        raise ValueError(f"unknown LET weight kind {kind!r}; accepted: {LET_WEIGHT_KINDS}")
    return w.to(dtype)


@torch.no_grad()
def set_let_weights_(model: ScarletNet, kind: str, seed: int = 0) -> ScarletNet:
    """Overwrite every LET of ``model`` with a ``make_let_weight`` matrix of this kind (in place)."""
    _check_let_model(model)
    gen = torch.Generator().manual_seed(seed)
    for block in model.mb_module:
        if isinstance(block, LET):
            w = block.conv.weight
            w.copy_(make_let_weight(kind, w.shape[0], w.shape[1], gen, w.dtype)[:, :, None, None])
    return model


@torch.no_grad()
def _nontrivial_bn_(model: nn.Module, x_calib: torch.Tensor, seed: int) -> None:
    """Random BN affine parameters, then running statistics estimated on ``x_calib`` (eval mode is then non-trivial)."""
    from .evaluation import recalibrate_bn

    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(0.5 + torch.rand(m.num_features, generator=gen, dtype=torch.float64))
            m.bias.copy_(0.2 * torch.randn(m.num_features, generator=gen, dtype=torch.float64))
    recalibrate_bn(model, model, [(x_calib,)])


@torch.no_grad()
def output_error(a: nn.Module, b: nn.Module, x: torch.Tensor) -> dict:
    """Logit differences of two models on ``x`` in eval mode: max abs, max abs relative to max |logit|, top-1 agreement."""
    was = a.training, b.training
    a.eval(), b.eval()
    try:
        ya, yb = a(x), b(x)
    finally:
        a.train(was[0]), b.train(was[1])
    err = (ya - yb).abs().max()
    return dict(max_abs_error=float(err), max_rel_error=float(err / ya.abs().max()),
                top1_agreement=float((ya.argmax(1) == yb.argmax(1)).float().mean()))


def drop_error_study(archs: Mapping[str, object] | None = None, kinds: Sequence[str] = LET_WEIGHT_KINDS,
                     seeds: Sequence[int] = (0,), modes: Sequence[str] = FOLD_MODES, input_size: int = 32,
                     batch: int = 8, num_classes: int = 10, width_mult: float = 1.0, small_input: bool = True,
                     dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> pd.DataFrame:
    """Output error of folding each architecture's LETs, per LET weight kind, seed and mode.

    For each case: a LET-mode ``ScarletNet`` (seeded initialisation), LET weights of the kind, random BN
    affine parameters and BN statistics estimated on a random batch (so eval mode is non-trivial), then
    ``fold_network`` and the logit error on another random batch. Default architectures: SCARLET-B,
    SCARLET-C and the paper's Figure 3 model. One row per (arch, let_weights, seed, mode) with
    ``residual_runs`` (runs whose consumer adds its own input), ``max_abs_error``, ``max_rel_error``,
    ``top1_agreement`` and the largest per-run local error ``max_local_rel_error``.
    """
    archs = archs or {"SCARLET-B": SCARLET_B, "SCARLET-C": SCARLET_C, "Figure 3": FIGURE3_ARCH}
    rows = []
    for name, arch in archs.items():
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            x_calib = torch.randn(batch, 3, input_size, input_size, generator=gen, dtype=torch.float64)
            x_test = torch.randn(batch, 3, input_size, input_size, generator=gen, dtype=torch.float64)
            x_calib, x_test = x_calib.to(device=device, dtype=dtype), x_test.to(device=device, dtype=dtype)
            for kind in kinds:
                net = ScarletNet(arch, num_classes=num_classes, width_mult=width_mult, small_input=small_input,
                                 identity_mode="let")
                init_weights(net, seed)  # seeded per module, global RNG untouched
                net.to(device=device, dtype=dtype)
                set_let_weights_(net, kind, seed)
                _nontrivial_bn_(net, x_calib, seed)
                for mode in modes:
                    folded, report = fold_network(net, mode, example_input=x_test)
                    rows.append(dict(arch=name, let_weights=kind, seed=seed, mode=mode,
                                     residual_runs=int(report["residual"].sum()), runs=len(report),
                                     **output_error(net, folded, x_test),
                                     max_local_rel_error=float(report["max_rel_error"].max()) if len(report) else 0.0))
    return pd.DataFrame(rows)


def residual_counterexample() -> pd.DataFrame:
    """The residual problem in the smallest form: one channel, LET ``w = 2``, consumer ``y = z + f(z)``.

    With ``f(z) = a z`` folded into the consumer (``f'(x) = a w x``), the LET network gives
    ``w x + a w x`` and the LET-free one ``x + a w x``: they differ by ``(w - 1) x`` whatever ``a`` is,
    and agree only when ``w = 1`` (the identity). The projection shortcut ``w x + a w x`` is exact.
    """
    w, a = 2.0, 0.5
    xs = np.array([-1.0, 0.0, 1.0, 3.0])
    let_path = w * xs + a * (w * xs)
    dropped = xs + a * w * xs
    projected = w * xs + a * w * xs
    return pd.DataFrame({"x": xs, "let_network": let_path, "let_dropped": dropped, "projection_shortcut": projected,
                         "drop_error": np.abs(let_path - dropped), "projection_error": np.abs(let_path - projected)})
