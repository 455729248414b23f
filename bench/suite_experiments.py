"""Benchmark suite "experiments": error rates, power and coverage of ``modelwatch.experiment_stats`` by simulation.

``run(size)`` returns records ``{"suite", "case", "metric", "value", "unit", "alternative",
"alternative_value", "target"}``; ``size`` is "small" (a quick pass) or "full".

The experiment DAG looks at every experiment once a day, so the question is what the
decisions do over a whole experiment of daily looks, not at one look. All data are
seeded raw draws, reduced to per-day sufficient statistics and merged with ``+`` to
date, exactly as the DAG does; every decision goes through the library's public API.

* Daily looks under A/A (full: 5,000 experiments, small: 300; 14 days, 1,000 rows per arm
  per day, planned total 28,000 = the sequential tuning size):

  - false promotion: the primary metric (a quality score, Beta(3.5, 1.5), increase is
    good) is declared significantly better at any look, by the default sequential test
    (:func:`sequential_difference`) and, as the alternative, by the fixed-horizon Welch
    t-test read every day;
  - false rollback: the guardrail (cost per request, lognormal with sigma 1, decrease is
    good, relative margin 2%) is declared ``inferior`` at any look, by the sequential
    non-inferiority test and by a fixed-horizon one-sided bound read every day; once under
    A/A and once at the boundary of the null, where the treatment really costs 2% more
    (harm equal to the margin: the hardest case a false rollback must survive).

* Power at the MDE (full: 2,000 experiments, small: 300): the primary with a true lift of
  2% of its mean (0.014 absolute, added to the treatment's scores), the sample size from
  :func:`power_analysis` (t-test, alpha 0.05, power 0.8, 50/50). The fixed-horizon Welch
  test at that n should detect it in ~80% of runs; the sequential test gets the same n
  spread over 14 daily looks (tuning size = the planned total) and is read at every look;
  and, to show the price of anytime validity, with 1.75 times that n.

* Sample-ratio mismatch (:func:`srm_test`, threshold 0.001): 100,000 requests split 51/49
  against a planned 50/50 (full: 10,000 runs, small: 2,000), and a true 50/50 split (full:
  20,000 runs, small: 2,000), arm counts drawn from a multinomial.

* p99 interval coverage (full: 2,000 samples, small: 300): lognormal(0, 1) latencies,
  n = 1,000 and 5,000 rows; the exact order-statistic interval (the default, equal to
  scipy's ``quantile_test`` interval) next to its exact coverage from the binomial ranks,
  and the Nyblom-interpolated interval; and the Bonferroni interval of the p99 difference
  at 1,000 rows per arm with the treatment 10% slower.

Rates carry a 95% Wilson interval in the case text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from modelwatch.experiment_stats import (
    SampleStats,
    mean_test,
    non_inferiority,
    order_statistic_ranks,
    power_analysis,
    quantile_ci,
    quantile_difference,
    sequential_difference,
    srm_test,
)
from scipy import stats

from bench.common import suite_helpers

SUITE = "experiments"
log, record = suite_helpers(SUITE)
SEED = 20_240_715
ALPHA = 0.05
DAYS = 14
DAILY_PER_ARM = 1_000
PLANNED_TOTAL = 2 * DAILY_PER_ARM * DAYS
QUALITY = (3.5, 1.5)  # Beta parameters of the primary metric (mean 0.7, sd 0.187)
COST_SIGMA = 1.0  # lognormal sigma of the guardrail (cost per request)
COST_MEDIAN = 0.002  # dollars
MARGIN = 0.02  # relative non-inferiority margin of the cost guardrail
MDE = 0.02  # relative minimum detectable effect of the primary
SEQUENTIAL_INFLATION = 1.75  # the sequential test is also run with this multiple of the fixed-horizon n
SRM_REQUESTS = 100_000
P99 = 0.99
CONFIDENCE = 0.95
SIZES: dict[str, dict[str, int]] = {
    "full": {"aa_runs": 5_000, "power_runs": 2_000, "srm_skewed_runs": 10_000, "srm_aa_runs": 20_000, "coverage_reps": 2_000},
    "small": {"aa_runs": 300, "power_runs": 300, "srm_skewed_runs": 2_000, "srm_aa_runs": 2_000, "coverage_reps": 300},
}

Record = dict[str, Any]
Looks = list[tuple[SampleStats, SampleStats]]


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def ci_text(successes: int, trials: int) -> str:
    low, high = wilson(successes, trials)
    return f"{successes}/{trials}, 95% CI {low:.4f}-{high:.4f}"


# -- data --------------------------------------------------------------------------------------------------


def looks(values: np.ndarray, day_sizes: list[int] | None = None) -> Looks:
    """Raw values (2 arms, rows) or (days, 2 arms, rows per day) -> per daily look, (control, treatment) stats to date.

    Each day is reduced to its sufficient statistics and merged with ``+``, as the DAG does.
    ``day_sizes`` splits 2-D values into days of those sizes.
    """
    if day_sizes is not None:
        edges = np.cumsum([0, *day_sizes[:-1]])
        sums, squares = np.add.reduceat(values, edges, axis=1), np.add.reduceat(values * values, edges, axis=1)
        sizes = list(day_sizes)
    else:
        sums, squares = values.sum(axis=2).T, (values * values).sum(axis=2).T
        sizes = [values.shape[2]] * values.shape[0]
    out: Looks = []
    control = treatment = SampleStats(0, 0.0, 0.0)
    for day, size in enumerate(sizes):
        control = control + SampleStats(size, sums[0, day], squares[0, day])
        treatment = treatment + SampleStats(size, sums[1, day], squares[1, day])
        out.append((control, treatment))
    return out


def any_look(checks: Looks, decide: Callable[[SampleStats, SampleStats], bool]) -> bool:
    return any(decide(control, treatment) for control, treatment in checks)


def experiments(rng: np.random.Generator, runs: int) -> Iterator[dict[str, Looks]]:
    """Per A/A experiment: the looks of the primary, of the cost guardrail, and of the cost at +margin."""
    mu = math.log(COST_MEDIAN)
    for _ in range(runs):
        quality = rng.beta(*QUALITY, size=(DAYS, 2, DAILY_PER_ARM))
        cost = rng.lognormal(mu, COST_SIGMA, size=(DAYS, 2, DAILY_PER_ARM))
        boundary = cost.copy()
        boundary[:, 1] = (1 + MARGIN) * rng.lognormal(mu, COST_SIGMA, size=(DAYS, DAILY_PER_ARM))
        yield {"quality": looks(quality), "cost": looks(cost), "boundary": looks(boundary)}


# -- the blocks --------------------------------------------------------------------------------------------


def daily_looks(runs: int) -> list[Record]:
    """False promotion and false rollback over 14 daily looks, sequential vs fixed-horizon tests peeked daily."""
    log(f"A/A: {runs} experiments x {DAYS} daily looks, {DAILY_PER_ARM:,} rows/arm/day, tuning size {PLANNED_TOTAL:,}")
    rng = np.random.default_rng([SEED, 1])
    counts = dict.fromkeys(("promote_seq", "promote_naive", "any_seq", "any_naive", "rollback_seq", "rollback_naive",
                            "boundary_seq", "boundary_naive"), 0)

    def guardrail(sequential: bool) -> Callable[[SampleStats, SampleStats], bool]:
        return lambda c, t: non_inferiority(c, t, direction="decrease", margin=MARGIN, alpha=ALPHA, sequential=sequential,
                                            tuning_n=PLANNED_TOTAL).verdict == "inferior"

    for trial in experiments(rng, runs):
        seq = [sequential_difference(c, t, ALPHA, PLANNED_TOTAL) for c, t in trial["quality"]]
        naive = [mean_test(c, t, ALPHA) for c, t in trial["quality"]]
        counts["promote_seq"] += any(r.decision("increase") == "better" for r in seq)
        counts["promote_naive"] += any(r.decision("increase") == "better" for r in naive)
        counts["any_seq"] += any(r.significant for r in seq)
        counts["any_naive"] += any(r.significant for r in naive)
        counts["rollback_seq"] += any_look(trial["cost"], guardrail(True))
        counts["rollback_naive"] += any_look(trial["cost"], guardrail(False))
        counts["boundary_seq"] += any_look(trial["boundary"], guardrail(True))
        counts["boundary_naive"] += any_look(trial["boundary"], guardrail(False))
    log("A/A any-look rates: " + ", ".join(f"{k} {v / runs:.4f}" for k, v in counts.items()))

    setup = f"A/A, {runs:,} runs x {DAYS} daily looks, {DAILY_PER_ARM:,} rows/arm/day"
    naive_t = "fixed-horizon Welch t-test peeked daily"
    naive_ni = "fixed-horizon one-sided bound peeked daily"
    rate = {k: v / runs for k, v in counts.items()}
    return [
        record(f"{setup}: primary (quality score) significantly better at any look = false promotion, sequential CS "
               f"({ci_text(counts['promote_seq'], runs)})", "false_promotion_rate", rate["promote_seq"], "share",
               naive_t, rate["promote_naive"], "<= 0.05"),
        record(f"{setup}: primary significant in either direction at any look, sequential CS ({ci_text(counts['any_seq'], runs)})",
               "false_positive_rate", rate["any_seq"], "share", naive_t, rate["any_naive"], "<= 0.05"),
        record(f"{setup}: guardrail cost/request (margin {MARGIN:.0%} relative) 'inferior' at any look = false rollback, sequential "
               f"({ci_text(counts['rollback_seq'], runs)})", "false_rollback_rate", rate["rollback_seq"], "share",
               naive_ni, rate["rollback_naive"], "<= 0.05"),
        record(f"cost +{MARGIN:.0%} = margin (boundary of the null), {runs:,} runs x {DAYS} daily looks: 'inferior' at any look, sequential "
               f"({ci_text(counts['boundary_seq'], runs)})", "false_rollback_rate", rate["boundary_seq"], "share",
               naive_ni, rate["boundary_naive"], "<= 0.05"),
    ]


def power(runs: int) -> list[Record]:
    """Power at the MDE of the fixed-horizon design sized by power_analysis, and of the sequential test at the same n."""
    a, b = QUALITY
    mean, sd = a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    design = power_analysis(mean, sd, MDE, alpha=ALPHA, power=0.8, test="t")
    n = design.required_n_per_arm
    day_sizes = [len(chunk) for chunk in np.array_split(np.arange(n), DAYS)]
    shift = MDE * mean
    log(f"power: MDE {MDE:.0%} of {mean:.2f} (d = {design.effect_size:.4f}), {n:,} rows/arm from power_analysis, {runs} runs")
    rng = np.random.default_rng([SEED, 2])
    n_big = math.ceil(SEQUENTIAL_INFLATION * n)
    big_sizes = [len(chunk) for chunk in np.array_split(np.arange(n_big), DAYS)]
    fixed = sequential = final_sequential = inflated = 0
    for _ in range(runs):
        values = rng.beta(a, b, size=(2, n_big))
        values[1] += shift
        checks = looks(values[:, :n], day_sizes)
        control, treatment = checks[-1]
        fixed += mean_test(control, treatment, ALPHA).decision("increase") == "better"
        seq = [sequential_difference(c, t, ALPHA, design.required_total).decision("increase") == "better" for c, t in checks]
        sequential += any(seq)
        final_sequential += seq[-1]
        inflated += any_look(looks(values, big_sizes), lambda c, t: sequential_difference(c, t, ALPHA, 2 * n_big).decision("increase") == "better")
    log(f"power: fixed {fixed / runs:.3f}, sequential any look {sequential / runs:.3f}, sequential last look {final_sequential / runs:.3f}, "
        f"sequential at {SEQUENTIAL_INFLATION}x n {inflated / runs:.3f}")
    what = f"primary +{MDE:.0%} (MDE), {n:,} rows/arm (power_analysis t-test, power 0.8), {runs:,} runs"
    return [
        record(f"{what}: fixed-horizon Welch at n ({ci_text(fixed, runs)})", "power", fixed / runs, "share", target="0.75–0.85"),
        record(f"{what}: sequential CS, same n over {DAYS} daily looks, better at any look ({ci_text(sequential, runs)})", "power",
               sequential / runs, "share", "fixed-horizon Welch at n", fixed / runs),
        record(f"primary +{MDE:.0%} (MDE), sequential CS with {SEQUENTIAL_INFLATION}x the fixed n ({n_big:,} rows/arm, tuned to it) over "
               f"{DAYS} daily looks, better at any look ({ci_text(inflated, runs)})", "power", inflated / runs, "share",
               "fixed-horizon Welch at n", fixed / runs),
    ]


def srm(skewed_runs: int, aa_runs: int) -> list[Record]:
    """SRM flag rates: a 51/49 split at 100k requests, and a true 50/50 split."""
    log(f"SRM: {skewed_runs} runs at 51/49, {aa_runs} at 50/50, {SRM_REQUESTS:,} requests each")
    rng = np.random.default_rng([SEED, 3])
    planned = {"control": 0.5, "treatment": 0.5}

    def flagged(counts: np.ndarray) -> int:
        return sum(srm_test({"control": int(c), "treatment": int(t)}, planned).flagged for c, t in counts)

    skewed = flagged(rng.multinomial(SRM_REQUESTS, [0.51, 0.49], skewed_runs))
    fair = flagged(rng.multinomial(SRM_REQUESTS, [0.5, 0.5], aa_runs))
    log(f"SRM: flagged {skewed}/{skewed_runs} skewed, {fair}/{aa_runs} fair")
    return [
        record(f"SRM, 51/49 split of {SRM_REQUESTS:,} requests vs planned 50/50, p < 0.001 ({ci_text(skewed, skewed_runs)})",
               "detection_rate", skewed / skewed_runs, "share", target=">= 0.99"),
        record(f"SRM, true 50/50 split of {SRM_REQUESTS:,} requests, p < 0.001 (expected 0.001; {ci_text(fair, aa_runs)})",
               "false_alarm_rate", fair / aa_runs, "share", target="<= 0.002"),
    ]


def coverage(reps: int) -> list[Record]:
    """Coverage of the p99 interval (exact and interpolated) and of the Bonferroni p99 difference interval."""
    rng = np.random.default_rng([SEED, 4])
    truth = float(stats.lognorm(COST_SIGMA).ppf(P99))
    out: list[Record] = []
    for n in (1_000, 5_000):
        samples = np.sort(rng.lognormal(0.0, COST_SIGMA, size=(reps, n)), axis=1)
        r, s = order_statistic_ranks(n, P99, CONFIDENCE)
        exact_coverage = float(stats.binom.cdf(s - 1, n, P99) - stats.binom.cdf(r - 1, n, P99))
        for interpolate in (False, True):
            hits = sum((lambda ci: ci.low <= truth <= ci.high)(quantile_ci(x, P99, CONFIDENCE, interpolate=interpolate)) for x in samples)
            label = "Nyblom-interpolated" if interpolate else "exact order-statistic (= scipy quantile_test)"
            log(f"p99 coverage, n {n:,}, {label}: {hits}/{reps} (exact binomial coverage of the ranks {exact_coverage:.4f})")
            out.append(record(f"p99 {CONFIDENCE:.0%} interval, lognormal, n {n:,}, {label} ({ci_text(hits, reps)})", "coverage",
                              hits / reps, "share", None if interpolate else "exact coverage of the binomial ranks",
                              None if interpolate else exact_coverage, "0.935–0.965"))
    n = 1_000
    difference = float(0.1 * truth)
    hits = 0
    for _ in range(reps):
        result = quantile_difference(rng.lognormal(0.0, COST_SIGMA, n), 1.1 * rng.lognormal(0.0, COST_SIGMA, n), P99, CONFIDENCE)
        hits += result.ci_low <= difference <= result.ci_high
    log(f"p99 difference coverage, n {n:,}/arm: {hits}/{reps}")
    out.append(record(f"p99 difference, treatment 10% slower, n {n:,}/arm, Bonferroni order-statistic interval ({ci_text(hits, reps)})",
                      "coverage", hits / reps, "share", target=">= 0.95"))
    return out


def run(size: str) -> list[Record]:
    """Run the experiments suite at ``size`` ("full" or "small") and return its records."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    config = SIZES[size]
    records = daily_looks(config["aa_runs"])
    records += power(config["power_runs"])
    records += srm(config["srm_skewed_runs"], config["srm_aa_runs"])
    records += coverage(config["coverage_reps"])
    return records
