"""The embedded default runtime: a local S3-compatible server and a real Airflow on SQLite.

Used by ``make demo`` and by the tests that need a real scheduler. Everything runs as
child processes under a project-local directory and is stopped by ``stop()``; nothing
here imports Airflow (it drives the ``airflow`` CLI and reads the metadata DB).

Every server it starts listens on 127.0.0.1 only, on a port chosen free, and Airflow's
API answers only its one user (``LocalAirflow.username``), whose password is new for
each ``LocalAirflow``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

JUDGE_POOL, JUDGE_POOL_SLOTS = "llm_judge", 2
LOOPBACK = "127.0.0.1"

PROJECT_ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # the server answers
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.3)


class Listener(NamedTuple):
    """A listening TCP socket of a runtime process."""

    process: str  # name and pid
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        """Whether the socket is reachable only from this machine (127.0.0.0/8, ::1, or ::ffff:127.x)."""
        ip = ipaddress.ip_address(self.host.split("%")[0])
        return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def listening_sockets(pids: Iterable[int]) -> list[Listener]:
    """Every listening TCP socket of the processes ``pids`` and of all their descendants still running."""
    import psutil

    seen: set[int] = set()
    found: list[Listener] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in tree:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                name, sockets = proc.name(), proc.net_connections(kind="tcp")
            except psutil.NoSuchProcess:  # a task process that just finished
                continue
            found += [Listener(f"{name} (pid {proc.pid})", s.laddr.ip, s.laddr.port) for s in sockets if s.status == psutil.CONN_LISTEN]
    return found


def aws_connection_json(endpoint: str) -> str:
    """An ``aws`` connection to the S3-compatible server at ``endpoint``, as Airflow reads it from AIRFLOW_CONN_AWS_DEFAULT."""
    return json.dumps({"conn_type": "aws", "login": "modelwatch", "password": "modelwatch",
                       "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "ab")
    return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=PROJECT_ROOT)


def _stop(proc: subprocess.Popen | None, grace: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class LocalS3:
    """moto's S3-compatible server on 127.0.0.1, in a child process."""

    def __init__(self, port: int | None = None, log: Path | None = None):
        self.port = port or free_port()
        self.log = log or PROJECT_ROOT / ".demo" / "s3.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connection_json(self) -> str:
        """The ``aws_default`` connection as Airflow reads it from AIRFLOW_CONN_AWS_DEFAULT."""
        return aws_connection_json(self.endpoint)

    def start(self) -> LocalS3:
        self.proc = _spawn([str(BIN / "modelwatch"), "s3-server", "--host", LOOPBACK, "--port", str(self.port)], self.log, dict(os.environ))
        wait_http(self.endpoint)
        return self

    def listeners(self) -> list[Listener]:
        """The listening sockets of the server's process tree."""
        return listening_sockets([self.proc.pid] if self.proc else [])

    def notify_queue(self, bucket: str, prefix: str, queue: str) -> str:
        """Create SQS queue ``queue`` in the same server and deliver ``bucket``'s ``s3:ObjectCreated:*`` events under
        ``prefix`` to it, as S3 event notifications do; returns the queue URL.

        moto's server sends the notifications itself (and the ``s3:TestEvent`` S3 sends when one is configured).
        """
        import boto3

        kw = {"endpoint_url": self.endpoint, "region_name": "us-east-1", "aws_access_key_id": "modelwatch", "aws_secret_access_key": "modelwatch"}
        sqs = boto3.client("sqs", **kw)
        url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        rules = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}} if prefix else {}
        boto3.client("s3", **kw).put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"], **({"Filter": rules} if rules else {})}]})
        return url

    def stop(self) -> None:
        _stop(self.proc)


class LocalAirflow:
    """A real Airflow 3 (API server, scheduler, dag-processor; LocalExecutor; SQLite) in ``home``.

    The API server listens on 127.0.0.1:``api_port``; its simple auth manager knows one user,
    ``username`` (admin role), whose ``password`` is generated here and written, readable by
    the owner only, to ``passwords_file`` when the runtime starts. ``api()`` is a REST client
    logged in as that user. No worker log server is started: the API server reads task logs
    from ``home``'s log folder, which every component here writes to.
    """

    username = "modelwatch"

    def __init__(self, home: Path, extra_env: dict[str, str] | None = None, dags_folder: Path | None = None):
        self.home = home
        self.api_port = free_port()
        self.password = secrets.token_urlsafe(24)
        self.passwords_file = home / "simple_auth_manager_passwords.json"
        self.procs: list[subprocess.Popen] = []
        self._commands: dict[int, tuple[list[str], Path]] = {}  # pid -> (args, log), to restart a process that died
        self.restarts: list[str] = []
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{LOOPBACK}:{self.api_port}/execution/",
            "AIRFLOW__API__HOST": LOOPBACK,
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",  # even if the calling shell sets it
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            # The worker log server cannot be bound to one address (it listens on all), so it is not started
            # (--skip-serve-logs); a free port keeps the API server from asking another Airflow's log server on 8793.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": LOOPBACK,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "PYTHONWARNINGS": "ignore",
            **(extra_env or {}),
        }

    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``airflow *args``; with ``check``, a failure raises with the command's own output, not just its exit code."""
        for attempt in range(6):
            done = subprocess.run([str(BIN / "airflow"), *args], env=self.env, check=False, capture_output=True, text=True, cwd=PROJECT_ROOT)
            # SQLite allows one writer: a CLI write can lose the lock to the scheduler; the failed transaction rolled back, so retry
            if done.returncode == 0 or "database is locked" not in done.stderr + done.stdout:
                break
            time.sleep(1 + attempt)
        if check and done.returncode != 0:
            output = (done.stderr.strip() or done.stdout.strip())[-3000:]
            raise RuntimeError(f"`airflow {' '.join(args)}` exited with {done.returncode}:\n{output}")
        return done

    def _make_home(self) -> None:
        """Create ``AIRFLOW_HOME`` readable by its owner only: it holds the metadata DB (connections), logs and the password."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)

    def migrate(self) -> None:
        """Create the metadata DB and the pools the DAGs use."""
        self._make_home()
        self.cli("db", "migrate")
        self.cli("pools", "set", JUDGE_POOL, str(JUDGE_POOL_SLOTS), "modelwatch judge tasks: bounds concurrent LLM-judge calls across runs")

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.api_port}"

    def api(self) -> AirflowAPI:
        """A REST client of this runtime's API server, logged in as ``username``."""
        return AirflowAPI(self.api_url, self.username, self.password)

    def start(self) -> LocalAirflow:
        """Start the components; returns once the API server answers and the scheduler and dag-processor run."""
        logs = self.home / "process-logs"
        self._write_password()
        self._run([str(BIN / "airflow"), "api-server", "--host", LOOPBACK, "--port", str(self.api_port)], logs / "api-server.log")
        wait_http(f"{self.api_url}/api/v2/monitor/health", timeout=120)
        self._run([str(BIN / "airflow"), "dag-processor"], logs / "dag-processor.log")
        self._run([str(BIN / "airflow"), "scheduler", "--skip-serve-logs"], logs / "scheduler.log")
        self.wait_for_jobs(["SchedulerJob", "DagProcessorJob"])
        return self

    def start_triggerer(self) -> None:
        """Start the triggerer (deferred tasks and asset watchers); returns once its job runs."""
        self._run([str(BIN / "airflow"), "triggerer", "--skip-serve-logs"], self.home / "process-logs" / "triggerer.log")
        self.wait_for_jobs(["TriggererJob"])

    def _write_password(self) -> None:
        """Write ``password`` as the simple auth manager's passwords file, readable by the owner only."""
        self._make_home()
        fd = os.open(self.passwords_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file left by an earlier runtime keeps its mode through O_CREAT
        with os.fdopen(fd, "w") as handle:
            json.dump({self.username: self.password}, handle)

    def wait_for_jobs(self, job_types: list[str], timeout: float = 180.0) -> None:
        """Wait until each of ``job_types`` (Airflow's job table: SchedulerJob, DagProcessorJob, …) has a running job."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                running = {r[0] for r in self.query("select job_type from job where state = 'running'")}
            except sqlite3.OperationalError:
                running = set()
            if set(job_types) <= running:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sorted(set(job_types) - running)} not running within {timeout:.0f} s; logs in {self.home / 'process-logs'}")
            time.sleep(1)

    def _run(self, args: list[str], log: Path) -> None:
        proc = _spawn(args, log, self.env)
        self.procs.append(proc)
        self._commands[proc.pid] = (args, log)

    def keep_running(self) -> None:
        """Restart any component that exited, as a deployment's restart policy would (Airflow's scheduler exits on
        some internal errors and expects to be restarted); each restart is recorded in ``restarts``."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is None:
                continue
            args, log = self._commands.pop(proc.pid)
            self.restarts.append(f"{args[1]} exited with {proc.returncode}; restarted (log {log})")
            replacement = _spawn(args, log, self.env)
            self.procs[i] = replacement
            self._commands[replacement.pid] = (args, log)

    def listeners(self) -> list[Listener]:
        """The listening sockets of every component's process tree (task processes included while they run)."""
        return listening_sockets(proc.pid for proc in self.procs)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)
        self.procs.clear()
        self._commands.clear()

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql, params).fetchall()

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180.0) -> None:
        """Wait until the dag-processor has parsed every DAG (it is then in the dag table)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                # backfill and trigger need the serialized DAG, which can land after the dag row
                found = {r[0] for r in self.query("select d.dag_id from dag d join serialized_dag s on s.dag_id = d.dag_id")}
            except sqlite3.OperationalError:
                found = set()
            if set(dag_ids) <= found:
                return
            if time.monotonic() > deadline:
                errors = self.cli("dags", "list-import-errors", check=False).stdout
                raise TimeoutError(f"DAGs {sorted(set(dag_ids) - found)} were not parsed within {timeout:.0f} s; import errors:\n{errors}")
            time.sleep(1)

    def runs(self, dag_id: str) -> list[tuple[str, str, str | None]]:
        """(run_id, state, logical_date) of every run of ``dag_id``, oldest first."""
        return self.query("select run_id, state, logical_date from dag_run where dag_id = ? order by id", (dag_id,))

    def wait_for_runs(self, dag_id: str, count: int, timeout: float, progress: Callable[[dict[str, int]], None] | None = None,
                      where: Callable[[tuple], bool] = lambda run: True) -> list[tuple]:
        """Wait until ``count`` matching runs of ``dag_id`` are finished; returns them."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            self.keep_running()
            runs = [r for r in self.runs(dag_id) if where(r)]
            states: dict[str, int] = {}
            for r in runs:
                states[r[1]] = states.get(r[1], 0) + 1
            if progress and states != last:
                progress(states)
                last = states
            done = [r for r in runs if r[1] in ("success", "failed")]
            if len(done) >= count:
                return done
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id}: {len(done)} of {count} runs finished within {timeout:.0f} s ({states}); logs in {self.home}")
            time.sleep(2)


class CeleryAirflow(LocalAirflow):
    """A production-shaped Airflow on this machine: PostgreSQL metadata DB, CeleryExecutor with a Redis broker.

    The same processes as Airflow's official Celery compose file — API server, scheduler,
    dag-processor and a Celery worker — run as children on 127.0.0.1; tasks reach the
    metadata only through the API server's execution API, as they do in a real deployment.
    ``database_url`` names a PostgreSQL database that exists (``create_database`` makes one).
    """

    def __init__(self, home: Path, database_url: str, broker_url: str, worker_concurrency: int = 2,
                 extra_env: dict[str, str] | None = None):
        super().__init__(home, extra_env={
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(worker_concurrency),
            **(extra_env or {}),
        })
        self.database_url = database_url

    @staticmethod
    def _admin(server_url: str, *statements: str) -> None:
        import psycopg2

        conn = psycopg2.connect(server_url)
        try:
            conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()

    @classmethod
    def create_database(cls, server_url: str, name: str) -> str:
        """Create database ``name`` on the PostgreSQL server at ``server_url`` (dropping a leftover one); returns its URL."""
        cls._admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
        base = server_url.rsplit("/", 1)[0]
        return f"{base.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{name}"

    @classmethod
    def drop_database(cls, server_url: str, name: str) -> None:
        cls._admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def start(self) -> CeleryAirflow:
        super().start()
        logs = self.home / "process-logs"
        self._run([str(BIN / "airflow"), "celery", "worker", "--skip-serve-logs", "--without-mingle", "--without-gossip"], logs / "celery-worker.log")
        return self

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(self.database_url.replace("postgresql+psycopg2://", "postgresql://", 1)) as db, db.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.fetchall()

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180.0) -> None:
        import psycopg2

        try:
            super().wait_for_dags(dag_ids, timeout)
        except psycopg2.Error as exc:  # the tables exist after migrate; anything else is a real error
            raise RuntimeError(f"reading the metadata DB failed: {exc}") from exc


class AirflowAPI:
    """The public REST API (``/api/v2``) of an Airflow with the simple auth manager, as user ``username``."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def token(self) -> str:
        """A JWT from ``POST /auth/token`` (fetched once; Airflow's default lifetime is a day)."""
        if self._token is None:
            req = urllib.request.Request(f"{self.base_url}/auth/token", data=json.dumps(self._credentials).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    self._token = json.loads(resp.read())["access_token"]
            except urllib.error.HTTPError as exc:
                raise RuntimeError(f"POST /auth/token answered {exc.code}: {exc.read().decode(errors='replace')[:500]}") from None
        return self._token

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base_url}/api/v2{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path} answered {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from None

    def unpause(self, dag_id: str) -> dict:
        return self.call("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, run_id: str, conf: dict, logical_date: str | None = None) -> dict:
        return self.call("POST", f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "conf": conf, "logical_date": logical_date})

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, poll_s: float = 3.0) -> dict:
        """Poll the run until it finishes; returns the run (``state`` success or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(poll_s)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, int]:
        """Count of task instances (mapped ones included) by state."""
        out: dict[str, int] = {}
        for ti in self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]:
            out[str(ti["state"])] = out.get(str(ti["state"]), 0) + 1
        return out
