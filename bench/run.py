"""Benchmark harness behind ``make bench``: run every ``bench/suite_*.py``, print a table, save the records.

Each suite is a module with ``run(size: str) -> list[dict]`` returning records with the keys
``RECORD_KEYS``. The harness runs each suite in its own Python subprocess (so one suite's
imports and memory do not leak into the next, and a crash is contained), adds the
subprocess's peak RSS as a ``peak_rss`` record, prints an aligned table, and writes:

- ``bench/results.json``: a JSON list of records. Running some suites replaces only those
  suites' records; a failed suite's old records are removed (its status is in machine.json).
- ``bench/machine.json``: the machine (CPU count, Python and library versions), the date, and
  per suite the date, size, status and wall time of its last run.

Targets such as ``"<= 10 s"``, ``">= 20x"``, ``">= 20x faster"``, ``"0.02–0.08"`` and ``"15/15"``
are checked and marked met / MISSED; other targets are shown unchecked. The exit status is
non-zero if any suite failed (after running the others); missed targets do not change it.

Usage: ``python bench/run.py [--size full|small] [--suite NAME ...]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results.json"
MACHINE = BENCH / "machine.json"
RECORD_KEYS = ("suite", "case", "metric", "value", "unit", "alternative", "alternative_value", "target")
SIZES = ("full", "small")
TIME_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}
MEMORY_UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "B": 1}
LIBRARIES = ("numpy", "scipy", "pandas", "evidently", "psutil")

Record = dict[str, Any]


# -- discovery and running ---------------------------------------------------------------------------------


def discover(bench: Path = BENCH) -> list[str]:
    """Names of the suites: ``bench/suite_NAME.py`` -> ``NAME``, sorted."""
    return sorted(path.stem.removeprefix("suite_") for path in bench.glob("suite_*.py"))


@dataclass
class SuiteRun:
    """The outcome of one suite."""

    name: str
    records: list[Record] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    peak_rss_mib: float | None = None
    load_average: float | None = None  # 1-minute load average when the suite started (other work on the machine skews timings)

    @property
    def ok(self) -> bool:
        return self.error is None


def run_suite(name: str, size: str) -> SuiteRun:
    """Run one suite in a child Python and collect its records, error and peak RSS (from ``wait4``)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp) / "out.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--size", size, "--out", str(out)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        load = _load_average()
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except KeyboardInterrupt:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        peak = usage.ru_maxrss / 1024  # KiB on Linux
        payload = json.loads(out.read_text()) if out.exists() else {}
    error = payload.get("error")
    if error is None and process.returncode != 0:
        error = f"child exited with status {process.returncode}" + (" (killed by a signal)" if process.returncode < 0 else "")
    records = [normalise(r, name) for r in payload.get("records", [])] if error is None else []
    return SuiteRun(name, records, error, seconds, peak, load)


def child(name: str, size: str, out: Path) -> int:
    """Inside the child: import ``bench.suite_NAME``, run it and write its records (or the error) to ``out``."""
    sys.path[:0] = [str(ROOT)]
    error = None
    try:
        records = import_module(f"bench.suite_{name}").run(size)
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise TypeError(f"suite_{name}.run() must return a list of dicts, got {type(records).__name__}")
        text = json.dumps({"records": plain(records), "error": None}, allow_nan=False)
    except BaseException as exc:  # a suite that raises anything (even SystemExit) is a failed suite
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        text = json.dumps({"records": [], "error": error})
    out.write_text(text)
    return 0 if error is None else 1


def plain(value: Any) -> Any:
    """A JSON-ready copy: numpy scalars -> Python numbers, NaN/inf -> None, tuples -> lists, other objects -> str."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _finite(value)
    return str(value)


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def normalise(record: Record, suite: str) -> Record:
    """Exactly ``RECORD_KEYS``, in order; ``suite`` is the suite's name; extra keys are dropped with a warning."""
    extra = sorted(set(record) - set(RECORD_KEYS))
    if extra:
        print(f"  warning: {suite}: record {record.get('case')!r} has extra keys {extra}, dropped", flush=True)
    out = {key: _finite(record.get(key)) for key in RECORD_KEYS}
    out["suite"] = suite
    return out


def peak_rss_record(run: SuiteRun, size: str) -> Record:
    return {"suite": run.name, "case": f"whole suite, size {size} (child process, includes imports and data)", "metric": "peak_rss",
            "value": round(run.peak_rss_mib, 1) if run.peak_rss_mib is not None else None, "unit": "MiB",
            "alternative": None, "alternative_value": None, "target": None}


# -- targets -----------------------------------------------------------------------------------------------

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
_COMPARE = re.compile(rf"^(<=|>=|<|>|==|=|≤|≥)\s*({_NUMBER})\s*(x|×)?\s*([A-Za-zµ%]+)?\s*(faster|slower|speed-?up)?$", re.I)
_RANGE = re.compile(rf"^({_NUMBER})\s*(?:–|—|-|to|\.\.)\s*({_NUMBER})\s*([A-Za-zµ%]+)?$")
_FRACTION = re.compile(r"^(\d+)\s*/\s*(\d+)$")


def is_time(unit: str | None) -> bool:
    return unit in TIME_UNITS


def speedup(record: Record) -> float | None:
    """alternative / value when both are times in the record's unit (how many times faster ``value`` is)."""
    value, other = record.get("value"), record.get("alternative_value")
    if not is_time(record.get("unit")) or not _number(value) or not _number(other) or value <= 0:
        return None
    return other / value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _convert(value: float, unit: str | None, target_unit: str | None) -> float | None:
    """``value`` in ``unit`` expressed in ``target_unit`` (None if the two are not comparable)."""
    if not target_unit or target_unit == unit:
        return value
    for table in (TIME_UNITS, MEMORY_UNITS):
        if unit in table and target_unit in table:
            return value * table[unit] / table[target_unit]
    if target_unit == "%" and unit in ("share", "fraction", "ratio"):
        return value * 100
    return None


def check_target(record: Record) -> bool | None:
    """Whether the record meets its target; None when there is no target or it is not machine-checkable."""
    target, value, unit = (record.get("target") or "").strip(), record.get("value"), record.get("unit")
    if not target or not _number(value):
        return None
    if match := _FRACTION.match(target):
        return value >= int(match.group(1))
    if match := _RANGE.match(target):
        low, high, target_unit = float(match.group(1)), float(match.group(2)), match.group(3)
        converted = _convert(value, unit, target_unit)
        return None if converted is None else low <= converted <= high
    if match := _COMPARE.match(target):
        op, bound, times, target_unit, _ = match.groups()
        if times:  # a ratio: the value itself if it is one, else alternative / value for times
            subject = value if unit in ("x", "×", "ratio") else speedup(record)
        else:
            subject = _convert(value, unit, target_unit)
        return None if subject is None else _compare(subject, op, float(bound))
    return None


def _compare(subject: float, op: str, bound: float) -> bool:
    return {"<=": subject <= bound, "≤": subject <= bound, ">=": subject >= bound, "≥": subject >= bound, "<": subject < bound,
            ">": subject > bound, "==": subject == bound, "=": subject == bound}[op]


# -- output ------------------------------------------------------------------------------------------------


def fmt(value: Any) -> str:
    """Compact, readable numbers: integers as is, floats to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:,.4g}" if abs(value) >= 1000 else f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Left-aligned text columns, right-aligned numbers, a rule under the header."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    numeric = [all(_looks_numeric(row[i]) for row in rows if row[i]) and any(row[i] for row in rows) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if num else cell.ljust(w) for cell, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def _looks_numeric(cell: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d,.]+(e[-+]?\d+)?x?", cell))


def render(runs: Iterable[SuiteRun]) -> str:
    header = ("suite", "case", "metric", "value", "unit", "alternative", "alt value", "speed-up", "target", "")
    rows: list[list[str]] = []
    for run in runs:
        if not run.ok:
            rows.append([run.name, f"FAILED: {run.error}", "", "", "", "", "", "", "", "FAILED"])
        for r in run.records:
            ratio = speedup(r)
            verdict = check_target(r)
            mark = {True: "met", False: "MISSED", None: ""}[verdict] if r.get("target") else ""
            rows.append([r["suite"], str(r["case"]), str(r["metric"]), fmt(r["value"]), str(r["unit"] or ""), str(r["alternative"] or ""),
                         fmt(r["alternative_value"]), f"{ratio:.1f}x" if ratio is not None else "", str(r["target"] or ""), mark])
    return table(rows, header) if rows else "(no suites run)"


def machine_info() -> dict[str, Any]:
    """CPU count, Python and library versions, platform; without importing the libraries."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {"cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "cpu_model": _cpu_model(), "memory_total_mib": _memory_total_mib(), "platform": platform.platform(),
            "python": platform.python_version(), **versions}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _memory_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def save(runs: Sequence[SuiteRun], size: str, order: Sequence[str]) -> None:
    """Replace the records of the suites just run in results.json; update machine.json."""
    ran = {run.name for run in runs}
    kept = [r for r in _read_json(RESULTS, []) if isinstance(r, dict) and r.get("suite") not in ran]
    records = kept + [r for run in runs for r in run.records]
    rank = {name: i for i, name in enumerate(order)}
    records.sort(key=lambda r: rank.get(r.get("suite"), len(rank)))  # stable: a suite's own order is kept
    _write_json(RESULTS, records)

    now = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_info()
    previous = _read_json(MACHINE, {})
    suites = previous.get("suites", {}) if isinstance(previous, dict) else {}
    for run in runs:
        suites[run.name] = {"date": now, "size": size, "status": "ok" if run.ok else "failed", "error": run.error,
                            "seconds": round(run.seconds, 1), "peak_rss_mib": run.peak_rss_mib and round(run.peak_rss_mib, 1),
                            "load_average_1m_at_start": run.load_average, "machine": machine}
    _write_json(MACHINE, {"date": now, "machine": machine, "suites": dict(sorted(suites.items()))})


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    tmp.replace(path)


# -- main --------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the modelwatch benchmark suites (bench/suite_*.py).")
    parser.add_argument("--size", choices=SIZES, default="full", help="full (default) or small: a quick pass")
    parser.add_argument("--suite", action="append", metavar="NAME", help="run only this suite (repeatable); default: all")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args.child, args.size, args.out)

    available = discover()
    wanted = [s.removeprefix("suite_").removesuffix(".py") for s in args.suite] if args.suite else available
    unknown = [s for s in wanted if s not in available]
    if unknown:
        print(f"unknown suite(s): {', '.join(unknown)}; available: {', '.join(available) or 'none'}", file=sys.stderr)
        return 2

    runs: list[SuiteRun] = []
    for i, name in enumerate(wanted, 1):
        print(f"== [{i}/{len(wanted)}] suite {name} (size {args.size}) ==", flush=True)
        run = run_suite(name, args.size)
        if run.ok:  # a failed suite leaves no records (its old ones are removed; machine.json says why)
            run.records.append(peak_rss_record(run, args.size))
        status = "ok" if run.ok else f"FAILED ({run.error})"
        print(f"== suite {name}: {status} in {run.seconds:.1f} s, {len(run.records)} records, peak RSS {run.peak_rss_mib:.0f} MiB"
              f" (load average {run.load_average} at start, {os.cpu_count()} CPUs) ==", flush=True)
        runs.append(run)

    save(runs, args.size, available)
    print()
    print(render(runs))
    missed = sum(check_target(r) is False for run in runs for r in run.records)
    failed = [run.name for run in runs if not run.ok]
    print(f"\n{sum(len(run.records) for run in runs)} records -> {RESULTS.relative_to(ROOT)}, machine -> {MACHINE.relative_to(ROOT)}"
          + (f"; {missed} target(s) missed" if missed else ""))
    if failed:
        print(f"failed suite(s): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
