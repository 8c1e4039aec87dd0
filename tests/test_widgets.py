"""The architecture browser: its plain functions, and the widget wiring (no browser needed here)."""
import math

import numpy as np
import pandas as pd
import pytest

from scarlet_lib import widgets
from scarlet_lib.models import PUBLISHED, build_model
from scarlet_lib.costs import cost_table, count_madds, count_params
from scarlet_lib.space import IDENTITY, SPACE_NO_SE, SPACE_SE, Architecture

SMALL = dict(input_size=32, width_mult=0.25, small_input=True, num_classes=10)


@pytest.fixture(scope="module")
def costs():
    return cost_table(**SMALL)


def test_choice_options_follow_the_space():
    opts = widgets.choice_options(SPACE_SE)
    assert [v for _, v in opts] == list(range(13)) and opts[12][0] == "12: identity" and opts[7][0] == "7: e6 k3 SE"
    assert [v for _, v in widgets.choice_options(SPACE_NO_SE)] == [0, 2, 4, 6, 8, 10, 12]


def test_presets_are_the_released_models():
    p = widgets.preset_architectures()
    assert p["SCARLET-A"] == PUBLISHED["Scarlet_A"] and p["SCARLET-C"] == PUBLISHED["Scarlet_C"]
    assert p["Figure 3 model"].num_identity == 8


def test_fair_architectures_of_one_seed_use_every_choice_once_per_layer():
    paths = np.array([widgets.fair_architecture(5, j).tolist() for j in range(13)])
    assert all(sorted(paths[:, layer]) == list(range(13)) for layer in range(19))
    assert widgets.fair_architecture(5, 3) == widgets.fair_architecture(5, 3)
    with pytest.raises(ValueError, match="path must be in 0..12"):
        widgets.fair_architecture(5, 13)


def test_describe_matches_counting_the_built_model(costs):
    arch = widgets.random_architecture(3)
    info = widgets.describe(arch, costs)
    model = build_model(arch, num_classes=10, width_mult=0.25, small_input=True)
    assert info["madds_m"] * 1e6 == pytest.approx(count_madds(model, 32))
    assert info["params_m"] * 1e6 == pytest.approx(count_params(model))
    assert info["depth"] == arch.depth and info["choices"] == arch.tolist()


def test_architectures_table_adds_costs_and_names_bad_rows(costs):
    t = widgets.architectures_table(pd.DataFrame({"arch": [str(PUBLISHED["Scarlet_B"]), PUBLISHED["Scarlet_C"].tolist()],
                                                  "acc": [0.5, 0.4]}), costs=costs)
    assert list(t["acc"]) == [0.5, 0.4] and t.loc[1, "madds_m"] == pytest.approx(costs.madds(PUBLISHED["Scarlet_C"]) / 1e6)
    with pytest.raises(ValueError, match="row 1: cannot read architecture 'e3k3-nonsense'"):
        widgets.architectures_table(pd.DataFrame({"arch": [str(PUBLISHED["Scarlet_B"]), "e3k3-nonsense"]}), costs=costs)


def test_browser_updates_the_madds_label_on_every_interaction(costs):
    table = pd.DataFrame({"arch": [str(widgets.random_architecture(i)) for i in range(3)]})
    b = widgets.ArchitectureBrowser(costs=costs, table=table)
    assert widgets.MADDS_CLASS in b.madds_label._dom_classes
    a_text = b.madds_label.value
    assert f"{costs.madds(PUBLISHED['Scarlet_A']) / 1e6:.2f} M" in a_text
    b.dropdowns[0].value = IDENTITY  # one layer changed by hand
    expected = list(PUBLISHED["Scarlet_A"])
    expected[0] = IDENTITY
    assert b.architecture == Architecture(expected)
    assert b.madds_label.value != a_text and f"{costs.madds(expected) / 1e6:.2f} M" in b.madds_label.value
    b.set_architecture(PUBLISHED["Scarlet_C"])
    assert f"{costs.madds(PUBLISHED['Scarlet_C']) / 1e6:.2f} M" in b.madds_label.value
    b.load_row(2)
    assert str(b.architecture) == b.table.loc[2, "arch"]
    assert b.diagram.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no trained supernet" in b.accuracy_label.value


def test_scorer_is_called_for_the_shown_architecture_and_refuses_other_spaces(costs):
    seen = []
    b = widgets.ArchitectureBrowser(costs=costs, scorer=lambda a: seen.append(a) or 0.375)
    assert seen[-1] == PUBLISHED["Scarlet_A"] and "37.5%" in b.accuracy_label.value

    class FakeSupernet:
        space = SPACE_NO_SE

    scorer = widgets.OneShotScorer(FakeSupernet(), [], [])
    assert math.isnan(scorer(PUBLISHED["Scarlet_A"]))  # SE choices are not in the 7-choice supernet
