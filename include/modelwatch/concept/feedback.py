"""Delayed feedback of an LLM: each configured signal as a per-row indicator, and its rates.

A signal (``feedback.signals``: thumbs down, escalation, user correction, ...) is read from the
label files under ``labels_uri`` (``ingest.labels``: the ``signals`` column of a joined frame) and,
for a signal on the ``feedback`` key, from the log row's own ``feedback`` where no label line sets
it. Per row and signal the indicator is 1 (fired), 0 (not fired) or missing (not rated):

- a signal with ``negative`` values (thumbs down vs thumbs up) is rated only where one of its
  values was logged, so its rate is over the rated requests;
- a signal without them (an escalation is logged only when it happens) counts every request,
  so its rate is over all requests of the day.

Rates carry the Wilson score interval (Wilson 1927, "Probable inference, the law of succession,
and statistical inference", JASA 22), as ``statsmodels.stats.proportion.proportion_confint(method="wilson")``
computes it. ``feedback.<signal>_rate`` is the metric name experiments use; ``arm_moments`` gives
the per-arm sufficient statistics they merge across days.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelwatch.core.metric_names import feedback_metric
from modelwatch.ingest.labels import signal_value

if TYPE_CHECKING:
    from modelwatch.config import FeedbackSignal

CONFIDENCE = 0.95


def _label_signals(frame: pd.DataFrame) -> list[dict[str, int]]:
    """The joined label lines' signals per row (``{}`` where no label line set any)."""
    if "signals" not in frame.columns:
        return [{}] * len(frame)
    return [json.loads(v) if isinstance(v, str) else {} for v in frame["signals"]]


def _inline_values(frame: pd.DataFrame, signal: FeedbackSignal) -> pd.Series:
    """The signal as the log rows' own ``feedback`` gives it (a signal on another key: missing)."""
    if signal.key != "feedback" or "feedback" not in frame.columns:
        return pd.Series(np.nan, index=frame.index)
    numbers = pd.to_numeric(frame["feedback"], errors="coerce").astype(float)
    values = [np.nan if np.isnan(v) else signal_value(signal, float(v)) for v in numbers]
    return pd.Series([np.nan if v is None else float(v) for v in values], index=frame.index, dtype=float)


def signal_indicators(frame: pd.DataFrame, signals: Mapping[str, FeedbackSignal]) -> pd.DataFrame:
    """Per row of a joined frame (``ingest.labels.join_labels``) and signal: 1.0 fired, 0.0 not fired, NaN not rated.

    A label line's value wins over the log row's own ``feedback``; a signal without negative
    values counts every request (not fired unless logged).
    """
    parsed = _label_signals(frame)
    out = pd.DataFrame(index=frame.index)
    for name, signal in signals.items():
        from_labels = pd.Series([p.get(name, np.nan) for p in parsed], index=frame.index, dtype=float)
        indicator = from_labels.where(from_labels.notna(), _inline_values(frame, signal))
        out[name] = indicator if signal.negative else indicator.fillna(0.0)
    return out


def rate(indicator: pd.Series) -> dict[str, Any]:
    """Fired count, base, rate and its Wilson interval of one indicator column (an empty base abstains)."""
    from statsmodels.stats.proportion import proportion_confint

    rated = indicator.dropna()
    base, fired = int(rated.size), int(rated.sum())
    if base == 0:
        return {"fired": 0, "base": 0, "rate": None, "ci_low": None, "ci_high": None, "reason": "no request rated for this signal"}
    low, high = proportion_confint(fired, base, alpha=1 - CONFIDENCE, method="wilson")
    return {"fired": fired, "base": base, "rate": fired / base, "ci_low": float(low), "ci_high": float(high), "reason": None}


def signal_rates(indicators: pd.DataFrame, signals: Mapping[str, FeedbackSignal]) -> dict[str, dict[str, Any]]:
    """Each signal's rate over the rows of ``indicators``, keyed by signal, with its metric name and base."""
    return {name: {"metric": feedback_metric(name), "base_kind": "rated requests" if signals[name].negative else "requests",
                   **rate(indicators[name])} for name in indicators.columns}


def feedback_summary(frame: pd.DataFrame, signals: Mapping[str, FeedbackSignal], day: str) -> dict[str, Any]:
    """The feedback block of concept.json: each signal's rate on ``day`` (its predictions), overall and per variant, and per day.

    ``frame`` is the joined look-back (``timestamp``, ``variant``, ``feedback``, ``signals``); a
    day's rate counts the feedback that had arrived by the partition's end.
    """
    indicators = signal_indicators(frame, signals)
    days = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601").dt.strftime("%Y-%m-%d")
    variants = frame["variant"].astype("object").where(frame["variant"].notna(), "(none)") if "variant" in frame else pd.Series("(none)", index=frame.index)
    today = indicators[days == day]
    return {
        "signals": {name: {"key": s.key, "positive": list(s.positive), "negative": list(s.negative)} for name, s in signals.items()},
        "day": day,
        "rates": signal_rates(today, signals),
        "by_variant": {str(v): signal_rates(today[variants[days == day] == v], signals) for v in sorted(variants[days == day].unique(), key=str)},
        "daily": [{"day": d, "rates": signal_rates(indicators[days == d], signals)} for d in sorted(days.dropna().unique())],
        "lookback_rates": signal_rates(indicators, signals),
    }


def experiment_rows(frame: pd.DataFrame, experiment_id: str, arms: list[str]) -> pd.Series:
    """Which rows belong to an experiment: tagged with its id, or (a router that logs no id) served one of its arms."""
    tagged = frame["experiment_id"] == experiment_id if "experiment_id" in frame else pd.Series(False, index=frame.index)
    return tagged if bool(tagged.any()) else frame["variant"].isin(arms)


def arm_moments(frame: pd.DataFrame, indicators: pd.DataFrame, arms: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm, the sufficient statistics (n, sum, sum of squares) of each signal's indicator: ``feedback.<signal>_rate``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for arm in arms:
        rows = indicators[frame["variant"] == arm]
        out[arm] = {}
        for name in indicators.columns:
            values = rows[name].dropna().to_numpy(dtype=float)
            out[arm][feedback_metric(name)] = {"n": int(values.size), "sum": float(values.sum()), "sum_sq": float(np.square(values).sum())}
    return out
