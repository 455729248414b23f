"""Benchmark suite "scale": a whole daily run on days of 100k, 1M and 10M requests, against pandas + Evidently on the same day.

``run(size)`` returns records ``{"suite", "case", "metric", "value", "unit", "alternative",
"alternative_value", "target"}``. Sizes: ``small`` = 100,000 requests (a quick pass),
``full`` = 1,000,000 then 10,000,000. ``MODELWATCH_BENCH_SCALE_ROWS=1000000`` (a comma-separated
list) runs other day sizes under either size name.

World (per day size): the local S3 server (``modelwatch.runtime.localstack.LocalS3``, moto over
HTTP). One LLM model (support-bot-v3 of the bundled config, its drift, judge and experiment
settings unchanged: embedding sample 4,000 texts per text column, heuristic judge with a 400-row
budgeted sample, experiment exp-042 at 90/10). Two days of synthetic traffic
(``bench.scale_data``: the generator's templates and rates, near-unique text, 24 hour files):
the baseline day 2026-11-03 and the monitored day 2026-11-04, each stored as JSONL.gz and as
Parquet under two logs prefixes. The baseline is built once from the JSONL.gz copy
(``baseline.build_baseline``, embeddings through the S3 embedding cache) and copied to the
Parquet world's reports prefix.

Daily run: the DAG's tasks in the DAG's order (``dags/common/monitoring.py``: plan_shards,
check_shard per shard, extract, validate, profile, drift, concept, judge, experiments,
publish), each in a fresh Python process (``bench.scale_stage``) as Airflow runs a task: it
loads the config, makes its S3 client, imports what it needs and calls the library function
with the earlier tasks' results. The config's ``shard_bytes`` (``SHARD_BYTES``) splits the
day into one shard per core, and the shards run ``SHARD_WIDTH`` at a time. Wall time and
peak RSS (``os.wait4``'s ``ru_maxrss``) are per process; the sequential run's total is the
sum of the walls and its peak the largest task's. Each stage's share is its wall over that
total. Then the run is repeated as Airflow schedules it on 2 worker slots (``scheduled_run``:
the branches after validate 2 at a time, caches emptied first), whose wall is measured end
to end and whose memory is bounded by the sum of the peaks of tasks that ran together.

Alternative: the code a user would write instead, on the same day and baseline in the same
run, in its own process: pandas reads every hour file of the day and of the baseline window
from S3 (``read_json(lines=True)`` / ``read_parquet``) and flattens ``metadata``; Evidently 0.7's
``Report([DataDriftPreset()])`` compares the whole day with the whole window over the columns
modelwatch tests (latency_ms, prompt_tokens, completion_tokens; metadata.topic,
metadata.locale, status) and saves its HTML. It checks less than the daily run does (no
validation, metrics, embedding drift, judge, experiments or report site), so the ratio
flatters it.

Targets (issue 7): 1M requests in <= 90 s with peak RSS <= 2.5 GiB; 10M in <= 12 min with
<= 4 GiB, on 2 cores. The 10M day is generated and run only if the 1M run projects it under
15 minutes and 8 GiB (the projection is recorded either way).

Environment: ``MODELWATCH_BENCH_SCALE_TASK_TIMEOUT`` (seconds, default 600, 0 for none) stops drift,
concept or judge if it runs longer (downstream tasks then run without its result, and the run's total is a
lower bound, marked AT LEAST); ``MODELWATCH_BENCH_SCALE_PROFILE`` picks the tasks re-run under
cProfile ("0": none; default: the two slowest that finished).

Also written: ``bench/scale_details.json`` (every stage's result, the timed parts inside the
slow stages, the alternative's breakdown, the load average) and ``bench/scale_profile.txt``
(cProfile of the slowest stages on the largest day run, re-run after the timed run).
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
from dataclasses import dataclass, field
from datetime import date
from io import StringIO
from pathlib import Path
from typing import Any

from bench.common import Record, suite_helpers

SUITE = "scale"
ROOT = Path(__file__).resolve().parents[1]
DETAILS = Path(__file__).resolve().parent / "scale_details.json"
PROFILE = Path(__file__).resolve().parent / "scale_profile.txt"
ROWS_ENV = "MODELWATCH_BENCH_SCALE_ROWS"
SIZES: dict[str, list[int]] = {"small": [100_000], "full": [1_000_000, 10_000_000]}
TARGETS: dict[int, tuple[str, str]] = {1_000_000: ("<= 90 s", "<= 2.5 GiB"), 10_000_000: ("<= 12 min", "<= 4 GiB")}
RUN_LIMIT_S = 15 * 60  # do not run a day projected to take longer than this ...
RUN_LIMIT_MIB = 8 * 1024  # ... or to need more memory than this
MODEL = "support-bot-v3"
BASELINE_DAY = date(2026, 11, 3)
DAY = date(2026, 11, 4)
SEED = 20_261_104
STAGES = ["plan_shards", "check_shard", "extract", "validate", "profile", "drift", "concept", "judge", "experiments", "publish"]
SHARD_WIDTH = 2  # check_shard tasks at once: the fan-out on the 2 cores (a worker with concurrency 2)
SHARD_BYTES = 24 * 2**20  # defaults.shard_bytes in the benchmark's config: a 1M-request day (46 MiB of JSONL.gz, 33 MiB of Parquet) is 2 shards, one per core
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
FORMATS = {"jsonl.gz": "jsonl", "parquet": "parquet"}  # format -> prefix name
ALT_NUMERICAL = ["latency_ms", "prompt_tokens", "completion_tokens"]
ALT_CATEGORICAL = ["metadata.topic", "metadata.locale", "status"]
PROFILE_STAGES = 2  # cProfile this many of the slowest stages
PROFILE_ENV = "MODELWATCH_BENCH_SCALE_PROFILE"  # "0": no cProfile re-runs; "extract,validate": those tasks; unset: the slowest that finished
TIMEOUT_ENV = "MODELWATCH_BENCH_SCALE_TASK_TIMEOUT"  # seconds; stops an optional task that runs longer (its time becomes a lower bound)
DEFAULT_TASK_TIMEOUT_S = 600.0  # the judge scores every golden-set row of the day: ~20 min at 1M requests today
OPTIONAL_TASKS = {"drift", "concept", "judge"}  # their results are optional for experiments and publish

log, record = suite_helpers(SUITE)


def label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# -- child processes ---------------------------------------------------------------------------------------


@dataclass
class TaskRun:
    """One task process: its wall seconds, peak RSS, in-call and import seconds, timed parts and result."""

    task: str
    wall: float
    peak_mib: float
    seconds: float
    import_seconds: float
    result: Any
    parts: dict[str, float] = field(default_factory=dict)
    timed_out: bool = False


def child_env(config: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
           "AWS_ACCESS_KEY_ID": "modelwatch", "AWS_SECRET_ACCESS_KEY": "modelwatch", "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("MODELWATCH_EVIDENTLY_WORKSPACE", None)  # no workspace writes: the report and snapshot still go to S3
    if config is not None:
        env["MODELWATCH_CONFIG"] = str(config)
    return env


def task_timeout(task: str) -> float | None:
    """Seconds after which an optional task (its result is optional downstream) is stopped; None: no limit."""
    if task not in OPTIONAL_TASKS:
        return None
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_TASK_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds (0: no limit), got {value!r}") from None
    return seconds if seconds > 0 else None


def run_task(task: str, request: dict[str, Any], workdir: Path, profile: Path | None = None, imports_only: bool = False,
             name: str | None = None) -> TaskRun:
    """Run ``bench.scale_stage`` for ``task`` in a fresh interpreter; its wall time and peak RSS from ``wait4``.

    An optional task still running after ``task_timeout(task)`` seconds is killed: its wall time
    is then a lower bound, its result ``{"outcome": "timed_out"}`` (downstream tasks treat it as absent).
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
        raise RuntimeError(f"task {task} failed (exit status {code}); its traceback is printed above")
    payload = json.loads(out.read_text())
    return TaskRun(task, wall, usage.ru_maxrss / 1024, payload["seconds"], payload["import_seconds"], payload["result"], payload.get("parts", {}))


# -- the world ---------------------------------------------------------------------------------------------


@dataclass
class World:
    """One format's config (its own logs and reports prefixes) on the shared S3 server."""

    fmt: str
    config: Path
    logs_uri: str
    reports_uri: str


def config_data(logs_uri: str, reports_uri: str, serving_bucket: str) -> dict[str, Any]:
    """The bundled config reduced to the LLM model, its baseline window the baseline day, on the benchmark's buckets."""
    import yaml
    from modelwatch.config import DEFAULT_CONFIG_PATH

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["defaults"].update(logs_uri=logs_uri, reports_uri=reports_uri, labels_uri=logs_uri.replace("/inference", "/labels"))
    data["defaults"].pop("pushgateway_url", None)
    data["defaults"]["shard_bytes"] = SHARD_BYTES
    model = next(m for m in data["models"] if m["id"] == MODEL)
    model["baseline"] = {"window": {"start": BASELINE_DAY.isoformat(), "end": BASELINE_DAY.isoformat()}}
    if model.get("rollback"):
        model["rollback"]["uri"] = f"s3://{serving_bucket}/routing/{MODEL}.json"
    data["models"] = [model]
    return data


def make_worlds(client, tag: str, workdir: Path) -> dict[str, World]:
    import yaml
    from modelwatch.config import load_config
    from modelwatch.storage.s3 import ensure_bucket

    buckets = {kind: f"scale-{tag}-{kind}" for kind in ("logs", "reports", "serving")}
    for bucket in buckets.values():
        ensure_bucket(client, bucket)
    worlds = {}
    for fmt, name in FORMATS.items():
        logs_uri, reports_uri = f"s3://{buckets['logs']}/{name}/inference", f"s3://{buckets['reports']}/{name}/reports"
        path = workdir / f"modelwatch-{name}.yaml"
        path.write_text(yaml.safe_dump(config_data(logs_uri, reports_uri, buckets["serving"])))
        load_config(path)  # fail here, not in a task, if the derived config is invalid
        worlds[fmt] = World(fmt, path, logs_uri, reports_uri)
    return worlds


def copy_prefix(client, source_uri: str, target_uri: str) -> int:
    """Server-side copy of every object under ``source_uri`` to the same relative key under ``target_uri``."""
    from modelwatch.storage.s3 import list_objects, split_uri

    copied = 0
    for uri, _ in list_objects(client, source_uri):
        bucket, key = split_uri(uri)
        target_bucket, target_key = split_uri(target_uri.rstrip("/") + uri[len(source_uri.rstrip("/")):])
        client.copy_object(CopySource={"Bucket": bucket, "Key": key}, Bucket=target_bucket, Key=target_key)
        copied += 1
    return copied


# -- one day size ------------------------------------------------------------------------------------------


def daily_run(world: World, endpoint: str, workdir: Path) -> dict[str, TaskRun]:
    """The DAG's tasks in order, each in its own process, results passed on like XCom; the shards ``SHARD_WIDTH`` at a time."""
    results: dict[str, Any] = {}
    runs: dict[str, TaskRun] = {}
    for task in STAGES:
        if task == "check_shard":
            runs[task] = run_shards(world, endpoint, results["shards"], workdir)
        else:
            runs[task] = run_task(task, task_request(world, endpoint, task, results), workdir)
        results[OUTPUT_NAME[task]] = runs[task].result
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(runs[task].parts.items(), key=lambda kv: -kv[1]))
        log(f"{world.fmt} {task}: {runs[task].wall:.1f} s wall (call {runs[task].seconds:.1f} s, imports {runs[task].import_seconds:.1f} s), "
            f"peak {runs[task].peak_mib:.0f} MiB{'; ' + parts if parts else ''}")
    return runs


BRANCHES = ["drift", "judge", "concept", "profile"]  # after validate, independent of each other: longest first


@dataclass
class ScheduledRun:
    """The daily run as Airflow runs it with ``SHARD_WIDTH`` worker slots: wall, and the peak RSS of tasks running together."""

    wall: float
    peak_bound_mib: float  # the largest sum of the peaks of tasks that overlapped (their peaks may not have coincided)
    spans: list[tuple[str, float, float, float]]  # task, start, end, peak MiB


def scheduled_run(client, world: World, endpoint: str, workdir: Path) -> ScheduledRun:
    """The same tasks with the DAG's parallelism: the shards, then the four branches after validate, ``SHARD_WIDTH`` at a time.

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
            done = run_shards(world, endpoint, results["shards"], workdir)
            peak = min(SHARD_WIDTH, len(results["shards"])) * done.peak_mib
        else:
            done = run_task(task, task_request(world, endpoint, task, results), workdir, name=f"scheduled-{task}")
            peak = done.peak_mib
        results[OUTPUT_NAME[task]] = done.result
        spans.append((task, began, time.perf_counter() - start, peak))

    for task in ("plan_shards", "check_shard", "extract", "validate"):
        run(task)
    with ThreadPoolExecutor(max_workers=SHARD_WIDTH) as pool:
        list(pool.map(run, BRANCHES))
    for task in ("experiments", "publish"):
        run(task)
    wall = time.perf_counter() - start
    bound = max(sum(p for _, s, e, p in spans if s <= began < e) for _, began, _, _ in spans)
    log(f"{world.fmt} scheduled on {SHARD_WIDTH} slots: {wall:.1f} s wall, peak of tasks running together <= {bound:.0f} MiB")
    return ScheduledRun(wall, bound, spans)


def run_shards(world: World, endpoint: str, shards: list[dict[str, Any]], workdir: Path) -> TaskRun:
    """Every ``check_shard`` task, ``SHARD_WIDTH`` processes at a time: wall from the first start to the last end, the largest peak."""
    from concurrent.futures import ThreadPoolExecutor

    def one(shard: dict[str, Any]) -> TaskRun:
        request = {**task_request(world, endpoint, "check_shard", {}), "shard": shard}
        return run_task("check_shard", request, workdir, name=f"check_shard-{shard['shard']}")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SHARD_WIDTH) as pool:
        done = list(pool.map(one, shards))
    parts: dict[str, float] = {}
    for run in done:
        for key, seconds in run.parts.items():
            parts[key] = parts.get(key, 0.0) + seconds
    log(f"{world.fmt} check_shard: {len(done)} shards, " + ", ".join(f"{r.wall:.1f} s/{r.peak_mib:.0f} MiB" for r in done))
    return TaskRun("check_shard", time.perf_counter() - start, max(r.peak_mib for r in done), sum(r.seconds for r in done),
                   sum(r.import_seconds for r in done), [r.result for r in done], parts)


def alternative_run(world: World, endpoint: str, workdir: Path) -> TaskRun:
    from modelwatch.core.partition import Partition

    request = {"endpoint": endpoint, "current_prefix": Partition(MODEL, DAY).path(world.logs_uri),
               "reference_prefix": Partition(MODEL, BASELINE_DAY).path(world.logs_uri), "numerical": ALT_NUMERICAL, "categorical": ALT_CATEGORICAL}
    run = run_task("alternative", request, workdir)
    r = run.result
    log(f"{world.fmt} alternative: {run.wall:.1f} s wall (read {r['read_s']:.1f}, import {r['import_evidently_s']:.1f}, "
        f"run {r['evidently_run_s']:.1f}, html {r['evidently_html_s']:.1f}), peak {run.peak_mib:.0f} MiB")
    return run


@dataclass
class SizeResult:
    rows: int
    generation_s: float
    data_bytes: dict[str, int]
    baseline: TaskRun
    runs: dict[str, dict[str, TaskRun]]
    alternatives: dict[str, TaskRun]
    load: dict[str, float]
    embedding: dict[str, Any]
    s3_peak_mib: float | None
    scheduled: dict[str, ScheduledRun] = field(default_factory=dict)
    profile: str = ""


def measure_size(rows: int, workdir: Path, alternative: bool = True) -> SizeResult:
    """Generate the two days of ``rows`` requests, build the baseline, run the daily tasks and the alternative in each format."""
    from modelwatch.runtime.localstack import LocalS3
    from modelwatch.storage.s3 import get_json, make_client

    from bench.scale_data import DaySpec, write_day

    tag = label(rows).lower()
    server = LocalS3(log=workdir / "s3.log").start()
    try:
        client = make_client(endpoint_url=server.endpoint)
        worlds = make_worlds(client, tag, workdir)
        cfg_weights = {"control": 0.9, "treatment": 0.1}
        targets = {fmt: w.logs_uri for fmt, w in worlds.items()}
        load = {"start": load_average()}
        start = time.perf_counter()
        data_bytes: dict[str, int] = dict.fromkeys(targets, 0)
        for day in (BASELINE_DAY, DAY):
            written = write_day(server.endpoint, targets, DaySpec(MODEL, day, rows, SEED, "exp-042", cfg_weights))
            for fmt, size in written["bytes"].items():
                data_bytes[fmt] += size
        generation = time.perf_counter() - start
        log(f"{label(rows)}: generated 2 days x {rows:,} requests in {generation:.1f} s: "
            + ", ".join(f"{fmt} {size / 2**20:.0f} MiB" for fmt, size in data_bytes.items()))

        jsonl, parquet = worlds["jsonl.gz"], worlds["parquet"]
        baseline = run_task("baseline", {"config": str(jsonl.config), "endpoint": server.endpoint, "model_id": MODEL,
                                         "start": BASELINE_DAY.isoformat(), "end": BASELINE_DAY.isoformat()}, workdir)
        log(f"{label(rows)}: baseline built in {baseline.wall:.1f} s, peak {baseline.peak_mib:.0f} MiB")
        copy_prefix(client, f"{jsonl.reports_uri}/_baselines", f"{parquet.reports_uri}/_baselines")

        runs, alternatives, embedding, scheduled = {}, {}, {}, {}
        for fmt, world in worlds.items():
            load[f"{fmt} start"] = load_average()
            runs[fmt] = daily_run(world, server.endpoint, workdir)
            scheduled[fmt] = scheduled_run(client, world, server.endpoint, workdir)
            drift_uri = runs[fmt]["drift"].result.get("drift_uri")
            if drift_uri:
                embedding[fmt] = [{k: e.get(k) for k in ("column", "n_reference", "n_current", "p_value", "drift", "cache")}
                                  for e in get_json(client, drift_uri).get("embedding", [])]
            if alternative:
                alternatives[fmt] = alternative_run(world, server.endpoint, workdir)
            load[f"{fmt} end"] = load_average()
        s3_peak = _peak_mib_of(server.proc.pid) if server.proc else None
        result = SizeResult(rows, generation, data_bytes, baseline, runs, alternatives, load, embedding, s3_peak, scheduled)
        if os.environ.get(PROFILE_ENV, "1") != "0":
            result.profile = profile_slowest(result, worlds["jsonl.gz"], server.endpoint, workdir)
    finally:
        server.stop()
    return result


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


# -- projection, profiling, records ------------------------------------------------------------------------


def import_rss(workdir: Path) -> dict[str, TaskRun]:
    """Each task's process with its imports only: the part of its time and memory that does not grow with the day."""
    return {task: run_task(task, {}, workdir, imports_only=True) for task in STAGES}


def project(result: SizeResult, base: dict[str, TaskRun], rows: int) -> dict[str, dict[str, float]]:
    """Wall and peak RSS of a day of ``rows`` requests from the measured day, per format.

    Per task: imports and the timed fixed-size parts (embedding, MMD, the Evidently report on its
    capped sample) stay; the rest of the call scales linearly with the rows; memory above the
    task's import-only RSS scales linearly. Linear is the optimistic side for sorts and joins.
    """
    factor = rows / result.rows
    out = {}
    for fmt, runs in result.runs.items():
        wall, peak = 0.0, 0.0
        for task, run in runs.items():
            if task == "check_shard":  # shards run side by side: their wall, not their summed calls, grows with the day
                wall += run.wall * factor
                peak = max(peak, run.peak_mib)  # a shard's size is set by defaults.shard_bytes, not by the day
                continue
            fixed = sum(v for k, v in run.parts.items() if k in FIXED_PARTS)
            overhead = run.wall - run.seconds
            wall += overhead + fixed + (run.seconds - fixed) * factor
            floor = base[task].peak_mib if task in base else 0.0
            peak = max(peak, floor + max(run.peak_mib - floor, 0.0) * factor)
        out[fmt] = {"wall_s": wall, "peak_mib": peak}
    return out


FIXED_PARTS = {"EmbeddingCache.get_or_embed", "mmd_test", "build_report", "JudgeRunner.run"}  # sized by samples, not by the day


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


def size_records(result: SizeResult) -> list[Record]:
    name = label(result.rows)
    time_target, memory_target = TARGETS.get(result.rows, (None, None))
    out = [
        record(f"{name}: generate 2 days (baseline + monitored) in JSONL.gz and Parquet, 2 processes", "wall", round(result.generation_s, 1), "s"),
        *[record(f"{name}: stored size of 2 days, {fmt}", "size", round(size / 2**20, 1), "MiB") for fmt, size in result.data_bytes.items()],
        record(f"{name}: build baseline from 1 day (read, validate, profile, sample, embed {_embedded(result.baseline)} texts)", "wall",
               round(result.baseline.wall, 1), "s"),
        record(f"{name}: build baseline", "peak_rss", round(result.baseline.peak_mib), "MiB"),
    ]
    for fmt, runs in result.runs.items():
        total = sum(r.wall for r in runs.values())
        peak = max(r.peak_mib for r in runs.values())
        alt = result.alternatives.get(fmt)
        alt_name = "pandas read + Evidently DataDriftPreset (whole day vs whole baseline day, HTML saved)"
        load = f"load avg {result.load.get(f'{fmt} start')}-{result.load.get(f'{fmt} end')}"
        bound = "AT LEAST: " if any(r.timed_out for r in runs.values()) else ""
        for task, run in runs.items():
            how = "KILLED at the task timeout, a lower bound" if run.timed_out else f"call {run.seconds:.1f} s, imports {run.import_seconds:.1f} s"
            out.append(record(f"{name} {fmt}: {task} ({run.wall / total:.0%} of the run; {how})", "wall", round(run.wall, 2), "s"))
            out.append(record(f"{name} {fmt}: {task}", "peak_rss", round(run.peak_mib), "MiB"))
        shards = len(runs["check_shard"].result)
        out.append(record(f"{name} {fmt}: {bound}end-to-end daily run, {len(runs)} tasks in sequence, {shards} shards {SHARD_WIDTH} at a time ({load})",
                          "wall", round(total, 1), "s",
                          alt_name if alt else None, round(alt.wall, 1) if alt else None, time_target))
        out.append(record(f"{name} {fmt}: end-to-end daily run, largest task peak", "peak_rss", round(peak), "MiB",
                          alt_name if alt else None, round(alt.peak_mib) if alt else None, memory_target))
        sched = result.scheduled.get(fmt)
        if sched:
            out.append(record(f"{name} {fmt}: {bound}end-to-end daily run as scheduled on {SHARD_WIDTH} worker slots (shards, then "
                              f"{', '.join(BRANCHES)} {SHARD_WIDTH} at a time)", "wall", round(sched.wall, 1), "s",
                              alt_name if alt else None, round(alt.wall, 1) if alt else None, time_target))
            out.append(record(f"{name} {fmt}: as scheduled, peak RSS of the tasks running together (upper bound: sum of their peaks)",
                              "peak_rss", round(sched.peak_bound_mib), "MiB", target=memory_target))
        if alt:
            r = alt.result
            out.append(record(f"{name} {fmt}: alternative = read {r['read_s']:.1f} s + Evidently import {r['import_evidently_s']:.1f} s"
                              f" + run {r['evidently_run_s']:.1f} s + HTML {r['evidently_html_s']:.1f} s ({r['rows_current']:,} vs {r['rows_reference']:,} rows)",
                              "wall", round(alt.wall, 1), "s"))
        valid = runs["validate"].result
        out.append(record(f"{name} {fmt}: rows valid of rows read (the generated day is clean)", "rows_valid", valid["rows_valid"], "rows",
                          target=f"{valid['rows_read']}/{valid['rows_read']}"))
    if result.s3_peak_mib:
        out.append(record(f"{name}: local S3 server (moto, holds every object in memory; not part of the run)", "peak_rss", round(result.s3_peak_mib), "MiB"))
    return out


def _embedded(run: TaskRun) -> int:
    return sum((run.result.get("embeddings") or {}).values()) if isinstance(run.result, dict) else 0


def projection_records(rows: int, measured: SizeResult, projected: dict[str, dict[str, float]], ran: bool) -> list[Record]:
    time_target, memory_target = TARGETS.get(rows, (None, None))
    why = "run as well" if ran else f"not run: projected over {RUN_LIMIT_S // 60} min or {RUN_LIMIT_MIB // 1024} GiB"
    out = []
    for fmt, p in projected.items():
        case = f"{label(rows)} {fmt}: PROJECTED from the {label(measured.rows)} run ({why})"
        out.append(record(f"{case}, end-to-end", "wall", round(p["wall_s"]), "s", target=time_target))
        out.append(record(f"{case}, largest task peak", "peak_rss", round(p["peak_mib"]), "MiB", target=memory_target))
    return out


def details(result: SizeResult, projected: dict[int, Any]) -> dict[str, Any]:
    def task(run: TaskRun) -> dict[str, Any]:
        return {"timed_out": run.timed_out, "wall_s": round(run.wall, 2), "call_s": round(run.seconds, 2), "import_s": round(run.import_seconds, 2),
                "peak_rss_mib": round(run.peak_mib), "parts_s": {k: round(v, 2) for k, v in run.parts.items()}, "result": run.result}

    return {"rows": result.rows, "generation_s": round(result.generation_s, 1), "data_bytes": result.data_bytes, "load_average": result.load,
            "baseline": task(result.baseline), "runs": {fmt: {t: task(r) for t, r in runs.items()} for fmt, runs in result.runs.items()},
            "alternatives": {fmt: task(r) for fmt, r in result.alternatives.items()}, "embedding": result.embedding,
            "s3_server_peak_mib": result.s3_peak_mib, "projections": projected,
            "scheduled": {fmt: {"wall_s": round(r.wall, 1), "peak_bound_mib": round(r.peak_bound_mib),
                                "spans": [{"task": t, "start_s": round(b, 1), "end_s": round(e, 1), "peak_mib": round(m)} for t, b, e, m in r.spans]}
                          for fmt, r in result.scheduled.items()}}


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
        last: SizeResult | None = None
        for rows in sizes:
            projected = None
            if last is not None:
                projected = project(last, base, rows)
                worst = max(projected.values(), key=lambda p: p["wall_s"])
                if worst["wall_s"] > RUN_LIMIT_S or max(p["peak_mib"] for p in projected.values()) > RUN_LIMIT_MIB:
                    log(f"{label(rows)}: projected {worst['wall_s']:.0f} s / {max(p['peak_mib'] for p in projected.values()):.0f} MiB: not run")
                    records += projection_records(rows, last, projected, ran=False)
                    detail["sizes"][label(rows)] = {"projected_from": last.rows, "projection": projected, "ran": False}
                    continue
            log(f"{label(rows)}: measuring")
            result = measure_size(rows, workdir)
            records += size_records(result)
            if projected is not None:
                records += projection_records(rows, last, projected, ran=True)
            detail["sizes"][label(rows)] = details(result, {"from_previous": projected} if projected else {})
            last = result
        if last is not None and last.profile:
            PROFILE.write_text(last.profile)
    DETAILS.write_text(json.dumps(detail, indent=2, default=str) + "\n")
    return records
