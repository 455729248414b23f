"""What the "scale" benchmark measured, as records and details: per task, per stage's parts, per day size and its growth.

The measuring is ``bench.suite_scale``; this module holds its result types and turns them into
the records ``bench/run.py`` tabulates and the details written to ``bench/scale_details.json``.

A stage's time splits into its per-shard part (its summary's ``update`` and ``dump`` inside the
shard tasks, summed over shards), its merge (``summaries.merged`` inside its own task) and the
rest of its task (imports, baseline, the decision, writing its outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.common import Record, suite_helpers

SUITE = "scale"
TARGETS: dict[int, tuple[str, str]] = {1_000_000: ("<= 90 s", "<= 1.5 GiB"), 10_000_000: ("<= 12 min", "<= 4 GiB")}
MERGE_PART = "summaries.merged"  # bench.scale_stage's key for a stage task's merge of its shard summaries
FIXED_PARTS = {"EmbeddingCache.get_or_embed", "mmd_test", "build_report", "JudgeRunner.run"}  # sized by samples, not by the day
ALT_NAME = "pandas read + Evidently DataDriftPreset (whole day vs whole baseline day, HTML saved)"

_, record = suite_helpers(SUITE)


def label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)


@dataclass
class TaskRun:
    """One task process: its wall seconds, peak RSS, in-call and import seconds, timed parts, S3 traffic and result."""

    task: str
    wall: float
    peak_mib: float
    seconds: float
    import_seconds: float
    result: Any
    parts: dict[str, float] = field(default_factory=dict)
    timed_out: bool = False
    s3: dict[str, Any] = field(default_factory=dict)  # {"requests", "by_operation", "bytes_sent", "bytes_received"}
    each: list[dict[str, float]] = field(default_factory=list)  # check_shard: every shard task's wall and peak


@dataclass
class ScheduledRun:
    """The daily run as Airflow runs it with 2 worker slots: wall, and the peak RSS of tasks running together."""

    wall: float
    peak_bound_mib: float  # the largest sum of the peaks of tasks that overlapped (their peaks may not have coincided)
    spans: list[tuple[str, float, float, float]]  # task, start, end, peak MiB


@dataclass
class SizeResult:
    rows: int
    generation_s: float
    generated: bool  # False: the days came from the cache folder
    data_bytes: dict[str, int]
    shard_bytes: dict[str, int]
    baseline: TaskRun
    runs: dict[str, dict[str, TaskRun]]
    alternatives: dict[str, TaskRun]
    load: dict[str, float]
    embedding: dict[str, Any]
    s3_peak_mib: float | None
    scheduled: dict[str, ScheduledRun] = field(default_factory=dict)
    summaries: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # format -> stage -> {"objects", "bytes", "largest"}
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # summary path vs exact path
    exact_run: dict[str, TaskRun] = field(default_factory=dict)
    exact_sample_rows: int = 0  # the exact path's defaults.summary_sample_rows (>= the day's rows)
    sample_rows: int = 0  # the summary path's defaults.summary_sample_rows
    profile: str = ""


def sum_runs(runs: list[TaskRun], task: str, wall: float) -> TaskRun:
    """The shard tasks as one: ``wall`` from the first start to the last end, the largest peak, summed calls, parts and S3 traffic."""
    parts: dict[str, float] = {}
    s3: dict[str, Any] = {"requests": 0, "by_operation": {}, "bytes_sent": 0, "bytes_received": 0}
    for run in runs:
        for key, seconds in run.parts.items():
            parts[key] = parts.get(key, 0.0) + seconds
        for key in ("requests", "bytes_sent", "bytes_received"):
            s3[key] += run.s3.get(key, 0)
        for op, n in run.s3.get("by_operation", {}).items():
            s3["by_operation"][op] = s3["by_operation"].get(op, 0) + n
    return TaskRun(task, wall, max(r.peak_mib for r in runs), sum(r.seconds for r in runs), sum(r.import_seconds for r in runs),
                   [r.result for r in runs], parts, s3=s3, each=[{"wall_s": round(r.wall, 2), "peak_rss_mib": round(r.peak_mib)} for r in runs])


# -- a stage's time: per-shard part, merge, the rest of its task --------------------------------------------


def stage_split(runs: dict[str, TaskRun]) -> dict[str, dict[str, float]]:
    """Per summarising stage: seconds of its per-shard part (summed over the shard tasks), its merge, and the rest of its task."""
    shard_parts = runs["check_shard"].parts
    out = {}
    for task, run in runs.items():
        if task == "check_shard":
            continue
        per_shard = sum(v for k, v in shard_parts.items() if k.startswith(f"summary {task}: "))
        merge = run.parts.get(MERGE_PART, 0.0)
        if per_shard or merge:
            out[task] = {"per_shard_s": round(per_shard, 2), "merge_s": round(merge, 2), "rest_of_task_s": round(run.wall - merge, 2)}
    summaries = sum(v for k, v in shard_parts.items() if k.startswith("summary "))
    out["check_shard"] = {"summaries_s": round(summaries, 2), "read_validate_write_s": round(runs["check_shard"].seconds - summaries, 2)}
    return out


# -- records -----------------------------------------------------------------------------------------------


def size_records(result: SizeResult) -> list[Record]:
    name = label(result.rows)
    how = "generated" if result.generated else "read from the cache folder"
    out = [
        record(f"{name}: 2 days (baseline + monitored) in JSONL.gz and Parquet, {how}, uploaded", "wall", round(result.generation_s, 1), "s"),
        *[record(f"{name}: stored size of 2 days, {fmt}", "size", round(size / 2**20, 1), "MiB") for fmt, size in result.data_bytes.items()],
        record(f"{name}: build baseline from 1 day (read, validate, profile, sample, embed {_embedded(result.baseline)} texts)", "wall",
               round(result.baseline.wall, 1), "s"),
        record(f"{name}: build baseline", "peak_rss", round(result.baseline.peak_mib), "MiB"),
    ]
    for fmt, runs in result.runs.items():
        out += format_records(result, fmt, runs)
    out += comparison_records(result)
    if result.s3_peak_mib:
        out.append(record(f"{name}: local S3 server (moto, holds every object in memory; not part of the run)", "peak_rss", round(result.s3_peak_mib), "MiB"))
    return out


def format_records(result: SizeResult, fmt: str, runs: dict[str, TaskRun]) -> list[Record]:
    name = label(result.rows)
    time_target, memory_target = TARGETS.get(result.rows, (None, None))
    total = sum(r.wall for r in runs.values())
    peak_task = max(runs, key=lambda t: runs[t].peak_mib)
    alt = result.alternatives.get(fmt)
    alt_ok = alt is not None and alt.result.get("outcome") == "ok"
    load = f"load avg {result.load.get(f'{fmt} start')}-{result.load.get(f'{fmt} end')}"
    bound = "AT LEAST: " if any(r.timed_out for r in runs.values()) else ""
    shards = len(runs["check_shard"].result)
    out = []
    for task, run in runs.items():
        how = "KILLED at the task timeout, a lower bound" if run.timed_out else f"call {run.seconds:.1f} s, imports {run.import_seconds:.1f} s"
        if task == "check_shard":
            how += f"; {shards} shard tasks of ~{result.shard_bytes[fmt] / 2**20:.0f} MiB, 2 at a time"
        out.append(record(f"{name} {fmt}: {task} ({run.wall / total:.0%} of the run; {how})", "wall", round(run.wall, 2), "s"))
        out.append(record(f"{name} {fmt}: {task}{' (largest shard task)' if task == 'check_shard' else ''}", "peak_rss", round(run.peak_mib), "MiB",
                          target=memory_target))
        if run.s3:
            out.append(record(f"{name} {fmt}: {task} S3 requests (received {run.s3['bytes_received'] / 2**20:.1f} MiB, "
                              f"sent {run.s3['bytes_sent'] / 2**20:.1f} MiB)", "s3_requests", run.s3["requests"], "requests"))
    for stage, split in stage_split(runs).items():
        if stage == "check_shard":
            out.append(record(f"{name} {fmt}: shard tasks, time in every stage's summary update+dump (summed over shards; read, validate, "
                              f"write {split['read_validate_write_s']:.1f} s)", "wall", split["summaries_s"], "s"))
            continue
        out.append(record(f"{name} {fmt}: {stage} per-shard part (summary update+dump, summed over shards)", "wall", split["per_shard_s"], "s"))
        out.append(record(f"{name} {fmt}: {stage} merge of its shard summaries (rest of its task {split['rest_of_task_s']:.1f} s)", "wall",
                          split["merge_s"], "s"))
    for stage, size in (result.summaries.get(fmt) or {}).items():
        out.append(record(f"{name} {fmt}: {stage} summaries, all {size['objects']} shards (largest one {size['largest'] / 2**10:.0f} KiB)",
                          "size", round(size["bytes"] / 2**20, 2), "MiB"))
    out.append(record(f"{name} {fmt}: {bound}end-to-end daily run, {len(runs)} tasks in sequence, {shards} shards 2 at a time ({load})",
                      "wall", round(total, 1), "s", ALT_NAME if alt_ok else None, round(alt.wall, 1) if alt_ok else None, time_target))
    out.append(record(f"{name} {fmt}: end-to-end daily run, largest task peak ({peak_task})", "peak_rss", round(runs[peak_task].peak_mib), "MiB",
                      ALT_NAME if alt_ok else None, round(alt.peak_mib) if alt_ok else None, memory_target))
    sched = result.scheduled.get(fmt)
    if sched:
        out.append(record(f"{name} {fmt}: {bound}end-to-end daily run as scheduled on 2 worker slots (shards, then the branches after "
                          "validate 2 at a time)", "wall", round(sched.wall, 1), "s", ALT_NAME if alt_ok else None,
                          round(alt.wall, 1) if alt_ok else None, time_target))
        out.append(record(f"{name} {fmt}: as scheduled, peak RSS of the tasks running together (upper bound: sum of their peaks)",
                          "peak_rss", round(sched.peak_bound_mib), "MiB"))
    if alt:
        out += alternative_records(name, fmt, alt)
    valid = runs["validate"].result
    out.append(record(f"{name} {fmt}: rows valid of rows read (the generated day is clean)", "rows_valid", valid["rows_valid"], "rows",
                      target=f"{valid['rows_read']}/{valid['rows_read']}"))
    return out


def alternative_records(name: str, fmt: str, alt: TaskRun) -> list[Record]:
    r = alt.result
    if r.get("outcome") == "ok":
        return [record(f"{name} {fmt}: alternative = read {r['read_s']:.1f} s + Evidently import {r['import_evidently_s']:.1f} s"
                       f" + run {r['evidently_run_s']:.1f} s + HTML {r['evidently_html_s']:.1f} s ({r['rows_current']:,} vs {r['rows_reference']:,} rows)",
                       "wall", round(alt.wall, 1), "s"),
                record(f"{name} {fmt}: alternative", "peak_rss", round(alt.peak_mib), "MiB")]
    if r.get("outcome") == "timed_out":
        return [record(f"{name} {fmt}: alternative did not finish within {r['timeout_s']:.0f} s (stopped; its time is a lower bound)",
                       "wall", round(alt.wall, 1), "s"),
                record(f"{name} {fmt}: alternative, peak RSS when stopped", "peak_rss", round(alt.peak_mib), "MiB")]
    limit = r.get("memory_limit_bytes")
    where = f"in {r.get('failed_at')} after reading {r.get('rows_read', 0):,} rows of 2 days ({r.get('files_read', 0)} files)" if "failed_at" in r else ""
    return [record(f"{name} {fmt}: alternative FAILED ({r.get('error', '?')}) {where} under a {limit / 2**30:.0f} GiB address-space limit"
                   if limit else f"{name} {fmt}: alternative FAILED ({r.get('error', '?')})", "wall", round(alt.wall, 1), "s"),
            record(f"{name} {fmt}: alternative, peak RSS when it failed", "peak_rss", round(alt.peak_mib), "MiB")]


def comparison_records(result: SizeResult) -> list[Record]:
    name = label(result.rows)
    out = []
    for c in result.comparisons:
        differ = "; ".join(f"{d['key']}: summaries {d['summaries']} vs exact {d['exact']}" for d in c["differences"][:5])
        more = f" (+{len(c['differences']) - 5} more)" if len(c["differences"]) > 5 else ""
        out.append(record(f"{name} jsonl.gz: {c['what']}, per-shard summaries (samples of at most {result.sample_rows:,} rows a column) "
                          f"vs the exact path, {c['compared']} compared" + (f"; differ: {differ}{more}" if differ else ""),
                          "verdicts_equal", int(c["equal"]), "bool", target=">= 1"))
    if result.exact_run:
        peak = max(result.exact_run.values(), key=lambda r: r.peak_mib)
        out.append(record(f"{name} jsonl.gz: the exact path's daily run (every summary exact), tasks in sequence", "wall",
                          round(sum(r.wall for r in result.exact_run.values()), 1), "s"))
        out.append(record(f"{name} jsonl.gz: the exact path's largest task peak ({peak.task})", "peak_rss", round(peak.peak_mib), "MiB"))
    return out


def growth_records(small: SizeResult, large: SizeResult) -> list[Record]:
    """How each task's wall and each stage's parts grow from the smaller day to the larger (linear in rows: the rows' ratio)."""
    factor = large.rows / small.rows
    case = f"{label(small.rows)} -> {label(large.rows)} ({factor:.0f}x rows)"
    out = []
    for fmt, runs in large.runs.items():
        before = small.runs.get(fmt)
        if not before:
            continue
        for task, run in runs.items():
            if task in before and before[task].wall > 0:
                out.append(record(f"{case} {fmt}: {task} wall grows", "ratio", round(run.wall / before[task].wall, 2), "x"))
        old_split, new_split = stage_split(before), stage_split(runs)
        for stage, split in new_split.items():
            for part, seconds in split.items():
                was = old_split.get(stage, {}).get(part)
                if was and was > 0:
                    out.append(record(f"{case} {fmt}: {stage} {part.removesuffix('_s')} grows", "ratio", round(seconds / was, 2), "x"))
    return out


def _embedded(run: TaskRun) -> int:
    return sum((run.result.get("embeddings") or {}).values()) if isinstance(run.result, dict) else 0


# -- projection (a record beside the run) -------------------------------------------------------------------


def project(result: SizeResult, base: dict[str, TaskRun], rows: int) -> dict[str, dict[str, float]]:
    """Wall and peak RSS of a day of ``rows`` requests from the measured day, per format (kept beside the run, to check it).

    Per task: imports and the timed fixed-size parts stay; the rest of the call scales linearly
    with the rows; memory above the task's import-only RSS scales linearly, except a shard's
    (set by ``shard_bytes`` and ``batch_rows``).
    """
    factor = rows / result.rows
    out = {}
    for fmt, runs in result.runs.items():
        wall, peak = 0.0, 0.0
        for task, run in runs.items():
            if task == "check_shard":
                wall += run.wall * factor
                peak = max(peak, run.peak_mib)
                continue
            fixed = sum(v for k, v in run.parts.items() if k in FIXED_PARTS)
            overhead = run.wall - run.seconds
            wall += overhead + fixed + (run.seconds - fixed) * factor
            floor = base[task].peak_mib if task in base else 0.0
            peak = max(peak, floor + max(run.peak_mib - floor, 0.0) * factor)
        out[fmt] = {"wall_s": wall, "peak_mib": peak}
    return out


def projection_records(rows: int, measured: SizeResult, projected: dict[str, dict[str, float]]) -> list[Record]:
    time_target, memory_target = TARGETS.get(rows, (None, None))
    out = []
    for fmt, p in projected.items():
        case = f"{label(rows)} {fmt}: PROJECTED from the {label(measured.rows)} run (linear; beside the measured run)"
        out.append(record(f"{case}, end-to-end", "wall", round(p["wall_s"]), "s", target=time_target))
        out.append(record(f"{case}, largest task peak", "peak_rss", round(p["peak_mib"]), "MiB", target=memory_target))
    return out


# -- details -----------------------------------------------------------------------------------------------


def task_details(run: TaskRun) -> dict[str, Any]:
    return {"timed_out": run.timed_out, "wall_s": round(run.wall, 2), "call_s": round(run.seconds, 2), "import_s": round(run.import_seconds, 2),
            "peak_rss_mib": round(run.peak_mib), "parts_s": {k: round(v, 2) for k, v in run.parts.items()}, "s3": run.s3,
            **({"shard_tasks": run.each} if run.each else {}), "result": run.result}


def details(result: SizeResult, projected: dict[str, Any]) -> dict[str, Any]:
    return {"rows": result.rows, "generation_s": round(result.generation_s, 1), "generated": result.generated, "data_bytes": result.data_bytes,
            "shard_bytes": result.shard_bytes, "load_average": result.load, "baseline": task_details(result.baseline),
            "runs": {fmt: {t: task_details(r) for t, r in runs.items()} for fmt, runs in result.runs.items()},
            "stage_split": {fmt: stage_split(runs) for fmt, runs in result.runs.items()}, "summaries": result.summaries,
            "alternatives": {fmt: task_details(r) for fmt, r in result.alternatives.items()}, "embedding": result.embedding,
            "comparisons": result.comparisons, "sample_rows": result.sample_rows, "exact_sample_rows": result.exact_sample_rows,
            "exact_run": {t: task_details(r) for t, r in result.exact_run.items()},
            "s3_server_peak_mib": result.s3_peak_mib, "projections": projected,
            "scheduled": {fmt: {"wall_s": round(r.wall, 1), "peak_bound_mib": round(r.peak_bound_mib),
                                "spans": [{"task": t, "start_s": round(b, 1), "end_s": round(e, 1), "peak_mib": round(m)} for t, b, e, m in r.spans]}
                          for fmt, r in result.scheduled.items()}}
