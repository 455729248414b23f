"""Mirror the reports prefix to a local folder, with a site index, for people without S3 access."""

from __future__ import annotations

import json
from pathlib import Path

from modelwatch.report import render_site_index
from modelwatch.storage import get_bytes, list_objects, split_uri

_SKIP = ("_work/", "_tmp/", "_cache/")  # the embedding cache is machine state, not a report


def mirror_reports(client, reports_uri: str, dest: Path) -> Path:
    """Copy every published object (not the run's scratch data) and write ``dest/index.html``."""
    dest.mkdir(parents=True, exist_ok=True)
    prefix = split_uri(reports_uri.rstrip("/") + "/")[1]
    summaries, links = [], {}
    for uri, _ in list_objects(client, reports_uri):
        relative = split_uri(uri)[1][len(prefix):]
        if relative.startswith(_SKIP):
            continue
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        data = get_bytes(client, uri)
        target.write_bytes(data)
        if relative.endswith("summary.json") and not relative.startswith("_"):
            summary = json.loads(data)
            summaries.append(summary)
            links[summary["outputs"]["page"]] = str(Path(relative).parent / "index.html")
    index = dest / "index.html"
    index.write_text(render_site_index(summaries, links), encoding="utf-8")
    return index
