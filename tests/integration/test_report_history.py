"""Earlier summaries that are there but unusable: the day page and the site index leave them out, say why, and still publish."""

from __future__ import annotations

import uuid
from datetime import date

from modelwatch.core.partition import Partition
from modelwatch.publish.data import load_history
from modelwatch.publish.site import publish_site_index
from modelwatch.storage.s3 import ensure_bucket, get_bytes, put_bytes, put_json

MODEL = "support-bot-v3"


def _summary(day: date, hour: int | None = None) -> dict:
    from prom_servers import sample_summary

    s = sample_summary(MODEL, hour=hour)
    s["partition"] = Partition(MODEL, day, hour).to_dict()
    return s


def test_unusable_earlier_summaries_are_gaps_with_their_reason_and_the_index_is_still_written(s3, capsys):
    bucket = f"hist-{uuid.uuid4().hex[:10]}"
    ensure_bucket(s3, bucket)
    reports = f"s3://{bucket}/reports"
    today = _summary(date(2027, 4, 10))
    good = _summary(date(2027, 4, 9))
    unusable = {
        date(2027, 4, 8): b'{"model_id": "support-bot-v3"}',  # JSON, but no summary
        date(2027, 4, 7): b"[1, 2]",
        date(2027, 4, 6): b'{"model_id": "support-bot-v3", "partition": ',  # cut short
    }
    put_json(s3, f"{Partition(MODEL, date(2027, 4, 9)).path(reports)}/summary.json", good)
    put_json(s3, f"{Partition(MODEL, date(2027, 4, 5)).path(reports)}/summary.json", _summary(date(2027, 4, 4)))  # another day's copy
    for day, body in unusable.items():
        put_bytes(s3, f"{Partition(MODEL, day).path(reports)}/summary.json", body)

    history = load_history(s3, reports, MODEL, today, days=7)
    assert [s is not None for s in history.summaries] == [False, False, False, False, False, True, True]
    assert len(history.problems) == 4 and all(p.endswith("; the day is shown as a gap") for p in history.problems)
    assert any("dt=2027-04-06/summary.json: not JSON" in p for p in history.problems)
    assert any(f"dt=2027-04-05/summary.json: not the daily summary of {MODEL} for 2027-04-05" in p for p in history.problems)

    put_json(s3, f"{Partition(MODEL, date(2027, 4, 10)).path(reports)}/summary.json", today)
    index = get_bytes(s3, publish_site_index(s3, reports)).decode()
    assert "model_id=support-bot-v3/dt=2027-04-10/index.html" in index and "model_id=support-bot-v3/dt=2027-04-09/index.html" in index
    assert "dt=2027-04-08/index.html" not in index
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING site index:")]
    assert len(warnings) == 4 and all(line.endswith("; left out") for line in warnings)
