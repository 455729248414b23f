"""Promotion of a winning treatment, after a person's approval: all traffic to the treatment, exactly once, audited.

Rollback never waits for anyone. Promotion can: an experiment with ``promotion: approval`` has its
promote decision put to a person (``modelwatch_promotion``, Airflow's human-in-the-loop approval),
with the decision's evidence (``evidence``). Approval applies ``promotion_change`` through the model's
rollback action — the routing document, webhook or Variable a rollback would change — via the same
exactly-once claim and audit record (``actions.apply_once``); rejection and time-out are audit
records too (``record_outcome``), under ``_audit/promotions/``. A rolled-back experiment is never promoted.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.rollback.actions import RollbackAction, apply_once
from modelwatch.storage.keys import promotion_audit_prefix, report_uri
from modelwatch.storage.s3 import get_json, list_objects, put_if_absent

PROMOTED = "promoted"
REFUSED = ("rejected", "timed_out")
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~])")  # what makes markup mid-line: emphasis, code, links, tags, table cells


def needs_approval(cfg: MonitoringConfig, promotion: dict[str, Any]) -> bool:
    model = cfg.model(promotion["model_id"])
    return any(e.id == promotion["experiment_id"] and e.promotion == "approval" for e in model.experiments)


def _record(reports_uri: str, promotion: dict[str, Any]) -> str:
    return f"{promotion_audit_prefix(reports_uri, promotion['model_id'], promotion['experiment_id'])}/{promotion['version']}"


def already_promoted(client, reports_uri: str, promotion: dict[str, Any]) -> str | None:
    """The audit record of an earlier approved promotion of the same experiment, if any (its traffic is on the treatment)."""
    prefix = promotion_audit_prefix(reports_uri, promotion["model_id"], promotion["experiment_id"])
    for uri, _ in list_objects(client, prefix):
        if uri.endswith(".json") and not uri.endswith(".claim.json") and get_json(client, uri).get("outcome") == PROMOTED:
            return uri
    return None


def promotion_change(cfg: MonitoringConfig, promotion: dict[str, Any], approver: str, approved_at: str) -> dict[str, Any]:
    """The routing change an approved promotion makes: every request of the experiment to its treatment."""
    exp = next(e for e in cfg.model(promotion["model_id"]).experiments if e.id == promotion["experiment_id"])
    return {"action": "promote", "state": PROMOTED, "model_id": promotion["model_id"], "experiment_id": exp.id,
            "weights": {exp.control: 0.0, exp.treatment: 1.0}, "id_key": "promotion_id", "id": promotion["version"],
            "reason": f"promote decision of {promotion['end']} approved by {approver}", "decided_at": approved_at}


def apply_promotion(client, cfg: MonitoringConfig, promotion: dict[str, Any], action: RollbackAction, claimant: str, approval: dict[str, Any], *,
                    dry_run: bool = False, notify=None) -> dict[str, Any]:
    """Apply an approved promotion exactly once; ``approval`` is who approved it and when (the approval task's result)."""
    approver = approval.get("responded_by") or "unknown"
    change = promotion_change(cfg, promotion, approver, approval.get("responded_at") or datetime.now(UTC).isoformat())
    subject = {"promotion": promotion, "promotion_id": promotion["version"], "approval": approval}
    return apply_once(client, _record(cfg.defaults.reports_uri, promotion), change, action, claimant, subject, dry_run=dry_run, notify=notify)


def record_outcome(client, cfg: MonitoringConfig, promotion: dict[str, Any], outcome: str, approval: dict[str, Any], claimant: str) -> str:
    """Write the audit record of a promotion that was ``rejected`` or ``timed_out`` (once; a retry finds it written)."""
    if outcome not in REFUSED:
        raise ValueError(f"outcome {outcome!r} is not one of {REFUSED}")
    uri = f"{_record(cfg.defaults.reports_uri, promotion)}.json"
    record = {"promotion": promotion, "promotion_id": promotion["version"], "outcome": outcome, "approval": approval, "claimant": claimant,
              "recorded_at": datetime.now(UTC).isoformat(), "routing_changed": False}
    put_if_absent(client, uri, json.dumps(record, indent=2, sort_keys=True, default=str).encode())
    return uri


def _md(value: Any) -> str:
    """``value`` as literal Markdown text (the approval form renders its body as Markdown)."""
    return _MARKDOWN.sub(r"\\\1", str(value)).replace("\n", " ")


def evidence(client, cfg: MonitoringConfig, promotion: dict[str, Any]) -> tuple[str, str]:
    """The approval form's subject and Markdown body: the decision with its reasons, primary metrics and guardrails."""
    partition = Partition(promotion["model_id"], datetime.fromisoformat(promotion["end"]).date())
    report = get_json(client, report_uri(cfg, partition, "experiments.json"))
    result = next((r for r in report["experiments"] if r.get("experiment_id") == promotion["experiment_id"]), {})
    exp = next(e for e in cfg.model(promotion["model_id"]).experiments if e.id == promotion["experiment_id"])
    subject = f"Promote {exp.treatment} of {exp.id} ({promotion['model_id']}) to all traffic?"
    lines = [f"**Decision of {_md(promotion['end'])}:** {_md(result.get('decision', 'promote'))}, from {_md(promotion['start'])}, "
             f"{_md(result.get('requests', '?'))} requests.", ""]
    lines += [f"- {_md(reason)}" for reason in result.get("reasons") or promotion.get("reasons") or []]
    primary = result.get("primary") or []
    if primary:
        lines += ["", "| primary metric | decision | relative lift | 95% interval | adjusted p |", "|---|---|---|---|---|"]
        lines += [f"| {_md(p.get('metric'))} | {_md(p.get('decision'))} | {_pct(p.get('relative_lift'))} | "
                  f"{_pct(p.get('lift_ci_low'))} to {_pct(p.get('lift_ci_high'))} | {_num(p.get('p_adjusted'))} |" for p in primary]
    guardrails = result.get("guardrails") or []
    if guardrails:
        lines += ["", "| guardrail | verdict | estimate | interval |", "|---|---|---|---|"]
        lines += [f"| {_md(g.get('metric'))} | {_md(g.get('verdict'))} | {_num(g.get('estimate'))} | {_num(g.get('lower'))} to {_num(g.get('upper'))} |"
                  for g in guardrails]
    lines += ["", f"Approving routes every request of {_md(exp.id)} to {_md(exp.treatment)} through the model's "
              f"{_md(cfg.model(promotion['model_id']).rollback.action)}; rejecting changes nothing. Both are audited."]
    return subject, "\n".join(lines)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{float(value):+.1%}"


def _num(value: Any) -> str:
    return "–" if value is None else _md(f"{float(value):.4g}")
