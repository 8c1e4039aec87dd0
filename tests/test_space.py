import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scarlet_lib.space import (
    CHOICES, IDENTITY, LAYERS, NUM_LAYERS, PARSE_FORMS, REDUCTION_LAYERS, SPACE_NO_SE, SPACE_SE, Architecture,
    ArchitectureError, SearchSpace,
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
    SPACE_SE.check(arch)  # the supernet space allows it
    with pytest.raises(ArchitectureError, match="layer 1 .*cannot be identity"):
        SearchSpace(identity_everywhere=False).check(arch)
    with pytest.raises(ArchitectureError, match="not in this space"):
        SPACE_NO_SE.check([1] + [0] * 18)


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



# -- Architecture.parse as properties ----------------------------------------------------------------------
architectures = st.lists(st.integers(0, len(CHOICES) - 1), min_size=NUM_LAYERS, max_size=NUM_LAYERS).map(Architecture)
SEPARATORS = [",", ", ", " ", ";", "|", "\t", " , "]


@settings(deadline=None)
@given(architectures, st.lists(st.booleans(), min_size=NUM_LAYERS, max_size=NUM_LAYERS), st.sampled_from(SEPARATORS))
def test_every_architecture_round_trips_through_each_of_its_text_forms(arch, as_token, sep):
    tokens, indices = str(arch).split("-"), [str(c) for c in arch]
    mixed = [t if tok else i for t, i, tok in zip(tokens, indices, as_token)]
    for text in (str(arch), str(arch).upper(), sep.join(indices), str(arch.tolist()), str(tuple(arch)),
                 f"  {sep.join(indices)}\n", sep.join(mixed), sep.join(tokens)):
        assert Architecture.parse(text) == arch, text


NEAR_MISSES = list("0123456789-+.,; |[]()eksidEKSID_x\t") + ["e3k3", "e6k7se", "id", "12", "-1", "2.5", "13", "\u0663"]


@settings(deadline=None, max_examples=300)
@given(st.one_of(st.text(), st.lists(st.sampled_from(NEAR_MISSES), max_size=60).map("".join)))
def test_garbage_text_is_a_value_error_naming_the_accepted_forms(text):
    try:
        arch = Architecture.parse(text)
    except ValueError as e:  # only ValueErrors (ArchitectureError), never IndexError, KeyError, ...
        assert isinstance(e, ArchitectureError) and PARSE_FORMS in str(e), str(e)
    else:  # text that happens to be a valid architecture reads back as itself
        assert Architecture.parse(str(arch)) == arch


bad_items = st.one_of(st.sampled_from(["-1", "2.5", "e9k3", "x", "1e3", "+-2", "\u0663", "e3k3-", "-id"]),
                      st.integers().filter(lambda i: not 0 <= i < len(CHOICES)).map(str))


@settings(deadline=None)
@given(architectures, st.integers(0, NUM_LAYERS - 1), bad_items, st.booleans())
def test_one_bad_item_in_a_valid_architecture_is_the_item_the_error_names(arch, at, bad, as_tokens):
    items = str(arch).split("-") if as_tokens else [str(c) for c in arch]
    text = ",".join(items[:at] + [bad] + items[at + 1:])
    with pytest.raises(ArchitectureError) as info:
        Architecture.parse(text)
    message = str(info.value)
    assert PARSE_FORMS in message
    assert f"{bad!r}" in message or f"index {bad} at layer {at + 1} " in message, message


def test_minus_is_not_a_separator_of_indices():
    with pytest.raises(ArchitectureError, match=r"choice index -1 at layer 19 .* out of range"):
        Architecture.parse(",".join(["0"] * 18 + ["-1"]))
    with pytest.raises(ArchitectureError, match=r"cannot parse '0' of '0-1-2.*'-' joins tokens only"):
        Architecture.parse("-".join(["0", "1", "2"] + ["0"] * 16))
    with pytest.raises(ArchitectureError, match="empty token"):
        Architecture.parse("e3k3--" + "-".join(["id"] * 18))
    with pytest.raises(TypeError, match="takes a string"):
        Architecture.parse(SCARLET_A.tolist())
