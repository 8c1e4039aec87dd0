"""How much a supernet's path accuracy depends on which images share its batch (train-mode BatchNorm).

The gratings stream can draw each batch's labels as the same class mix every time (``stream_labels="balanced"``,
what every committed run used) or independently (``"iid"``). Under train-mode BatchNorm a sample's features
depend on the batch it sits in, so a network trained on one fixed mix can read part of a sample's class from
that mix. Per supernet (``--run NAME:field=value,...``, recipe fields over the cpu-long Figure 1 recipe; trained
into the supernet cache, ``--processes`` at a time, one thread each), on the recipe's fixed scored paths:

* ``running_acc``: the running training accuracy of the sampled paths over the last epoch (train-mode BN,
  the stream's own mix: the paper's Figure 1 top panel);
* ``oneshot_acc``: the one-shot held-out accuracy after BN recalibration (eval mode: what notebook 2 reads);
* ``trainmode_balanced`` / ``trainmode_iid``: train-mode BN accuracy on fresh stream batches (never trained on)
  with the balanced mix and with independent labels (``evaluation.batch_stat_accuracy``).

Writes ``bn_batch_mix.csv`` in ``--out`` (default ``figures/``; rows appended, with the CPU, instruction set,
threads and versions) and rewrites ``bn_batch_mix.md`` there from the whole CSV.

    .venv/bin/python scripts/bn_batch_mix.py --run cal:arm=calibrated,identity_mode=identity,lr=0.02 \\
        --run cal-iid:arm=calibrated,identity_mode=identity,lr=0.02,stream_labels=iid --processes 2
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import scarlet_lib  # noqa: E402,F401
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from scarlet_lib.artifacts import markdown_table, versions  # noqa: E402
from scarlet_lib.cache import supernet_runs  # noqa: E402
from scarlet_lib.evaluation import batch_stat_accuracy  # noqa: E402
from scarlet_lib.profiles import profile_parameters  # noqa: E402
from scarlet_lib.recipes import ARMS, RECIPE_FIELDS, SupernetRecipe, arm_recipe  # noqa: E402
from scarlet_lib.reproduce import ParameterError, parse_override  # noqa: E402
from scarlet_lib.train import _heldout_batches  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "figures")
FRESH_ORDER_SEED = 10_000  # stream batches of another order seed: images no supernet trained on


def parse_run(text: str, base: SupernetRecipe) -> tuple[str, str, SupernetRecipe]:
    """``NAME:arm=...,field=value,...`` -> (name, arm, recipe): the arm's recipe over ``base``, then the fields."""
    name, _, spec = text.partition(":")
    if not name or not spec:
        raise SystemExit(f"--run expects NAME:arm=ARM,field=value,... got {text!r}")
    changes = {}
    for item in spec.split(","):
        try:
            _, key, value = parse_override(item)  # the runner's name=value reading
        except ParameterError as e:
            raise SystemExit(f"--run {name}: {e}") from None
        if key != "arm" and key not in RECIPE_FIELDS:
            raise SystemExit(f"--run {name}: unknown recipe field {key!r}; accepted: arm, {', '.join(RECIPE_FIELDS)}")
        changes[key] = value
    arm = changes.pop("arm", "calibrated")
    if arm not in ARMS:
        raise SystemExit(f"--run {name}: unknown arm {arm!r}; accepted: {', '.join(ARMS)}")
    lr = changes.pop("lr", base.lr)
    try:
        return name, arm, arm_recipe(arm, base.replace(lr=float(lr))).replace(**changes)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"--run {name}: {e}") from None


def fresh_batches(recipe: SupernetRecipe, stream_labels: str, batches: int) -> list:
    data = recipe.replace(stream_labels=stream_labels).data()
    stream = data.train_batches(0, order_seed=FRESH_ORDER_SEED + recipe.seed)
    return [b for _, b in zip(range(batches), stream)]


def measure(name: str, arm: str, run, batches: int) -> dict:
    recipe, net = run.recipe, run.supernet.eval()
    archs = recipe.eval_archs()
    steps = run.steps
    row = {"run": name, "arm": arm, **recipe.key(), "steps": recipe.epochs * recipe.steps_per_epoch,
           "n_paths": len(archs),
           "running_acc": float(steps.loc[steps["epoch"] == steps["epoch"].max(), "train_acc"].mean()),
           "oneshot_acc": float(run.evals.loc[run.evals["epoch"] == run.evals["epoch"].max(), "heldout_acc"].mean())}
    for mix in ("balanced", "iid"):
        fresh = fresh_batches(recipe, mix, batches)
        row[f"trainmode_{mix}"] = float(np.mean([batch_stat_accuracy(net, a, fresh) for a in archs]))
        row["trainmode_images"] = sum(len(y) for _, y in fresh)
    return row


SHOW = ["recorded", "run", "arm", "identity_mode", "stream_labels", "lr", "steps", "seed", "n_paths", "running_acc",
        "oneshot_acc", "trainmode_balanced", "trainmode_iid", "trainmode_images"]


def write_markdown(table: pd.DataFrame, out: str = OUT) -> None:
    with open(os.path.join(out, "bn_batch_mix.md"), "w") as f:
        f.write("# Path accuracy and the batch's class mix\n\nWritten by `scripts/bn_batch_mix.py` (its docstring "
                "defines the columns; accuracies are fractions over the recipe's fixed scored paths). "
                "`stream_labels` is how the supernet's training batches drew their labels; `trainmode_*` are "
                "train-mode BatchNorm accuracies on fresh stream batches with the balanced mix and with "
                "independent labels; `oneshot_acc` is the eval-mode score after BN recalibration that notebook 2 "
                "reads. Other recipe fields, the CPU and versions are in the CSV.\n\n")
        f.write(markdown_table(table[[c for c in SHOW if c in table.columns]], "{:.3f}"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", default=[], help="NAME:arm=ARM,field=value,... (recipe fields)")
    p.add_argument("--base", default="cpu-long", help="profile whose notebook-2 recipe the runs change")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batches", type=int, default=50, help="fresh stream batches per mix")
    p.add_argument("--cache", default=None, help="supernet cache folder (default: runs/cache)")
    p.add_argument("--out", default=OUT, help="folder of bn_batch_mix.csv|md (default: figures/)")
    a = p.parse_args(argv)
    if not a.run:
        p.error("give at least one --run")
    if a.batches < 1:
        p.error(f"--batches must be >= 1, got {a.batches}")
    base = SupernetRecipe.from_params(profile_parameters(a.base, "02"))
    runs = [parse_run(r, base) for r in a.run]
    started = time.time()
    trained = supernet_runs([r for _, _, r in runs], cache_dir=a.cache, processes=a.processes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the supernets trained; restored so a caller's process keeps its setting
    try:
        rows = [measure(name, arm, run, a.batches) for (name, arm, _), run in
                tqdm(list(zip(runs, trained)), desc="scoring", leave=False)]
    finally:
        torch.set_num_threads(threads)
    v = versions()
    new = pd.DataFrame(rows).assign(
        cpu=v.get("cpu"), cpu_capability=v.get("cpu_capability"), threads=1, torch=v.get("torch"),
        git_commit=v.get("git_commit"), wall_s=round(time.time() - started, 1),
        recorded=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    os.makedirs(a.out, exist_ok=True)
    csv = os.path.join(a.out, "bn_batch_mix.csv")
    table = pd.concat([pd.read_csv(csv), new], ignore_index=True) if os.path.exists(csv) else new
    table.to_csv(csv, index=False)
    write_markdown(table, a.out)
    print(new[[c for c in SHOW if c in new.columns]].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
