"""The former name of :mod:`scarlet_lib.costs` (MAdds and parameter counting), kept importable."""
from .costs import *  # noqa: F401,F403
from .costs import __all__  # noqa: F401
