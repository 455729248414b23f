"""One task of the "scale" benchmark, run in a fresh Python process as an Airflow worker runs a task.

``python -m bench.scale_stage --task NAME --request request.json --out out.json [--profile file.prof]``

The request holds the config path, the S3 endpoint, the partition and the earlier stages'
results (what XCom carries between the DAG's tasks). The process loads the config and makes
its S3 client like a task does (``dags/common/monitoring.py``), calls the library function,
and writes ``{"result", "seconds", "import_seconds", "parts", "s3"}`` (``seconds``: the call
alone, config and client included; ``import_seconds``: importing the stage's modules;
``parts``: seconds inside the functions of ``TIMED_PARTS`` and, in a shard task, inside each
stage's summary ``update`` and ``dump``; ``s3``: the task's S3 requests per operation with
the bytes sent and received, counted by botocore event hooks on its client). The parent
measures the process's wall time and peak RSS (``os.wait4``).

Tasks: ``check_shard`` calls ``modelwatch.runner.check_shard`` as the DAG's task does, so it
builds the per-shard summaries of every summarising stage (``modelwatch.summaries``).

Tasks: the pipeline stages (``plan_shards``, ``check_shard`` (one shard, from the request), ``extract``, ``validate``, ``profile``, ``drift``, ``concept``,
``judge``, ``experiments``, ``publish``), ``baseline`` (``baseline.build_baseline`` with the
embedding cache, like ``modelwatch build-baseline``) and ``alternative`` (what a user would
write without modelwatch: pandas reads the whole day and the baseline window from S3, Evidently's
``DataDriftPreset`` compares them and saves its HTML report).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

STAGE_IMPORTS = {
    "plan_shards": ["modelwatch.ingest.stage", "modelwatch.ingest.shards"],
    "check_shard": ["modelwatch.runner", "modelwatch.summaries", "modelwatch.ingest.stage", "modelwatch.ingest.read", "modelwatch.ingest.readers", "modelwatch.ingest.columnar", "modelwatch.ingest.columnar_arrow",
                    "modelwatch.ingest.validation"],
    "extract": ["modelwatch.ingest.stage"],
    "validate": ["modelwatch.ingest.validate_stage", "modelwatch.ingest.validation"],
    "profile": ["modelwatch.profile.stage", "modelwatch.profile.metrics", "modelwatch.profile.limits"],
    "drift": ["modelwatch.drift.stage", "modelwatch.baseline.store", "modelwatch.drift.families", "modelwatch.embeddings", "modelwatch.drift.mmd",
              "modelwatch.drift.evidently_report"],
    "concept": ["modelwatch.concept.stage", "modelwatch.concept.analysis", "modelwatch.estimation.reference", "modelwatch.estimation.estimate"],
    "judge": ["modelwatch.judge.stage"],
    "experiments": ["modelwatch.experiments.stage", "modelwatch.experiments.decision", "modelwatch.experiments.data"],
    "publish": ["modelwatch.publish.stage", "modelwatch.publish.page"],
    "baseline": ["modelwatch.baseline.build", "modelwatch.embeddings"],
    "alternative": ["pandas"],
}


# Functions timed inside each task (cumulative seconds per name, nested calls counted in each): where a stage's time goes.
# Patched on the module (or class) the stage looks them up in at call time; the library is not changed.
TIMED_PARTS: dict[str, list[tuple[str, str]]] = {
    "plan_shards": [],
    "check_shard": [("modelwatch.ingest.read", "get_bytes"), ("modelwatch.ingest.readers", "batch_tables"), ("modelwatch.ingest.columnar_json", "coerce_batch"),
                    ("modelwatch.ingest.columnar_arrow", "coerce_arrow"), ("modelwatch.ingest.validation", "StreamValidator.check"),
                    ("modelwatch.ingest.validation", "GxRunner.run"), ("modelwatch.storage.s3", "ParquetSink.close")],
    "extract": [],
    "validate": [("modelwatch.ingest.shards", "cross_shard_repeats"), ("modelwatch.ingest.validate_stage", "_merge_quarantine")],
    "profile": [("modelwatch.profile.stage", "read_valid"), ("modelwatch.profile.metrics", "to_frame"), ("modelwatch.profile.metrics", "compute_metrics"),
                ("modelwatch.profile.stage", "put_table")],
    "drift": [("modelwatch.baseline.store", "load_baseline"), ("modelwatch.drift.stage", "read_valid"), ("modelwatch.baseline.columns", "drift_frame"),
              ("modelwatch.baseline.store", "coerce_kinds"), ("modelwatch.drift.families", "analyze"), ("modelwatch.drift.families", "sample_texts"),
              ("modelwatch.embeddings", "EmbeddingCache.get_or_embed"), ("modelwatch.drift.mmd", "mmd_test"), ("modelwatch.drift.evidently_report", "build_report")],
    "concept": [("modelwatch.concept.stage", "read_valid"), ("modelwatch.concept.analysis", "analyze_concept_drift")],
    "judge": [("modelwatch.judge.stage", "read_valid"), ("modelwatch.judge.sampling", "stratified_sample"), ("modelwatch.judge.runner", "JudgeRunner.run"),
              ("modelwatch.judge.stage", "_shadow_pairwise"), ("modelwatch.judge.reference_metrics", "reference_scores"),
              ("modelwatch.judge.estimates", "estimate_judgments")],
    "experiments": [("modelwatch.experiments.stage", "read_valid"), ("modelwatch.experiments.data", "day_record"), ("modelwatch.experiments.decision", "shadow_comparison"),
                    ("modelwatch.experiments.decision", "analyze_experiment")],
    "publish": [("modelwatch.publish.stage", "_baseline_comparison"), ("modelwatch.publish.stage", "_publish_pages")],
    "baseline": [("modelwatch.baseline.build", "spill_valid_day"), ("modelwatch.baseline.columns", "drift_frame"), ("modelwatch.embeddings", "EmbeddingCache.get_or_embed")],
    "alternative": [],
}


MERGE_PART = "summaries.merged"  # a stage task's merge of its shard summaries (every stage task is timed for it)


def _timed(original: Any, key: str, totals: dict[str, float]) -> Any:
    import functools

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

    return wrapper


def time_parts(task: str) -> dict[str, float]:
    """Wrap ``TIMED_PARTS[task]`` (and ``summaries.merged``) so each adds its wall seconds to the returned dict, keyed by attribute path.

    A module-level function is replaced on its module and wherever a loaded modelwatch module bound
    it by ``from ... import``; a name the library no longer has is skipped (the stages change).
    """
    import importlib

    totals: dict[str, float] = {}
    for module, path in [*TIMED_PARTS[task], ("modelwatch.summaries", "merged")]:
        owner: Any = importlib.import_module(module)
        *classes, name = path.split(".")
        try:
            for attribute in classes:
                owner = getattr(owner, attribute)
            original = getattr(owner, name)
        except AttributeError:
            continue
        key = MERGE_PART if path == "merged" else path
        wrapper = _timed(original, key, totals)
        setattr(owner, name, wrapper)
        if not classes:
            for loaded in list(sys.modules.values()):
                if getattr(loaded, "__name__", "").startswith("modelwatch.") and getattr(loaded, name, None) is original:
                    setattr(loaded, name, wrapper)
    if task == "check_shard":
        _time_summaries(totals)
    return totals


def _time_summaries(totals: dict[str, float]) -> None:
    """Time each stage's summary ``update`` and ``dump`` in a shard task (``summary <stage>: update``): the per-shard part of each stage."""
    from modelwatch.summaries import SummaryModule

    original_start = SummaryModule.start

    def start(self: Any, ctx: Any) -> Any:
        summary = original_start(self, ctx)
        if summary is not None:
            for method in ("update", "dump"):
                setattr(summary, method, _timed(getattr(summary, method), f"summary {self.stage}: {method}", totals))
        return summary

    SummaryModule.start = start


class S3Counter:
    """Every S3 request a client sends (retries included) per operation, with the bytes sent and received: botocore event hooks."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.bytes_sent = 0
        self.bytes_received = 0

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.s3", self._sent)
        client.meta.events.register("after-call.s3", self._received)
        return client

    def _sent(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        self.requests[operation] = self.requests.get(operation, 0) + 1
        body = request.body
        if isinstance(body, (bytes, bytearray)):
            self.bytes_sent += len(body)
        elif body is not None:
            self.bytes_sent += int(request.headers.get("Content-Length", 0) or 0)

    def _received(self, http_response: Any, **_: Any) -> None:
        self.bytes_received += int(http_response.headers.get("content-length", 0) or 0)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": sum(self.requests.values()), "by_operation": dict(sorted(self.requests.items())),
                "bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received}


S3 = S3Counter()


def _client(request: dict[str, Any]):
    from modelwatch.storage.s3 import make_client

    return S3.attach(make_client(endpoint_url=request["endpoint"]))


def _config(request: dict[str, Any]):
    from modelwatch.config import load_config

    return load_config(Path(request["config"]))


def run_task(task: str, request: dict[str, Any]) -> Any:
    """Call the library function behind ``task`` with the request's inputs; returns its (JSON-able) result."""
    if task == "alternative":
        return alternative(request)
    cfg, client = _config(request), _client(request)
    inputs = request.get("inputs", {})
    if task == "baseline":
        from modelwatch.baseline.build import build_baseline
        from modelwatch.embeddings import EmbeddingCache

        cache = EmbeddingCache(client, cfg.defaults.reports_uri, backend=cfg.defaults.embedding_backend)
        return build_baseline(client, cfg, request["model_id"], date.fromisoformat(request["start"]), date.fromisoformat(request["end"]),
                              progress=lambda line: print(f"    {line}", flush=True), embed_texts=cache)
    if task == "judge":
        from modelwatch.runner import judge

        return judge(client, cfg, inputs["validated"], None)
    from modelwatch.core.partition import Partition
    from modelwatch.ingest.stage import plan_shards
    from modelwatch.runner import check_shard, concept, drift, experiments, extract, profile, publish, validate

    if task == "plan_shards":
        return plan_shards(client, cfg, Partition.from_dict(request["partition"]))
    if task == "check_shard":
        return check_shard(client, cfg, request["shard"])
    if task == "extract":
        return extract(client, cfg, Partition.from_dict(request["partition"]), inputs["checked"])
    if task == "validate":
        return validate(client, cfg, inputs["extracted"])
    if task == "profile":
        return profile(client, cfg, inputs["validated"], "daily")
    if task == "drift":
        return drift(client, cfg, inputs["validated"])
    if task == "concept":
        return concept(client, cfg, inputs["validated"])
    if task == "experiments":
        judged = inputs.get("judged")
        return experiments(client, cfg, inputs["validated"], inputs["profiled"], judged if judged and judged.get("outcome") == "ok" else None)
    if task == "publish":
        return publish(client, cfg, inputs["extracted"], inputs["validated"], inputs["profiled"], {"dag_id": "modelwatch_daily", "run_id": "bench"},
                                inputs.get("drifted"), inputs.get("concepted"), inputs.get("experimented"), inputs.get("judged"))
    raise ValueError(f"unknown task {task!r}; choose from {sorted(STAGE_IMPORTS)}")


# -- the alternative a user would write --------------------------------------------------------------------


def read_day_pandas(client, prefix_uri: str, progress: dict[str, Any]):
    """Every log file under ``prefix_uri`` with pandas (``read_json(lines=True)`` / ``read_parquet``), concatenated, ``metadata`` flattened."""
    import pandas as pd
    from modelwatch.storage.s3 import get_bytes, list_objects

    frames = []
    for uri, _ in list_objects(client, prefix_uri):
        data = io.BytesIO(get_bytes(client, uri))
        if uri.endswith(".parquet"):
            frames.append(pd.read_parquet(data))
        else:
            frames.append(pd.read_json(data, lines=True, compression="gzip" if uri.endswith(".gz") else None))
        progress["rows_read"] = progress.get("rows_read", 0) + len(frames[-1])
        progress["files_read"] = progress.get("files_read", 0) + 1
    frame = pd.concat(frames, ignore_index=True)
    meta = pd.json_normalize(frame.pop("metadata").tolist()).add_prefix("metadata.")
    return frame.join(meta)


def limit_memory(limit_bytes: int | None) -> None:
    """Cap this process's address space (RLIMIT_AS) so an allocation past it fails here, as MemoryError, not on the machine."""
    if limit_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


def alternative(request: dict[str, Any]) -> dict[str, Any]:
    """pandas reads the day and the baseline window whole; Evidently's DataDriftPreset compares them; the HTML report is saved.

    Runs under ``request["memory_limit_bytes"]`` of address space: a MemoryError is the result
    (``outcome: "failed"``, the phase it failed in, the rows read by then), not a crash of the machine.
    """
    os.environ.setdefault("DO_NOT_TRACK", "1")
    limit_memory(request.get("memory_limit_bytes"))
    client = _client(request)
    timings: dict[str, float] = {}
    progress: dict[str, Any] = {"phase": "read"}
    started = time.perf_counter()
    try:
        return _alternative(client, request, timings, progress)
    except MemoryError as exc:
        return {"outcome": "failed", "error": f"{type(exc).__name__}: {exc}"[:300], "failed_at": progress["phase"],
                "rows_read": progress.get("rows_read", 0), "files_read": progress.get("files_read", 0),
                "seconds_to_failure": round(time.perf_counter() - started, 1), "memory_limit_bytes": request.get("memory_limit_bytes"), **timings}


def _alternative(client, request: dict[str, Any], timings: dict[str, float], progress: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    current = read_day_pandas(client, request["current_prefix"], progress)
    reference = read_day_pandas(client, request["reference_prefix"], progress)
    timings["read_s"] = time.perf_counter() - start

    progress["phase"] = "import evidently"
    start = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    timings["import_evidently_s"] = time.perf_counter() - start
    progress["phase"] = "evidently run"
    start = time.perf_counter()
    numerical, categorical = request["numerical"], request["categorical"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    cur = Dataset.from_pandas(current[numerical + categorical], data_definition=definition)
    ref = Dataset.from_pandas(reference[numerical + categorical], data_definition=definition)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(cur, ref)
    timings["evidently_run_s"] = time.perf_counter() - start
    progress["phase"] = "evidently html"
    start = time.perf_counter()
    html = snapshot.get_html_str(as_iframe=False)
    timings["evidently_html_s"] = time.perf_counter() - start
    drifted = [item["config"]["column"] for item in snapshot.dict()["metrics"]
               if item["config"].get("type") == "evidently:metric_v2:ValueDrift" and float(item["value"]) >= float(item["config"]["threshold"])]
    return {"outcome": "ok", "rows_current": len(current), "rows_reference": len(reference), "html_bytes": len(html), "drifted_by_score": drifted,
            **timings}


# -- main --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(STAGE_IMPORTS))
    parser.add_argument("--request", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the call to this file")
    parser.add_argument("--imports-only", action="store_true", help="import the task's modules and stop (its fixed cost)")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(ROOT)]
    request = json.loads(args.request.read_text())
    start = time.perf_counter()
    for module in STAGE_IMPORTS[args.task]:
        __import__(module)
    import_seconds = time.perf_counter() - start
    if args.imports_only:
        args.out.write_text(json.dumps({"result": None, "seconds": 0.0, "import_seconds": import_seconds}))
        return 0
    parts = time_parts(args.task)
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    result = run_task(args.task, request)
    if profiler:
        profiler.disable()
        profiler.dump_stats(str(args.profile))
    seconds = time.perf_counter() - start
    args.out.write_text(json.dumps({"result": result, "seconds": seconds, "import_seconds": import_seconds, "parts": parts, "s3": S3.as_dict()},
                                   default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
