#!/usr/bin/env python
"""Benchmark: shared-prefix vs one-by-one population evaluation on a small supernet, in one run.

For each population kind it evaluates the same population three ways and reports models/second:

* ``one_by_one``: ``evaluation.evaluate_path`` per model (the reference: BN recalibration, then accuracy);
* ``walk_per_model``: the evaluator's prefix walk called once per model (same arithmetic as one-by-one
  without ``evaluate_path``'s per-call state save/restore; isolates the gain of sharing itself);
* ``shared_prefix``: ``SupernetEvaluator(share_prefix=True).evaluate(population)`` in one call.

Population kinds: ``random`` (uniform models: they share little beyond the stem and first layer) and
``evolved`` (children of a few parents with ~2 layers changed each, like a late NSGA-II population).
Inputs are random tensors (timing does not depend on image content); the supernet is untrained.
Writes ``figures/population_eval_bench.csv`` and ``.md`` and prints the table.

    python scripts/bench_population_eval.py --device cpu --width 0.5 --population 20
    python scripts/bench_population_eval.py --device cuda --width 1.0 --population 70 --batch-size 128
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import scarlet_lib  # noqa: E402,F401
from scarlet_lib.artifacts import markdown_table  # noqa: E402
from scarlet_lib.evaluation import evaluate_path  # noqa: E402
from scarlet_lib.search import SupernetEvaluator  # noqa: E402
from scarlet_lib.space import NUM_LAYERS, SPACE_SE, Architecture  # noqa: E402
from scarlet_lib.supernet import Supernet  # noqa: E402


def population(kind: str, n: int, rng: np.random.Generator) -> list[Architecture]:
    if kind == "random":
        return SPACE_SE.sample_uniform(rng, n=n)
    if kind == "evolved":
        parents = [np.array(a.tolist()) for a in SPACE_SE.sample_uniform(rng, n=4)]
        out = []
        for i in range(n):
            child = parents[i % len(parents)].copy()
            layers = rng.choice(NUM_LAYERS, size=2, replace=False)
            child[layers] = rng.integers(0, 13, size=2)
            out.append(Architecture(child.tolist()))
        return out
    raise ValueError(f"unknown population kind {kind!r}; accepted: random, evolved")


def shared_module_runs(archs) -> int:
    """Module runs of the shared walk: the stem once, one candidate per distinct prefix, a head per model.

    (Evaluating a model alone runs 21: stem, 19 layers, head.)"""
    distinct = set(archs)
    return 1 + len({a.choices[:d] for a in distinct for d in range(1, NUM_LAYERS + 1)}) + len(distinct)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--width", type=float, default=0.5, help="supernet width multiplier")
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--calib-batches", type=int, default=2)
    ap.add_argument("--eval-batches", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=32, help="square input (small_input stem, CIFAR-like)")
    ap.add_argument("--kinds", default="random,evolved")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "figures"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")

    net = Supernet(SPACE_SE, "let", width_mult=args.width, num_classes=10, small_input=True, seed=args.seed).to(device)
    g = torch.Generator().manual_seed(args.seed)
    batch = lambda: (torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g),
                     torch.randint(0, 10, (args.batch_size,), generator=g))
    calib = [batch() for _ in range(args.calib_batches)]
    evals = [batch() for _ in range(args.eval_batches)]
    shared = SupernetEvaluator(net, calib, evals, device=device, share_prefix=True)
    calib_d, evals_d = shared.calib, shared.eval_batches  # already on the device
    rng = np.random.default_rng(args.seed)

    warm = SPACE_SE.sample_uniform(rng, n=2)  # first calls pay for allocator / kernel selection
    shared.evaluate(warm)
    evaluate_path(net, warm[0], calib_d, evals_d, device)

    rows = []
    for kind in args.kinds.split(","):
        archs = population(kind, args.population, rng)
        ref, t_ref = timed(lambda: np.array([evaluate_path(net, a, calib_d, evals_d, device) for a in archs]), device)
        alone, t_alone = timed(lambda: np.concatenate([shared.evaluate([a]) for a in archs]), device)
        both, t_shared = timed(lambda: shared.evaluate(archs), device)
        runs = shared_module_runs(archs)
        common = dict(kind=kind, device=str(device), width=args.width, population=len(archs),
                      distinct=len(set(archs)), image=args.image_size, batch=args.batch_size,
                      calib_batches=args.calib_batches, eval_batches=args.eval_batches)
        alone_runs = (NUM_LAYERS + 2) * len(archs)
        for method, seconds, acc, module_runs in (("one_by_one", t_ref, ref, alone_runs),
                                                  ("walk_per_model", t_alone, alone, alone_runs),
                                                 ("shared_prefix", t_shared, both, runs)):
            rows.append({**common, "method": method, "seconds": seconds, "models_per_s": len(archs) / seconds,
                         "speedup_vs_one_by_one": t_ref / seconds, "module_runs": module_runs,
                         "max_abs_acc_diff": float(np.abs(acc - ref).max())})
    table = pd.DataFrame(rows)
    os.makedirs(args.out_dir, exist_ok=True)
    csv = os.path.join(args.out_dir, "population_eval_bench.csv")
    md = os.path.join(args.out_dir, "population_eval_bench.md")
    table.to_csv(csv, index=False)
    shown = table[["kind", "device", "population", "distinct", "method", "seconds", "models_per_s",
                   "speedup_vs_one_by_one", "module_runs", "max_abs_acc_diff"]]
    with open(md, "w") as f:
        f.write(f"Population evaluation, supernet width {args.width}, {args.image_size}x{args.image_size} input, "
                f"batch {args.batch_size}, {args.calib_batches} calibration + {args.eval_batches} evaluation "
                f"batches, device {device}, {args.threads} CPU thread(s).\n\n" + markdown_table(shown))
    print(markdown_table(shown))
    print(f"wrote {csv} and {md}")
    return table


if __name__ == "__main__":
    main()
