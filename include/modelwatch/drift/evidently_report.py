"""Analyst-facing Evidently reports per model and day, and a local Evidently workspace over them.

``build_report`` runs an Evidently 0.7 ``Report`` on (capped samples of) a reference and a current
frame: ``DataDriftPreset`` over the numerical and categorical columns and a ``TextEvals`` summary of
offline text descriptors (length, word count, share of non-letter characters) for the free-text
columns. It returns the standalone HTML page, the serialised snapshot, and Evidently's own drift
verdict so callers can cross-check it against theirs. Every text of the report (category values,
column and descriptor names, the title) stays data on the page: its embedded JSON cannot end its
script element, and a Content-Security-Policy lets only the page's own scripts run. The report runs with Evidently's tests on:
the per-column drift verdict is a ValueDrift test result, and TextEvals adds its default tests
(descriptor statistics within 10% of the reference), which the page lists.

``drift.evidently_workspace.add_to_workspace`` files the snapshot into an Evidently workspace (a
local folder or the reports bucket), one project per model, so the Evidently UI shows the trend across days.

Evidently takes seconds to import, so it is imported inside the functions, never at module top.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MAX_ROWS = 20_000
TAG = "modelwatch"

VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"
MEAN_VALUE = "evidently:metric_v2:MeanValue"


@dataclass(frozen=True)
class EvidentlyRun:
    """One Evidently report: the page for people, the snapshot for the workspace, the verdict for code."""

    html: str
    """Full standalone HTML page (Evidently's renderer and data inlined; opens offline). No text of the data can end
    its script element; its Content-Security-Policy lets only its own scripts run and load nothing from the network."""
    snapshot_json: str
    """The serialised snapshot (``Snapshot.dumps()``); ``Snapshot.loads`` reads it back."""
    rows_reference: int
    """Reference rows the report ran on, after sampling."""
    rows_current: int
    """Current rows the report ran on, after sampling."""
    drifted_columns: list[str]
    """Columns whose per-column drift test failed, in the order they were checked."""
    drift_share: float
    """Evidently's share of drifted columns among ``drift_columns`` (0.0 when none were checked)."""
    drift_columns: list[str] = field(default_factory=list)
    """Numerical and categorical columns the drift preset checked (declared minus skipped)."""
    skipped_columns: dict[str, str] = field(default_factory=dict)
    """Declared columns left out of the report, with the reason (e.g. all null on one side)."""


# --------------------------------------------------------------------------- building a report


def build_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: list[str],
    categorical: list[str],
    text: list[str],
    timestamp: datetime,
    title: str,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
    current_rows: int | None = None,
) -> EvidentlyRun:
    """Run Evidently on reference vs current and return the page, the snapshot and the drift verdict.

    Each side is uniformly sampled (without replacement, ``seed``) down to ``max_rows`` rows; the
    sampling is written into the page header and the snapshot metadata. Declared columns that are
    missing or entirely null on either side are dropped and reported in ``skipped_columns``.
    ``timestamp`` is the snapshot time the workspace trend is plotted on; an aware datetime is
    converted to naive UTC, the form Evidently itself uses. ``current_rows`` is the number of rows ``current`` was
    drawn from when it is already a uniform sample of them (the drift stage's bottom-k report sample); the page
    then says the report was computed on a uniform sample of k of n rows.

    Raises ``ValueError`` if a column is declared under two types, ``max_rows`` is not positive,
    or no declared column is usable.
    """
    from evidently import DataDefinition, Dataset, Report

    _check_declared(numerical, categorical, text)
    if max_rows < 1:
        raise ValueError(f"max_rows must be positive, got {max_rows}")
    skipped = _unusable_columns(reference, current, [*numerical, *categorical, *text])
    numerical, categorical, text = ([c for c in cols if c not in skipped] for cols in (numerical, categorical, text))
    columns = [*numerical, *categorical, *text]
    if not columns:
        raise ValueError(f"no usable column for an Evidently report: {skipped or 'none declared'}")

    ref = _sample(reference, columns, max_rows, seed)
    cur = _sample(current, columns, max_rows, seed)
    current_total = max(current_rows or 0, len(current))
    sampling = _sampling_note(len(reference), len(ref), current_total, len(cur), seed, presampled=current_total > len(current))
    definition = DataDefinition(
        numerical_columns=numerical,
        categorical_columns=categorical,
        text_columns=text,
        datetime_columns=[],
        unknown_columns=[],
        list_columns=[],
    )
    current_data = Dataset.from_pandas(cur, data_definition=definition, descriptors=_text_descriptors(text))
    reference_data = Dataset.from_pandas(ref, data_definition=definition, descriptors=_text_descriptors(text))
    # include_tests: the per-column drift verdict exists only as ValueDrift's test result.
    report = Report(_report_items(numerical + categorical, text), include_tests=True)
    snapshot = report.run(
        current_data,
        reference_data,
        timestamp=naive_utc(timestamp),
        metadata=_metadata(title, sampling, len(ref), len(cur), skipped),
        tags=[TAG],
        name=title,
    )
    drifted, share = _drift_verdict(snapshot)
    html = _page(snapshot, title, [sampling, *_skipped_notes(skipped)])
    return EvidentlyRun(
        html=html,
        snapshot_json=snapshot.dumps(),
        rows_reference=len(ref),
        rows_current=len(cur),
        drifted_columns=drifted,
        drift_share=share,
        drift_columns=numerical + categorical,
        skipped_columns=skipped,
    )


def drift_verdict(snapshot_json: str) -> tuple[list[str], float]:
    """Evidently's drift verdict stored in a serialised snapshot: (drifted columns, share of drifted columns)."""
    from evidently.core.report import Snapshot

    return _drift_verdict(Snapshot.loads(snapshot_json))


def _check_declared(numerical: list[str], categorical: list[str], text: list[str]) -> None:
    """Reject a column declared under more than one type (Evidently would silently pick one)."""
    seen: dict[str, str] = {}
    for kind, columns in (("numerical", numerical), ("categorical", categorical), ("text", text)):
        for column in columns:
            if column in seen:
                raise ValueError(f"column {column!r} declared both {seen[column]} and {kind}")
            seen[column] = kind


def _unusable_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> dict[str, str]:
    """Declared columns that are missing or entirely null on a side, with the reason."""
    skipped: dict[str, str] = {}
    for column in columns:
        reasons = [f"{reason} in {side}" for side, frame in (("reference", reference), ("current", current)) if (reason := _column_problem(frame, column))]
        if reasons:
            skipped[column] = "; ".join(reasons)
    return skipped


def _column_problem(frame: pd.DataFrame, column: str) -> str | None:
    """Why ``column`` cannot be compared on this side, or None if it can."""
    if column not in frame.columns:
        return "missing"
    if not frame[column].notna().any():
        return f"all null ({len(frame):,} rows)"
    return None


def _sample(frame: pd.DataFrame, columns: list[str], max_rows: int, seed: int) -> pd.DataFrame:
    """``columns`` of a uniform random sample of at most ``max_rows`` rows (all rows if fewer), with a fresh index."""
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed)
    import pandas as pd
    import pyarrow as pa

    frame = frame[columns].reset_index(drop=True)
    for column in columns:  # Arrow-backed text (columns.drift_frame, or read back so) as the Python strings, None when missing, Evidently expects
        if isinstance(frame[column].dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_string_dtype(frame[column].dtype):
            frame[column] = pd.Series(pa.array(frame[column], from_pandas=True).to_pylist(), index=frame.index, dtype=object)
    return frame


def _sampling_note(ref_total: int, ref_used: int, cur_total: int, cur_used: int, seed: int, presampled: bool = False) -> str:
    """One line saying how many rows of each side the report saw (``presampled``: the current rows came as a uniform sample)."""
    if ref_used == ref_total and cur_used == cur_total:
        return f"All rows: reference {ref_total:,}, current {cur_total:,}."
    if presampled:
        reference = f"reference {ref_total:,} rows" if ref_used == ref_total else f"reference {ref_used:,} of {ref_total:,} rows (uniform random sample, seed {seed})"
        return (f"Current day computed on a uniform sample of {cur_used:,} of {cur_total:,} rows (the smallest request-id hashes); "
                f"{reference}.")
    return f"Uniform random sample (seed {seed}): reference {ref_used:,} of {ref_total:,} rows, current {cur_used:,} of {cur_total:,} rows."


def _skipped_notes(skipped: dict[str, str]) -> list[str]:
    return [f"Skipped column {column!r}: {reason}." for column, reason in skipped.items()]


def _descriptor_aliases(column: str) -> dict[str, str]:
    """Names of the descriptor columns computed for one text column (kind -> column name)."""
    return {
        "length": f"{column}: text length",
        "words": f"{column}: word count",
        "non_letter": f"{column}: non-letter %",
    }


def _text_descriptors(text: list[str]) -> list[Any]:
    """Offline text descriptors (no NLTK corpora, no models) for each text column."""
    from evidently.descriptors import NonLetterCharacterPercentage, TextLength, WordCount

    descriptors: list[Any] = []
    for column in text:
        alias = _descriptor_aliases(column)
        descriptors += [
            TextLength(column, alias=alias["length"]),
            WordCount(column, alias=alias["words"]),
            NonLetterCharacterPercentage(column, alias=alias["non_letter"]),
        ]
    return descriptors


def _report_items(drift_columns: list[str], text: list[str]) -> list[Any]:
    """Drift over the numerical + categorical columns; text descriptor summaries if there is text."""
    from evidently.presets import DataDriftPreset, TextEvals

    items: list[Any] = []
    if drift_columns:
        items.append(DataDriftPreset(columns=drift_columns))
    if text:
        items.append(TextEvals(columns=[name for column in text for name in _descriptor_aliases(column).values()]))
    return items


def naive_utc(timestamp: datetime) -> datetime:
    """Evidently stores and compares naive timestamps; convert an aware one to naive UTC."""
    return timestamp if timestamp.tzinfo is None else timestamp.astimezone(UTC).replace(tzinfo=None)


def _metadata(title: str, sampling: str, rows_reference: int, rows_current: int, skipped: dict[str, str]) -> dict[str, str]:
    """Snapshot metadata. Values stay strings: Evidently's UI hashes metadata items when filtering."""
    return {
        "title": title,
        "sampling": sampling,
        "rows_reference": str(rows_reference),
        "rows_current": str(rows_current),
        "skipped_columns": json.dumps(skipped, sort_keys=True),
    }


def _drift_verdict(snapshot: Any) -> tuple[list[str], float]:
    """Columns whose ValueDrift test failed, and the share from DriftedColumnsCount (0.0 if drift was not run)."""
    from evidently.legacy.tests.base_test import TestStatus

    drifted = [
        test.metric_config.params["column"]
        for test in snapshot.tests_results
        if test.metric_config.params.get("type") == VALUE_DRIFT and test.status == TestStatus.FAIL
    ]
    shares = [
        float(result.share.value)
        for result in snapshot.metric_results.values()
        if result.metric_value_location is not None and result.metric_value_location.metric.params.get("type") == DRIFTED_COLUMNS_COUNT
    ]
    return drifted, (shares[0] if shares else 0.0)


_NO_DATA = "<!-- no embedded data -->"
"""What Evidently's page template writes in place of its data block when asked not to embed the data."""
_SCRIPT_JSON_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _page(snapshot: Any, title: str, notes: list[str]) -> str:
    """The standalone report page: Evidently's template and code, its data embedded so that no text can leave it.

    Evidently's own ``get_html_str`` writes its JSON raw into a <script> element, so a category
    value or column name holding ``</script>`` ends the element and the rest is parsed as HTML
    (and runs). Here Evidently's template is rendered without its data, and the same data, as
    the same two variables, goes in as JSON in which ``<``, ``>`` and ``&`` are escaped
    (``_script_json``). The other additions (policy, <title>, header) are placed at landmarks of
    that template before any data is in it, so no text of the data can be mistaken for one. The
    Content-Security-Policy, first in <head>, lets run only the scripts written here (by hash:
    Evidently's three and the data block), so even text that got out of its string could not run.
    """
    from evidently.legacy.utils import NumpyEncoder
    from evidently.legacy.utils.dashboard import dashboard_info_to_json, file_html_template

    params = _template_params(snapshot)
    shell = file_html_template(params)  # Evidently's styles, renderer and draw call; no traffic text in it
    dashboard = params.dashboard_id
    data = (f"\n    var {dashboard} = {_script_json(dashboard_info_to_json(params.dashboard_info))};"
            f"\n    var additional_graphs_{dashboard} = {_script_json(json.dumps(params.additional_graphs, cls=NumpyEncoder))};\n")
    policy = _content_security_policy([*_inline_scripts(shell), data])
    page = _replace_first(shell, "<head>", f'<head>\n<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">')
    page = _replace_first(page, "</style>", f"</style>\n<title>{escape(title)}</title>")
    page = _replace_first(page, "<body>", f"<body>\n{_header(title, notes)}")
    return _replace_first(page, _NO_DATA, f"<script>{data}</script>")  # last: the only step that brings in traffic text


def _template_params(snapshot: Any) -> Any:
    """The widgets and detail graphs Evidently 0.7's ``Snapshot.get_html_str`` renders, as parameters of its page template,
    with ``embed_data`` off.

    These are the steps of ``get_html_str`` and ``render_widgets``: Evidently has no way to change how its template
    serialises the data, so the parameters are made here (a unit test pins that the data equals what Evidently's own
    page embeds).
    """
    from evidently.legacy.model.dashboard import DashboardInfo
    from evidently.legacy.model.widget import AdditionalGraphInfo, BaseWidgetInfo
    from evidently.legacy.renderers.base_renderer import DetailsInfo
    from evidently.legacy.renderers.html_widgets import group_widget
    from evidently.legacy.utils.dashboard import TemplateParams

    model = snapshot.to_snapshot_model()
    widgets = [group_widget(title="", widgets=model.widgets), *model.tests_widgets]
    details = [DetailsInfo(title="", info=graph.params if isinstance(graph, AdditionalGraphInfo) else graph, id=graph.id)
               for widget in widgets for graph in widget.get_additional_graphs()]
    graphs = {f"{item.id}": item.info.dict() if isinstance(item.info, BaseWidgetInfo) else item.info for item in details}
    return TemplateParams(dashboard_id=f"metric_{uuid.uuid4().hex}", dashboard_info=DashboardInfo(name="Report", widgets=widgets),
                          additional_graphs=graphs, embed_data=False)


def _script_json(text: str) -> str:
    """JSON text that can sit inside a <script> element: the same value, with no ``<``, ``>`` or ``&`` (so neither
    ``</script>`` nor ``<!--``) and no raw U+2028/U+2029. Outside strings JSON has none of these characters, and
    inside a string the ``\\u`` escape is the same character."""
    return text.translate(_SCRIPT_JSON_ESCAPES)


class _ScriptCollector(HTMLParser):
    """The text of each inline <script> element of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.scripts: list[list[str]] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append([])
            self._inside = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.scripts[-1].append(data)


def _inline_scripts(page: str) -> list[str]:
    """The exact text of each inline script of ``page``, in order (what a browser hashes for script-src)."""
    collector = _ScriptCollector()
    collector.feed(page)
    collector.close()
    return ["".join(chunks) for chunks in collector.scripts]


def _content_security_policy(scripts: list[str]) -> str:
    """Nothing but ``scripts`` may run; no connection, frame, plugin, form target or base URL.

    Inline styles stay allowed: Evidently's renderer inserts <style> elements at run time (a list of their
    hashes would break silently whenever its internal CSS changes) and the page's header uses style attributes.
    The one font is the embedded icon font (a data: URL); the only images are the blob: URLs Plotly's
    "download plot as PNG" draws the chart through.
    """
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'" for script in scripts)
    return (f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; font-src data:; img-src blob:; "
            "base-uri 'none'; form-action 'none'")


def _replace_first(page: str, marker: str, replacement: str) -> str:
    """``page`` with its first ``marker`` (a landmark of Evidently's template) replaced; ValueError if there is none."""
    before, found, after = page.partition(marker)
    if not found:
        raise ValueError(f"Evidently's page template has no {marker!r}; the report page cannot be built safely")
    return before + replacement + after


def _header(title: str, notes: list[str]) -> str:
    """The visible header modelwatch adds to Evidently's page: the title and the notes (sampling, skipped columns)."""
    lines = "".join(f"<p style='margin:.2rem 0;color:#52606d'>{escape(note)}</p>" for note in notes)
    return f"<header style='font-family:system-ui,sans-serif;padding:1rem 1.5rem 0'><h1 style='margin:0 0 .4rem'>{escape(title)}</h1>{lines}</header>"
