"""Data: the embedded grating dataset, splits, sharded batches, and clear errors for bad requests."""
import numpy as np
import pytest
import torch

from scarlet_lib.data import (
    GRATING_DIFFICULTIES, DataBundle, DataError, EpochBatchSampler, GratingDataset, GratingSpec, check_input_size,
    derive_seed, generate_gratings, get_data, holdout_split,
)


def test_gratings_are_deterministic_balanced_uint8_images():
    x1, y1 = generate_gratings(200, 16, seed=3)
    x2, y2 = generate_gratings(200, 16, seed=3)
    x3, _ = generate_gratings(200, 16, seed=4)
    assert x1.shape == (200, 3, 16, 16) and x1.dtype == torch.uint8 and y1.dtype == torch.int64
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    assert torch.equal(torch.bincount(y1, minlength=10), torch.full((10,), 20))
    assert x1.float().std() > 20  # real images, not blank


def _features_accuracy(features, labels, n_train):
    """Held-out accuracy of a ridge-regression classifier (one-hot targets) on given features."""
    f = torch.cat([features, torch.ones(len(features), 1)], 1).double()
    a, b = f[:n_train], f[n_train:]
    onehot = torch.nn.functional.one_hot(labels[:n_train], 10).double()
    w = torch.linalg.solve(a.T @ a + 1e-1 * torch.eye(a.shape[1], dtype=torch.double), a.T @ onehot)
    return ((b @ w).argmax(1) == labels[n_train:]).double().mean().item()


@pytest.mark.parametrize("difficulty, linear_max", [("easy", 0.3), ("standard", 0.25), ("hard", 0.2)])
def test_gratings_are_not_linearly_separable_but_learnable_from_spectra(difficulty, linear_max):
    # The label lives in orientation/frequency with random phase: the class-mean image is flat, so linear in
    # pixels stays near chance (a little above it on the cleaner preset: the classes lie on different
    # low-noise subspaces), while the same linear classifier on the (phase-free) power spectrum of the grey
    # image is far above it.
    x, y = generate_gratings(3000, 16, seed=0, difficulty=difficulty)
    xf = GratingDataset.normalise(x)
    pixels = xf.flatten(1)
    power = torch.fft.rfft2(xf.mean(1)).abs().flatten(1)
    lin = _features_accuracy(pixels, y, 2400)
    spec = _features_accuracy(power, y, 2400)
    assert lin < linear_max, lin
    assert spec > 0.4, spec
    assert spec > lin + 0.25


def test_difficulty_presets_differ_are_cached_apart_and_reach_the_stream(tmp_path):
    std, _ = generate_gratings(50, 16, seed=1)
    hard, _ = generate_gratings(50, 16, seed=1, difficulty="hard")
    assert not torch.equal(std, hard)
    assert torch.equal(std, generate_gratings(50, 16, seed=1, difficulty=GRATING_DIFFICULTIES["standard"])[0])
    # the standard preset is the cleaner one: less pixel noise around each grating
    assert GRATING_DIFFICULTIES["standard"].noise < GRATING_DIFFICULTIES["hard"].noise
    easy, standard = GRATING_DIFFICULTIES["easy"], GRATING_DIFFICULTIES["standard"]
    assert easy.noise < standard.noise and easy.orientation_jitter < standard.orientation_jitter
    assert min(easy.contrast) > min(standard.contrast) and easy.bands == standard.bands  # same classes, clearer
    custom = GratingSpec(noise=0.0, orientation_jitter=0.0)
    for difficulty in ("standard", "hard", custom):
        d = get_data("gratings", root=tmp_path, batch_size=8, num_train=16, num_heldout=8, stream=True,
                     calib_batches=1, difficulty=difficulty)
        x, y = next(d.train_batches(0, order_seed=2))
        ref, ref_y = generate_gratings(8, 32, derive_seed("stream", 2, 0, 0), difficulty=difficulty)
        assert torch.equal(x, GratingDataset.normalise(ref)) and torch.equal(y, ref_y)
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(names) == 6 and any("-hard-" in n for n in names) and any("-custom" in n for n in names)
    with pytest.raises(DataError, match="unknown grating difficulty 'trivial'.*standard"):
        get_data("gratings", root=tmp_path, difficulty="trivial")


def test_cache_is_written_and_reused(tmp_path):
    b1 = get_data("gratings", root=tmp_path, batch_size=8, num_train=64, num_heldout=32, calib_batches=2)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.startswith("gratings-") and f.endswith(".pt") for f in files)
    b2 = get_data("gratings", root=tmp_path, batch_size=8, num_train=64, num_heldout=32, calib_batches=2)
    assert torch.equal(b1.train_set.images, b2.train_set.images)
    assert not torch.equal(b1.train_set.images[:32], b1.heldout_set.images)  # separate streams
    assert len(b1.calib_batches) == 2 and b1.calib_batches[0][0].shape == (8, 3, 32, 32)
    assert isinstance(b1, DataBundle) and b1.num_classes == 10 and b1.small_input and b1.steps_per_epoch == 8


def test_epoch_order_is_seeded_and_shards_partition_each_global_batch():
    one = EpochBatchSampler(40, 8, seed=1)
    one.set_epoch(2)
    full = list(one)
    shards = []
    for rank in range(2):
        s = EpochBatchSampler(40, 8, seed=1, rank=rank, world_size=2)
        s.set_epoch(2)
        shards.append(list(s))
    assert len(full) == 5
    for k, batch in enumerate(full):
        assert sorted(shards[0][k] + shards[1][k]) == sorted(batch)
        assert not set(shards[0][k]) & set(shards[1][k])
    other = EpochBatchSampler(40, 8, seed=1)
    other.set_epoch(3)
    assert list(other) != full  # a new order every epoch
    resumed = EpochBatchSampler(40, 8, seed=1)
    resumed.set_epoch(2, start=3)
    assert list(resumed) == full[3:]


def test_stream_gives_fresh_deterministic_batches_and_rank_slices(tmp_path):
    d = get_data("gratings", root=tmp_path, batch_size=8, num_train=32, num_heldout=16, stream=True, calib_batches=1)
    assert d.stream and d.steps_per_epoch == 4
    e0 = list(d.train_batches(0, order_seed=5))
    again = list(d.train_batches(0, order_seed=5))
    e1 = list(d.train_batches(1, order_seed=5))
    assert len(e0) == 4 and all(torch.equal(a[0], b[0]) for a, b in zip(e0, again))
    assert not torch.equal(e0[0][0], e0[1][0]) and not torch.equal(e0[0][0], e1[0][0])
    r0 = list(d.train_batches(0, order_seed=5, rank=0, world_size=2))
    r1 = list(d.train_batches(0, order_seed=5, rank=1, world_size=2))
    for (x, y), (x0, y0), (x1, y1) in zip(e0, r0, r1):
        assert torch.equal(torch.cat([x0, x1]).sort(0).values, x.sort(0).values) and len(y0) == len(y1) == 4


def test_holdout_split_fraction_and_count_are_seeded_and_disjoint():
    tr, ho = holdout_split(100, 0.2, seed=0)
    assert len(ho) == 20 and len(tr) == 80 and sorted(tr + ho) == list(range(100))
    assert holdout_split(100, 0.2, seed=0) == (tr, ho) and holdout_split(100, 0.2, seed=1) != (tr, ho)
    tr, ho = holdout_split(100, 7, seed=0)
    assert len(ho) == 7
    for bad in (0.0, 1.5, 0, 100, "10%"):
        with pytest.raises(DataError):
            holdout_split(100, bad)


def _make_image_folder(root, classes=3, per_class=6, size=20):
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / "train" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_image_folder_with_count_holdout(tmp_path):
    _make_image_folder(tmp_path)
    d = get_data("imagefolder", root=tmp_path, image_size=32, batch_size=4, holdout=5, seed=0, calib_batches=1)
    assert d.num_classes == 3 and len(d.heldout_set) == 5 and len(d.train_set) == 13
    assert not set(d.train_set.indices) & set(d.heldout_set.indices)
    x, y = next(d.train_batches(0))
    assert x.shape == (4, 3, 32, 32) and y.max() < 3
    xh, _ = next(iter(d.heldout_loader))
    assert xh.shape == (5, 3, 32, 32)


def test_bad_requests_get_clear_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*accepted"):
        get_data("mnist", root=tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        get_data("imagefolder", root=tmp_path / "nowhere", image_size=64)
    with pytest.raises(DataError, match=r"1x1.*image_size >= 64 or small_input=True"):
        get_data("gratings", root=tmp_path, image_size=32, small_input=False)
    with pytest.raises(DataError, match=r"image_size >= 32"):
        check_input_size(16, small_input=True)
    check_input_size(64, small_input=False)  # accepted
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*download=True"):
        get_data("cifar10", root=tmp_path)
    with pytest.raises(DataError, match="stream=True exists only"):
        get_data("cifar10", root=tmp_path, stream=True)
