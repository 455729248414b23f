"""With ``defaults.redact_pii`` no personal data reaches what modelwatch stores: samples, judgments, review queue, quarantine, pages."""

from __future__ import annotations

import gzip
import json
from datetime import date

import pytest
from modelwatch.core.partition import Partition
from modelwatch.runtime.generate import ExperimentPlan, generate_traffic
from modelwatch.storage.s3 import get_bytes, list_objects, put_bytes

DAY = date(2026, 11, 4)
MODEL = "support-bot-v3"
PII = ["jane.doe@example.com", "4111 1111 1111 1111", "+1 415 555 0199"]


def _pii_rows(n: int) -> list[bytes]:
    rows = []
    for i in range(n):
        rows.append(json.dumps({
            "request_id": f"pii-{i}", "timestamp": f"{DAY}T12:{i % 60:02d}:00Z", "model_id": MODEL, "variant": "control", "status": "ok",
            "latency_ms": 900.0, "prompt": f"My card {PII[1]} was charged twice, mail {PII[0]} or call {PII[2]}", "prompt_tokens": 20,
            "response": f"Sorry! We will refund the card and write to {PII[0]}.", "completion_tokens": 14, "cost_usd": 0.001,
            "metadata": {"topic": "billing", "locale": "en-US"}}).encode())
    rows.append(b'{"request_id": "pii-broken", "prompt": "call ' + PII[2].encode() + b'", "latency_ms": ')  # cut in half: quarantined
    return rows


def _stored_text(client, reports_uri: str) -> str:
    """Every object under the reports prefix as text (Parquet and gzip decoded), concatenated."""
    import io

    import pyarrow.parquet as pq

    out = []
    for uri, _ in list_objects(client, reports_uri):
        data = get_bytes(client, uri)
        if uri.endswith(".parquet"):
            out.append(pq.read_table(io.BytesIO(data)).to_pandas().to_csv())
        elif uri.endswith(".gz"):
            out.append(gzip.decompress(data).decode(errors="replace"))
        else:
            out.append(data.decode(errors="replace"))
    return "\n".join(out)


@pytest.mark.parametrize("redact", [True, False])
def test_personal_data_is_masked_everywhere_modelwatch_writes(s3, redact):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.baseline.build import build_baseline
    from modelwatch.runner import extract, judge, publish, validate

    name = f"pii-{'on' if redact else 'off'}"
    data = bundled_config_data(name)
    data["defaults"]["redact_pii"] = redact
    data["models"][0]["judge"].update(max_samples=120, review_sample=20, oversample={})
    cfg = scoped_config(s3, name, data)
    exp = cfg.model(MODEL).experiments[0]
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, DAY, 1, classic_model=None, llm_rows=400, plan=ExperimentPlan(exp.id, exp.weights()))
    put_bytes(s3, f"{Partition(MODEL, DAY, 12).path(cfg.defaults.logs_uri)}/part-pii.jsonl", b"\n".join(_pii_rows(60)) + b"\n")

    build_baseline(s3, cfg, MODEL, DAY, DAY, progress=lambda _: None)
    extracted = extract(s3, cfg, Partition(MODEL, DAY))
    validated = validate(s3, cfg, extracted)
    judged = judge(s3, cfg, validated)
    publish(s3, cfg, extracted, validated, None, {"dag_id": "test", "run_id": "pii"}, judged=judged)
    assert validated["rows_read"] == validated["rows_valid"] + validated["rows_quarantined"] and validated["rows_quarantined"] >= 1

    stored = _stored_text(s3, cfg.defaults.reports_uri)
    found = [p for p in PII if p in stored]
    if redact:
        assert found == [] and "[EMAIL]" in stored and "[CARD]" in stored and "[PHONE]" in stored
    else:
        assert found == PII  # the control: without redaction the same run stores them
