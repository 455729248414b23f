"""An Airflow notifier that POSTs a DAG or task event to a webhook (modelwatch's default alert channel).

Use as a callback: ``on_failure_callback=WebhookNotifier()``. The URL is the ``url``
argument, else the ``MODELWATCH_ALERT_WEBHOOK`` environment variable; with neither, the
event is only logged, so a deployment without a webhook still runs.
"""

from __future__ import annotations

import logging
import os

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)


class WebhookNotifier(BaseNotifier):
    template_fields = ("message",)

    def __init__(self, message: str = "{{ dag.dag_id }} {{ run_id }}", url: str | None = None, timeout_s: float = 10.0):
        super().__init__()
        self.message, self.url, self.timeout_s = message, url, timeout_s

    def notify(self, context):
        from modelwatch.webhook import post_json

        ti = context.get("ti")
        payload = {
            "message": self.message,
            "dag_id": context["dag"].dag_id,
            "run_id": context.get("run_id"),
            "task_id": getattr(ti, "task_id", None),
            "state": str(getattr(ti, "state", "")),
        }
        url = self.url or os.environ.get("MODELWATCH_ALERT_WEBHOOK")
        if not url:
            log.warning("modelwatch alert (no MODELWATCH_ALERT_WEBHOOK set): %s", payload)
            return
        post_json(url, payload, timeout_s=self.timeout_s, retries=2)
