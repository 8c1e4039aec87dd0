"""Run profiles of the notebook runner: which parameters every notebook gets at each scale.

* ``smoke``: seconds per notebook; the tests run it. Numbers it draws mean nothing.
* ``cpu`` (default): every artifact in about 15 minutes on 2 CPU cores (measured 1024 s on a slow day),
  on the embedded dataset ("standard" gratings). Three seeds per arm of 220 strict-fair steps each
  (width 0.25, batch 32, lr 0.05 with 20 warm-up steps, per-weight gradient mean, residual candidates
  starting as the identity): measured, every supernet leaves chance, 28-32% path accuracy in the last
  block (chance 10%; see ``data.CALIBRATION``), so the notebooks read their comparisons.
  Use ``--set epochs=...`` / the ``gpu`` profile for longer runs.
* ``gpu``: paper-like scale on CIFAR-10 (or an ImageNet folder via ``--set dataset=imagefolder
  --set data_root=...``) with ``device=cuda``.

The supernet settings (``SUPERNET``) are given identically to notebooks 2, 4, 6 and 7, so the
supernets notebook 2 trains are found in the cache by the others (``scarlet_lib.cache``).
"""
from __future__ import annotations

from copy import deepcopy

__all__ = ["NOTEBOOKS", "SUPERNET_NOTEBOOKS", "PROFILES", "DEFAULT_PROFILE", "profile_parameters", "resolve_notebook"]

NOTEBOOKS = (
    "01_let_equivalence",
    "02_supernet_stability",
    "03_relu_vs_linear",
    "04_feature_maps",
    "05_table3_figure4",
    "06_search",
    "07_architecture_browser",
)
SUPERNET_NOTEBOOKS = ("02_supernet_stability", "04_feature_maps", "06_search", "07_architecture_browser")
DEFAULT_PROFILE = "cpu"

_SUPERNET_SMOKE = dict(dataset="gratings", data_root="", image_size=32, width=0.25, space="no_se", epochs=1,
                       steps_per_epoch=3, batch_size=8, lr=0.05, warmup_steps=0, eval_paths=2)
_SUPERNET_CPU = dict(dataset="gratings", data_root="", image_size=32, width=0.25, space="no_se", epochs=4,
                     steps_per_epoch=55, batch_size=32, lr=0.05, warmup_steps=20, eval_paths=4)
_SUPERNET_GPU = dict(dataset="cifar10", data_root="", image_size=32, width=1.0, space="se", epochs=60,
                     steps_per_epoch=0, batch_size=128, lr=0.05, warmup_steps=0, eval_paths=32)

PROFILES: dict[str, dict] = {
    "smoke": {
        "common": dict(profile="smoke", threads=1),  # tiny tensors: a second thread only adds barrier waits
        "supernet": _SUPERNET_SMOKE,
        "notebooks": {
            "01_let_equivalence": dict(seed=0, fold_width=0.25, fold_batch=2),
            "02_supernet_stability": dict(seeds=[0, 1], block_steps=1),
            "03_relu_vs_linear": dict(seeds=[0, 1], epochs=1, steps_per_epoch=2, batch_size=8, image_size=32, eval_batches=1,
                                      width=0.25, dataset="gratings", data_root=""),
            "04_feature_maps": dict(seed=0, channels=4, images=2),
            "05_table3_figure4": dict(checkpoint_path="", imagenet_root=""),
            "06_search": dict(seed=0, population=6, generations=2, eval_batches=1),
            "07_architecture_browser": dict(seed=0, table_rows=5),
        },
    },
    "cpu": {
        # two threads on a quiet 2-core machine: 0.28 s vs 0.50 s (one thread) per 7-path fused step at
        # width 0.25, batch 32 (/tmp timing of Supernet.fair_step; one thread only wins when the cores are busy)
        "common": dict(profile="cpu", threads=2),
        "supernet": _SUPERNET_CPU,
        "notebooks": {
            "01_let_equivalence": dict(seed=0, fold_width=0.5, fold_batch=4),
            "02_supernet_stability": dict(seeds=[0, 1, 2], block_steps=20),
            "03_relu_vs_linear": dict(seeds=[0, 1, 2, 3, 4], epochs=4, steps_per_epoch=25, batch_size=64,
                                      image_size=32, width=0.25, lr=0.01, dataset="gratings", data_root=""),
            "04_feature_maps": dict(seed=0, channels=8),
            "05_table3_figure4": dict(checkpoint_path="", imagenet_root=""),
            "06_search": dict(seed=0, population=20, generations=6, eval_batches=2),
            "07_architecture_browser": dict(seed=0, table_rows=30),
        },
    },
    "gpu": {
        "common": dict(profile="gpu", threads=8),
        "supernet": _SUPERNET_GPU,
        "notebooks": {
            "01_let_equivalence": dict(seed=0, fold_width=1.0, fold_batch=8),
            "02_supernet_stability": dict(seeds=[0, 1, 2], block_steps=0),
            "03_relu_vs_linear": dict(seeds=[0, 1, 2, 3, 4], epochs=60, steps_per_epoch=0, batch_size=256,
                                      image_size=32, width=1.0, dataset="cifar10", data_root=""),
            "04_feature_maps": dict(seed=0, channels=8),
            "05_table3_figure4": dict(checkpoint_path="", imagenet_root=""),
            "06_search": dict(seed=0, population=70, generations=120, eval_batches=20),
            "07_architecture_browser": dict(seed=0, table_rows=100),
        },
    },
}


def resolve_notebook(name: str) -> str:
    """A notebook's full name from its full name, its number (``2``, ``02``) or its title part."""
    key = str(name).strip().removesuffix(".ipynb")
    for nb in NOTEBOOKS:
        number, _, title = nb.partition("_")
        if key in (nb, number, title) or (key.isdigit() and int(key) == int(number)):
            return nb
    raise ValueError(f"unknown notebook {name!r}; accepted: {', '.join(NOTEBOOKS)} (or their numbers 1-7)")


def profile_parameters(profile: str, notebook: str, device: str | None = None) -> dict:
    """The parameters the profile gives one notebook (before ``--set`` overrides)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; accepted: {', '.join(PROFILES)}")
    notebook = resolve_notebook(notebook)
    p = PROFILES[profile]
    params = deepcopy(p["common"])
    if notebook in SUPERNET_NOTEBOOKS:
        params.update(deepcopy(p["supernet"]))
    params.update(deepcopy(p["notebooks"][notebook]))
    params["device"] = device or ("cuda" if profile == "gpu" else "cpu")
    return params
