import math

import pandas as pd
import pytest

from scarlet_lib.models import get_model
from scarlet_lib.costs import count_madds, count_params
from scarlet_lib.table3 import count_definition, table3

# The paper's Table 3 (arXiv 1908.06022v1), copied as printed: model MAdds/params/top-1/top-5.
FACTS_TABLE3 = """MobileNetV2 1.0 300/3.4/72.0/91.0; MobileNetV3
Large 219/5.4/75.2/92.2; MnasNet-A1 312/3.9/75.2/92.5; MnasNet-A2 340/4.8/75.6/92.7; FBNet-B 295/4.5/74.1/-;
Proxyless-R Mobile 320/4.0/74.6/92.2; Proxyless GPU 465/7.1/75.1/-; Single-Path NAS 365/4.3/75.0/92.2;
FairNAS-A 388/4.6/75.3/92.4; MoGA-A 304/5.1/75.9/92.8; EfficientNet-B0 390/5.3/76.3/93.2;
SCARLET-A 365/6.7/76.9/93.4; SCARLET-B 329/6.5/76.3/93.0; SCARLET-C 280/6.0/75.6/92.6."""


def parse_paper_table3():
    rows = []
    for item in FACTS_TABLE3.replace("\n", " ").rstrip(".").split(";"):
        name, figures = item.strip().rsplit(" ", 1)
        vals = [math.nan if v == "-" else float(v) for v in figures.split("/")]
        rows.append((name, *vals))
    return rows


@pytest.fixture(scope="module")
def df():
    return table3()


def test_every_paper_row_with_paper_figures(df):
    paper = df[df.in_paper]
    facts = parse_paper_table3()
    assert len(facts) == 14 and paper.model.tolist() == [r[0] for r in facts]
    for (name, madds, params, top1, top5), (_, row) in zip(facts, paper.iterrows()):
        assert (row.paper_madds_M, row.paper_params_M, row.paper_top1) == (madds, params, top1), name
        assert row.paper_top5 == top5 or (math.isnan(top5) and math.isnan(row.paper_top5)), name


def test_scarlet_rows_are_the_released_definitions(df):
    facts = {"SCARLET-A": (365.31, 6.708), "SCARLET-B": (326.85, 6.532), "SCARLET-C": (280.08, 6.074)}
    for row in df[df.model.str.startswith("SCARLET")].itertuples():
        model = get_model("Scarlet_" + row.model[-1])
        assert (row.madds, row.params) == (count_madds(model), count_params(model))
        assert (round(row.madds_M, 2), round(row.params_M, 3)) == facts[row.model]
        assert row.params_gap_M == 0 and row.params_M_truncated == row.paper_params_M
    gaps = df.set_index("model").madds_gap_M
    assert round(gaps["SCARLET-B"], 2) == 2.15  # paper 329M vs 326.85M: the documented gap
    assert abs(gaps["SCARLET-A"]) < 0.5 and abs(gaps["SCARLET-C"]) < 0.5
    assert "2.15M" in df.set_index("model").note["SCARLET-B"]


def test_reference_rows(df):
    import torchvision

    t = df.set_index("model")
    for row, name in [("MobileNetV2 1.0", "mobilenet_v2"), ("MobileNetV3 Large", "mobilenet_v3_large"),
                      ("EfficientNet-B0", "efficientnet_b0"), ("MnasNet-B1", "mnasnet1_0")]:
        model = getattr(torchvision.models, name)()
        assert (t.madds[row], t.params[row]) == (count_madds(model), count_params(model)), row
        assert name in t.definition[row]
    for row in ("MobileNetV2 1.0", "MobileNetV3 Large", "EfficientNet-B0"):
        assert abs(t.madds_gap_M[row]) / t.paper_madds_M[row] < 0.015
        assert t.madds_gap_M[row] == pytest.approx(t.paper_madds_M[row] - t.madds[row] / 1e6)


def test_mnasnet_b1_is_not_compared_with_a1(df):
    t = df.set_index("model")
    assert pd.isna(t.madds["MnasNet-A1"]) and pd.isna(t.madds_gap_M["MnasNet-A1"])
    assert not t.in_paper["MnasNet-B1"] and "B1" in t.definition["MnasNet-B1"]
    assert round(t.params_M["MnasNet-B1"], 2) == 4.38 and pd.isna(t.madds_gap_M["MnasNet-B1"])
    assert pd.isna(t.paper_top1["MnasNet-B1"])
    # placed next to the A1 row it stands in for
    assert df.model.tolist().index("MnasNet-B1") == df.model.tolist().index("MnasNet-A1") + 1


def test_uncounted_rows_and_accuracy_source(df):
    counted = {"MobileNetV2 1.0", "MobileNetV3 Large", "MnasNet-B1", "EfficientNet-B0",
               "SCARLET-A", "SCARLET-B", "SCARLET-C"}
    assert set(df.model[df.madds.notna()]) == counted
    assert df[~df.model.isin(counted)].definition.eq("").all()
    assert df.accuracy_source.str.len().gt(0).all()
    assert df[df.in_paper].accuracy_source.str.contains("paper Table 3").all()
    assert not df.accuracy_source.str.contains("ours").any()


def test_counts_are_cached_and_compute_false_builds_nothing(df):
    before = count_definition.cache_info().hits
    again = table3()
    assert count_definition.cache_info().hits >= before + 7
    pd.testing.assert_frame_equal(again, df)
    bare = table3(compute=False)
    assert bare.madds.isna().all() and bare.model.tolist() == df.model.tolist()
    with pytest.raises(KeyError, match="no definition"):
        count_definition("FBNet-B")
