"""Linear CKA (Kornblith et al. 2019) and the Figure 5 similarity tables built on it.

``hypothesis`` is not in the pinned environment, so the invariance properties are checked over seeded
random draws of shapes, rotations and scales instead.
"""
import numpy as np
import pytest

from scarlet_lib import analysis

DRAWS = [(seed, n, p) for seed, (n, p) in enumerate([(12, 3), (50, 8), (200, 24), (9, 30), (64, 1)])]


def _orthogonal(rng, p):
    q, r = np.linalg.qr(rng.normal(size=(p, p)))
    return q * np.sign(np.diag(r))


def _gram_cka(x, y):
    """The HSIC form with n x n Gram matrices, written independently of the feature-space form."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def test_linear_cka_of_one_feature_each_is_the_squared_correlation():
    x = np.array([[1.0], [2.0], [3.0], [5.0]])
    y = np.array([[2.0], [1.0], [4.0], [3.0]])
    # by hand: centred x = (-1.75, -0.75, 0.25, 2.25), centred y = (-0.5, -1.5, 1.5, 0.5); sum xy = 3.5,
    # sum x^2 = 8.75, sum y^2 = 5, so r^2 = 12.25 / 43.75 = 0.28
    assert analysis.linear_cka(x, y) == pytest.approx(0.28)


def test_linear_cka_of_a_plane_and_one_of_its_axes_is_one_over_root_two():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # x'x = 2 I (norm 2 sqrt 2), y'y = 2 (norm 2), y'x = (2, 0) (squared norm 4): 4 / (4 sqrt 2)
    assert analysis.linear_cka(x, x[:, :1]) == pytest.approx(1 / np.sqrt(2))


@pytest.mark.parametrize("seed,n,p", DRAWS)
def test_linear_cka_equals_the_gram_matrix_form(seed, n, p):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, p)), rng.normal(size=(n, p + 2)) + rng.normal(size=(n, 1))
    assert analysis.linear_cka(x, y) == pytest.approx(_gram_cka(x, y), rel=1e-10)


@pytest.mark.parametrize("seed,n,p", DRAWS)
def test_linear_cka_of_a_representation_with_itself_is_one(seed, n, p):
    x = np.random.default_rng(seed).normal(size=(n, p)) * 3 + 1
    assert analysis.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed,n,p", DRAWS)
def test_linear_cka_is_invariant_to_orthogonal_transforms_of_either_argument(seed, n, p):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, p)), rng.normal(size=(n, 4)) + rng.normal(size=(n, 1))
    base = analysis.linear_cka(x, y)
    qx, qy = _orthogonal(rng, p), _orthogonal(rng, 4)
    assert analysis.linear_cka(x @ qx, y) == pytest.approx(base, rel=1e-9, abs=1e-12)
    assert analysis.linear_cka(x, y @ qy) == pytest.approx(base, rel=1e-9, abs=1e-12)
    assert analysis.linear_cka(x, x @ qx) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed,n,p", DRAWS)
@pytest.mark.parametrize("scale", [1e-6, 0.3, 7.5, -2.0, 1e6])
def test_linear_cka_is_invariant_to_isotropic_scaling_of_either_argument(seed, n, p, scale):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, p)), rng.normal(size=(n, 3)) + rng.normal(size=(n, 1))
    base = analysis.linear_cka(x, y)
    assert analysis.linear_cka(scale * x, y) == pytest.approx(base, rel=1e-9, abs=1e-12)
    assert analysis.linear_cka(x, scale * y) == pytest.approx(base, rel=1e-9, abs=1e-12)


def test_linear_cka_is_not_invariant_to_a_general_invertible_linear_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    # stretch one axis 10x: by hand, x'x ~ n I, so CKA ~ 104 / sqrt(5 * 10004) = 0.465
    assert analysis.linear_cka(x, x @ np.diag([10.0, 1, 1, 1, 1])) == pytest.approx(0.465, abs=0.03)
    a = rng.normal(size=(5, 5))
    assert np.linalg.matrix_rank(a) == 5 and analysis.linear_cka(x, x @ a) < 0.99


def test_linear_cka_is_symmetric_bounded_and_ignores_offsets():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 2))
    v = analysis.linear_cka(x, y)
    assert 0 <= v <= 1 and v == pytest.approx(analysis.linear_cka(y, x))
    assert analysis.linear_cka(x + 5.0, y - np.arange(2)) == pytest.approx(v)


def test_linear_cka_refuses_mismatched_samples_and_is_nan_for_a_constant_representation():
    x = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="same samples"):
        analysis.linear_cka(x, x[:9])
    with pytest.raises(ValueError, match="at least 2 samples"):
        analysis.linear_cka(x[:1], x[:1])
    assert np.isnan(analysis.linear_cka(x, np.ones((10, 2))))


def test_feature_matrix_makes_positions_the_samples_and_channels_the_features():
    a = np.arange(2 * 3 * 4 * 5, dtype=float).reshape(2, 3, 4, 5)
    m = analysis.feature_matrix(a)
    assert m.shape == (2 * 4 * 5, 3) and m[0].tolist() == a[0, :, 0, 0].tolist()
    assert m[-1].tolist() == a[1, :, 3, 4].tolist()
    assert analysis.feature_matrix(a, "images").shape == (2, 60)
    with pytest.raises(ValueError, match="positions"):
        analysis.feature_matrix(a, "pixels")


def _rotated_choices(seed=0, channels=6):
    """Three choices of one layer: a map, a noisy copy, and the map with its channels rotated (a LET's 1x1 conv)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3, channels, 8, 8))
    rotated = np.einsum("nchw,cd->ndhw", a, _orthogonal(rng, channels))
    return {0: a, 2: a + 0.1 * rng.normal(size=a.shape), 12: rotated}


def test_a_rotated_channel_basis_keeps_cka_but_loses_the_channel_matched_cosine():
    f = _rotated_choices()
    assert analysis.layer_cka(f[0], f[12]) == pytest.approx(1.0, abs=1e-12)
    assert analysis.channel_cosine(f[0], f[12]) < 0.5 and analysis.channel_cosine(f[0], f[2]) > 0.95


def test_zero_padded_channels_leave_cka_at_one_and_halve_the_cosine():
    a = np.random.default_rng(1).normal(size=(2, 4, 6, 6))
    padded = np.concatenate([a, np.zeros_like(a)], axis=1)
    assert analysis.layer_cka(a, padded) == pytest.approx(1.0, abs=1e-12)
    assert analysis.channel_cosine(padded, np.concatenate([a, a], axis=1)) == pytest.approx(0.5)


def test_channel_similarity_keeps_its_cosine_column_and_adds_the_mean_cka():
    f = _rotated_choices()
    sims = analysis.channel_similarity(f).set_index("choice")
    assert list(sims.columns) == ["mean_cosine_to_others", "mean_cka_to_others"]
    for c in f:
        others = [o for o in f if o != c]
        assert sims.loc[c, "mean_cosine_to_others"] == pytest.approx(
            np.mean([analysis.channel_cosine(f[c], f[o]) for o in others]))
        assert sims.loc[c, "mean_cka_to_others"] == pytest.approx(
            np.mean([analysis.layer_cka(f[c], f[o]) for o in others]))
    assert sims.loc[12, "mean_cka_to_others"] > 0.95 > 0.5 > sims.loc[12, "mean_cosine_to_others"]
    assert list(analysis.channel_similarity(f, cka=False).columns) == ["choice", "mean_cosine_to_others"]


def test_choice_similarity_pairs_holds_every_ordered_pair_with_both_measures():
    f = _rotated_choices()
    pairs = analysis.choice_similarity_pairs(f)
    assert len(pairs) == 9 and list(pairs.columns) == ["choice_a", "choice_b", "cosine", "cka"]
    diag = pairs[pairs["choice_a"] == pairs["choice_b"]]
    assert np.allclose(diag["cka"], 1.0) and np.allclose(diag["cosine"], 1.0)
    m = pairs.set_index(["choice_a", "choice_b"])
    assert m.loc[(0, 12), "cka"] == pytest.approx(m.loc[(12, 0), "cka"])
    assert m.loc[(2, 12), "cka"] == pytest.approx(analysis.linear_cka(analysis.feature_matrix(f[2]),
                                                                       analysis.feature_matrix(f[12])))
