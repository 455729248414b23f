"""Benchmark suite "scale": a whole daily run on days of 100k, 1M and 10M requests, run (not projected), against pandas + Evidently on the same day.

``run(size)`` returns records ``{"suite", "case", "metric", "value", "unit", "alternative",
"alternative_value", "target"}``. Sizes: ``small`` = 100,000 requests (a quick pass),
``full`` = 1,000,000 then 10,000,000. ``MODELWATCH_BENCH_SCALE_ROWS=1000000`` (a comma-separated
list) runs other day sizes under either size name.

World (per day size): the local S3 server (``modelwatch.runtime.localstack.LocalS3``, moto over
HTTP). One LLM model (support-bot-v3 of the bundled config, its drift, judge and experiment
settings unchanged: embedding sample 4,000 texts per text column, heuristic judge with a 400-row
budgeted sample, experiment exp-042 at 90/10). Two days of synthetic traffic
(``bench.scale_data``: the generator's templates and rates, near-unique text, 24 hour files):
the baseline day 2026-11-03 and the monitored day 2026-11-04, each as JSONL.gz and as Parquet.
The days are generated on local disk and uploaded under two logs prefixes; with
``MODELWATCH_BENCH_SCALE_CACHE=/tmp/scale-days`` they are kept there and reused by later runs (a
10M day takes minutes to generate). The baseline is built once from the JSONL.gz copy
(``baseline.build_baseline``, embeddings through the S3 embedding cache) and copied to the
other worlds' reports prefixes.

Daily run: the DAG's tasks in the DAG's order (``dags/common/monitoring.py``), each in a fresh
Python process (``bench.scale_stage``) as Airflow runs a task, given the earlier tasks' results.
``check_shard`` is ``runner.check_shard``: each shard task builds every summarising stage's
summary (``modelwatch.summaries``), which the stages merge. ``shard_bytes`` is set per format so
a day is ``SHARDS_PER_SLOT`` shards per worker slot, at least ``MIN_SHARD_BYTES`` (a 1M day: 2
shards, a 10M day: 8), checked ``SLOTS`` at a time. Per task: wall, peak RSS (``os.wait4``), S3
requests and bytes (botocore hooks in the task); per stage: its per-shard part (its summary's
update and dump in the shard tasks), its merge and the rest of its task (``scale_records``);
per stage, the size of its shard summaries under the day's ``_work/.../summaries/``. The
sequential run's total is the sum of the walls. Then the run is repeated as Airflow schedules it
on 2 worker slots (``scheduled_run``, caches emptied first), its wall measured end to end.

Exact path (days up to ``EXACT_MAX_ROWS``): the JSONL.gz day is run again with
``defaults.summary_sample_rows`` set to the day's rows, so every summary is exact (the stages
decide on the whole day); ``bench.scale_compare`` compares the two runs' verdicts (drift per
column and segment, experiment decisions, judge estimates within their intervals, concept,
hard limits), a record per comparison.

Alternative: the code a user would write instead, on the same day and baseline in the same
run, in its own process capped at ``ALT_MEMORY_LIMIT`` of address space (a MemoryError past it
is recorded with the phase and rows read, instead of taking the machine down): pandas reads
every hour file of the day and of the baseline window from S3 (``read_json(lines=True)`` /
``read_parquet``) and flattens ``metadata``; Evidently 0.7's ``Report([DataDriftPreset()])``
compares the whole day with the whole window over the columns modelwatch tests (latency_ms,
prompt_tokens, completion_tokens; metadata.topic, metadata.locale, status) and saves its HTML.
It checks less than the daily run does (no validation, metrics, embedding drift, judge,
experiments or report site), so the ratio flatters it.

Targets: 1M requests in <= 90 s with every task <= 1.5 GiB; 10M in <= 12 min
with every task <= 4 GiB, on 2 cores. Every size is run; from the second size on, the linear
projection from the size before is recorded beside the measured run.

Environment: ``MODELWATCH_BENCH_SCALE_TASK_TIMEOUT`` (seconds, default 600, 0: none) stops the alternative, drift,
concept or judge running longer (later tasks run without it; the total is then AT LEAST);
``MODELWATCH_BENCH_SCALE_PROFILE`` the tasks re-run under cProfile into ``bench/scale_profile.txt``
("0": none; default: the two slowest); ``MODELWATCH_BENCH_SCALE_SCHEDULED=0`` skips the scheduled
repeat (``=1000000``: only for days of at most that many requests); ``MODELWATCH_BENCH_SCALE_FORMATS=jsonl.gz`` runs one format; ``MODELWATCH_BENCH_SCALE_BASELINE_ROWS``
makes the baseline day smaller than the monitored day; ``MODELWATCH_BENCH_SCALE_CACHE`` (above). Every result, part, S3 count, split, size and
comparison is also written to ``bench/scale_details.json``.
"""

from __future__ import annotations

import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path
from typing import Any

from bench.common import Record, suite_helpers
from bench.scale_records import (
    ScheduledRun,
    SizeResult,
    TaskRun,
    details,
    growth_records,
    label,
    project,
    projection_records,
    size_records,
    sum_runs,
)
from bench.scale_world import (
    BASELINE_DAY,
    DAY,
    FORMATS,
    MODEL,
    SLOTS,
    World,
    buckets,
    copy_prefix,
    logs_uris,
    make_world,
    sample_rows_of,
    shard_bytes_for,
)

SUITE = "scale"
ROOT = Path(__file__).resolve().parents[1]
DETAILS = Path(__file__).resolve().parent / "scale_details.json"
PROFILE = Path(__file__).resolve().parent / "scale_profile.txt"
ROWS_ENV = "MODELWATCH_BENCH_SCALE_ROWS"
CACHE_ENV = "MODELWATCH_BENCH_SCALE_CACHE"  # a folder the generated days are kept in and reused from
SCHEDULED_ENV = "MODELWATCH_BENCH_SCALE_SCHEDULED"  # "0": no scheduled repeat; "1" (default): every size; N > 1: days of at most N requests
FORMATS_ENV = "MODELWATCH_BENCH_SCALE_FORMATS"  # "jsonl.gz": run that format only (default: both)
BASELINE_ROWS_ENV = "MODELWATCH_BENCH_SCALE_BASELINE_ROWS"  # the baseline day's requests, if fewer than the monitored day's
SIZES: dict[str, list[int]] = {"small": [100_000], "full": [1_000_000, 10_000_000]}
SEED = 20_261_104
WEIGHTS = {"control": 0.9, "treatment": 0.1}
STAGES = ["plan_shards", "check_shard", "extract", "validate", "profile", "drift", "concept", "judge", "experiments", "publish"]
EXACT_MAX_ROWS = 1_000_000  # the exact-path comparison runs on days up to this size
ALT_MEMORY_LIMIT = 12 * 2**30  # the alternative's address-space cap (RLIMIT_AS)
INPUTS: dict[str, list[str]] = {  # which earlier results each task receives, as the DAG wires them
    "plan_shards": [],
    "check_shard": [],  # one shard each, from plan_shards
    "extract": ["checked"],
    "validate": ["extracted"],
    "profile": ["validated"],
    "drift": ["validated"],
    "concept": ["validated"],
    "judge": ["validated"],
    "experiments": ["validated", "profiled", "judged"],
    "publish": ["extracted", "validated", "profiled", "drifted", "concepted", "experimented", "judged"],
}
OUTPUT_NAME = {"plan_shards": "shards", "check_shard": "checked", "extract": "extracted", "validate": "validated", "profile": "profiled", "drift": "drifted", "concept": "concepted",
               "judge": "judged", "experiments": "experimented", "publish": "published"}
ALT_NUMERICAL = ["latency_ms", "prompt_tokens", "completion_tokens"]
ALT_CATEGORICAL = ["metadata.topic", "metadata.locale", "status"]
PROFILE_STAGES = 2  # cProfile this many of the slowest stages
PROFILE_ENV = "MODELWATCH_BENCH_SCALE_PROFILE"  # "0": no cProfile re-runs; "extract,validate": those tasks; unset: the slowest that finished
TIMEOUT_ENV = "MODELWATCH_BENCH_SCALE_TASK_TIMEOUT"  # seconds; stops an optional task that runs longer (its time becomes a lower bound)
DEFAULT_TASK_TIMEOUT_S = 600.0
OPTIONAL_TASKS = {"drift", "concept", "judge"}  # their results are optional for experiments and publish

log, record = suite_helpers(SUITE)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# -- child processes ---------------------------------------------------------------------------------------


def child_env(config: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "AWS_ACCESS_KEY_ID": "modelwatch", "AWS_SECRET_ACCESS_KEY": "modelwatch", "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("MODELWATCH_EVIDENTLY_WORKSPACE", None)  # no workspace writes: the report and snapshot still go to S3
    if config is not None:
        env["MODELWATCH_CONFIG"] = str(config)
    return env


def task_timeout(task: str) -> float | None:
    """Seconds after which an optional task (its result is optional downstream) or the alternative is stopped; None: no limit."""
    if task not in OPTIONAL_TASKS and task != "alternative":  # the alternative too: Evidently on a 10M day may not end
        return None
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_TASK_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds (0: no limit), got {value!r}") from None
    return seconds if seconds > 0 else None


def run_task(task: str, request: dict[str, Any], workdir: Path, profile: Path | None = None, imports_only: bool = False,
             name: str | None = None, may_fail: bool = False) -> TaskRun:
    """Run ``bench.scale_stage`` for ``task`` in a fresh interpreter; its wall time and peak RSS from ``wait4``.

    An optional task still running after ``task_timeout(task)`` seconds is killed: its wall time
    is then a lower bound, its result ``{"outcome": "timed_out"}`` (downstream tasks treat it as absent).
    A task that exits with an error raises, unless ``may_fail`` (the alternative): its result is then
    ``{"outcome": "failed", "error": ...}``.
    """
    request_path, out = workdir / f"{name or task}.request.json", workdir / f"{name or task}.out.json"
    request_path.write_text(json.dumps(request, default=str))
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "bench.scale_stage", "--task", task, "--request", str(request_path), "--out", str(out)]
    if profile is not None:
        command += ["--profile", str(profile)]
    if imports_only:
        command += ["--imports-only"]
    timeout = None if imports_only else task_timeout(task)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=child_env(Path(request["config"]) if request.get("config") else None), start_new_session=True)
    timed_out = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if timeout is not None and time.perf_counter() - start > timeout:
            os.killpg(process.pid, signal.SIGKILL)
            _, status, usage = os.wait4(process.pid, 0)
            timed_out = True
            break
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if timed_out:
        log(f"{task}: killed after {wall:.0f} s (timeout {timeout:.0f} s from ${TIMEOUT_ENV}); its time is a lower bound")
        return TaskRun(task, wall, usage.ru_maxrss / 1024, wall, 0.0, {"outcome": "timed_out", "timeout_s": timeout}, timed_out=True)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not out.exists():
        if may_fail:
            log(f"{task}: failed (exit status {code}) after {wall:.0f} s")
            return TaskRun(task, wall, usage.ru_maxrss / 1024, wall, 0.0, {"outcome": "failed", "error": f"exit status {code}", "seconds_to_failure": wall})
        raise RuntimeError(f"task {task} failed (exit status {code}); its traceback is printed above")
    payload = json.loads(out.read_text())
    return TaskRun(task, wall, usage.ru_maxrss / 1024, payload["seconds"], payload["import_seconds"], payload["result"], payload.get("parts", {}),
                   s3=payload.get("s3", {}))


# -- one day size ------------------------------------------------------------------------------------------


def daily_run(world: World, endpoint: str, workdir: Path, prefix: str = "") -> dict[str, TaskRun]:
    """The DAG's tasks in order, each in its own process, results passed on like XCom; the shards ``SLOTS`` at a time."""
    results: dict[str, Any] = {}
    runs: dict[str, TaskRun] = {}
    for task in STAGES:
        if task == "check_shard":
            runs[task] = run_shards(world, endpoint, results["shards"], workdir, prefix)
        else:
            runs[task] = run_task(task, task_request(world, endpoint, task, results), workdir, name=f"{prefix}{task}")
        results[OUTPUT_NAME[task]] = runs[task].result
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(runs[task].parts.items(), key=lambda kv: -kv[1]))
        log(f"{world.name} {task}: {runs[task].wall:.1f} s wall (call {runs[task].seconds:.1f} s, imports {runs[task].import_seconds:.1f} s), "
            f"peak {runs[task].peak_mib:.0f} MiB{'; ' + parts if parts else ''}")
    return runs


BRANCHES = ["drift", "judge", "concept", "profile"]  # after validate, independent of each other: longest first


def run_shards(world: World, endpoint: str, shards: list[dict[str, Any]], workdir: Path, prefix: str = "") -> TaskRun:
    """Every ``check_shard`` task, ``SLOTS`` processes at a time: wall from the first start to the last end, the largest peak."""
    from concurrent.futures import ThreadPoolExecutor

    def one(shard: dict[str, Any]) -> TaskRun:
        request = {**task_request(world, endpoint, "check_shard", {}), "shard": shard}
        return run_task("check_shard", request, workdir, name=f"{prefix}check_shard-{shard['shard']}")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SLOTS) as pool:
        done = list(pool.map(one, shards))
    log(f"{world.name} check_shard: {len(done)} shards, " + ", ".join(f"{r.wall:.1f} s/{r.peak_mib:.0f} MiB" for r in done))
    return sum_runs(done, "check_shard", time.perf_counter() - start)


def alternative_run(world: World, endpoint: str, workdir: Path) -> TaskRun:
    from modelwatch.core.partition import Partition

    request = {"endpoint": endpoint, "current_prefix": Partition(MODEL, DAY).path(world.logs_uri),
               "reference_prefix": Partition(MODEL, BASELINE_DAY).path(world.logs_uri), "numerical": ALT_NUMERICAL, "categorical": ALT_CATEGORICAL,
               "memory_limit_bytes": ALT_MEMORY_LIMIT}
    run = run_task("alternative", request, workdir, may_fail=True)
    r = run.result
    if r.get("outcome") == "ok":
        log(f"{world.name} alternative: {run.wall:.1f} s wall (read {r['read_s']:.1f}, import {r['import_evidently_s']:.1f}, "
            f"run {r['evidently_run_s']:.1f}, html {r['evidently_html_s']:.1f}), peak {run.peak_mib:.0f} MiB")
    else:
        log(f"{world.name} alternative FAILED after {run.wall:.1f} s, peak {run.peak_mib:.0f} MiB: {r}")
    return run


def summary_sizes(client, world: World) -> dict[str, dict[str, int]]:
    """Per stage, its shard summaries under the day's ``_work/.../summaries/``: how many, their bytes in all and the largest one's."""
    from modelwatch.core.partition import Partition
    from modelwatch.storage.s3 import list_objects

    out: dict[str, dict[str, int]] = {}
    for uri, size in list_objects(client, f"{Partition(MODEL, DAY).path(world.reports_uri + '/_work')}/summaries"):
        stage = uri.rsplit("/", 1)[-1].split("-", 1)[0]
        entry = out.setdefault(stage, {"objects": 0, "bytes": 0, "largest": 0})
        entry["objects"] += 1
        entry["bytes"] += size
        entry["largest"] = max(entry["largest"], size)
    return out


def prepare_days(rows: int, endpoint: str, targets: dict[str, str], workdir: Path) -> tuple[float, bool, dict[str, int], dict[str, int]]:
    """Generate (or find in the cache folder) both days and upload them; (seconds, generated, bytes of 2 days and of the monitored day per format)."""
    from bench.scale_data import DaySpec, generate_day, upload_day

    cache = Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV, "").strip() else workdir / "days"
    start = time.perf_counter()
    generated, total, monitored = False, dict.fromkeys(targets, 0), dict.fromkeys(targets, 0)
    baseline_rows = min(rows, int(os.environ.get(BASELINE_ROWS_ENV, "").strip() or rows))
    for day, n in ((BASELINE_DAY, baseline_rows), (DAY, rows)):
        spec = DaySpec(MODEL, day, n, SEED, "exp-042", WEIGHTS)
        folder = cache / label(n) / day.isoformat()
        made = generate_day(folder, spec, list(FORMATS))
        generated |= made["generated"]
        upload_day(endpoint, folder, targets, spec)
        for fmt in targets:
            total[fmt] += made["bytes"][fmt]
            if day == DAY:
                monitored[fmt] = made["bytes"][fmt]
    seconds = time.perf_counter() - start
    log(f"{label(rows)}: 2 days x {rows:,} requests {'generated' if generated else f'from {cache}'} and uploaded in {seconds:.1f} s: "
        + ", ".join(f"{fmt} {size / 2**20:.0f} MiB" for fmt, size in total.items()))
    return seconds, generated, total, monitored


def measure_size(rows: int, workdir: Path, alternative: bool = True) -> SizeResult:
    """Prepare the two days of ``rows`` requests, build the baseline, run the daily tasks and the alternative in each format, the exact path."""
    from modelwatch.runtime.localstack import LocalS3
    from modelwatch.storage.s3 import get_json, make_client

    from bench.scale_compare import compare_runs

    tag = label(rows).lower()
    server = LocalS3(log=workdir / "s3.log").start()
    try:
        client = make_client(endpoint_url=server.endpoint)
        names = buckets(client, tag)
        load = {"start": load_average()}
        generation, generated, data_bytes, day_bytes = prepare_days(rows, server.endpoint, logs_uris(names), workdir)
        chosen = [f.strip() for f in os.environ.get(FORMATS_ENV, "").split(",") if f.strip()] or list(FORMATS)
        worlds = {fmt: make_world(names, fmt, workdir, shard_bytes_for(day_bytes[fmt])) for fmt in FORMATS if fmt in chosen}
        jsonl = worlds["jsonl.gz"]
        exact = make_world(names, "jsonl.gz", workdir, jsonl.shard_bytes, exact_rows=rows) if rows <= EXACT_MAX_ROWS else None

        baseline = run_task("baseline", {"config": str(jsonl.config), "endpoint": server.endpoint, "model_id": MODEL,
                                         "start": BASELINE_DAY.isoformat(), "end": BASELINE_DAY.isoformat()}, workdir)
        log(f"{label(rows)}: baseline built in {baseline.wall:.1f} s, peak {baseline.peak_mib:.0f} MiB")
        for other in [*worlds.values(), *([exact] if exact else [])]:
            if other is not jsonl:
                copy_prefix(client, f"{jsonl.reports_uri}/_baselines", f"{other.reports_uri}/_baselines")

        runs, alternatives, embedding, scheduled, sizes = {}, {}, {}, {}, {}
        for fmt, world in worlds.items():
            load[f"{fmt} start"] = load_average()
            runs[fmt] = daily_run(world, server.endpoint, workdir, prefix=f"{FORMATS[fmt]}-")
            sizes[fmt] = summary_sizes(client, world)
            log(f"{fmt} summaries: " + ", ".join(f"{s} {v['bytes'] / 2**20:.2f} MiB in {v['objects']}" for s, v in sizes[fmt].items()))
            if scheduled_repeat(rows):
                scheduled[fmt] = scheduled_run(client, world, server.endpoint, workdir)
            drift_uri = runs[fmt]["drift"].result.get("drift_uri")
            if drift_uri:
                embedding[fmt] = [{k: e.get(k) for k in ("column", "n_reference", "n_current", "p_value", "drift", "cache")}
                                  for e in get_json(client, drift_uri).get("embedding", [])]
            if alternative:
                alternatives[fmt] = alternative_run(world, server.endpoint, workdir)
            load[f"{fmt} end"] = load_average()
        comparisons, exact_run = [], {}
        if exact is not None:
            load["exact start"] = load_average()
            exact_run = daily_run(exact, server.endpoint, workdir, prefix="exact-")
            load["exact end"] = load_average()
            comparisons = compare_runs({t: r.result for t, r in runs["jsonl.gz"].items()}, {t: r.result for t, r in exact_run.items()},
                                       lambda uri: get_json(client, uri))
            for c in comparisons:
                log(f"exact path: {c['what']}: {'equal' if c['equal'] else 'DIFFERENT'} ({c['compared']} compared) {c['differences'][:3]}")
        s3_peak = _peak_mib_of(server.proc.pid) if server.proc else None
        result = SizeResult(rows, generation, generated, data_bytes, {fmt: w.shard_bytes for fmt, w in worlds.items()}, baseline, runs, alternatives,
                            load, embedding, s3_peak, scheduled, sizes, comparisons, exact_run, rows if exact else 0, sample_rows_of(jsonl))
        if os.environ.get(PROFILE_ENV, "1") != "0":
            result.profile = profile_slowest(result, jsonl, server.endpoint, workdir)
    finally:
        server.stop()
    return result


def scheduled_repeat(rows: int) -> bool:
    """Whether the day of ``rows`` requests is run again as Airflow schedules it ($MODELWATCH_BENCH_SCALE_SCHEDULED)."""
    value = os.environ.get(SCHEDULED_ENV, "1").strip() or "1"
    if not value.isdigit():
        raise ValueError(f"{SCHEDULED_ENV} must be 0, 1 or a number of requests, got {value!r}")
    return value == "1" or (value != "0" and rows <= int(value))


def scheduled_run(client, world: World, endpoint: str, workdir: Path) -> ScheduledRun:
    """The same tasks with the DAG's parallelism: the shards, then the four branches after validate, ``SLOTS`` at a time.

    The run starts from the same state as the sequential one: the embedding and judgment caches
    (filled by that run) are deleted first, so today's texts are embedded and judged again.
    """
    from concurrent.futures import ThreadPoolExecutor

    from modelwatch.storage.s3 import delete_prefix

    delete_prefix(client, f"{world.reports_uri}/_cache")
    results: dict[str, Any] = {}
    spans: list[tuple[str, float, float, float]] = []
    start = time.perf_counter()

    def run(task: str) -> None:
        began = time.perf_counter() - start
        if task == "check_shard":
            done = run_shards(world, endpoint, results["shards"], workdir, "scheduled-")
            peak = min(SLOTS, len(results["shards"])) * done.peak_mib
        else:
            done = run_task(task, task_request(world, endpoint, task, results), workdir, name=f"scheduled-{task}")
            peak = done.peak_mib
        results[OUTPUT_NAME[task]] = done.result
        spans.append((task, began, time.perf_counter() - start, peak))

    for task in ("plan_shards", "check_shard", "extract", "validate"):
        run(task)
    with ThreadPoolExecutor(max_workers=SLOTS) as pool:
        list(pool.map(run, BRANCHES))
    for task in ("experiments", "publish"):
        run(task)
    wall = time.perf_counter() - start
    bound = max(sum(p for _, s, e, p in spans if s <= began < e) for _, began, _, _ in spans)
    log(f"{world.name} scheduled on {SLOTS} slots: {wall:.1f} s wall, peak of tasks running together <= {bound:.0f} MiB")
    return ScheduledRun(wall, bound, spans)


def _peak_mib_of(pid: int) -> float | None:
    """The peak RSS (VmHWM) of a live process, summed over it and its children (the S3 server runs under a launcher)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total or None


# -- profiling, import costs, sizes ------------------------------------------------------------------------


def task_request(world: World, endpoint: str, task: str, results: dict[str, Any]) -> dict[str, Any]:
    """What the DAG hands ``task``: the config (by path), the S3 endpoint, the partition and the earlier tasks' results."""
    from modelwatch.core.partition import Partition

    return {"config": str(world.config), "endpoint": endpoint, "partition": Partition(MODEL, DAY).to_dict(),
            "inputs": {name: results.get(name) for name in INPUTS[task]}}


def profile_slowest(result: SizeResult, world: World, endpoint: str, workdir: Path) -> str:
    """Re-run the slowest tasks of ``world``'s run under cProfile (idempotent: they overwrite their outputs); their top functions."""
    runs = result.runs[world.fmt]
    chosen = os.environ.get(PROFILE_ENV, "").strip()
    finished = [t for t in runs if not runs[t].timed_out]
    slowest = [t for t in chosen.split(",") if t in runs] if chosen else sorted(finished, key=lambda t: -runs[t].wall)[:PROFILE_STAGES]
    results = {OUTPUT_NAME[t]: r.result for t, r in runs.items()}
    text = [f"cProfile of the slowest tasks, {result.rows:,}-request day, {world.fmt} (re-run after the timed run; cProfile adds overhead)\n"]
    for task in slowest:
        prof = workdir / f"{task}.prof"
        request = task_request(world, endpoint, task, results)
        if task == "check_shard":
            request["shard"] = results["shards"][0]  # one shard: the others do the same work on other files
        run_task(task, request, workdir, profile=prof)
        for order in ("cumulative", "tottime"):
            buffer = StringIO()
            stats = pstats.Stats(str(prof), stream=buffer)
            stats.strip_dirs().sort_stats(order).print_stats(15)
            text.append(f"\n===== {task} (timed run {runs[task].wall:.1f} s), top 15 by {order} =====\n{_trim(buffer.getvalue())}")
        log(f"profiled {task}")
    return "".join(text)


def _trim(report: str) -> str:
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return "\n".join(lines[start:]) + "\n"


def day_sizes(size: str) -> list[int]:
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    override = os.environ.get(ROWS_ENV, "").strip()
    if not override:
        return SIZES[size]
    try:
        rows = [int(part.replace("_", "")) for part in override.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{ROWS_ENV} must be a comma-separated list of request counts (e.g. 1000000), got {override!r}") from None
    if not rows or min(rows) < 1000:
        raise ValueError(f"{ROWS_ENV} needs day sizes of at least 1,000 requests, got {override!r}")
    return rows


def import_rss(workdir: Path) -> dict[str, TaskRun]:
    """Each task's process with its imports only: the part of its time and memory that does not grow with the day."""
    return {task: run_task(task, {}, workdir, imports_only=True) for task in STAGES}


def run(size: str) -> list[Record]:
    """Run the scale suite at ``size`` ("small" or "full", or the sizes in $MODELWATCH_BENCH_SCALE_ROWS) and return its records."""
    sizes = sorted(day_sizes(size))
    records: list[Record] = []
    detail: dict[str, Any] = {"machine_load_at_start": load_average(), "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        base = import_rss(workdir)
        detail["imports_only"] = {t: {"wall_s": round(r.wall, 2), "peak_rss_mib": round(r.peak_mib)} for t, r in base.items()}
        log("imports only: " + ", ".join(f"{t} {r.wall:.1f} s/{r.peak_mib:.0f} MiB" for t, r in base.items()))
        measured: list[SizeResult] = []
        for rows in sizes:
            projected = project(measured[-1], base, rows) if measured else None
            log(f"{label(rows)}: measuring" + (f" (projected from {label(measured[-1].rows)}: " + ", ".join(
                f"{fmt} {p['wall_s']:.0f} s/{p['peak_mib']:.0f} MiB" for fmt, p in projected.items()) + ")" if projected else ""))
            result = measure_size(rows, workdir)
            records += size_records(result)
            if projected is not None:
                records += projection_records(rows, measured[-1], projected)
                records += growth_records(measured[-1], result)
            detail["sizes"][label(rows)] = details(result, {"from_previous": projected} if projected else {})
            DETAILS.write_text(json.dumps(detail, indent=2, default=str) + "\n")  # kept after each size: a later size may run for long
            measured.append(result)
        if measured and measured[-1].profile:
            PROFILE.write_text(measured[-1].profile)
    DETAILS.write_text(json.dumps(detail, indent=2, default=str) + "\n")
    return records
