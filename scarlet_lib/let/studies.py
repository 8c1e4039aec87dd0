"""How large is the error of dropping the LET: synthetic LET weights of several kinds in the published models."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..blocks import LET
from ..evaluation import recalibrate_bn
from ..models import FIGURE3_ARCH, SCARLET_B, SCARLET_C, ScarletNet, init_weights
from .folding import FOLD_MODES, _check_let_model, fold_network

__all__ = ["LET_WEIGHT_KINDS", "make_let_weight", "set_let_weights_", "output_error", "drop_error_study",
           "residual_counterexample"]

LET_WEIGHT_KINDS = ("identity", "near_identity", "random", "trained_like")


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
