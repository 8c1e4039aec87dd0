"""SearchSpace.sample_stratified: the fixed path set every one-shot supernet is scored on."""
from collections import Counter

import numpy as np
import pytest

from scarlet_lib import analysis
from scarlet_lib.space import (
    CHANNEL_CHANGE_LAYERS, IDENTITY, NUM_LAYERS, REDUCTION_LAYERS, SHAPE_CHANGE_LAYERS, SPACE_NO_SE, SPACE_SE,
    ArchitectureError, SearchSpace,
)


def _stratum(arch):
    return arch.num_identity, arch.identity_at_shape_change


def test_shape_change_layers_live_in_space_and_stay_importable_from_analysis():
    assert SHAPE_CHANGE_LAYERS == tuple(sorted(set(REDUCTION_LAYERS) | set(CHANNEL_CHANGE_LAYERS)))
    assert [i + 1 for i in SHAPE_CHANGE_LAYERS] == [1, 3, 7, 11, 15, 19]
    assert analysis.SHAPE_CHANGE_LAYERS is SHAPE_CHANGE_LAYERS


def test_equal_counts_per_stratum_rounded_up_and_exact_identity_counts():
    archs = SPACE_NO_SE.sample_stratified(100, seed=3)
    counts = Counter(_stratum(a) for a in archs)
    strata = [(k, flag) for k in (0, 2, 4, 6, 8) for flag in (False, True) if k or not flag]
    assert sorted(counts) == sorted(strata) and (0, True) not in counts
    assert set(counts.values()) == {12} and len(archs) == 108  # ceil(100 / 9) = 12 per stratum
    for a in archs:  # the strata are what they say
        ids = [i for i, c in enumerate(a) if c == IDENTITY]
        assert len(ids) == a.num_identity
        assert any(i in SHAPE_CHANGE_LAYERS for i in ids) == a.identity_at_shape_change
    assert [_stratum(a) for a in archs] == sorted((_stratum(a) for a in archs))  # stratum by stratum


def test_reproducible_distinct_and_extended_by_a_larger_n():
    a = SPACE_SE.sample_stratified(45, seed=7)
    assert a == SPACE_SE.sample_stratified(45, seed=7)
    assert a != SPACE_SE.sample_stratified(45, seed=8)
    assert len(set(a)) == len(a)
    bigger = SPACE_SE.sample_stratified(90, seed=7)  # 10 per stratum instead of 5
    for stratum in {_stratum(x) for x in a}:
        assert [x for x in a if _stratum(x) == stratum] == [x for x in bigger if _stratum(x) == stratum][:5]


def test_non_identity_choices_are_uniform_over_the_space():
    archs = SPACE_NO_SE.sample_stratified(300, seed=0, identity_counts=(0, 4))
    other = [c for a in archs for c in a if c != IDENTITY]
    freq = Counter(other)
    assert set(freq) == set(SPACE_NO_SE.choices) - {IDENTITY}
    expected = len(other) / 6
    assert all(0.85 * expected < v < 1.15 * expected for v in freq.values())
    for a in archs:
        SPACE_NO_SE.check(a)


def test_custom_counts_and_validation_errors():
    archs = SPACE_NO_SE.sample_stratified(4, seed=1, identity_counts=(1, 3))
    assert Counter(_stratum(a) for a in archs) == {(1, False): 1, (1, True): 1, (3, False): 1, (3, True): 1}
    for bad, msg in [(0, "n must be a positive integer"), (2.5, "n must be"), (True, "n must be")]:
        with pytest.raises(ValueError, match=msg):
            SPACE_NO_SE.sample_stratified(bad, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        SPACE_NO_SE.sample_stratified(10, seed=-1)
    for counts in [(), (0, 2, 2), (0, 20), (0, 1.5), "02"]:
        with pytest.raises(ValueError, match="identity_counts"):
            SPACE_NO_SE.sample_stratified(10, seed=0, identity_counts=counts)
    with pytest.raises(ArchitectureError, match=r"19 identities, none at .* cannot be realised"):
        SPACE_NO_SE.sample_stratified(10, seed=0, identity_counts=(19,))
    with pytest.raises(ArchitectureError, match="only 46656 distinct architectures"):  # 6 choices at 6 layers
        SPACE_NO_SE.sample_stratified(2 * 46657, seed=0, identity_counts=(13,))


def test_a_space_without_identity_at_shape_changing_layers():
    restricted = SearchSpace(se=False, identity_everywhere=False)
    hint = r"at least one at a stride-2 .*SearchSpace\(identity_everywhere=True\)"
    with pytest.raises(ArchitectureError, match=hint):
        restricted.sample_stratified(10, seed=0)
    archs = restricted.sample_stratified(10, seed=0, identity_counts=(0,))
    assert len(archs) == 10 and all(a.num_identity == 0 for a in archs)
    assert np.all([len(a) == NUM_LAYERS for a in archs])
