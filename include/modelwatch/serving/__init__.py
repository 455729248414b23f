"""modelwatch's serving-side client: experiment router, shadow calls, kill switch and a log emitter writing the contract to S3.

Installable without Airflow (``pip install modelwatch[serving]``): this package imports
only the standard library, boto3/botocore and ``modelwatch.core.contract``,
``modelwatch.core.assignment`` and ``modelwatch.core.redaction``; ``prometheus_client`` is optional
(``serving.prometheus``).

- ``LogEmitter`` (``serving.emitter``): builds, checks, buffers and flushes contract rows.
- ``Router``, ``Shadow`` (``serving.router``): sticky routing, shadow calls, a row per request.
- ``KillSwitch``, ``Experiment`` (``serving.routing``): arm weights from the rollback's routing document.
- ``Price``, ``RefusedByFilter`` (``serving.calls``): cost per 1k tokens; the refusal status.
"""

from modelwatch.serving.calls import Price, RefusedByFilter, price_table
from modelwatch.serving.emitter import LogEmitter, serving_s3_client
from modelwatch.serving.layout import SequentialPartNames
from modelwatch.serving.router import Router, Shadow
from modelwatch.serving.routing import Experiment, KillSwitch

__all__ = ["Experiment", "KillSwitch", "LogEmitter", "Price", "RefusedByFilter", "Router", "SequentialPartNames", "Shadow",
           "price_table", "serving_s3_client"]
