import numpy as np
import pytest

from scarlet_lib.space import (
    CHOICES, IDENTITY, LAYERS, NUM_LAYERS, REDUCTION_LAYERS, SPACE_NO_SE, SPACE_SE, Architecture, ArchitectureError,
    SearchSpace,
)
from scarlet_lib.models import SCARLET_A, SCARLET_B, SCARLET_C, FIGURE3_ARCH


def test_choice_table_matches_paper_table1():
    expected = [(3, 3, False), (3, 3, True), (3, 5, False), (3, 5, True), (3, 7, False), (3, 7, True),
                (6, 3, False), (6, 3, True), (6, 5, False), (6, 5, True), (6, 7, False), (6, 7, True)]
    assert [(c.expansion, c.kernel, c.se) for c in CHOICES[:12]] == expected
    assert CHOICES[IDENTITY].is_identity and len(CHOICES) == 13


def test_skeleton():
    assert NUM_LAYERS == 19
    assert [l.out_channels for l in LAYERS] == [32, 32] + [40] * 4 + [80] * 4 + [96] * 4 + [192] * 4 + [320]
    assert LAYERS[0].in_channels == 16 and LAYERS[-1].out_channels == 320
    assert [i + 1 for i in REDUCTION_LAYERS] == [1, 3, 7, 15]
    for a, b in zip(LAYERS, LAYERS[1:]):
        assert a.out_channels == b.in_channels


def test_space_sizes():
    assert SPACE_SE.size == 13 ** 19 and SPACE_NO_SE.size == 7 ** 19
    assert SPACE_NO_SE.choices == (0, 2, 4, 6, 8, 10, 12)
    restricted = SearchSpace(identity_everywhere=False)
    assert restricted.size == 13 ** 13 * 12 ** 6  # 6 layers change shape: 1, 3, 7, 11, 15, 19


@pytest.mark.parametrize("bad, msg", [
    ([0] * 18, "19 choice indices"),
    ([0] * 18 + [13], "out of range"),
    ([0] * 18 + [-1], "out of range"),
    ([0] * 18 + [1.5], "integer"),
    ([0] * 18 + ["3"], "integer"),
    ([0] * 18 + [True], "integer"),
])
def test_invalid_architectures(bad, msg):
    with pytest.raises(ArchitectureError, match=msg):
        Architecture(bad)


def test_identity_where_forbidden():
    arch = Architecture([12] + [0] * 18)
    SPACE_SE.validate(arch)  # the supernet space allows it
    with pytest.raises(ArchitectureError, match="layer 1 .*cannot be identity"):
        SearchSpace(identity_everywhere=False).validate(arch)
    with pytest.raises(ArchitectureError, match="not in this space"):
        SPACE_NO_SE.validate([1] + [0] * 18)


def test_string_roundtrip_equality_hash():
    for arch in (SCARLET_A, SCARLET_B, SCARLET_C, FIGURE3_ARCH):
        assert Architecture.parse(str(arch)) == arch
        assert Architecture.parse(",".join(map(str, arch))) == arch
        assert Architecture.parse(str(arch.tolist())) == arch
    assert str(SCARLET_C).split("-")[3] == "id"
    assert len({SCARLET_A, Architecture(SCARLET_A.tolist()), SCARLET_B}) == 2
    with pytest.raises(ArchitectureError, match="cannot parse 'e9k3'"):
        Architecture.parse("e9k3-" + "-".join(["id"] * 18))


def test_published_depths():
    assert (SCARLET_A.depth, SCARLET_B.depth, SCARLET_C.depth) == (19, 17, 16)


def test_uniform_sampling_seeded_and_in_space():
    for space in (SPACE_SE, SPACE_NO_SE):
        a = space.sample_uniform(7, n=50)
        assert a == space.sample_uniform(7, n=50)
        assert all(x.in_space(space) for x in a)
        counts = np.bincount(np.array([x.tolist() for x in space.sample_uniform(0, n=2000)]).ravel(), minlength=13)
        used = counts[list(space.choices)]
        assert used.min() > 0.8 * used.mean() and counts.sum() == used.sum()


@pytest.mark.parametrize("space", [SPACE_SE, SPACE_NO_SE])
def test_strict_fair_sampling(space):
    paths = space.sample_fair(42)
    assert len(paths) == space.num_choices
    grid = np.array([p.tolist() for p in paths])
    for layer in range(NUM_LAYERS):
        assert sorted(grid[:, layer]) == list(space.choices)  # each choice exactly once per layer
    assert paths == space.sample_fair(42) and paths != space.sample_fair(43)
    with pytest.raises(ArchitectureError, match="strict-fair"):
        SearchSpace(identity_everywhere=False).sample_fair(0)
