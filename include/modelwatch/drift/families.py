"""A partition's drift against its baseline: every family of columns, every segment, one verdict.

Families, each corrected for multiple testing on its own (Benjamini–Hochberg):

- ``features``: the configured feature columns (``drift.features``);
- ``prediction``: what the model produced (class shares, scores, response length, refusal share, status mix);
- ``input_length``: prompt tokens against the baseline (the cheapest early warning of input drift);
- ``segment <key>``: for each configured segment key, the same columns within each segment value
  that has at least ``drift.min_segment_count`` rows on both sides, so that a model that
  looks fine overall but degrades for one topic or locale is caught there.

The partition's severity is the worst severity of any drifting column; ``alerts`` lists
each drifting column with where it drifted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from modelwatch.baseline.columns import DriftColumns
from modelwatch.drift.univariate import ColumnDrift, DriftPolicy, categorical_drift, category_counts, decide, numerical_drift, worst


def column_tests(reference: pd.DataFrame, current: pd.DataFrame, names: list[str], kinds: dict[str, str],
                 profiles: dict[str, Any] | None = None) -> list[ColumnDrift]:
    """Undecided tests of ``names``; with ``profiles`` the PSI bins come from the baseline's KLL sketches."""
    from modelwatch.baseline.profiles import psi_bins_from_profile

    out = []
    for name in names:
        if kinds[name] == "numerical":
            bins = psi_bins_from_profile(profiles[name]) if profiles and name in profiles else None
            edges, counts = bins if bins else (None, None)
            out.append(numerical_drift(name, reference[name].to_numpy(dtype=float), current[name].to_numpy(dtype=float),
                                       edges=edges, reference_bin_counts=counts))
        else:
            out.append(categorical_drift(name, category_counts(reference[name]), category_counts(current[name])))
    return out


def family_result(name: str, results: list[ColumnDrift], policy: DriftPolicy) -> dict[str, Any]:
    decided = decide(results, policy)
    return {
        "family": name,
        "severity": worst([r.severity for r in decided]),
        "drifted": [r.column for r in decided if r.drift],
        "columns": [r.to_dict() for r in decided],
    }


def segment_families(reference: pd.DataFrame, current: pd.DataFrame, columns: DriftColumns, policy: DriftPolicy,
                     min_count: int) -> list[dict[str, Any]]:
    """Per segment key: the tested columns within each value that is large enough on both sides."""
    out = []
    for key in columns.segments:
        names = [c for c in columns.tested() if c != key]
        results, segments, skipped = [], [], []
        ref_groups = dict(tuple(reference.groupby(key, dropna=True))) if key in reference else {}
        for value, cur_rows in current.groupby(key, dropna=True):
            ref_rows = ref_groups.get(value)
            n_ref = 0 if ref_rows is None else len(ref_rows)
            if min(n_ref, len(cur_rows)) < min_count:
                skipped.append({"value": str(value), "n_reference": n_ref, "n_current": len(cur_rows)})
                continue
            tests = column_tests(ref_rows, cur_rows, names, columns.kinds)
            results += [_tagged(t, value) for t in tests]
            segments.append({"value": str(value), "n_reference": n_ref, "n_current": len(cur_rows)})
        decided = decide(results, policy)
        by_value: dict[str, list[ColumnDrift]] = {}
        for r in decided:
            by_value.setdefault(r.details["segment_value"], []).append(r)
        for seg in segments:
            rows = by_value.get(seg["value"], [])
            seg.update(severity=worst([r.severity for r in rows]), drifted=[r.column for r in rows if r.drift], columns=[r.to_dict() for r in rows])
        out.append({"family": f"segment {key}", "segment": key, "severity": worst([s["severity"] for s in segments]),
                    "segments": segments, "skipped": skipped, "min_count": min_count})
    return out


def _tagged(result: ColumnDrift, value: Any) -> ColumnDrift:
    from dataclasses import replace

    return replace(result, details={**result.details, "segment_value": str(value)})


def analyze(reference: pd.DataFrame, current: pd.DataFrame, columns: DriftColumns, policy: DriftPolicy, min_segment_count: int,
            profiles: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every family and segment of one partition against its baseline, with the overall severity and alerts."""
    families = [
        family_result(name, column_tests(reference, current, names, columns.kinds, profiles), policy)
        for name, names in (("features", columns.features), ("prediction", columns.prediction), ("input_length", columns.input_length))
        if names
    ]
    segments = segment_families(reference, current, columns, policy, min_segment_count)
    alerts = [{"family": f["family"], "column": c["column"], "severity": c["severity"], "effect_method": c["effect_method"],
               "effect": c["effect"], "p_adjusted": c["p_adjusted"]} for f in families for c in f["columns"] if c["drift"]]
    for family in segments:
        for seg in family["segments"]:
            alerts += [{"family": family["family"], "segment": f"{family['segment']}={seg['value']}", "column": c["column"], "severity": c["severity"],
                        "effect_method": c["effect_method"], "effect": c["effect"], "p_adjusted": c["p_adjusted"]}
                       for c in seg["columns"] if c["drift"]]
    return {
        "severity": worst([f["severity"] for f in families + segments]),
        "alerts": alerts,
        "families": families,
        "segments": segments,
        "rows": {"reference": len(reference), "current": len(current)},
        "policy": {"alpha": policy.alpha, "small_sample": policy.small_sample, "floors": dict(policy.floors), "methods": dict(policy.methods)},
    }


def sample_texts(frame: pd.DataFrame, column: str, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` non-empty texts of a column, sampled uniformly with a fixed seed."""
    texts = [t for t in frame[column].dropna().tolist() if isinstance(t, str) and t.strip()]
    if len(texts) <= n:
        return texts
    keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=n, replace=False))
    return [texts[i] for i in keep]
