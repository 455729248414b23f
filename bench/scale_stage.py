"""One task of the "scale" benchmark, run in a fresh Python process as an Airflow worker runs a task.

``python -m bench.scale_stage --task NAME --request request.json --out out.json [--profile file.prof]``

The request holds the config path, the S3 endpoint, the partition and the earlier stages'
results (what XCom carries between the DAG's tasks). The process loads the config and makes
its S3 client like a task does (``dags/common/monitoring.py``), calls the library function,
and writes ``{"result", "seconds", "import_seconds"}`` (``seconds``: the call alone, config
and client included; ``import_seconds``: importing the stage's modules). The parent measures
the process's wall time and peak RSS (``os.wait4``).

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
    "check_shard": ["modelwatch.ingest.stage", "modelwatch.ingest.read", "modelwatch.ingest.readers", "modelwatch.ingest.columnar", "modelwatch.ingest.columnar_arrow",
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


def time_parts(task: str) -> dict[str, float]:
    """Wrap ``TIMED_PARTS[task]`` so each adds its wall seconds to the returned dict (keyed by the attribute path)."""
    import functools
    import importlib

    totals: dict[str, float] = {}
    for module, path in TIMED_PARTS[task]:
        owner: Any = importlib.import_module(module)
        *classes, name = path.split(".")
        for attribute in classes:
            owner = getattr(owner, attribute)
        original = getattr(owner, name)

        def wrapper(*args: Any, __original: Any = original, __key: str = path, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                totals[__key] = totals.get(__key, 0.0) + time.perf_counter() - start

        setattr(owner, name, functools.wraps(original)(wrapper))
    return totals


def _client(request: dict[str, Any]):
    from modelwatch.storage.s3 import make_client

    return make_client(endpoint_url=request["endpoint"])


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

        cache = EmbeddingCache(client, cfg.defaults.reports_uri)
        return build_baseline(client, cfg, request["model_id"], date.fromisoformat(request["start"]), date.fromisoformat(request["end"]),
                              progress=lambda line: print(f"    {line}", flush=True), embed_texts=lambda texts: cache.get_or_embed(texts)[0])
    if task == "judge":
        from modelwatch.runner import judge

        return judge(client, cfg, inputs["validated"], None)
    from modelwatch.core.partition import Partition
    from modelwatch.ingest.stage import check_shard, plan_shards
    from modelwatch.runner import concept, drift, experiments, extract, profile, publish, validate

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


def read_day_pandas(client, prefix_uri: str):
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
    frame = pd.concat(frames, ignore_index=True)
    meta = pd.json_normalize(frame.pop("metadata").tolist()).add_prefix("metadata.")
    return frame.join(meta)


def alternative(request: dict[str, Any]) -> dict[str, Any]:
    """pandas reads the day and the baseline window whole; Evidently's DataDriftPreset compares them; the HTML report is saved."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    client = _client(request)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    current = read_day_pandas(client, request["current_prefix"])
    reference = read_day_pandas(client, request["reference_prefix"])
    timings["read_s"] = time.perf_counter() - start

    start = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    timings["import_evidently_s"] = time.perf_counter() - start
    start = time.perf_counter()
    numerical, categorical = request["numerical"], request["categorical"]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    cur = Dataset.from_pandas(current[numerical + categorical], data_definition=definition)
    ref = Dataset.from_pandas(reference[numerical + categorical], data_definition=definition)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(cur, ref)
    timings["evidently_run_s"] = time.perf_counter() - start
    start = time.perf_counter()
    html = snapshot.get_html_str(as_iframe=False)
    timings["evidently_html_s"] = time.perf_counter() - start
    drifted = [item["config"]["column"] for item in snapshot.dict()["metrics"]
               if item["config"].get("type") == "evidently:metric_v2:ValueDrift" and float(item["value"]) >= float(item["config"]["threshold"])]
    return {"rows_current": len(current), "rows_reference": len(reference), "html_bytes": len(html), "drifted_by_score": drifted, **timings}


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
    args.out.write_text(json.dumps({"result": result, "seconds": seconds, "import_seconds": import_seconds, "parts": parts}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
