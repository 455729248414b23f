"""Mirror the reports prefix to a local folder, with a site index, for people without S3 access."""

from __future__ import annotations

import json
from pathlib import Path

from modelwatch.publish.site import site_index_html
from modelwatch.storage.s3 import get_bytes, list_objects, split_uri

_SKIP = ("_work/", "_tmp/", "_cache/")  # the embedding cache is machine state, not a report


def _inside(dest: Path, relative: str) -> Path:
    """``dest / relative``, refusing a key that would land outside ``dest`` (``..`` segments or an absolute path)."""
    target = (dest / relative).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise ValueError(f"object key {relative!r} would be written outside {dest}; rename the object")
    return target


def mirror_reports(client, reports_uri: str, dest: Path) -> Path:
    """Copy every published object (not the run's scratch data) and write ``dest/index.html`` over every summary found.

    The index links each partition's page relatively, as the index published to S3 does;
    unlike that one (bounded to the recent days) it covers every day and hour mirrored.
    """
    dest.mkdir(parents=True, exist_ok=True)
    prefix = split_uri(reports_uri.rstrip("/") + "/")[1]
    summaries = []
    for uri, _ in list_objects(client, reports_uri):
        relative = split_uri(uri)[1][len(prefix):]
        if relative.startswith(_SKIP):
            continue
        target = _inside(dest, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = get_bytes(client, uri)
        target.write_bytes(data)
        if relative.endswith("summary.json") and not relative.startswith("_"):
            try:
                summaries.append(json.loads(data))
            except ValueError as exc:
                print(f"WARNING mirror: {uri} is not JSON ({exc}); left out of the index")
    index = dest / "index.html"
    index.write_text(site_index_html(summaries), encoding="utf-8")
    return index
