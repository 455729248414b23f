"""The Evidently workspace over the daily reports: one project per model, one snapshot per day, on a folder or S3.

``add_to_workspace`` files a report's snapshot (``drift.evidently_report.build_report``) into
Evidently's own workspace layout on any fsspec location, so ``evidently ui`` (``drift.evidently_ui``)
shows the trend across days. Project and snapshot ids are name-based, so a re-run or a second
writer replaces a day instead of adding one. ``configure_s3`` makes ``s3://`` readable for
Evidently through fsspec (s3fs when installed, else pyarrow's S3 client).

Evidently takes seconds to import, so it is imported inside the functions, never at module top.
"""

from __future__ import annotations

import fcntl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from modelwatch.drift.evidently_report import DRIFTED_COLUMNS_COUNT, MEAN_VALUE, VALUE_DRIFT, naive_utc

LOCK_FILE = ".modelwatch.lock"
"""Lock file inside the workspace; Evidently only reads UUID-named entries, so it ignores it."""


S3_PROTOCOL = "s3"
SNAPSHOT_NAMESPACE = uuid.UUID("5b0f6c3e-8d0e-4c1f-9d8a-6f1e0c7a2b44")
"""Namespace of the name-based (RFC 4122 version 5) project and snapshot ids: a model's project and a day's snapshot
have the same id on every worker, so a re-run or a second writer replaces the day instead of adding one."""


def workspace_ui_path(project_id: str, run_id: str) -> str:
    """The Evidently UI's page of one snapshot (its route ``/projects/:projectId/reports/:snapshotId``)."""
    return f"projects/{project_id}/reports/{run_id}"


def add_to_workspace(workspace_uri: str | Path, project_name: str, snapshot_json: str, *, description: str | None = None,
                     s3_client: Any = None) -> tuple[str, str]:
    """Add a serialised snapshot to the project ``project_name`` of an Evidently workspace; return (project id, run id).

    The workspace is Evidently's own file layout (``evidently.ui.workspace.Workspace``) on any fsspec location: a local
    folder, or an ``s3://bucket/prefix`` URI (for S3, ``s3_client``, a boto3 client, gives the endpoint and credentials;
    see ``configure_s3``). The project is created on first use with the trend dashboard (``_trend_dashboard``).
    The project id is derived from its name and the run id from the project and the snapshot's timestamp (uuid5), so
    one model day is one object: a re-run of the day, or two workers writing it at once, write the same key and the
    last complete write stays (an S3 PUT replaces an object whole). On a local folder, writers on one machine are
    serialised by a lock file in the workspace, since a local write is not atomic.
    """
    from evidently.core.report import Snapshot
    from evidently.ui.storage.local.base import LocalState

    snapshot = Snapshot.loads(snapshot_json)
    uri = str(workspace_uri)
    if uri.startswith(f"{S3_PROTOCOL}://"):
        configure_s3(s3_client)
        guard: Any = _unlocked()
    else:
        Path(uri).mkdir(parents=True, exist_ok=True)
        guard = _locked(Path(uri) / LOCK_FILE)
    with guard:
        # the workspace's file state (what ``Workspace(uri).state`` is) without ``Workspace`` itself, which reads every
        # snapshot of every project when it opens: O(days) per write, and on S3 it can read a snapshot another writer is replacing
        state = LocalState(uri)
        project_id = _project(state, project_name, description)
        run_id = snapshot_id(project_id, _timestamp(snapshot))
        state.write_snapshot(project_id, run_id, snapshot.to_snapshot_model())  # what Workspace.add_run writes, under the day's id
    return str(project_id), str(run_id)


def project_id(project_name: str) -> uuid.UUID:
    """The id of the workspace project called ``project_name`` when modelwatch creates it."""
    return uuid.uuid5(SNAPSHOT_NAMESPACE, f"project:{project_name}")


def snapshot_id(project: uuid.UUID | str, timestamp: datetime) -> uuid.UUID:
    """The id of the project's snapshot at ``timestamp`` (naive UTC, as Evidently stores it)."""
    return uuid.uuid5(SNAPSHOT_NAMESPACE, f"snapshot:{project}:{naive_utc(timestamp).isoformat()}")


@contextmanager
def _unlocked() -> Iterator[None]:
    yield


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock held for the duration of the block."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _timestamp(snapshot: Any) -> datetime:
    """The snapshot's timestamp (``to_snapshot_model`` is Evidently's public view of it)."""
    return snapshot.to_snapshot_model().timestamp


def _project(state: Any, name: str, description: str | None) -> Any:
    """The id of the project called ``name``: an existing one (the smallest id if several), else one created under
    ``project_id(name)``; a project without a dashboard gets the trend dashboard."""
    from evidently.sdk.models import ProjectModel

    found = sorted(_projects_named(state, name), key=str)
    if found:
        project = found[0]
    else:
        project = project_id(name)
        state.write_project(ProjectModel(id=project, name=name, description=description or _default_description(name)))
    if not state.read_dashboard(project).tabs:
        state.write_dashboard(project, _trend_dashboard())
    return project


def _projects_named(state: Any, name: str) -> list[Any]:
    """Ids of the workspace's projects called ``name``.

    Not ``Workspace.search_project``: it fails on a project another writer is creating, whose folder
    (on S3, its directory marker) is listed before its project file exists.
    """
    ids = []
    for candidate in state.list_projects():
        try:
            model = state.read_project(candidate)
        except FileNotFoundError:
            continue
        if model.name == name:
            ids.append(model.id)
    return ids


def _default_description(name: str) -> str:
    return f"modelwatch daily Evidently reports for {name}: drift of numerical and categorical columns, text statistics."


def _trend_dashboard() -> Any:
    """A 'Trends' tab plotting the per-day snapshots in ``evidently ui``: the share of drifted columns, each column's
    drift score, and the daily mean of each text descriptor.

    Built as one ``DashboardModel`` rather than with ``project.dashboard.add_panel(..., tab=...)``,
    which in 0.7.23 lists a panel twice in a tab that already exists.
    """
    from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric
    from evidently.sdk.panels import line_plot_panel

    panels = [
        line_plot_panel(
            title="Share of drifted columns",
            values=[PanelMetric(legend="share", metric=DRIFTED_COLUMNS_COUNT, metric_labels={"value_type": "share"})],
        ),
        line_plot_panel(title="Drift score per column", values=[PanelMetric(legend="{{column}}", metric=VALUE_DRIFT)]),
        line_plot_panel(title="Text descriptors (daily mean)", values=[PanelMetric(legend="{{column}}", metric=MEAN_VALUE)]),
    ]
    return DashboardModel(tabs=[DashboardTabModel(title="Trends", panels=[panel.id for panel in panels])], panels=panels)


# --------------------------------------------------------------------------- S3 through fsspec


def s3_storage_options(client: Any) -> dict[str, Any]:
    """fsspec storage options (s3fs's names: ``endpoint_url``, ``key``, ``secret``, ``client_kwargs.region_name``)
    that reach the bucket the way the boto3 ``client`` does: its endpoint, region and resolved credentials."""
    options: dict[str, Any] = {"client_kwargs": {"region_name": client.meta.region_name}}
    if client.meta.endpoint_url:
        options["endpoint_url"] = client.meta.endpoint_url
    credentials = client._get_credentials()  # botocore resolves the credential chain per client; it has no public getter
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        options.update(key=frozen.access_key, secret=frozen.secret_key)
        if frozen.token:
            options["token"] = frozen.token
    return options


def configure_s3(client: Any = None) -> None:
    """Make ``s3://`` workspace URIs work in this process, for Evidently's storage (which opens its location with
    ``fsspec.get_fs_token_paths`` and no options).

    With s3fs installed, fsspec uses it; otherwise ``s3`` is registered to ``ArrowS3FileSystem`` (pyarrow's S3 client
    behind fsspec's Arrow wrapper). The options come from ``client`` when given, else from fsspec's own configuration
    (``FSSPEC_S3_ENDPOINT_URL``, ``FSSPEC_S3_KEY``, ``FSSPEC_S3_SECRET`` in the environment), for either implementation.
    """
    import importlib.util

    import fsspec
    import fsspec.config

    if importlib.util.find_spec("s3fs") is None:
        fsspec.register_implementation(S3_PROTOCOL, ArrowS3FileSystem, clobber=True)
    if client is not None:
        fsspec.config.conf[S3_PROTOCOL] = {**fsspec.config.conf.get(S3_PROTOCOL, {}), **s3_storage_options(client)}


def _arrow_wrapper() -> type:
    from fsspec.implementations.arrow import ArrowFSWrapper

    return ArrowFSWrapper


class ArrowS3FileSystem(_arrow_wrapper()):  # type: ignore[misc]
    """fsspec's ``s3`` protocol over ``pyarrow.fs.S3FileSystem``, taking s3fs's option names, so that Evidently's
    fsspec storage reads and writes S3 where s3fs cannot be installed (its aiobotocore pins an older botocore than
    the locked boto3). Buckets are never created."""

    protocol = S3_PROTOCOL

    def __init__(self, endpoint_url: str | None = None, key: str | None = None, secret: str | None = None, token: str | None = None,
                 client_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        import pyarrow.fs

        client_kwargs = client_kwargs or {}
        s3 = pyarrow.fs.S3FileSystem(
            access_key=key, secret_key=secret, session_token=token,
            endpoint_override=endpoint_url or client_kwargs.get("endpoint_url"),
            region=client_kwargs.get("region_name") or "us-east-1",
            allow_bucket_creation=False, allow_bucket_deletion=False,
        )
        super().__init__(s3, **kwargs)
