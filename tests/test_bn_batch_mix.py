"""scripts/bn_batch_mix.py and evaluation.batch_stat_accuracy: train-mode BN accuracy by the batch's class mix."""
import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch

from scarlet_lib.evaluation import batch_stat_accuracy
from scarlet_lib.recipes import SupernetRecipe

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bn_batch_mix.py"


def _script():
    spec = importlib.util.spec_from_file_location("bn_batch_mix", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_batch_stat_accuracy_normalises_by_each_batch_and_leaves_the_network_as_it_was():
    recipe = SupernetRecipe(identity_mode="identity", width=0.25, batch_size=8, epochs=1, steps_per_epoch=2,
                            eval_paths=3, eval_images=16)
    net = recipe.build(10, True).eval()
    data = recipe.data()
    batches = [b for _, b in zip(range(3), data.train_batches(0))]
    arch = recipe.eval_archs()[0]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    acc = batch_stat_accuracy(net, arch, batches)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and not net.training
    # by hand: every BatchNorm in train mode normalises by the batch's own statistics
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train()
    hits = n = 0
    with torch.no_grad():
        for x, y in batches:
            hits += (net(x, arch).argmax(1) == y).sum().item()
            n += len(y)
    assert acc == pytest.approx(hits / n)


def test_script_writes_the_mix_table_for_each_run(tmp_path):
    mod = _script()
    out = tmp_path / "figs"
    threads = torch.get_num_threads()
    rc = mod.main(["--base", "smoke", "--run", "a:arm=calibrated,identity_mode=identity",
                   "--run", "b:arm=calibrated,identity_mode=identity,stream_labels=iid", "--processes", "1",
                   "--batches", "2", "--cache", str(tmp_path / "cache"), "--out", str(out)])
    assert rc == 0 and torch.get_num_threads() == threads  # the caller's thread count is left as it was
    t = pd.read_csv(out / "bn_batch_mix.csv")
    assert list(t["run"]) == ["a", "b"] and list(t["stream_labels"]) == ["balanced", "iid"]
    for col in ("running_acc", "oneshot_acc", "trainmode_balanced", "trainmode_iid"):
        assert t[col].between(0, 1).all()
    assert (t["trainmode_images"] == 2 * 8).all() and (t["cpu_capability"].notna()).all()
    assert "trainmode_iid" in (out / "bn_batch_mix.md").read_text()
    with pytest.raises(SystemExit):
        mod.main(["--base", "smoke", "--run", "a:arm=nonsense", "--out", str(out)])
