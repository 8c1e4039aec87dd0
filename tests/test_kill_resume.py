"""A run killed with SIGKILL at any point, then asked again, ends exactly like a run that was never killed.

Each case starts the run in a child process that kills itself (SIGKILL: no handler, no cleanup) at a chosen
point: before an optimizer step, halfway through writing a checkpoint (temporary file written, not yet renamed)
or after training with the cache entry not yet in place. The same call is then made again here; its final
weights and tables must equal those of an uninterrupted run in another folder, and it must have continued
(only the steps after the last finished epoch are trained again), not started over.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

EPOCHS, STEPS = 3, 2  # a checkpoint at the end of each epoch of 2 optimizer steps

# Each job is Python run with ROOT (its folder) defined; it leaves what to compare in RESULT.
JOBS = {
    "notebook supernet": """
from scarlet_lib import cache
from scarlet_lib.recipes import SupernetRecipe
recipe = SupernetRecipe(width=0.25, batch_size=8, epochs=3, steps_per_epoch=2, warmup_steps=0, eval_paths=2,
                        eval_images=8)
run = cache.supernet_run(recipe, "cpu", ROOT)
RESULT = {"weights": run.supernet.state_dict(), "steps": run.steps, "evals": run.evals}
""",
    "stand-alone command line": """
from scarlet_lib.checkpoints import load_checkpoint_file
from scarlet_lib.cli import main
from scarlet_lib.models import FIGURE3_ARCH
argv = ["standalone", "--arch", str(FIGURE3_ARCH), "--epochs", "3", "--steps-per-epoch", "2", "--batch-size", "8",
        "--width", "0.25", "--stream", "--num-train", "16", "--threads", "1", "--no-progress", "--out", ROOT + "/run"]
assert main(argv) == 0
RESULT = {"weights": load_checkpoint_file(ROOT + "/run/last.pt")["model"],
          "curves": pd.read_csv(ROOT + "/run/curves.csv")}
""",
    "notebook 8 stand-alone model": """
from scarlet_lib import ranking
from scarlet_lib.models import FIGURE3_ARCH
from scarlet_lib.recipes import SupernetRecipe
recipe = SupernetRecipe(width=0.25, batch_size=8, eval_images=8)
settings = ranking.StandaloneSettings(epochs=3, steps_per_epoch=2, seeds=(0,))
folder = ranking._train_standalone_into_cache(recipe, str(FIGURE3_ARCH), 0, settings, "cpu", ROOT)
RESULT = {"weights": torch.load(folder + "/model.pt", weights_only=True),
          "curves": pd.read_csv(folder + "/curves.csv")}
""",
    "notebook 3 run": """
from scarlet_lib import ablation
settings = ablation.Figure3Settings(batch_size=8, epochs=3, steps_per_epoch=2, eval_batches=1)
curves, final = ablation._cached_figure3_run("let", 0, settings, ROOT)
RESULT = {"curves": curves, "final": pd.DataFrame(final)}
""",
}

# The child: counts the chosen events and kills itself at the n-th.
CHILD = """
import os, signal, sys
from pathlib import Path
import pandas as pd
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
point, n, ROOT, job = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
torch.set_num_threads(1)
seen = 0
def hit():
    global seen
    seen += 1
    if seen == n:
        os.kill(os.getpid(), signal.SIGKILL)
if point == "step":
    register_optimizer_step_pre_hook(lambda *args: hit())
else:
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        if point == "write" and ".last.pt.tmp" in Path(src).name:
            hit()  # the checkpoint is written to its temporary file, not yet renamed
        if point == "entry" and (Path(src) / "cache.json").exists():
            hit()  # training is over, the cache entry is complete but not yet in place
        return real_replace(src, dst, *args, **kwargs)
    os.replace = replace
exec(job)
print("not killed")
"""

# (job, where it is killed, n-th event, optimizer steps the rerun trains)
CASES = [
    ("notebook supernet", "step", 1, EPOCHS * STEPS),  # before any checkpoint: starts again
    ("notebook supernet", "step", 4, (EPOCHS - 1) * STEPS),  # in epoch 2: continues from epoch 1's checkpoint
    ("notebook supernet", "write", 2, (EPOCHS - 1) * STEPS),  # writing epoch 2's checkpoint
    ("notebook supernet", "entry", 1, 0),  # trained, entry not yet in place: nothing to train again
    ("stand-alone command line", "step", 4, (EPOCHS - 1) * STEPS),
    ("stand-alone command line", "write", 2, (EPOCHS - 1) * STEPS),
    ("notebook 8 stand-alone model", "step", 5, STEPS),
    ("notebook 8 stand-alone model", "entry", 1, 0),
    ("notebook 3 run", "step", 3, (EPOCHS - 1) * STEPS),
    ("notebook 3 run", "write", 3, STEPS),
]


def _run_here(job: str, root: Path) -> tuple[dict, int]:
    """Run ``job`` in this process with one thread; its RESULT and the optimizer steps it took."""
    steps = []
    handle = register_optimizer_step_pre_hook(lambda *args: steps.append(1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    scope = {"ROOT": str(root), "pd": pd, "torch": torch}
    try:
        exec(JOBS[job], scope)
    finally:
        handle.remove()
        torch.set_num_threads(threads)
    return scope["RESULT"], len(steps)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    made = {}

    def get(job):
        if job not in made:
            made[job] = _run_here(job, tmp_path_factory.mktemp("straight"))
        return made[job]
    return get


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], pd.DataFrame):
            pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
        else:
            assert a[name].keys() == b[name].keys()
            different = [k for k in a[name] if not torch.equal(a[name][k], b[name][k])]
            assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.parametrize("job,point,n,retrained", CASES, ids=[f"{j}-{p}{n}" for j, p, n, _ in CASES])
def test_a_run_killed_at_any_point_continues_and_ends_like_an_uninterrupted_one(job, point, n, retrained,
                                                                                uninterrupted, tmp_path):
    straight, straight_steps = uninterrupted(job)
    assert straight_steps == EPOCHS * STEPS
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, point, str(n), str(tmp_path), JOBS[job]], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout[-1000:], proc.stderr[-3000:])
    again, steps = _run_here(job, tmp_path)
    assert steps == retrained  # continued from the last finished epoch, not from the start
    _assert_same(straight, again)
    assert not list(tmp_path.rglob(".partial-*")), "the checkpoint folder of a finished cache entry is removed"
    assert not list(tmp_path.rglob(".last.pt.tmp*")), "the killed write's temporary file is removed"
