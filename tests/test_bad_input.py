"""Bad input (issue 11): refused before any work with a clear error, or handled by a documented policy,
and nothing computed is lost: hyper-parameters and command lines, non-finite losses, evaluator outputs,
unreadable images, corrupt checkpoints, search states and cache entries."""
import json
import math
import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from scarlet_lib import cache
from scarlet_lib.data import DataError, SkipUnreadable, get_data
from scarlet_lib.models import CheckpointError, FIGURE3_ARCH, get_model
from scarlet_lib.recipes import SupernetRecipe
from scarlet_lib.search import CHECKPOINT_NAME as SEARCH_STATE, CheapEvaluator, SearchConfig, run_search
from scarlet_lib.search.core import check_accuracies
from scarlet_lib.space import NUM_LAYERS, SPACE_NO_SE, Architecture
from scarlet_lib.supernet import Supernet
from scarlet_lib.cli import main
from scarlet_lib.train import (
    CHECKPOINT_NAME, TrainingDiverged, TrainResult, check_output_dir, load_checkpoint_file, save_checkpoint,
    train_standalone, train_supernet,
)
from scarlet_lib.validate import main as validate_main

TINY = dict(width_mult=0.25, num_classes=10, small_input=True)
INDICES = ",".join(map(str, FIGURE3_ARCH))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return get_data("gratings", root=root, batch_size=8, num_train=16, num_heldout=8, calib_batches=1)


def tiny_supernet():
    return Supernet(SPACE_NO_SE, "let", seed=0, **TINY)


def run_cli(argv, capsys):
    """``python -m scarlet_lib.train`` in process: (exit code, stderr)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# -- 1. hyper-parameters and command lines: refused before any work --------------------------------------
@pytest.mark.parametrize("command", ["supernet", "standalone"])
@pytest.mark.parametrize("lr", ["nan", "inf", "-inf", "-0.1", "0", "11"])
def test_cli_refuses_a_learning_rate_that_is_not_finite_and_positive_before_any_work(command, lr, tmp_path, capsys):
    root, out = tmp_path / "data", tmp_path / "out"
    extra = ["--arch", INDICES] if command == "standalone" else []
    code, err = run_cli([command, f"--lr={lr}", "--root", str(root), "--out", str(out), *extra], capsys)
    assert code == 2 and "--lr must be a number in (0.0, 10.0]" in err and lr in err
    assert not root.exists() and not out.exists()  # no data generated, no output folder made


@pytest.mark.parametrize("args, message", [
    (["--stop-after", "-1"], "--stop-after must be a positive integer"),
    (["--stop-after", "0"], "--stop-after must be a positive integer"),
    (["--eval-batches", "0"], "--eval-batches must be a positive integer"),
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--batch-size", "-8"], "--batch-size must be a positive integer"),
    (["--threads", "0"], "--threads must be a positive integer"),
    (["--width", "inf"], "--width must be a number in (0.0, 4.0]"),
    (["--width", "nan"], "--width must be a number in (0.0, 4.0]"),
    (["--holdout", "nan"], "--holdout must be a number"),
    (["--warmup-steps", "-1"], "recipe warmup_steps=-1 is not accepted"),
    (["--dataset", "nonsense"], "recipe dataset='nonsense' is not accepted"),
    (["--device", "tpu"], "unknown device 'tpu'"),
])
def test_cli_refuses_bad_values_naming_the_flag_before_any_work(args, message, tmp_path, capsys):
    root = tmp_path / "data"
    code, err = run_cli(["supernet", "--root", str(root), *args], capsys)
    assert code == 2 and message in err, err
    assert not root.exists()


@pytest.mark.parametrize("arch, bad", [
    (",".join(["0"] * 18 + ["-1"]), "choice index -1 at layer 19"),
    (",".join(["1"] * 18 + ["2.5"]), "cannot parse '2.5'"),
])
def test_standalone_cli_refuses_an_architecture_naming_the_bad_item(arch, bad, tmp_path, capsys):
    code, err = run_cli(["standalone", f"--arch={arch}", "--root", str(tmp_path / "data")], capsys)
    assert code == 2 and bad in err and "accepted:" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cli_cuda_without_cuda_is_a_clear_error_not_an_assertion(tmp_path, capsys):
    code, err = run_cli(["supernet", "--device", "cuda", "--root", str(tmp_path / "data")], capsys)
    assert code == 2 and "CUDA is not available" in err and "--device cpu" in err


@pytest.mark.parametrize("change, message", [
    (dict(lr=float("nan")), "lr must be a number"),
    (dict(lr=float("inf")), "lr must be a number"),
    (dict(lr=-0.1), "lr must be a number"),
    (dict(momentum=float("nan")), "momentum must be a number in [0.0, 1.0]"),
    (dict(weight_decay=-1e-5), "weight_decay must be a number"),
    (dict(stop_after=-1), "stop_after must be a positive integer"),
    (dict(stop_after=0), "stop_after must be a positive integer"),
    (dict(eval_batches=0), "eval_batches must be a positive integer"),
])
def test_train_supernet_refuses_bad_values_before_touching_net_or_data(change, message):
    with pytest.raises(ValueError) as info:  # net and data None: the check comes first
        train_supernet(None, None, **change)
    assert message in str(info.value)


@pytest.mark.parametrize("change, message", [
    (dict(lr=float("nan")), "lr must be a number"),
    (dict(lr=-1.0), "lr must be a number"),
    (dict(weight_decay=float("inf")), "weight_decay must be a number"),
    (dict(dropout=1.5), "dropout must be a number in [0.0, 1.0]"),
    (dict(width_mult=float("inf")), "width_mult must be a number"),
    (dict(eval_batches=0), "eval_batches must be a positive integer"),
])
def test_train_standalone_refuses_bad_values_before_any_work(change, message):
    with pytest.raises(ValueError) as info:
        train_standalone(FIGURE3_ARCH, None, **change)
    assert message in str(info.value)


def test_a_stand_alone_model_too_large_for_memory_is_refused_before_it_is_built(data, tmp_path, monkeypatch):
    import time

    from scarlet_lib import costs

    monkeypatch.setattr(costs, "available_memory_bytes", lambda device: 2 ** 30)  # 1 GiB free
    started = time.perf_counter()
    with pytest.raises(MemoryError) as info:  # width 100: hundreds of GiB
        train_standalone(FIGURE3_ARCH, data, width_mult=100.0, checkpoint_dir=tmp_path / "run", progress=False)
    message = str(info.value)
    assert "width_mult 100.0" in message and "GiB free" in message and "lower width_mult" in message
    assert time.perf_counter() - started < 10  # before allocation (building it took 27 s)
    assert not (tmp_path / "run" / "last.pt").exists()
    train_standalone(FIGURE3_ARCH, data, width_mult=0.25, steps_per_epoch=1, eval_batches=1, progress=False)


any_number = st.one_of(st.floats(), st.integers(-10 ** 30, 10 ** 30))


@settings(deadline=None)
@given(st.sampled_from(["lr", "weight_decay", "momentum"]), any_number)
def test_a_training_setting_passes_its_check_exactly_when_it_is_finite_and_in_range(name, value):
    high = 1.0 if name == "momentum" else math.inf
    accepted = math.isfinite(value) and 0 <= value <= high
    # net and data None: a setting that passes its check reaches the data check (a TypeError) and no further
    with pytest.raises(TypeError if accepted else ValueError) as info:
        train_supernet(None, None, **{name: value})
    assert ("DataBundle" if accepted else f"{name} must be a number") in str(info.value)


def test_output_folder_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        check_output_dir(a_file)
    with pytest.raises(ValueError, match="cannot write to output folder"):
        check_output_dir(a_file / "below")  # a folder under a file cannot be made
    with pytest.raises(ValueError, match="exists and is not a folder"):
        train_supernet(None, None, checkpoint_dir=a_file)
    code, err = run_cli(["standalone", "--arch", INDICES, "--out", str(a_file), "--root", str(tmp_path / "d")], capsys)
    assert code == 2 and "exists and is not a folder" in err and not (tmp_path / "d").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder_is_refused_before_training(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="cannot write to output folder"):
            check_output_dir(locked)
    finally:
        locked.chmod(0o700)


def _poison_at(net, global_step):
    """Make ``net``'s training step see NaN images at ``global_step`` (its real forward and backward run).

    The fused step runs the stem once per step, so the stem's calls count the steps."""
    real, calls = net.stem_forward, []

    def stem_forward(x):
        calls.append(1)
        return real(x * float("nan") if len(calls) == global_step + 1 else x)

    net.stem_forward = stem_forward
    return net


def test_non_finite_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(data, tmp_path):
    kw = dict(epochs=2, eval_paths=0, progress=False, sampler="uniform", checkpoint_dir=tmp_path)
    with pytest.raises(TrainingDiverged) as info:  # 2 steps an epoch: global step 2 is epoch 1, step 0
        train_supernet(_poison_at(tiny_supernet(), 2), data, **kw)
    message = str(info.value)
    assert "global step 2 (epoch 1, step 0" in message and "path 0: nan" in message
    assert str(tmp_path / CHECKPOINT_NAME) in message and "is kept" in message
    ckpt = load_checkpoint_file(tmp_path / CHECKPOINT_NAME)
    assert ckpt["epoch"] == 1 and len(ckpt["logs"]["steps"]["loss"]) == 2  # the end of epoch 0, untouched
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values() if t.is_floating_point())
    assert not list(tmp_path.glob(".last.pt.tmp*"))


def test_non_finite_loss_in_a_standalone_run_stops_it_naming_the_step(data):
    nan_data = replace(data)
    nan_data.train_batches = lambda *a, **k: ((x * float("nan") if i == 1 else x, y)
                                              for i, (x, y) in enumerate(data.train_batches(*a, **k)))
    with pytest.raises(TrainingDiverged, match=r"global step 1 \(epoch 0, step 1.*no checkpoint"):
        train_standalone(FIGURE3_ARCH, nan_data, width_mult=0.25, progress=False)


def test_params_json_is_strict_json_and_a_non_finite_value_is_refused(tmp_path):
    steps = pd.DataFrame(columns=["epoch", "loss", "train_acc"])
    TrainResult(steps, pd.DataFrame(), {"lr": 0.1, "nested": {"x": 1.0}}).save(tmp_path / "ok")
    def refuse(constant):
        raise ValueError(f"bare {constant} in params.json")
    assert json.loads((tmp_path / "ok" / "params.json").read_text(), parse_constant=refuse)["lr"] == 0.1
    with pytest.raises(ValueError, match=r"params.json.*lr is not finite"):
        TrainResult(steps, pd.DataFrame(), {"lr": float("nan")}).save(tmp_path / "bad")
    assert not (tmp_path / "bad" / "params.json").exists()


# -- 3. what an evaluator returns ---------------------------------------------------------------------
class Returning(CheapEvaluator):
    """A cheap evaluator whose answers are bent by ``bend`` (what a broken evaluator returns)."""

    name = "bent"

    def __init__(self, bend):
        super().__init__(0)
        self.bend = bend

    def evaluate(self, archs):
        return self.bend(super().evaluate(archs))


def _set(i, value):
    def bend(acc):
        acc = acc.copy()
        acc[i] = value
        return acc
    return bend


@pytest.mark.parametrize("bend, message", [
    (lambda acc: acc[:-1], r"5 value\(s\) of shape \(5,\) for 6 architectures"),
    (lambda acc: np.concatenate([acc, acc]), r"12 value\(s\) of shape \(12,\) for 6"),
    (lambda acc: acc[:, None], r"6 value\(s\) of shape \(6, 1\)"),
    (lambda acc: [], r"0 value\(s\)"),
    (_set(0, np.nan), r"1 accuracy\(ies\) that are not finite fractions in \[0, 1\]: .*: nan"),
    (_set(1, np.inf), r": inf"),
    (_set(2, 5.0), r": 5\.0"),
    (_set(0, -0.25), r": -0\.25"),
    (lambda acc: acc * 100, r"not percentages"),
    (lambda acc: ["high"] * len(acc), r"not a list of numbers"),
])
def test_search_refuses_what_a_broken_evaluator_returns_naming_it_and_the_values(bend, message):
    config = SearchConfig(population=6, generations=1, madds_limit=1e12)
    with pytest.raises(ValueError, match=r"evaluator 'bent' returned .*" + message):
        run_search(Returning(bend), config, seed=0, costs=_costs(), progress=False)


@settings(deadline=None)
@given(st.lists(st.floats(), max_size=8), st.integers(0, 8))
def test_evaluator_output_is_kept_exactly_when_it_is_one_fraction_per_architecture(values, n):
    archs = SPACE_NO_SE.sample_uniform(0, n=n)
    if len(values) == n and all(math.isfinite(v) and 0 <= v <= 1 for v in values):
        assert check_accuracies(CheapEvaluator(), archs, values).tolist() == values
    else:
        with pytest.raises(ValueError, match=r"evaluator 'cheap' returned .*one (accuracy in \[0, 1\] )?per "
                                             r"architecture"):
            check_accuracies(CheapEvaluator(), archs, values)


def test_check_accuracies_names_each_bad_architecture():
    archs = SPACE_NO_SE.sample_uniform(0, n=3)
    assert check_accuracies(CheapEvaluator(), archs, [0.0, 0.5, 1.0]).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError) as info:
        check_accuracies(CheapEvaluator(), archs, [0.5, float("nan"), 1.5])
    assert f"{archs[1]}: nan" in str(info.value) and f"{archs[2]}: 1.5" in str(info.value)
    assert "evaluator 'cheap'" in str(info.value) and f"{archs[0]}:" not in str(info.value)


def _costs():
    from scarlet_lib.costs import CostTable
    from scarlet_lib.space import CHOICES
    size = np.array([0 if c.is_identity else c.expansion * c.kernel for c in CHOICES], dtype=np.int64)
    return CostTable(1_000_000, 10_000, np.tile(size * 1000, (NUM_LAYERS, 1)), np.tile(size * 10, (NUM_LAYERS, 1)))


# -- 4. unreadable images --------------------------------------------------------------------------------
def _image_folder(root: Path, per_class=6, classes=2, size=16, fmt="png") -> list[Path]:
    rng = np.random.default_rng(0)
    files = []
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            files.append(d / f"{i}.{fmt}")
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(files[-1])
    return files


def _truncated_jpeg(path: Path, size=64):
    """A JPEG whose header is intact but whose data stops early: passes the header check, fails to decode."""
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[:data.index(b"\xff\xda") + 200])  # cut 200 bytes into the scan


def test_unreadable_image_files_are_left_out_up_front_and_named(tmp_path):
    files = _image_folder(tmp_path / "train")
    files[1].write_bytes(b"not an image at all")
    files[7].write_bytes(files[7].read_bytes()[:40])  # a truncated PNG: its checksums fail
    (tmp_path / "train" / "class0" / "empty.jpg").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="3 unreadable image file") as record:
        d = get_data("imagefolder", root=tmp_path, image_size=32, batch_size=2, holdout=2, calib_batches=1)
    message = str(record[0].message)
    assert str(files[1]) in message and str(files[7]) in message and "empty.jpg" in message
    assert len(d.train_set) + len(d.heldout_set) == len(files) - 2
    assert sum(1 for _ in d.train_batches(0)) == d.steps_per_epoch  # the epoch runs through


def test_an_image_that_fails_while_decoding_is_skipped_and_named_not_the_epoch(tmp_path):
    _image_folder(tmp_path / "train", per_class=4)
    bad = tmp_path / "train" / "class1" / "bad.jpg"
    _truncated_jpeg(bad)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        d = get_data("imagefolder", root=tmp_path, image_size=32, batch_size=3, holdout=2, calib_batches=3,
                     augment=False)
        assert isinstance(d.train_set, SkipUnreadable)
        batches = list(d.train_batches(0)) + list(d.heldout_loader)
    named = [str(w.message) for w in record if str(bad) in str(w.message)]
    assert named and "skipped" in named[0] and "cannot read image" in named[0]
    assert len(batches) == d.steps_per_epoch + 1 and all(len(x) == len(y) for x, y in batches)


def test_an_image_folder_of_nothing_readable_is_a_data_error(tmp_path):
    files = _image_folder(tmp_path, per_class=1)
    for f in files:
        f.write_bytes(b"junk")
    with pytest.raises(DataError, match="no usable images") as info:
        get_data("imagefolder", root=tmp_path, image_size=32, batch_size=1, holdout=1)
    assert "2 unreadable image file(s)" in str(info.value) and all(str(f) in str(info.value) for f in files)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    path = tmp_path_factory.mktemp("pretrained") / "ScarletC.pth.tar"
    torch.save({"model_state": get_model("Scarlet_C").state_dict()}, path)
    return path


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("damage", ["header", "decoding"])
def test_validate_exits_with_its_error_line_naming_an_unreadable_image(damage, workers, released, tmp_path, capsys):
    _image_folder(tmp_path, per_class=1, classes=2, size=32)
    bad = tmp_path / "class0" / "0.jpg"
    if damage == "header":
        bad.write_bytes(b"\x89PNG garbage")
    else:
        _truncated_jpeg(bad)
    code = validate_main(["--model", "Scarlet_C", "--device", "cpu", "--val-dataset-root", str(tmp_path),
                          "--pretrained-path", str(released), "--workers", str(workers), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert str(bad) in err and "Traceback" not in err


# -- 5. corrupt files the suite wrote --------------------------------------------------------------------
def _damaged(path: Path, how: str) -> None:
    if how == "garbage":
        path.write_bytes(b"\x00garbage\xff" * 10)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        torch.save({"format": "x", "params": {}, "model": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif how == "foreign":
        torch.save({"model": {"w": torch.zeros(3)}}, path)  # a readable torch file, but not a checkpoint
    elif how == "folder":
        path.mkdir()


@pytest.mark.parametrize("how", ["garbage", "empty", "truncated", "foreign"])
def test_corrupt_training_checkpoint_is_one_error_naming_the_file_and_what_to_do(how, data, tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    _damaged(path, how)
    with pytest.raises(CheckpointError) as info:
        train_supernet(tiny_supernet(), data, eval_paths=0, progress=False, checkpoint_dir=tmp_path)
    assert str(path) in str(info.value) and "delete" in str(info.value)
    with pytest.raises(CheckpointError, match="training checkpoint"):
        load_checkpoint_file(path)


def test_checkpoint_path_that_is_a_folder_is_refused_before_training(data, tmp_path):
    _damaged(tmp_path / CHECKPOINT_NAME, "folder")
    with pytest.raises(ValueError, match="last.pt' exists and is not a file"):
        train_supernet(tiny_supernet(), data, eval_paths=0, progress=False, checkpoint_dir=tmp_path)


def test_orphan_temporary_checkpoints_of_killed_writes_are_removed_on_the_next_save(tmp_path):
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    orphan, mine = tmp_path / f".last.pt.tmp{dead}", tmp_path / f".last.pt.tmp{os.getppid()}"  # parent: alive
    orphan.write_bytes(b"half a checkpoint")
    mine.write_bytes(b"another live writer's file")
    save_checkpoint({"x": torch.ones(2)}, tmp_path / CHECKPOINT_NAME)
    assert not orphan.exists() and mine.exists()
    assert torch.equal(torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["x"], torch.ones(2))


@pytest.mark.parametrize("how", ["garbage", "truncated", "foreign"])
def test_corrupt_search_state_is_one_error_naming_the_file_and_what_to_do(how, tmp_path):
    _damaged(tmp_path / SEARCH_STATE, how)
    config = SearchConfig(population=6, generations=1, madds_limit=1e12)
    with pytest.raises(CheckpointError) as info:
        run_search(CheapEvaluator(0), config, seed=0, costs=_costs(), progress=False, checkpoint_dir=tmp_path)
    assert str(tmp_path / SEARCH_STATE) in str(info.value) and "delete" in str(info.value)


def test_corrupt_cache_entry_is_rebuilt_with_a_warning(tmp_path):
    made = []

    def create(folder):
        made.append(folder)
        np.save(folder / "value.npy", np.arange(5))

    def read(folder):
        return np.load(folder / "value.npy")

    store = cache.Cache("things", tmp_path)
    assert store.load({"n": 5}, create, read).tolist() == [0, 1, 2, 3, 4] and len(made) == 1
    entry = store.path({"n": 5}) / "value.npy"
    entry.write_bytes(entry.read_bytes()[:20])  # truncated on disk
    with pytest.warns(RuntimeWarning, match=r"cache entry .* cannot be read .*removed and will be rebuilt"):
        assert store.load({"n": 5}, create, read).tolist() == [0, 1, 2, 3, 4]
    assert len(made) == 2 and store.load({"n": 5}, create, read).tolist() == [0, 1, 2, 3, 4] and len(made) == 2


TINY_RECIPE = SupernetRecipe(width=0.25, batch_size=8, epochs=1, steps_per_epoch=1, warmup_steps=0, eval_paths=0,
                             eval_images=8)


def test_corrupt_supernet_cache_entry_is_retrained_not_failing_every_rerun(tmp_path):
    first = cache.supernet_run(TINY_RECIPE, "cpu", tmp_path)
    (first.folder / "supernet.pt").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match=f"cache entry {first.folder} cannot be read .*supernet.pt"):
        again = cache.supernet_run(TINY_RECIPE, "cpu", tmp_path)
    assert again.created and again.folder == first.folder
    for a, b in zip(first.supernet.state_dict().values(), again.supernet.state_dict().values()):
        assert torch.equal(a, b)  # rebuilt: the same supernet
    assert not cache.supernet_run(TINY_RECIPE, "cpu", tmp_path).created  # and read from the cache from now on


def test_corrupt_supernet_cache_entries_are_retrained_by_supernet_runs_too(tmp_path):
    first = cache.supernet_run(TINY_RECIPE, "cpu", tmp_path)
    (first.folder / "steps.csv").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="EmptyDataError"):  # damaged and not to be trained: a miss
        assert cache.supernet_run(TINY_RECIPE, "cpu", tmp_path, train=False) is None
    runs = cache.supernet_runs([TINY_RECIPE, TINY_RECIPE], "cpu", tmp_path, processes=1)
    assert all(r.created for r in runs) and len(runs[0].steps) == 7 and runs[0].steps.equals(first.steps)
