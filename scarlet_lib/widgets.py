"""The architecture browser: pick a choice per layer (or load one), see its diagram, cost and accuracy.

The logic lives in plain functions (tested without any widget): the choice options, loading presets /
random / strict-fair / table rows, describing an architecture (MAdds, params, depth via
``costs.cost_table``) and scoring it on a trained supernet (``evaluation.SupernetEvaluator``).
``ArchitectureBrowser`` only wires those functions to ipywidgets. The MAdds label carries the DOM class
``scarlet-madds`` (and parameters ``scarlet-params``, accuracy ``scarlet-accuracy``) so a browser test
can find it.

``FeatureMapBrowser`` (notebook 4) pages through every channel of the Figure 5 maps: a layer, an image and
a page of channels, drawn by ``plots.figure5`` (``feature_page_png``).
"""
from __future__ import annotations

import io
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from .cache import cost_table as cached_cost_table
from .costs import paper_millions
from .evaluation import SupernetEvaluator
from .models import FIGURE3_ARCH, PUBLISHED
from .plots import channel_pages, draw_architecture, figure5
from .search.evaluators import MemoEvaluator
from .space import Architecture, CHOICES, IDENTITY, NUM_LAYERS, SPACE_SE, SearchSpace

__all__ = ["choice_options", "preset_architectures", "random_architecture", "fair_architecture",
           "describe", "summary_html", "architectures_table", "OneShotScorer", "diagram_png",
           "ArchitectureBrowser", "MADDS_CLASS", "page_options", "feature_page_png", "FeatureMapBrowser"]

MADDS_CLASS = "scarlet-madds"


def choice_options(space: SearchSpace = SPACE_SE) -> list[tuple[str, int]]:
    """Dropdown options ``(label, choice index)`` of one layer: ``"7: e3k7 SE"``-style labels."""
    out = []
    for c in space.choices:
        ch = CHOICES[c]
        label = "identity" if ch.is_identity else f"e{ch.expansion} k{ch.kernel}" + (" SE" if ch.se else "")
        out.append((f"{c}: {label}", c))
    return out


def preset_architectures() -> dict[str, Architecture]:
    """The released SCARLET-A/B/C and the paper's Figure 3 model."""

    out = {name.replace("_", "-").upper(): a for name, a in PUBLISHED.items()}
    out["Figure 3 model"] = FIGURE3_ARCH
    return out


def random_architecture(seed: int, space: SearchSpace = SPACE_SE) -> Architecture:
    """A uniformly sampled architecture (independent choice per layer)."""
    return space.sample_uniform(np.random.default_rng(seed))


def fair_architecture(seed: int, path: int = 0, space: SearchSpace = SPACE_SE) -> Architecture:
    """Path ``path`` of the strict-fair sample drawn with ``seed`` (the paths a supernet step trains)."""
    paths = space.sample_fair(np.random.default_rng(seed))
    if not 0 <= path < len(paths):
        raise ValueError(f"path must be in 0..{len(paths) - 1}, got {path}")
    return paths[path]


def describe(arch, costs=None) -> dict:
    """Cost summary of an architecture: MAdds and params (millions), depth, identities, token string.

    ``costs`` is a ``costs.CostTable`` (default: stand-alone ImageNet model at 224x224, width 1.0).
    """

    arch = Architecture.coerce(arch)
    costs = costs or cached_cost_table()
    params = costs.params(arch)
    return {"arch": str(arch), "choices": arch.tolist(), "madds_m": costs.madds(arch) / 1e6,
            "params_m": params / 1e6, "params_paper_m": paper_millions(params), "depth": arch.depth,
            "identities": arch.num_identity}


def summary_html(info: Mapping) -> tuple[str, str]:
    """The two label texts the browser shows: MAdds, and parameters with depth."""
    return (f"<b>MAdds:</b> {info['madds_m']:.2f} M",
            f"<b>Params:</b> {info['params_m']:.3f} M &nbsp; <b>depth:</b> {info['depth']} MB blocks "
            f"({info['identities']} identity)")


def architectures_table(table: pd.DataFrame, arch_col: str = "arch", costs=None, limit: int | None = None) -> pd.DataFrame:
    """A table of architectures (searched or sampled) with parsed ``arch`` and cost columns added.

    Keeps the table's own columns (e.g. one-shot accuracy, generation) and adds ``madds_m``/``params_m``
    at the browser's cost setting when missing. Rows whose architecture does not parse raise an error
    naming the row.
    """
    if arch_col not in table.columns:
        raise ValueError(f"table has no column {arch_col!r}; columns: {list(table.columns)}")
    rows = table.head(limit) if limit else table
    parsed = []
    for i, a in zip(rows.index, rows[arch_col]):
        try:
            parsed.append(Architecture.coerce(a if not isinstance(a, str) else Architecture.parse(a)))
        except ValueError as e:
            raise ValueError(f"row {i}: cannot read architecture {a!r}: {e}") from e
    out = rows.copy().reset_index(drop=True)
    out[arch_col] = [str(a) for a in parsed]
    infos = [describe(a, costs) for a in parsed]
    for key in ("madds_m", "params_m", "depth"):
        if key not in out.columns:
            out[key] = [d[key] for d in infos]
    return out


class OneShotScorer:
    """One-shot accuracy of one architecture at a time on a trained supernet (a ``SupernetEvaluator`` behind a
    ``MemoEvaluator``: BN recalibrated for each new architecture, each evaluated once)."""

    def __init__(self, supernet, calib_batches: Iterable, eval_batches: Iterable, device=None):
        self.supernet, self.device = supernet, device
        self.calib, self.eval = list(calib_batches), list(eval_batches)
        self.evaluator = None  # built at the first architecture in the supernet's space

    def __call__(self, arch) -> float:
        """Accuracy (fraction); NaN for an architecture outside the supernet's space (e.g. SE choices in the
        7-choice supernet)."""
        arch = Architecture.coerce(arch)
        if not arch.in_space(self.supernet.space):
            return float("nan")
        if self.evaluator is None:
            self.evaluator = MemoEvaluator(SupernetEvaluator(self.supernet, self.calib, self.eval, self.device,
                                                             share_prefix=False))
        return float(self.evaluator.evaluate([arch])[0])


def diagram_png(arch, title: str | None = None, **kwargs) -> bytes:
    """The architecture's diagram (``plots.draw_architecture``) as PNG bytes."""
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots(figsize=(12, 2.3))
    draw_architecture(arch, ax=ax, title=title, legend=True, **kwargs)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


class ArchitectureBrowser:
    """ipywidgets front end: 19 dropdowns, loaders, diagram, cost labels, optional one-shot accuracy.

    Args:
        costs: ``costs.CostTable`` for the labels (default ImageNet 224x224, width 1.0).
        scorer: a callable arch -> accuracy (e.g. ``OneShotScorer``); without it accuracy is not shown.
        table: architectures to browse (``architectures_table`` output or any table with an ``arch`` column).
        space: which choices the dropdowns offer.
        seed: first seed of the random / fair-sampled loaders (each click draws the next).
    """

    def __init__(self, costs=None, scorer: Callable | None = None, table: pd.DataFrame | None = None,
                 space: SearchSpace = SPACE_SE, seed: int = 0, initial=None):
        import ipywidgets as w

        self.costs = costs or cached_cost_table()
        self.scorer, self.space, self._seed, self._suspend = scorer, space, seed, False
        options = choice_options(space)
        layout = w.Layout(width="150px")
        self.dropdowns = [w.Dropdown(options=options, value=options[0][1], description=f"L{i + 1}", layout=layout,
                                     style={"description_width": "28px"}) for i in range(NUM_LAYERS)]
        for d in self.dropdowns:
            d.observe(self._on_change, names="value")
        self.madds_label = w.HTML().add_class(MADDS_CLASS)
        self.params_label = w.HTML().add_class("scarlet-params")
        self.accuracy_label = w.HTML().add_class("scarlet-accuracy")
        self.arch_label = w.HTML().add_class("scarlet-arch")
        self.diagram = w.Image(format="png")
        presets = preset_architectures()
        buttons = []
        for name, arch in presets.items():
            b = w.Button(description=name, layout=w.Layout(width="auto"))
            b.on_click(lambda _b, a=arch: self.set_architecture(a))
            buttons.append(b)
        rnd = w.Button(description="random", layout=w.Layout(width="auto"))
        rnd.on_click(lambda _b: self.set_architecture(random_architecture(self._next_seed(), space)))
        fair = w.Button(description="fair-sampled", layout=w.Layout(width="auto"))
        fair.on_click(lambda _b: self.set_architecture(fair_architecture(self._next_seed(), 0, space)))
        buttons += [rnd, fair]
        self.table = None
        table_box = []
        if table is not None and len(table):
            self.table = architectures_table(table, costs=self.costs)
            opts = [(self._row_label(i, r), i) for i, r in self.table.iterrows()]
            self.row_picker = w.Dropdown(options=opts, description="table row", layout=w.Layout(width="520px"))
            load = w.Button(description="load row", layout=w.Layout(width="auto"))
            load.on_click(lambda _b: self.load_row(self.row_picker.value))
            self.table_html = w.HTML(self.table.drop(columns=[c for c in ("choices",) if c in self.table])
                                     .to_html(max_rows=30, float_format=lambda v: f"{v:.3f}"))
            table_box = [w.HBox([self.row_picker, load]), w.Accordion(children=[self.table_html], titles=("table",))]
        grid = w.GridBox(self.dropdowns, layout=w.Layout(grid_template_columns="repeat(5, 155px)"))
        self.widget = w.VBox([w.HBox(buttons), grid, w.HBox([self.madds_label, w.HTML("&nbsp;" * 4), self.params_label,
                                                             w.HTML("&nbsp;" * 4), self.accuracy_label]),
                              self.arch_label, self.diagram, *table_box])
        self.set_architecture(initial if initial is not None else presets["SCARLET-A"])

    def _next_seed(self) -> int:
        self._seed += 1
        return self._seed

    @staticmethod
    def _row_label(i, row) -> str:
        extra = [f"{k}={row[k]:.3f}" for k in ("acc", "accuracy", "one_shot_acc") if k in row and pd.notna(row[k])]
        return f"{i}: {row['madds_m']:.1f}M MAdds " + " ".join(extra)

    @property
    def architecture(self) -> Architecture:
        return Architecture([d.value for d in self.dropdowns])

    def set_architecture(self, arch) -> None:
        """Show ``arch``: set every dropdown (one refresh, not 19)."""
        arch = self.space.check(Architecture.coerce(arch))
        self._suspend = True
        try:
            for d, c in zip(self.dropdowns, arch):
                d.value = c
        finally:
            self._suspend = False
        self.refresh()

    def load_row(self, i: int) -> None:
        self.set_architecture(self.table.loc[i, "arch"])

    def _on_change(self, _change) -> None:
        if not self._suspend:
            self.refresh()

    def refresh(self) -> None:
        arch = self.architecture
        info = describe(arch, self.costs)
        self.diagram.value = diagram_png(arch)  # first: the labels changing last means the view is complete
        self.arch_label.value = f"<code>{info['arch']}</code> &nbsp; {info['choices']}"
        if self.scorer is not None:
            acc = self.scorer(arch)
            self.accuracy_label.value = (f"<b>one-shot accuracy:</b> {100 * acc:.1f}%" if acc == acc else
                                         "<i>one-shot accuracy: not in the trained supernet's space</i>")
        else:
            self.accuracy_label.value = "<i>one-shot accuracy: no trained supernet given</i>"
        self.madds_label.value, self.params_label.value = summary_html(info)

    def _ipython_display_(self):  # pragma: no cover - display hook
        from IPython.display import display
        display(self.widget)


# ------------------------------------------------------------------------------------------------
# Figure 5: every channel of the feature maps, page by page
# ------------------------------------------------------------------------------------------------

def _num_channels(grids: Mapping) -> int:
    return max(int(f.shape[1]) for m in grids for f in grids[m].values())


def _num_images(grids: Mapping) -> int:
    return min(int(f.shape[0]) for m in grids for f in grids[m].values())


def page_options(num_channels: int, per_page: int) -> list[tuple[str, int]]:
    """Dropdown options ``("channels 0-7 of 24", 0)`` for the pages of one layer; together they hold every channel."""

    return [(f"channels {a}-{b - 1} of {num_channels}", a) for a, b in channel_pages(num_channels, per_page)]


def feature_page_png(grids: Mapping, channel_start: int = 0, channels: int = 8, image_index: int = 0,
                     similarity: Mapping | None = None, title: str = "", dpi: int = 60) -> bytes:
    """One page of ``plots.figure5`` (mode -> {choice: (N, C, H, W)}) as PNG bytes."""
    import matplotlib.pyplot as plt


    fig = figure5(grids, similarity, channels=channels, channel_start=channel_start, image_index=image_index,
                  title=title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


class FeatureMapBrowser:
    """ipywidgets front end of Figure 5: pick the layer, the image and the page of channels.

    Args:
        grids: layer -> mode -> {choice: activations (N, C, H, W)} (``analysis.layer_choice_features``).
        similarity: layer -> mode -> ``analysis.channel_similarity`` table (cosine and CKA next to each row).
        channels: channels per page.
    """

    def __init__(self, grids: Mapping, similarity: Mapping | None = None, channels: int = 8):
        import ipywidgets as w

        if not grids:
            raise ValueError("no feature maps given")
        self.grids, self.similarity, self.channels = grids, similarity or {}, channels
        self._suspend = False
        layers = list(grids)
        self.layer = w.Dropdown(options=[(f"layer {l}", l) for l in layers], value=layers[0], description="layer")
        self.page = w.Dropdown(description="channels", layout=w.Layout(width="320px"))
        self.image = w.IntSlider(min=0, max=0, value=0, description="image")
        self.view = w.Image(format="png")
        self.caption = w.HTML()
        self.layer.observe(self._on_layer, names="value")
        for control in (self.page, self.image):
            control.observe(self._on_change, names="value")
        self.widget = w.VBox([w.HBox([self.layer, self.page, self.image]), self.caption, self.view])
        self._on_layer(None)

    def _on_layer(self, _change) -> None:
        g = self.grids[self.layer.value]
        self._suspend = True
        try:
            self.page.options = page_options(_num_channels(g), self.channels)
            self.page.value = 0
            self.image.max = _num_images(g) - 1
            self.image.value = min(self.image.value, self.image.max)
        finally:
            self._suspend = False
        self.refresh()

    def _on_change(self, _change) -> None:
        if not self._suspend:
            self.refresh()

    def show(self, layer=None, channel_start: int | None = None, image_index: int | None = None) -> None:
        """Set the controls (any of them) and draw once."""
        if layer is not None:
            self.layer.value = layer
        self._suspend = True
        try:
            if channel_start is not None:
                self.page.value = channel_start
            if image_index is not None:
                self.image.value = image_index
        finally:
            self._suspend = False
        self.refresh()

    def refresh(self) -> None:
        layer, g = self.layer.value, self.grids[self.layer.value]
        shape = tuple(int(v) for v in next(iter(next(iter(g.values())).values())).shape[1:])
        self.view.value = feature_page_png(g, self.page.value, self.channels, self.image.value,
                                           self.similarity.get(layer))
        self.caption.value = (f"layer {layer}: maps of shape {shape[1]}x{shape[2]}, {_num_channels(g)} channels; "
                              f"{self.page.label}, image {self.image.value}")

    def _ipython_display_(self):  # pragma: no cover - display hook
        from IPython.display import display
        display(self.widget)
