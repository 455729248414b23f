"""Peak memory of a baseline build over a generated window: ``python -m bench.baseline_memory [--days 3] [--rows 100000]``.

Generates ``--days`` days of ``--rows`` support-assistant requests each (``runtime.generate.llm_day``,
written through the serving client as one JSONL.gz file per hour) on a local S3 server, then builds
the window's baseline in a fresh Python process, as the baseline DAG's task runs, and prints that
process's wall time and peak RSS (``os.wait4``'s ``ru_maxrss``). No embeddings: the figure is the
read, validate, profile and sample path alone.

``--code DIR`` builds with the library under ``DIR`` (its ``modelwatch`` package) instead of this
checkout's; repeat it to compare versions of the build on the same generated window.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "support-bot-v3"
START = date(2026, 11, 1)


def config_data(logs_uri: str, reports_uri: str, days: int) -> dict[str, Any]:
    """The bundled config reduced to the LLM model, its baseline window the generated days, on the benchmark's buckets."""
    import yaml
    from modelwatch.config import DEFAULT_CONFIG_PATH

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["defaults"].update(logs_uri=logs_uri, reports_uri=reports_uri, labels_uri=logs_uri.replace("/inference", "/labels"))
    data["defaults"].pop("pushgateway_url", None)
    model = next(m for m in data["models"] if m["id"] == MODEL)
    model["baseline"] = {"window": {"start": START.isoformat(), "end": (START + timedelta(days - 1)).isoformat()}}
    if model.get("rollback"):
        model["rollback"]["uri"] = f"{reports_uri.rsplit('/', 1)[0]}/routing/{MODEL}.json"
    data["models"] = [model]
    return data


def generate(endpoint: str, workdir: Path, days: int, rows: int) -> Path:
    """Write the window's traffic and its config; returns the config's path."""
    import yaml
    from modelwatch.config import load_config
    from modelwatch.runtime.generate import ExperimentPlan, Scenario, llm_day, write_day
    from modelwatch.storage.s3 import ensure_bucket, make_client

    client = make_client(endpoint_url=endpoint)
    for bucket in ("baseline-memory-logs", "baseline-memory-reports"):
        ensure_bucket(client, bucket)
    logs_uri = "s3://baseline-memory-logs/inference"
    path = workdir / "modelwatch.yaml"
    path.write_text(yaml.safe_dump(config_data(logs_uri, "s3://baseline-memory-reports/reports", days)))
    load_config(path)
    for offset in range(days):
        day = START + timedelta(offset)
        write_day(client, logs_uri, MODEL, day, llm_day(MODEL, day, rows, 7, Scenario(), ExperimentPlan()), "llm")
    return path


def build(request: dict[str, Any]) -> dict[str, Any]:
    """The child process: build the baseline of the request's window, without embeddings."""
    from modelwatch.baseline.build import build_baseline
    from modelwatch.config import load_config
    from modelwatch.storage.s3 import make_client

    cfg = load_config(Path(request["config"]))
    window = cfg.model(MODEL).baseline.window
    start, end = date.fromisoformat(str(window.start)), date.fromisoformat(str(window.end))
    manifest = build_baseline(make_client(endpoint_url=request["endpoint"]), cfg, MODEL, start, end, request["version"],
                              progress=lambda line: print(f"    {line}", flush=True))
    return {k: manifest[k] for k in ("rows_used", "reference_rows", "days")}


def measure(request: dict[str, Any], code: str | None, workdir: Path) -> dict[str, Any]:
    """Run ``build`` in a fresh interpreter (with ``code`` first on its path); its wall seconds, peak RSS and result."""
    spec, out = workdir / f"{request['version']}.json", workdir / f"{request['version']}.out.json"
    spec.write_text(json.dumps(request))
    env = dict(os.environ)
    if code:
        env["PYTHONPATH"] = os.pathsep.join([code, str(ROOT), env.get("PYTHONPATH", "")])
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.baseline_memory", "--build", str(spec), "--out", str(out)], cwd=ROOT, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"baseline build with {code or 'this checkout'} failed; its traceback is printed above")
    return {"code": code or "this checkout", "wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024), **json.loads(out.read_text())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000, help="requests per day")
    parser.add_argument("--code", action="append", default=[], help="a directory holding the modelwatch package to build with (repeatable)")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.build:
        args.out.write_text(json.dumps(build(json.loads(args.build.read_text()))))
        return 0
    from modelwatch.runtime.localstack import LocalS3

    with tempfile.TemporaryDirectory(prefix="modelwatch-baseline-memory-") as tmp:
        workdir = Path(tmp)
        server = LocalS3(log=workdir / "s3.log").start()
        try:
            started = time.perf_counter()
            config = generate(server.endpoint, workdir, args.days, args.rows)
            print(f"generated {args.days} days x {args.rows:,} requests in {time.perf_counter() - started:.0f} s", flush=True)
            for i, code in enumerate(args.code or [None]):
                result = measure({"config": str(config), "endpoint": server.endpoint, "version": f"bench-{i}"}, code, workdir)
                print(json.dumps({k: v for k, v in result.items() if k != "days"}), flush=True)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
