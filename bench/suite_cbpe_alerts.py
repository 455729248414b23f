"""CBPE alerts sized for the day: false-alert rate and power by day size, modelwatch beside NannyML, on the same seeded days.

``run(size)`` returns records like the other suites'. A binary churn classifier (a known process):
``t ~ N(mu, 2.5 k)``, ``P(churn | t) = sigmoid(t)``, the model over-confident (score ``sigmoid(1.4 t)``), so the
calibration must be learnt and holds under a covariate shift. The reference is 20,000 labelled rows over ten
days (``mu = -0.8, k = 1``: accuracy 0.818, F1 of churn 0.765). Days of 1,000, 5,000, 100,000 and 1,000,000 rows
are drawn (fixed seeds) in three settings:

- ``unshifted``: as the reference; any alert is a false alert (target: at most 5% per metric);
- ``accuracy -3 pts``: the inputs crowd towards the decision boundary (``k`` lowered) until the expected accuracy is
  3 points lower;
- ``F1 -5 pts``: ``mu`` moved away from the positive class until the expected F1 (churn) is 5 points lower.

For each metric (accuracy, F1, ROC AUC) and day size the records give the share of days that alert
(an alert in either direction; unshifted: the false-alert rate; shifted: the power), modelwatch's day-sized thresholds as the value and
NannyML 0.13.1's CBPE (its default thresholds: mean ± 3 sd of the realised metric over reference chunks as
large as the day) as the alternative, run on the same rows in the bench's own environment
(``bench/.venv-nannyml``, created when absent with pinned versions). When that environment cannot be made,
the alternative is NannyML's published rule computed by hand on modelwatch's identical estimates, and the
records say so. The previous modelwatch rule (250-row reference chunks, widened below a chunk, never narrowed)
is recorded too. A last case is a gradual shift: a 20,000-row reference, ten 5,000-row days, from day 5 the expected
accuracy 1.5 points lower each day; the records give the first alert day of each.

Also timed: reading class maps (the canonical JSON text) columnar vs row by row, and coercing a Parquet log's struct
probability column by Arrow kernels vs its Python values, per million rows.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import suite_helpers

SUITE = "cbpe_alerts"
log, record = suite_helpers(SUITE)
BENCH = Path(__file__).resolve().parent
NANNYML_ENV = BENCH / ".venv-nannyml"
NANNYML_PINS = ("nannyml==0.13.1", "pandas==2.3.3", "statsmodels==0.15.0")  # nannyml imports statsmodels without declaring it
REFERENCE_ROWS, REFERENCE_DAYS, REFERENCE_MU, SPREAD, OVERCONFIDENCE = 20_000, 10, -0.8, 2.5, 1.4
METRICS = ("accuracy", "f1", "roc_auc")
SETTINGS = ("unshifted", "accuracy -3 pts", "F1 -5 pts")
# days per (day size) and setting; 1M-row days are fewer
SIZES: dict[str, dict[int, int]] = {"small": {1_000: 200, 5_000: 100, 100_000: 6, 1_000_000: 2},
                                    "full": {1_000: 1_000, 5_000: 400, 100_000: 40, 1_000_000: 8}}
CLASS_MAP_ROWS = {"small": 200_000, "full": 1_000_000}
Record = dict[str, Any]


# --------------------------------------------------------------------------- the known process


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def expected_metrics(mu: float, scale: float, z: np.ndarray) -> dict[str, float]:
    """Accuracy and F1 (churn) the process has at input mean ``mu`` and spread ``scale`` (over the fixed normal draws ``z``)."""
    t = mu + SPREAD * scale * z
    p, predicted = _sigmoid(t), t >= 0
    tp = float(np.sum(p * predicted))
    return {"accuracy": float(np.mean(np.where(predicted, p, 1 - p))), "f1": 2 * tp / (float(predicted.sum()) + float(p.sum()))}


Shift = tuple[float, float]  # (mu, scale) of the inputs


def find_shift(metric: str, drop: float, move: str, z: np.ndarray) -> Shift:
    """The inputs at which ``metric`` is ``drop`` below the reference's: ``move`` "scale" crowds them towards the boundary,
    "mu" moves their mean away from the positive class (bisection)."""
    def at(x: float) -> Shift:
        return (REFERENCE_MU, x) if move == "scale" else (x, 1.0)

    goal = expected_metrics(*at(1.0 if move == "scale" else REFERENCE_MU), z)[metric] - drop
    near, far = (1.0, 0.05) if move == "scale" else (REFERENCE_MU, REFERENCE_MU - 4.0)
    if expected_metrics(*at(far), z)[metric] > goal:
        raise RuntimeError(f"no {move} shift lowers {metric} by {drop}")
    for _ in range(60):
        mid = (near + far) / 2
        near, far = (mid, far) if expected_metrics(*at(mid), z)[metric] > goal else (near, mid)
    return at((near + far) / 2)


def draw(rng: np.random.Generator, n: int, shift: Shift = (REFERENCE_MU, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """(score of churn, churned?) of ``n`` rows with inputs ``shift`` = (mu, scale)."""
    t = rng.normal(shift[0], SPREAD * shift[1], n)
    return _sigmoid(OVERCONFIDENCE * t), rng.uniform(size=n) < _sigmoid(t)


def frame(score: np.ndarray, churned: np.ndarray | None, start: pd.Timestamp, days: int = 1) -> pd.DataFrame:
    """Rows as the estimation stage reads them (a bare probability: the confidence in the predicted class)."""
    n = len(score)
    seconds = (np.arange(n) * (days * 86_400 // max(n, 1))).astype("int64")
    out = pd.DataFrame({"request_id": np.arange(n).astype(str), "timestamp": start + pd.to_timedelta(seconds, "s"), "variant": "production",
                        "prediction": np.where(score >= 0.5, "churn", "stay").astype(object), "probability": np.maximum(score, 1 - score)})
    out["_label"] = None if churned is None else np.where(churned, "churn", "stay").astype(object)
    return out


def _model():
    from modelwatch.config import parse_config

    return parse_config({"models": [{"id": "bench", "kind": "classifier", "drift": {"positive_class": "churn"}}]}).models[0]


# --------------------------------------------------------------------------- modelwatch's alerts


def modelwatch_alerts(reference, score: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per metric: the day's estimate, its alert under the day-sized thresholds and under the previous chunk rule."""
    from modelwatch.estimation.reference import metric_rows

    scored, _ = reference.score(frame(score, None, pd.Timestamp("2026-12-01", tz="UTC")))
    n = len(scored)
    out = {}
    for row in metric_rows(reference, reference.estimate(scored), n):
        if row["metric"] not in METRICS:
            continue
        stats = reference.statistics[row["metric"]]
        half = 3 * stats["sd"] * max(1.0, math.sqrt(reference.chunk_size / n))
        out[row["metric"]] = {"estimate": row["estimate"], "alert": row["alert"], "dominant": row.get("threshold_dominant"),
                              "chunk_rule_alert": not stats["mean"] - half <= row["estimate"] <= stats["mean"] + half}
    return out


# --------------------------------------------------------------------------- NannyML


def nannyml_python() -> Path | None:
    """The bench's NannyML interpreter, made on first use with pinned versions; None when it cannot be installed here."""
    python = NANNYML_ENV / "bin" / "python"
    if python.exists():
        return python
    log(f"creating {NANNYML_ENV.relative_to(BENCH.parent)} with {', '.join(NANNYML_PINS)} (once)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(NANNYML_ENV)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *NANNYML_PINS], check=True, capture_output=True, timeout=1800)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log(f"NannyML could not be installed ({exc}); its published rule is computed by hand instead")
        return None
    return python


def nannyml_alerts(python: Path, reference: pd.DataFrame, days: list[np.ndarray], chunk_size: int) -> dict[str, list[bool]]:
    """NannyML's alert per day and metric, each day one chunk of ``chunk_size`` rows."""
    with tempfile.TemporaryDirectory(prefix="bench-nannyml-") as tmp:
        ref_path, analysis_path, out = Path(tmp) / "reference.parquet", Path(tmp) / "analysis.parquet", Path(tmp) / "out.json"
        reference.to_parquet(ref_path)
        score = np.concatenate(days)
        pd.DataFrame({"p": score, "pred": (score >= 0.5).astype(int)}).to_parquet(analysis_path)
        subprocess.run([str(python), str(BENCH / "nannyml_cbpe.py"), str(ref_path), str(analysis_path), str(chunk_size), str(out)], check=True,
                       timeout=3600, env={**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}, stdout=subprocess.DEVNULL)
        result = json.loads(out.read_text())
    return {m: result[m]["alert"][: len(days)] for m in METRICS}


def nannyml_rule_by_hand(reference, ref_score: np.ndarray, ref_churned: np.ndarray, estimates: list[dict[str, float]],
                         chunk_size: int) -> dict[str, list[bool]]:
    """NannyML's published rule without NannyML: realised metric over reference chunks of the day's size, mean ± 3 sd (no
    thresholds below two chunks), applied to modelwatch's CBPE estimates (equal to NannyML's to 1e-9)."""
    from modelwatch.estimation.cbpe import realised_classifier
    from modelwatch.estimation.reference import class_scores, label_index

    rows = frame(ref_score, ref_churned, pd.Timestamp("2026-11-01", tz="UTC"))
    raw, predicted, _ = class_scores(rows, reference.classes, "churn")
    labels = label_index(rows["_label"], reference.classes)
    chunks = [realised_classifier(labels[i:i + chunk_size], raw[i:i + chunk_size], predicted[i:i + chunk_size], reference.classes, "churn").metrics
              for i in range(0, len(rows) - chunk_size + 1, chunk_size)]
    out = {}
    for metric in METRICS:
        values = [c[metric] for c in chunks if c[metric] is not None]
        if len(values) < 2:
            out[metric] = [False] * len(estimates)
            continue
        centre, spread = float(np.mean(values)), float(np.std(values, ddof=0))
        out[metric] = [not centre - 3 * spread <= e[metric] <= centre + 3 * spread for e in estimates]
    return out


# --------------------------------------------------------------------------- cases


def _rate(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else float("nan")


def alert_rates(size: str) -> list[Record]:
    from modelwatch.estimation.reference import fit_reference, reference_from_artefact

    z = np.random.default_rng(0).standard_normal(2_000_000)
    shifts = {"unshifted": (REFERENCE_MU, 1.0), "accuracy -3 pts": find_shift("accuracy", 0.03, "scale", z), "F1 -5 pts": find_shift("f1", 0.05, "mu", z)}
    expected = {name: expected_metrics(*shift, z) for name, shift in shifts.items()}
    log("settings: " + "; ".join(f"{k}: mu {v[0]:+.3f} scale {v[1]:.3f}, accuracy {expected[k]['accuracy']:.4f}, F1 {expected[k]['f1']:.4f}"
                                 for k, v in shifts.items()))
    ref_rng = np.random.default_rng(1)
    ref_score, ref_churned = draw(ref_rng, REFERENCE_ROWS)
    artefact, fitted = fit_reference(frame(ref_score, ref_churned, pd.Timestamp("2026-11-01", tz="UTC"), REFERENCE_DAYS), _model())
    reference = reference_from_artefact(artefact, fitted)
    nannyml_reference = pd.DataFrame({"p": ref_score, "pred": (ref_score >= 0.5).astype(int), "y": ref_churned.astype(int)})
    python = nannyml_python()
    alternative = "NannyML 0.13.1 CBPE (chunk = day)" if python else "NannyML's rule by hand (mean ± 3 sd of reference chunks = day)"
    records: list[Record] = []
    for n, repeats in SIZES[size].items():
        for s, setting in enumerate(SETTINGS):
            rng = np.random.default_rng(1000 * n + s)
            started = time.perf_counter()
            days = [draw(rng, n, shifts[setting])[0] for _ in range(repeats)]
            ours = [modelwatch_alerts(reference, day) for day in days]
            estimates = [{m: o[m]["estimate"] for m in METRICS} for o in ours]
            theirs = (nannyml_alerts(python, nannyml_reference, days, n) if python
                      else nannyml_rule_by_hand(reference, ref_score, ref_churned, estimates, n))
            for metric in METRICS:
                rate = _rate([o[metric]["alert"] for o in ours])
                what = "false_alert_rate" if setting == "unshifted" else "power"
                records.append(record(f"{setting}, {n:,} rows/day, {repeats} days", f"{metric} {what}", rate, "ratio", alternative=alternative,
                                      alternative_value=_rate(theirs[metric]), target="<= 0.05" if setting == "unshifted" else None))
                records.append(record(f"{setting}, {n:,} rows/day, {repeats} days", f"{metric} {what} (previous chunk rule)",
                                      _rate([o[metric]["chunk_rule_alert"] for o in ours]), "ratio"))
            dominant = statistics.mode(o["accuracy"]["dominant"] for o in ours)
            log(f"{setting:>16}, {n:>9,} rows x {repeats:>4}: " + ", ".join(
                f"{m} {_rate([o[m]['alert'] for o in ours]):.3f} (NannyML {_rate(theirs[m]):.3f})" for m in METRICS)
                + f"; accuracy thresholds dominated by {dominant}; {time.perf_counter() - started:.1f} s")
    return records


def gradual_shift() -> list[Record]:
    """A gradual shift: a 20,000-row reference, ten 5,000-row days, a covariate shift from day 5 that lowers the expected
    accuracy by 1.5 points a day, from ~0.82 to ~0.73 on day 10."""
    from modelwatch.estimation.reference import fit_reference, reference_from_artefact

    z = np.random.default_rng(0).standard_normal(2_000_000)
    shifts = [(REFERENCE_MU, 1.0)] * 4 + [find_shift("accuracy", 0.015 * (d - 3), "scale", z) for d in range(4, 10)]
    rng = np.random.default_rng(23)
    ref_score, ref_churned = draw(rng, REFERENCE_ROWS)
    artefact, fitted = fit_reference(frame(ref_score, ref_churned, pd.Timestamp("2026-11-01", tz="UTC"), REFERENCE_DAYS), _model())
    reference = reference_from_artefact(artefact, fitted)
    days = [draw(rng, 5_000, shift)[0] for shift in shifts]
    ours = [modelwatch_alerts(reference, day) for day in days]
    python = nannyml_python()
    if python:
        theirs = nannyml_alerts(python, pd.DataFrame({"p": ref_score, "pred": (ref_score >= 0.5).astype(int), "y": ref_churned.astype(int)}), days, 5_000)
    else:
        theirs = nannyml_rule_by_hand(reference, ref_score, ref_churned, [{m: o[m]["estimate"] for m in METRICS} for o in ours], 5_000)

    def first(flags: list[bool]) -> int | None:
        return next((d + 1 for d, flag in enumerate(flags) if flag), None)

    case, alternative = ("gradual shift: 20,000-row reference, ten 5,000-row days, accuracy -1.5 pts a day from day 5",
                         "NannyML 0.13.1 CBPE" if python else "NannyML's rule by hand")
    records = []
    for metric in METRICS:
        mine = [o[metric]["alert"] for o in ours]
        log(f"gradual shift {metric}: modelwatch alert days {[d + 1 for d, f in enumerate(mine) if f]}, "
            f"NannyML {[d + 1 for d, f in enumerate(theirs[metric]) if f]}, previous rule {[d + 1 for d, o in enumerate(ours) if o[metric]['chunk_rule_alert']]}")
        records.append(record(case, f"{metric} first alert day", first(mine), "day", alternative=alternative, alternative_value=first(theirs[metric])))
        records.append(record(case, f"{metric} alerts on days 1-4", sum(mine[:4]), "days", alternative=alternative,
                              alternative_value=sum(theirs[metric][:4]), target="== 0"))
    return records


def class_map_reading(size: str) -> list[Record]:
    """Class maps (the canonical JSON text) read columnar by Arrow vs ``json.loads`` row by row, scaled to a million rows."""
    import pyarrow as pa
    from modelwatch.estimation.reference import _class_maps_row_by_row, class_map_scores

    n = CLASS_MAP_ROWS[size]
    score = np.random.default_rng(5).uniform(size=n)
    texts = [json.dumps({"churn": round(float(s), 5), "stay": round(float(1 - s), 5)}, sort_keys=True) for s in score]
    column = pd.Series(pd.arrays.ArrowExtensionArray(pa.array(texts, pa.string())))
    objects = pd.Series(texts, dtype=object)
    classes = ("churn", "stay")
    timings = {}
    for name, fn in {"columnar": lambda: class_map_scores(column, classes), "row by row": lambda: _class_maps_row_by_row(objects, classes)}.items():
        walls = []
        for _ in range(3 if name == "columnar" else 1):
            started = time.perf_counter()
            fn()
            walls.append(time.perf_counter() - started)
        timings[name] = min(walls) * 1_000_000 / n
    log(f"class maps per million rows: columnar {timings['columnar']:.2f} s, row by row {timings['row by row']:.2f} s ({n:,} rows timed)")
    parquet = parquet_class_maps(n)
    return [record("class probabilities read by the estimation, per million rows", "wall", timings["columnar"], "s",
                   alternative="json.loads row by row (before)", alternative_value=timings["row by row"], target=">= 5x faster"),
            record("class probabilities of a Parquet log (struct column) to the canonical table, per million rows", "wall", parquet["columnar"], "s",
                   alternative="Python values through the contract (before)", alternative_value=parquet["row by row"])]


def parquet_class_maps(n: int) -> dict[str, float]:
    """Seconds per million rows to coerce a Parquet log's struct probability column: Arrow kernels vs its Python values."""
    import pyarrow as pa
    from modelwatch.ingest.columnar_arrow import _struct_probabilities
    from modelwatch.ingest.probabilities import coerce_probabilities

    score = np.random.default_rng(6).uniform(size=n).round(5)
    probability = pa.StructArray.from_arrays([pa.array(score), pa.array((1 - score).round(5))], names=["churn", "stay"])
    prediction = pa.array(np.where(score >= 0.5, "churn", "stay"))

    def per_row() -> Any:
        values, predictions = probability.to_pylist(), prediction.to_pylist()
        return coerce_probabilities(values, lambda: predictions)

    timings = {}
    for name, fn in {"columnar": lambda: _struct_probabilities(probability, prediction), "row by row": per_row}.items():
        started = time.perf_counter()
        fn()
        timings[name] = (time.perf_counter() - started) * 1_000_000 / n
    log(f"Parquet class maps per million rows: Arrow kernels {timings['columnar']:.2f} s, Python values {timings['row by row']:.2f} s")
    return timings


def run(size: str) -> list[Record]:
    """Run the CBPE alert suite at ``size`` ("full" or "small") and return its records."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    return alert_rates(size) + gradual_shift() + class_map_reading(size)
