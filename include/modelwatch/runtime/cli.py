"""The ``modelwatch`` command line: check configs, generate traffic, run the local S3 server, mirror reports, try it on a folder of logs."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, at least 1, got {text}")
    return value


def _client(args):
    from modelwatch.storage.s3 import make_client

    return make_client(endpoint_url=args.endpoint_url or os.environ.get("MODELWATCH_S3_ENDPOINT"))


def cmd_validate_config(args) -> int:
    from modelwatch.config import ConfigError, load_config

    try:
        cfg = load_config(args.path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.path}: ok ({len(cfg.models)} models: {', '.join(m.id for m in cfg.models)})")
    return 0


def cmd_generate(args) -> int:
    from modelwatch.config import load_config
    from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
    from modelwatch.storage.s3 import ensure_bucket, split_uri

    cfg = load_config(args.config)
    start = date.fromisoformat(args.start)
    scenario = Scenario(
        drift_from=date.fromisoformat(args.drift_from) if args.drift_from else None,
        drift_locale=args.drift_locale,
        regression=args.regression,
        regression_from=date.fromisoformat(args.regression_from) if args.regression_from else None,
        toxic_burst_on=date.fromisoformat(args.toxic_burst_on) if args.toxic_burst_on else None,
        broken_rows_on={date.fromisoformat(d): args.broken_rows for d in (args.broken_on or [])},
        labels=not args.no_labels,
        classic_shift_from=date.fromisoformat(args.classic_shift_from) if args.classic_shift_from else None,
    )
    llm = cfg.model(args.llm_model)
    exp = llm.experiments[0] if llm.experiments else None
    plan = ExperimentPlan(exp.id, exp.weights()) if exp else None
    client = _client(args)
    for uri in (cfg.defaults.logs_uri, cfg.defaults.labels_uri, cfg.defaults.reports_uri):
        ensure_bucket(client, split_uri(uri)[0])
    if llm.rollback:
        ensure_bucket(client, split_uri(llm.rollback.uri)[0])

    def progress(day, written):
        print(f"  {day}: " + ", ".join(f"{m} {n:,} rows" for m, n in written.items()), flush=True)

    written = generate_traffic(
        client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, start, args.days, seed=args.seed, scenario=scenario,
        llm_model=args.llm_model, classic_model=args.classic_model, llm_rows=args.llm_rows, classic_rows=args.classic_rows,
        plan=plan, progress=progress,
    )
    print(f"wrote {sum(written.values()):,} rows under {cfg.defaults.logs_uri}")
    return 0


def _serialise_conditional_puts() -> None:
    """Make moto's conditional PutObject (``If-None-Match``/``If-Match``) atomic, as S3's is.

    moto checks the condition and writes without a lock, so two concurrent conditional
    writes could both succeed; modelwatch's exactly-once rollback relies on one winning.
    """
    import threading

    from moto.s3.responses import S3Response

    if getattr(S3Response.put_object, "_modelwatch_serialised", False):
        return
    lock, put = threading.Lock(), S3Response.put_object

    def put_object(self):
        if self.headers.get("If-None-Match") or self.headers.get("If-Match"):
            with lock:
                return put(self)
        return put(self)

    put_object._modelwatch_serialised = True
    S3Response.put_object = put_object


def cmd_s3_server(args) -> int:
    from moto.server import ThreadedMotoServer

    _serialise_conditional_puts()
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    print(f"S3-compatible server on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def cmd_mirror(args) -> int:
    from modelwatch.config import load_config
    from modelwatch.publish.mirror import mirror_reports

    cfg = load_config(args.config)
    index = mirror_reports(_client(args), cfg.defaults.reports_uri, Path(args.dest))
    print(f"reports mirrored to {index}")
    return 0


def cmd_build_baseline(args) -> int:
    from modelwatch.baseline.build import build_baseline
    from modelwatch.config import load_config
    from modelwatch.embeddings import EmbeddingCache

    cfg = load_config(args.config)
    model = cfg.model(args.model)
    window = model.baseline.window
    start, end = args.start or (window and window.start), args.end or (window and window.end)
    if not start or not end:
        print(f"model {model.id} has no baseline window in the config: pass --start and --end", file=sys.stderr)
        return 2
    client = _client(args)
    cache = EmbeddingCache(client, cfg.defaults.reports_uri, backend=cfg.defaults.embedding_backend)
    manifest = build_baseline(client, cfg, model.id, date.fromisoformat(start), date.fromisoformat(end), args.version,
                              embed_texts=cache)
    print(f"baseline {manifest['version']} of {model.id}: {manifest['uri']}")
    return 0


def cmd_alert_rules(args) -> int:
    from modelwatch.config import load_config
    from modelwatch.observe.alert_rules import write_rules, write_rules_tests

    cfg = load_config(args.config)
    out = Path(args.out)
    write_rules(cfg, out)
    if args.tests:
        write_rules_tests(cfg, Path(args.tests), out.name)
    print(f"Prometheus rules for {len(cfg.models)} models -> {out}" + (f"; promtool tests -> {args.tests}" if args.tests else ""))
    return 0


def cmd_grafana_dashboard(args) -> int:
    from modelwatch.observe.grafana import render, write_dashboard

    if args.out == "-":
        sys.stdout.write(render())
        return 0
    out = write_dashboard(args.out)
    print(f"Grafana dashboard -> {out}")
    return 0


def cmd_contract(args) -> int:
    from modelwatch.core.contract import contract_markdown

    print(contract_markdown())
    return 0


def cmd_try(args) -> int:
    from modelwatch.runtime.try_logs import TryError, run_try

    try:
        result = run_try(Path(args.folder), Path(args.workdir), Path(args.config_out) if args.config_out else None,
                         baseline_days=args.baseline_days, s3_endpoint=args.s3_endpoint, say=lambda line: print(line, flush=True))
    except TryError as exc:
        print(f"modelwatch try: {exc}", file=sys.stderr)
        return 2
    except (TimeoutError, RuntimeError) as exc:  # the runtime did not start or a run did not finish: its message names the logs
        print(f"modelwatch try: the embedded runtime failed: {exc}", file=sys.stderr)
        return 1
    return 1 if result.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate-config", help="check a config file and print every problem with its key path")
    p.add_argument("path")
    p.set_defaults(func=cmd_validate_config)

    p = sub.add_parser("generate", help="write synthetic traffic to the S3 partition layout")
    p.add_argument("--config", default=None)
    p.add_argument("--endpoint-url", default=None, help="S3 endpoint (default: $MODELWATCH_S3_ENDPOINT, else AWS)")
    p.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--llm-model", default="support-bot-v3")
    p.add_argument("--classic-model", default="churn-classifier-v2")
    p.add_argument("--llm-rows", type=int, default=3000, help="LLM requests per day")
    p.add_argument("--classic-rows", type=int, default=1500, help="classifier requests per day")
    p.add_argument("--drift-from", help="day from which inputs drift (topic mix, longer prompts, new vocabulary)")
    p.add_argument("--drift-locale", help="drift only this locale's traffic (e.g. de-DE): a segment-level drift")
    p.add_argument("--regression", choices=["latency", "errors"], help="what the treatment arm regresses")
    p.add_argument("--regression-from", help="day from which the treatment regresses")
    p.add_argument("--toxic-burst-on", help="day with a burst of toxic answers")
    p.add_argument("--classic-shift-from", help="day from which the classifier's customers shift towards its decision boundary (accuracy falls)")
    p.add_argument("--broken-on", nargs="*", help="days that get broken rows")
    p.add_argument("--broken-rows", type=int, default=16)
    p.add_argument("--no-labels", action="store_true", help="do not write delayed labels")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("s3-server", help="run the embedded S3-compatible server (moto)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5055)
    p.set_defaults(func=cmd_s3_server)

    p = sub.add_parser("mirror", help="copy the reports prefix to a local folder and write a site index")
    p.add_argument("--config", default=None)
    p.add_argument("--endpoint-url", default=None)
    p.add_argument("--dest", default="demo_output/reports")
    p.set_defaults(func=cmd_mirror)

    p = sub.add_parser("build-baseline", help="build a model's versioned baseline from a window of its logs")
    p.add_argument("--config", default=None)
    p.add_argument("--endpoint-url", default=None)
    p.add_argument("--model", required=True)
    p.add_argument("--start", help="first day, YYYY-MM-DD (default: the config's baseline window)")
    p.add_argument("--end", help="last day, inclusive")
    p.add_argument("--version", help="version name (default: the config's, else <start>_<end>)")
    p.set_defaults(func=cmd_build_baseline)

    p = sub.add_parser("alert-rules", help="write Prometheus alert rules (and promtool tests) generated from the config")
    p.add_argument("--config", default=None)
    p.add_argument("--out", default="modelwatch-rules.yml")
    p.add_argument("--tests", default=None, help="also write promtool unit tests for the rules to this path")
    p.set_defaults(func=cmd_alert_rules)

    p = sub.add_parser("grafana-dashboard", help="write the Grafana dashboard JSON (provisioned from grafana/dashboards/)")
    p.add_argument("--out", default="grafana/dashboards/modelwatch.json", help="output file, or - for stdout")
    p.set_defaults(func=cmd_grafana_dashboard)

    p = sub.add_parser("try", help="load a folder of log files, propose a config, build baselines and run the daily DAG on the embedded runtime")
    p.add_argument("folder", help="the folder of log files (.jsonl, .jsonl.gz, .parquet; dt=YYYY-MM-DD folders are kept as days)")
    p.add_argument("--workdir", default=".modelwatch-try", help="where the runtime, the proposed config and the report site go")
    p.add_argument("--config-out", default=None, help="where to write the proposed config (default: <workdir>/modelwatch.yaml)")
    p.add_argument("--baseline-days", type=_positive_int, default=None,
                   help="days the baseline is built from (default: the first third of the days, at most 3)")
    p.add_argument("--s3-endpoint", default=None, help="use this S3-compatible endpoint instead of starting the embedded one")
    p.set_defaults(func=cmd_try)

    p = sub.add_parser("contract", help="print the log contract as a Markdown table")
    p.set_defaults(func=cmd_contract)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
