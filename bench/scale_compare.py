"""The "scale" benchmark's check that per-shard summaries decide as the exact path does.

The exact path is the same daily run with ``defaults.summary_sample_rows`` at least the day's
rows: every summary then keeps every row (``summaries.BottomK.exact``), so each stage decides on
the whole day as it did when it read the day. On a day larger than the sample, the summary path
decides on bounded samples and sketches; its verdicts should be the exact path's:

- drift: every test's drift flag and severity, per family and column, per segment value and
  column, embedding drift per text column and per segment, and the day's severity;
- experiments: each experiment's decision, each primary metric's decision and significance,
  each guardrail's verdict;
- the judge: each estimate (overall and per variant) against the other path's as two independent
  estimates of one quantity (``compare_judge``: the two paths draw different samples of the day);
- concept: the verdict; profile: each hard limit's state.

Each comparison is ``{"what", "compared", "equal", "differences"}``; a difference names the key and
both paths' values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Verdicts = dict[str, Any]


def drift_verdicts(drift: Mapping[str, Any]) -> Verdicts:
    """Every drift decision of a drift.json: key -> (drift, severity)."""
    out: Verdicts = {"day severity": drift.get("severity")}
    for family in drift.get("families", []):
        for column in family.get("columns", []):
            out[f"{family['family']} / {column['column']}"] = (column.get("drift"), column.get("severity"))
    for family in drift.get("segments", []):
        for segment in family.get("segments", []):
            for column in segment.get("columns", []):
                out[f"{family['family']}={segment['value']} / {column['column']}"] = (column.get("drift"), column.get("severity"))
    for test in drift.get("embedding", []):
        out[f"embedding / {test['column']}"] = (test.get("drift"), test.get("severity"))
    for test in drift.get("segment_embedding", []):
        out[f"embedding {test.get('segment')} / {test['column']}"] = (test.get("drift"), test.get("severity"))
    return out


def experiment_verdicts(experiments: Mapping[str, Any]) -> Verdicts:
    """Each experiment's decision, its primaries' decisions and significance, its guardrails' verdicts."""
    out: Verdicts = {}
    for exp in experiments.get("experiments", []):
        name = exp.get("experiment_id", "?")
        out[f"{name}: decision"] = exp.get("decision")
        for primary in exp.get("primary", []) or []:
            out[f"{name}: primary {primary.get('metric')}"] = (primary.get("decision"), primary.get("significant_after_correction"))
        for guardrail in exp.get("guardrails", []) or []:
            out[f"{name}: guardrail {guardrail.get('metric')}"] = guardrail.get("verdict")
    return out


def concept_verdicts(concept: Mapping[str, Any]) -> Verdicts:
    return {"verdict": concept.get("verdict"), "detections": concept.get("detections")}


def limit_verdicts(profiled: Mapping[str, Any]) -> Verdicts:
    return {f"{c.get('experiment_id')} {c.get('arm')} {c.get('metric')}": c.get("state") for c in profiled.get("hard_limits", [])}


def compare_verdicts(what: str, summary_path: Verdicts, exact_path: Verdicts) -> dict[str, Any]:
    """Whether two paths' verdicts are equal, key by key (a key only one path has is a difference)."""
    keys = sorted(set(summary_path) | set(exact_path))
    differences = [{"key": k, "summaries": summary_path.get(k, "(absent)"), "exact": exact_path.get(k, "(absent)")}
                   for k in keys if summary_path.get(k, "(absent)") != exact_path.get(k, "(absent)")]
    return {"what": what, "compared": len(keys), "equal": not differences, "differences": differences}


def _estimates(judged: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    out = {f"overall {metric}": e for metric, e in (judged.get("overall") or {}).items()}
    for variant, metrics in (judged.get("by_variant") or {}).items():
        if isinstance(metrics, Mapping):
            out.update({f"{variant} {metric}": e for metric, e in metrics.items() if isinstance(e, Mapping) and "estimate" in e})
    return out


def _standard_error(estimate: Mapping[str, Any]) -> float | None:
    """The standard error a 95% interval implies (its half-width over 1.96; an asymmetric interval's mean half-width)."""
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    return None if low is None or high is None else (high - low) / (2 * 1.959963984540054)


def compare_judge(summary_path: Mapping[str, Any], exact_path: Mapping[str, Any], alpha: float = 0.05) -> dict[str, Any]:
    """Each judge estimate of the two paths as two independent estimates of the same quantity.

    The paths draw different samples of one day (exact: the seeded draw from every row; summaries:
    each stratum's bottom-k by request-id hash), so their estimates differ by sampling error. They
    agree when |a - b| <= z * sqrt(se_a^2 + se_b^2), z the two-sided normal quantile at alpha
    Bonferroni-divided over the estimates compared (a two-sample z-test of equality, family-wise
    level alpha). Asking each estimate to lie inside the other's interval would fail about 17% of
    estimates of two correct samples (|Z| > 1.96 / sqrt 2).
    """
    from scipy.stats import norm

    ours, theirs = _estimates(summary_path), _estimates(exact_path)
    keys = sorted(set(ours) | set(theirs))
    z_bound = float(norm.ppf(1 - alpha / (2 * max(len(keys), 1))))
    differences, worst = [], 0.0
    for key in keys:
        a, b = ours.get(key), theirs.get(key)
        if a is None or b is None:
            differences.append({"key": key, "summaries": a or "(absent)", "exact": b or "(absent)"})
            continue
        if a.get("estimate") == b.get("estimate"):
            continue
        se_a, se_b = _standard_error(a), _standard_error(b)
        if a.get("estimate") is None or b.get("estimate") is None or se_a is None or se_b is None:
            differences.append({"key": key, "summaries": dict(a), "exact": dict(b), "z": None})
            continue
        spread = (se_a ** 2 + se_b ** 2) ** 0.5
        z = abs(a["estimate"] - b["estimate"]) / spread if spread else float("inf")
        worst = max(worst, z)
        if z > z_bound:
            differences.append({"key": key, "summaries": dict(a), "exact": dict(b), "z": round(z, 2)})
    return {"what": f"judge estimates equal within sampling error (two-sample z <= {z_bound:.2f}, Bonferroni over {len(keys)}; largest z {worst:.2f})",
            "compared": len(keys), "equal": not differences, "differences": differences}


def compare_runs(summary_path: Mapping[str, Any], exact_path: Mapping[str, Any], read_json: Callable[[str], Any]) -> list[dict[str, Any]]:
    """Every comparison of two runs' results (task -> its record; ``read_json`` reads a record's output URI)."""
    out = []
    drifted, exact_drifted = summary_path.get("drift") or {}, exact_path.get("drift") or {}
    if drifted.get("drift_uri") and exact_drifted.get("drift_uri"):
        out.append(compare_verdicts("drift per column and segment", drift_verdicts(read_json(drifted["drift_uri"])),
                                    drift_verdicts(read_json(exact_drifted["drift_uri"]))))
    experimented, exact_experimented = summary_path.get("experiments") or {}, exact_path.get("experiments") or {}
    if experimented.get("experiments") is not None and exact_experimented.get("experiments") is not None:
        out.append(compare_verdicts("experiment decisions", experiment_verdicts(experimented), experiment_verdicts(exact_experimented)))
    judged, exact_judged = summary_path.get("judge") or {}, exact_path.get("judge") or {}
    if judged.get("outcome") == "ok" and exact_judged.get("outcome") == "ok":
        out.append(compare_judge(judged, exact_judged))
    concepted, exact_concepted = summary_path.get("concept") or {}, exact_path.get("concept") or {}
    if concepted.get("outcome") == "ok" and exact_concepted.get("outcome") == "ok":
        out.append(compare_verdicts("concept verdict", concept_verdicts(concepted), concept_verdicts(exact_concepted)))
    if summary_path.get("profile") and exact_path.get("profile"):
        out.append(compare_verdicts("profile hard limits", limit_verdicts(summary_path["profile"]), limit_verdicts(exact_path["profile"])))
    return out
