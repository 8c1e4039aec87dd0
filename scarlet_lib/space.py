"""The SCARLET search space: the 19-layer skeleton, the 13 choices of Table 1, architecture values, samplers.

Everything else in the suite reads the skeleton and the choice table from here; an architecture
(19 choice indices) is the value passed between modules.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "Choice", "CHOICES", "IDENTITY", "LayerSpec", "LAYERS", "NUM_LAYERS", "STEM_CHANNELS", "FIRST_CHANNELS",
    "HEAD_CHANNELS", "SearchSpace", "SPACE_SE", "SPACE_NO_SE", "Architecture", "ArchitectureError",
    "REDUCTION_LAYERS", "CHANNEL_CHANGE_LAYERS", "SHAPE_CHANGE_LAYERS", "PARSE_FORMS",
]


@dataclass(frozen=True)
class Choice:
    """One candidate operation of a searchable layer (paper Table 1)."""

    index: int
    expansion: int  # 0 for the identity choice
    kernel: int
    se: bool

    @property
    def is_identity(self) -> bool:
        return self.expansion == 0

    @property
    def token(self) -> str:
        """Short readable name: ``e3k5``, ``e6k7se`` or ``id``."""
        if self.is_identity:
            return "id"
        return f"e{self.expansion}k{self.kernel}" + ("se" if self.se else "")


# Index order as in the paper: expansion-major, kernel, then SE; identity last.
CHOICES: tuple[Choice, ...] = tuple(
    Choice(i, e, k, se)
    for i, (e, k, se) in enumerate(
        (e, k, se) for e in (3, 6) for k in (3, 5, 7) for se in (False, True)
    )
) + (Choice(12, 0, 1, False),)
IDENTITY = 12
_TOKEN_TO_INDEX = {c.token: c.index for c in CHOICES}


@dataclass(frozen=True)
class LayerSpec:
    """Shape of one searchable layer of the skeleton (at 224x224 input, width 1.0)."""

    index: int  # 0-based position in the 19-layer sequence
    in_channels: int
    out_channels: int
    stride: int

    @property
    def preserves_shape(self) -> bool:
        """True where an identity is a true identity (stride 1 and in == out)."""
        return self.stride == 1 and self.in_channels == self.out_channels


STEM_CHANNELS = 32   # stem conv 3x3 s2, 3 -> 32
FIRST_CHANNELS = 16  # separable conv 32 -> 16, input of layer 1
HEAD_CHANNELS = 1280  # conv_before_pooling 320 -> 1280

_OUT = [32, 32, 40, 40, 40, 40, 80, 80, 80, 80, 96, 96, 96, 96, 192, 192, 192, 192, 320]
_STRIDE = [2, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
LAYERS: tuple[LayerSpec, ...] = tuple(
    LayerSpec(i, ([FIRST_CHANNELS] + _OUT)[i], _OUT[i], _STRIDE[i]) for i in range(len(_OUT))
)
NUM_LAYERS = len(LAYERS)
# What ``Architecture.parse`` accepts (every parse error ends with it).
PARSE_FORMS = (f"accepted: {NUM_LAYERS} choice indices 0-{len(CHOICES) - 1} separated by ',' or spaces "
               f"(e.g. '1,3,1,0,12,...'), or {NUM_LAYERS} tokens joined by '-' (e.g. 'e3k5-e6k7se-id-...'), "
               f"tokens {sorted(_TOKEN_TO_INDEX)}")
# 0-based indices of the layers that halve the resolution / change the channel count.
REDUCTION_LAYERS = tuple(l.index for l in LAYERS if l.stride == 2)
CHANNEL_CHANGE_LAYERS = tuple(l.index for l in LAYERS if l.in_channels != l.out_channels)
# 0-based layers where a plain identity cannot be a true identity (stride 2 or more channels).
SHAPE_CHANGE_LAYERS = tuple(sorted(set(REDUCTION_LAYERS) | set(CHANNEL_CHANGE_LAYERS)))


class ArchitectureError(ValueError):
    """A choice vector that is not a valid architecture of the chosen search space."""


@dataclass(frozen=True)
class SearchSpace:
    """A set of allowed choices per layer.

    ``se=True`` is the paper's 13-choice space (13^19); ``se=False`` the 7-choice space without SE
    (7^19) that the paper uses for its quicker comparisons: choices 0, 2, 4, 6, 8, 10 and identity.
    ``identity_everywhere=True`` (the supernet's space, as the authors confirmed) allows identity at
    the downsampling and channel-changing layers too; ``False`` only where the shape is preserved,
    as in the released stand-alone models.
    """

    se: bool = True
    identity_everywhere: bool = True

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(c.index for c in CHOICES if self.se or not c.se)

    @property
    def num_choices(self) -> int:
        return len(self.choices)

    def allowed(self, layer: int) -> tuple[int, ...]:
        if self.identity_everywhere or LAYERS[layer].preserves_shape:
            return self.choices
        return tuple(c for c in self.choices if c != IDENTITY)

    @property
    def size(self) -> int:
        """Number of distinct architectures (7^19 or 13^19 when identity is allowed everywhere)."""
        return math.prod(len(self.allowed(i)) for i in range(NUM_LAYERS))

    def check(self, arch: "Architecture | Sequence[int]") -> "Architecture":
        """``arch`` as an ``Architecture`` if this space allows every choice, else an ``ArchitectureError`` naming
        the layer and what it accepts."""
        arch = Architecture.coerce(arch)
        for i, c in enumerate(arch.choices):
            if c not in self.allowed(i):
                if c == IDENTITY:
                    raise ArchitectureError(
                        f"layer {i + 1} (stride {LAYERS[i].stride}, {LAYERS[i].in_channels}->"
                        f"{LAYERS[i].out_channels} channels) cannot be identity in this space "
                        f"({self}); identity is allowed only at shape-preserving layers "
                        f"{[l.index + 1 for l in LAYERS if l.preserves_shape]}")
                raise ArchitectureError(
                    f"layer {i + 1}: choice {c} ({CHOICES[c].token}) is not in this space; "
                    f"accepted choices: {list(self.allowed(i))}")
        return arch

    def sample_uniform(self, rng: np.random.Generator | int | None = None, n: int | None = None):
        """Uniformly sampled architecture(s): one per layer choice drawn independently (SPOS)."""
        rng = np.random.default_rng(rng)
        archs = [
            Architecture([int(rng.choice(self.allowed(i))) for i in range(NUM_LAYERS)])
            for _ in range(1 if n is None else n)
        ]
        return archs[0] if n is None else archs

    def sample_fair(self, rng: np.random.Generator | int | None = None) -> list["Architecture"]:
        """FairNAS strict-fair sampling: m = num_choices paths, each choice used once per layer.

        Each layer draws an independent random permutation of its choices; path j takes the j-th
        entry of every layer's permutation. Requires every layer to offer the same m choices
        (``identity_everywhere=True``), otherwise strict fairness is impossible.
        """
        if not self.identity_everywhere:
            raise ArchitectureError(
                "strict-fair sampling needs the same number of choices at every layer; this space "
                "forbids identity at shape-changing layers. Use SearchSpace(identity_everywhere=True).")
        rng = np.random.default_rng(rng)
        choices = np.array(self.choices)
        perms = np.stack([rng.permutation(choices) for _ in range(NUM_LAYERS)], axis=1)
        return [Architecture(row.tolist()) for row in perms]

    def sample_stratified(self, n: int, seed: int,
                          identity_counts: Sequence[int] = (0, 2, 4, 6, 8)) -> list["Architecture"]:
        """A fixed, seeded set of at least ``n`` distinct architectures, stratified for one-shot scoring.

        Strata are ``(k, at_shape_change)`` for every ``k`` in ``identity_counts``: exactly ``k`` identity
        choices, with at least one (``True``) or none (``False``) at a stride-2 / channel-changing layer
        (``SHAPE_CHANGE_LAYERS``); ``(0, True)`` cannot exist and is left out. Every stratum gets
        ``ceil(n / number of strata)`` architectures, so equal-sized groups can be compared. Within a
        stratum the identity positions are uniform over the allowed position sets and every other layer
        takes one of the space's non-identity choices uniformly. Returned stratum by stratum (counts in the
        given order, ``False`` before ``True``); each stratum draws from its own stream of ``seed``, so a
        larger ``n`` extends the same set instead of replacing it.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer (how many architectures at least), got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(identity_counts, (str, bytes)) or not isinstance(identity_counts, Iterable):
            raise ValueError(f"identity_counts must be a sequence of integers 0-{NUM_LAYERS}, "
                             f"got {identity_counts!r}")
        counts = list(identity_counts)
        bad = [k for k in counts
               if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= NUM_LAYERS]
        if not counts or bad:
            raise ValueError(f"identity_counts must be a non-empty sequence of integers 0-{NUM_LAYERS}, "
                             f"got {identity_counts!r}")
        if len(set(counts)) != len(counts):
            raise ValueError(f"identity_counts must not repeat a count, got {identity_counts!r}")
        counts = [int(k) for k in counts]

        allowed_at = [i for i in range(NUM_LAYERS) if IDENTITY in self.allowed(i)]
        plain = [i for i in allowed_at if i not in SHAPE_CHANGE_LAYERS]
        changing = [i for i in allowed_at if i in SHAPE_CHANGE_LAYERS]
        others = [c for c in self.choices if c != IDENTITY]
        strata = [(k, flag) for k in counts for flag in (False, True) if k > 0 or not flag]
        per = -(-int(n) // len(strata))

        def stratum_size(k: int, flag: bool) -> int:
            positions = math.comb(len(allowed_at), k) - math.comb(len(plain), k) if flag else math.comb(len(plain), k)
            return positions * len(others) ** (NUM_LAYERS - k)

        for k, flag in strata:
            where = "at least one" if flag else "none"
            size = stratum_size(k, flag)
            if size == 0:
                raise ArchitectureError(
                    f"stratum ({k} identities, {where} at a stride-2 / channel-changing layer) cannot be "
                    f"realised in this space ({self}): identity is allowed at layers "
                    f"{[i + 1 for i in allowed_at]}, of which {[i + 1 for i in changing]} change the shape. "
                    "Pass identity_counts this space can realise"
                    + ("." if self.identity_everywhere else ", or use SearchSpace(identity_everywhere=True)."))
            if size < per:
                raise ArchitectureError(
                    f"stratum ({k} identities, {where} at a shape-changing layer) has only {size} distinct "
                    f"architectures in this space, fewer than the {per} per stratum that n={n} needs")

        archs: list[Architecture] = []
        for k, flag in strata:
            rng = np.random.default_rng([int(seed), k, int(flag)])
            seen: set[Architecture] = set()
            while len(seen) < per:
                while True:
                    ids = rng.choice(allowed_at if flag else plain, size=k, replace=False)
                    if not flag or any(i in SHAPE_CHANGE_LAYERS for i in ids):
                        break
                choices = rng.choice(others, size=NUM_LAYERS)
                choices[ids] = IDENTITY
                arch = Architecture(choices.tolist())
                if arch not in seen:
                    seen.add(arch)
                    archs.append(arch)
        return archs

    def __str__(self) -> str:
        return (f"{self.num_choices}-choice space ({'with' if self.se else 'without'} SE, identity "
                f"{'everywhere' if self.identity_everywhere else 'at shape-preserving layers only'})")


SPACE_SE = SearchSpace(se=True)
SPACE_NO_SE = SearchSpace(se=False)


class Architecture:
    """An immutable, hashable vector of 19 choice indices (0-12; 12 = identity).

    ``str(arch)`` gives a readable token form (``e3k7-e6k5-...-id-...``) and ``Architecture.parse``
    reads it back, as well as a plain index list such as ``"1,3,1,0,12,..."`` or ``"[1, 3, ...]"``.
    """

    __slots__ = ("_choices",)

    def __init__(self, choices: Iterable[int]):
        if isinstance(choices, (str, bytes)):
            raise ArchitectureError("use Architecture.parse(text) for a string")
        raw = list(choices)
        if len(raw) != NUM_LAYERS:
            raise ArchitectureError(f"an architecture has {NUM_LAYERS} choice indices, got {len(raw)}")
        out = []
        for i, c in enumerate(raw):
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
                if isinstance(c, (float, np.floating)) and float(c).is_integer():
                    c = int(c)
                else:
                    raise ArchitectureError(
                        f"layer {i + 1}: choice must be an integer index 0-{len(CHOICES) - 1}, got {c!r}")
            c = int(c)
            if not 0 <= c < len(CHOICES):
                raise ArchitectureError(
                    f"layer {i + 1}: choice index {c} out of range; accepted 0-{len(CHOICES) - 1} "
                    f"({', '.join(f'{x.index}={x.token}' for x in CHOICES)})")
            out.append(c)
        self._choices = tuple(out)

    @classmethod
    def coerce(cls, value: "Architecture | Sequence[int] | str") -> "Architecture":
        if isinstance(value, Architecture):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        return cls(value)

    @classmethod
    def parse(cls, text: str) -> "Architecture":
        """Read an architecture from text: 19 choice indices or tokens (``PARSE_FORMS``).

        Items are separated by commas, semicolons, ``|`` or whitespace; ``-`` only joins tokens
        (``str(arch)``), so ``-1`` is a (bad) index, never a separator. Indices and tokens may be mixed.
        Every error is an ``ArchitectureError`` (a ``ValueError``) naming the bad item and the accepted forms.
        """
        if not isinstance(text, str):
            raise TypeError(f"Architecture.parse takes a string, got {type(text).__name__}; "
                            "use Architecture(choices) for a sequence of indices")
        idx = []
        for item in (p for p in re.split(r"[\s,;|]+", text.strip().strip("[]()")) if p):
            if re.fullmatch(r"[+-]?[0-9]+", item):
                if len(item) > 6 or not 0 <= int(item) < len(CHOICES):
                    raise ArchitectureError(f"choice index {item} at layer {len(idx) + 1} of {text!r} is out of "
                                            f"range; {PARSE_FORMS}")
                idx.append(int(item))
                continue
            for piece in item.split("-"):
                if piece.lower() not in _TOKEN_TO_INDEX:
                    where = (f" of {item!r}" if piece != item else "") + (f" in {text!r}" if item != text else "")
                    hint = ("" if not re.fullmatch(r"[0-9]*", piece) else
                            " (an empty token: a leading, trailing or doubled '-')" if not piece else
                            " ('-' joins tokens only: separate indices with ',' or spaces)")
                    raise ArchitectureError(f"cannot parse {piece!r}{where}{hint}; {PARSE_FORMS}")
                idx.append(_TOKEN_TO_INDEX[piece.lower()])
        try:
            return cls(idx)
        except ArchitectureError as e:
            raise ArchitectureError(f"cannot parse {text!r}: {e}; {PARSE_FORMS}") from None

    @property
    def choices(self) -> tuple[int, ...]:
        return self._choices

    @property
    def blocks(self) -> tuple[Choice, ...]:
        return tuple(CHOICES[c] for c in self._choices)

    @property
    def num_identity(self) -> int:
        return sum(c == IDENTITY for c in self._choices)

    @property
    def identity_at_shape_change(self) -> bool:
        """True when an identity sits at a stride-2 or channel-changing layer (not a true identity there)."""
        return any(self._choices[i] == IDENTITY for i in SHAPE_CHANGE_LAYERS)

    @property
    def depth(self) -> int:
        """Number of MB blocks (non-identity layers)."""
        return NUM_LAYERS - self.num_identity

    def tolist(self) -> list[int]:
        return list(self._choices)

    def __iter__(self):
        return iter(self._choices)

    def __len__(self):
        return NUM_LAYERS

    def __getitem__(self, i):
        return self._choices[i]

    def __eq__(self, other):
        if isinstance(other, Architecture):
            return self._choices == other._choices
        return NotImplemented

    def __hash__(self):
        return hash(self._choices)

    def __str__(self):
        return "-".join(CHOICES[c].token for c in self._choices)

    def __repr__(self):
        return f"Architecture({list(self._choices)})"

    def in_space(self, space: SearchSpace) -> bool:
        try:
            space.check(self)
            return True
        except ArchitectureError:
            return False
