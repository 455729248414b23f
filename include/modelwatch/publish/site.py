"""The top-level site index over models and days, built at publish time (in S3) or by the mirror (locally).

Both write ``index.html`` at the reports prefix with links relative to it
(``model_id=M/dt=D/index.html``), so the same page works on S3 and in a local folder.
At publish time the index reads at most ``HISTORY_DAYS`` daily summaries per model (found
by delimiter listings, not by listing every object), and lists older days as links.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from modelwatch.publish.data import HISTORY_DAYS, History, history_from_summaries, read_summary
from modelwatch.publish.page import IndexEntry, page_path, render_site_index


def _prefixes(client, bucket: str, prefix: str) -> list[str]:
    """The common prefixes one level below ``prefix`` (``Delimiter='/'``), e.g. ``model_id=M/`` or ``dt=D/``."""
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        out += [p["Prefix"][len(prefix):] for p in page.get("CommonPrefixes", [])]
    return out


def link_for(partition: dict[str, Any]) -> str:
    """The relative link from the index to a partition's page (path segments percent-encoded)."""
    from urllib.parse import quote

    return "/".join(quote(s, safe="=") for s in page_path(partition))


def histories_for(summaries: Sequence[dict[str, Any]], days: int = HISTORY_DAYS) -> dict[str, History]:
    """Per model, the window ending with its latest daily summary with traffic, the state the index shows (for its comparisons)."""
    out = {}
    for model_id in {s["model_id"] for s in summaries}:
        daily = [s for s in summaries if s["model_id"] == model_id and s["partition"].get("hour") is None]
        daily = [s for s in daily if s["outcome"] != "no_traffic"] or daily
        if daily:
            latest = max(date.fromisoformat(s["partition"]["dt"]) for s in daily)
            out[model_id] = history_from_summaries(daily, model_id, latest, days)
    return out


def site_index_html(summaries: Sequence[dict[str, Any]], older: dict[str, list[tuple[str, str]]] | None = None) -> str:
    """The index page for these summaries (any mix of models, days and hours)."""
    entries = [IndexEntry(s, link_for(s["partition"])) for s in summaries]
    return render_site_index(entries, histories_for(summaries), older)


def collect_recent_summaries(client, reports_uri: str, days: int = HISTORY_DAYS) -> tuple[list[dict[str, Any]], dict[str, list[tuple[str, str]]]]:
    """The daily summaries of the latest ``days`` days of every model under the reports prefix, and links to the older days.

    A day folder without a summary (a run in progress, or only hourly pages) is skipped; a
    summary that cannot be read or used (:func:`modelwatch.publish.data.read_summary`: refused,
    failing after retries, not JSON, not that day's) is left out with a warning naming it and
    why. The index never fails a run.
    """
    from modelwatch.storage.s3 import split_uri

    bucket, prefix = split_uri(reports_uri.rstrip("/") + "/")
    summaries, older = [], {}
    for model_dir in _prefixes(client, bucket, prefix):
        if not model_dir.startswith("model_id="):
            continue
        model_id = model_dir[len("model_id="):].rstrip("/")
        day_dirs = sorted((d for d in _prefixes(client, bucket, prefix + model_dir) if d.startswith("dt=")), reverse=True)
        for k, day_dir in enumerate(day_dirs):
            dt = day_dir[len("dt="):].rstrip("/")
            if k >= days:
                older.setdefault(model_id, []).append((dt, link_for({"model_id": model_id, "dt": dt, "hour": None})))
                continue
            summary, problem = read_summary(client, f"s3://{bucket}/{prefix}{model_dir}{day_dir}summary.json", model_id, dt)
            if problem:
                print(f"WARNING site index: {problem}; left out")
            if summary is not None:
                summaries.append(summary)
    return summaries, older


def publish_site_index(client, reports_uri: str, days: int = HISTORY_DAYS) -> str:
    """Rebuild ``{reports_uri}/index.html`` from the recent summaries of every model; returns its URI."""
    from modelwatch.storage.s3 import put_bytes

    summaries, older = collect_recent_summaries(client, reports_uri, days)
    return put_bytes(client, f"{reports_uri.rstrip('/')}/index.html", site_index_html(summaries, older).encode(), "text/html; charset=utf-8")
