"""The stages of a monitoring run, as plain functions: extract, validate, profile, drift, concept, experiments, publish.

(The judge stage, larger, lives in ``judge_stage``.)

Each stage reads its inputs from S3, writes its outputs to S3 under keys fixed by the
model and partition (so a retry or a re-run overwrites, never doubles), and returns a
small JSON-able dict for the next stage. DAG tasks are thin wrappers around these.

Layout under ``reports_uri``::

    _work/model_id=M/dt=D[/hour=H]/        rows.parquet, read_rejects.parquet, valid.parquet
    _quarantine/model_id=M/dt=D[/hour=H]/  quarantine.parquet (every rejected row, its reasons and raw text)
    model_id=M/dt=D[/hour=H]/              metrics.parquet, summary.json, index.html, drift.json, report.html,
                                           concept.json, experiments.json, judge.json, judge.parquet
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.storage import Partition, get_bytes, get_json, get_table, list_objects, put_bytes, put_json, put_table

SPAN_SECONDS = {"daily": 86_400.0, "hourly": 3_600.0}


def work_uri(cfg: MonitoringConfig, partition: Partition, name: str) -> str:
    return f"{partition.path(cfg.defaults.reports_uri + '/_work')}/{name}"


def quarantine_uri(cfg: MonitoringConfig, partition: Partition) -> str:
    return f"{partition.path(cfg.defaults.reports_uri + '/_quarantine')}/quarantine.parquet"


def report_uri(cfg: MonitoringConfig, partition: Partition, name: str) -> str:
    return f"{partition.path(cfg.defaults.reports_uri)}/{name}"


def resolve_partition(model_id: str, cadence: str, interval_start: datetime | None, target_date: str | None, target_hour: int | None) -> Partition:
    """The closed partition a run processes: the ``target_date`` Param if given, else the data interval's start."""
    if target_date:
        day = date.fromisoformat(target_date)
        hour = None if cadence == "daily" else (target_hour if target_hour is not None else 0)
        return Partition(model_id, day, hour)
    if interval_start is None:
        raise ValueError("a manual run needs the target_date param (YYYY-MM-DD): Airflow 3 manual runs have no data interval")
    start = interval_start.astimezone(UTC)
    return Partition(model_id, start.date(), None if cadence == "daily" else start.hour)


def read_partition(client, cfg: MonitoringConfig, partition: Partition):
    """Every log file of the partition as (canonical rows, read-stage rejects, per-file records).

    With ``defaults.redact_pii`` the text fields and the rejected lines are redacted here,
    the one place traffic enters the pipeline (daily runs and baselines alike).
    """
    from modelwatch.readers import assemble, read_file

    reads, files = [], []
    for uri, size in list_objects(client, partition.path(cfg.defaults.logs_uri)):
        read = read_file(get_bytes(client, uri), uri) if size else None
        if read is None:
            files.append({"uri": uri, "format": "empty", "rows_read": 0, "problem": "zero-byte file", "damaged": False})
            continue
        reads.append(read)
        files.append({"uri": uri, "format": read.fmt, "rows_read": read.rows_read, "rows_rejected": len(read.rejects), "problem": read.problem,
                      "damaged": read.damaged})
    rows, rejects = assemble(reads)
    if cfg.defaults.redact_pii:
        from modelwatch.redaction import TEXT_FIELDS

        rows, rejects = _redacted(rows, TEXT_FIELDS), _redacted(rejects, ("raw",))
    return rows, rejects, files


DIGIT_CHAIN = r"[0-9](?:[ ().+-]{0,2}[0-9]){6}"  # what every phone or card match contains (see _redacted)


def _redacted(table, columns: tuple[str, ...]):
    """``table`` with personal data masked in the string ``columns`` (``modelwatch.redaction``'s documented rules).

    Only texts that could hold a finding go through ``redaction.redact``: an email needs an
    ``@``; a phone (7 digits at least, with ``+``) or a card (13) needs 7 digits in a chain where
    at most two of `` ().+-`` separate neighbours. A text with non-ASCII characters may hold
    digits of other scripts (Python's ``\\d``), so it is always checked.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from modelwatch.redaction import redact

    for name in columns:
        if name not in table.column_names:
            continue
        index = table.schema.get_field_index(name)
        column = table.column(index).combine_chunks()
        maybe = pc.or_(pc.or_(pc.match_substring(column, "@"), pc.match_substring_regex(column, DIGIT_CHAIN)), pc.invert(pc.string_is_ascii(column)))
        rows = np.flatnonzero(pc.fill_null(maybe, False).to_numpy(zero_copy_only=False))
        if rows.size:
            texts = column.take(pa.array(rows)).to_pylist()
            values = column.to_pylist()
            for i, text in zip(rows.tolist(), texts):
                values[i] = redact(text)
            table = table.set_column(index, table.schema.field(index), pa.array(values, type=table.schema.field(index).type))
    return table


def shard_uri(cfg: MonitoringConfig, partition: Partition, kind: str, shard: int, shards: int) -> str:
    """Where shard ``shard`` of ``shards`` keeps its ``valid``, ``quarantine`` or ``ids`` part."""
    return work_uri(cfg, partition, f"shards/{kind}-{shard:05d}-of-{shards:05d}.parquet")


def valid_manifest_uri(cfg: MonitoringConfig, partition: Partition) -> str:
    return work_uri(cfg, partition, "valid.json")


def plan_shards(client, cfg: MonitoringConfig, partition: Partition) -> list[dict[str, Any]]:
    """The partition's log files in shards of at most ``defaults.shard_bytes`` (one shard, maybe empty, for a small day)."""
    from modelwatch.shards import split_files

    groups = split_files(list(list_objects(client, partition.path(cfg.defaults.logs_uri))), cfg.defaults.shard_bytes)
    return [{"partition": partition.to_dict(), "shard": i, "shards": len(groups), "files": [[uri, size] for uri, size in group]}
            for i, group in enumerate(groups)]


def check_shard(client, cfg: MonitoringConfig, shard: dict[str, Any]) -> dict[str, Any]:
    """Read, coerce and validate one shard's files batch by batch (``defaults.batch_rows``); memory is bounded by a batch.

    Writes the shard's valid rows, its quarantine (read and validation rejects, by row id)
    and the first occurrence of each request id (for the reduce step's duplicate check).
    """
    import pyarrow as pa

    from modelwatch.readers import CANONICAL_SCHEMA, REJECT_SCHEMA, batch_tables, open_file
    from modelwatch.shards import first_row_id
    from modelwatch.storage import ParquetSink
    from modelwatch.validation import StreamValidator

    partition = Partition.from_dict(shard["partition"])
    index, count = shard["shard"], shard["shards"]
    validator = StreamValidator(cfg.model(partition.model_id), partition)
    next_id, files, read_rejects = first_row_id(index), [], 0
    valid_schema = CANONICAL_SCHEMA.remove(CANONICAL_SCHEMA.get_field_index("_type_errors"))
    with ParquetSink(client, shard_uri(cfg, partition, "valid", index, count), valid_schema) as valid, \
            ParquetSink(client, shard_uri(cfg, partition, "quarantine", index, count), REJECT_SCHEMA) as quarantine:
        pending: list[tuple[pa.Table, pa.Table]] = []  # coerced batches not yet validated: GX runs once per batch_rows, across files

        def flush() -> None:
            if pending:
                ok, invalid = validator.check(pa.concat_tables([rows for rows, _ in pending]))
                valid.write(ok)
                quarantine.write(pa.concat_tables([rejects for _, rejects in pending] + [invalid]).sort_by("_row_id"))
                pending.clear()

        for uri, size in shard["files"]:
            if not size:
                files.append({"uri": uri, "format": "empty", "rows_read": 0, "problem": "zero-byte file", "damaged": False})
                continue
            stream = open_file(get_bytes(client, uri), uri, cfg.defaults.batch_rows)
            rows_read = rejected = 0
            for batch in stream.batches:
                rows, rejects = batch_tables(batch, next_id)
                next_id += rows.num_rows + rejects.num_rows
                if cfg.defaults.redact_pii:
                    from modelwatch.redaction import TEXT_FIELDS

                    rows, rejects = _redacted(rows, TEXT_FIELDS), _redacted(rejects, ("raw",))
                validator.count_read_rejects(rejects)  # after redaction: its examples show raw text
                pending.append((rows, rejects))
                if sum(r.num_rows for r, _ in pending) >= cfg.defaults.batch_rows:
                    flush()
                rows_read += rows.num_rows + rejects.num_rows
                rejected += rejects.num_rows
            files.append({"uri": uri, "format": stream.fmt, "rows_read": rows_read, "rows_rejected": rejected, "problem": stream.problem,
                          "damaged": stream.damaged})
            read_rejects += rejected
        flush()
    put_table(client, shard_uri(cfg, partition, "ids", index, count), validator.duplicates.first_occurrences())
    rows_read = sum(f["rows_read"] for f in files)
    if rows_read != valid.rows + quarantine.rows:
        raise AssertionError(f"{partition.label} shard {index}: rows read {rows_read} != valid {valid.rows} + quarantined {quarantine.rows}")
    return {"partition": partition.to_dict(), "shard": index, "shards": count, "files": files, "rows_read": rows_read, "read_rejects": read_rejects,
            "rows_valid": valid.rows, "rows_quarantined": quarantine.rows, "failures": dict(validator.failures), "examples": dict(validator.examples)}


def extract(client, cfg: MonitoringConfig, partition: Partition, checked: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The partition's read figures, merged from its checked shards (``check_shard``; run here, one after another, when not given)."""
    if checked is None:
        checked = [check_shard(client, cfg, shard) for shard in plan_shards(client, cfg, partition)]
    mine = sorted((c for c in checked if c["partition"] == partition.to_dict()), key=lambda c: c["shard"])
    if not mine or len(mine) != mine[0]["shards"]:
        raise RuntimeError(f"{partition.label}: {len(mine)} checked shards, expected {mine[0]['shards'] if mine else 'at least 1'}; re-run the partition")
    rows_read = sum(c["rows_read"] for c in mine)
    files = [f for c in mine for f in c["files"]]
    return {
        "partition": partition.to_dict(),
        "source_prefix": partition.path(cfg.defaults.logs_uri),
        "files": files,
        "files_damaged": sum(f["damaged"] for f in files),
        "rows_read": rows_read,
        "read_rejects": sum(c["read_rejects"] for c in mine),
        "outcome": "no_traffic" if rows_read == 0 else "ok",
        "shards": [{k: v for k, v in c.items() if k != "files"} for c in mine],
    }


def _ran(stage: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stage's result, or None when the stage had nothing to do (no traffic)."""
    return None if not stage or stage.get("outcome") == "no_traffic" else stage


def validate(client, cfg: MonitoringConfig, extracted: dict[str, Any]) -> dict[str, Any]:
    """The reduce step: repeats across shards, one quarantine, the valid rows' manifest; then the invalid-share limit."""
    from modelwatch.shards import cross_shard_repeats, merge_failures
    from modelwatch.validation import enforce_invalid_share

    partition = Partition.from_dict(extracted["partition"])
    model = cfg.model(partition.model_id)
    shards = extracted["shards"]
    count = len(shards)
    failures, examples = merge_failures(shards)
    repeats = cross_shard_repeats([get_table(client, shard_uri(cfg, partition, "ids", i, count)) for i in range(count)]) if count > 1 else {}
    moved = _move_repeats(client, cfg, partition, count, repeats, failures, examples)
    quarantined, by_file = _merge_quarantine(client, cfg, partition, count, moved)
    parts = [shard_uri(cfg, partition, "valid-without-repeats" if i in moved else "valid", i, count) for i in range(count)]
    rows_valid = sum(s["rows_valid"] for s in shards) - sum(len(m) for m in moved.values())
    put_json(client, valid_manifest_uri(cfg, partition), {"partition": partition.to_dict(), "parts": parts, "rows": rows_valid})
    rows_in = extracted["rows_read"]
    if rows_in != rows_valid + quarantined:
        raise AssertionError(f"{partition.label}: rows read {rows_in} != valid {rows_valid} + quarantined {quarantined}")
    result = {
        "partition": partition.to_dict(),
        "rows_read": rows_in,
        "rows_valid": rows_valid,
        "rows_quarantined": quarantined,
        "invalid_share": quarantined / rows_in if rows_in else 0.0,
        "failures": failures,
        "examples": examples,
        "quarantine_uri": quarantine_uri(cfg, partition),
        "valid_uri": valid_manifest_uri(cfg, partition),
    }
    enforce_invalid_share(rows_in, quarantined, failures, examples, cfg.max_invalid_share(model.id), f"partition {partition.path(cfg.defaults.logs_uri)}",
                          rejects_by_file=by_file, files=extracted["files"])
    return result


def _move_repeats(client, cfg: MonitoringConfig, partition: Partition, count: int, repeats: dict[int, dict[int, str]],
                  failures: dict[str, int], examples: dict[str, list[str]]):
    """Rows whose request id an earlier shard already had: their reject records by shard.

    The shard's part without them is written beside the shard's own output, never over it,
    so a retried or re-run reduce step starts from the same inputs and writes the same outputs.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from modelwatch.contract import LINE, ROW_ID, SOURCE
    from modelwatch.readers import REJECT_SCHEMA
    from modelwatch.validation import EXAMPLES, example, raw_json

    rule = "request_id unique per model and day"
    moved: dict[int, pa.Table] = {}
    for shard, found in repeats.items():
        uri = shard_uri(cfg, partition, "valid", shard, count)
        part = get_table(client, uri)
        is_repeat = pc.is_in(part[ROW_ID], value_set=pa.array(sorted(found), pa.int64()))
        rows = part.filter(is_repeat).to_pylist()
        if not rows:
            continue  # the repeats were quarantined for other reasons already
        records = []
        for row in rows:
            reason = f"duplicate request_id {row['request_id']!r} (first seen at {found[row[ROW_ID]]})"
            records.append({ROW_ID: row[ROW_ID], SOURCE: row[SOURCE], LINE: row[LINE], "stage": "validate", "reasons": reason, "raw": raw_json(row)})
            failures[rule] = failures.get(rule, 0) + 1
            if len(examples.setdefault(rule, [])) < EXAMPLES:
                examples[rule].append(example(row[SOURCE], row[LINE], repr(row["request_id"])[:80]))
        put_table(client, shard_uri(cfg, partition, "valid-without-repeats", shard, count), part.filter(pc.invert(is_repeat)))
        moved[shard] = pa.Table.from_pylist(records, schema=REJECT_SCHEMA)
    return moved


def _merge_quarantine(client, cfg: MonitoringConfig, partition: Partition, count: int, moved) -> tuple[int, dict[str, int]]:
    """Every shard's quarantine, and the repeats moved out of valid parts, as one object ordered by row id: (rows, rows by file)."""
    from collections import Counter

    import pyarrow as pa

    from modelwatch.readers import REJECT_SCHEMA
    from modelwatch.storage import ParquetSink
    from modelwatch.validation import rejects_by_file

    by_file: Counter[str] = Counter()
    with ParquetSink(client, quarantine_uri(cfg, partition), REJECT_SCHEMA) as sink:
        for shard in range(count):
            part = get_table(client, shard_uri(cfg, partition, "quarantine", shard, count))
            if shard in moved:
                part = pa.concat_tables([part, moved[shard]]).sort_by("_row_id")
            sink.write(part)
            by_file.update(rejects_by_file(part))
    return sink.rows, dict(by_file)


def read_valid(client, cfg: MonitoringConfig, partition: Partition, columns: list[str] | None = None):
    """The partition's valid rows (every shard's part, as the manifest lists them), optionally only ``columns``."""
    import pyarrow as pa

    parts = get_json(client, valid_manifest_uri(cfg, partition))["parts"]
    return pa.concat_tables([get_table(client, uri, columns) for uri in parts])


def valid_columns(exclude: tuple[str, ...]) -> list[str]:
    """The valid rows' columns but ``exclude``: what a stage reads when it needs everything except the texts."""
    from modelwatch.readers import CANONICAL_COLUMNS

    return [c for c in CANONICAL_COLUMNS if c not in exclude and c != "_type_errors"]


def profile(client, cfg: MonitoringConfig, validated: dict[str, Any], cadence: str) -> dict[str, Any]:
    """Operational metrics and hard-limit checks for the partition's valid rows."""
    from modelwatch.limits import check_hard_limits
    from modelwatch.metrics import ALL, compute_metrics, input_columns, metrics_table, to_frame, token_histogram

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    valid = read_valid(client, cfg, partition, input_columns(model.segments))
    frame = to_frame(valid, model.segments)
    metrics = compute_metrics(frame, model.id, partition.dt.isoformat(), partition.hour, model.segments, SPAN_SECONDS[cadence])
    uri = put_table(client, report_uri(cfg, partition, "metrics.parquet"), metrics_table(metrics))
    overall = metrics[(metrics.segment == ALL)]
    headline = {v: dict(zip(g.metric, g.value)) for v, g in overall.groupby("variant")}
    checks = [c.to_dict() for c in check_hard_limits(model, metrics)]
    return {
        "partition": partition.to_dict(),
        "metrics_uri": uri,
        "headline": headline,
        "segments": _segment_rows(metrics),
        "prompt_token_histogram": token_histogram(frame),
        "hard_limits": checks,
    }


def _segment_rows(metrics) -> list[dict[str, Any]]:
    from modelwatch.metrics import ALL

    wanted = ["requests", "error_rate", "latency_p95_ms", "prompt_tokens_mean", "cost_usd_total"]
    seg = metrics[(metrics.segment != ALL) & (metrics.variant == ALL) & metrics.metric.isin(wanted)]
    out = []
    for (segment, value), group in seg.groupby(["segment", "segment_value"], sort=True):
        out.append({"segment": segment, "value": value, **dict(zip(group.metric, group.value))})
    return out


def breaches(cfg: MonitoringConfig, profiled: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Breach events (asset-event extras) from the hard-limit checks, with everything a rollback needs."""
    from modelwatch.limits import breach_id

    if not _ran(profiled):
        return []
    partition = Partition.from_dict(profiled["partition"])
    model = cfg.model(partition.model_id)
    out = []
    for check in profiled["hard_limits"]:
        if check["state"] != "breach":
            continue
        exp = next(e for e in model.experiments if e.id == check["experiment_id"])
        out.append(
            {
                "model_id": model.id,
                "experiment_id": exp.id,
                "control": exp.control,
                "treatment": exp.treatment,
                "metric": check["metric"],
                "value": check["value"],
                "limit": {"max": check["max"], "min": check["min"]},
                "requests": check["requests"],
                "reason": check["reason"],
                "partition": partition.label,
                "breach_id": breach_id(model.id, exp.id, partition.label, check["metric"]),
                "routing_uri": model.rollback.uri if model.rollback else None,
                "reports_uri": cfg.defaults.reports_uri,
                "report_uri": report_uri(cfg, partition, "summary.json"),
                "evidence": {"metric_value": check["value"], "requests": check["requests"], "limit": {"max": check["max"], "min": check["min"]}},
                "detected_at": datetime.now(UTC).isoformat(),
            }
        )
    return out


def publish(client, cfg: MonitoringConfig, extracted: dict[str, Any], validated: dict[str, Any] | None, profiled: dict[str, Any] | None,
            run: dict[str, Any], drifted: dict[str, Any] | None = None, concepted: dict[str, Any] | None = None,
            experimented: dict[str, Any] | None = None, judged: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write summary.json, the partition's index.html (with 30-day trends) and the site index; returns the run's result."""

    validated, profiled, drifted, concepted, experimented = _ran(validated), _ran(profiled), _ran(drifted), _ran(concepted), _ran(experimented)
    judged = judged if judged and judged.get("outcome") == "ok" else None
    partition = Partition.from_dict(extracted["partition"])
    found = breaches(cfg, profiled) + (experimented["breaches"] if experimented else [])
    outcome = extracted["outcome"] if extracted["outcome"] == "no_traffic" else ("breach" if found else "ok")
    summary = {
        "model_id": partition.model_id,
        "partition": partition.to_dict(),
        "outcome": outcome,
        "rows": {
            "read": extracted["rows_read"],
            "valid": validated["rows_valid"] if validated else 0,
            "quarantined": validated["rows_quarantined"] if validated else 0,
        },
        "files": extracted["files"],
        "files_damaged": extracted["files_damaged"],
        "validation": {k: validated[k] for k in ("invalid_share", "failures", "examples", "quarantine_uri")} if validated else None,
        "metrics": profiled["headline"] if profiled else {},
        "segments": profiled["segments"] if profiled else [],
        "prompt_token_histogram": profiled["prompt_token_histogram"] if profiled else [],
        "hard_limits": profiled["hard_limits"] if profiled else [],
        "breaches": [{k: v for k, v in b.items() if k != "detected_at"} for b in found],
        "drift": {k: drifted.get(k) for k in ("outcome", "severity", "alert_count", "alerts", "baseline_version", "reason")} if drifted else None,
        "concept": {k: concepted.get(k) for k in ("verdict", "reason", "detections", "evaluated", "estimation")} if concepted else None,
        "experiments": experimented["experiments"] if experimented else [],
        # what was judged, not what this run paid (a re-run reads the cache): spend is in judge.json's run block
        "judge": {**{k: judged[k] for k in ("overall", "by_variant", "budget_usd", "sampled", "limited_by", "backend")},
                  "pairwise": judged.get("pairwise"),
                  "judged": judged["counts"].get("judged", 0) + judged["counts"].get("cached", 0),
                  "failed": judged["counts"].get("failed", 0), "skipped_budget": judged["counts"].get("skipped_budget", 0)} if judged else None,
        "outputs": {
            "metrics": profiled["metrics_uri"] if profiled else None,
            "concept": concepted.get("concept_uri") if concepted else None,
            "experiments": experimented.get("experiments_uri") if experimented else None,
            "judge": judged.get("judge_json") if judged else None,
            "drift": drifted.get("drift_uri") if drifted else None,
            "evidently_report": drifted.get("report_uri") if drifted else None,
            "summary": report_uri(cfg, partition, "summary.json"),
            "page": report_uri(cfg, partition, "index.html"),
        },
        "run": run,
    }
    summary["baseline_comparison"] = _baseline_comparison(client, cfg, partition, summary)
    put_json(client, summary["outputs"]["summary"], summary)
    _publish_pages(client, cfg, partition, summary, judged)
    pushed = push_metrics(cfg, summary)
    drift_state = {"severity": drifted.get("severity"), "alerts": drifted.get("alert_count", 0)} if drifted else None
    return {"summary_uri": summary["outputs"]["summary"], "outcome": outcome, "breaches": found, "rows": summary["rows"], "drift": drift_state,
            "promotions": experimented.get("promotions", []) if experimented else [], "pushed": pushed}


def _baseline_comparison(client, cfg: MonitoringConfig, partition: Partition, summary: dict[str, Any]) -> dict[str, Any] | None:
    """Today's quantiles and segment mix next to the baseline's profiles, when the drift stage found a baseline."""
    from modelwatch.baseline import baseline_prefix
    from modelwatch.report_data import baseline_comparison, segment_mix
    from modelwatch.storage import exists

    version = (summary.get("drift") or {}).get("baseline_version")
    uri = f"{baseline_prefix(cfg.defaults.reports_uri, partition.model_id, version)}/profiles.json" if version else None
    if uri is None or not exists(client, uri):
        return None
    profiles = get_json(client, uri)
    return {"version": version, "quantiles": baseline_comparison(profiles, summary), "segment_mix": segment_mix(profiles, summary)}


def _experiment_thresholds(cfg: MonitoringConfig, model_id: str) -> dict[str, dict[tuple[str, str], float]]:
    """Per experiment, the line each forest-plot row is judged against, on the plotted scale.

    Primary metrics are plotted as relative lifts: a relative MDE is drawn in the good
    direction (an absolute MDE is on another scale and is not drawn). Guardrails are plotted
    on their own scale: the non-inferiority threshold is the margin on the bad side.
    """
    out: dict[str, dict[tuple[str, str], float]] = {}
    for exp in cfg.model(model_id).experiments:
        marks = out.setdefault(exp.id, {})
        for goal in exp.primary:
            if goal.mde is not None and not goal.absolute:
                marks[("primary", goal.metric)] = goal.mde if goal.direction == "increase" else -goal.mde
        for goal in exp.guardrails:
            margin = goal.margin or 0.0
            marks[("guardrail", goal.metric)] = margin if goal.direction == "decrease" else -margin
    return out


def _publish_pages(client, cfg: MonitoringConfig, partition: Partition, summary: dict[str, Any], judged: dict[str, Any] | None) -> None:
    """The partition's page (daily pages with the 30-day trends read from earlier summaries) and the site index."""
    from modelwatch.report import PageContext, index_href_from, render_partition_page
    from modelwatch.report_data import load_history, select_examples
    from modelwatch.report_site import publish_site_index

    history = load_history(client, cfg.defaults.reports_uri, partition.model_id, summary) if partition.hour is None else None
    examples = []
    if judged and judged.get("judge_uri"):
        dimensions = [m.removeprefix("judge.") for m in summary["judge"]["overall"] if not m.endswith("_rate")]
        examples = select_examples(get_table(client, judged["judge_uri"]).to_pandas(), dimensions)
    context = PageContext(history=history, examples=examples, thresholds=_experiment_thresholds(cfg, partition.model_id),
                          index_href=index_href_from(summary["partition"]))
    put_bytes(client, summary["outputs"]["page"], render_partition_page(summary, context).encode(), "text/html; charset=utf-8")
    publish_site_index(client, cfg.defaults.reports_uri)


def push_metrics(cfg: MonitoringConfig, summary: dict[str, Any]) -> str | None:
    """Push the run's metrics to the configured Pushgateway; a failure is reported, not raised.

    The S3 summary is the run's record; a Pushgateway outage must not fail monitoring (the
    ``MonitoringSilent`` alert notices the missing pushes).
    """
    if not cfg.defaults.pushgateway_url:
        return None
    from modelwatch.prom_metrics import push_summary

    try:
        group = push_summary(cfg.defaults.pushgateway_url, summary)
    except Exception as exc:  # noqa: BLE001 - any transport failure is reported in the task result and log
        print(f"WARNING metrics not pushed to {cfg.defaults.pushgateway_url}: {exc}")
        return f"failed: {exc}"
    return f"pushed {group}"


def _embedding_drift(client, cfg: MonitoringConfig, model, baseline, current, seed: int) -> list[dict[str, Any]]:
    """MMD permutation test per text column: the baseline's embedding sample against a sample of today's texts."""
    import numpy as np

    from modelwatch.drift_analysis import sample_texts
    from modelwatch.embeddings import EmbeddingCache
    from modelwatch.mmd import mmd_test

    out = []
    cache = EmbeddingCache(client, cfg.defaults.reports_uri)
    for column in model.drift.text:
        reference = baseline.embeddings(client, column)
        if reference is None:
            out.append({"column": column, "drift": False, "severity": "none", "reason": "the baseline has no embedding sample of this column"})
            continue
        texts = sample_texts(current, column, model.drift.embedding_sample, seed)
        vectors, cache_stats = cache.get_or_embed(texts) if texts else (np.zeros((0, reference.shape[1]), np.float32), {})
        result = mmd_test(reference, vectors, n_permutations=model.drift.permutations, alpha=model.drift.embedding_alpha, seed=seed)
        out.append({"column": column, **result.to_dict(), "cache": cache_stats})
    return _decide_embedding_family(out, model.drift.embedding_alpha)


def _decide_embedding_family(checks: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """Benjamini–Hochberg over the text columns' MMD p-values, as over every other drift family.

    MMD has no calibrated effect scale, so a significant embedding drift is graded medium.
    """
    from scipy.stats import false_discovery_control

    tested = [c for c in checks if c.get("p_value") is not None]
    adjusted = false_discovery_control([c["p_value"] for c in tested], method="bh") if tested else []
    for check, p_adj in zip(tested, adjusted):
        check.update(p_adjusted=float(p_adj), drift=bool(p_adj < alpha))
    for check in checks:
        check["severity"] = "medium" if check.get("drift") else "none"
    return checks


def _incumbent_frame(client, cfg: MonitoringConfig, model, partition: Partition, kinds: dict[str, str]):
    """The partition's incumbent rows as drift columns of the baseline's kinds; the valid rows' table is freed on return."""
    from modelwatch.baseline import coerce_kinds, incumbent_variants
    from modelwatch.columns import drift_frame

    valid = read_valid(client, cfg, partition, valid_columns(("_source", "_line", "reference", "extra", "class_probabilities", "model_id")))
    frame, _ = drift_frame(valid, model.kind, model.drift.features, model.segments, model.drift.text)
    del valid
    return coerce_kinds(frame[frame["variant"].isin(incumbent_variants(model))].reset_index(drop=True), kinds)


def drift(client, cfg: MonitoringConfig, validated: dict[str, Any]) -> dict[str, Any]:
    """Drift of the partition's incumbent traffic against the model's baseline: drift.json, report.html (Evidently)."""
    from modelwatch.baseline import BaselineMissing, load_baseline
    from modelwatch.columns import DriftColumns
    from modelwatch.drift import DriftPolicy, worst
    from modelwatch.drift_analysis import analyze

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    settings = model.drift
    drift_uri = report_uri(cfg, partition, "drift.json")
    try:
        baseline = load_baseline(client, cfg, model)
    except BaselineMissing as exc:
        result = {"partition": partition.to_dict(), "outcome": "no_baseline", "severity": "none", "alerts": [], "reason": str(exc)}
        put_json(client, drift_uri, result)
        return {**result, "drift_uri": drift_uri}
    frame = _incumbent_frame(client, cfg, model, partition, baseline.kinds)
    names = baseline.manifest["columns"]
    columns = DriftColumns(features=names["features"], prediction=names["prediction"], input_length=names["input_length"],
                           segments=names["segments"], text=names["text"], kinds=baseline.kinds)
    policy = DriftPolicy(alpha=settings.alpha, methods=dict(settings.methods))
    result = analyze(baseline.reference, frame, columns, policy, settings.min_segment_count, baseline.profiles)
    seed = int(partition.dt.strftime("%Y%m%d"))
    result["embedding"] = _embedding_drift(client, cfg, model, baseline, frame, seed) if settings.text and len(frame) else []
    result["alerts"] += [{"family": "embedding", "column": e["column"], "severity": e["severity"], "effect_method": "mmd2", "effect": e.get("mmd2"),
                          "p_adjusted": e.get("p_adjusted")} for e in result["embedding"] if e.get("drift")]
    result["severity"] = worst([result["severity"], *(e["severity"] for e in result["embedding"])])
    result.update(partition=partition.to_dict(), outcome="ok", baseline={k: baseline.manifest[k] for k in ("version", "window", "rows_used", "reference_rows", "uri")})
    result["report"] = _evidently_report(client, cfg, model, partition, baseline.reference, frame, columns)
    put_json(client, drift_uri, result)
    top = sorted(result["alerts"], key=lambda a: ["none", "low", "medium", "high"].index(a["severity"]), reverse=True)
    return {"partition": partition.to_dict(), "outcome": "ok", "severity": result["severity"], "alerts": top[:50], "alert_count": len(result["alerts"]),
            "drift_uri": drift_uri, "report_uri": result["report"].get("uri"), "baseline_version": baseline.manifest["version"]}


def _evidently_report(client, cfg: MonitoringConfig, model, partition: Partition, reference, current, columns) -> dict[str, Any]:
    """The analysts' Evidently report (report.html) and its snapshot (evidently_snapshot.json) for the partition."""
    import os

    from modelwatch.evidently_report import add_to_workspace, build_report

    numerical = [c for c in columns.tested() if columns.kinds[c] == "numerical"]
    categorical = [c for c in columns.tested() if columns.kinds[c] == "categorical"]
    stamp = datetime(partition.dt.year, partition.dt.month, partition.dt.day, partition.hour or 0, tzinfo=UTC)
    run = build_report(reference, current, numerical=numerical, categorical=categorical, text=columns.text, timestamp=stamp,
                       title=f"modelwatch drift: {model.id} {partition.label}", max_rows=model.drift.report_rows)
    uri = put_bytes(client, report_uri(cfg, partition, "report.html"), run.html.encode(), "text/html; charset=utf-8")
    snapshot_uri = put_bytes(client, report_uri(cfg, partition, "evidently_snapshot.json"), run.snapshot_json.encode(), "application/json")
    workspace = os.environ.get("MODELWATCH_EVIDENTLY_WORKSPACE")
    run_id = add_to_workspace(workspace, f"modelwatch {model.id}", run.snapshot_json) if workspace else None
    return {"uri": uri, "snapshot_uri": snapshot_uri, "workspace": workspace, "workspace_run": run_id,
            "evidently_drifted_columns": run.drifted_columns, "evidently_drift_share": run.drift_share,
            "rows": {"reference": run.rows_reference, "current": run.rows_current}, "skipped_columns": run.skipped_columns}


def concept(client, cfg: MonitoringConfig, validated: dict[str, Any]) -> dict[str, Any]:
    """Concept drift over the last ``drift.label_lookback_days`` days: labels (or feedback) joined to predictions.

    As-of semantics: only labels with ``labelled_at`` before the partition's end count, so
    a backfill sees what was known on that day, not what arrived later.

    Classic models also get the day's performance estimate (CBPE / DLE, ``performance_estimation``)
    in ``estimation.json``, with each past day's realised metric beside its estimate once its
    labels have arrived.
    """
    from datetime import timedelta

    import pandas as pd

    from modelwatch.concept import analyze_concept_drift, join_labels, read_labels
    from modelwatch.performance_estimation import estimate_stage
    from modelwatch.storage import exists

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    days = [partition.dt - timedelta(days=i) for i in range(model.drift.label_lookback_days - 1, -1, -1)]
    wanted = ["request_id", "timestamp", "variant", "prediction", "probability", "class_probabilities", "feedback"]
    frames, days_used, tables = [], [], {}
    for day in days:
        if exists(client, valid_manifest_uri(cfg, Partition(model.id, day))):
            table = read_valid(client, cfg, Partition(model.id, day), valid_columns(("_source", "_line", "prompt", "response", "reference", "extra")))
            frames.append(table.select(wanted).to_pandas())
            days_used.append(day.isoformat())
            if model.kind != "llm" and model.estimation.enabled:
                tables[day.isoformat()] = table
    predictions = pd.concat(frames, ignore_index=True)
    labels_info: dict[str, Any] = {}
    frame = predictions
    estimation = None
    if model.kind != "llm":
        read = read_labels(client, cfg.defaults.labels_uri, model.id, days)
        labels = read.table.to_pandas()
        end = datetime(partition.dt.year, partition.dt.month, partition.dt.day, tzinfo=UTC) + timedelta(days=1)
        arrived = labels[labels["labelled_at"].isna() | (labels["labelled_at"] < end)]
        joined = join_labels(predictions, arrived)
        frame = joined.frame
        labels_info = {"read": read.to_dict(), "not_yet_arrived": int(len(labels) - len(arrived)), "join": joined.counts()}
        estimation = estimate_stage(client, cfg, model, partition.dt, tables, arrived, report_uri(cfg, partition, "estimation.json"))
    report = analyze_concept_drift(frame, model.kind, positive_class=model.drift.positive_class, window="day", by_variant=False).to_dict()
    result = {"partition": partition.to_dict(), "outcome": "ok", "days": days_used, "labels": labels_info, **report,
              "estimation_uri": estimation.get("estimation_uri") if estimation else None}
    uri = put_json(client, report_uri(cfg, partition, "concept.json"), result)
    return {"partition": partition.to_dict(), "outcome": "ok", "verdict": report["verdict"], "reason": report["reason"], "concept_uri": uri,
            "detections": len(report["detections"]), "evaluated": report["counts"]["evaluated"], "estimation": estimation}


def experiments(client, cfg: MonitoringConfig, validated: dict[str, Any], profiled: dict[str, Any],
                judged: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store today's experiment statistics, analyse every experiment from its start, decide; experiments.json."""
    from modelwatch.experiment_data import day_record, experiment_prefix, judge_arm_stats, load_cumulative, store_day
    from modelwatch.experiments import analyze_experiment, shadow_comparison

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    valid = read_valid(client, cfg, partition, valid_columns(("_source", "_line", "prompt", "response", "reference", "features", "extra"))).to_pandas()
    limit_breaches = [c for c in (profiled or {}).get("hard_limits", []) if c["state"] == "breach"]
    judge_table = get_table(client, judged["judge_uri"]).to_pandas() if judged and judged.get("judge_uri") else None
    results, found, promotions = [], [], []
    for exp in model.experiments:
        prefix = experiment_prefix(cfg.defaults.reports_uri, model.id, exp.id)
        start = date.fromisoformat(exp.start) if exp.start else None
        if start is not None and partition.dt < start:
            results.append({"experiment_id": exp.id, "decision": "not_started", "reasons": [f"the experiment starts on {exp.start}"]})
            continue
        record, latency = day_record(valid, exp)
        if judge_table is not None:
            for arm, stats in judge_arm_stats(judge_table, [exp.control, exp.treatment]).items():
                record["stats"][arm].update(stats)
        store_day(client, prefix, partition.dt, record, latency)
        done = _rollback_record(client, cfg, model.id, exp.id, partition)
        if done is not None:  # terminal: the experiment was rolled back; do not signal again
            results.append({"experiment_id": exp.id, "decision": "rolled_back", "requests": sum(record["counts"].values()),
                            "reasons": [f"rolled back at {done['applied_at']} ({done['breach']['reason']}); audit {done['audit_uri']}"]})
            continue
        cumulative = load_cumulative(client, prefix, start or partition.dt, partition.dt)
        daily = sum(cumulative["counts"].values()) / max(len(cumulative["days"]), 1)
        hard = [c["reason"] for c in limit_breaches if c["experiment_id"] == exp.id]
        result = analyze_experiment(exp, cumulative, partition.dt, daily, hard)
        results.append(result)
        if result["decision"] == "roll_back":
            found += _guardrail_breaches(cfg, model, exp, partition, result)
        elif result["decision"] == "promote":
            promotions.append({"model_id": model.id, "experiment_id": exp.id, "variants": [exp.treatment], "start": exp.start or partition.dt.isoformat(),
                               "end": partition.dt.isoformat(), "version": f"promoted-{exp.id}-{partition.dt.isoformat()}",
                               "reasons": result["reasons"]})
    shadow = shadow_comparison(valid)
    uri = put_json(client, report_uri(cfg, partition, "experiments.json"), {"partition": partition.to_dict(), "experiments": results, "shadow": shadow})
    summary = [{**{k: r.get(k) for k in ("experiment_id", "decision", "reasons", "requests", "days_remaining")},
                "health_ok": r.get("health", {}).get("ok"),
                "srm_p_value": r.get("health", {}).get("srm", {}).get("p_value"),
                "primary": [{k: p.get(k) for k in ("metric", "decision", "relative_lift", "lift_ci_low", "lift_ci_high", "p_adjusted", "reason")}
                            for p in r.get("primary", [])],
                "guardrails": [{k: g.get(k) for k in ("metric", "verdict", "scale", "estimate", "lower", "upper", "margin", "reason")}
                               for g in r.get("guardrails", [])]} for r in results]
    return {"partition": partition.to_dict(), "outcome": "ok", "experiments": summary, "breaches": found, "promotions": promotions,
            "experiments_uri": uri, "shadow": bool(shadow)}


def _rollback_record(client, cfg: MonitoringConfig, model_id: str, experiment_id: str, partition: Partition) -> dict[str, Any] | None:
    """The audit record of a rollback that acted on this experiment because of another partition, if any.

    A rollback caused by this very partition is not terminal for it: re-running the breaching
    day re-detects the same breach (same id, ``already_applied``) and writes the same outputs.
    """
    from modelwatch.rollback import audit_prefix

    for uri, _ in list_objects(client, audit_prefix(cfg.defaults.reports_uri, model_id, experiment_id)):
        if uri.endswith(".json") and not uri.endswith(".claim.json"):
            record = get_json(client, uri)
            caused_by = record.get("breach", {}).get("partition", "")
            if record.get("outcome") == "rolled_back" and caused_by != partition.label and _partition_day(caused_by) <= partition.dt:
                return record
    return None


def _partition_day(label: str) -> date:
    """The day of a partition label ``model_id=M/dt=YYYY-MM-DD[/hour=HH]``."""
    return date.fromisoformat(label.split("/dt=")[1][:10])


def _guardrail_breaches(cfg: MonitoringConfig, model, exp, partition: Partition, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Asset-event extras for the guardrails an experiment broke (hard limits are signalled by the profile stage)."""
    from modelwatch.limits import breach_id

    out = []
    for g in result["guardrails"]:
        if g.get("verdict") != "inferior":
            continue
        reason = f"guardrail {g['metric']} inferior: {g.get('scale')} {g['estimate']:+.4g} vs margin {g['margin']:g} (interval {g['lower']:+.4g}..{g['upper']:+.4g})"
        out.append({
            "model_id": model.id, "experiment_id": exp.id, "control": exp.control, "treatment": exp.treatment, "metric": g["metric"],
            "value": g["estimate"], "limit": {"margin": g["margin"], "absolute": g["absolute"]}, "requests": g["n_treatment"],
            "reason": reason, "evidence": {k: g.get(k) for k in ("method", "control_estimate", "treatment_estimate", "lower", "upper", "threshold")},
            "partition": partition.label, "breach_id": breach_id(model.id, exp.id, partition.label, g["metric"]),
            "routing_uri": model.rollback.uri if model.rollback else None, "reports_uri": cfg.defaults.reports_uri,
            "report_uri": report_uri(cfg, partition, "experiments.json"), "detected_at": datetime.now(UTC).isoformat(),
        })
    return out
