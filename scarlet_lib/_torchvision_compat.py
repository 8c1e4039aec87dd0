"""Make ``import torchvision`` work next to a CPU-only torch. The one place the suite patches anything.

Why: the package index's torchvision 0.28.0 wheel is a CUDA build. Next to the CPU torch 2.13.0 its
compiled extension (``_C.so``) cannot load (it needs ``libtorch_cuda.so``); torchvision then still
registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` at import and crashes with
"operator torchvision::nms does not exist". Declaring those two operator schemas first lets models,
transforms, datasets and ImageFolder work; the detection ops (nms, roi_align, ...) stay unavailable,
and ``torchvision.io`` image decoding too (the suite reads images with PIL).

The patch is applied only when the compiled extension cannot be loaded; with a matching torchvision
(e.g. a CUDA torch on a GPU machine) nothing is touched. It must run before torchvision is imported,
which is why ``scarlet_lib/__init__.py`` calls it first.
"""
from __future__ import annotations

import importlib.util
import os
import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # kept alive: dropping the Library object would drop the definitions
patched = False  # True once the schemas were declared (so the extension could not load)


def _extension_loads(spec) -> bool:
    import torch

    lib_dir = os.path.dirname(spec.origin)
    candidates = [f for f in os.listdir(lib_dir) if f.startswith("_C.") and f.endswith((".so", ".pyd"))]
    if not candidates:
        return False
    try:
        torch.ops.load_library(os.path.join(lib_dir, candidates[0]))
        return True
    except (OSError, ImportError, RuntimeError):
        return False


def ensure_torchvision_importable() -> bool:
    """Declare the missing operator schemas if torchvision's compiled ops cannot load. Returns ``patched``."""
    global _library, patched
    if patched or "torchvision" in sys.modules:
        return patched
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or _extension_loads(spec):
        return False
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _library.define(schema)
    patched = True
    return True
