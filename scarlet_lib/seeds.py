"""Independent random streams from one user seed: every seeded draw in the suite goes through here."""
from __future__ import annotations

import hashlib

__all__ = ["derive_seed"]


def derive_seed(*parts) -> int:
    """A 63-bit seed from any tuple of ints/strings (``sha256`` of ``"a:b:..."``), e.g. ``(seed, module name)``."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
