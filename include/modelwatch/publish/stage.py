"""The publish stage: summary.json, the partition's page, the site index and the Pushgateway metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.publish.data import History
from modelwatch.results import (
    Breach,
    ConceptRecord,
    DriftRecord,
    ExperimentsRecord,
    ExtractRecord,
    JudgeRecord,
    ProfileRecord,
    PublishRecord,
    ValidateRecord,
)
from modelwatch.stages import StageContext, StageResult, Upstream, record
from modelwatch.storage.keys import report_uri
from modelwatch.storage.s3 import get_json, get_table, put_bytes, put_json

NAME = "publish"
NEEDS: tuple[str, ...] = ("extract", "validate", "profile", "drift", "concept", "experiments", "judge")


def run(ctx: StageContext, upstream: Upstream) -> StageResult[PublishRecord]:
    """summary.json, the partition's page and the site index, from whatever stages ran."""
    return StageResult(NAME, _publish(ctx.client, ctx.cfg, record(upstream["extract"]), record(upstream.get("validate")), record(upstream.get("profile")),
                                      dict(ctx.run), *(record(upstream.get(n)) for n in ("drift", "concept", "experiments", "judge"))))


def _ran(stage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stage's result, or None when the stage had nothing to do (no traffic)."""
    return None if not stage or stage.get("outcome") == "no_traffic" else stage


def breaches(cfg: MonitoringConfig, profiled: ProfileRecord | None) -> list[Breach]:
    """Breach events (asset-event extras) from the hard-limit checks, with everything a rollback needs."""
    from modelwatch.core.breach import breach_id

    if not _ran(profiled):
        return []
    partition = Partition.from_dict(profiled["partition"])
    model = cfg.model(partition.model_id)
    out = []
    for check in profiled["hard_limits"]:
        if check["state"] != "breach":
            continue
        exp = next(e for e in model.experiments if e.id == check["experiment_id"])
        out.append(
            {
                "model_id": model.id,
                "experiment_id": exp.id,
                "control": exp.control,
                "treatment": exp.treatment,
                "metric": check["metric"],
                "value": check["value"],
                "limit": {"max": check["max"], "min": check["min"]},
                "requests": check["requests"],
                "reason": check["reason"],
                "partition": partition.label,
                "breach_id": breach_id(model.id, exp.id, partition.label, check["metric"]),
                "routing_uri": model.rollback.uri if model.rollback else None,
                "reports_uri": cfg.defaults.reports_uri,
                "report_uri": report_uri(cfg, partition, "summary.json"),
                "evidence": {"metric_value": check["value"], "requests": check["requests"], "limit": {"max": check["max"], "min": check["min"]}},
                "detected_at": datetime.now(UTC).isoformat(),
            }
        )
    return out


def _publish(client, cfg: MonitoringConfig, extracted: ExtractRecord, validated: ValidateRecord | None, profiled: ProfileRecord | None,
             run: dict[str, Any], drifted: DriftRecord | None = None, concepted: ConceptRecord | None = None,
             experimented: ExperimentsRecord | None = None, judged: JudgeRecord | None = None) -> PublishRecord:
    """Write summary.json, the partition's index.html (with 30-day trends) and the site index; returns the run's result."""

    validated, profiled, drifted, concepted, experimented = _ran(validated), _ran(profiled), _ran(drifted), _ran(concepted), _ran(experimented)
    judged = judged if judged and judged.get("outcome") == "ok" else None
    partition = Partition.from_dict(extracted["partition"])
    found = breaches(cfg, profiled) + (experimented["breaches"] if experimented else [])
    outcome = extracted["outcome"] if extracted["outcome"] == "no_traffic" else ("breach" if found else "ok")
    summary = {
        "model_id": partition.model_id,
        "partition": partition.to_dict(),
        "outcome": outcome,
        "rows": {
            "read": extracted["rows_read"],
            "valid": validated["rows_valid"] if validated else 0,
            "quarantined": validated["rows_quarantined"] if validated else 0,
        },
        "files": extracted["files"],
        "files_damaged": extracted["files_damaged"],
        "validation": {k: validated[k] for k in ("invalid_share", "failures", "examples", "quarantine_uri")} if validated else None,
        "metrics": profiled["headline"] if profiled else {},
        "segments": profiled["segments"] if profiled else [],
        "prompt_token_histogram": profiled["prompt_token_histogram"] if profiled else [],
        "hard_limits": profiled["hard_limits"] if profiled else [],
        "quantiles": {"method": profiled.get("quantile_method", "exact"), "rank_error": profiled.get("rank_error")} if profiled else None,
        "breaches": [{k: v for k, v in b.items() if k != "detected_at"} for b in found],
        "drift": {k: drifted.get(k) for k in ("outcome", "severity", "alert_count", "alerts", "baseline_version", "reason", "segment_embedding", "evidently_ui_url")}
        if drifted else None,
        "concept": {k: concepted.get(k) for k in ("verdict", "reason", "detections", "evaluated", "estimation", "feedback", "feedback_lookback",
                                                  "labels_rejected", "labels_rejected_by_rule")} if concepted else None,
        "experiments": experimented["experiments"] if experimented else [],
        # what was judged, not what this run paid (a re-run reads the cache): spend is in judge.json's run block
        "judge": {**{k: judged[k] for k in ("overall", "by_variant", "budget_usd", "sampled", "limited_by", "backend")},
                  "pairwise": judged.get("pairwise"),
                  # golden-set agreement per dimension and flag (judge.trust): the page's agreement table and the metrics
                  "agreement": judged.get("agreement") or {}, "agreement_warnings": judged.get("agreement_warnings") or [],
                  "judged": judged["counts"].get("judged", 0) + judged["counts"].get("cached", 0),
                  "failed": judged["counts"].get("failed", 0), "skipped_budget": judged["counts"].get("skipped_budget", 0)} if judged else None,
        "outputs": {
            "metrics": profiled["metrics_uri"] if profiled else None,
            "concept": concepted.get("concept_uri") if concepted else None,
            "experiments": experimented.get("experiments_uri") if experimented else None,
            "judge": judged.get("judge_json") if judged else None,
            "drift": drifted.get("drift_uri") if drifted else None,
            "evidently_report": drifted.get("report_uri") if drifted else None,
            "summary": report_uri(cfg, partition, "summary.json"),
            "page": report_uri(cfg, partition, "index.html"),
        },
        "run": run,
    }
    summary["baseline_comparison"] = _baseline_comparison(client, cfg, partition, summary)
    history = _history(client, cfg, partition, summary)
    summary["judge_flags"] = _judge_flags(summary, history)
    put_json(client, summary["outputs"]["summary"], summary)
    _publish_pages(client, cfg, partition, summary, judged, history)
    pushed = push_metrics(cfg, summary)
    drift_state = {"severity": drifted.get("severity"), "alerts": drifted.get("alert_count", 0)} if drifted else None
    return {"summary_uri": summary["outputs"]["summary"], "outcome": outcome, "breaches": found, "rows": summary["rows"], "drift": drift_state,
            "promotions": experimented.get("promotions", []) if experimented else [], "pushed": pushed}


def _baseline_comparison(client, cfg: MonitoringConfig, partition: Partition, summary: dict[str, Any]) -> dict[str, Any] | None:
    """Today's quantiles and segment mix next to the baseline's profiles, when the drift stage found a baseline."""
    from modelwatch.publish.data import baseline_comparison, segment_mix
    from modelwatch.storage.keys import baseline_prefix
    from modelwatch.storage.s3 import exists

    version = (summary.get("drift") or {}).get("baseline_version")
    uri = f"{baseline_prefix(cfg.defaults.reports_uri, partition.model_id, version)}/profiles.json" if version else None
    if uri is None or not exists(client, uri):
        return None
    profiles = get_json(client, uri)
    return {"version": version, "quantiles": baseline_comparison(profiles, summary), "segment_mix": segment_mix(profiles, summary)}


def _experiment_thresholds(cfg: MonitoringConfig, model_id: str) -> dict[str, dict[tuple[str, str], float]]:
    """Per experiment, the line each forest-plot row is judged against, on the plotted scale.

    Primary metrics are plotted as relative lifts: a relative MDE is drawn in the good
    direction (an absolute MDE is on another scale and is not drawn). Guardrails are plotted
    on their own scale: the non-inferiority threshold is the margin on the bad side.
    """
    out: dict[str, dict[tuple[str, str], float]] = {}
    for exp in cfg.model(model_id).experiments:
        marks = out.setdefault(exp.id, {})
        for goal in exp.primary:
            if goal.mde is not None and not goal.absolute:
                marks[("primary", goal.metric)] = goal.mde if goal.direction == "increase" else -goal.mde
        for goal in exp.guardrails:
            margin = goal.margin or 0.0
            marks[("guardrail", goal.metric)] = margin if goal.direction == "decrease" else -margin
    return out


def _history(client, cfg: MonitoringConfig, partition: Partition, summary: dict[str, Any]) -> History | None:
    """A daily partition's 30-day window of summaries (today's last); None for an hourly partition."""
    from modelwatch.publish.data import load_history

    return load_history(client, cfg.defaults.reports_uri, partition.model_id, summary) if partition.hour is None else None


def _judge_flags(summary: dict[str, Any], history: History | None) -> list[dict[str, Any]]:
    """Today's judge flag rates against the earlier days of the window (``publish.flag_rates``); empty without a judge or a window."""
    from modelwatch.publish.flag_rates import flag_rises

    if not summary.get("judge") or history is None:
        return []
    earlier = [s for s in history.summaries[:-1] if s is not None]
    return [rise.to_dict() for rise in flag_rises(summary["judge"], earlier)]


def _publish_pages(client, cfg: MonitoringConfig, partition: Partition, summary: dict[str, Any], judged: dict[str, Any] | None,
                   history: History | None) -> None:
    """The partition's page (daily pages with the 30-day trends read from earlier summaries) and the site index."""
    from modelwatch.publish.data import select_examples
    from modelwatch.publish.page import PageContext, index_href_from, render_partition_page
    from modelwatch.publish.site import publish_site_index

    examples = []
    if judged and judged.get("judge_uri"):
        dimensions = [m.removeprefix("judge.") for m in summary["judge"]["overall"] if not m.endswith("_rate")]
        examples = select_examples(get_table(client, judged["judge_uri"]).to_pandas(), dimensions)
    context = PageContext(history=history, examples=examples, thresholds=_experiment_thresholds(cfg, partition.model_id),
                          index_href=index_href_from(summary["partition"]))
    put_bytes(client, summary["outputs"]["page"], render_partition_page(summary, context).encode(), "text/html; charset=utf-8")
    publish_site_index(client, cfg.defaults.reports_uri)


def push_metrics(cfg: MonitoringConfig, summary: dict[str, Any]) -> str | None:
    """Push the run's metrics to the configured Pushgateway; a failure is reported, not raised.

    The S3 summary is the run's record; a Pushgateway outage must not fail monitoring (the
    ``MonitoringSilent`` alert notices the missing pushes).
    """
    if not cfg.defaults.pushgateway_url:
        return None
    from modelwatch.observe.prom_metrics import push_summary

    try:
        group = push_summary(cfg.defaults.pushgateway_url, summary)
    except Exception as exc:  # noqa: BLE001 - any transport failure is reported in the task result and log
        print(f"WARNING metrics not pushed to {cfg.defaults.pushgateway_url}: {exc}")
        return f"failed: {exc}"
    return f"pushed {group}"
