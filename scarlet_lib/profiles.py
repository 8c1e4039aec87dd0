"""Run profiles of the notebook runner: which parameters every notebook gets at each scale.

* ``smoke``: seconds per notebook; the tests run it. Numbers it draws mean nothing.
* ``cpu`` (default): every artifact in minutes on a 2-core CPU, on the embedded dataset ("standard" gratings).
* ``cpu-long``: the Figure 1 evidence on CPU (budgeted at 90 minutes on 2 cores): every arm trained longer,
  5 seeds, the fixed paths scored at 80% and 100% of training. Its figures are the committed headline evidence.
* ``gpu``: paper-like scale on CIFAR-10 (or an ImageNet folder via ``--set dataset=imagefolder
  --set data_root=...``) with ``device=cuda``.

The supernet settings (``SUPERNET``: the fields of ``recipes.SupernetRecipe`` for the calibrated arm) are
given identically to notebooks 2, 4, 6 and 7, so the supernets notebook 2 trains are found in the cache by
the others (``scarlet_lib.cache``). Measured wall times per notebook are in ``figures/*.run.json`` and the
README; calibration runs behind the settings in ``figures/calibration_supernets.md``.
"""
from __future__ import annotations

from copy import deepcopy

__all__ = ["NOTEBOOKS", "SUPERNET_NOTEBOOKS", "PROFILES", "DEFAULT_PROFILE", "COMMITTED_FIGURES", "profile_parameters",
           "resolve_notebook"]

NOTEBOOKS = (
    "01_let_equivalence",
    "02_supernet_stability",
    "03_relu_vs_linear",
    "04_feature_maps",
    "05_table3_figure4",
    "06_search",
    "07_architecture_browser",
    "08_ranking_fidelity",
)
SUPERNET_NOTEBOOKS = ("02_supernet_stability", "04_feature_maps", "06_search", "07_architecture_browser",
                      "08_ranking_fidelity")
DEFAULT_PROFILE = "cpu"
# Profiles whose figures are committed, and where (relative to the repository); the others write to
# <output>/figures. cpu-long's Figure 1 evidence is the headline, the quick cpu run sits beside it.
COMMITTED_FIGURES = {"cpu-long": "figures", "cpu": "figures/cpu"}
ARMS = ["paper", "calibrated", "let-identity-init"]

# Supernet recipe fields (``recipes.SupernetRecipe``) of the calibrated arm, plus how many worker processes
# train independent supernets (one thread each).
_SUPERNET_SMOKE = dict(dataset="gratings", difficulty="standard", stream_labels="balanced", data_root="", image_size=32, width=0.25, space="no_se", epochs=1,
                       steps_per_epoch=3, batch_size=8, lr=0.05, warmup_steps=0, zero_init_residual=True,
                       let_init="he", reduction="per_weight", eval_paths=9, eval_images=64, eval_every=1, processes=2)
# batch 16 and 32 at lr 0.05 learned about as much per image (figures/calibration_supernets.md); batch 16 gives
# twice the steps per image, lr 0.1 at batch 16 and lr 0.05 at batch 8 stalled at chance in exploratory runs
_SUPERNET_CPU = dict(dataset="gratings", difficulty="standard", stream_labels="balanced", data_root="", image_size=32, width=0.25, space="no_se", epochs=3,
                     steps_per_epoch=80, batch_size=16, lr=0.05, warmup_steps=20, zero_init_residual=True,
                     let_init="he", reduction="per_weight", eval_paths=108, eval_images=1000, eval_every=3,
                     processes=2)
# cpu-long: the "easy" grating preset (supernets on "standard" did not plateau within 1200 steps; calibration runs
# in docs/lab_notes.md and figures/calibration_supernets.md)
# 10 epochs of 150 steps, the fixed paths scored after epochs 8 and 10, so the plateau (the last fifth) is measured
# directly. At 10 x 110 steps two of five calibrated identity supernets still rose by 2.6 and 3.2 points over the
# last fifth (docs/lab_notes.md); dropping the epoch-4 score pays for part of the longer training.
_SUPERNET_CPU_LONG = dict(_SUPERNET_CPU, difficulty="easy", epochs=10, steps_per_epoch=150, eval_images=800,
                          eval_every=8)
_SUPERNET_GPU = dict(dataset="cifar10", difficulty="standard", stream_labels="balanced", data_root="", image_size=32, width=1.0, space="se", epochs=60,
                     steps_per_epoch=0, batch_size=128, lr=0.05, warmup_steps=0, zero_init_residual=True,
                     let_init="he", reduction="per_weight", eval_paths=108, eval_images=5000, eval_every=10,
                     processes=1)
_FIGURE1 = dict(arms=ARMS, margin=0.15, far_below_points=0.2, plateau_fraction=0.2, plateau_tolerance=0.02)
# notebook 8: stand-alone references of the ranked models (epochs x steps each, per seed) and statistics
_RANKING = dict(arms=ARMS, n_models=30, standalone_seeds=[0, 1], standalone_lr=0.05, top_k=10, n_resamples=1000,
                subset_sizes=[5, 8, 13, 20, 30], margin=0.15, plateau_fraction=0.2, plateau_tolerance=0.02)

PROFILES: dict[str, dict] = {
    "smoke": {
        "common": dict(profile="smoke", threads=1),  # tiny tensors: a second thread only adds barrier waits
        "supernet": _SUPERNET_SMOKE,
        "notebooks": {
            "01_let_equivalence": dict(seed=0, fold_width=0.25, fold_batch=2),
            "02_supernet_stability": dict(_FIGURE1, seeds=[0, 1], block_steps=1),
            "03_relu_vs_linear": dict(seeds=[0, 1], epochs=1, steps_per_epoch=2, batch_size=8, image_size=32, eval_batches=1,
                                      width=0.25, dataset="gratings", data_root="", processes=1),
            "04_feature_maps": dict(seed=0, arm="calibrated", channels=4, images=2),
            "05_table3_figure4": dict(checkpoint_path="", imagenet_root=""),
            "06_search": dict(seed=0, arm="calibrated", population=6, generations=2, eval_batches=1),
            "07_architecture_browser": dict(seed=0, arm="calibrated", table_rows=5),
            "08_ranking_fidelity": dict(_RANKING, seeds=[0, 1], n_models=9, standalone_epochs=2,
                                        standalone_steps_per_epoch=2, top_k=3, n_resamples=50, subset_sizes=[5, 8]),
        },
    },
    "cpu": {
        "common": dict(profile="cpu", threads=2),
        "supernet": _SUPERNET_CPU,
        "notebooks": {
            "01_let_equivalence": dict(seed=0, fold_width=0.5, fold_batch=4),
            "02_supernet_stability": dict(_FIGURE1, seeds=[0, 1, 2], block_steps=20),
            "03_relu_vs_linear": dict(seeds=[0, 1, 2, 3, 4], epochs=4, steps_per_epoch=25, batch_size=64,
                                      image_size=32, width=0.25, lr=0.01, dataset="gratings", data_root=""),
            "04_feature_maps": dict(seed=0, arm="calibrated", channels=8),
            "05_table3_figure4": dict(checkpoint_path="", imagenet_root=""),
            "06_search": dict(seed=0, arm="calibrated", population=20, generations=6, eval_batches=2),
            "07_architecture_browser": dict(seed=0, arm="calibrated", table_rows=30),
            "08_ranking_fidelity": dict(_RANKING, seeds=[0, 1, 2], standalone_epochs=2, standalone_steps_per_epoch=30),
        },
    },
    "gpu": {
        "common": dict(profile="gpu", threads=8),
        "supernet": _SUPERNET_GPU,
        "notebooks": {
            "01_let_equivalence": dict(seed=0, fold_width=1.0, fold_batch=8),
            "02_supernet_stability": dict(_FIGURE1, seeds=[0, 1, 2], block_steps=0),
            "03_relu_vs_linear": dict(seeds=[0, 1, 2, 3, 4], epochs=60, steps_per_epoch=0, batch_size=256,
                                      image_size=32, width=1.0, dataset="cifar10", data_root=""),
            "04_feature_maps": dict(seed=0, arm="calibrated", channels=8),
            "05_table3_figure4": dict(checkpoint_path="", imagenet_root=""),
            "06_search": dict(seed=0, arm="calibrated", population=70, generations=120, eval_batches=20),
            "07_architecture_browser": dict(seed=0, arm="calibrated", table_rows=100),
            "08_ranking_fidelity": dict(_RANKING, seeds=[0, 1, 2], n_models=60, standalone_seeds=[0, 1, 2],
                                        standalone_epochs=30, standalone_steps_per_epoch=0),
        },
    },
}


# cpu-long: the cpu profile with longer supernets and five seeds (the other notebooks as in cpu)
PROFILES["cpu-long"] = {
    "common": dict(profile="cpu-long", threads=2),
    "supernet": _SUPERNET_CPU_LONG,
    "notebooks": dict(PROFILES["cpu"]["notebooks"],
                      **{"02_supernet_stability": dict(_FIGURE1, seeds=[0, 1, 2, 3, 4], block_steps=100),
                         # Figure 3 to a plateau: the cpu recipe, 10x the steps
                         "03_relu_vs_linear": dict(PROFILES["cpu"]["notebooks"]["03_relu_vs_linear"], epochs=10,
                                                   steps_per_epoch=100),
                         # stand-alone references: lr 0.02 (0.05 left some seeds stuck near chance for
                         # hundreds of steps, the main source of seed-to-seed rank noise)
                         "08_ranking_fidelity": dict(_RANKING, seeds=[0, 1, 2, 3, 4], standalone_epochs=6,
                                                     standalone_steps_per_epoch=75, standalone_lr=0.02)}),
}


def resolve_notebook(name: str) -> str:
    """A notebook's full name from its full name, its number (``2``, ``02``) or its title part."""
    key = str(name).strip().removesuffix(".ipynb")
    for nb in NOTEBOOKS:
        number, _, title = nb.partition("_")
        if key in (nb, number, title) or (key.isdigit() and int(key) == int(number)):
            return nb
    raise ValueError(f"unknown notebook {name!r}; accepted: {', '.join(NOTEBOOKS)} (or their numbers 1-8)")


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
