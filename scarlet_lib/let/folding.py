"""Whole-network folding: a ``ScarletNet`` with LET layers in its identity slots turned into the LET-free model.

``fold_network`` combines each run of consecutive LETs (Lemma 1) and folds it into the first 1x1 conv of its
consumer (paper Figure 2, right). ``mode="drop"`` is the paper's "simply drop the LET": exact unless the
consumer adds a residual of its own input (then ``Wx + F(Wx)`` becomes ``x + F(x)``); ``mode="exact"`` moves
``W`` onto that shortcut as a 1x1 projection (``InvertedResidualWithProjection``). Details:
``docs/let_algebra.md``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch import nn

from ..blocks import InvertedResidual, LET, Shortcut
from ..models import ScarletNet
from .algebra import _as_matrix, fold_conv, fold_fc

__all__ = ["FOLD_MODES", "LetRun", "find_let_runs", "fold_network", "InvertedResidualWithProjection"]

FOLD_MODES = ("drop", "exact")


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
