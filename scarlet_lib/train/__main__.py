"""``python -m scarlet_lib.train`` (and ``torchrun -m scarlet_lib.train``): the command line of ``scarlet_lib.cli``."""
import sys

from ..cli import main

sys.exit(main())
