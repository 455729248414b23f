"""The real Prometheus and Pushgateway binaries on free 127.0.0.1 ports, in a temporary directory.

``prometheus_stack(rules_file)`` starts a Pushgateway, then a Prometheus that scrapes it every
second (``honor_labels: true``) and evaluates ``rules_file`` every second; it yields a
``PromStack`` and stops both processes (and their logs stay in the tmp dir until removed).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local test servers
        return resp.read()


@dataclass
class Server:
    """One started binary: its process, base URL and log file."""

    name: str
    process: subprocess.Popen
    url: str
    log: Path

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll ``/-/ready`` until it answers 200; fail with the log tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                http_get(f"{self.url}/-/ready", timeout=1.0)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def start_server(name: str, argv: list[str], port: int, workdir: Path) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
    server = Server(name, process, f"http://127.0.0.1:{port}", log)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def start_pushgateway(workdir: Path) -> Server:
    port = free_port()
    # Debian's build persists to /var/lib/prometheus by default: keep the state in the tmp dir instead
    argv = [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}", f"--persistence.file={workdir / 'pushgateway.data'}"]
    return start_server("pushgateway", argv, port, workdir)


def prometheus_config(gateway: str, rules_file: Path | None, interval: str = "1s") -> dict[str, Any]:
    """A Prometheus config scraping the Pushgateway at ``gateway`` (host:port) and evaluating ``rules_file``."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": "pushgateway", "honor_labels": True, "scrape_interval": interval,
                            "static_configs": [{"targets": [gateway]}]}],
    }
    if rules_file is not None:
        config["rule_files"] = [str(rules_file)]
    return config


def start_prometheus(workdir: Path, gateway: str, rules_file: Path | None) -> Server:
    port = free_port()
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(gateway, rules_file)), encoding="utf-8")
    argv = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"]
    return start_server("prometheus", argv, port, workdir)


@dataclass
class PromStack:
    """A running Pushgateway and the Prometheus scraping it."""

    pushgateway: Server
    prometheus: Server
    workdir: Path

    def api(self, path: str, **params: str) -> Any:
        """GET a Prometheus HTTP API path and return its ``data`` (raises unless status is success)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        body = json.loads(http_get(f"{self.prometheus.url}/api/v1/{path}{query}"))
        if body.get("status") != "success":
            raise RuntimeError(f"{path}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's vector result."""
        return self.api("query", query=promql)["result"]

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]


def wait_for(probe: Callable[[], Any], timeout: float = 30.0, interval: float = 0.5, what: str = "condition") -> Any:
    """Call ``probe`` until it returns something truthy; raise TimeoutError with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout}s (last: {last!r})")


@contextmanager
def prometheus_stack(rules_file: Path | None = None) -> Iterator[PromStack]:
    """Start Pushgateway and Prometheus in a temporary directory; stop both and remove the directory on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="modelwatch-prom-"))
    servers: list[Server] = []
    try:
        gateway = start_pushgateway(workdir)
        servers.append(gateway)
        prometheus = start_prometheus(workdir, gateway.url.removeprefix("http://"), rules_file)
        servers.append(prometheus)
        yield PromStack(gateway, prometheus, workdir)
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def sample_summary(model_id: str = "support-bot-v3", *, hour: int | None = None, decision: str = "continue",
                   guardrail_verdict: str = "non_inferior", error_rate: float = 0.004, n_segment_values: int = 3) -> dict[str, Any]:
    """A run summary shaped like ``pipeline.publish`` writes it, with the knobs the Prometheus tests turn."""
    variants = {"__all__": 12000, "control": 10800, "treatment": 1200}

    def headline(n: int) -> dict[str, float]:
        return {"requests": n, "error_rate": error_rate, "timeout_rate": 0.001, "filter_refusal_rate": 0.01, "latency_p50_ms": 420.0,
                "latency_p95_ms": 1850.0, "latency_p99_ms": 3200.0, "latency_mean_ms": 610.0, "prompt_tokens_mean": 310.5,
                "prompt_tokens_p95": 900.0, "completion_tokens_mean": 180.2, "completion_tokens_p95": 520.0, "tokens_total": n * 490.7,
                "cost_usd_total": n * 0.0021, "cost_per_request_usd": 0.0021, "cost_per_1k_tokens_usd": 0.0043, "quality_score_mean": 0.81}

    def estimate(value: float, half: float, n: int) -> dict[str, float]:
        return {"estimate": value, "ci_low": value - half, "ci_high": value + half, "n": n}

    segments = [{"segment": "metadata.topic", "value": f"topic-{i:02d}", "requests": 1000 - i, "error_rate": 0.003,
                 "latency_p95_ms": 1700.0 + i, "prompt_tokens_mean": 300.0, "cost_usd_total": 2.0} for i in range(n_segment_values)]
    judge_overall = {"judge.helpfulness": estimate(4.1, 0.12, 380), "judge.coherence": estimate(4.4, 0.1, 380),
                     "judge.toxicity_rate": estimate(0.004, 0.004, 380), "judge.hallucination_rate": estimate(0.03, 0.015, 380)}
    return {
        "model_id": model_id,
        "partition": {"model_id": model_id, "dt": "2026-11-20", "hour": hour},
        "outcome": "breach" if decision == "roll_back" else "ok",
        "rows": {"read": 12050, "valid": 12000, "quarantined": 50},
        "metrics": {v: headline(n) for v, n in variants.items()},
        "segments": segments,
        "hard_limits": [{"experiment_id": "exp-042", "metric": "error_rate", "state": "ok", "value": error_rate, "max": 0.02}],
        "breaches": [{"experiment_id": "exp-042", "metric": "error_rate", "reason": "guardrail"}] if decision == "roll_back" else [],
        "drift": {"outcome": "ok", "severity": "medium", "alert_count": 3, "baseline_version": "2026-11-01_2026-11-03", "reason": None,
                  "alerts": [{"family": "features", "column": "latency_ms", "severity": "medium", "effect_method": "wasserstein",
                              "effect": 0.22, "p_adjusted": 1e-5},
                             {"family": "features", "column": "prompt_tokens", "severity": "low", "effect_method": "wasserstein",
                              "effect": 0.11, "p_adjusted": 0.003},
                             {"family": "segment metadata.topic", "segment": "metadata.topic=billing", "column": "latency_ms",
                              "severity": "low", "effect_method": "wasserstein", "effect": 0.12, "p_adjusted": 0.01}]},
        "concept": None,
        "experiments": [{"experiment_id": "exp-042", "decision": decision, "reasons": ["collecting data"], "requests": 54000,
                         "days_remaining": 4, "health_ok": True, "srm_p_value": 0.42,
                         "primary": [{"metric": "judge.helpfulness", "decision": "inconclusive", "p_adjusted": 0.3}],
                         "guardrails": [{"metric": "latency_p99_ms", "verdict": guardrail_verdict, "scale": "relative_lift",
                                         "estimate": 0.01, "lower": -0.02, "upper": 0.04, "margin": 0.05},
                                        {"metric": "error_rate", "verdict": "non_inferior", "scale": "difference",
                                         "estimate": 0.0, "lower": -0.0005, "upper": 0.0005, "margin": 0.001}]}],
        "judge": {"overall": judge_overall, "by_variant": {"control": judge_overall, "treatment": judge_overall},
                  "budget_usd": 5.0, "judged": 380, "failed": 2, "skipped_budget": 0},
    }


def classic_summary_with_estimate(model_id: str = "churn-classifier-v2", estimate: float = 0.78, gap: float = 0.0) -> dict[str, Any]:
    """A classifier's summary whose concept block carries a CBPE estimate and, for an earlier day, its realised value."""
    estimation = {"outcome": "ok", "method": "cbpe", "day": "2026-11-20",
                  "metrics": [{"metric": "accuracy", "estimate": estimate, "lower": estimate - 0.03, "upper": estimate + 0.03,
                               "threshold_lower": 0.72, "threshold_upper": 0.83, "alert": not 0.72 <= estimate <= 0.83}],
                  "latest_realised": {"day": "2026-11-13", "labelled": 800, "metrics": [
                      {"metric": "accuracy", "realised": 0.75 + gap, "estimated_labelled": 0.75, "labelled_lower": 0.72, "labelled_upper": 0.78,
                       "gap": gap, "gap_limit": 0.03, "gap_alert": abs(gap) > 0.03}]}}
    return {**sample_summary(model_id), "concept": {"verdict": "stable", "reason": "", "detections": 0, "evaluated": 800, "estimation": estimation}}
