"""Exercise the library's GPU paths end to end (``device="cuda"``) and print a pass/fail table.

Not part of the CPU test suite (CI has no GPU). Run on a CUDA machine:

    python scripts/gpu_check.py --out figures/gpu_check.csv
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scarlet_lib  # noqa: E402  (torchvision compatibility before torchvision)
import pandas as pd  # noqa: E402
import torch  # noqa: E402

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def _grads(net):
    return {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}


@check
def fused_equals_sequential(device):
    from scarlet_lib.space import SPACE_SE
    from scarlet_lib.fair import fair_step
    from scarlet_lib.supernet import Supernet
    # ImageNet layout at 32x32: the last layers run at 2x2 and 1x1, so every fast kernel is used
    net = Supernet(SPACE_SE, identity_mode="let", width_mult=0.5, small_input=False, seed=0,
                   zero_init_residual=False).to(device)
    x, y = torch.randn(8, 3, 32, 32, device=device), torch.randint(0, 10, (8,), device=device)
    archs = SPACE_SE.sample_fair(0)
    out = {}
    for fused in (False, True):  # sequential with the plain modules vs fused with the fast kernels
        net.zero_grad(set_to_none=True)
        fair_step(net, x, y, archs, fused=fused, kernels="fast" if fused else "plain")
        out[fused] = _grads(net)
    # Global relative error: some true gradients are exactly 0 (a bias right before a BN) and show
    # only round-off, so a per-tensor ratio would be meaningless there.
    diff = torch.stack([(out[True][k] - out[False][k]).norm() for k in out[False]]).norm()
    err = (diff / torch.stack([g.norm() for g in out[False].values()]).norm()).item()
    assert err < 1e-3, f"relative gradient difference {err}"
    return f"max rel grad diff {err:.2e}"


@check
def train_supernet_resume(device):
    from scarlet_lib.data import get_data
    from scarlet_lib.space import SPACE_NO_SE
    from scarlet_lib.supernet import Supernet
    from scarlet_lib.train import train_supernet
    data = get_data("gratings", batch_size=32, num_train=512, num_heldout=128, seed=0)
    with tempfile.TemporaryDirectory() as d:
        runs = []
        for stop in (None, 1):
            net = Supernet(SPACE_NO_SE, identity_mode="let", width_mult=0.5, small_input=True, seed=0).to(device)
            kw = dict(epochs=2, steps_per_epoch=4, seed=0, device=device, eval_paths=2, eval_batches=1,
                      progress=False)
            if stop is None:
                runs.append(train_supernet(net, data, **kw))
            else:
                ck = Path(d) / "ck"
                train_supernet(net, data, checkpoint_dir=ck, stop_after=stop, **kw)
                net = Supernet(SPACE_NO_SE, identity_mode="let", width_mult=0.5, small_input=True, seed=0).to(device)
                runs.append(train_supernet(net, data, checkpoint_dir=ck, **kw))
    a, b = runs[0].steps, runs[1].steps
    diff = (a["loss"].to_numpy() - b["loss"].to_numpy()).__abs__().max()
    assert diff < 1e-3, f"resumed run differs by {diff}"
    return f"{len(a)} path-steps, resumed max loss diff {diff:.1e}"


@check
def train_standalone_let(device):
    from scarlet_lib.data import get_data
    from scarlet_lib.models import FIGURE3_ARCH
    from scarlet_lib.train import train_standalone
    data = get_data("gratings", batch_size=32, num_train=256, num_heldout=64, seed=0)
    res = train_standalone(FIGURE3_ARCH, data, epochs=1, identity_mode="let_relu", width_mult=0.5,
                           steps_per_epoch=4, device=device, progress=False)
    return f"{len(res.curves)} epoch rows"


@check
def shared_prefix_equals_one_by_one(device):
    from scarlet_lib.search import SupernetEvaluator
    from scarlet_lib.space import SPACE_SE
    from scarlet_lib.supernet import Supernet
    net = Supernet(SPACE_SE, identity_mode="let", width_mult=0.5, small_input=True, seed=0).to(device)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(2)]
    archs = SPACE_SE.sample_uniform(1, n=12)
    shared = SupernetEvaluator(net, batches, batches, device=device, share_prefix=True).evaluate(archs)
    alone = [SupernetEvaluator(net, batches, batches, device=device).evaluate_one(a) for a in archs]
    diff = max(abs(float(s) - float(a)) for s, a in zip(shared, alone))
    assert diff < 1e-6, f"shared-prefix accuracies differ by {diff}"
    return f"{len(archs)} models, max accuracy diff {diff}"


@check
def let_lemmas(device):
    from scarlet_lib.let import lemma_checks
    table = lemma_checks(device=device)
    assert table["as_expected"].all(), table[~table["as_expected"]]
    exact = table[table["expected_exact"]]
    return f"{len(table)} cases, max exact rel error {exact['rel_error'].max():.1e}"


@check
def validate_cli(device):
    from PIL import Image
    from scarlet_lib.models import get_model
    from scarlet_lib.validate import main
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "valid"
        for c in range(3):
            (root / f"n{c:08d}").mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (300, 260), (40 * c, 90, 30 * i)).save(root / f"n{c:08d}" / f"{i}.png")
        ck = Path(d) / "ScarletB.pth.tar"
        torch.save({"model_state": get_model("Scarlet_B").state_dict()}, ck)
        rc = main(["--model", "Scarlet_B", "--device", device, "--val-dataset-root", str(root),
                   "--pretrained-path", str(ck), "--no-progress"])
    assert rc == 0
    return "validate CLI ran"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="figures/gpu_check.csv")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda requested but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    rows = []
    for fn in CHECKS:
        t = time.perf_counter()
        try:
            detail, ok = fn(args.device), True
        except Exception as e:  # report every check, keep going
            detail, ok = f"{type(e).__name__}: {e}", False
            traceback.print_exc()
        rows.append({"check": fn.__name__, "ok": ok, "seconds": round(time.perf_counter() - t, 2), "detail": detail})
    table = pd.DataFrame(rows)
    table["device"] = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    table["torch"] = torch.__version__
    print(table.to_string(index=False))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    return 0 if table["ok"].all() else 1


if __name__ == "__main__":
    sys.exit(main())
