"""Benchmark of one strict-fair supernet step: sequential vs fused and kernel sets, side by side.

Times the step (fair_step followed by the SGD update of ``scarlet_lib.train``'s settings; median over repeats after a
warm-up step, all variants and thread counts interleaved in one process so a shared machine's load hits
them alike), images x paths per second, achieved GFLOP/s (training ~ 3x forward FLOPs of the m paths,
counted with costs.count_madds on the untrimmed stand-alone paths, so every variant is credited the
same work) next to this machine's fp32 matmul rate at the same thread count, measured in the same run,
peak memory of one step and speed ratios. Two configurations:

* ``--config reference``: 13 paths, batch 64, 32x32, ImageNet layout, width 1.0 (the README's table);
* ``--config profile``: the ``cpu`` profile's supernets: 7 paths (no SE), width 0.25, batch 32, 32x32,
  small-input layout, at 1 and 2 threads. It also measures the throughput of training a set of
  independent supernets (``--set-supernets``): one process with 2 threads training them one after
  another, against 2 spawned worker processes with 1 thread each training half of them.

The other flags override a configuration's values. Writes ``figures/bench_fair_step_<config>.{csv,md}``.

    python scripts/bench_fair_step.py --config profile
    python scripts/bench_fair_step.py --config reference --device cpu --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import scarlet_lib  # noqa: E402,F401
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from scarlet_lib.costs import count_madds  # noqa: E402
from scarlet_lib.space import SPACE_NO_SE, SPACE_SE  # noqa: E402
from scarlet_lib.fair import fair_step  # noqa: E402
from scarlet_lib.supernet import Supernet  # noqa: E402

# name -> (channels_last, fused, kernels); "sequential channels_last" is the plain one-path-at-a-time step
# (the shape of a straightforward re-implementation), the reference for the speed-up column.
VARIANTS = {
    "sequential NCHW": (False, False, "plain"),
    "sequential channels_last": (True, False, "plain"),
    "sequential channels_last + fast kernels": (True, False, "fast"),
    "fused channels_last": (True, True, "plain"),
    "fused channels_last + trim": (True, True, "trim"),
    "fused channels_last + fast_v1 kernels (previous default)": (True, True, "fast_v1"),
    "fused channels_last + fast kernels (default)": (True, True, "fast"),
}
REFERENCE = "sequential channels_last"
DEFAULT = "fused channels_last + fast kernels (default)"
PREVIOUS = "fused channels_last + fast_v1 kernels (previous default)"

CONFIGS = {
    "reference": dict(paths=13, batch=64, image_size=32, width=1.0, small_input=False, threads=[2],
                      variants=list(VARIANTS), set_supernets=0),
    "profile": dict(paths=7, batch=32, image_size=32, width=0.25, small_input=True, threads=[1, 2],
                    variants=[REFERENCE, PREVIOUS, DEFAULT], set_supernets=4),
}
SGD = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5)  # train.train_supernet's optimizer


def _threads(text: str) -> list[int]:
    try:
        out = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads must be integers separated by commas, got {text!r}")
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"threads must be positive, got {text!r}")
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", choices=tuple(CONFIGS), default="reference")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=_threads, default=None, help="thread count(s), e.g. 2 or 1,2")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--paths", type=int, default=None, help="13 (space with SE) or 7 (without SE)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--small-input", action="store_true", default=None,
                   help="stem stride 1 (the reference configuration uses the ImageNet layout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory subprocesses (CPU)")
    p.add_argument("--set-supernets", type=int, default=None,
                   help="independent supernets in the set-throughput measurement (0: skip it)")
    p.add_argument("--set-steps", type=int, default=5, help="timed steps per supernet in the set measurement")
    p.add_argument("--set-rounds", type=int, default=2, help="alternating rounds of the two set layouts")
    p.add_argument("--set-workers", type=int, default=2, help="worker processes (1 thread each)")
    p.add_argument("--variants", default=None,
                   help="comma-separated subset of the variant names (default: the configuration's)")
    p.add_argument("--op-profile", action="store_true",
                   help="also profile the default step (torch.profiler, top operators) into the markdown")
    p.add_argument("--out", default=None, help="CSV path (default figures/bench_fair_step_<config>.csv)")
    p.add_argument("--_memory-of", dest="memory_of", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for key, value in CONFIGS[a.config].items():
        if getattr(a, key, None) is None:
            setattr(a, key, value)
    if isinstance(a.variants, str):
        a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
        unknown = [v for v in a.variants if v not in VARIANTS]
        if unknown or not a.variants:
            p.error(f"unknown --variants {unknown}; accepted: {list(VARIANTS)}")
    a.out = a.out or f"figures/bench_fair_step_{a.config}.csv"
    if a.paths not in (7, 13):
        p.error(f"--paths must be 13 (space with SE) or 7 (without SE), got {a.paths}")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda asked for but torch.cuda.is_available() is False")
    if a.repeats < 1 or a.batch < 1 or a.set_steps < 1 or a.set_rounds < 1 or a.set_workers < 1:
        p.error("--repeats, --batch, --set-steps, --set-rounds and --set-workers must be positive")
    if a.device == "cuda":
        a.set_supernets = 0
    if 0 < a.set_supernets < a.set_workers:
        p.error(f"--set-supernets {a.set_supernets} leaves some of the {a.set_workers} workers without a supernet")
    return a


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def build(args, variant, seed=None):
    """A supernet, its optimizer, a fixed batch and fair paths; ``step()`` runs fair_step + SGD update."""
    cl, fused, kernels = VARIANTS[variant]
    seed = args.seed if seed is None else seed
    space = SPACE_SE if args.paths == 13 else SPACE_NO_SE
    net = Supernet(space, "let", args.width, 10, small_input=args.small_input, seed=seed,
                   channels_last=cl).to(args.device)
    opt = torch.optim.SGD(net.parameters(), **SGD)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=g).to(args.device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(args.device)
    archs = space.sample_fair(seed)

    def step():
        opt.zero_grad(set_to_none=True)
        fair_step(net, x, y, archs, fused=fused, kernels=kernels)
        opt.step()
        sync(args.device)
    return net, archs, step


def matmul_gflops(device, n=2048, repeats=5):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def memory_of_variant(args, variant):
    """Peak extra memory of one step (MB): CUDA allocator peak, or max-RSS growth of a fresh process."""
    if args.device == "cuda":
        net, _, step = build(args, variant)
        step()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    if args.no_memory:
        return float("nan")
    cmd = [sys.executable, os.path.abspath(__file__), "--_memory-of", variant] + [
        a for a in sys.argv[1:] if a not in ("--no-memory", "--op-profile")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["mb"]


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def step_peak_rss_mb(step) -> float:
    """RSS high-water mark of one step above the RSS before it (MB).

    Building the network (and importing torch) can leave a higher high-water mark than a step reaches, so
    on Linux the mark is reset first (``/proc/self/clear_refs``); elsewhere ``ru_maxrss`` growth, which
    reads 0 when the step stays below the earlier peak.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kb("VmRSS")
        step()
        return (_status_kb("VmHWM") - base) / 1024
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


# -- a set of independent supernets ---------------------------------------------------------------------
def _train_set(args, seeds, threads):
    """Build one supernet per seed (default step), warm each up; return (start, end) of their timed steps."""
    torch.set_num_threads(threads)
    steps = [build(args, DEFAULT, seed)[2] for seed in seeds]
    for step in steps:
        step()
    return steps


def _set_worker(args, seeds, barrier, queue):
    """Worker process: 1 thread, its share of the supernets, timed from a start shared with the others."""
    steps = _train_set(args, seeds, 1)
    barrier.wait()
    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes on Linux
    for step in steps:
        for _ in range(args.set_steps):
            step()
    queue.put((start, time.perf_counter()))


def set_throughput(args) -> list[dict]:
    """Images x paths per second of training ``args.set_supernets`` supernets, two ways, alternating rounds.

    (a) this process, 2 threads, the supernets one after another; (b) ``args.set_workers`` spawned
    processes with 1 thread each, the supernets split between them, timed from a common start (after each
    worker built and warmed up its supernets) to the last worker's end.
    """
    seeds = [args.seed + i for i in range(args.set_supernets)]
    work = args.set_supernets * args.set_steps * args.paths * args.batch
    ctx = mp.get_context("spawn")
    rows, saved = [], torch.get_num_threads()
    for rnd in range(args.set_rounds):
        steps = _train_set(args, seeds, 2)
        t = time.perf_counter()
        for step in steps:
            for _ in range(args.set_steps):
                step()
        seq = time.perf_counter() - t
        del steps
        torch.set_num_threads(saved)
        barrier, queue = ctx.Barrier(args.set_workers), ctx.Queue()
        shares = [seeds[i::args.set_workers] for i in range(args.set_workers)]
        procs = [ctx.Process(target=_set_worker, args=(args, share, barrier, queue)) for share in shares]
        for p in procs:
            p.start()
        spans = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        par = max(e for _, e in spans) - min(s for s, _ in spans)
        for layout, seconds in (("1 process x 2 threads, supernets one after another", seq),
                                (f"{args.set_workers} processes x 1 thread", par)):
            rows.append({"round": rnd, "layout": layout, "supernets": args.set_supernets,
                         "steps_each": args.set_steps, "seconds": seconds,
                         "images_x_paths_per_s": work / seconds, "ratio_vs_one_process": seq / seconds})
    return rows


# -- report ------------------------------------------------------------------------------------------------
def markdown_table(df) -> str:
    """A pipe table (pandas' to_markdown needs the extra 'tabulate' package)."""
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def op_profile(args, threads, steps=3, top=15) -> str:
    """torch.profiler table of the default step: operators by self CPU time over ``steps`` steps."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    _, _, step = build(args, DEFAULT)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    rows = []
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    for e in events[:top]:
        rows.append({"operator": e.key, "calls_per_step": e.count / steps,
                     "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
                     "share_of_self_time": e.self_cpu_time_total / total})
    return (f"Operators of the default step by self CPU time ({threads} thread(s), torch.profiler over {steps} "
            f"steps; profiler overhead included):\n\n" + markdown_table(pd.DataFrame(rows)) + "\n")


def main(argv=None):
    args = parse_args(argv)
    if args.memory_of:  # child process: RSS high-water mark of one step over the built network
        torch.set_num_threads(args.threads[0])
        _, _, step = build(args, args.memory_of)
        step()
        print(json.dumps({"mb": step_peak_rss_mb(step)}))
        return
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    steps, flops = {}, None
    for v in args.variants:
        net, archs, step = build(args, v)
        steps[v] = step
        if flops is None:  # nominal work: 3 x forward FLOPs of the m untrimmed stand-alone paths
            fwd = sum(count_madds(net.extract(a).to("cpu"), args.image_size) for a in archs)
            flops = 3 * 2 * fwd * args.batch
    for threads in args.threads:  # warm-up at every thread count
        torch.set_num_threads(threads)
        for step in steps.values():
            step()
    times = {(v, t): [] for t in args.threads for v in args.variants}
    for _ in range(args.repeats):  # interleaved, so background load affects every variant alike
        for threads in args.threads:
            torch.set_num_threads(threads)
            for v, step in steps.items():
                t = time.perf_counter()
                step()
                times[(v, threads)].append(time.perf_counter() - t)
    peak = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak[threads] = matmul_gflops(args.device)
    del steps
    memory = {v: memory_of_variant(args, v) for v in args.variants}
    rows = []
    for (v, threads), ts in times.items():
        med = statistics.median(ts)
        ref = statistics.median(times[(REFERENCE, threads)]) if (REFERENCE, threads) in times else float("nan")
        prev = statistics.median(times[(PREVIOUS, threads)]) if (PREVIOUS, threads) in times else float("nan")
        rows.append({
            "variant": v, "config": args.config, "device": args.device, "threads": threads,
            "paths": args.paths, "batch": args.batch, "image_size": args.image_size, "width": args.width,
            "small_input": args.small_input, "repeats": args.repeats,
            "step_s_median": med, "step_s_min": min(ts), "step_s_max": max(ts),
            "images_x_paths_per_s": args.paths * args.batch / med,
            "gflops_achieved": flops / med / 1e9, "matmul_gflops": peak[threads],
            "fraction_of_matmul": flops / med / 1e9 / peak[threads],
            "peak_mem_mb": memory[v],
            "speedup_vs_seq_channels_last": ref / med, "speedup_vs_previous_default": prev / med,
            "torch": torch.__version__,
        })
    df = pd.DataFrame(rows)
    set_rows = set_throughput(args) if args.set_supernets else []
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    df.to_csv(args.out, index=False)
    cols = ["variant", "threads", "step_s_median", "step_s_min", "images_x_paths_per_s", "gflops_achieved",
            "matmul_gflops", "fraction_of_matmul", "peak_mem_mb", "speedup_vs_seq_channels_last",
            "speedup_vs_previous_default"]
    loads = "" if load_before is None else (
        f"; 1-minute load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    head = (f"`{' '.join(['python', 'scripts/bench_fair_step.py'] + (argv if argv is not None else sys.argv[1:]))}`\n\n"
            f"config {args.config}: device {args.device}, {args.paths} paths, batch {args.batch}, "
            f"{args.image_size}x{args.image_size}, width {args.width}, "
            f"{'small-input' if args.small_input else 'ImageNet'} layout; a step is fair_step + SGD update; "
            f"median of {args.repeats} repeats, variants and thread counts ({', '.join(map(str, args.threads))}) "
            f"interleaved in one process; nominal training work {flops / 1e9:.2f} GFLOP per step.\n\n"
            f"CPU {cpu_model()} ({os.cpu_count()} logical CPUs), torch {torch.__version__}, CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}, OMP_WAIT_POLICY "
            f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}{loads}.\n\n")
    md = head + markdown_table(df[cols]) + "\n"
    if set_rows:
        sdf = pd.DataFrame(set_rows)
        summary = sdf.groupby("layout", sort=False)[
            ["seconds", "images_x_paths_per_s", "ratio_vs_one_process"]].median()
        sdf_md = sdf[["round", "layout", "supernets", "steps_each", "seconds", "images_x_paths_per_s",
                      "ratio_vs_one_process"]]
        md += (f"\nA set of {args.set_supernets} independent supernets, {args.set_steps} timed steps each (default "
               f"step), {args.set_rounds} alternating rounds; images x paths per second for the whole set "
               f"(workers timed from a common start after building and warming up):\n\n"
               + markdown_table(sdf_md) + "\n\nMedians over the rounds:\n\n"
               + markdown_table(summary.reset_index()) + "\n")
        sdf.to_csv(os.path.splitext(args.out)[0] + "_set.csv", index=False)
    if args.op_profile:
        md += "\n" + op_profile(args, args.threads[0])
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
