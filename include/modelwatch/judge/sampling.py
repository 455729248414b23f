"""Which of a day's responses the LLM judge scores: a seeded stratified sample with known inclusion probabilities.

Judging every response costs money, so the judge scores a sample. The sample is
stratified (Cochran 1977, *Sampling Techniques*, ch. 5; Lohr 2019, *Sampling: Design and
Analysis*, ch. 3): the day's rows are split into strata by the configured keys
(``metadata.topic``, ``variant``, the derived ``length_band`` ...) and a simple random
sample without replacement is drawn inside each stratum. Every sampled row carries its
inclusion probability ``pi = n_h / N_h`` and design weight ``1 / pi`` so that
:mod:`modelwatch.judge.estimates` can turn the judged sample back into unbiased
estimates for the whole day.

Allocation of ``n_total`` rows over the strata:

1. every stratum gets ``min(min_per_stratum, N_h)`` rows, so small strata (a rare topic, the
   10 % treatment arm) are never left without judged rows;
2. the rest is allocated proportionally to ``N_h * factor_h``, where ``factor_h`` is the
   product of the ``oversample`` factors that match the stratum (rare, high-risk strata such
   as refusals or very long answers get a larger sampling fraction);
3. no stratum gets more rows than it has: the proportional share is capped at ``N_h`` and
   the surplus is spread over the others (the bounded proportional allocation is solved
   for its scale by bisection, then rounded by largest remainders within the bounds).

If the minimums alone exceed ``n_total``, the minimums are shrunk evenly (water-filling)
and a note says so; with fewer rows to give than there are strata, some strata get none
and their rows have inclusion probability 0 (reported in ``SampleResult.notes``).

Sample size: :func:`plan_sample_size` takes the smallest of what the daily budget buys
(:func:`budget_sample_size`), ``max_samples`` and, when a target interval width is
configured, the normal-approximation size for that width (:func:`sample_size_for_ci`).

Everything is deterministic given ``seed`` and the frame's row order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from modelwatch.core.jsonable import plain

STRATUM_COLUMN = "stratum"
PROBABILITY_COLUMN = "inclusion_probability"
WEIGHT_COLUMN = "weight"
LENGTH_BAND = "length_band"
# Completion-token edges of the length bands: short < 50 <= medium < 200 <= long. Short is one or two
# sentences (a refusal, a direct answer; ~1.3 tokens per word), medium a paragraph, long several paragraphs:
# where rambling and hallucinated detail concentrate. The synthetic support traffic of ``generate`` is all short.
DEFAULT_LENGTH_EDGES = (50, 200)
MISSING = "<missing>"
# Popoviciu's inequality: a variable on [1, 5] has standard deviation at most (5 - 1) / 2.
SCORE_SD_BOUND = 2.0


# -- derived columns -----------------------------------------------------------------------------------------


def length_band(tokens: Any, edges: tuple[int, int] = DEFAULT_LENGTH_EDGES) -> str:
    """``short`` / ``medium`` / ``long`` for a completion-token count (``<missing>`` when absent)."""
    if tokens is None or (isinstance(tokens, float) and math.isnan(tokens)):
        return MISSING
    value = float(tokens)
    return "short" if value < edges[0] else "medium" if value < edges[1] else "long"


def add_length_band(frame: pd.DataFrame, edges: tuple[int, int] = DEFAULT_LENGTH_EDGES, column: str = "completion_tokens") -> pd.DataFrame:
    """A copy of ``frame`` with ``length_band`` from ``completion_tokens``: short < edges[0] <= medium < edges[1] <= long."""
    if not 0 < edges[0] < edges[1]:
        raise ValueError(f"length edges must satisfy 0 < short < long, got {edges}")
    if column not in frame:
        raise KeyError(f"add_length_band needs a {column!r} column")
    out = frame.copy()
    out[LENGTH_BAND] = [length_band(v, edges) for v in pd.to_numeric(frame[column], errors="coerce")]
    return out


def _nested_value(obj: Any, key: str) -> Any:
    if isinstance(obj, str):
        obj = json.loads(obj) if obj else {}
    return obj.get(key) if isinstance(obj, Mapping) else None


def stratum_values(frame: pd.DataFrame, key: str) -> pd.Series:
    """The values of one stratification key as strings (missing values as ``<missing>``): a column,
    ``metadata.<key>`` / ``features.<key>`` read out of the nested object (dict or JSON text), or the derived
    ``length_band``."""
    if key in frame:
        values = frame[key]
    elif key == LENGTH_BAND:
        values = add_length_band(frame)[LENGTH_BAND]
    elif "." in key and key.split(".", 1)[0] in frame:
        source, name = key.split(".", 1)
        values = frame[source].map(lambda obj: _nested_value(obj, name))
    else:
        raise KeyError(f"stratum key {key!r} is not a column, metadata.<key> / features.<key>, or {LENGTH_BAND!r}")
    labels = values.astype(str).astype(object)
    labels[values.isna().to_numpy()] = MISSING
    return labels


# -- sample sizes --------------------------------------------------------------------------------------------


def budget_sample_size(budget_usd: float, cost_per_call: float, max_calls: int) -> int:
    """Judge calls the daily budget buys, ``floor(budget / cost)``, capped at ``max_calls``.

    A backend that costs nothing (the offline heuristic judge, ``cost_per_call == 0``) is
    limited by ``max_calls`` alone.
    """
    if budget_usd < 0 or cost_per_call < 0 or max_calls < 0:
        raise ValueError(f"budget, cost and max_calls must be >= 0, got {budget_usd}, {cost_per_call}, {max_calls}")
    if cost_per_call == 0:
        return int(max_calls)
    # The small tolerance keeps 5.00 / 0.01 at 500 despite binary rounding.
    return int(min(max_calls, math.floor(budget_usd / cost_per_call + 1e-9)))


def sample_size_for_ci(width: float, sd_guess: float = SCORE_SD_BOUND, confidence: float = 0.95, *,
                       population: int | None = None, design_effect: float = 1.0) -> int:
    """Rows needed for a two-sided normal-approximation interval of total ``width`` (upper − lower) on a mean.

    ``n0 = deff * (2 z sd / width)^2`` with ``z = Phi^-1((1 + confidence) / 2)`` (Cochran 1977,
    eq. 4.2 for a mean); for a target half-width ``h`` pass ``width = 2 h``. With a finite
    ``population`` N the finite-population correction ``n0 / (1 + (n0 - 1) / N)`` applies
    (Cochran eq. 4.3). ``sd_guess`` defaults to 2, the largest possible standard deviation
    of a 1–5 score (Popoviciu's inequality), so the default is never too small;
    ``design_effect`` inflates n for the variance added by oversampling (Kish 1965).
    """
    if width <= 0 or sd_guess <= 0 or design_effect <= 0:
        raise ValueError(f"width, sd_guess and design_effect must be positive, got {width}, {sd_guess}, {design_effect}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    z = float(special.ndtri((1 + confidence) / 2))
    n0 = design_effect * (2 * z * sd_guess / width) ** 2
    if population is not None:
        if population < 1:
            raise ValueError(f"population must be >= 1, got {population}")
        n0 = n0 / (1 + (n0 - 1) / population)
    return max(1, math.ceil(n0 - 1e-9))


@dataclass(frozen=True)
class SampleSizePlan:
    """How many rows to judge today and which constraint decided it."""

    n: int
    limited_by: str  # "budget", "max_samples", "ci_width" or "population"
    budget_calls: int | None
    max_samples: int
    ci_rows: int | None
    population: int | None

    def to_dict(self) -> dict[str, Any]:
        return plain(self.__dict__)


def plan_sample_size(budget_usd: float, cost_per_call: float, max_samples: int, *, ci_width: float | None = None,
                     sd_guess: float = SCORE_SD_BOUND, confidence: float = 0.95, population: int | None = None) -> SampleSizePlan:
    """``min(budget calls, max_samples, CI-derived size if ci_width is configured, population)``.

    The CI-derived size (:func:`sample_size_for_ci`) is an upper bound of what is needed, not a
    floor: judging more rows than the target precision needs only spends budget.
    """
    if max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
    # What the budget buys on its own (uncapped), so that limited_by names the binding constraint.
    budget = math.inf if cost_per_call == 0 else budget_sample_size(budget_usd, cost_per_call, 2**62)
    candidates: dict[str, float] = {"budget": budget, "max_samples": max_samples}
    ci_rows = sample_size_for_ci(ci_width, sd_guess, confidence, population=population) if ci_width is not None else None
    if ci_rows is not None:
        candidates["ci_width"] = ci_rows
    if population is not None:
        candidates["population"] = population
    limited_by = min(candidates, key=lambda k: candidates[k])  # first minimum wins: budget before max_samples
    return SampleSizePlan(int(candidates[limited_by]), limited_by, None if budget == math.inf else int(budget), max_samples, ci_rows, population)


# -- allocation ----------------------------------------------------------------------------------------------


def bounded_allocation(weights: Sequence[float], lower: Sequence[int], upper: Sequence[int], total: int) -> np.ndarray:
    """Integers ``n_h`` with ``lower_h <= n_h <= upper_h``, ``sum n_h = total``, as close as possible to ``c * weights_h``.

    The real-valued allocation ``clip(c * w_h, lower_h, upper_h)`` is increasing in ``c``; ``c``
    is found by bisection so that it sums to ``total``, then rounded by largest remainders
    (Hamilton's method) without leaving the bounds. Needs ``sum(lower) <= total <= sum(upper)``.
    """
    w = np.asarray(weights, dtype=float)
    lo, hi = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    if not lo.sum() <= total <= hi.sum():
        raise ValueError(f"total {total} is outside [sum(lower)={lo.sum():g}, sum(upper)={hi.sum():g}]")
    if (w < 0).any() or (lo > hi).any():
        raise ValueError("weights must be >= 0 and lower <= upper")

    def alloc(c: float) -> np.ndarray:
        return np.clip(c * w, lo, hi)

    positive = w > 0
    c_lo, c_hi = 0.0, float((hi[positive] / w[positive]).max()) if positive.any() else 0.0
    for _ in range(200):
        mid = (c_lo + c_hi) / 2
        if alloc(mid).sum() < total:
            c_lo = mid
        else:
            c_hi = mid
    real = alloc(c_hi)
    out = np.maximum(np.floor(real + 1e-9), lo).astype(int)
    short = int(total - out.sum())
    order = sorted(range(len(out)), key=lambda i: (-(real[i] - out[i]), -w[i], i))
    while short > 0:
        grew = False
        for i in order:
            if short and out[i] < hi[i]:
                out[i] += 1
                short -= 1
                grew = True
        if not grew:  # unreachable when total <= sum(upper); guards an infinite loop
            raise RuntimeError("allocation could not place every row")
    while short < 0:  # the 1e-9 rounding guard can overshoot by a row: take it back where it exceeds its share most
        i = max((j for j in range(len(out)) if out[j] > lo[j]), key=lambda j: out[j] - real[j])
        out[i] -= 1
        short += 1
    return out


# -- the sample ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StratumAllocation:
    """One stratum's population size ``N_h``, oversampling factor, sampled rows ``n_h`` and ``pi_h = n_h / N_h``."""

    stratum: str
    population: int
    factor: float
    sampled: int
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return plain(self.__dict__)


@dataclass(frozen=True)
class SampleResult:
    """A stratified sample: the rows (with ``stratum``, ``inclusion_probability`` and ``weight`` columns) and its design.

    Within a stratum every row has the same probability ``n_h / N_h``; the weights of the
    sampled rows of a stratum add up to ``N_h``, so over all strata that got rows they add up
    to the population size.
    """

    rows: pd.DataFrame = field(compare=False, repr=False)
    strata_keys: tuple[str, ...]
    allocation: tuple[StratumAllocation, ...]
    population: int
    requested: int
    seed: int
    notes: tuple[str, ...] = ()

    @property
    def sampled(self) -> int:
        return len(self.rows)

    def population_sizes(self) -> dict[str, int]:
        """``stratum -> N_h`` for every stratum, sampled or not (what :mod:`judge.estimates` needs)."""
        return {a.stratum: a.population for a in self.allocation}

    def to_dict(self) -> dict[str, Any]:
        """The design (not the rows) as a JSON-able dict."""
        return plain({"strata_keys": list(self.strata_keys), "allocation": [a.to_dict() for a in self.allocation],
                       "population": self.population, "requested": self.requested, "sampled": self.sampled, "seed": self.seed,
                       "notes": list(self.notes)})


def _parse_oversample(oversample: Mapping[str, float] | None) -> list[tuple[str | None, str, float]]:
    """``[(column or None, value, factor)]`` from ``{"status=refused_by_filter": 3, "long": 2}``."""
    parsed = []
    for key, factor in (oversample or {}).items():
        if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"oversample factor for {key!r} must be a positive number, got {factor!r}")
        column, sep, value = key.partition("=")
        parsed.append((column.strip(), value.strip(), float(factor)) if sep else (None, key.strip(), float(factor)))
    return parsed


def _stratum_table(frame: pd.DataFrame, strata: Sequence[str], predicates: list[tuple[str | None, str, float]]) -> tuple[pd.DataFrame, list[str]]:
    """The stratification columns as strings; an oversample predicate on a column outside ``strata`` becomes a yes/no stratifier."""
    columns = {key: stratum_values(frame, key) for key in strata}
    for column, value, _ in predicates:
        if column is not None and column not in columns:
            name = f"{column}={value}"
            columns[name] = stratum_values(frame, column).eq(value).map({True: "yes", False: "no"}).astype(object)
    table = pd.DataFrame(columns, index=frame.index)
    return table, list(columns)


def _factor(values: dict[str, str], predicates: list[tuple[str | None, str, float]]) -> tuple[float, set[int]]:
    """Product of the oversample factors matching one stratum, and which predicates matched."""
    factor, matched = 1.0, set()
    for i, (column, value, f) in enumerate(predicates):
        if column is None:
            hit = value in values.values()
        elif column in values:
            hit = values[column] == value
        else:
            hit = values.get(f"{column}={value}") == "yes"
        if hit:
            factor *= f
            matched.add(i)
    return factor, matched


def _label(values: dict[str, str]) -> str:
    return "|".join(f"{k}={v}" for k, v in values.items()) if values else "all"


def stratified_sample(frame: pd.DataFrame, strata: list[str], n_total: int, *, min_per_stratum: int = 5,
                      oversample: dict[str, float] | None = None, seed: int) -> SampleResult:
    """A stratified simple random sample without replacement of ``n_total`` rows (all rows if there are fewer).

    ``strata``: stratification keys (columns, ``metadata.<key>``, ``length_band``); an empty
    list is one stratum (plain simple random sampling). ``oversample`` maps a predicate to a
    factor > 0 multiplying that stratum's proportional share: ``"column=value"`` (e.g.
    ``"status=refused_by_filter"``, ``"length_band=long"``) or a bare value matching any
    stratum key (``"long"``). A predicate on a column that is not a stratum key splits the
    strata by it (``status=refused_by_filter`` yes/no), so that rows inside a stratum keep
    equal probabilities. Allocation: see the module docstring. The output rows carry the
    derived stratification columns, ``stratum``, ``inclusion_probability`` and ``weight``.
    """
    _check_sizes(n_total, min_per_stratum)
    predicates = _parse_oversample(oversample)
    table, keys = _stratum_table(frame, strata, predicates)
    groups = table.groupby(keys, sort=True, dropna=False).indices if keys else {(): np.arange(len(frame))}
    values = [group_key if isinstance(group_key, tuple) else (group_key,) for group_key in groups]
    positions = [np.asarray(idx) for idx in groups.values()]
    sizes = np.array([len(p) for p in positions], dtype=int)
    design = _design(keys, values, sizes, sizes, predicates, n_total, min_per_stratum)
    rng = np.random.default_rng(seed)
    chosen = [np.sort(rng.choice(pos, size=int(count), replace=False)) if count else np.empty(0, dtype=int)
              for pos, count in zip(positions, design.counts)]
    order = np.concatenate(chosen) if chosen else np.empty(0, dtype=int)
    rows = frame.iloc[order].copy()
    for key in keys:
        if key not in rows:
            rows[key] = table[key].iloc[order].to_numpy()
    return design.result(rows, n_total, seed)


def stratified_sample_from_candidates(candidates: Sequence[tuple[tuple[str, ...], int, pd.DataFrame]], strata: list[str], n_total: int, *,
                                      min_per_stratum: int = 5, oversample: dict[str, float] | None = None, seed: int) -> SampleResult:
    """The same design as :func:`stratified_sample` when only each stratum's size and a uniform ordering of some of its rows are kept.

    ``candidates``: per stratum, its values of the stratification keys (in the order
    :func:`stratum_keys` gives), its exact size ``N_h`` and its candidate rows in a uniformly
    random order (the stratum's bottom-k by request-id hash, ``summaries.BottomK``: the first
    ``n`` of them are a simple random sample of ``n`` of its rows, Cohen and Kaplan 2007).
    Allocation is the module's, computed from the exact sizes, with each stratum's rows capped
    at its candidates (a note says when that bites); stratum ``h`` then takes its first ``n_h``
    candidates, so every row of it is included with probability ``n_h / N_h`` and the design
    weights stay ``N_h / n_h``. ``seed`` is recorded only: the hash order is the randomness.
    """
    _check_sizes(n_total, min_per_stratum)
    predicates = _parse_oversample(oversample)
    keys = stratum_keys(strata, oversample)
    ordered = sorted(candidates, key=lambda c: c[0])
    sizes = np.array([size for _, size, _ in ordered], dtype=int)
    kept = np.array([min(size, len(rows)) for _, size, rows in ordered], dtype=int)
    design = _design(keys, [values for values, _, _ in ordered], sizes, kept, predicates, n_total, min_per_stratum)
    parts = []
    for (values, _, rows), count in zip(ordered, design.counts):
        part = rows.iloc[: int(count)].copy()
        for key, value in zip(keys, values):
            if key not in part:
                part[key] = value
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return design.result(rows, n_total, seed)


def stratum_keys(strata: Sequence[str], oversample: Mapping[str, float] | None = None) -> list[str]:
    """The stratification columns of a design: ``strata``, then a yes/no column per oversample predicate on another column."""
    keys = list(strata)
    for column, value, _ in _parse_oversample(oversample):
        if column is not None and column not in keys and f"{column}={value}" not in keys:
            keys.append(f"{column}={value}")
    return keys


def stratum_columns(frame: pd.DataFrame, strata: Sequence[str], oversample: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Each row's value of every stratification column (:func:`stratum_keys`), as strings."""
    table, _ = _stratum_table(frame, list(strata), _parse_oversample(oversample))
    return table


def _check_sizes(n_total: int, min_per_stratum: int) -> None:
    if n_total < 0 or min_per_stratum < 0:
        raise ValueError(f"n_total and min_per_stratum must be >= 0, got {n_total} and {min_per_stratum}")


@dataclass(frozen=True)
class _Design:
    """The allocation of a stratified sample before its rows are drawn."""

    keys: list[str]
    labels: list[str]
    factors: list[float]
    sizes: np.ndarray
    counts: np.ndarray
    notes: list[str]

    def result(self, rows: pd.DataFrame, n_total: int, seed: int) -> SampleResult:
        """The sample of ``rows`` (drawn stratum by stratum, ``counts[h]`` rows of stratum h, in stratum order)."""
        probabilities = [c / s if s else 0.0 for c, s in zip(self.counts, self.sizes)]
        rows[STRATUM_COLUMN] = [label for label, c in zip(self.labels, self.counts) for _ in range(int(c))]
        rows[PROBABILITY_COLUMN] = np.repeat(np.asarray(probabilities, dtype=float), self.counts.astype(int))
        rows[WEIGHT_COLUMN] = 1.0 / rows[PROBABILITY_COLUMN]
        allocation = tuple(StratumAllocation(label, int(s), f, int(c), float(p))
                           for label, f, s, c, p in zip(self.labels, self.factors, self.sizes, self.counts, probabilities))
        return SampleResult(rows, tuple(self.keys), allocation, int(self.sizes.sum()), int(n_total), int(seed), tuple(self.notes))


def _design(keys: list[str], values: Sequence[tuple[str, ...]], sizes: np.ndarray, kept: np.ndarray,
            predicates: list[tuple[str | None, str, float]], n_total: int, min_per_stratum: int) -> _Design:
    """Labels, oversampling factors and the allocation of ``n_total`` rows over strata of ``sizes`` (at most ``kept`` rows each)."""
    notes: list[str] = []
    labels, factors, matched = [], [], set()
    for group in values:
        named = dict(zip(keys, group))
        factor, hits = _factor(named, predicates)
        labels.append(_label(named))
        factors.append(factor)
        matched |= hits
    for i, (column, value, _) in enumerate(predicates):
        if i not in matched:
            notes.append(f"oversample {column + '=' if column else ''}{value} matched no row")
    population = int(sizes.sum())
    n = min(int(n_total), population)
    if n_total > population:
        notes.append(f"requested {n_total} rows but the day has {population}: every row is judged")
    if int(kept.sum()) < n:
        notes.append(f"the day's summaries kept {int(kept.sum())} candidate rows over its strata, fewer than the {n} planned: "
                     "the sample is smaller (max_samples was raised after the shards were checked)")
        n = int(kept.sum())
    if population == 0 or n == 0:
        counts = np.zeros(len(sizes), dtype=int)
    else:
        minimums = np.minimum(kept, min_per_stratum)
        if minimums.sum() > n:
            notes.append(f"the per-stratum minimum of {min_per_stratum} over {len(sizes)} strata needs {int(minimums.sum())} rows, "
                         f"more than {n}: minimums reduced evenly")
            minimums = bounded_allocation(np.ones(len(sizes)), np.zeros(len(sizes), dtype=int), minimums, n)
        counts = bounded_allocation(sizes * np.asarray(factors), minimums, kept, n)
    empty = [label for label, c, s in zip(labels, counts, sizes) if c == 0 and s > 0]
    if empty and n:
        notes.append(f"{len(empty)} strata got no rows (inclusion probability 0): {', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}")
    return _Design(keys, labels, factors, sizes, np.asarray(counts, dtype=int), notes)
