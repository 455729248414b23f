"""``modelwatch try DIR``: a folder of log files through the real pipeline in one command.

1. **Read** every log file under DIR (``.jsonl``, ``.jsonl.gz``, ``.json``, ``.parquet``: what
   ``ingest.readers.open_file`` accepts) and place each row in a model (its ``model_id``) and a
   day: the folder's day when the file sits in a ``dt=YYYY-MM-DD``, ``date=YYYY-MM-DD`` or
   ``YYYY-MM-DD`` folder (the layout is kept: the partition is the folder's, and rows outside it
   are quarantined as they would be in production), else the UTC day of its ``timestamp``.
2. **Propose** a config from what the rows hold (``runtime.propose``) and write it to a file.
3. **Load** the files into the embedded S3 (``runtime.localstack.LocalS3``, 127.0.0.1): a file
   in a day folder holding one model is copied byte for byte to ``model_id=M/dt=D/``; any other
   file is split by model and day, its JSON lines copied as they are and its Parquet rows taken
   as they are. A row of such a file without a model or a day is counted, never loaded silently.
4. **Run** the embedded Airflow (``LocalAirflow``, 127.0.0.1, scheduled runs off: only what this
   command triggers runs): ``modelwatch_baseline`` per model over its first days, then
   ``modelwatch_daily`` for each later day, one day after the other (experiments are cumulative).
5. **Report**: mirror the report site to a local folder and print what each day found.

The library parts (``find_log_files``, ``survey_files``, ``upload_files``, ``findings``) take
plain arguments, so tests drive them without the runtime.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import Any

from modelwatch.core.contract import FIELD_BY_NAME, coerce_value
from modelwatch.core.partition import Partition
from modelwatch.runtime.propose import Destinations, LogSurvey, NothingUsable, Proposal, one_line, propose_config

BUCKET = "modelwatch-try"
DESTINATIONS = Destinations(logs_uri=f"s3://{BUCKET}/logs", reports_uri=f"s3://{BUCKET}/reports", labels_uri=f"s3://{BUCKET}/labels",
                            routing_uri=f"s3://{BUCKET}/routing")
LOG_SUFFIXES = (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".parquet")
_DAY_FOLDER = re.compile(r"^(?:dt=|date=|day=)?(\d{4}-\d{2}-\d{2})$")
BASELINE_TIMEOUT_S, DAY_TIMEOUT_S = 900, 1200

Say = Callable[[str], None]


class TryError(RuntimeError):
    """``modelwatch try`` cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class LogFile:
    """One log file of the folder: its path, its path inside the folder, and the day its folder names (if any)."""

    path: Path
    relative: PurePosixPath
    day: date | None


def folder_day(relative: PurePosixPath) -> date | None:
    """The day a file's folders name (``dt=2026-10-06``, ``date=…``, ``2026-10-06``; the innermost wins), else None."""
    for part in reversed(relative.parts[:-1]):
        match = _DAY_FOLDER.match(part)
        if match:
            try:
                return date.fromisoformat(match.group(1))
            except ValueError:
                return None
    return None


def find_log_files(folder: Path) -> list[LogFile]:
    """Every log file under ``folder`` (hidden files and folders skipped), in path order."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.name.lower().endswith(LOG_SUFFIXES):
            found.append(LogFile(path, relative, folder_day(relative)))
    return found


@dataclass
class PlacedFile:
    """Where the rows of one file go: positions (JSON: line numbers; Parquet: row numbers, from 1) by (model, day)."""

    file: LogFile
    fmt: str
    groups: dict[tuple[str, date], list[int]] = field(default_factory=dict)
    unplaced: Counter[str] = field(default_factory=Counter)  # why a row has no model or day -> rows
    first_unplaced: dict[str, int] = field(default_factory=dict)  # the same reason -> its first line
    unreadable: int = 0  # lines the reader rejected (not JSON, not UTF-8, ...)
    problem: str | None = None

    @property
    def copied_whole(self) -> bool:
        """A file in a day folder with one model's rows is loaded as it is, unreadable lines and all."""
        return self.file.day is not None and len({model for model, _ in self.groups}) == 1

    @property
    def rows(self) -> int:
        return sum(len(p) for p in self.groups.values())

    def not_loaded(self) -> list[str]:
        """What of this file does not reach the pipeline, one line per reason, with the first line it happens on."""
        if self.copied_whole:
            return []
        lines = [f"{self.file.relative}: {plural(n, 'row')} not loaded, {why} (first at line {self.first_unplaced[why]})"
                 for why, n in self.unplaced.most_common()]
        if self.unreadable:
            lines.append(f"{self.file.relative}: {plural(self.unreadable, 'line')} not loaded, unreadable (not JSON objects, or not UTF-8)")
        return lines


def plural(n: int, noun: str) -> str:
    """``1 row``, ``2 rows``, ``1,200 rows``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _row_day(record: dict[str, Any]) -> tuple[date | None, str | None]:
    """The UTC day of a row's ``timestamp``, or the reason there is none."""
    ts, problem = coerce_value(FIELD_BY_NAME["timestamp"], record.get("timestamp"))
    if ts is None:
        return None, problem or "no 'timestamp' and no dt=YYYY-MM-DD folder to say its day"
    return ts.date(), None


def _unplaced_reason(record: dict[str, Any]) -> str:
    if "labelled_at" in record:
        return "a label row (labelled_at): `try` loads inference logs only"
    model = record.get("model_id")
    if model is None:
        return "no 'model_id' (the field naming the model)"
    return f"'model_id' is {type(model).__name__} {str(model)[:40]!r}, not a model name"


def _records(batch) -> Iterator[tuple[int, Any]]:
    records = batch.records if batch.arrow is None else batch.arrow.to_pylist()
    return zip(batch.lines, records)


def place_file(log_file: LogFile, survey: LogSurvey) -> PlacedFile:
    """Read one file with the pipeline's reader, place each row in a model and a day, and add it to ``survey``."""
    from modelwatch.ingest.readers import open_file

    stream = open_file(log_file.path.read_bytes(), str(log_file.relative))
    placed = PlacedFile(log_file, stream.fmt)
    for batch in stream.batches:
        placed.unreadable += len(batch.rejects)
        for line, record in _records(batch):
            model = record.get("model_id")
            day, why = (log_file.day, None) if log_file.day else _row_day(record)
            if not isinstance(model, str) or not model:
                why = _unplaced_reason(record)
            if why:
                placed.unplaced[why] += 1
                placed.first_unplaced.setdefault(why, line)
                continue
            placed.groups.setdefault((model, day), []).append(line)
            survey.observe(model, day, record, str(log_file.relative))
    placed.problem = stream.problem
    return placed


def survey_files(files: list[LogFile], say: Say = print) -> tuple[LogSurvey, list[PlacedFile]]:
    """Place every file's rows and survey them; prints one line per file."""
    survey, placed = LogSurvey(), []
    for log_file in files:
        result = place_file(log_file, survey)
        placed.append(result)
        models = sorted({m for m, _ in result.groups})
        say(f"  {log_file.relative}: {result.rows:,} rows ({', '.join(models) or 'no model'})"
            + (f"; {result.problem}" if result.problem else ""))
    return survey, placed


def nothing_usable_message(folder: Path, files: list[LogFile], placed: list[PlacedFile], why: str | None = None) -> str:
    """Why ``folder`` gives nothing to monitor, naming each file and field."""
    if not files:
        return (f"{folder}: no log files found (looked for {', '.join(LOG_SUFFIXES)} at any depth; hidden files skipped). "
                "Point `modelwatch try` at the folder your model service writes its logs to.")
    lines = [f"{folder}: nothing modelwatch can monitor."]
    if why:
        lines.append(why)
    for result in placed:
        if result.rows == 0:
            reasons = [f"{plural(n, 'row')}: {reason} (first at line {result.first_unplaced[reason]})" for reason, n in result.unplaced.most_common()]
            if result.unreadable:
                reasons.append(f"{plural(result.unreadable, 'line')} unreadable")
            if result.problem:
                reasons.append(result.problem)
            lines.append(f"  {result.file.relative}: " + ("; ".join(reasons) or "no rows"))
    lines.append("Each log row needs the contract's fields (`modelwatch contract` prints them): model_id, request_id, timestamp "
                 "(ISO-8601 with a UTC offset), variant, status, latency_ms, and prompt (an LLM) or features and prediction (a classifier or regressor).")
    return "\n".join(lines)


def _split_jsonl(data: bytes, source: str, gzipped: bool, positions: list[int]) -> bytes:
    """The lines at ``positions`` (1-based), as they are, gzipped."""
    from modelwatch.ingest.readers import json_lines

    lines = json_lines(data, source, gzipped).lines
    return gzip.compress(b"".join(lines[n - 1].rstrip(b"\r") + b"\n" for n in positions), mtime=0)


def _split_parquet(data: bytes, positions: list[int]) -> bytes:
    """The rows at ``positions`` (1-based) as a Parquet file of the same schema."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data)).take([n - 1 for n in positions])
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def _object_name(relative: PurePosixPath) -> str:
    """A flat object name from a path inside the folder (the day folder dropped), keeping the file's extension last."""
    parts = [p for p in relative.parts if not _DAY_FOLDER.match(p)]
    return "__".join(parts)


def uploads(placed: PlacedFile, logs_uri: str) -> Iterator[tuple[str, bytes]]:
    """(object URI, bytes) to load for one file: the file whole in its day, or its rows split by model and day."""
    data = placed.file.path.read_bytes()
    name = _object_name(placed.file.relative)
    if placed.copied_whole:
        [(model, day)] = {(m, placed.file.day) for m, _ in placed.groups}
        yield f"{Partition(model, day).path(logs_uri)}/{name}", data
        return
    stem = re.sub(r"\.(jsonl\.gz|json\.gz|jsonl|json|parquet)$", "", name, flags=re.IGNORECASE)
    for (model, day), positions in sorted(placed.groups.items()):
        if placed.fmt == "parquet":
            yield f"{Partition(model, day).path(logs_uri)}/{stem}.parquet", _split_parquet(data, positions)
        else:
            body = _split_jsonl(data, str(placed.file.relative), placed.fmt == "jsonl.gz", positions)
            yield f"{Partition(model, day).path(logs_uri)}/{stem}.jsonl.gz", body


def upload_files(client, placed: list[PlacedFile], models: set[str], logs_uri: str) -> int:
    """Load every placed file of the configured ``models`` into ``logs_uri``; returns the objects written."""
    from modelwatch.storage.s3 import put_bytes

    written = 0
    for result in placed:
        if not {m for m, _ in result.groups} & models:
            continue
        for uri, body in uploads(result, logs_uri):
            if split_model(uri) in models:
                put_bytes(client, uri, body)
                written += 1
    return written


def split_model(uri: str) -> str:
    """The model of a ``.../model_id=M/dt=D/...`` URI."""
    return uri.split("/model_id=", 1)[1].split("/", 1)[0]


def findings(client, reports_uri: str, monitored: dict[str, list[date]]) -> list[str]:
    """One line per model and monitored day: outcome, rows, drift and where, experiment decisions, breaches."""
    from modelwatch.storage.s3 import S3Error, error_code, get_json

    lines = []
    for model_id, days in monitored.items():
        for day in days:
            try:
                summary = get_json(client, f"{Partition(model_id, day).path(reports_uri)}/summary.json")
            except S3Error as exc:
                missing = error_code(exc) in ("NoSuchKey", "404")
                lines.append(f"{model_id:<24} {day}  no summary" + (": the day's run did not publish it (see its task logs)" if missing else f" ({exc})"))
                continue
            except ValueError as exc:
                lines.append(f"{model_id:<24} {day}  unreadable summary ({exc})")
                continue
            lines.append(f"{model_id:<24} {day}  {day_line(summary)}")
    return lines


def day_line(summary: dict[str, Any]) -> str:
    """A day's summary in one line."""
    rows = summary.get("rows") or {}
    parts = [f"{summary.get('outcome', '?')}", f"{rows.get('valid', 0):,} valid, {rows.get('quarantined', 0):,} quarantined"]
    drift = summary.get("drift") or {}
    alerts = drift.get("alerts") or []
    where = sorted({f"{a['segment']}={a.get('segment_value')}" if a.get("segment") else a.get("column", "?") for a in alerts})
    parts.append(f"drift {drift.get('severity') or drift.get('outcome') or '-'}" + (f" ({', '.join(where[:4])}{' …' if len(where) > 4 else ''})" if where else ""))
    for experiment in summary.get("experiments") or []:
        reason = (experiment.get("reasons") or [""])[0]
        parts.append(f"{experiment.get('experiment_id')}: {experiment.get('decision')}" + (f" ({reason[:90]})" if reason else ""))
    if summary.get("breaches"):
        count = len(summary["breaches"])
        parts.append(f"{count} hard-limit breach{'' if count == 1 else 'es'}")
    return "; ".join(parts)


@dataclass
class TryResult:
    """What a ``try`` run produced."""

    config_path: Path
    proposal: Proposal
    baseline_runs: list[tuple]
    daily_runs: list[tuple]
    site_index: Path
    findings: list[str]

    @property
    def failed(self) -> list[tuple]:
        return [r for r in self.baseline_runs + self.daily_runs if r[1] != "success"]


def read_and_propose(folder: Path, baseline_days: int | None, say: Say = print) -> tuple[Proposal, list[PlacedFile]]:
    """Steps 1 and 2 without any runtime: raises TryError naming files and fields when nothing is usable."""
    if not folder.is_dir():
        raise TryError(f"{folder}: not a folder; pass the folder that holds your log files")
    files = find_log_files(folder)
    if not files:
        raise TryError(nothing_usable_message(folder, files, []))
    say(f"==> reading {len(files)} log files under {folder}")
    survey, placed = survey_files(files, say)
    if not survey.models:
        raise TryError(nothing_usable_message(folder, files, placed))
    try:
        proposal = propose_config(survey, DESTINATIONS, baseline_days)
    except NothingUsable as exc:
        raise TryError(nothing_usable_message(folder, files, placed, str(exc))) from None
    for result in placed:
        for line in result.not_loaded():
            say(f"  not loaded: {line}")
    return proposal, placed


def run_try(folder: Path, workdir: Path, config_out: Path | None = None, baseline_days: int | None = None,
            s3_endpoint: str | None = None, say: Say = print) -> TryResult:
    """The whole command (see the module docstring); the runtime is stopped whatever happens."""
    from modelwatch.runtime.localstack import LocalS3
    from modelwatch.storage.s3 import ensure_bucket, make_client

    inside = workdir.resolve().is_relative_to(folder.resolve()) or folder.resolve().is_relative_to(workdir.resolve())
    if inside:
        raise TryError(f"--workdir {workdir} and the logs folder {folder} overlap: the runtime and the report site are written to the "
                       "workdir, so keep it outside the logs (the default is .modelwatch-try in the current folder)")
    proposal, placed = read_and_propose(folder, baseline_days, say)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = config_out or workdir / "modelwatch.yaml"
    config_path.write_text(proposal.to_yaml(str(folder)))
    say(f"==> proposed config written to {config_path}")
    for note in proposal.notes:
        say(f"  {one_line(note)}")
    for model_id, why in proposal.skipped.items():
        say(f"  left out {model_id}: {one_line(why)}")

    s3 = None if s3_endpoint else LocalS3(log=workdir / "s3.log")
    airflow = None
    try:
        if s3:
            s3.start()
        endpoint = s3_endpoint or s3.endpoint
        say(f"==> S3-compatible server on {endpoint}")
        client = make_client(endpoint_url=endpoint)
        ensure_bucket(client, BUCKET)
        models = {m["id"] for m in proposal.config["models"]}
        written = upload_files(client, placed, models, DESTINATIONS.logs_uri)
        say(f"  loaded {written} objects under {DESTINATIONS.logs_uri}")

        airflow = start_airflow(workdir / "airflow", config_path, endpoint, say)
        baseline_runs = build_baselines(airflow, proposal, say)
        daily_runs = run_days(airflow, proposal, say)
        site = mirror_site(client, workdir / "reports")
        found = findings(client, DESTINATIONS.reports_uri, proposal.monitored_days)
    finally:
        if airflow:
            airflow.stop()
        if s3:
            s3.stop()
    result = TryResult(config_path, proposal, baseline_runs, daily_runs, site, found)
    print_result(result, airflow, say)
    return result


def start_airflow(home: Path, config_path: Path, endpoint: str, say: Say):
    """The embedded Airflow reading ``config_path``, with scheduled runs off (only the runs ``try`` triggers run)."""
    from modelwatch.runtime.localstack import LocalAirflow, aws_connection_json

    shutil.rmtree(home, ignore_errors=True)  # a fresh metadata DB: an earlier try's runs have the same run ids
    airflow = LocalAirflow(home, extra_env={"MODELWATCH_CONFIG": str(config_path.resolve()), "AIRFLOW_CONN_AWS_DEFAULT": aws_connection_json(endpoint),
                                            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"})
    say(f"==> starting Airflow 3 in {home} (API server on {airflow.api_url}, user {airflow.username}, password in {airflow.passwords_file})")
    airflow.migrate()
    airflow.start()
    airflow.wait_for_dags(["modelwatch_daily", "modelwatch_baseline"])
    airflow.cli("dags", "unpause", "modelwatch_baseline")
    airflow.cli("dags", "unpause", "modelwatch_daily")
    return airflow


def _progress(label: str, say: Say) -> Callable[[dict[str, int]], None]:
    return lambda states: say(f"  {label}: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))


def build_baselines(airflow, proposal: Proposal, say: Say) -> list[tuple]:
    """One ``modelwatch_baseline`` run per model over its baseline window; returns the finished runs."""
    say("==> building baselines (modelwatch_baseline)")
    run_ids = []
    for section in proposal.config["models"]:
        window = section["baseline"]["window"]
        run_id = f"try_baseline_{section['id']}"
        conf = {"model_id": section["id"], "start": window["start"], "end": window["end"]}
        airflow.cli("dags", "trigger", "modelwatch_baseline", "--run-id", run_id, "--conf", json.dumps(conf))
        run_ids.append(run_id)
    return airflow.wait_for_runs("modelwatch_baseline", len(run_ids), timeout=BASELINE_TIMEOUT_S * len(run_ids),
                                 where=lambda r: r[0] in run_ids, progress=_progress("baseline runs", say))


def run_days(airflow, proposal: Proposal, say: Say) -> list[tuple]:
    """``modelwatch_daily`` for each monitored day, one after the other; returns the finished runs."""
    days = sorted({d for ds in proposal.monitored_days.values() for d in ds})
    say(f"==> running modelwatch_daily for {len(days)} days ({days[0]} .. {days[-1]})")
    finished = []
    for n, day in enumerate(days, start=1):
        run_id = f"try_daily_{day.isoformat()}"
        airflow.cli("dags", "trigger", "modelwatch_daily", "--run-id", run_id, "--conf", json.dumps({"target_date": day.isoformat(), "models": []}))
        run = wait_for_run(airflow, "modelwatch_daily", run_id, DAY_TIMEOUT_S, f"day {n}/{len(days)} {day}", say)
        say(f"  day {n}/{len(days)} {day}: {run[1]}")
        finished.append(run)
    return finished


def wait_for_run(airflow, dag_id: str, run_id: str, timeout: float, label: str, say: Say, poll_s: float = 2.0) -> tuple:
    """Wait until the run finishes, saying its task instances' states each time they change; returns (run_id, state, logical_date)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        airflow.keep_running()
        runs = airflow.query("select run_id, state, logical_date from dag_run where dag_id = ? and run_id = ?", (dag_id, run_id))
        tasks = dict(airflow.query("select coalesce(state, 'pending'), count(*) from task_instance where dag_id = ? and run_id = ? group by 1",
                                   (dag_id, run_id)))
        if tasks and tasks != last:
            say(f"  {label}: tasks " + ", ".join(f"{n} {state}" for state, n in sorted(tasks.items())))
            last = tasks
        if runs and runs[0][1] in ("success", "failed"):
            return runs[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} run {run_id} did not finish within {timeout:.0f} s ({tasks}); task logs under {airflow.home / 'logs'}")
        time.sleep(poll_s)


def mirror_site(client, dest: Path) -> Path:
    """The report site copied to ``dest``; returns its index."""
    from modelwatch.publish.mirror import mirror_reports

    shutil.rmtree(dest, ignore_errors=True)  # only this run's pages
    return mirror_reports(client, DESTINATIONS.reports_uri, dest)


def print_result(result: TryResult, airflow, say: Say) -> None:
    say("\n" + "=" * 78)
    say(f"proposed config: {result.config_path}")
    for run in result.failed:
        say(f"FAILED: {run[0]} ({run[1]}); task logs under {airflow.home / 'logs' if airflow else 'the Airflow home'}")
    say("what each day found:")
    for line in result.findings:
        say(f"  {line}")
    say(f"report site (open in a browser): {result.site_index}")
