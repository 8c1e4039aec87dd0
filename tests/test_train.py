"""Training engine: logs, strict fairness of the sampled steps, exact resume, distributed equivalence,
stand-alone runs (shared initial weights, the paper's schedule), and clear errors."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from scarlet_lib.data import get_data
from scarlet_lib.models import FIGURE3_ARCH
from scarlet_lib.space import NUM_LAYERS, SPACE_NO_SE, Architecture
from scarlet_lib.fair import fair_step
from scarlet_lib.supernet import Supernet
from scarlet_lib.train import load_checkpoint_file, sample_paths, train_standalone, train_supernet

TINY = dict(width_mult=0.25, num_classes=10, small_input=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return get_data("gratings", root=root, batch_size=8, num_train=16, num_heldout=16, calib_batches=1)


def tiny_supernet(mode="let", seed=0):
    return Supernet(SPACE_NO_SE, mode, seed=seed, **TINY)


def test_fair_run_logs_every_path_of_every_step(data):
    res = train_supernet(tiny_supernet(), data, epochs=1, steps_per_epoch=1, eval_paths=2, eval_batches=1, seed=3,
                         progress=False)
    steps, m = res.steps, SPACE_NO_SE.num_choices
    assert len(steps) == m == 7
    assert list(steps.columns) == ["epoch", "step", "global_step", "path_id", "arch", "num_identity", "loss",
                                   "train_acc", "lr"]
    for step, group in steps.groupby("step"):
        archs = [Architecture.parse(s) for s in group.arch]
        assert archs == sample_paths(SPACE_NO_SE, "fair", 3, 0, step)  # the logged paths are the trained ones
        for layer in range(NUM_LAYERS):  # strict fairness: every choice once per layer
            assert sorted(a[layer] for a in archs) == list(SPACE_NO_SE.choices)
        assert list(group.num_identity) == [a.num_identity for a in archs]
    assert (steps.lr == 0.1).all()  # the lr of the step (cosine decay: see the resume test)
    assert steps.train_acc.between(0, 1).all() and (steps.loss > 0).all()
    assert len(res.evals) == 2 and res.evals.heldout_acc.between(0, 1).all()
    summary = res.epoch_summary()
    assert summary.paths.tolist() == [7]
    assert summary.train_acc_mean.iloc[0] == pytest.approx(steps.train_acc.mean())


def test_stopped_and_resumed_run_ends_exactly_like_an_uninterrupted_one(data, tmp_path):
    kw = dict(epochs=2, eval_paths=1, eval_batches=1, seed=1, progress=False, sampler="uniform", uniform_paths=2)
    straight = train_supernet(tiny_supernet(), data, checkpoint_dir=tmp_path / "a", **kw)
    # Stop in the middle of epoch 2: the last checkpoint is from the end of epoch 1.
    first = train_supernet(tiny_supernet(), data, checkpoint_dir=tmp_path / "b", stop_after=3, **kw)
    assert not first.completed and first.steps.global_step.max() == 2
    ckpt = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["logs"]["steps"]["loss"]) == 4
    resumed = train_supernet(tiny_supernet(), data, checkpoint_dir=tmp_path / "b", **kw)
    assert resumed.completed
    a, b = straight.supernet.state_dict(), resumed.supernet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.steps.equals(resumed.steps) and straight.evals.equals(resumed.evals)
    lrs = straight.steps.groupby("global_step").lr.first().tolist()
    assert lrs[0] == pytest.approx(0.1) and all(a > b for a, b in zip(lrs, lrs[1:]))  # cosine decay per step
    for name in ("steps.csv", "evals.csv", "summary.csv", "params.json"):
        assert (tmp_path / "b" / name).is_file()
    with pytest.raises(ValueError, match="other settings.*lr"):
        train_supernet(tiny_supernet(), data, checkpoint_dir=tmp_path / "b", lr=0.01, **kw)


def test_stopped_and_resumed_standalone_run_ends_exactly_like_an_uninterrupted_one(data, tmp_path):
    # the paper recipe: dropout draws from the RNG, whose state the checkpoint must carry
    kw = dict(epochs=2, identity_mode="let", seed=1, recipe="paper", width_mult=0.25, steps_per_epoch=2,
              eval_batches=1, progress=False)
    straight = train_standalone(FIGURE3_ARCH, data, checkpoint_dir=tmp_path / "a", **kw)
    first = train_standalone(FIGURE3_ARCH, data, checkpoint_dir=tmp_path / "b", stop_after=3, **kw)
    assert not first.completed and len(first.curves) == 1  # stopped in epoch 2; last.pt is from epoch 1
    assert load_checkpoint_file(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = train_standalone(FIGURE3_ARCH, data, checkpoint_dir=tmp_path / "b", **kw)
    assert resumed.completed
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(straight.curves, resumed.curves)
    assert (tmp_path / "b" / "curves.csv").is_file() and (tmp_path / "b" / "params.json").is_file()
    with pytest.raises(ValueError, match="other settings.*seed"):
        train_standalone(FIGURE3_ARCH, data, checkpoint_dir=tmp_path / "b", **{**kw, "seed": 2})


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_torchrun_two_gloo_ranks_match_a_single_process_averaging_shard_gradients(tmp_path):
    root = tmp_path / "data"
    cmd = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--standalone", "--nproc_per_node", "2",
           "-m", "scarlet_lib.train", "supernet", "--root", str(root), "--stream", "--num-train", "8",
           "--batch-size", "8", "--width", "0.25", "--sampler", "uniform", "--lr", "0.01", "--epochs", "1", "--eval-paths", "0", "--threads", "1",
           "--no-progress", "--out", str(tmp_path / "run")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    distributed = load_checkpoint_file(tmp_path / "run" / "last.pt")["model"]

    # Reference: one process, the same global batches and paths; each half of the batch (what each rank
    # sees, normalised by BN on its own) contributes half of the gradient.
    data = get_data("gratings", root=root, batch_size=8, num_train=8, stream=True)  # one step
    net = Supernet(SPACE_NO_SE, "let", seed=0, **TINY)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks ran on one thread each: same summation order
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=4e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=data.steps_per_epoch)
    for step, (x, y) in enumerate(data.train_batches(0, order_seed=0)):
        archs = sample_paths(net.space, "uniform", 0, 0, step)
        opt.zero_grad(set_to_none=True)
        for r in range(2):
            fair_step(net, x[r::2], y[r::2], archs)
        for p in net.parameters():
            if p.grad is not None:
                p.grad /= 2
        opt.step()
        sched.step()
    torch.set_num_threads(threads)
    ref = dict(net.named_parameters())
    worst = max((distributed[k] - v).abs().max().item() for k, v in ref.items())
    assert worst < 1e-5, worst
    untrained = Supernet(SPACE_NO_SE, "let", seed=0, **TINY).state_dict()
    assert max((distributed[k] - untrained[k]).abs().max().item() for k in ref) > 1e-3  # it did train


def test_standalone_let_and_let_relu_share_initial_weights_and_batches(data):
    kw = dict(epochs=1, seed=5, width_mult=0.25, lr=0.0, weight_decay=0.0, progress=False)
    let = train_standalone(FIGURE3_ARCH, data, identity_mode="let", **kw)
    relu = train_standalone(FIGURE3_ARCH, data, identity_mode="let_relu", **kw)
    pl, pr = dict(let.model.named_parameters()), dict(relu.model.named_parameters())
    assert pl.keys() == pr.keys() and any(".conv.weight" in k for k in pl)  # LET convs present in both
    assert all(torch.equal(pl[k], pr[k]) for k in pl)  # lr 0: still the (shared) initial weights
    assert let.curves.train_loss.iloc[0] != relu.curves.train_loss.iloc[0]  # only the ReLU differs
    assert list(let.curves.columns) == ["epoch", "identity_mode", "train_loss", "train_acc", "heldout_acc", "lr"]


def test_paper_recipe_decays_by_097_every_24_epochs(data):
    res = train_standalone(FIGURE3_ARCH, data, epochs=3, recipe="paper", width_mult=0.25, progress=False)
    base = 0.256 * 8 / 4096  # scaled to the batch of 8; 2 steps an epoch, so the decay comes after step 5
    assert res.curves.lr.tolist() == pytest.approx([base, base, base * 0.97])
    assert res.params["dropout"] == 0.2 and res.model.dropout.p == 0.2
    assert isinstance(res.model.dropout, torch.nn.Dropout) and res.params["weight_decay"] == 1e-5


def test_same_seed_machine_and_thread_count_give_identical_tables_in_fresh_processes(tmp_path):
    """Two cold runs of the command line, one thread each: every table byte for byte the same (issue 11)."""
    root = tmp_path / "data"
    tables = {}
    for run in ("a", "b"):
        cmd = [sys.executable, "-m", "scarlet_lib.train", "supernet", "--root", str(root), "--num-train", "16",
               "--batch-size", "8", "--width", "0.25", "--epochs", "2", "--eval-paths", "3", "--eval-images", "16",
               "--eval-every", "1", "--seed", "5", "--threads", "1", "--no-progress", "--out", str(tmp_path / run)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        tables[run] = {name: (tmp_path / run / name).read_bytes() for name in ("steps.csv", "evals.csv", "summary.csv")}
    assert tables["a"] == tables["b"]
    steps = pd.read_csv(tmp_path / "a" / "steps.csv")
    assert len(steps) == 2 * 2 * SPACE_NO_SE.num_choices and steps["loss"].nunique() > 1  # it trained, 2 x 2 steps


def test_bad_settings_get_clear_errors(data, tmp_path):
    net = tiny_supernet()
    with pytest.raises(ValueError, match="sampler must be one of"):
        train_supernet(net, data, sampler="greedy", progress=False)
    with pytest.raises(ValueError, match="reduction must be one of"):
        train_supernet(net, data, reduction="max", progress=False)
    with pytest.raises(ValueError, match="num_classes=10"):
        train_supernet(Supernet(SPACE_NO_SE, "let", width_mult=0.25, num_classes=5), data, progress=False)
    with pytest.raises(ValueError, match="1x1"):
        train_supernet(Supernet(SPACE_NO_SE, "let", width_mult=0.25, small_input=False), data, progress=False)
    with pytest.raises(ValueError, match="recipe must be one of"):
        train_standalone(FIGURE3_ARCH, data, recipe="adam", progress=False)
