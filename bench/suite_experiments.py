"""Benchmark suite "experiments": error rates, power and coverage of ``modelwatch.experiments`` (stats, inference, quantiles, design) by simulation.

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

* Quantile guardrails over 60 daily looks (full: 2,000 experiments, small: 200): 3,000
  requests a day split 90/10 (as the bundled exp-042), lognormal latencies (sigma 0.35, as
  the traffic generator's), p99 and p95 guardrails with a 5% relative margin decided at
  every look from the data to date. The share ever declared ``inferior`` (= rolled back)
  under A/A, at the boundary of the null (treatment 5% slower = the margin, which is also
  A/A with a zero margin) and with a regression (treatment 10% and 15% slower), for the
  look-counting spending of :func:`look_alpha` and, as the alternative, the old rule
  (alpha/28 at every look, looks never counted); next to them, the union bound each rule
  guarantees over 60 looks (the alpha it spends). The scenarios share their draws (the
  treatment's latencies scaled), and each arm keeps per day only the top of its latencies,
  where every order statistic the guardrail reads lies (drawn directly from the
  distribution's tail, with the count below): 60 looks of up to 180,000 rows would
  otherwise take seconds per experiment. So this block does not call the guardrail itself:
  it reads the order statistics at the ranks :func:`order_statistic_ranks` gives for each
  look's alpha, and checks first, on the full data of one experiment, that this gives the
  verdicts of :func:`modelwatch.experiments.decision.quantile_guardrail` (and, for the old rule, of
  :func:`quantile_difference` at alpha/28) at every look.

* Quantile intervals on a bounded per-arm sample (full: 2,000 runs, small: 300): a large day
  keeps per arm only a uniform sample of its latencies (``summaries.BottomK``: the k smallest
  request-id hashes), and the stored days merge to the experiment's bottom-k, so the p95/p99
  guardrails read order statistics of a sample, not of every request. Each run draws 3 days of
  5,000 lognormal(0, 1) latencies per arm under fresh request ids, keeps each day's bottom-1,500
  per arm and merges the days as the stage does (15,000 rows to 1,500, 10%); the coverage of
  the true p95 and p99 by the exact order-statistic interval on the merged sample, next to the
  same interval on all 15,000 rows (the exact path), and the Bonferroni p99 difference interval
  on the samples with the treatment 10% slower. The guardrail is kept on samples only because
  these hold their nominal coverage (the hash is independent of latency, so the sample is i.i.d.).

Rates carry a 95% Wilson interval in the case text.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from modelwatch.config import Experiment, MetricGoal
from modelwatch.experiments.decision import quantile_guardrail
from modelwatch.experiments.design import power_analysis, srm_test
from modelwatch.experiments.inference import mean_test, non_inferiority, sequential_difference
from modelwatch.experiments.quantiles import order_statistic_ranks, quantile_ci, quantile_difference
from modelwatch.experiments.stats import SampleStats, alpha_spent, look_alpha
from modelwatch.summaries import BottomK
from scipy import special, stats

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
QUANTILE_LOOKS = 60
QUANTILE_DAILY = (2_700, 300)  # control, treatment requests a day: 3,000 at the bundled exp-042's 90/10 split
QUANTILE_MARGIN = 0.05
LATENCY_SIGMA = 0.35  # lognormal, as modelwatch.runtime.generate's latencies
KEEP_SHARE = (0.07, 0.15)  # top share of each arm's day kept: holds every order statistic the guardrail reads
OLD_LOOKS = 28  # the old rule: alpha / 28 at every look, whatever the look
SAMPLED_DAYS, SAMPLED_DAY_ROWS, SAMPLED_K = 3, 5_000, 1_500  # per arm: rows a day, rows each day's (and the merged) sample keeps
QUANTILE_SCALES = {"A/A": 1.0, "boundary": 1 + QUANTILE_MARGIN, "+10%": 1.10, "+15%": 1.15}  # treatment latency multipliers
SIZES: dict[str, dict[str, int]] = {
    "full": {"aa_runs": 5_000, "power_runs": 2_000, "srm_skewed_runs": 10_000, "srm_aa_runs": 20_000, "coverage_reps": 2_000,
             "quantile_runs": 2_000, "sampled_runs": 2_000},
    "small": {"aa_runs": 300, "power_runs": 300, "srm_skewed_runs": 2_000, "srm_aa_runs": 2_000, "coverage_reps": 300,
              "quantile_runs": 200, "sampled_runs": 300},
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


# -- quantile guardrails over 60 daily looks -------------------------------------------------------------


def spending_rules(looks: int = QUANTILE_LOOKS) -> dict[str, list[float]]:
    """Alpha at each look: modelwatch's look-counting sequence, and the old alpha/28 at every look."""
    return {"modelwatch": [look_alpha(ALPHA, k) for k in range(1, looks + 1)], "old": [ALPHA / OLD_LOOKS] * looks}


def harm_ranks(n_control: int, n_treatment: int, q: float, spent: float) -> tuple[int, int] | None:
    """1-based ranks of the treatment's lower and the control's upper bound the guardrail compares; None where it abstains.

    As ``quantile_guardrail`` -> ``quantile_difference``: each arm's two-sided interval at
    1 - spent, abstaining below ``min_quantile_count`` rows or without bounding ranks.
    """
    if min(n_control, n_treatment) < Experiment(id="bench").min_quantile_count:
        return None
    (r_c, s_c), (r_t, s_t) = order_statistic_ranks(n_control, q, 1 - spent), order_statistic_ranks(n_treatment, q, 1 - spent)
    return (r_t, s_c) if min(r_c, r_t) >= 1 and s_c <= n_control and s_t <= n_treatment else None


def tail_day(rng: np.random.Generator, runs: int, n: int, keep: float) -> np.ndarray:
    """(runs, width) of one day's latencies above the distribution's 1 - keep quantile, sorted, padded in front with 0.

    Exactly the values of n lognormal draws that lie above that quantile: their count is
    Binomial(n, keep) and, given it, they are i.i.d. from the tail.
    """
    width = math.ceil(n * keep + 7 * math.sqrt(n * keep * (1 - keep)))
    counts = rng.binomial(n, keep, runs)
    if counts.max() > width:
        raise RuntimeError(f"a day kept {counts.max()} rows above the cut, more than its width {width}")
    values = np.exp(LATENCY_SIGMA * special.ndtri(rng.uniform(1 - keep, 1, (runs, width))))
    values[np.arange(width) < (width - counts)[:, None]] = 0.0
    return np.sort(values, axis=1)


def harm_ratios(days: list[tuple[np.ndarray, np.ndarray]], q: float, rules: dict[str, list[float]]) -> dict[str, np.ndarray]:
    """Per rule, (runs, looks) of treatment lower bound / control upper bound of the q quantile (NaN where the guardrail abstains).

    ``days`` holds per day the (control, treatment) tails of :func:`tail_day`. The guardrail
    says ``inferior`` at a look when ``scale * ratio - 1 > margin``.
    """
    runs = days[0][0].shape[0]
    out = {name: np.full((runs, len(days)), np.nan) for name in rules}
    control = treatment = np.zeros((runs, 0))
    for look, (day_c, day_t) in enumerate(days):
        control = np.sort(np.concatenate([control, day_c], axis=1), axis=1, kind="stable")
        treatment = np.sort(np.concatenate([treatment, day_t], axis=1), axis=1, kind="stable")
        n_c, n_t = QUANTILE_DAILY[0] * (look + 1), QUANTILE_DAILY[1] * (look + 1)
        kept_c, kept_t = (control > 0).sum(axis=1).min(), (treatment > 0).sum(axis=1).min()
        for name, spent in rules.items():
            ranks = harm_ranks(n_c, n_t, q, spent[look])
            if ranks is None:
                continue
            r_t, s_c = ranks
            # the j-th largest value sits at -j; it must be one of the kept rows
            if n_t - r_t + 1 > kept_t or n_c - s_c + 1 > kept_c:
                raise RuntimeError(f"KEEP_SHARE too small for q={q} at look {look + 1}")
            out[name][:, look] = treatment[:, -(n_t - r_t + 1)] / control[:, -(n_c - s_c + 1)]
    return out


def first_rollback(ratios: np.ndarray, scale: float) -> np.ndarray:
    """Per run, the first look (1-based) the guardrail says ``inferior`` at this treatment scale; 0 if never."""
    inferior = np.nan_to_num(scale * ratios - 1, nan=-np.inf) > QUANTILE_MARGIN
    return np.where(inferior.any(axis=1), inferior.argmax(axis=1) + 1, 0)


def check_against_library(seed: int, scale: float = 1.10) -> None:
    """One experiment on full data: the tail computation gives the library's verdicts at every look, for both rules."""
    rng = np.random.default_rng(seed)
    goals = {q: MetricGoal(metric=f"latency_p{round(q * 100)}_ms", direction="decrease", margin=QUANTILE_MARGIN) for q in (0.99, 0.95)}
    exp = Experiment(id="bench", split={"treatment": 0.1}, start="2026-11-04", alpha=ALPHA, guardrails=list(goals.values()))
    rules = spending_rules()
    full = [[rng.lognormal(0.0, LATENCY_SIGMA, n) for n in QUANTILE_DAILY] for _ in range(QUANTILE_LOOKS)]
    days = []
    for values in full:  # the same rows, cut as tail_day cuts them
        tails = []
        for x, keep in zip(values, KEEP_SHARE):
            kept = np.sort(x[x > math.exp(LATENCY_SIGMA * special.ndtri(1 - keep))])
            tails.append(kept[None, :])
        days.append(tuple(tails))
    for q, goal in goals.items():
        ratios = harm_ratios(days, q, rules)
        control, treatment = np.empty(0), np.empty(0)
        for look, (x_c, x_t) in enumerate(full, start=1):
            control, treatment = np.sort(np.concatenate([control, x_c])), np.sort(np.concatenate([treatment, scale * x_t]))
            new = quantile_guardrail(goal, exp, {"latency": {"control": control, "treatment": treatment}}, look=look)["verdict"] == "inferior"
            old_result = quantile_difference(control, treatment, q, 1 - 2 * ALPHA / OLD_LOOKS, min_tail=exp.min_quantile_count * min(q, 1 - q))
            old = not old_result.abstained and old_result.lift_ci_low > QUANTILE_MARGIN
            fast = [bool(scale * ratios[name][0, look - 1] - 1 > QUANTILE_MARGIN) for name in ("modelwatch", "old")]
            if fast != [new, old]:
                raise RuntimeError(f"q={q} look {look}: tail verdicts {fast} differ from the library's {[new, old]}")


def quantile_looks(runs: int) -> list[Record]:
    """False rollbacks and power of p99/p95 guardrails over 60 daily looks: look-counting spending vs alpha/28 per look."""
    check_against_library(SEED + 5)
    n_c, n_t = QUANTILE_DAILY
    log(f"quantile guardrails: {runs} experiments x {QUANTILE_LOOKS} daily looks, {n_c:,} + {n_t:,} requests/day, library check passed")
    rng = np.random.default_rng([SEED, 5])
    rules = spending_rules()
    ratios: dict[float, dict[str, list[np.ndarray]]] = {q: {name: [] for name in rules} for q in (0.99, 0.95)}
    for batch in np.array_split(np.arange(runs), math.ceil(runs / 250)):
        days = [(tail_day(rng, batch.size, n_c, KEEP_SHARE[0]), tail_day(rng, batch.size, n_t, KEEP_SHARE[1])) for _ in range(QUANTILE_LOOKS)]
        for q in ratios:
            for name, values in harm_ratios(days, q, rules).items():
                ratios[q][name].append(values)
    first = {(q, name, scenario): first_rollback(np.concatenate(parts), scale)
             for q, by_rule in ratios.items() for name, parts in by_rule.items() for scenario, scale in QUANTILE_SCALES.items()}
    for key, looks_ in first.items():
        log(f"quantile {key}: rolled back by look 14 {np.mean((looks_ > 0) & (looks_ <= 14)):.4f}, by look 60 {np.mean(looks_ > 0):.4f}")
    setup = f"{runs:,} experiments x {QUANTILE_LOOKS} daily looks, {n_c + n_t:,} requests/day split 90/10, margin {QUANTILE_MARGIN:.0%}"
    old = f"alpha/{OLD_LOOKS} at every look (looks not counted)"
    out = []
    for q in (0.99, 0.95):
        label = f"p{round(q * 100)}"
        for scenario, what in (("A/A", "A/A"), ("boundary", f"treatment {QUANTILE_MARGIN:.0%} slower = the margin")):
            hits = int((first[(q, "modelwatch", scenario)] > 0).sum())
            out.append(record(f"{label} guardrail, {what}, {setup}: 'inferior' at any look = false rollback ({ci_text(hits, runs)})",
                              "false_rollback_rate", hits / runs, "share", old, float(np.mean(first[(q, "old", scenario)] > 0)), "<= 0.05"))
    out.append(record(f"p95/p99 guardrail: alpha spent by {QUANTILE_LOOKS} daily looks, the union bound on a false rollback",
                      "alpha_spent", alpha_spent(ALPHA, QUANTILE_LOOKS), "share", old, sum(rules["old"]), "<= 0.05"))
    for q, scenario in ((0.99, "+10%"), (0.99, "+15%"), (0.95, "+10%")):
        for by in (14, QUANTILE_LOOKS):
            new_looks, old_looks = first[(q, "modelwatch", scenario)], first[(q, "old", scenario)]
            hits = int(((new_looks > 0) & (new_looks <= by)).sum())
            out.append(record(f"p{round(q * 100)} guardrail, treatment {scenario.lstrip('+')} slower (every latency), {setup}: "
                              f"rolled back by look {by} ({ci_text(hits, runs)})", "power", hits / runs, "share", old,
                              float(np.mean((old_looks > 0) & (old_looks <= by)))))
    return out


# -- quantile intervals on a bounded per-arm sample ----------------------------------------------------------


def merged_sample(rng: np.random.Generator, first_id: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(every latency, the merged bottom-k sample's latencies) of one arm over SAMPLED_DAYS days, as the stage keeps them."""
    import pyarrow as pa

    merged: BottomK | None = None
    every = []
    for day in range(SAMPLED_DAYS):
        latency = scale * rng.lognormal(0.0, COST_SIGMA, SAMPLED_DAY_ROWS)
        ids = pa.array(np.arange(SAMPLED_DAY_ROWS) + first_id + day * SAMPLED_DAY_ROWS).cast(pa.string())
        kept = BottomK(SAMPLED_K)
        kept.update(pa.table({"request_id": ids, "latency_ms": latency}))
        merged = kept if merged is None else merged.merge(kept)
        every.append(latency)
    return np.sort(np.concatenate(every)), np.sort(merged.table["latency_ms"].to_numpy())


def sampled_coverage(runs: int) -> list[Record]:
    """Coverage of the p95/p99 intervals and of the p99 difference on each arm's merged bottom-k sample, beside all rows."""
    rng = np.random.default_rng([SEED, 6])
    total = SAMPLED_DAYS * SAMPLED_DAY_ROWS
    log(f"sampled quantiles: {runs} runs x {SAMPLED_DAYS} days of {SAMPLED_DAY_ROWS:,} rows/arm, bottom-{SAMPLED_K:,} per day, merged")
    truth = {q: float(stats.lognorm(COST_SIGMA).ppf(q)) for q in (0.95, P99)}
    hits = {(q, path): 0 for q in truth for path in ("sample", "all")}
    difference_hits = 0
    for run_ in range(runs):
        every, sample = merged_sample(rng, 2 * run_ * total)
        if sample.size != SAMPLED_K:
            raise RuntimeError(f"the merged sample kept {sample.size} rows, not {SAMPLED_K}")
        for q in truth:
            for path, values in (("sample", sample), ("all", every)):
                ci = quantile_ci(values, q, CONFIDENCE)
                hits[(q, path)] += ci.low <= truth[q] <= ci.high
        _, slower = merged_sample(rng, (2 * run_ + 1) * total, scale=1.10)
        result = quantile_difference(sample, slower, P99, CONFIDENCE)
        difference_hits += result.ci_low <= 0.1 * truth[P99] <= result.ci_high
    setup = (f"{SAMPLED_DAYS} days x {SAMPLED_DAY_ROWS:,} rows/arm, lognormal, each day's bottom-{SAMPLED_K:,} by request-id hash "
             f"merged to the experiment's {SAMPLED_K:,} of {total:,}, {runs:,} runs")
    out = []
    for q in truth:
        r, s_ = order_statistic_ranks(SAMPLED_K, q, CONFIDENCE)
        exact = float(stats.binom.cdf(s_ - 1, SAMPLED_K, q) - stats.binom.cdf(r - 1, SAMPLED_K, q))
        log(f"p{round(q * 100)} on the sample: {hits[(q, 'sample')]}/{runs} (ranks' exact coverage {exact:.4f}); "
            f"on all rows {hits[(q, 'all')]}/{runs}")
        out.append(record(f"p{round(q * 100)} {CONFIDENCE:.0%} order-statistic interval on the merged bounded sample, {setup} "
                          f"({ci_text(hits[(q, 'sample')], runs)}; exact coverage of the ranks at n {SAMPLED_K:,}: {exact:.4f})",
                          "coverage", hits[(q, "sample")] / runs, "share", f"the same interval on all {total:,} rows (exact path)",
                          hits[(q, "all")] / runs, ">= 0.935"))  # at least nominal (the ranks' discreteness adds), within noise
    log(f"p99 difference on samples: {difference_hits}/{runs}")
    out.append(record(f"p99 difference, treatment 10% slower, Bonferroni order-statistic interval on each arm's merged bounded sample, {setup} "
                      f"({ci_text(difference_hits, runs)})", "coverage", difference_hits / runs, "share", target=">= 0.95"))
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
    records += quantile_looks(config["quantile_runs"])
    records += sampled_coverage(config["sampled_runs"])
    return records
