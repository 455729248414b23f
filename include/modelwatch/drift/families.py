"""A partition's drift against its baseline: every family of columns, every segment, one verdict.

Families, each corrected for multiple testing on its own (Benjamini–Hochberg):

- ``features``: the configured feature columns (``drift.features``);
- ``prediction``: what the model produced (class shares, scores, response length, refusal share, status mix);
- ``input_length``: prompt tokens against the baseline (the cheapest early warning of input drift);
- ``segment <key>``: for each configured segment key, the same columns within each segment value
  that has at least ``drift.min_segment_count`` rows on both sides, so that a model that
  looks fine overall but degrades for one topic or locale is caught there; and the largest
  segment values' texts (``drift.segment_embedding_segments``, at most
  ``drift.segment_embedding_rows`` a side) by MMD, so a new topic in one locale is named there.
  Every segment test of the day (all keys, values and columns, embeddings included) is one Holm
  family, and a segment column drifts only when its effect also reaches the floor, however few
  its rows (``segment_families``).

The partition's severity is the worst severity of any drifting column; ``alerts`` lists
each drifting column with where it drifted.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from modelwatch.baseline.columns import DriftColumns
from modelwatch.drift.sides import Side, as_side
from modelwatch.drift.univariate import (
    ColumnDrift,
    DriftPolicy,
    Severity,
    categorical_drift,
    decide,
    numerical_drift,
    severity,
    use_method,
    worst,
)

Rows = Side | pd.DataFrame  # a side of a test (drift.sides): rows in memory, or a day's merged drift summary


def column_tests(reference: Rows, current: Rows, names: list[str], kinds: dict[str, str],
                 profiles: dict[str, Any] | None = None) -> list[ColumnDrift]:
    """Undecided tests of ``names``; with ``profiles`` the PSI bins come from the baseline's KLL sketches.

    Categorical columns are tested on each side's exact category counts; numerical ones on its numbers
    (a summary's bottom-k sample: every row of a day of at most ``defaults.summary_sample_rows`` rows).
    """
    from modelwatch.baseline.profiles import psi_bins_from_profile

    reference, current = as_side(reference), as_side(current)
    out = []
    for name in names:
        if kinds[name] == "numerical":
            bins = psi_bins_from_profile(profiles[name]) if profiles and name in profiles else None
            edges, counts = bins if bins else (None, None)
            out.append(numerical_drift(name, reference.numbers(name), current.numbers(name), edges=edges, reference_bin_counts=counts))
        else:
            out.append(categorical_drift(name, reference.category_counts(name), current.category_counts(name)))
    return out


def family_result(name: str, results: list[ColumnDrift], policy: DriftPolicy) -> dict[str, Any]:
    decided = decide(results, policy)
    return {
        "family": name,
        "severity": worst([r.severity for r in decided]),
        "drifted": [r.column for r in decided if r.drift],
        "columns": [r.to_dict() for r in decided],
    }


EmbeddingTest = Callable[[pd.DataFrame, pd.DataFrame, str, int], dict[str, Any]]
"""(reference rows, current rows, text column, permutations) -> an MMD result dict (``drift.mmd.MMDResult.to_dict``); the rows are
each side's ``text_rows(column)`` (``drift.sides``)."""


@dataclass(frozen=True)
class SegmentSlice:
    """One value of one segment key with its rows on both sides."""

    key: str
    value: str
    reference: Side
    current: Side

    @property
    def label(self) -> str:
        return f"{self.key}={self.value}"

    @property
    def size(self) -> int:
        return min(len(self.reference), len(self.current))


def segment_slices(reference: Rows, current: Rows, key: str, min_count: int) -> tuple[list[SegmentSlice], list[dict[str, Any]]]:
    """The values of ``key`` with at least ``min_count`` rows on both sides, and the skipped ones with their counts."""
    slices, skipped = [], []
    ref_groups = as_side(reference).groups(key)
    for value, cur_rows in as_side(current).groups(key).items():
        ref_rows = ref_groups.get(value)
        n_ref = 0 if ref_rows is None else len(ref_rows)
        if min(n_ref, len(cur_rows)) < min_count:
            skipped.append({"value": str(value), "n_reference": n_ref, "n_current": len(cur_rows)})
            continue
        slices.append(SegmentSlice(key, str(value), ref_rows, cur_rows))
    return slices, skipped


def holm(p_values: list[float], alpha: float) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979, "A simple sequentially rejective multiple test procedure",
    Scand. J. Statist. 6), as ``statsmodels.stats.multitest.multipletests(method="holm")`` computes them."""
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, alpha=alpha, method="holm")[1]] if p_values else []


def decide_segment_column(result: ColumnDrift, p_adjusted: float, policy: DriftPolicy, family_size: int) -> ColumnDrift:
    """A segment column's verdict: Holm-significant over the day's segment tests **and** its effect at the floor, whatever the rows.

    The whole-population families let a small sample's test decide alone; a segment never does, so
    a 600-row segment cannot alarm on a shift below the effect floor.
    """
    r = use_method(result, policy.methods.get(result.column))
    floor = None if r.effect_method is None else float(policy.floors[r.effect_method])
    drift = p_adjusted < policy.alpha and (floor is None or r.effect >= floor)
    rule = f"{r.test} Holm p_adj < {policy.alpha} over the day's {family_size} segment tests"
    decided_by = rule if floor is None else f"{rule} and {r.effect_method} >= {floor}"
    grade: Severity = (severity(r.effect_method, r.effect) if r.effect_method else "low") if drift else "none"
    return replace(r, p_adjusted=p_adjusted, floor=floor, drift=drift, severity=grade, decided_by=decided_by)


def embedding_permutations(family_size: int, alpha: float, configured: int) -> int:
    """Permutations a segment's MMD test needs so that its smallest p-value, 1/(B+1), clears Holm's first step alpha/m (with 1.5x room)."""
    return max(configured, math.ceil(1.5 * family_size / alpha))


def embedding_choice(per_key: list[list[SegmentSlice]], cap: int) -> list[SegmentSlice]:
    """Up to ``cap`` segment values for embedding drift: each key's values largest first, the keys taken in turn
    (locale's largest, topic's largest, locale's second, ...), so every key is covered before any key's small values."""
    ranked = [sorted(slices, key=lambda p: (-p.size, p.value)) for slices in per_key]
    turns = [piece for rank in range(max(map(len, ranked), default=0)) for slices in ranked if rank < len(slices) for piece in [slices[rank]]]
    return turns[:cap]


def segment_families(reference: Rows, current: Rows, columns: DriftColumns, policy: DriftPolicy, min_count: int,
                     embedding_test: EmbeddingTest | None = None, embedding_segments: int = 0,
                     embedding_permutations_configured: int = 1000) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every segment key's values tested on every column, and up to ``embedding_segments`` values (``embedding_choice``) on each
    text column (MMD through ``embedding_test``); one Holm family per day over all of these segment × column tests.

    Holm, not Benjamini–Hochberg: the target is the probability that a day without drift raises *any*
    segment alarm (a family-wise rate), and Holm bounds it at ``alpha`` under any dependence, while the
    tests here share rows (every column of a segment, overlapping keys such as locale and topic), so
    BH's positive-dependence condition is not given. Returns (families per key, segment embedding tests).
    """
    per_key = {key: segment_slices(reference, current, key, min_count) for key in columns.segments}
    tests: list[ColumnDrift] = []
    for key, (slices, _) in per_key.items():
        names = [c for c in columns.tested() if c != key]
        for piece in slices:
            tests += [_tagged(t, piece.value, key) for t in column_tests(piece.reference, piece.current, names, columns.kinds)]
    chosen = embedding_choice([slices for slices, _ in per_key.values()], embedding_segments)
    planned = len(chosen) * len(columns.text) if embedding_test is not None else 0
    tested = [t for t in tests if t.p_value is not None]
    family_size = len(tested) + planned
    permutations = embedding_permutations(family_size, policy.alpha, embedding_permutations_configured)
    embedded = [{"family": "segment embedding", "segment": p.label, "key": p.key, "value": p.value, "column": column,
                 **embedding_test(p.reference.text_rows(column), p.current.text_rows(column), column, permutations)}
                for p in (chosen if embedding_test is not None else []) for column in columns.text]
    with_p = [e for e in embedded if e.get("p_value") is not None]
    adjusted = holm([t.p_value for t in tested] + [e["p_value"] for e in with_p], policy.alpha)
    size = len(tested) + len(with_p)
    decided_by_id = {id(t): decide_segment_column(t, p, policy, size) for t, p in zip(tested, adjusted[: len(tested)], strict=True)}
    for e, p in zip(with_p, adjusted[len(tested):], strict=True):
        e.update(p_adjusted=p, drift=bool(p < policy.alpha), decided_by=f"mmd Holm p_adj < {policy.alpha} over the day's {size} segment tests")
    for e in embedded:
        e["severity"] = "medium" if e.get("drift") else "none"
    decided = [decided_by_id.get(id(t), t) for t in tests]
    return [_key_family(key, slices, skipped, decided, min_count) for key, (slices, skipped) in per_key.items()], embedded


def _key_family(key: str, slices: list[SegmentSlice], skipped: list[dict[str, Any]], decided: list[ColumnDrift], min_count: int) -> dict[str, Any]:
    """One segment key's family record: each tested value with its decided columns."""
    segments = []
    for piece in slices:
        rows = [r for r in decided if r.details.get("segment_key") == key and r.details["segment_value"] == piece.value]
        segments.append({"value": piece.value, "n_reference": len(piece.reference), "n_current": len(piece.current),
                         "severity": worst([r.severity for r in rows]), "drifted": [r.column for r in rows if r.drift],
                         "columns": [r.to_dict() for r in rows]})
    return {"family": f"segment {key}", "segment": key, "severity": worst([s["severity"] for s in segments]), "segments": segments,
            "skipped": skipped, "min_count": min_count, "correction": "holm (one family per day over every segment test)"}


def _tagged(result: ColumnDrift, value: Any, key: str) -> ColumnDrift:
    return replace(result, details={**result.details, "segment_key": key, "segment_value": str(value)})


def analyze(reference: Rows, current: Rows, columns: DriftColumns, policy: DriftPolicy, min_segment_count: int,
            profiles: dict[str, Any] | None = None, embedding_test: EmbeddingTest | None = None, embedding_segments: int = 0,
            embedding_permutations_configured: int = 1000) -> dict[str, Any]:
    """Every family and segment of one partition against its baseline, with the overall severity and alerts.

    ``reference`` and ``current`` are frames of drift columns or sides (``drift.sides``: the day's merged summary).

    ``embedding_test`` (with ``embedding_segments`` > 0) adds per-segment embedding drift to the segment family.
    """
    reference, current = as_side(reference), as_side(current)
    families = [
        family_result(name, column_tests(reference, current, names, columns.kinds, profiles), policy)
        for name, names in (("features", columns.features), ("prediction", columns.prediction), ("input_length", columns.input_length))
        if names
    ]
    segments, segment_embedding = segment_families(reference, current, columns, policy, min_segment_count, embedding_test,
                                                   embedding_segments, embedding_permutations_configured)
    alerts = [{"family": f["family"], "column": c["column"], "severity": c["severity"], "effect_method": c["effect_method"],
               "effect": c["effect"], "p_adjusted": c["p_adjusted"]} for f in families for c in f["columns"] if c["drift"]]
    for family in segments:
        for seg in family["segments"]:
            alerts += [{"family": family["family"], "segment": f"{family['segment']}={seg['value']}", "column": c["column"], "severity": c["severity"],
                        "effect_method": c["effect_method"], "effect": c["effect"], "p_adjusted": c["p_adjusted"]}
                       for c in seg["columns"] if c["drift"]]
    alerts += [{"family": e["family"], "segment": e["segment"], "column": e["column"], "severity": e["severity"], "effect_method": "mmd2",
                "effect": e.get("mmd2"), "p_adjusted": e.get("p_adjusted")} for e in segment_embedding if e.get("drift")]
    return {
        "severity": worst([f["severity"] for f in families + segments] + [e["severity"] for e in segment_embedding]),
        "alerts": alerts,
        "families": families,
        "segments": segments,
        "segment_embedding": segment_embedding,
        "rows": {"reference": len(reference), "current": len(current)},
        "policy": {"alpha": policy.alpha, "small_sample": policy.small_sample, "floors": dict(policy.floors), "methods": dict(policy.methods)},
    }

