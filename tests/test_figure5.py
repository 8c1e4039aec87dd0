"""Figure 5 (notebook 4): maps drawn large enough to see, every channel reachable, cosine and CKA shown."""
import numpy as np
import pandas as pd
import pytest
import torch

from scarlet_lib import analysis, plots, widgets
from scarlet_lib.space import SPACE_NO_SE, Architecture

CHOICES_NO_SE = list(SPACE_NO_SE.choices)


def _grids(channels=10, size=4, images=3, seed=0):
    """mode -> {choice: (N, C, H, W)}; the identity supernet's identity choice has zero-padded channels."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(images, channels, size, size))
    out = {}
    for mode in ("identity", "let"):
        g = {c: base + 0.2 * rng.normal(size=base.shape) for c in CHOICES_NO_SE}
        if mode == "identity":
            g[12] = base.copy()
            g[12][:, channels // 2:] = 0
        out[mode] = g
    return out


def _close(fig):
    import matplotlib.pyplot as plt
    plt.close(fig)


def _map_axes(fig):
    return [ax for ax in fig.axes if ax.images]


def _channel_labels(fig):
    return [t.get_text() for ax in _map_axes(fig) for t in ax.get_xticklabels() if t.get_text()]


@pytest.mark.parametrize("size", [4, 16])
def test_figure5_draws_every_map_an_inch_square_whatever_its_resolution(size):
    fig = plots.figure5(_grids(size=size), channels=4, title="t")
    strips = _map_axes(fig)
    assert len(strips) == 2 * len(CHOICES_NO_SE)  # a strip of 4 maps per mode and choice
    fig.canvas.draw()
    for ax in strips:
        box, (h, w) = ax.get_window_extent(), ax.images[0].get_array().shape
        map_px = h  # square maps: a map is as wide as the strip is high, in image pixels
        assert box.height / fig.dpi == pytest.approx(1.0, abs=0.03)
        assert box.width / fig.dpi * map_px / w == pytest.approx(1.0, abs=0.03)
        assert h >= 64 and h % size == 0  # enlarged by an integer factor (nearest), never resampled
    assert _channel_labels(fig) == [f"ch {j}" for j in range(4)] * 2
    _close(fig)


def test_figure5_pages_draw_every_channel_of_the_layer_once_per_mode():
    grids = _grids(channels=10)
    pages = plots.figure5_pages(grids, channels=4, title="Layer 12")
    assert [(a, b) for a, b, _ in pages] == [(0, 4), (4, 8), (8, 10)]
    seen = []
    for a, b, fig in pages:
        assert fig._suptitle.get_text() == f"Layer 12: channels {a}-{b - 1} of 10"
        seen += _channel_labels(fig)
        _close(fig)
    assert sorted(seen, key=lambda t: int(t.split()[1])) == [f"ch {j}" for j in range(10) for _ in range(2)]


def test_figure5_marks_all_zero_maps_and_prints_cosine_and_cka_next_to_each_choice():
    grids = _grids(channels=4)
    sims = {m: analysis.channel_similarity(g) for m, g in grids.items()}
    fig = plots.figure5(grids, sims, channels=4)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts.count("zero") == 2  # the identity supernet's identity choice, channels 2 and 3
    row = sims["let"].set_index("choice").loc[12]
    assert f"id\ncos {row['mean_cosine_to_others']:.2f}\nCKA {row['mean_cka_to_others']:.2f}" in texts
    _close(fig)


def test_figure5_refuses_a_page_outside_the_layer():
    with pytest.raises(ValueError, match="channel_start must be in 0..9"):
        plots.figure5(_grids(channels=10), channel_start=10)


def test_channel_pages_cover_every_channel_exactly_once():
    for n, per in [(8, 8), (24, 8), (96, 7), (3, 10)]:
        pages = plots.channel_pages(n, per)
        assert [j for a, b in pages for j in range(a, b)] == list(range(n))
        assert all(b - a <= per for a, b in pages)
    with pytest.raises(ValueError):
        plots.channel_pages(0, 8)


def test_figure5_similarity_draws_cosine_and_cka_matrices_with_their_values():
    grids = _grids(channels=4)
    pairs = pd.concat([analysis.choice_similarity_pairs(g).assign(mode=m, layer=layer)
                       for layer in (1, 12) for m, g in grids.items()], ignore_index=True)
    fig = plots.figure5_similarity(pairs, title="t")
    heat = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(heat) == 2 * 2 * 2  # layers x measures x modes
    ax = next(a for a in heat if a.get_title() == "layer 12, LET (linear)\nlinear CKA")
    want = pairs[(pairs["layer"] == 12) & (pairs["mode"] == "let")].pivot(index="choice_a", columns="choice_b",
                                                                          values="cka").to_numpy()
    assert np.allclose(ax.images[0].get_array(), want)
    assert {t.get_text() for t in ax.texts} == {f"{v:.2f}" for v in want.ravel()}
    _close(fig)


def test_the_first_choice_block_of_the_small_input_supernet_gives_16x16_maps_at_32_pixels():
    from scarlet_lib.supernet import Supernet

    net = Supernet(SPACE_NO_SE, "let", width_mult=0.25, num_classes=10, small_input=True, seed=0)
    prefix = Architecture([0] * 19)
    x = torch.randn(2, 3, 32, 32)
    feats = analysis.layer_choice_features(net, x, prefix, 1, calib_batches=[(x, None)])
    assert set(feats) == set(CHOICES_NO_SE)
    assert {tuple(f.shape[2:]) for f in feats.values()} == {(16, 16)}
    geometry = plots.layer_geometry(32, width_mult=0.25, small_input=True).set_index("layer")
    assert geometry.loc[1, "out_size"] == 16 and geometry.loc[12, "out_size"] == 4


def test_page_options_name_every_channel_range():
    assert widgets.page_options(20, 8) == [("channels 0-7 of 20", 0), ("channels 8-15 of 20", 8),
                                           ("channels 16-19 of 20", 16)]


def test_feature_map_browser_reaches_every_channel_of_every_layer():
    grids = {1: _grids(channels=8, size=16), 12: _grids(channels=20, size=4)}
    sims = {layer: {m: analysis.channel_similarity(g) for m, g in grids[layer].items()} for layer in grids}
    b = widgets.FeatureMapBrowser(grids, sims, channels=8)
    assert b.page.options == (("channels 0-7 of 8", 0),) and b.view.value[:8] == b"\x89PNG\r\n\x1a\n"
    first = b.view.value
    b.show(layer=12)
    assert [v for _, v in b.page.options] == [0, 8, 16] and "4x4" in b.caption.value and b.view.value != first
    page0 = b.view.value
    b.show(channel_start=16, image_index=2)
    assert b.view.value != page0 and "channels 16-19 of 20" in b.caption.value and "image 2" in b.caption.value
    assert b.image.max == 2
