"""Deciding an A/B experiment every day: health, primary metrics, guardrails, and the decision.

The analysis is cumulative from the experiment's ``start`` (``experiments.data`` stores
each day's sufficient statistics). Because the DAG looks every day:

- means, rates and ratios use anytime-valid confidence sequences (Howard et al. 2021,
  as GrowthBook's sequential testing; ``experiments.inference.sequential_difference``) in the
  default ``sequential`` mode, tuned to the planned sample size; ``fixed`` mode uses the
  fixed-horizon tests and reads them once the power analysis' sample size is reached;
- quantile guardrails (p95/p99 latency) use order-statistic intervals at the alpha of the
  day's look: look k (day k counted from ``start``, :func:`look_number`) spends
  ``experiments.stats.look_alpha(alpha, k)``, a sequence that sums to less than alpha over
  any number of looks, so by Bonferroni the chance of any false harm verdict stays at most
  alpha however long the experiment runs; they abstain below ``min_quantile_count`` rows
  per arm;
- primary metrics are corrected for multiplicity (Holm or Benjamini–Hochberg on the
  always-valid p-values); guardrails are not (each one can only stop the experiment).

Decision, with its reasons (first match wins):

1. ``roll_back``: a hard limit broke in this partition, or a guardrail is ``inferior``
   (evidence that the treatment is worse than control by more than the margin); guardrails
   act even when the comparison is invalid, since harm to users needs no balanced arms to matter;
2. ``invalid``: a sample-ratio mismatch (chi-squared against the planned split, p < 0.001;
   Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in Online Controlled Experiments",
   KDD): the arms are not the populations the plan compares, so no primary result is
   trustworthy; the reasons say what to check (router, logging, bot filtering, arm-specific
   crashes). Never promotes;
3. ``guardrail_watch``: an experiment without primary metrics only watches its guardrails
   (it has nothing to promote and no sample size to reach);
4. ``promote``: health checks pass, every primary metric is significantly better after
   correction, no primary is significantly worse, and every guardrail is non-inferior;
5. ``stop``: futile: every primary's interval already excludes its MDE in the good
   direction (sequential), or the planned sample size is reached without a win (fixed);
6. ``continue``: otherwise, with the days remaining at the current traffic.

A primary metric's decision and its p-value are on one estimand: the relative lift for a
relative MDE (delta method, Deng et al. 2018), the difference for an absolute one, so the
corrected p-value is below alpha exactly when that interval excludes 0. A judge metric
whose agreement with people on the golden set is below the judge's minimum abstains
(:func:`judge_standing`): it does not decide, and the decision says which metric and why
(``abstained``); one that may decide says so too (``judge_decides``). Unless people
reviewed enough of each arm's judged answers (``judge.min_review_labels`` per arm, counted
from the experiment's start): then the metric is tested on the arms' prediction-powered
means (:class:`~modelwatch.experiments.stats.PPIStats`, Angelopoulos et al. 2023), which
remove each arm's own judge bias with the human labels, in the same sequential or
fixed-horizon test (``"via": "human review (PPI)"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import numpy as np

from modelwatch.config import Experiment, MetricGoal
from modelwatch.experiments.data import QUANTILES, RATIOS, metric_kind
from modelwatch.experiments.design import PowerResult, adjust_pvalues, days_remaining, power_analysis, srm_test
from modelwatch.experiments.inference import difference_test, mean_test, non_inferiority, proportion_test
from modelwatch.experiments.quantiles import quantile_difference
from modelwatch.experiments.stats import (
    DEFAULT_TUNING_N,
    SPENDING_FLAT_LOOKS,
    PPIStats,
    RatioStats,
    SampleStats,
    TestResult,
    alpha_spent,
    look_alpha,
)

# A confidence sequence needs more rows than a fixed-horizon test for the same power: at 1.75x the
# fixed-horizon n it reached 80% power over 14 daily looks (bench/suite_experiments.py).
SEQUENTIAL_INFLATION = 1.75
# human review labels per arm before a judge metric below its agreement minimum is decided from them (judge.min_review_labels)
DEFAULT_MIN_REVIEW_LABELS = 30
VIA_REVIEW = "human review (PPI)"


def ppi_key(metric: str) -> str:
    """Where an arm's prediction-powered moments of a judge metric are stored among its day statistics."""
    return f"ppi:{metric}"


def sample_stats(moments: dict[str, float] | None) -> SampleStats:
    m = moments or {}
    return SampleStats(int(m.get("n", 0)), float(m.get("sum", 0.0)), float(m.get("sum_sq", 0.0)))


def ratio_stats(moments: dict[str, float] | None) -> RatioStats:
    m = moments or {}
    return RatioStats(int(m.get("n", 0)), *(float(m.get(k, 0.0)) for k in ("sum_x", "sum_y", "sum_x2", "sum_y2", "sum_xy")))


def _arm_stats(cumulative: dict[str, Any], arm: str, metric: str):
    moments = cumulative["stats"].get(arm, {}).get(metric)
    return ratio_stats(moments) if metric in RATIOS else sample_stats(moments)


def _unavailable(metric: str, cumulative: dict[str, Any] | None = None) -> str | None:
    if metric_kind(metric) is None:
        return f"{metric} is not a metric experiments can test"
    if metric.startswith("judge.") and not all((cumulative or {}).get("stats", {}).get(arm, {}).get(metric, {}).get("n") for arm in (cumulative or {}).get("counts", {})):
        return f"{metric}: no judge scores for both arms yet (is the judge configured, with variant among stratify_by?)"
    if metric.startswith("feedback.") and not all((cumulative or {}).get("stats", {}).get(arm, {}).get(metric, {}).get("n") for arm in (cumulative or {}).get("counts", {})):
        return f"{metric}: no feedback for both arms yet (it arrives late under labels_uri; is the signal in the model's feedback.signals?)"
    return None


def tuning_n(exp: Experiment, cumulative: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """The planned total sample size: configured, else the power analysis of the first testable primary metric."""
    if exp.planned_requests:
        return exp.planned_requests, None
    for goal in exp.primary:
        power = _power_for(goal, exp, cumulative)
        if power is not None and not power.abstained:
            factor = SEQUENTIAL_INFLATION if exp.mode == "sequential" else 1.0
            return int(power.required_total * factor), {**power.to_dict(), "sequential_inflation": factor}
    return DEFAULT_TUNING_N, None


def _power_for(goal: MetricGoal, exp: Experiment, cumulative: dict[str, Any]) -> PowerResult | None:
    kind = metric_kind(goal.metric)
    if kind not in ("mean", "proportion") or goal.mde is None:
        return None
    control = sample_stats(cumulative["stats"].get(exp.control, {}).get(goal.metric))
    if control.n < 2 or control.mean is None:
        return None
    split = exp.weights()[exp.treatment]
    return power_analysis(control.mean, control.sd, goal.mde, relative=not goal.absolute, alpha=exp.alpha, power=exp.power,
                             split=split, kind=kind)


def judge_trust(judged: Mapping[str, Any] | None, minimum: float | None = None,
                min_review_labels: int = DEFAULT_MIN_REVIEW_LABELS) -> dict[str, Any]:
    """The judge's agreement with people from the judge stage's record: ``{"minimum", "labels": {name: entry}, "min_review_labels"}``.

    The record's ``agreement`` maps each dimension and flag to its golden-set agreement
    (``kind``, ``n``, ``kappa`` with ``kappa_low``/``kappa_high``, ``verdict``, ``reason``, ...;
    ``judge.trust``); ``minimum`` is the configured ``judge.min_kappa``. The record may have no
    ``agreement`` (a judge stage that did not measure, an older record): then nothing abstains.
    ``min_review_labels`` (``judge.min_review_labels``) is how many human-labelled rows each
    arm needs before a metric below the minimum is decided from human review instead.
    """
    record = judged or {}
    labels = record.get("agreement") if isinstance(record.get("agreement"), Mapping) else {}
    return {"minimum": float(minimum) if isinstance(minimum, (int, float)) else None, "labels": dict(labels),
            "min_review_labels": int(min_review_labels)}


def judge_label(metric: str) -> str | None:
    """The judge dimension or flag a ``judge.*`` metric reads (``judge.helpfulness``, ``judge.toxicity_rate``), else None."""
    if not metric.startswith("judge."):
        return None
    return metric.removeprefix("judge.").removesuffix("_rate")


def judge_standing(metric: str, trust: Mapping[str, Any]) -> tuple[bool, str] | None:
    """Whether a judge metric may decide and why, from its agreement with people; None when the record says nothing of it.

    With a configured minimum the golden-set kappa must reach it; without one, the judge's own
    verdict must be ``usable``. A label the record does not mention (no agreement measured by
    that judge stage) is not held back.
    """
    name = judge_label(metric)
    entry = (trust.get("labels") or {}).get(name) if name else None
    if not isinstance(entry, Mapping):
        return None
    kappa, minimum, verdict = entry.get("kappa"), trust.get("minimum"), entry.get("verdict")
    interval = f" [{entry['kappa_low']:.2f}, {entry['kappa_high']:.2f}]" if isinstance(entry.get("kappa_low"), float) and isinstance(entry.get("kappa_high"), float) else ""
    measured = f"kappa {kappa:.2f}{interval} on {entry.get('n')} golden-set items" if isinstance(kappa, (int, float)) else "no kappa measured"
    if minimum is not None and isinstance(kappa, (int, float)):
        if kappa >= minimum:
            return True, f"{metric} may decide: the judge agrees with people ({measured} >= the minimum {minimum:g})"
        return False, f"{metric} abstains: the judge's agreement with people is below the minimum ({measured} < {minimum:g})"
    state = str(verdict or "not_measured").replace("_", " ")
    if verdict == "usable":
        return True, f"{metric} may decide: the judge's agreement with people is usable ({measured})"
    return False, f"{metric} abstains: the judge's agreement with people is {state} ({measured}; {entry.get('reason') or state})"


def primary_result(goal: MetricGoal, exp: Experiment, cumulative: dict[str, Any], n_tuning: int,
                   trust: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The primary metric's test (sequential or fixed), its decision in the good direction and futility.

    ``estimand`` is the scale the decision and ``p_value_decision`` are on: the relative lift
    for a relative MDE (the default), the difference for ``absolute: true`` or when the lift is
    undefined (a control mean of 0). A judge metric below its agreement minimum abstains.
    """
    standing = judge_standing(goal.metric, trust or {})
    if standing is not None and not standing[0]:
        reviewed = reviewed_arms(exp, cumulative, goal.metric, int((trust or {}).get("min_review_labels") or DEFAULT_MIN_REVIEW_LABELS))
        if isinstance(reviewed, str):
            reason = f"{standing[1]}; {reviewed}"
            return {"metric": goal.metric, "direction": goal.direction, "abstained": True, "reason": reason, "decision": "inconclusive",
                    "judge_agreement": reason}
        tested = _tested(goal, exp, *reviewed, n_tuning)
        alone = standing[1].removeprefix(f"{goal.metric} abstains: ")
        said = (f"{standing[1]}; its human-review (PPI) test abstains too: {tested.get('reason')}" if tested.get("abstained") else
                f"{goal.metric} decides from {VIA_REVIEW}: {reviewed[0].n_labelled} {exp.control} and {reviewed[1].n_labelled} {exp.treatment} "
                f"answers labelled by people correct each arm's judge bias (alone, {alone})")
        return {**tested, "via": VIA_REVIEW, "judge_agreement": said,
                "judge_rectifier": {exp.control: reviewed[0].rectifier, exp.treatment: reviewed[1].rectifier}}
    missing = _unavailable(goal.metric, cumulative)
    if missing or metric_kind(goal.metric) == "quantile":
        reason = missing or f"{goal.metric}: quantile metrics are guardrails, not primary metrics"
        return {"metric": goal.metric, "direction": goal.direction, "abstained": True, "reason": reason, "decision": "inconclusive"}
    out = _tested(goal, exp, _arm_stats(cumulative, exp.control, goal.metric), _arm_stats(cumulative, exp.treatment, goal.metric), n_tuning)
    if standing is not None:
        out["judge_agreement"] = standing[1]
    return out


def reviewed_arms(exp: Experiment, cumulative: Mapping[str, Any], metric: str, min_labels: int) -> tuple[PPIStats, PPIStats] | str:
    """Both arms' prediction-powered statistics of a judge metric, or why human review cannot decide it yet.

    Each arm needs at least ``min_labels`` human-labelled judged rows since the experiment's
    start (and two judged rows without a label) for its corrected mean to be used.
    """
    stats = cumulative.get("stats") or {}
    arms = [PPIStats.from_moments((stats.get(arm) or {}).get(ppi_key(metric))) for arm in (exp.control, exp.treatment)]
    if any(a.n_labelled < min_labels or a.n_unlabelled < 2 for a in arms):
        return (f"human review cannot decide it yet: each arm needs {min_labels} answers labelled by people "
                f"(judge.min_review_labels), labelled so far: {', '.join(f'{arm} {a.n_labelled}' for arm, a in zip((exp.control, exp.treatment), arms))}")
    return arms[0], arms[1]


def _tested(goal: MetricGoal, exp: Experiment, control: SampleStats | RatioStats | PPIStats, treatment: SampleStats | RatioStats | PPIStats,
            n_tuning: int) -> dict[str, Any]:
    """The primary metric's test in the experiment's mode, its decision on the goal's estimand, and futility."""
    kind = metric_kind(goal.metric)
    result = difference_test(control, treatment, kind="mean" if kind == "ratio" else kind, alpha=exp.alpha,
                                sequential=exp.mode == "sequential", tuning_n=n_tuning, metric=goal.metric)
    relative = not goal.absolute and result.lift_p_value is not None
    estimand, p_value = ("relative_lift", result.lift_p_value) if relative else ("difference", result.difference_p_value())
    decision = result.lift_decision(goal.direction) if relative else result.decision(goal.direction)
    out = {**result.to_dict(), "direction": goal.direction, "mde": goal.mde, "decision": decision, "estimand": estimand,
           "p_value_decision": p_value}
    out["futile"] = _futile(result, goal)
    return out


def _futile(result: TestResult, goal: MetricGoal) -> bool:
    """The interval already rules out an improvement as large as the MDE (relative or absolute)."""
    if result.abstained or goal.mde is None:
        return False
    low, high = (result.ci_low, result.ci_high) if goal.absolute else (result.lift_ci_low, result.lift_ci_high)
    if low is None or high is None:
        return False
    return high < goal.mde if goal.direction == "increase" else low > -goal.mde


def look_number(start: str | None, day: date) -> int:
    """The daily look ``day`` is: 1 on the experiment's ``start``, 60 on the 60th day from it.

    Every calendar day counts, with or without data, so a day's look number never depends on
    which earlier days were analysed. Without a ``start`` the analysis covers the day alone,
    which is then its first look.
    """
    if start is None:
        return 1
    first = date.fromisoformat(start)
    if day < first:
        raise ValueError(f"day {day.isoformat()} is before the experiment's start {start}")
    return (day - first).days + 1


def guardrail_result(goal: MetricGoal, exp: Experiment, cumulative: dict[str, Any], n_tuning: int, look: int) -> dict[str, Any]:
    """Non-inferiority of one guardrail at daily look ``look``: ``inferior`` is the rollback signal."""
    margin = goal.margin or 0.0
    missing = _unavailable(goal.metric, cumulative)
    if missing:
        return {"metric": goal.metric, "verdict": "inconclusive", "abstained": True, "reason": missing}
    if metric_kind(goal.metric) == "quantile":
        return quantile_guardrail(goal, exp, cumulative, look)
    kind = metric_kind(goal.metric)
    result = non_inferiority(_arm_stats(cumulative, exp.control, goal.metric), _arm_stats(cumulative, exp.treatment, goal.metric),
                                direction=goal.direction, margin=margin, absolute=goal.absolute, alpha=exp.alpha,
                                sequential=exp.mode == "sequential", tuning_n=n_tuning, kind="mean" if kind == "ratio" else kind,
                                metric=goal.metric)
    return result.to_dict()


def quantile_guardrail(goal: MetricGoal, exp: Experiment, cumulative: dict[str, Any], look: int) -> dict[str, Any]:
    """Non-inferiority of a latency quantile at daily look ``look``: order-statistic intervals at that look's alpha.

    ``experiments.stats.look_alpha`` gives the look's alpha; the result states the look, the
    alpha spent at it and the alpha spent by all looks to date. On a sampled day (an arm with more requests since the start
    than ``defaults.summary_sample_rows``) the intervals are read on each arm's uniform sample of
    its requests (bottom-k by request-id hash): the order-statistic interval keeps its coverage of
    the latency distribution's quantile on a uniform sample (``bench/suite_experiments.py``), and
    the result says how many rows of how many it read (``rows_control``, ``rows_treatment``).
    """
    q = QUANTILES[goal.metric]
    control = cumulative["latency"].get(exp.control, np.array([]))
    treatment = cumulative["latency"].get(exp.treatment, np.array([]))
    spent, to_date = look_alpha(exp.alpha, look), alpha_spent(exp.alpha, look)
    flat = SPENDING_FLAT_LOOKS
    plan = (f"look {look}: alpha {spent:.3g}, {to_date:.3g} of {exp.alpha:g} spent to date (alpha/{2 * flat} at each of the "
            f"first {flat} looks, then alpha*{flat}/(2k(k-1)) at look k: below alpha over any number of daily looks)")
    if exp.start is None:
        plan += "; no start configured, so each day is analysed alone and the bound holds per day, not across days"
    rows = cumulative.get("latency_rows") or {}
    seen = {arm: int(rows.get(arm, values.size)) for arm, values in ((exp.control, control), (exp.treatment, treatment))}
    if seen[exp.control] > control.size or seen[exp.treatment] > treatment.size:
        plan += (f"; on uniform samples of {control.size:,} of {seen[exp.control]:,} control and {treatment.size:,} of "
                 f"{seen[exp.treatment]:,} treatment requests (bottom-k by request-id hash)")
    min_tail = exp.min_quantile_count * min(q, 1 - q)
    # two-sided confidence 1 - 2*spent: the one-sided harm bound misses with probability <= spent
    result = quantile_difference(control, treatment, q, confidence=1 - 2 * spent, min_tail=min_tail, metric=goal.metric)
    base = {"metric": goal.metric, "kind": "quantile", "direction": goal.direction, "margin": goal.margin or 0.0, "absolute": goal.absolute,
            "alpha": exp.alpha, "look": look, "alpha_per_look": spent, "alpha_spent_to_date": to_date, "method": f"{result.method}; {plan}",
            "n_control": int(control.size), "n_treatment": int(treatment.size),
            "rows_control": seen[exp.control], "rows_treatment": seen[exp.treatment],
            "control_estimate": result.control_estimate, "treatment_estimate": result.treatment_estimate}
    if result.abstained:
        return {**base, "verdict": "inconclusive", "abstained": True, "reason": result.reason}
    margin = goal.margin or 0.0
    if goal.absolute:
        estimate, lower, upper, scale = result.effect, result.ci_low, result.ci_high, "difference"
    else:
        estimate, lower, upper, scale = result.relative_lift, result.lift_ci_low, result.lift_ci_high, "relative_lift"
    if lower is None:
        return {**base, "verdict": "inconclusive", "abstained": True, "reason": "relative lift undefined (non-positive values)"}
    threshold = margin if goal.direction == "decrease" else -margin
    if goal.direction == "decrease":
        verdict = "non_inferior" if upper < threshold else "inferior" if lower > threshold else "inconclusive"
    else:
        verdict = "non_inferior" if lower > threshold else "inferior" if upper < threshold else "inconclusive"
    return {**base, "scale": scale, "threshold": threshold, "estimate": estimate, "lower": lower, "upper": upper, "verdict": verdict,
            "abstained": False, "reason": ""}


def health(exp: Experiment, cumulative: dict[str, Any]) -> dict[str, Any]:
    """Sample-ratio mismatch, missing arms, units exposed to several arms, and the declared assignment checked per request.

    Every check reads the experiment's assignment declaration (``exp.assignment``): with
    ``external`` assignment the logged variant is the truth, so there is no per-request check
    and SRM, arm exposure and units in several arms are what health rests on.
    """
    by_unit = exp.assignment.unit != "request_id" and bool(cumulative.get("unit_counts"))
    srm = srm_test(cumulative["unit_counts"] if by_unit else cumulative["counts"], exp.weights())
    declared = exp.assignment.describe()
    several = max(cumulative["units_in_several_arms"], cumulative.get("units_across_arms") or 0)
    problems = []
    if srm.flagged:
        problems.append(f"sample-ratio mismatch: {srm.reason or f'p = {srm.p_value:.2g} < {srm.threshold}'} (observed {srm.observed})")
    if srm.zero_traffic:
        problems.append(f"arms without traffic: {srm.zero_traffic}")
    if cumulative["unplanned_variants"]:
        problems.append(f"traffic in variants outside the experiment: {cumulative['unplanned_variants']}")
    if several:
        problems.append(f"{several} units ({exp.assignment.unit}) were exposed to more than one arm")
    if cumulative.get("units_missing"):
        problems.append(f"{cumulative['units_missing']} requests have no {exp.assignment.unit}, the unit the assignment declares")
    if cumulative["assignment_mismatches"]:
        examples = "; ".join(f"{e['unit']}: served {e['served']}, declared {e['declared']}" for e in cumulative.get("mismatch_examples") or [])
        problems.append(f"{cumulative['assignment_mismatches']} requests were served an arm other than the {declared} gives"
                        + (f" (e.g. {examples}): is the declaration the router's?" if examples else ""))
    return {"ok": not problems, "problems": problems, "srm": srm.to_dict(), "counts": cumulative["counts"], "days": cumulative["days"],
            "missing_days": cumulative["missing_days"], "assignment": declared, "srm_counts": "units" if by_unit else "requests",
            "checked_per_request": exp.assignment.method != "external"}


def _look_text(guardrail: dict[str, Any]) -> str:
    return f"; look {guardrail['look']}, alpha {guardrail['alpha_per_look']:.2g}" if "look" in guardrail else ""


def decide(exp: Experiment, checks: dict[str, Any], primaries: list[dict[str, Any]], guardrails: list[dict[str, Any]],
           hard_limit_breaches: list[str], days_left: int | None, reached_plan: bool) -> dict[str, Any]:
    """The decision and its reasons (see the module docstring for the rules)."""
    inferior = [g for g in guardrails if g.get("verdict") == "inferior"]
    if hard_limit_breaches or inferior:
        reasons = [f"hard limit: {r}" for r in hard_limit_breaches]
        reasons += [f"guardrail {g['metric']} inferior: {g.get('scale', 'effect')} {g['estimate']:+.4g} beyond margin {g['margin']:g} "
                    f"(bound {g['lower' if g['direction'] == 'decrease' else 'upper']:+.4g}{_look_text(g)})" for g in inferior]
        if checks.get("srm", {}).get("flagged"):
            reasons.append(f"the comparison is invalid besides: {_srm_text(exp, checks)}")
        return {"decision": "roll_back", "reasons": reasons}
    if checks.get("srm", {}).get("flagged"):
        others = [f"health: {p}" for p in checks.get("problems", []) if not p.startswith("sample-ratio mismatch")]
        return {"decision": "invalid", "reasons": [_srm_text(exp, checks), *others, SRM_WHAT_TO_CHECK]}
    if not exp.primary:
        return guardrail_watch(checks, guardrails)
    worse = [p["metric"] for p in primaries if p.get("decision") == "worse" and p.get("significant_after_correction")]
    wins = [p for p in primaries if p.get("decision") == "better" and p.get("significant_after_correction")]
    pending_guardrails = [g["metric"] for g in guardrails if g.get("verdict") != "non_inferior"]
    if primaries and len(wins) == len(primaries) and not worse and not pending_guardrails and checks["ok"]:
        return {"decision": "promote", "reasons": [f"{p['metric']} better (p_adj {p['p_adjusted']:.3g})" for p in wins] +
                ["every guardrail non-inferior", "health checks pass"]}
    testable = [p for p in primaries if not p.get("abstained")]
    if testable and all(p.get("futile") for p in testable) and not wins:
        return {"decision": "stop", "reasons": [f"futile: every primary metric's interval excludes its MDE ({', '.join(p['metric'] for p in testable)})"]}
    if exp.mode == "fixed" and reached_plan and not wins:
        return {"decision": "stop", "reasons": ["planned sample size reached without a significant primary win"]}
    reasons = []
    if not checks["ok"]:
        reasons += [f"health: {p}" for p in checks["problems"]]
    reasons += [f"primary {p['metric']}: {p.get('reason') or p.get('decision')}" for p in primaries if p not in wins]
    if pending_guardrails:
        reasons.append(f"guardrails not yet shown non-inferior: {pending_guardrails}")
    if days_left is not None:
        reasons.append(f"about {days_left} more day(s) of traffic to reach the planned sample size")
    return {"decision": "continue", "reasons": reasons or ["collecting data"], "days_remaining": days_left}


SRM_WHAT_TO_CHECK = ("what to check: the router (does it split as planned, for every client and region?), the logging (is each arm logged "
                     "alike, with no lines lost, duplicated or late?), bot filtering (is one arm's traffic filtered differently?), and "
                     "arm-specific crashes or timeouts that drop requests before they are logged")


def _srm_text(exp: Experiment, checks: Mapping[str, Any]) -> str:
    srm = checks["srm"]
    planned = ", ".join(f"{arm} {w:.0%}" for arm, w in exp.weights().items())
    total = sum(srm["observed"].values()) or 1
    counted = f"{exp.assignment.unit} units" if checks.get("srm_counts") == "units" else "requests"
    seen = ", ".join(f"{arm} {n:,} ({n / total:.1%})" for arm, n in srm["observed"].items()) + f" {counted}"
    test = f"chi-squared p = {srm['p_value']:.3g} < {srm['threshold']:g}" if srm.get("p_value") is not None else srm.get("reason", "")
    return (f"invalid: sample-ratio mismatch ({test}; Fabijan et al. 2019): observed {seen} against the planned {planned} under "
            f"{checks.get('assignment', exp.assignment.describe())}; no primary result is trustworthy until the cause is found")


def guardrail_watch(checks: Mapping[str, Any], guardrails: list[dict[str, Any]]) -> dict[str, Any]:
    """The decision of an experiment without primary metrics: it watches its guardrails (a breach rolls back)."""
    states = [f"{g['metric']} {str(g.get('verdict', 'inconclusive')).replace('_', '-')}" for g in guardrails]
    reasons = ["guardrail watch: no primary metric, so nothing to promote; a guardrail shown inferior rolls the treatment back"]
    reasons += [f"guardrails: {', '.join(states)}"] if states else ["no guardrails configured either: only hard limits act"]
    reasons += [f"health: {p}" for p in checks.get("problems", [])]
    return {"decision": "guardrail_watch", "reasons": reasons}


def analyze_experiment(exp: Experiment, cumulative: dict[str, Any], day: date, daily_traffic: float,
                       hard_limit_breaches: list[str] = (), judge_trust: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Health, primaries (multiplicity-corrected), guardrails, power and the decision of one experiment as of ``day``.

    ``judge_trust`` (:func:`judge_trust` of the judge stage's record) holds back judge metrics
    whose agreement with people is below the minimum.
    """
    checks = health(exp, cumulative)
    look = look_number(exp.start, day)
    n_tuning, power = tuning_n(exp, cumulative)
    primaries = [primary_result(goal, exp, cumulative, n_tuning, judge_trust) for goal in exp.primary]
    adjusted = adjust_pvalues([None if p.get("abstained") else p.get("p_value_decision") for p in primaries], method=exp.correction)
    for p, p_adj in zip(primaries, adjusted):
        p["p_adjusted"] = p_adj
        p["significant_after_correction"] = p_adj is not None and p_adj < exp.alpha and p.get("decision") in ("better", "worse")
    guardrails = [guardrail_result(goal, exp, cumulative, n_tuning, look) for goal in exp.guardrails]
    total = sum(cumulative["counts"].values())
    days_left = days_remaining(n_tuning, total, daily_traffic) if exp.primary else None
    decision = decide(exp, checks, primaries, guardrails, list(hard_limit_breaches), days_left, total >= n_tuning)
    return {
        "experiment_id": exp.id,
        "as_of": day.isoformat(),
        "start": exp.start,
        "look": look,
        "mode": exp.mode,
        "arms": {"control": exp.control, "treatment": exp.treatment, "weights": exp.weights()},
        "assignment": checks["assignment"],
        "abstained": [p["judge_agreement"] for p in primaries if p.get("judge_agreement") and p.get("abstained")],
        "judge_decides": [p["judge_agreement"] for p in primaries if p.get("judge_agreement") and not p.get("abstained")],
        "planned_total": n_tuning,
        "power_analysis": power,
        "requests": total,
        "health": checks,
        "primary": primaries,
        "guardrails": guardrails,
        **decision,
    }


def shadow_comparison(day, shadow: str = "shadow", baseline: str = "production") -> dict[str, Any] | None:
    """A shadow variant (logged, never served) against production on the day's rows; None without shadow traffic.

    ``day`` is the day's summary of both variants (``experiments.day.ExperimentDay``): moments
    exact, latencies each variant's uniform sample (every latency on a day with at most
    ``defaults.summary_sample_rows`` rows per variant). Report-only, one look per day:
    fixed-horizon tests (Welch, two-proportion z, order-statistic quantile intervals); nothing
    here can roll anything back, since no user saw the shadow.
    """
    n_s, n_p = day.counts.get(shadow, 0), day.counts.get(baseline, 0)
    if not n_s or not n_p:
        return None
    s, p = day.stats[shadow], day.stats[baseline]
    results = [proportion_test(sample_stats(p["error_rate"]), sample_stats(s["error_rate"]), metric="error_rate").to_dict()]
    for metric in ("latency_mean_ms", "completion_tokens_mean", "quality_score_mean"):
        results.append(mean_test(sample_stats(p[metric]), sample_stats(s[metric]), metric=metric).to_dict())
    latency_p, latency_s = day.latency_values(baseline), day.latency_values(shadow)
    for metric, q in (("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99)):
        results.append(quantile_difference(latency_p[~np.isnan(latency_p)], latency_s[~np.isnan(latency_s)], q, metric=metric).to_dict())
    return {"shadow": shadow, "baseline": baseline, "requests": {shadow: n_s, baseline: n_p}, "metrics": results}
