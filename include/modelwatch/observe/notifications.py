"""Alert messages for a team channel: guardrail breaches, drift and failed runs.

Each builder returns a payload that an incoming Slack webhook renders (a ``text`` fallback
plus Block Kit ``blocks``; https://api.slack.com/reference/block-kit/blocks) and that any
other JSON consumer reads from its ``modelwatch`` key (event, model, partition, links and
the facts the message shows). Text that comes from traffic or from an exception (segment
values, metric names, failure messages) is escaped for Slack's mrkdwn, which treats
``&``, ``<`` and ``>`` as control characters (https://api.slack.com/reference/surfaces/formatting#escaping).

Reports live under ``defaults.reports_uri`` (``s3://``); with ``defaults.report_base_url``
set, links point at the https address that serves that prefix, else at the S3 URI.
Delivery wraps :func:`modelwatch.observe.webhook.post_json` (retries by :mod:`modelwatch.retry`) so that
no error message carries the webhook URL, whose path often holds a token. Pure library code: no Airflow import.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

SEVERITY_ORDER: dict[str, int] = {"none": 0, "low": 1, "medium": 2, "high": 3}
Event = Literal["breach", "drift", "run_failure", "message"]
MAX_LISTED = 10  # breaches or drift alerts listed in one message; the rest are counted
SECTION_LIMIT = 3000  # Slack: characters of text in a section block
HEADER_LIMIT = 150  # Slack: characters of a header block's plain text
FALLBACK_LIMIT = 4000  # the top-level text, shown in notifications and by clients without blocks
DELIVERY_DEADLINE_S = 60.0  # a notification, retries included, gives up after about this long


class NotificationError(RuntimeError):
    """A notification could not be delivered; the message names the redacted endpoint and the cause."""


@dataclass(frozen=True)
class Notification:
    """One message to send: its event kind, a key unique per event and partition, and the webhook payload."""

    event: Event
    key: str
    payload: dict[str, Any]


def escape_mrkdwn(text: Any) -> str:
    """Escape Slack's control characters ``&``, ``<``, ``>`` (in that order, so ``&`` is not escaped twice)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact_url(url: str) -> str:
    """Scheme and host of a URL only (``https://hooks.slack.com/…``): safe to log when the path or query holds a token."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or '?'}://{host}{port}/…"


def redact_in(text: str, url: str) -> str:
    """``text`` with ``url`` shown as :func:`redact_url`, and every other copy of its secret parts (the path with its query,
    the user info) replaced by ``…``; an endpoint answering "no route for /services/T/B/token" echoes its own token.

    A URL whose path is ``/`` or empty has no secret part beyond itself, so the rest of ``text`` is left as it is.
    """
    parts = urllib.parse.urlsplit(url)
    masked = text.replace(url, redact_url(url))
    secret_path = parts.path + (f"?{parts.query}" if parts.query else "")
    for secret in sorted({secret_path, parts.path, parts.query, parts.netloc.rpartition("@")[0]}, key=len, reverse=True):
        if len(secret) > 1:
            masked = masked.replace(secret, "…")
    return masked


def report_link(uri: str | None, reports_uri: str, report_base_url: str | None) -> str | None:
    """The https address of a report object when ``report_base_url`` serves ``reports_uri``; else the S3 URI itself.

    ``s3://ml-monitoring/reports/model_id=m/dt=d/index.html`` with ``reports_uri=s3://ml-monitoring/reports`` and
    ``report_base_url=https://reports.example.com/mw`` becomes ``https://reports.example.com/mw/model_id=m/dt=d/index.html``.
    Path segments are percent-encoded (``=`` is kept: it is legal in a path and S3 keys use it).
    """
    if not uri:
        return None
    prefix = reports_uri.rstrip("/") + "/"
    if not report_base_url or not uri.startswith(prefix):
        return uri
    relative = uri[len(prefix):]
    return f"{report_base_url.rstrip('/')}/{urllib.parse.quote(relative, safe='/=')}"


def _is_web(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("https://", "http://"))


def _link_mrkdwn(url: str | None, label: str) -> str:
    """A mrkdwn link for a web URL; a code span for anything else (Slack links only web addresses)."""
    if not url:
        return "_no report link_"
    if _is_web(url):
        safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")
        return f"<{safe}|{escape_mrkdwn(label)}>"
    return f"{escape_mrkdwn(label)}: `{escape_mrkdwn(url)}`"


def severity_at_least(severity: str | None, level: str) -> bool:
    """``severity`` (none/low/medium/high) is at or above ``level``; unknown severities never are."""
    if level not in SEVERITY_ORDER:
        raise ValueError(f"unknown severity level {level!r}; expected one of {list(SEVERITY_ORDER)}")
    return SEVERITY_ORDER.get(str(severity), -1) >= SEVERITY_ORDER[level] > 0


def partition_label(partition: Mapping[str, Any]) -> str:
    """``2026-11-03`` for a day, ``2026-11-03 05:00 UTC`` for an hour."""
    hour = partition.get("hour")
    return str(partition["dt"]) if hour is None else f"{partition['dt']} {int(hour):02d}:00 UTC"


def _blocks(header: str, body: str, fields: list[tuple[str, str]], links: list[tuple[str, str | None]], context: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(header, HEADER_LIMIT), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(body, SECTION_LIMIT)}},
    ]
    if fields:  # Slack allows at most 10 fields of up to 2000 characters
        blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(f"*{escape_mrkdwn(k)}*\n{v}", 2000)} for k, v in fields[:10]]})
    buttons = [{"type": "button", "text": {"type": "plain_text", "text": _clip(label, 75)}, "url": url}
               for label, url in links if _is_web(url) and len(str(url)) <= 3000]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons[:5]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(context, SECTION_LIMIT)}]})
    return blocks


def _payload(text: str, blocks: list[dict[str, Any]], data: dict[str, Any]) -> dict[str, Any]:
    return {"text": _clip(text, FALLBACK_LIMIT), "blocks": blocks, "modelwatch": data}


def _listed(lines: list[str], total: int) -> str:
    shown = lines[:MAX_LISTED]
    more = total - len(shown)
    return "\n".join(shown) + (f"\n…and {more} more" if more > 0 else "")


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}"
    return str(value)


def _limit_text(limit: Mapping[str, Any] | None) -> str:
    if not limit:
        return ""
    parts = [f"{k} {_fmt(v)}" for k, v in limit.items() if v is not None and k in ("max", "min", "margin")]
    return ", ".join(parts)


def breach_payload(summary: Mapping[str, Any], breaches: list[Mapping[str, Any]], report_url: str | None) -> dict[str, Any]:
    """A message for the hard-limit and guardrail breaches of one partition (the rollback follows automatically)."""
    model, when = str(summary["model_id"]), partition_label(summary["partition"])
    lines = []
    for b in breaches:
        limit = _limit_text(b.get("limit"))
        lines.append(f"• *{escape_mrkdwn(b.get('experiment_id'))}* `{escape_mrkdwn(b.get('metric'))}` = {escape_mrkdwn(_fmt(b.get('value')))}"
                     + (f" (limit: {escape_mrkdwn(limit)})" if limit else "") + f" — {escape_mrkdwn(b.get('reason', ''))}")
    experiments = sorted({str(b.get("experiment_id")) for b in breaches})
    header = f"🚨 Guardrail breach: {model} ({when})"
    body = (f"*{len(breaches)} breach{'es' if len(breaches) != 1 else ''}* in the traffic of *{escape_mrkdwn(model)}* for {escape_mrkdwn(when)}; "
            f"modelwatch_rollback routes the affected experiments back to control.\n" + _listed(lines, len(breaches)))
    fields = [("Model", escape_mrkdwn(model)), ("Partition", escape_mrkdwn(when)), ("Experiments", escape_mrkdwn(", ".join(experiments))),
              ("Report", _link_mrkdwn(report_url, "Open report"))]
    text = f"Guardrail breach: {escape_mrkdwn(model)} {escape_mrkdwn(when)}: " + "; ".join(
        f"{escape_mrkdwn(b.get('experiment_id'))} {escape_mrkdwn(b.get('metric'))}" for b in breaches[:MAX_LISTED]) + f" — report {escape_mrkdwn(report_url or 'n/a')}"
    data = {"event": "breach", "model_id": model, "partition": dict(summary["partition"]), "report_url": report_url,
            "breaches": [{k: b.get(k) for k in ("experiment_id", "metric", "value", "limit", "reason", "breach_id")} for b in breaches]}
    return _payload(text, _blocks(header, body, fields, [("Open report", report_url)], f"modelwatch · outcome {escape_mrkdwn(summary.get('outcome'))}"), data)


def _alert_line(alert: Mapping[str, Any]) -> str:
    where = f" [{escape_mrkdwn(alert['segment'])}]" if alert.get("segment") else ""
    effect = alert.get("effect")
    return (f"• {escape_mrkdwn(alert.get('severity'))} · {escape_mrkdwn(alert.get('family'))}{where} `{escape_mrkdwn(alert.get('column'))}`"
            + (f" {escape_mrkdwn(alert.get('effect_method'))}={escape_mrkdwn(_fmt(effect))}" if effect is not None else ""))


def drift_payload(summary: Mapping[str, Any], report_url: str | None, evidently_url: str | None = None) -> dict[str, Any]:
    """A message for a partition's drift against its baseline: the worst severity and the strongest alerts."""
    model, when = str(summary["model_id"]), partition_label(summary["partition"])
    drift = summary.get("drift") or {}
    severity = str(drift.get("severity"))
    alerts = [a for a in drift.get("alerts") or [] if isinstance(a, Mapping)]
    alerts.sort(key=lambda a: -SEVERITY_ORDER.get(str(a.get("severity")), 0))
    total = int(drift.get("alert_count") or len(alerts))
    families = sorted({str(a.get("family")) for a in alerts})
    header = f"📈 Drift ({severity}): {model} ({when})"
    body = (f"*{escape_mrkdwn(model)}* drifted from baseline *{escape_mrkdwn(drift.get('baseline_version'))}* on {escape_mrkdwn(when)}: "
            f"severity *{escape_mrkdwn(severity)}*, {total} alert{'s' if total != 1 else ''}.\n" + _listed([_alert_line(a) for a in alerts], total))
    fields = [("Model", escape_mrkdwn(model)), ("Partition", escape_mrkdwn(when)), ("Severity", escape_mrkdwn(severity)),
              ("Families", escape_mrkdwn(", ".join(families) or "–")), ("Report", _link_mrkdwn(report_url, "Open report"))]
    if evidently_url:
        fields.append(("Evidently", _link_mrkdwn(evidently_url, "Drift report")))
    text = f"Drift {escape_mrkdwn(severity)}: {escape_mrkdwn(model)} {escape_mrkdwn(when)}, {total} alerts — report {escape_mrkdwn(report_url or 'n/a')}"
    data = {"event": "drift", "model_id": model, "partition": dict(summary["partition"]), "report_url": report_url, "evidently_url": evidently_url,
            "severity": severity, "alert_count": total, "baseline_version": drift.get("baseline_version"),
            "alerts": [{k: a.get(k) for k in ("family", "segment", "column", "severity", "effect_method", "effect", "p_adjusted")} for a in alerts[:MAX_LISTED]]}
    links = [("Open report", report_url), ("Drift report", evidently_url)]
    return _payload(text, _blocks(header, body, fields, links, "modelwatch · drift against the model's baseline"), data)


@dataclass(frozen=True)
class FailedRun:
    """What a failure callback knows about a failed run."""

    dag_id: str
    run_id: str
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    log_url: str | None = None
    reason: str | None = None
    error: str | None = None
    logical_date: str | None = None
    note: str | None = None  # what the failure means for the team, e.g. "a breach may not be rolled back"


def run_failure_payload(run: FailedRun) -> dict[str, Any]:
    """A message for a failed DAG run, naming the failed task and linking its log."""
    task = run.task_id or "unknown task"
    if run.map_index is not None and run.map_index >= 0:
        task = f"{task}[{run.map_index}]"
    header = f"❌ Run failed: {run.dag_id}"
    body = (f"Run `{escape_mrkdwn(run.run_id)}` of *{escape_mrkdwn(run.dag_id)}* failed in task `{escape_mrkdwn(task)}`"
            + (f" (try {run.try_number})" if run.try_number else "") + ".")
    if run.note:
        body += f"\n{escape_mrkdwn(run.note)}"
    if run.error:
        body += f"\n```{escape_mrkdwn(_clip(run.error, 1500))}```"
    fields = [("DAG", escape_mrkdwn(run.dag_id)), ("Task", f"`{escape_mrkdwn(task)}`"), ("Log", _link_mrkdwn(run.log_url, "Task log"))]
    if run.logical_date:
        fields.append(("Logical date", escape_mrkdwn(run.logical_date)))
    text = f"Run failed: {escape_mrkdwn(run.dag_id)} {escape_mrkdwn(run.run_id)}, task {escape_mrkdwn(task)} — log {escape_mrkdwn(run.log_url or 'n/a')}"
    data = {"event": "run_failure", **{k: getattr(run, k) for k in FailedRun.__dataclass_fields__}}
    context = f"modelwatch · {escape_mrkdwn(run.reason or 'task_failure')}"
    return _payload(text, _blocks(header, body, fields, [("Task log", run.log_url)], context), data)


def run_notifications(summary: Mapping[str, Any], *, reports_uri: str, report_base_url: str | None, drift_level: str | None) -> list[Notification]:
    """The notifications a published partition calls for: its breaches, and its drift when at or above ``drift_level``.

    ``drift_level`` None turns drift notifications off. Keys (``breach:<partition>``) identify the event for deduplication.
    """
    outputs = summary.get("outputs") or {}
    page = report_link(outputs.get("page"), reports_uri, report_base_url)
    label = f"model_id={summary['model_id']}/{partition_label(summary['partition'])}"
    out = []
    breaches = [b for b in summary.get("breaches") or [] if isinstance(b, Mapping)]
    if breaches:
        out.append(Notification("breach", f"breach:{label}", breach_payload(summary, breaches, page)))
    drift = summary.get("drift") or {}
    if drift_level is not None and drift.get("outcome") in (None, "ok") and severity_at_least(drift.get("severity"), drift_level):
        evidently = report_link(outputs.get("evidently_report"), reports_uri, report_base_url)
        out.append(Notification("drift", f"drift:{label}", drift_payload(summary, page, evidently)))
    return out


def deliver(url: str, payload: Mapping[str, Any], *, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.5,
            deadline_s: float | None = DELIVERY_DEADLINE_S, setting: str = "MODELWATCH_ALERT_WEBHOOK") -> dict[str, Any]:
    """POST the payload; any failure to deliver raises NotificationError, whose message holds no secret part of ``url``.

    Retries are :mod:`modelwatch.retry`'s (through ``post_json``): connection errors, timeouts and
    408/425/429/5xx, with jittered exponential backoff, Slack's ``Retry-After`` on 429 honoured,
    at most ``retries`` retries and none past ``deadline_s``. The URL may hold a token (Slack's
    ``/services/T/B/<token>``), so the message names the endpoint through :func:`redact_in`;
    ``setting`` is where the URL is configured, named when it is unusable.
    """
    import http.client

    from modelwatch.observe.webhook import WebhookError, post_json

    try:
        return post_json(url, dict(payload), timeout_s=timeout_s, retries=retries, backoff_s=backoff_s, deadline_s=deadline_s)
    except ValueError as exc:  # urllib: unknown scheme or malformed URL
        raise NotificationError(f"webhook {redact_url(url)} is not a usable URL ({type(exc).__name__}); fix {setting}") from None
    except (WebhookError, OSError, http.client.HTTPException) as exc:  # OSError, HTTPException: what urllib raises past post_json's retries
        raise NotificationError(redact_in(str(exc), url)) from None


def describe(notifications: Iterable[Notification]) -> list[str]:
    """One log line per notification, with no URL of the webhook."""
    return [f"{n.event} {n.key}" for n in notifications]
