"""The experiments stage: today's statistics stored, every experiment analysed from its start, a decision; experiments.json."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.results import Breach, ExperimentsRecord, JudgeRecord, ProfileRecord, ValidateRecord
from modelwatch.stages import StageContext, StageResult, Upstream, record
from modelwatch.storage.keys import report_uri
from modelwatch.storage.s3 import get_json, get_table, list_objects, put_json

NAME = "experiments"
NEEDS: tuple[str, ...] = ("validate", "profile", "judge", "concept")  # concept: the arms' feedback moments are written before


def run(ctx: StageContext, upstream: Upstream) -> StageResult[ExperimentsRecord]:
    """Every experiment from its start; judge statistics only from a judge stage that ran."""
    judged = upstream.get("judge")
    return StageResult(NAME, _experiments(ctx.client, ctx.cfg, record(upstream["validate"]), record(upstream.get("profile")),
                                          judged.record if judged is not None and judged.outcome == "ok" else None))


def _experiments(client, cfg: MonitoringConfig, validated: ValidateRecord, profiled: ProfileRecord | None,
                 judged: JudgeRecord | None = None) -> ExperimentsRecord:
    """Store today's experiment statistics, analyse every experiment from its start, decide; experiments.json."""
    from modelwatch.experiments import summary as experiments_summary
    from modelwatch.experiments.data import cumulative_counts, experiment_prefix, judge_arm_stats, load_cumulative, store_day
    from modelwatch.experiments.decision import DEFAULT_MIN_REVIEW_LABELS, analyze_experiment, judge_trust, ppi_key, shadow_comparison
    from modelwatch.summaries import merged

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    day = merged(client, validated["valid_uri"], NAME, experiments_summary.load)  # the shards' summaries, not the day's rows
    limit_breaches = [c for c in (profiled or {}).get("hard_limits", []) if c["state"] == "breach"]
    judge_table = get_table(client, judged["judge_uri"]).to_pandas() if judged and judged.get("judge_uri") else None
    trust = judge_trust(judged, getattr(model.judge, "min_kappa", None), getattr(model.judge, "min_review_labels", DEFAULT_MIN_REVIEW_LABELS))
    results, found, promotions = [], [], []
    for exp in model.experiments:
        prefix = experiment_prefix(cfg.defaults.reports_uri, model.id, exp.id)
        start = date.fromisoformat(exp.start) if exp.start else None
        if start is not None and partition.dt < start:
            results.append({"experiment_id": exp.id, "decision": "not_started", "reasons": [f"the experiment starts on {exp.start}"]})
            continue
        exp_day = day.day(exp)
        record = exp_day.record(exp)
        if judge_table is not None:
            for arm, stats in judge_arm_stats(judge_table, [exp.control, exp.treatment]).items():
                record["stats"][arm].update(stats)
            for arm in (exp.control, exp.treatment):  # human review sums, added up from the start like the judge moments
                record["stats"][arm].update({ppi_key(m): v for m, v in ((judged or {}).get("ppi_by_arm") or {}).get(arm, {}).items()})
        store_day(client, prefix, partition.dt, record, exp_day)
        done = _rollback_record(client, cfg, model.id, exp.id, partition)
        if done is not None:  # terminal: the experiment was rolled back; do not signal again
            requests = sum(cumulative_counts(client, prefix, start or partition.dt, partition.dt).values())
            results.append({"experiment_id": exp.id, "decision": "rolled_back", "requests": requests,
                            "reasons": [f"rolled back at {done['applied_at']} ({done['breach']['reason']}); audit {done['audit_uri']}"]})
            continue
        cumulative = load_cumulative(client, prefix, start or partition.dt, partition.dt)
        daily = sum(cumulative["counts"].values()) / max(len(cumulative["days"]), 1)
        hard = [c["reason"] for c in limit_breaches if c["experiment_id"] == exp.id]
        result = analyze_experiment(exp, cumulative, partition.dt, daily, hard, judge_trust=trust)
        results.append(result)
        if result["decision"] == "roll_back":
            found += _guardrail_breaches(cfg, model, exp, partition, result)
        elif result["decision"] == "promote":
            promotions.append({"model_id": model.id, "experiment_id": exp.id, "variants": [exp.treatment], "start": exp.start or partition.dt.isoformat(),
                               "end": partition.dt.isoformat(), "version": f"promoted-{exp.id}-{partition.dt.isoformat()}",
                               "reasons": result["reasons"]})
    shadow = shadow_comparison(day.shadow)
    uri = put_json(client, report_uri(cfg, partition, "experiments.json"), {"partition": partition.to_dict(), "experiments": results, "shadow": shadow})
    summary = [{**{k: r.get(k) for k in ("experiment_id", "decision", "reasons", "requests", "days_remaining", "assignment", "abstained", "judge_decides")},
                "health_ok": r.get("health", {}).get("ok"),
                "srm_p_value": r.get("health", {}).get("srm", {}).get("p_value"),
                "primary": [{k: p.get(k) for k in ("metric", "decision", "relative_lift", "lift_ci_low", "lift_ci_high", "p_adjusted", "reason", "via")}
                            for p in r.get("primary", [])],
                "guardrails": [{k: g.get(k) for k in ("metric", "verdict", "scale", "estimate", "lower", "upper", "margin", "reason")}
                               for g in r.get("guardrails", [])]} for r in results]
    return {"partition": partition.to_dict(), "outcome": "ok", "experiments": summary, "breaches": found, "promotions": promotions,
            "experiments_uri": uri, "shadow": bool(shadow)}


def _rollback_record(client, cfg: MonitoringConfig, model_id: str, experiment_id: str, partition: Partition) -> dict[str, Any] | None:
    """The audit record of a rollback that acted on this experiment because of another partition, if any.

    A rollback caused by this very partition is not terminal for it: re-running the breaching
    day re-detects the same breach (same id, ``already_applied``) and writes the same outputs.
    """
    from modelwatch.storage.keys import audit_prefix

    for uri, _ in list_objects(client, audit_prefix(cfg.defaults.reports_uri, model_id, experiment_id)):
        if uri.endswith(".json") and not uri.endswith(".claim.json"):
            record = get_json(client, uri)
            caused_by = record.get("breach", {}).get("partition", "")
            if record.get("outcome") == "rolled_back" and caused_by != partition.label and _partition_day(caused_by) <= partition.dt:
                return record
    return None


def _partition_day(label: str) -> date:
    """The day of a partition label ``model_id=M/dt=YYYY-MM-DD[/hour=HH]``."""
    return date.fromisoformat(label.split("/dt=")[1][:10])


def _guardrail_breaches(cfg: MonitoringConfig, model, exp, partition: Partition, result: dict[str, Any]) -> list[Breach]:
    """Asset-event extras for the guardrails an experiment broke (hard limits are signalled by the profile stage)."""
    from modelwatch.core.breach import breach_id

    out = []
    for g in result["guardrails"]:
        if g.get("verdict") != "inferior":
            continue
        reason = f"guardrail {g['metric']} inferior: {g.get('scale')} {g['estimate']:+.4g} vs margin {g['margin']:g} (interval {g['lower']:+.4g}..{g['upper']:+.4g})"
        out.append({
            "model_id": model.id, "experiment_id": exp.id, "control": exp.control, "treatment": exp.treatment, "metric": g["metric"],
            "value": g["estimate"], "limit": {"margin": g["margin"], "absolute": g["absolute"]},
            "requests": g.get("rows_treatment", g["n_treatment"]),
            "reason": reason, "evidence": {k: g.get(k) for k in ("method", "control_estimate", "treatment_estimate", "lower", "upper", "threshold")},
            "partition": partition.label, "breach_id": breach_id(model.id, exp.id, partition.label, g["metric"]),
            "routing_uri": model.rollback.uri if model.rollback else None, "reports_uri": cfg.defaults.reports_uri,
            "report_uri": report_uri(cfg, partition, "experiments.json"), "detected_at": datetime.now(UTC).isoformat(),
        })
    return out
