"""Row-level validation of a partition with Great Expectations (GX Core 1.x, ephemeral context).

The contract's expectations are built from its row rules (``core.contract.row_rules``: the
same rules the serving client checks before it sends a row), then come the model's own
suite (``validation.suite``, a GX suite file under ``include/config/gx/``) and the rules that
depend on the run (allowed variants, the model id, the partition's time window). GX maps
each failure back to its row through the ``_row_id`` column, so every failing row is
quarantined with every reason that applies to it.

Two rules are checked outside GX because GX cannot express them as wanted: values of
the wrong JSON type (found while reading, before a typed frame exists), and duplicate
request ids, where the first occurrence is kept and later ones are quarantined
(GX's uniqueness expectation would reject every copy).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.config import CONFIG_DIR, Model
from modelwatch.core.contract import LINE, ROW_ID, SOURCE, TYPE_ERRORS, RowRule, row_rules
from modelwatch.core.partition import Partition
from modelwatch.ingest.schema import RAW_LIMIT, REJECT_SCHEMA

SUITES_DIR = CONFIG_DIR / "gx"
EPOCH_COLUMN = "_epoch_s"
_GX_COLUMNS = [
    ROW_ID, "request_id", "timestamp", "model_id", "variant", "status", "latency_ms", "prompt", "response",
    "prompt_tokens", "completion_tokens", "cost_usd", "features", "prediction", "probability", "feedback",
]


class ContractViolation(RuntimeError):
    """Too large a share of a partition broke the contract; the run must stop."""


@dataclass
class ValidationOutcome:
    valid: pa.Table
    rejects: pa.Table
    rows_in: int
    failures: dict[str, int] = field(default_factory=dict)  # rule -> rows failing it
    examples: dict[str, list[str]] = field(default_factory=dict)  # rule -> a few offending values

    @property
    def rows_valid(self) -> int:
        return self.valid.num_rows

    @property
    def rows_quarantined(self) -> int:
        return self.rejects.num_rows


def load_suite_file(name: str, suites_dir: Path = SUITES_DIR) -> dict[str, Any]:
    path = suites_dir / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"GX suite {path} does not exist; add it or fix validation.suite in the config") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"GX suite {path} is not valid JSON: {exc}") from None


def partition_window(partition: Partition) -> tuple[datetime, datetime]:
    """[start, end) of the partition in UTC."""
    start = datetime(partition.dt.year, partition.dt.month, partition.dt.day, tzinfo=UTC)
    if partition.hour is None:
        return start, start + timedelta(days=1)
    start += timedelta(hours=partition.hour)
    return start, start + timedelta(hours=1)


STATUS_OK = 'status == "ok"'  # GX row condition (pandas parser) of a rule that holds for ok rows only


def rule_expectation(rule: RowRule) -> dict[str, Any]:
    """One contract row rule (``core.contract.RowRule``) as a GX expectation dict."""
    kwargs: dict[str, Any] = {"column": rule.field}
    if rule.check == "required":
        kind = "expect_column_values_to_not_be_null"
        if rule.status_ok:
            kwargs.update(row_condition=STATUS_OK, condition_parser="pandas")
    elif rule.check == "allowed":
        kind, kwargs["value_set"] = "expect_column_values_to_be_in_set", list(rule.allowed)
    elif rule.check == "range":
        kind = "expect_column_values_to_be_between"
        kwargs.update(min_value=rule.low, max_value=rule.high)
    else:
        kind = "expect_column_value_lengths_to_be_between"
        kwargs.update(min_value=rule.low, max_value=rule.high)
    return {"type": kind, "kwargs": kwargs}


def contract_expectations(model_kind: str) -> list[dict[str, Any]]:
    """The log contract's row rules for a model kind as GX expectations, built from ``core.contract`` alone."""
    return [rule_expectation(rule) for rule in row_rules(model_kind)]


def expectations_for(model: Model, partition: Partition, suites_dir: Path = SUITES_DIR) -> list[dict[str, Any]]:
    """The ordered expectation list for one model and partition, as GX expectation dicts: the contract's row rules,
    the model's own suite file, then the rules of the run."""
    expectations = contract_expectations(model.kind)
    if model.validation.suite:
        expectations += load_suite_file(model.validation.suite, suites_dir)["expectations"]
    start, end = partition_window(partition)
    expectations += [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "variant", "value_set": model.allowed_variants()}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "model_id", "value_set": [model.id]}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": EPOCH_COLUMN, "min_value": start.timestamp(), "max_value": end.timestamp(), "strict_max": True},
            "meta": {"label": f"timestamp inside the partition [{start.isoformat()}, {end.isoformat()})"},
        },
    ]
    return expectations


def rule_label(expectation: dict[str, Any]) -> str:
    """A short human name for an expectation: what the row must satisfy."""
    kw = expectation["kwargs"]
    column = kw.get("column", "")
    label = (expectation.get("meta") or {}).get("label")
    if label:
        return label
    kind = expectation["type"]
    when = f" when {kw['row_condition']}" if kw.get("row_condition") else ""
    if kind == "expect_column_values_to_not_be_null":
        return f"{column} is required{when}"
    if kind == "expect_column_values_to_be_in_set":
        return f"{column} must be one of {kw['value_set']}"
    if kind == "expect_column_values_to_be_between":
        return f"{column} must be within [{kw.get('min_value')}, {kw.get('max_value')}]"
    if kind == "expect_column_value_lengths_to_be_between":
        return f"length of {column} must be within [{kw.get('min_value')}, {kw.get('max_value')}]"
    return f"{kind}({column}){when}"


def _quiet_gx() -> None:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


class GxRunner:
    """One ephemeral GX context and suite, validating any number of pandas batches against it.

    Building the context costs about a second, so a stream of batches shares one.
    """

    def __init__(self, expectations: list[dict[str, Any]]):
        _quiet_gx()
        import great_expectations as gx
        from great_expectations.core.expectation_suite import ExpectationSuite
        from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig

        context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                progress_bars=ProgressBarsConfig(globally=False),
                analytics_enabled=False,
            ),
        )
        self._expectations = expectations
        self._definition = context.data_sources.add_pandas("modelwatch").add_dataframe_asset("partition").add_batch_definition_whole_dataframe("whole")
        tagged = [{"type": e["type"], "kwargs": e["kwargs"], "meta": {"mw_index": i}} for i, e in enumerate(expectations)]
        self._suite = context.suites.add(ExpectationSuite(name="run", expectations=tagged))

    def run(self, frame) -> list[tuple[dict[str, Any], list[int], list[Any]]]:
        """(expectation, failing row ids, offending values) per expectation, in the expectations' order."""
        batch = self._definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(self._suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]})
        out = []
        for res in result.results:  # GX does not keep the suite's order: map back through the tag
            expectation = self._expectations[int(res.expectation_config.meta["mw_index"])]
            if res.exception_info and res.exception_info.get("raised_exception"):
                raise RuntimeError(f"GX could not evaluate {rule_label(expectation)}: {res.exception_info.get('exception_message')}")
            indices = res.result.get("unexpected_index_list") or []
            ids = [int(item[ROW_ID]) for item in indices]
            values = res.result.get("unexpected_list") or []
            out.append((expectation, ids, values))
        return out


def _gx_frame(table: pa.Table):
    frame = table.select(_GX_COLUMNS).to_pandas()
    epoch = pc.divide(pc.cast(pc.cast(table["timestamp"], pa.timestamp("us")), pa.int64()), 1_000_000.0)
    frame[EPOCH_COLUMN] = epoch.to_numpy(zero_copy_only=False)
    return frame


def request_hashes(request_ids: pa.Array) -> np.ndarray:
    """64-bit hashes of request ids (pandas' ``hash_array``, SipHash-2-4 with a fixed key), for duplicate checks in bounded memory.

    Two different ids collide with probability about n² / 2⁶⁵: one in 300,000 for a day of 10M requests.
    """
    from pandas.util import hash_array

    return hash_array(np.asarray(request_ids.to_numpy(zero_copy_only=False), dtype=object), categorize=False)


class DuplicateTracker:
    """The first occurrence of every request id across batches: a sorted array of hashes with each one's source and line.

    Memory is 24 bytes per distinct id (hash, location, row id) rather than a set of strings; the first occurrence is
    kept and later ones are repeats (GX's uniqueness expectation would reject every copy).
    """

    def __init__(self) -> None:
        self.hashes = np.empty(0, np.uint64)
        self.where = np.empty(0, np.int64)  # source index << 32 | line
        self.row_ids = np.empty(0, np.int64)
        self.sources: list[str] = []
        self._source_index: dict[str, int] = {}

    def location(self, position: int) -> str:
        code = int(self.where[position])
        return f"{self.sources[code >> 32]}:{code & 0xFFFFFFFF}"

    def _codes(self, sources: list[str], lines: np.ndarray) -> np.ndarray:
        index = np.array([self._source_index.setdefault(s, len(self._source_index)) for s in sources], np.int64)
        self.sources += list(self._source_index)[len(self.sources):]
        return (index << 32) | lines.astype(np.int64)

    def repeats(self, hashes: np.ndarray, sources: list[str], lines: np.ndarray, row_ids: np.ndarray) -> dict[int, str]:
        """Position in the batch -> where that request id was first seen, for every repeat; records the batch's new ids."""
        if hashes.size == 0:
            return {}
        codes = self._codes(sources, lines)
        out: dict[int, str] = {}
        unique, first = np.unique(hashes, return_index=True)
        if unique.size < hashes.size:  # repeats within the batch
            first_of = dict(zip(unique.tolist(), first.tolist()))
            for i, h in enumerate(hashes.tolist()):
                if first_of[h] != i:
                    out[i] = f"{sources[first_of[h]]}:{int(lines[first_of[h]])}"
        at = np.searchsorted(self.hashes, unique)
        seen = (at < self.hashes.size) & (self.hashes[np.minimum(at, max(self.hashes.size - 1, 0))] == unique) if self.hashes.size else np.zeros(unique.size, bool)
        if seen.any():
            earlier = {h: self.location(int(p)) for h, p in zip(unique[seen].tolist(), at[seen].tolist())}
            for i, h in enumerate(hashes.tolist()):
                if h in earlier:
                    out[i] = earlier[h]
        new = ~seen
        self.hashes = np.insert(self.hashes, at[new], unique[new])
        self.where = np.insert(self.where, at[new], codes[first[new]])
        self.row_ids = np.insert(self.row_ids, at[new], row_ids[first[new]])
        return out

    def first_occurrences(self) -> pa.Table:
        """Every distinct id seen, as ``ingest.shards.IDS_SCHEMA`` rows: what the reduce step checks across shards."""
        from modelwatch.ingest.shards import IDS_SCHEMA

        sources = pa.array(self.sources, pa.string()).take(pa.array(self.where >> 32)) if self.sources else pa.array([], pa.string())
        return pa.Table.from_arrays([pa.array(self.hashes, pa.uint64()), sources, pa.array(self.where & 0xFFFFFFFF), pa.array(self.row_ids)], schema=IDS_SCHEMA)


EXAMPLES = 3  # examples kept per rule
EXAMPLE_RAW = 200  # characters of a rejected line shown in an example


def example(source: str, line: int, shown: str) -> str:
    """One located example of a rule's failure, as summaries and the invalid-share error show it: ``<file> line <n>: <what>``."""
    return f"{source} line {line}: {shown}"


def _absent(value: Any) -> str:
    """How an example shows a value GX reported as null: ``missing`` when the field was absent or null, ``NaN`` when it was NaN."""
    return "missing" if value is None else "NaN" if value != value else repr(value)[:80]


def raw_json(row: dict[str, Any]) -> str:
    clean = {k: v for k, v in row.items() if k not in (ROW_ID, SOURCE, LINE, TYPE_ERRORS) and v is not None}
    return json.dumps(clean, default=str, sort_keys=True)[:RAW_LIMIT]


class StreamValidator:
    """Validation of a partition that arrives in batches: GX per batch, duplicates across all of them.

    Failure counts and examples accumulate over the batches; each batch comes back split
    into valid rows and rejects (stage ``validate``) with every reason that applies to a row.
    """

    def __init__(self, model: Model, partition: Partition, suites_dir: Path = SUITES_DIR):
        self.model, self.partition = model, partition
        self.gx = GxRunner(expectations_for(model, partition, suites_dir))
        self.duplicates = DuplicateTracker()
        self.failures: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)  # rule -> up to EXAMPLES ``example`` strings
        self._unplaced: list[tuple[str, int, int, str | None, str | None]] = []  # (rule, slot, row id, shown, column): examples awaiting their file and line

    def count_read_rejects(self, rejects: pa.Table) -> None:
        """Count read-stage rejects (``readers``: not UTF-8, not JSON, cut lines) under one rule per kind of reason.

        Each rule keeps up to ``EXAMPLES`` examples: file, line and the first ``EXAMPLE_RAW``
        characters of the raw line (``repr``, so control characters stay visible).
        """
        columns = (rejects[c].to_pylist() for c in (SOURCE, LINE, "reasons", "raw"))
        for source, line, reason, raw in zip(*columns):
            rule = "readable JSON line: " + reason.split(" (")[0]
            self.failures[rule] += 1
            if len(self.examples[rule]) < EXAMPLES:
                self.examples[rule].append(example(source, line, repr((raw or "")[:EXAMPLE_RAW])))

    def _fail(self, reasons: dict[int, list[str]], rule: str, row_id: int, reason: str, shown: str | None, column: str | None = None) -> None:
        """Record a row's failure of ``rule``; ``shown`` None means GX saw a null, told apart (missing or NaN) from ``column`` once the row is at hand."""
        reasons[row_id].append(reason)
        self.failures[rule] += 1
        if len(self.examples[rule]) < EXAMPLES:
            self._unplaced.append((rule, len(self.examples[rule]), row_id, shown, column))
            self.examples[rule].append("")

    def _place_examples(self, bad_rows: dict[int, dict[str, Any]]) -> None:
        for rule, slot, row_id, shown, column in self._unplaced:
            row = bad_rows[row_id]
            self.examples[rule][slot] = example(row[SOURCE], row[LINE], shown if shown is not None else _absent(row.get(column or "")))
        self._unplaced.clear()

    def check(self, table: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(valid rows without ``_type_errors``, rejects) of one batch of canonical rows."""
        reasons: dict[int, list[str]] = defaultdict(list)
        typed_ok = pc.is_null(table[TYPE_ERRORS])
        mistyped = table.filter(pc.invert(typed_ok))
        for row_id, problem in zip(mistyped[ROW_ID].to_pylist(), mistyped[TYPE_ERRORS].to_pylist()):
            for part in problem.split("; "):
                self._fail(reasons, f"type: {part.split(':')[0]}", row_id, part, part.split(": ", 1)[-1][:80])
        checked = table.filter(typed_ok)
        if checked.num_rows:
            for expectation, ids, values in self.gx.run(_gx_frame(checked)):
                label = rule_label(expectation)
                column = expectation["kwargs"].get("column")
                padded = list(values) + [None] * (len(ids) - len(values))
                for row_id, value in zip(ids, padded):
                    if column == EPOCH_COLUMN and value is not None:
                        value = datetime.fromtimestamp(value, tz=UTC).isoformat()
                    shown = None if value is None or value != value else repr(value)[:80]
                    self._fail(reasons, label, row_id, f"{label}; got {shown or 'missing or NaN'}", shown, column)
            self._check_duplicates(checked, reasons)
        bad = pa.array(sorted(reasons), type=pa.int64())
        is_bad = pc.is_in(table[ROW_ID], value_set=bad)
        bad_rows = {r[ROW_ID]: r for r in table.filter(is_bad).to_pylist()}
        self._place_examples(bad_rows)
        rejects = pa.Table.from_pylist(
            [
                {ROW_ID: row_id, SOURCE: r[SOURCE], LINE: r[LINE], "stage": "validate", "reasons": "; ".join(reasons[row_id]), "raw": raw_json(r)}
                for row_id, r in bad_rows.items()
            ],
            schema=REJECT_SCHEMA,
        )
        return table.filter(pc.invert(is_bad)).drop_columns([TYPE_ERRORS]), rejects

    def _check_duplicates(self, checked: pa.Table, reasons: dict[int, list[str]]) -> None:
        present = checked.filter(pc.is_valid(checked["request_id"]))
        hashes = request_hashes(present["request_id"])
        repeats = self.duplicates.repeats(hashes, present[SOURCE].to_pylist(), present[LINE].to_numpy(), present[ROW_ID].to_numpy())
        if not repeats:
            return
        row_ids, request_ids = present[ROW_ID].to_pylist(), present["request_id"].to_pylist()
        for position, first in sorted(repeats.items()):
            reason = f"duplicate request_id {request_ids[position]!r} (first seen at {first})"
            self._fail(reasons, "request_id unique per model and day", row_ids[position], reason, repr(request_ids[position])[:80])


def validate_partition(table: pa.Table, model: Model, partition: Partition, suites_dir: Path = SUITES_DIR) -> ValidationOutcome:
    """Split canonical rows into valid rows and rejects (stage ``validate``) with their reasons: one batch through ``StreamValidator``."""
    validator = StreamValidator(model, partition, suites_dir)
    valid, rejects = validator.check(table)
    return ValidationOutcome(valid, rejects, table.num_rows, dict(validator.failures), dict(validator.examples))


def rejects_by_file(rejects: pa.Table) -> dict[str, int]:
    """File URI -> rejected rows of that file, for a table of reject records (``REJECT_SCHEMA``)."""
    counts = pc.value_counts(rejects[SOURCE])
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def enforce_invalid_share(rows_in: int, rows_quarantined: int, failures: dict[str, int], examples: dict[str, list[str]], limit: float, where: str,
                          *, rejects_by_file: dict[str, int] | None = None, files: list[dict[str, Any]] | None = None) -> None:
    """Raise ContractViolation above the limit, naming the partition, the top rules with located examples (``example``),
    the files with the most rejects, and every damaged file's problem (``files``: the extract stage's file records)."""
    share = rows_quarantined / rows_in if rows_in else 0.0
    if share <= limit:
        return
    top = sorted(failures.items(), key=lambda kv: -kv[1])[:5]
    detail = [f"  - {rule}: {_rows(n)}" + (f", e.g. {', '.join(examples[rule])}" if examples.get(rule) else "") for rule, n in top]
    most = sorted((rejects_by_file or {}).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    if most:
        detail.append("Files with the most rejects: " + ", ".join(f"{uri} ({_rows(n)})" for uri, n in most))
    damaged = [f["problem"] for f in files or [] if f.get("damaged")]
    if damaged:
        shown = damaged[:5] + ([f"... and {len(damaged) - 5} more damaged files"] if len(damaged) > 5 else [])
        detail.append("Damaged files (what followed the damage is lost at the source):" + "".join(f"\n  - {p}" for p in shown))
    listing = "\n".join(detail)
    raise ContractViolation(
        f"{where}: {rows_quarantined} of {rows_in} rows ({share:.1%}) broke the log contract, above the allowed "
        f"{limit:.1%} (defaults.max_invalid_share or models[].validation.max_invalid_share).\n{listing}\n"
        f"The rows are in the quarantine prefix with their reasons; fix the producer, or raise the limit if this is expected."
    )
