"""Calibrate the embedded grating dataset: held-out accuracy of a linear classifier, a small CNN and
(optionally) a strict-fair supernet. Prints a table and writes it as CSV.

    python scripts/calibrate_dataset.py [--size 32] [--cnn-epochs 4] [--supernet-steps 150] [--out runs/calibration.csv]
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from torch import nn

import scarlet_lib  # noqa: F401
from scarlet_lib.data import get_data
from scarlet_lib.evaluation import accuracy


def fit(model, bundle, epochs, opt, sched=None):
    for epoch in range(epochs):
        model.train()
        for x, y in bundle.train_batches(epoch):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            if sched is not None:
                sched.step()
    model.eval()
    return accuracy(model, bundle.heldout_loader)[0]


def linear(bundle, epochs, seed):
    torch.manual_seed(seed)
    s = bundle.image_size
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * s * s, bundle.num_classes))
    return fit(model, bundle, epochs, torch.optim.Adam(model.parameters(), 1e-3))


def small_cnn(bundle, epochs, seed):
    torch.manual_seed(seed)

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

    model = nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(128, bundle.num_classes))
    opt = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=epochs * bundle.steps_per_epoch)
    return fit(model, bundle, epochs, opt, sched)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--linear-epochs", type=int, default=20)
    p.add_argument("--cnn-epochs", type=int, default=4)
    p.add_argument("--supernet-steps", type=int, default=0, help="strict-fair steps (0: skip the supernet)")
    p.add_argument("--identity-mode", default="let")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--se", action="store_true", help="13-choice space (default: 7 choices, no SE)")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--compare", action="store_true",
                   help="identity vs LET supernets (same seed, shared weights): per-epoch mean/std of path accuracy")
    p.add_argument("--epochs", type=int, default=4, help="--compare: epochs of --supernet-steps // epochs steps")
    p.add_argument("--modes", default="identity,let")
    p.add_argument("--warmup", type=int, default=0, help="lr warm-up steps")
    p.add_argument("--classifier-scale-1000", action="store_true",
                   help="rescale the classifier's initial weights to U(+-1/sqrt(1000)) (the released ImageNet "
                        "range) instead of U(+-1/sqrt(num_classes))")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.compare:
        return compare(a)
    rows = []
    bundle = get_data("gratings", image_size=a.size, batch_size=64, seed=a.seed)
    for name, fn, epochs in (("linear (pixels)", linear, a.linear_epochs), ("small CNN", small_cnn, a.cnn_epochs)):
        if epochs:
            t = time.time()
            acc = fn(bundle, epochs, a.seed)
            rows.append(dict(model=name, epochs=epochs, heldout_acc=round(100 * acc, 1), seconds=round(time.time() - t)))
            print(rows[-1], flush=True)
    if a.supernet_steps:
        from scarlet_lib.space import SPACE_NO_SE, SPACE_SE
        from scarlet_lib.supernet import Supernet
        from scarlet_lib.train import train_supernet
        data = get_data("gratings", image_size=a.size, batch_size=32, seed=a.seed, stream=True,
                        num_train=32 * a.supernet_steps)
        net = Supernet(SPACE_SE if a.se else SPACE_NO_SE, a.identity_mode, a.width, 10, small_input=True, seed=a.seed)
        t = time.time()
        res = train_supernet(net, data, epochs=1, lr=a.lr, seed=a.seed, eval_paths=4, progress=False)
        last = res.steps[res.steps.step >= res.steps.step.max() - 20]
        rows.append(dict(model=f"fair supernet {a.identity_mode} w{a.width} ({'13' if a.se else '7'} choices)",
                         epochs=f"{a.supernet_steps} steps", heldout_acc=round(100 * res.evals.heldout_acc.mean(), 1),
                         train_acc_last20=round(100 * last.train_acc.mean(), 1), seconds=round(time.time() - t)))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if a.out:
        table.to_csv(a.out, index=False)


def compare(a):
    """Identity vs LET strict-fair supernets on a fresh-image stream; per-epoch path accuracy mean/std."""
    from scarlet_lib.space import SPACE_NO_SE, SPACE_SE
    from scarlet_lib.supernet import Supernet
    from scarlet_lib.train import train_supernet
    steps = a.supernet_steps // a.epochs
    data = get_data("gratings", image_size=a.size, batch_size=32, seed=a.seed, stream=True, num_train=32 * steps)
    tables = []
    for mode in a.modes.split(","):
        net = Supernet(SPACE_SE if a.se else SPACE_NO_SE, mode, a.width, 10, small_input=True, seed=a.seed)
        if a.classifier_scale_1000:
            with torch.no_grad():
                net.classifier.weight.mul_((10 / 1000) ** 0.5)
        t = time.time()
        res = train_supernet(net, data, epochs=a.epochs, lr=a.lr, seed=a.seed, eval_paths=4, eval_batches=1,
                             warmup_steps=a.warmup,
                             progress=False, checkpoint_dir=f"{a.out}/{mode}" if a.out else None)
        summary = res.epoch_summary().assign(identity_mode=mode, seconds=round(time.time() - t))
        print(summary.to_string(index=False), flush=True)
        tables.append(summary)
    table = pd.concat(tables)
    print(table.to_string(index=False))
    if a.out:
        table.to_csv(f"{a.out}/identity_vs_let.csv", index=False)
    return table


if __name__ == "__main__":
    main()
