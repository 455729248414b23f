"""Performance estimation: CBPE and DLE time for one day of a classic model.

``run(size)`` returns records ``{"suite", "case", "metric", "value", "unit", "alternative",
"alternative_value", "target"}``; ``size`` is "small" (100,000-row day) or "full" (1,000,000).

Data (seeded): a binary classifier logging a class map ``{"churn": p, "stay": 1 - p}`` (as JSON
text, the canonical table's form, so parsing it is part of the cost) and a region segment;
a regressor with 3 numerical and 1 categorical feature and a heteroscedastic error. The
reference is 20,000 labelled rows (the estimation's default cap is 50,000).

Timed (median of the runs, wall and process CPU time, import excluded):

- ``cbpe reference``: calibrator fit (isotonic), 5-fold cross-fitted chunk estimates, thresholds;
- ``cbpe day``: ``estimate_partition`` for one day with no labels — parse the class maps,
  calibrate, expected confusion matrix and metrics, ROC AUC estimate, three segment values;
  the alternative is the realised metrics with scikit-learn on the same rows once labels are
  known (what the estimate stands in for);
- ``dle reference``: the two nanny models (absolute and squared error) with 5-fold cross-fitting;
- ``dle day``: refit-free scoring of the day by the nanny models and the expected MAE / RMSE.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from bench.common import suite_helpers

SUITE = "estimation"
log, record = suite_helpers(SUITE)
SIZES: dict[str, dict[str, int]] = {"small": {"rows": 100_000, "repeats": 3}, "full": {"rows": 1_000_000, "repeats": 1}}
REFERENCE_ROWS = 20_000
LABEL = "_label"

Record = dict[str, Any]


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median wall and process-CPU seconds of ``repeats`` calls, and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), result


def _model(kind: str):
    from modelwatch.config import parse_config

    features = ["features.a", "features.b", "features.c", "features.plan"] if kind == "regressor" else []
    return parse_config({"models": [{"id": "bench", "kind": kind, "segments": ["metadata.region"],
                                     "drift": {"positive_class": "churn" if kind == "classifier" else None, "features": features},
                                     "estimation": {"chunk_size": 1000}}]}).models[0]


def classifier_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = rng.normal(-0.8, 1.5, n)
    score = 1 / (1 + np.exp(-1.4 * t))
    churn = rng.uniform(size=n) < 1 / (1 + np.exp(-t))
    maps = [json.dumps({"churn": round(float(s), 5), "stay": round(float(1 - s), 5)}) for s in score]
    return pd.DataFrame({"request_id": [f"r{seed}-{i}" for i in range(n)], "timestamp": pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(np.arange(n) % 86400, "s"),
                         "variant": "production", "prediction": np.where(score >= 0.5, "churn", "stay"), "probability": np.maximum(score, 1 - score),
                         "class_probabilities": maps, "metadata.region": rng.choice(["na", "emea", "apac"], size=n), LABEL: np.where(churn, "churn", "stay")})


def regressor_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b, c = rng.normal(size=n), rng.normal(size=n), rng.uniform(0, 10, size=n)
    plan = rng.choice(["basic", "plus", "premium"], size=n)
    mean = 2 * a - b + 0.1 * c
    y = mean + (0.5 + np.abs(b) + 0.5 * (plan == "basic")) * rng.normal(size=n)
    return pd.DataFrame({"request_id": [f"q{seed}-{i}" for i in range(n)], "timestamp": pd.Timestamp("2026-11-01", tz="UTC") + pd.to_timedelta(np.arange(n) % 86400, "s"),
                         "variant": "production", "prediction": mean.astype(str), "features.a": a, "features.b": b, "features.c": c, "features.plan": plan,
                         "metadata.region": rng.choice(["na", "emea", "apac"], size=n), LABEL: y})


def cbpe_case(rows: int, repeats: int) -> list[Record]:
    from modelwatch.estimation.cbpe import realised_classifier
    from modelwatch.estimation.estimate import estimate_partition
    from modelwatch.estimation.reference import fit_reference, label_index, reference_from_artefact

    model = _model("classifier")
    reference_rows = classifier_frame(REFERENCE_ROWS, 1)
    ref_wall, ref_cpu, (artefact, fitted) = timed(lambda: fit_reference(reference_rows, model), repeats)
    reference = reference_from_artefact(artefact, fitted)
    day = classifier_frame(rows, 2)
    unlabelled = day.assign(**{LABEL: None})
    wall, cpu, result = timed(lambda: estimate_partition(reference, {"2026-11-02": unlabelled}, "2026-11-02", model, "bench"), repeats)
    scored, _ = reference.score(day)
    labels = label_index(day[LABEL], reference.classes)
    real_wall, _, realised = timed(lambda: realised_classifier(labels, scored.raw, scored.predicted, reference.classes, "churn"), repeats)
    estimate = next(m["estimate"] for m in result["metrics"] if m["metric"] == "accuracy")
    log(f"cbpe: {rows:,} rows in {wall:.2f} s (cpu {cpu:.2f} s); accuracy estimated {estimate:.4f}, realised {realised.metrics['accuracy']:.4f}")
    case = f"cbpe day {rows:,} rows"
    return [record(f"cbpe reference {REFERENCE_ROWS:,} rows", "wall", ref_wall, "s"), record(f"cbpe reference {REFERENCE_ROWS:,} rows", "cpu", ref_cpu, "s"),
            record(case, "wall", wall, "s", alternative="sklearn realised metrics on the labelled day", alternative_value=real_wall,
                   target="<= 60 s" if rows >= 1_000_000 else None),
            record(case, "cpu", cpu, "s"), record(case, "rows_per_second", rows / wall, "rows/s"),
            record(case, "accuracy_estimate_minus_realised", estimate - realised.metrics["accuracy"], "ratio")]


def dle_case(rows: int, repeats: int) -> list[Record]:
    from modelwatch.estimation.dle import realised_metrics
    from modelwatch.estimation.estimate import estimate_partition
    from modelwatch.estimation.reference import fit_reference, reference_from_artefact

    model = _model("regressor")
    reference_rows = regressor_frame(REFERENCE_ROWS, 3)
    ref_wall, ref_cpu, (artefact, fitted) = timed(lambda: fit_reference(reference_rows, model), repeats)
    refit_wall, _, reference = timed(lambda: reference_from_artefact(artefact, fitted), repeats)
    day = regressor_frame(rows, 4)
    wall, cpu, result = timed(lambda: estimate_partition(reference, {"2026-11-02": day.assign(**{LABEL: np.nan})}, "2026-11-02", model, "bench"),
                              repeats)
    estimate = next(m["estimate"] for m in result["metrics"] if m["metric"] == "mae")
    realised = realised_metrics(day[LABEL].to_numpy(float), pd.to_numeric(day["prediction"]).to_numpy(float))["mae"]
    log(f"dle: {rows:,} rows in {wall:.2f} s (cpu {cpu:.2f} s); MAE estimated {estimate:.4f}, realised {realised:.4f}")
    case = f"dle day {rows:,} rows"
    return [record(f"dle reference {REFERENCE_ROWS:,} rows", "wall", ref_wall, "s"), record(f"dle reference {REFERENCE_ROWS:,} rows", "cpu", ref_cpu, "s"),
            record(f"dle refit at load {REFERENCE_ROWS:,} rows", "wall", refit_wall, "s"),
            record(case, "wall", wall, "s", target="<= 60 s" if rows >= 1_000_000 else None), record(case, "cpu", cpu, "s"),
            record(case, "rows_per_second", rows / wall, "rows/s"), record(case, "mae_estimate_relative_error", (estimate - realised) / realised, "ratio")]


def run(size: str) -> list[Record]:
    """Run the estimation suite at ``size`` ("full" or "small") and return its records."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    config = SIZES[size]
    return cbpe_case(config["rows"], config["repeats"]) + dle_case(config["rows"], config["repeats"])
