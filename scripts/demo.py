"""make demo: ten days of synthetic traffic through a real Airflow, ending in an automatic rollback.

Starts the local S3-compatible server and Airflow (SQLite, LocalExecutor) under .demo/,
both listening on 127.0.0.1 only (Airflow's API for one user with a password new each run),
generates traffic with an input drift, a toxic burst, broken rows and a treatment arm
whose error rate regresses, backfills modelwatch_daily over the ten days, waits for the
scheduler to fire modelwatch_rollback from the guardrail_breach asset, mirrors the
reports to demo_output/ and stops everything it started.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import psutil
from modelwatch.config import load_config
from modelwatch.publish.mirror import mirror_reports
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
from modelwatch.runtime.localstack import PROJECT_ROOT, LocalAirflow, LocalS3
from modelwatch.storage.s3 import ensure_bucket, get_json, list_objects, make_client, split_uri

START = date(2026, 11, 1)
DAYS = 10
DRIFT_DAY = START + timedelta(5)
REGRESSION_DAY = START + timedelta(5)
DEMO_DIR = PROJECT_ROOT / ".demo"
OUTPUT = PROJECT_ROOT / "demo_output"
WORKSPACE = OUTPUT / "evidently"


class PeakMemory(threading.Thread):
    """Samples the summed RSS of this process and all its children."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0
        self.running = True

    def run(self):
        me = psutil.Process()
        while self.running:
            try:
                procs = [me, *me.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.5)


class DailyProgress:
    """The backfill's progress as it goes: runs finished with the elapsed time, and the first day's report as soon as it exists."""

    def __init__(self, client, cfg, began: float):
        self.client, self.cfg, self.began = client, cfg, began
        self.first_report: Path | None = None

    def __call__(self, states: dict[str, int]) -> None:
        done = states.get("success", 0) + states.get("failed", 0)
        print(f"  [{time.monotonic() - self.began:5.0f} s] daily runs: {done} of {DAYS} finished ({states})", flush=True)
        if self.first_report is None and done:
            pages = [u for u, _ in list_objects(self.client, f"{self.cfg.defaults.reports_uri}/model_id=support-bot-v3/") if u.endswith("/index.html")]
            if pages:
                self.first_report = mirror_reports(self.client, self.cfg.defaults.reports_uri, OUTPUT / "reports")
                print(f"  first report is ready after {time.monotonic() - self.began:.0f} s: open {self.first_report} "
                      f"(the other days are added as they finish)", flush=True)


def _summaries(client, cfg):
    """(model, day, summary.json) of every model and demo day."""
    for model in cfg.models:
        for offset in range(DAYS):
            day = START + timedelta(offset)
            yield model, day, get_json(client, f"{cfg.defaults.reports_uri}/model_id={model.id}/dt={day}/summary.json")


def _drift_table(client, cfg) -> list[str]:
    """One line per model and day: drift severity and where it drifted."""
    lines = []
    for model, day, summary in _summaries(client, cfg):
        drift = summary.get("drift") or {}
        alerts = drift.get("alerts", [])
        overall = sorted({a["column"] for a in alerts if not a.get("segment")})
        segments: dict[str, int] = {}
        for a in alerts:
            if a.get("segment"):
                segments[a["segment"]] = segments.get(a["segment"], 0) + 1
        shown = (f"overall: {', '.join(overall[:3])}{' …' if len(overall) > 3 else ''}" if overall else "") + \
            (f"  segments: {', '.join(f'{k} ({n} columns)' for k, n in sorted(segments.items()))}" if segments else "")
        lines.append(f"{model.id:<22} {day}  {drift.get('severity') or drift.get('outcome') or '-':<7} {shown}")
    return lines


def _decision_table(client, cfg) -> list[str]:
    """One line per experiment and day: the decision and its first reason."""
    lines = []
    for _model, day, summary in _summaries(client, cfg):
        for e in summary.get("experiments") or []:
            reason = (e.get("reasons") or [""])[0]
            lines.append(f"{e['experiment_id']:<10} {day}  {e['decision']:<12} {reason[:110]}")
    return lines


def _judge_table(client, cfg) -> list[str]:
    """One line per LLM day: judged answers and the weighted toxicity, refusal and helpfulness estimates with 95% intervals."""
    lines = []
    for model, day, summary in _summaries(client, cfg):
        judge = summary.get("judge")
        if not judge:
            continue
        cells = []
        for metric in ("judge.toxicity_rate", "judge.refusal_rate", "judge.helpfulness"):
            e = judge["overall"].get(metric)
            cells.append(f"{metric.removeprefix('judge.')} {e['estimate']:.3f} [{e['ci_low']:.3f}, {e['ci_high']:.3f}]" if e else f"{metric} –")
        pairwise = judge.get("pairwise") or {}
        if pairwise.get("win_rate") is not None:
            low, high = pairwise["win_rate_ci"]
            cells.append(f"shadow wins {pairwise['win_rate']:.2f} [{low:.2f}, {high:.2f}] of {pairwise['wins'] + pairwise['losses']} decided pairs")
        lines.append(f"{model.id:<16} {day}  n={judge['judged']:<4} " + "   ".join(cells))
    return lines


def _estimation_table(client, cfg) -> list[str]:
    """One line per classifier day: CBPE's estimated accuracy with its band, and the realised accuracy once labels arrived."""
    lines = []
    for model, day, summary in _summaries(client, cfg):
        est = (summary.get("concept") or {}).get("estimation") or {}
        if est.get("outcome") != "ok":
            continue
        row = next((m for m in est["metrics"] if m["metric"] == est["primary_metric"]), None)
        if row is None or row.get("estimate") is None:
            continue
        band = f"[{row['lower']:.3f}, {row['upper']:.3f}]" if row.get("lower") is not None else ""
        state = "ALERT: outside the reference range" if row.get("alert") else "within the reference range"
        lines.append(f"{model.id:<20} {day}  estimated {row['metric']} {row['estimate']:.3f} {band}  {state}")
    return lines


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    began = time.monotonic()
    memory = PeakMemory()
    memory.start()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    shutil.rmtree(OUTPUT, ignore_errors=True)
    cfg = load_config()
    s3 = LocalS3(log=DEMO_DIR / "s3.log")
    airflow = None
    try:
        step(f"starting the S3-compatible server (moto) on 127.0.0.1:{s3.port}")
        s3.start()
        client = make_client(endpoint_url=s3.endpoint)
        llm = cfg.model("support-bot-v3")
        for uri in (cfg.defaults.logs_uri, cfg.defaults.labels_uri, cfg.defaults.reports_uri, llm.rollback.uri):
            ensure_bucket(client, split_uri(uri)[0])

        step(f"generating {DAYS} days of traffic from {START} (de-DE drifts from day 6, toxic burst day 7, broken rows day 5, "
             f"exp-042's treatment p99 latency regresses from day {REGRESSION_DAY.day}, exp-aa-7 is an A/A test, 5% of requests mirrored to a shadow model)")
        scenario = Scenario(drift_from=DRIFT_DAY, drift_locale="de-DE", toxic_burst_on=START + timedelta(6), regression="latency",
                            regression_from=REGRESSION_DAY, broken_rows_on={START + timedelta(4): 24}, shadow_share=0.05, classic_shift_from=START + timedelta(7))
        exp = llm.experiments[0]
        aa = cfg.model("churn-classifier-v2").experiments[0]
        generate_traffic(client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, START, DAYS, scenario=scenario, plan=ExperimentPlan(exp.id, exp.weights()),
                         classic_plan=ExperimentPlan(aa.id, aa.weights()),
                         progress=lambda day, written: print(f"  {day}: " + ", ".join(f"{m} {n:,} rows" for m, n in written.items()), flush=True))

        step("starting Airflow 3 (API server, scheduler, dag-processor; LocalExecutor on SQLite) in .demo/airflow")
        airflow = LocalAirflow(DEMO_DIR / "airflow", extra_env={"AIRFLOW_CONN_AWS_DEFAULT": s3.connection_json(),
                                                               "MODELWATCH_EVIDENTLY_WORKSPACE": str(WORKSPACE)})
        airflow.migrate()
        airflow.start()
        print(f"  Airflow UI and REST API on {airflow.api_url} only (user {airflow.username}; this run's password is in "
              f"{airflow.passwords_file.relative_to(PROJECT_ROOT)}; a REST token: POST {airflow.api_url}/auth/token)", flush=True)
        airflow.wait_for_dags(["modelwatch_daily", "modelwatch_hourly", "modelwatch_rollback", "modelwatch_baseline"])
        airflow.cli("dags", "unpause", "modelwatch_rollback")
        airflow.cli("dags", "unpause", "modelwatch_baseline")

        step("building baselines from the launch window (modelwatch_baseline, one run per model)")
        for model in cfg.models:
            window = model.baseline.window
            conf = json.dumps({"model_id": model.id, "start": window.start, "end": window.end})
            airflow.cli("dags", "trigger", "modelwatch_baseline", "--run-id", f"demo_baseline_{model.id}", "--conf", conf)
        baselines = airflow.wait_for_runs("modelwatch_baseline", len(cfg.models), timeout=600, progress=lambda s: print(f"  baseline runs: {s}", flush=True))
        if any(r[1] != "success" for r in baselines):
            raise RuntimeError(f"a baseline build failed: {baselines}; logs under {airflow.home}")
        airflow.cli("dags", "unpause", "modelwatch_daily")
        last = START + timedelta(DAYS - 1)
        step(f"backfilling modelwatch_daily over {START} .. {last}")
        airflow.cli("backfill", "create", "--dag-id", "modelwatch_daily", "--from-date", START.isoformat(), "--to-date", last.isoformat(),
                    "--max-active-runs", "2", "--reprocess-behavior", "completed")
        daily = airflow.wait_for_runs("modelwatch_daily", DAYS, timeout=DAYS * 240, where=lambda r: r[0].startswith("backfill__"),
                                      progress=DailyProgress(client, cfg, began))
        failed = [r for r in daily if r[1] != "success"]
        for restart in airflow.restarts:
            print(f"  note: {restart}", flush=True)

        step("waiting for the scheduler to run modelwatch_rollback from the guardrail_breach asset events")
        rollbacks = airflow.wait_for_runs("modelwatch_rollback", 1, timeout=300, progress=lambda s: print(f"  rollback runs: {s}", flush=True))
        time.sleep(3)
        airflow.wait_for_runs("modelwatch_rollback", len(airflow.runs("modelwatch_rollback")), timeout=300)
        routing = get_json(client, llm.rollback.uri)
        audits = [get_json(client, u) for u, _ in list_objects(client, f"{cfg.defaults.reports_uri}/_audit/rollbacks") if not u.endswith(".claim.json")]
        aa_routing = [u for u, _ in list_objects(client, cfg.model("churn-classifier-v2").rollback.uri)]

        drift_rows = _drift_table(client, cfg)
        decision_rows = _decision_table(client, cfg)
        judge_rows = _judge_table(client, cfg)
        estimation_rows = _estimation_table(client, cfg)

        step("mirroring reports")
        index = mirror_reports(client, cfg.defaults.reports_uri, OUTPUT / "reports")
    finally:
        if airflow:
            airflow.stop()
        s3.stop()
        memory.running = False

    elapsed = time.monotonic() - began
    print("\n" + "=" * 78)
    print(f"daily runs: {len(daily) - len(failed)} succeeded, {len(failed)} failed   rollback runs: {len(airflow.runs('modelwatch_rollback'))} "
          f"(first: {rollbacks[0][1]}, run_type asset-triggered)")
    state = routing["experiments"][exp.id]
    print(f"routing document {llm.rollback.uri}: {exp.id} is {state['state']} -> weights {state['weights']}")
    print(f"  reason: {state['reason']}")
    outcomes = sorted(f"{a['breach']['experiment_id']}: {a['outcome']}" for a in audits)
    print(f"audit records under {cfg.defaults.reports_uri}/_audit/rollbacks/: {outcomes} (one routing change; later breaches find it done)")
    print(f"A/A experiment {aa.id}: {'never rolled back (no routing document written)' if not aa_routing else 'ROLLED BACK: a false alarm'}")
    print(f"reports (S3):   {cfg.defaults.reports_uri}/model_id=<model>/dt=<day>/{{summary.json,metrics.parquet,index.html}}")
    print(f"quarantine:     {cfg.defaults.reports_uri}/_quarantine/model_id=<model>/dt=<day>/quarantine.parquet")
    print(f"reports (local mirror): {index}")
    print(f"Evidently workspace:    {WORKSPACE}  (see the trend: .venv/bin/evidently ui --workspace {WORKSPACE})")
    print("\ndrift by day (baseline window 2026-11-01..03; de-DE drifts from " + DRIFT_DAY.isoformat() + "):")
    for row in drift_rows:
        print("  " + row)
    print(f"\njudge (offline heuristic judge; weighted estimates, 95% intervals; toxic burst on {START + timedelta(6)}):")
    for row in judge_rows:
        print("  " + row)
    print(f"\nexperiment decisions by day (exp-042 starts {exp.start}; its treatment's p99 latency regresses from {REGRESSION_DAY}):")
    for row in decision_rows:
        print("  " + row)
    print(f"\nestimated classifier accuracy by day (CBPE, no labels needed; the classifier's inputs drift from {DRIFT_DAY} and a sign-up "
          f"campaign shifts them further from {START + timedelta(7)}; its labels arrive 7 days late):")
    for row in estimation_rows:
        print("  " + row)
    print(f"wall time {elapsed:.0f} s, peak memory (all processes) {memory.peak / 2**30:.2f} GiB")
    print(f"\nreport site (open in a browser): {index}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
