"""Benchmark of one strict-fair supernet step: sequential (NCHW, channels_last) vs fused, side by side.

Times the step (median over repeats after one warm-up step, variants interleaved so a shared machine's
load hits them alike), images/second, achieved GFLOP/s (training ~ 3x forward FLOPs of the m paths, counted
with profiling.count_madds on the untrimmed stand-alone paths, so every variant is credited the same work)
next to this machine's fp32 matmul rate, peak memory of one step and speed ratios. Writes CSV + markdown.

    python scripts/bench_fair_step.py --device cpu --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import scarlet_lib  # noqa: E402,F401
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from scarlet_lib.profiling import count_madds  # noqa: E402
from scarlet_lib.space import SPACE_NO_SE, SPACE_SE  # noqa: E402
from scarlet_lib.supernet import Supernet  # noqa: E402

# name -> (channels_last, fused, kernels); "sequential channels_last" is the plain one-path-at-a-time step
# (the shape of a straightforward re-implementation), the reference for the speed-up column.
VARIANTS = {
    "sequential NCHW": (False, False, "plain"),
    "sequential channels_last": (True, False, "plain"),
    "sequential channels_last + fast kernels": (True, False, "fast"),
    "fused channels_last": (True, True, "plain"),
    "fused channels_last + trim": (True, True, "trim"),
    "fused channels_last + fast kernels (default)": (True, True, "fast"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--paths", type=int, default=13, help="13 (space with SE) or 7 (without SE)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--small-input", action="store_true", help="stem stride 1 (default: ImageNet layout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory subprocesses (CPU)")
    p.add_argument("--out", default="figures/bench_fair_step.csv")
    p.add_argument("--_memory-of", dest="memory_of", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.paths not in (7, 13):
        p.error(f"--paths must be 13 (space with SE) or 7 (without SE), got {a.paths}")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda asked for but torch.cuda.is_available() is False")
    if a.repeats < 1 or a.batch < 1 or a.threads < 1:
        p.error("--repeats, --batch and --threads must be positive")
    return a


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def build(args, variant):
    cl, fused, kernels = VARIANTS[variant]
    space = SPACE_SE if args.paths == 13 else SPACE_NO_SE
    net = Supernet(space, "let", args.width, 10, small_input=args.small_input, seed=args.seed,
                   channels_last=cl).to(args.device)
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, generator=g).to(args.device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(args.device)
    archs = space.sample_fair(args.seed)

    def step():
        net.zero_grad(set_to_none=True)
        net.fair_step(x, y, archs, fused=fused, kernels=kernels)
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
        a for a in sys.argv[1:] if a != "--no-memory"]
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


def markdown_table(df) -> str:
    """A pipe table (pandas' to_markdown needs the extra 'tabulate' package)."""
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_of:  # child process: RSS high-water mark of one step over the built network
        _, _, step = build(args, args.memory_of)
        print(json.dumps({"mb": step_peak_rss_mb(step)}))
        return
    steps, flops = {}, None
    for v in VARIANTS:
        net, archs, step = build(args, v)
        steps[v] = step
        if flops is None:  # nominal work: 3 x forward FLOPs of the m untrimmed stand-alone paths
            fwd = sum(count_madds(net.extract(a).to("cpu"), args.image_size) for a in archs)
            flops = 3 * 2 * fwd * args.batch
        step()  # warm-up
    times = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):  # interleaved, so background load affects every variant alike
        for v, step in steps.items():
            t = time.perf_counter()
            step()
            times[v].append(time.perf_counter() - t)
    peak = matmul_gflops(args.device)
    del steps
    ref = statistics.median(times["sequential channels_last"])
    nchw = statistics.median(times["sequential NCHW"])
    rows = []
    for v, ts in times.items():
        med = statistics.median(ts)
        rows.append({
            "variant": v, "device": args.device, "threads": args.threads, "paths": args.paths,
            "batch": args.batch, "image_size": args.image_size, "width": args.width,
            "small_input": args.small_input, "repeats": args.repeats,
            "step_s_median": med, "step_s_min": min(ts), "step_s_max": max(ts),
            "images_per_s": args.paths * args.batch / med,
            "gflops_achieved": flops / med / 1e9, "matmul_gflops": peak,
            "fraction_of_matmul": flops / med / 1e9 / peak,
            "peak_mem_mb": memory_of_variant(args, v),
            "speedup_vs_seq_nchw": nchw / med, "speedup_vs_seq_channels_last": ref / med,
            "torch": torch.__version__,
        })
    df = pd.DataFrame(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    df.to_csv(args.out, index=False)
    cols = ["variant", "step_s_median", "step_s_min", "images_per_s", "gflops_achieved", "matmul_gflops",
            "fraction_of_matmul", "peak_mem_mb", "speedup_vs_seq_nchw", "speedup_vs_seq_channels_last"]
    md = markdown_table(df[cols])
    head = (f"device {args.device}, {args.threads} threads, {args.paths} paths, batch {args.batch}, "
            f"{args.image_size}x{args.image_size}, width {args.width}, "
            f"{'small-input' if args.small_input else 'ImageNet'} layout, median of {args.repeats} "
            f"interleaved repeats; nominal training work {flops / 1e9:.1f} GFLOP per step\n\n")
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(head + md + "\n")
    print(head + md)


if __name__ == "__main__":
    main()
