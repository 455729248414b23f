"""Airflow notifiers of modelwatch: failed runs, guardrail breaches and drift, POSTed to a webhook.

The payloads come from :mod:`modelwatch.observe.notifications` (Slack-compatible ``text`` and
``blocks``, plus a ``modelwatch`` object for other JSON consumers); this module only adapts
Airflow's callback context and delivers.

- ``RunFailureNotifier`` is a DAG ``on_failure_callback``: it names the failed task and links its log.
- ``PartitionEventNotifier`` sends one prepared breach or drift notification (the monitoring DAGs'
  ``notify`` task uses it).

The URL is the ``url`` argument, else the ``MODELWATCH_ALERT_WEBHOOK`` environment variable
(set it from the deployment's secret store; DAG callbacks run in the dag-processor, so it must
be set there as well as on the workers). It is registered with Airflow's secrets masker and
never logged; error messages name only its scheme and host. With no URL, the message is
logged and nothing is sent, so a deployment without a webhook still runs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)
WEBHOOK_ENV_VAR = "MODELWATCH_ALERT_WEBHOOK"


def webhook_url(explicit: str | None = None) -> str | None:
    """The webhook to POST to (explicit, else ``$MODELWATCH_ALERT_WEBHOOK``), masked in Airflow's logs from here on."""
    url = explicit or os.environ.get(WEBHOOK_ENV_VAR) or None
    if url:
        from airflow.sdk.log import mask_secret

        mask_secret(url)
    return url


class _PayloadNotifier(BaseNotifier):
    """Builds a payload from the context and POSTs it; subclasses implement ``payload``."""

    event = "message"

    def __init__(self, url: str | None = None, timeout_s: float = 10.0, retries: int = 2):
        super().__init__()
        self.url, self.timeout_s, self.retries = url, timeout_s, retries

    def payload(self, context: Any) -> dict[str, Any]:
        raise NotImplementedError

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render with the DAG's Jinja environment, or the default sandboxed one when the context's DAG has none.

        ``dag.test()`` runs DAG callbacks with the serialized DAG, which cannot build a template environment.
        """
        dag = context.get("dag")
        if jinja_env is None and dag is not None and not hasattr(dag, "get_template_env"):
            jinja_env = self.get_template_env()
        super().render_template_fields(context, jinja_env)

    def notify(self, context: Any) -> None:
        from modelwatch.observe.notifications import deliver, redact_url

        payload = self.payload(context)
        url = webhook_url(self.url)
        if not url:
            log.warning("modelwatch %s notification not sent (%s is not set): %s", self.event, WEBHOOK_ENV_VAR, payload["text"])
            return
        result = deliver(url, payload, timeout_s=self.timeout_s, retries=self.retries)
        log.info("modelwatch %s notification delivered to %s (HTTP %s after %s attempts)", self.event, redact_url(url),
                 result["status"], result["attempts"])


def _failed_run(context: Any, note: str | None):
    from modelwatch.observe.notifications import FailedRun

    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    error = context.get("exception")
    logical = context.get("logical_date")
    log_url = None
    if ti is not None:
        try:
            log_url = ti.log_url
        except Exception:  # noqa: BLE001 - a missing [api] base_url must not cost the alert
            log_url = None
    return FailedRun(
        dag_id=getattr(dag, "dag_id", None) or str(getattr(ti, "dag_id", "unknown DAG")),
        run_id=str(context.get("run_id") or getattr(ti, "run_id", "")),
        task_id=getattr(ti, "task_id", None),
        map_index=getattr(ti, "map_index", None),
        try_number=getattr(ti, "try_number", None),
        log_url=log_url,
        reason=context.get("reason"),
        error=f"{type(error).__name__}: {error}" if error else None,
        logical_date=logical.isoformat() if hasattr(logical, "isoformat") else None,
        note=note,
    )


class RunFailureNotifier(_PayloadNotifier):
    """``on_failure_callback`` of a DAG (or task): which task failed, in which run, and a link to its log."""

    event = "run_failure"
    template_fields = ("note",)

    def __init__(self, note: str | None = None, url: str | None = None, timeout_s: float = 10.0, retries: int = 2):
        super().__init__(url, timeout_s, retries)
        self.note = note

    def payload(self, context: Any) -> dict[str, Any]:
        from modelwatch.observe.notifications import run_failure_payload

        return run_failure_payload(_failed_run(context, self.note))


class PartitionEventNotifier(_PayloadNotifier):
    """Sends one prepared :class:`modelwatch.observe.notifications.Notification` (a breach or drift of one partition)."""

    def __init__(self, notification: Any, url: str | None = None, timeout_s: float = 10.0, retries: int = 2):
        super().__init__(url, timeout_s, retries)
        self.notification = notification
        self.event = notification.event

    def payload(self, context: Any) -> dict[str, Any]:
        return self.notification.payload

