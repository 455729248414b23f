"""Deterministic, sticky experiment assignment: the hash a serving router and the log checks share.

A unit (user or request id) is hashed with the experiment id into a bucket, and the buckets
are cut by the arms' weights in the order given. The same unit always lands in the same arm
of the same experiment, and different experiments are independent of each other.

:class:`HashScheme` describes such a hash: the algorithm, the text hashed (a format with
``{experiment_id}`` and ``{unit}`` placeholders), how many leading bits of the digest are read
as an unsigned big-endian integer, and the number of buckets that integer is reduced to
(modulo). modelwatch's own router is :data:`MODELWATCH`: SHA-256 of ``experiment_id:unit``,
the first 64 bits, 10,000 buckets. A team's own router is declared with the scheme it uses, and
the experiments stage checks every logged arm against it (``config.Assignment``).
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping
from dataclasses import dataclass

BUCKETS = 10_000
# digest bits per algorithm: hashlib's, and MurmurHash3 x86 32-bit (mmh3, as feature-flag routers such as Unleash use it)
ALGORITHMS: dict[str, int] = {"md5": 128, "sha1": 160, "sha256": 256, "sha512": 512, "murmur3": 32}
PLACEHOLDERS = frozenset({"experiment_id", "unit"})


def salt_problem(salt: str) -> str | None:
    """Why ``salt`` is not a usable hash-input format (it must contain ``{unit}``, may contain ``{experiment_id}``), or None."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(salt) if name is not None}
    except ValueError as exc:
        return f"salt {salt!r} is not a format string: {exc}"
    unknown = sorted(fields - PLACEHOLDERS)
    if unknown:
        return f"salt {salt!r} has unknown placeholder(s) {unknown}; use {{experiment_id}} and {{unit}}"
    if "unit" not in fields:
        return f"salt {salt!r} must contain {{unit}} (the unit id the router hashes)"
    return None


@dataclass(frozen=True)
class HashScheme:
    """A hash-based assignment: ``int(first bits of algorithm(salt.format(...)))`` modulo ``buckets``, cut by weight.

    ``seed`` is MurmurHash3's seed (0 unless the router sets one); the other algorithms take none.
    """

    algorithm: str = "sha256"
    salt: str = "{experiment_id}:{unit}"
    bits: int = 64
    buckets: int = BUCKETS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown hash algorithm {self.algorithm!r}; known: {sorted(ALGORITHMS)}")
        problem = salt_problem(self.salt)
        if problem:
            raise ValueError(problem)
        if not 1 <= self.bits <= ALGORITHMS[self.algorithm]:
            raise ValueError(f"bits must lie in 1..{ALGORITHMS[self.algorithm]} for {self.algorithm}, got {self.bits}")
        if self.buckets < 2:
            raise ValueError(f"buckets must be at least 2, got {self.buckets}")
        if self.seed and self.algorithm != "murmur3":
            raise ValueError(f"a seed is MurmurHash3's; {self.algorithm} takes none")

    def describe(self) -> str:
        seeded = f" (seed {self.seed})" if self.seed else ""
        return f"{self.algorithm}{seeded} of {self.salt!r}, first {self.bits} bits mod {self.buckets}"

    def digest(self, text: str) -> bytes:
        """The digest of ``text`` (UTF-8): hashlib's, or MurmurHash3 x86 32-bit as an unsigned big-endian integer (mmh3)."""
        if self.algorithm == "murmur3":
            import mmh3  # only a murmur3 declaration needs it (the pipeline installs it; the serving client never does)

            return mmh3.hash(text.encode(), self.seed, signed=False).to_bytes(4, "big")
        return hashlib.new(self.algorithm, text.encode()).digest()

    def bucket(self, unit_id: str, experiment_id: str) -> int:
        """The unit's bucket in [0, buckets)."""
        text = self.salt.format(experiment_id=experiment_id, unit=unit_id)
        digest = self.digest(text)
        value = int.from_bytes(digest, "big") >> (8 * len(digest) - self.bits)
        return value % self.buckets

    def assign(self, unit_id: str, experiment_id: str, weights: Mapping[str, float]) -> str:
        """The arm for ``unit_id``: the buckets are cut by ``weights`` (shares that sum to 1, checked), in their order."""
        return arm_of_bucket(self.bucket(unit_id, experiment_id), self.buckets, weights)


MODELWATCH = HashScheme()


def arm_of_bucket(point: int, buckets: int, weights: Mapping[str, float]) -> str:
    """The arm whose share of ``[0, buckets)`` holds ``point``: the first ``round(w1 * buckets)`` buckets, then the next, ..."""
    total = sum(weights.values())
    if not weights or abs(total - 1.0) > 1e-6 or any(w < 0 for w in weights.values()):
        raise ValueError(f"arm weights must be non-negative and sum to 1, got {dict(weights)}")
    edge = 0.0
    arms = list(weights.items())
    for arm, weight in arms:
        edge += weight * buckets
        if point < round(edge):
            return arm
    return arms[-1][0]


def describe_assignment(method: str, unit: str, scheme: HashScheme | None, order: list[str] | None = None) -> str:
    """An assignment declaration in words (``config.Assignment``), as health messages name it."""
    if scheme is None:
        return f"external assignment by {unit} (the logged variant is the truth)"
    if method == "modelwatch":
        return f"modelwatch's assignment (sha256, 10,000 buckets) by {unit}"
    return f"declared hash by {unit}: {scheme.describe()}, arms in order {order or '[control, treatment]'}"


def bucket(unit_id: str, salt: str) -> int:
    """The unit's bucket in [0, BUCKETS) under modelwatch's own scheme, with the experiment id as ``salt``."""
    return MODELWATCH.bucket(unit_id, salt)


def assign(unit_id: str, salt: str, weights: Mapping[str, float]) -> str:
    """The arm for ``unit_id`` under modelwatch's own scheme; ``weights`` are shares that sum to 1 (checked)."""
    return MODELWATCH.assign(unit_id, salt, weights)
