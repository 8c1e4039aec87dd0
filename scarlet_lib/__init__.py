"""SCARLET-NAS reproducibility suite: search space, models, supernet, LET, counting, search.

Importing the package first makes torchvision importable next to a CPU-only torch (see
``scarlet_lib._torchvision_compat``), then exposes the most used names.
"""
from ._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()

from .space import (  # noqa: E402
    CHOICES, IDENTITY, LAYERS, NUM_LAYERS, SPACE_NO_SE, SPACE_SE, Architecture, ArchitectureError, SearchSpace,
)

__version__ = "0.1.0"
__all__ = ["Architecture", "ArchitectureError", "SearchSpace", "SPACE_SE", "SPACE_NO_SE", "CHOICES", "IDENTITY",
           "LAYERS", "NUM_LAYERS", "__version__"]
