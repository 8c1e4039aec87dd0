"""What the search counts: the deployable model's costs, and how identity slots enter them.

The paper's objectives and its 500M MAdds constraint count the model that is deployed: 224x224 input,
width 1.0, 1000 classes, under Table 3's convention (``scarlet_lib.costs``). That setting is ``DEPLOYMENT``, and
``SearchConfig``'s defaults are it. A proxy supernet's setting (e.g. width 0.25 on 32x32 images) ranks the
layers differently: channels round up to multiples of 8 (layer 1's 16 -> 32 becomes 8 -> 8) and without
the stem's stride layer 1 runs on the full image, so an identity there saves far more than at 224x224
(notebook 6 measures it). ``identity_savings`` puts costings side by side.

Identity slots are costed as the stand-alone model is built (``identity_mode="identity"``): a
parameter-free ``blocks.Shortcut``, 0 MAdds and 0 params. At a stride-2 or channel-changing layer it
subsamples and zero-pads, and the next layer is counted at its nominal input width (the padded zero
channels are computed, so are counted). The supernet's LET is not counted: the paper's stand-alone model
drops it. ``compare_with_published`` also gives the cost with every LET kept as a 1x1 conv.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..models import PUBLISHED, SCARLET_A
from ..space import Architecture, CHOICES, IDENTITY, LAYERS, NUM_LAYERS, SHAPE_CHANGE_LAYERS, SPACE_SE, SearchSpace
from ..table3 import PAPER_TABLE3

__all__ = ["DEPLOYMENT", "identity_savings", "identity_by_layer", "identity_layer_table", "identity_effect",
           "compare_with_published", "identity_layers_figure"]

# The model the paper deploys and Table 3 counts (``costs.cost_table`` options).
DEPLOYMENT = dict(input_size=224, width_mult=1.0, small_input=False, num_classes=1000)


def _archs(models) -> list[Architecture]:
    """Architectures from a search table (its ``choices`` column) or from anything ``Architecture.coerce`` takes."""
    if isinstance(models, pd.DataFrame):
        if "choices" not in models.columns:
            raise ValueError(f"a table of models needs a 'choices' column (as run_search writes); got "
                             f"{list(models.columns)}")
        models = [[int(c) for c in str(s).split(",")] for s in models["choices"]]
    return [Architecture.coerce(m) for m in models]


def identity_savings(costs: Mapping[str, object], space: SearchSpace = SPACE_SE, reference=None) -> pd.DataFrame:
    """What choosing identity at each layer saves, under each costing, relative to a reference model.

    ``costs``: costing name -> ``costs.CostTable``. One row per (costing, layer): the layer's 224x224
    shape, whether an identity there changes the shape, and the MAdds saved / params lost by identity
    against the cheapest and the costliest non-identity choice of ``space``, in % of ``reference``'s
    (default SCARLET-A) total under that costing, so costings of different scale compare.
    ``madds_rank`` orders the layers by the smallest saving (1 = identity saves most there).
    """

    ref = Architecture.coerce(reference) if reference is not None else SCARLET_A
    rows = []
    for name, table in costs.items():
        total_madds, total_params = table.madds(ref), table.params(ref)
        for layer in LAYERS:
            others = [c for c in space.allowed(layer.index) if c != IDENTITY]
            if not others:
                raise ValueError(f"layer {layer.index + 1} of {space} offers only identity: nothing to save")
            madds = table.layer_madds[layer.index, others] - table.layer_madds[layer.index, IDENTITY]
            params = table.layer_params[layer.index, others] - table.layer_params[layer.index, IDENTITY]
            rows.append({"costing": name, "layer": layer.index + 1, "in_channels": layer.in_channels,
                         "out_channels": layer.out_channels, "stride": layer.stride,
                         "shape_change": layer.index in SHAPE_CHANGE_LAYERS,
                         "madds_saved_min_pct": 100 * madds.min() / total_madds,
                         "madds_saved_max_pct": 100 * madds.max() / total_madds,
                         "params_lost_min_pct": 100 * params.min() / total_params,
                         "params_lost_max_pct": 100 * params.max() / total_params})
    out = pd.DataFrame(rows)
    out["madds_rank"] = (out.groupby("costing")["madds_saved_min_pct"].rank(ascending=False, method="min")
                         .astype(int))
    return out


def identity_by_layer(fronts: Mapping[str, object]) -> pd.DataFrame:
    """How many models of each front have identity at each layer.

    ``fronts``: name (e.g. the costing the search used) -> models (a search table with ``choices``, or
    architectures). One row per (front, layer, 1-based): ``n_models``, ``n_identity``, ``shape_change``.
    """
    rows = []
    for name, models in fronts.items():
        C = np.array([a.tolist() for a in _archs(models)], dtype=int).reshape(-1, NUM_LAYERS)
        for layer in range(NUM_LAYERS):
            rows.append({"front": name, "layer": layer + 1, "shape_change": layer in SHAPE_CHANGE_LAYERS,
                         "n_models": len(C), "n_identity": int((C[:, layer] == IDENTITY).sum())})
    return pd.DataFrame(rows)


def identity_layer_table(counts: pd.DataFrame, savings: pd.DataFrame) -> pd.DataFrame:
    """``identity_by_layer`` and ``identity_savings`` side by side, one row per layer: its shape, the number
    of each front's models with identity there, and per costing the MAdds saved, that saving's rank among
    the layers and the parameters given up (see ``identity_savings``)."""
    costings = list(dict.fromkeys(savings["costing"]))
    first = savings[savings["costing"] == costings[0]].set_index("layer")
    out = first[["stride", "in_channels", "out_channels", "shape_change"]].copy()
    for front in dict.fromkeys(counts["front"]):
        d = counts[counts["front"] == front].set_index("layer")
        out[f"identity in front: {front} (of {int(d['n_models'].iloc[0])})"] = d["n_identity"]
    for costing in costings:
        d = savings[savings["costing"] == costing].set_index("layer")
        for column in ("madds_saved_min_pct", "madds_rank", "params_lost_min_pct"):
            out[f"{column} ({costing})"] = d[column]
    return out.reset_index()


def compare_with_published(models, costs, let_costs=None, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Found models next to SCARLET-A/B/C on the same axes: deployment MAdds and params, depth, identities.

    ``costs``: the ``CostTable`` to count with (identity slots as ``Shortcut``s: 0 MAdds, 0 params);
    ``let_costs`` (optional): a table built with ``identity_mode="let"``, giving ``madds_let_m`` /
    ``params_let_m``, the cost if each LET were kept as a 1x1 conv. SCARLET rows carry the paper's Table 3
    figures (``table3.PAPER_TABLE3``). ``names`` label the found models (default "found 1", ...).
    """

    found = _archs(models)
    names = list(names) if names is not None else [f"found {i + 1}" for i in range(len(found))]
    if len(names) != len(found):
        raise ValueError(f"{len(names)} names given for {len(found)} models; give one name per model")
    paper = {r.model: r for r in PAPER_TABLE3}
    entries = [(n.replace("_", "-").upper(), a) for n, a in PUBLISHED.items()] + list(zip(names, found))
    rows = []
    for name, arch in entries:
        row = {"model": name, "arch": str(arch), "madds_m": costs.madds(arch) / 1e6,
               "params_m": costs.params(arch) / 1e6, "depth": arch.depth, "n_identity": arch.num_identity,
               "identity_layers": ",".join(str(i + 1) for i, c in enumerate(arch) if c == IDENTITY),
               "identity_at_shape_change": arch.identity_at_shape_change,
               "paper_madds_M": paper[name].madds_M if name in paper else np.nan,
               "paper_params_M": paper[name].params_M if name in paper else np.nan}
        if let_costs is not None:
            row.update(madds_let_m=let_costs.madds(arch) / 1e6, params_let_m=let_costs.params(arch) / 1e6)
        rows.append(row)
    return pd.DataFrame(rows)


def identity_effect(evaluator, models, layer: int = 1, replacement: int | None = None,
                    space: SearchSpace = SPACE_SE) -> pd.DataFrame:
    """Accuracy of each model with identity at ``layer`` (1-based) against the same model with ``replacement``.

    The costs reward an identity where it saves most; this measures what the evaluator (e.g. the one-shot
    supernet) charges for it, model by model, all else equal. ``replacement`` defaults to the cheapest
    non-identity choice of ``space`` (e3k3). One row per distinct model: ``acc_identity``,
    ``acc_replacement`` and ``difference`` (identity minus replacement).
    """
    if not 1 <= layer <= NUM_LAYERS:
        raise ValueError(f"layer must be 1..{NUM_LAYERS} (1-based), got {layer}")
    allowed = [c for c in space.allowed(layer - 1) if c != IDENTITY]
    replacement = allowed[0] if replacement is None else int(replacement)
    if replacement not in allowed:
        raise ValueError(f"replacement {replacement} is not a non-identity choice of layer {layer} in {space}; "
                         f"accepted: {allowed}")
    base = list(dict.fromkeys(a.choices for a in _archs(models)))
    with_id = [Architecture(c[:layer - 1] + (IDENTITY,) + c[layer:]) for c in base]
    with_rep = [Architecture(c[:layer - 1] + (replacement,) + c[layer:]) for c in base]
    acc = np.asarray(evaluator.evaluate(with_id + with_rep), dtype=float)
    n = len(base)
    return pd.DataFrame({"arch": [str(Architecture(c)) for c in base], "layer": layer,
                         "replacement": CHOICES[replacement].token,
                         "acc_identity": acc[:n], "acc_replacement": acc[n:], "difference": acc[:n] - acc[n:]})


def identity_layers_figure(counts: pd.DataFrame, savings: pd.DataFrame):
    """Two panels: share of each front's models with identity per layer (``identity_by_layer``), and the
    MAdds an identity saves per layer under each costing (``identity_savings``, the cheapest choice replaced).
    Shape-changing layers are shaded."""
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.2))
    layers = np.arange(1, NUM_LAYERS + 1)
    for ax in (a1, a2):
        for i in SHAPE_CHANGE_LAYERS:
            ax.axvspan(i + 0.5, i + 1.5, color="0.92", zorder=0)
    for panel, table, key, value, ylabel in (
            (a1, counts, "front", None, "front models with identity (%)"),
            (a2, savings, "costing", "madds_saved_min_pct", "MAdds saved by identity (% of SCARLET-A)")):
        names = list(dict.fromkeys(table[key]))
        width = 0.8 / max(1, len(names))
        for k, name in enumerate(names):
            d = table[table[key] == name].set_index("layer").reindex(layers)
            y = 100 * d["n_identity"] / d["n_models"].clip(lower=1) if value is None else d[value]
            panel.bar(layers - 0.4 + width * (k + 0.5), y, width, label=name)
        panel.set(xlabel="layer (shaded: stride 2 or channels change)", ylabel=ylabel, xticks=layers)
        panel.legend(fontsize=8)
    a1.set_title("Where the front puts identities")
    a2.set_title("What an identity saves there (vs the cheapest choice)")
    fig.tight_layout()
    return fig
