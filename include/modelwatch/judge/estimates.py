"""A day's quality from a stratified judged sample, and prediction-powered inference with human labels.

Design-based estimates (:func:`stratified_estimate`, :func:`estimate_judgments`)
------------------------------------------------------------------------------------
The judged rows come from :func:`modelwatch.judge.sampling.stratified_sample`: a simple
random sample without replacement of ``n_h`` rows in each stratum of ``N_h``. The mean of a
score (or the rate of a 0/1 flag) over a *domain* ``d`` of the day (all rows, one variant,
one topic) is the Hájek ratio of Horvitz–Thompson totals (Horvitz & Thompson 1952; Hájek
1971; Särndal, Swensson & Wretman 1992, *Model Assisted Survey Sampling*, §5.8–5.10)::

    w_i = N_h / n_h                         (design weight; n_h = judged rows of stratum h with a value)
    R   = sum_i w_i d_i y_i / sum_i w_i d_i

For the whole day this is the stratified mean ``sum_h N_h ybar_h / N``. Its variance is the
stratified-sampling variance (Cochran 1977, *Sampling Techniques*, eq. 5.6) of the
linearised values ``z_i = d_i (y_i - R) / N_d`` (Taylor linearisation of a ratio, Särndal et
al. §5.5; Lohr 2019, *Sampling*, §4.3 for domains)::

    V(R) = sum_h N_h^2 (1 - f_h) s_{z,h}^2 / n_h,   f_h = n_h / N_h

which for the whole day is ``sum_h N_h^2 (1 - f_h) s_h^2 / n_h / N^2``, the textbook variance
of the stratified mean. Rows sampled but not judged (a judge error) are treated as missing
at random within their stratum: ``n_h`` counts judged rows only. A stratum with a single
judged row has no within-stratum variance; it borrows the pooled within-stratum variance
of the others (a collapsed-strata style substitute, Cochran §5A.12), noted in ``reason``.

Intervals: Student t with ``n_d - H_d`` degrees of freedom for means of 1–5 scores (Lohr
§3.3); for flag rates the Korn & Graubard (1998, "Confidence intervals for proportions with
small expected number of positive counts estimated from survey data", *Survey Methodology*
24:193–201) interval: Clopper–Pearson at the effective sample size
``n* = p(1 - p) / V(p)`` (capped at ``n_d``; their degrees-of-freedom adjustment is not applied), which stays sensible when a flag is rare or was
never seen in the sample (a Wald interval would collapse to [0, 0]). Fewer than 2 judged
rows in a domain: abstain with a reason.

Prediction-powered inference (:func:`ppi_mean`)
-----------------------------------------------
When humans labelled a subset of the judged rows, the judge's systematic bias can be
corrected without trusting it: Angelopoulos, Bates, Fannjiang, Jordan & Zrnic (2023),
"Prediction-powered inference", *Science* 382:669–674, mean estimation (their §"Mean
estimation" / Algorithm 1). With ``f`` the judge's score, ``Y`` the human label, ``N`` rows
judged but not human-labelled and ``n`` rows with both::

    theta_PP = mean_N(f) - mean_n(f - Y)                      (the "rectifier" removes the judge's bias)
    CI       = theta_PP +/- z_{1-alpha/2} sqrt( var_N(f) / N + var_n(f - Y) / n )

PPI++ power tuning (Angelopoulos, Duchi & Zrnic 2023, "PPI++: Efficient
prediction-powered inference", arXiv:2311.01453, §2 and Example 1) interpolates between the
classical estimate ``mean_n(Y)`` (``lambda = 0``) and PPI (``lambda = 1``)::

    theta_lambda = mean_n(Y) + lambda (mean_N(f) - mean_n(f))
    Var          = Var(mean_n(Y - lambda f)) + lambda^2 Var(mean_N(f))
    lambda*      = Cov(mean_n(Y), mean_n(f)) / (Var(mean_n(f)) + Var(mean_N(f)))   = Cov(Y, f) / ((1 + n/N) Var(f)) unweighted

so a useless judge costs (asymptotically) nothing. Optional survey ``weights`` replace the
means with Hájek means and the variances with their linearised with-replacement
approximation ``sum_i w_i^2 (x_i - xbar)^2 / (sum w)^2 * n / (n - 1)``; unweighted, these are
the usual ``s^2 / n``. Written from the papers, not with ppi-python.

Per experiment arm (:func:`ppi_by_arm`), the judge stage keeps the sums of plain PPI
(``lambda = 1``) rather than a day's estimate: the judge's moments on the arm's unlabelled
judged rows and the moments of the residuals ``Y - f`` on its labelled ones
(:func:`ppi_moments`). They add up across days, so the experiments stage can correct the
judge's bias in each arm separately over the experiment to date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import special, stats

from modelwatch.core.jsonable import Serialisable
from modelwatch.judge.calibration import DIMENSIONS, FLAGS
from modelwatch.judge.sampling import STRATUM_COLUMN, WEIGHT_COLUMN, stratum_values

Kind = Literal["mean", "rate"]
DEFAULT_ALPHA = 0.05
MIN_ROWS = 2
ALL = "all"


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def metric_name(column: str) -> str:
    """``judge.<dimension>`` for a score, ``judge.<flag>_rate`` for a flag."""
    return f"judge.{column}_rate" if column in FLAGS else f"judge.{column}"


# -- design-based estimates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate(Serialisable):
    """A weighted estimate of one metric over one domain of the day.

    ``n`` judged rows of the domain had a value; ``population`` is the estimated number of
    rows of the day in the domain (``sum w_i d_i``); ``design_effect`` is the variance over
    that of a simple random sample of the same size (Kish 1965). ``covered_share`` is the
    share of the day's rows in strata with at least one judged value: below 1 the estimate
    describes only those strata (noted in ``reason``). Abstained estimates carry ``reason``
    and ``None`` where a number could not be computed; nothing is NaN.
    """

    metric: str
    kind: Kind
    domain: str
    method: str
    alpha: float
    n: int
    strata: int
    population: float | None = None
    estimate: float | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    df: float | None = None
    design_effect: float | None = None
    covered_share: float | None = None
    abstained: bool = False
    reason: str = ""


def judgments_frame(judgments: Mapping[str, Any]) -> pd.DataFrame:
    """Judgments as columns to join onto the sample (``sample.join(judgments_frame(j), on="request_id")``).

    ``judgments`` maps request_id to a judgment with ``scores``, ``flags`` and
    ``not_assessed`` (a ``judge.rubric.Judgment`` or a dict of that shape). One row per
    request_id: a float column per dimension, a nullable boolean column per flag, and
    whatever is listed in ``not_assessed`` is missing (NaN / <NA>) rather than its neutral
    placeholder, so it stays out of the estimates.
    """
    records = []
    for request_id, judgment in judgments.items():
        get = judgment.get if isinstance(judgment, Mapping) else lambda name, j=judgment: getattr(j, name, None)
        skipped = set(get("not_assessed") or ())
        scores, flags = get("scores") or {}, get("flags") or {}
        records.append({"request_id": request_id,
                        **{d: None if d in skipped else scores.get(d) for d in DIMENSIONS},
                        **{f: None if f in skipped else flags.get(f) for f in FLAGS}})
    frame = pd.DataFrame(records, columns=["request_id", *DIMENSIONS, *FLAGS]).set_index("request_id")
    frame[DIMENSIONS] = frame[DIMENSIONS].astype(float)
    for flag in FLAGS:
        frame[flag] = frame[flag].astype("boolean")
    return frame


def _population_sizes(sample: pd.DataFrame, population: Mapping[str, int] | None, stratum_column: str, weight_column: str) -> dict[str, float]:
    """``N_h`` per stratum: given, or the sum of the design weights of the stratum's sampled rows (exactly ``N_h``)."""
    if population is not None:
        return {str(k): float(v) for k, v in population.items()}
    if weight_column not in sample:
        raise KeyError(f"the sample needs a {weight_column!r} column or population sizes per stratum")
    return sample.groupby(stratum_column, sort=True)[weight_column].sum().astype(float).to_dict()


def _values(sample: pd.DataFrame, column: str, kind: Kind) -> pd.Series:
    """The column as floats (NaN where missing); a rate's values must be 0/1 (booleans allowed)."""
    raw = sample[column]
    values = pd.to_numeric(raw.map(lambda v: float(v) if isinstance(v, bool | np.bool_) else v), errors="coerce").astype(float)
    if kind == "rate":
        present = values.dropna()
        if not present.isin([0.0, 1.0]).all():
            raise ValueError(f"{column} is not a 0/1 flag: values {sorted(present.unique())[:5]}")
    return values


def _t(p: float, df: float) -> float:
    return float(special.stdtrit(df, p))


def korn_graubard_interval(p: float, variance: float, n: int, alpha: float) -> tuple[float, float, float]:
    """Korn & Graubard (1998) interval for a survey proportion: Clopper–Pearson at the effective sample size.

    ``n* = p (1 - p) / variance`` capped at ``n`` (and ``n`` itself when ``p`` is 0 or 1 or the
    variance is 0); ``x* = p n*``; bounds are Beta quantiles ``B(alpha/2; x*, n* - x* + 1)`` and
    ``B(1 - alpha/2; x* + 1, n* - x*)``, with 0 and 1 at the edges. Returns (low, high, n*).
    """
    n_eff = float(n) if (p <= 0 or p >= 1 or variance <= 0) else min(float(n), p * (1 - p) / variance)
    x = p * n_eff
    low = 0.0 if x <= 0 else float(stats.beta.ppf(alpha / 2, x, n_eff - x + 1))
    high = 1.0 if x >= n_eff else float(stats.beta.ppf(1 - alpha / 2, x + 1, n_eff - x))
    return low, high, n_eff


def stratified_estimate(sample: pd.DataFrame, column: str, *, kind: Kind = "mean", domain: pd.Series | None = None, domain_label: str = ALL,
                        population: Mapping[str, int] | None = None, alpha: float = DEFAULT_ALPHA, metric: str | None = None,
                        stratum_column: str = STRATUM_COLUMN, weight_column: str = WEIGHT_COLUMN) -> Estimate:
    """Hájek estimate of the mean (``kind="mean"``) or rate (``kind="rate"``) of ``column`` over a domain, with the
    stratified design variance and an interval (see the module docstring for the formulas and sources).

    ``sample``: the judged sample with a ``stratum`` column (and ``weight`` unless ``population``
    gives ``N_h`` per stratum, e.g. ``SampleResult.population_sizes()``); ``domain``: a boolean
    Series aligned with ``sample`` (None: every row).
    """
    _check_alpha(alpha)
    metric = metric or metric_name(column)
    method = ("Hájek ratio of Horvitz–Thompson totals, stratified SRSWOR linearised variance, "
              + ("Student t interval" if kind == "mean" else "Korn–Graubard interval"))
    base = dict(metric=metric, kind=kind, domain=domain_label, method=method, alpha=alpha)
    sizes = _population_sizes(sample, population, stratum_column, weight_column)
    values = _values(sample, column, kind)
    in_domain = pd.Series(True, index=sample.index) if domain is None else domain.reindex(sample.index).fillna(False).astype(bool)
    judged = values.notna()
    strata = sample[stratum_column].astype(str)
    n_d = int((judged & in_domain).sum())
    if n_d < MIN_ROWS:
        return Estimate(**base, n=n_d, strata=0, abstained=True, reason=f"{n_d} judged rows in domain {domain_label}; need at least {MIN_ROWS}")

    parts = []  # (N_h, n_h, y, d) per stratum with judged rows
    mask = judged.to_numpy()
    y_all, d_all = values.to_numpy()[mask], in_domain.to_numpy(dtype=float)[mask]
    codes, labels = pd.factorize(strata.to_numpy()[mask], sort=True)
    for code, label in enumerate(labels):
        if label not in sizes:
            raise KeyError(f"no population size for stratum {label!r}")
        rows = codes == code
        parts.append((sizes[label], int(rows.sum()), y_all[rows], d_all[rows]))
    total = sum(sizes.values())
    covered = sum(p[0] for p in parts) / total if total else 0.0
    n_hat_d = sum(big_n / n_h * d.sum() for big_n, n_h, _, d in parts)
    ratio = sum(big_n / n_h * (d * y).sum() for big_n, n_h, y, d in parts) / n_hat_d

    variance, notes, single = 0.0, [], 0
    pooled = _pooled_within_variance(parts, ratio, n_hat_d)
    for big_n, n_h, y, d in parts:
        fpc = max(0.0, 1 - n_h / big_n)
        if n_h >= 2:
            variance += big_n**2 * fpc * float(np.var(d * (y - ratio) / n_hat_d, ddof=1)) / n_h
        elif fpc > 0 and d.any():
            variance += big_n**2 * fpc * pooled / n_h
            single += 1
    if single:
        notes.append(f"{single} strata with a single judged row borrow the pooled within-stratum variance")
    if covered < 1:
        notes.append(f"strata holding {1 - covered:.1%} of the day's rows have no judged {column}: the estimate covers the rest")
    h_d = sum(1 for _, _, _, d in parts if d.any())
    df = float(max(1, n_d - h_d))
    se = math.sqrt(max(variance, 0.0))
    domain_values = np.concatenate([y[d > 0] for _, _, y, d in parts])
    srs_var = float(np.var(domain_values, ddof=1)) / n_d
    deff = variance / srs_var if srs_var > 0 else None
    if kind == "rate":
        low, high, _ = korn_graubard_interval(ratio, variance, n_d, alpha)
    else:
        half = _t(1 - alpha / 2, df) * se
        low, high = ratio - half, ratio + half
    return Estimate(**base, n=n_d, strata=h_d, population=n_hat_d, estimate=ratio, se=se, ci_low=low, ci_high=high, df=df,
                    design_effect=deff, covered_share=covered, reason="; ".join(notes))


def _pooled_within_variance(parts: list, ratio: float, n_hat_d: float) -> float:
    """Pooled within-stratum variance of the linearised values over strata with >= 2 judged rows (0 if none)."""
    num, den = 0.0, 0
    for _, n_h, y, d in parts:
        if n_h >= 2:
            z = d * (y - ratio) / n_hat_d
            num += float(((z - z.mean()) ** 2).sum())
            den += n_h - 1
    return num / den if den else 0.0


def estimate_judgments(sample: pd.DataFrame, *, columns: Sequence[str] | None = None, by: Sequence[str] = (),
                       population: Mapping[str, int] | None = None, alpha: float = DEFAULT_ALPHA,
                       stratum_column: str = STRATUM_COLUMN, weight_column: str = WEIGHT_COLUMN) -> list[Estimate]:
    """Estimates of every judge dimension (mean) and flag (rate) for the whole day and for each value of each ``by`` key.

    ``columns`` defaults to the dimensions and flags present in ``sample``; ``by`` keys are
    columns or ``metadata.<key>`` (e.g. ``variant``, ``metadata.topic``) and each of their
    values is a domain, labelled ``key=value``. A domain with fewer than 2 judged rows abstains.
    """
    columns = [c for c in (DIMENSIONS + FLAGS) if c in sample] if columns is None else list(columns)
    domains: list[tuple[str, pd.Series | None]] = [(ALL, None)]
    for key in by:
        values = stratum_values(sample, key)
        domains += [(f"{key}={value}", values == value) for value in sorted(values.unique())]
    out = []
    for column in columns:
        kind: Kind = "rate" if column in FLAGS else "mean"
        for label, mask in domains:
            out.append(stratified_estimate(sample, column, kind=kind, domain=mask, domain_label=label, population=population, alpha=alpha,
                                           stratum_column=stratum_column, weight_column=weight_column))
    return out


def estimates_frame(estimates: Sequence[Estimate]) -> pd.DataFrame:
    """The estimates as a table, one row each (``to_dict()`` columns)."""
    return pd.DataFrame([e.to_dict() for e in estimates])


# -- prediction-powered inference ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PPIEstimate(Serialisable):
    """A prediction-powered estimate of a mean, with the classical (human-only) and judge-only estimates beside it.

    ``lam`` is the PPI++ weight (1: plain PPI, 0: classical). ``judge_ci_*`` is the naive
    interval of the judge alone, valid only if the judge were unbiased: it is reported to
    show how far off trusting the judge would be, not to be used. ``rectifier`` is
    ``mean_n(f - Y)``, the judge's estimated bias on the labelled rows.
    """

    metric: str
    method: str
    alpha: float
    n_labelled: int
    n_unlabelled: int
    lam: float | None = None
    estimate: float | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    rectifier: float | None = None
    classical_estimate: float | None = None
    classical_se: float | None = None
    judge_estimate: float | None = None
    judge_ci_low: float | None = None
    judge_ci_high: float | None = None
    abstained: bool = False
    reason: str = ""


def _array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite (drop rows without a judgment or label first)")
    return array


def _weights(weights: Any, size: int, name: str) -> np.ndarray:
    if weights is None:
        return np.ones(size)
    w = _array(weights, name)
    if w.size != size or (w <= 0).any():
        raise ValueError(f"{name} must be {size} positive numbers")
    return w


def _influence(x: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
    """Hájek mean of ``x`` and the per-row linearised contributions ``u_i = w_i (x_i - mean) / sum w``, scaled by
    ``sqrt(n / (n - 1))`` so that ``sum u_i^2`` is the with-replacement variance estimate (``s^2 / n`` unweighted)."""
    mean = float(np.dot(w, x) / w.sum())
    u = w * (x - mean) / w.sum() * math.sqrt(x.size / (x.size - 1))
    return mean, u


def ppi_mean(judge_unlabelled: Any, judge_labelled: Any, human_labelled: Any, *, alpha: float = DEFAULT_ALPHA, power_tuning: bool = False,
             lam: float | None = None, clip_lambda: bool = True, weights_unlabelled: Any = None, weights_labelled: Any = None,
             metric: str = "") -> PPIEstimate:
    """Prediction-powered estimate and CLT interval of the mean of a human label (Angelopoulos et al. 2023, *Science*).

    ``judge_unlabelled``: the judge's values on the N rows without a human label;
    ``judge_labelled`` / ``human_labelled``: judge and human values on the n labelled rows
    (same order). Scores or 0/1 flags. ``power_tuning=True`` estimates the PPI++ ``lambda``
    (Angelopoulos, Duchi & Zrnic 2023), clipped to [0, 1] unless ``clip_lambda=False``; a
    given ``lam`` is used as is; otherwise ``lambda = 1`` (plain PPI). Abstains below 2
    labelled or 2 unlabelled rows, or when no variance at all can be estimated.
    """
    _check_alpha(alpha)
    f_u, f_l, y = _array(judge_unlabelled, "judge_unlabelled"), _array(judge_labelled, "judge_labelled"), _array(human_labelled, "human_labelled")
    if f_l.size != y.size:
        raise ValueError(f"judge_labelled and human_labelled differ in length: {f_l.size} and {y.size}")
    w_u, w_l = _weights(weights_unlabelled, f_u.size, "weights_unlabelled"), _weights(weights_labelled, f_l.size, "weights_labelled")
    tuned = power_tuning and lam is None
    method = ("PPI++ (power-tuned, Angelopoulos, Duchi & Zrnic 2023)" if tuned else "prediction-powered inference (Angelopoulos et al. 2023)") \
        + ", CLT interval" + (", Hájek-weighted" if weights_unlabelled is not None or weights_labelled is not None else "")
    base = dict(metric=metric, method=method, alpha=alpha, n_labelled=int(y.size), n_unlabelled=int(f_u.size))
    if y.size < MIN_ROWS or f_u.size < MIN_ROWS:
        return PPIEstimate(**base, abstained=True, reason=f"need at least {MIN_ROWS} labelled and {MIN_ROWS} unlabelled rows, got {y.size} and {f_u.size}")

    z = float(special.ndtri(1 - alpha / 2))
    mean_fu, u_fu = _influence(f_u, w_u)
    mean_fl, u_fl = _influence(f_l, w_l)
    mean_y, u_y = _influence(y, w_l)
    var_fu, var_fl, var_y, cov_yf = float(u_fu @ u_fu), float(u_fl @ u_fl), float(u_y @ u_y), float(u_y @ u_fl)
    if tuned:
        denominator = var_fl + var_fu
        lam = cov_yf / denominator if denominator > 0 else 0.0
        if clip_lambda:
            lam = min(1.0, max(0.0, lam))
    lam = 1.0 if lam is None else float(lam)
    estimate = mean_y + lam * (mean_fu - mean_fl)
    variance = var_y - 2 * lam * cov_yf + lam * lam * var_fl + lam * lam * var_fu
    judge_half = z * math.sqrt(var_fu)
    common = dict(lam=lam, rectifier=mean_fl - mean_y, classical_estimate=mean_y, classical_se=math.sqrt(var_y), judge_estimate=mean_fu,
                  judge_ci_low=mean_fu - judge_half, judge_ci_high=mean_fu + judge_half)
    if variance <= 0:
        return PPIEstimate(**base, **common, estimate=estimate, abstained=True, reason="zero estimated variance: judge and labels are constant")
    se = math.sqrt(variance)
    return PPIEstimate(**base, **common, estimate=estimate, se=se, ci_low=estimate - z * se, ci_high=estimate + z * se)


def ppi_from_frame(frame: pd.DataFrame, judge_column: str, human_column: str, *, alpha: float = DEFAULT_ALPHA, power_tuning: bool = False,
                   weight_column: str | None = None, metric: str | None = None) -> PPIEstimate:
    """:func:`ppi_mean` on a judged frame where ``human_column`` is filled on the human-labelled rows only.

    Rows with a judge value and a human label form the labelled set; rows with a judge
    value and no label the unlabelled set; rows without a judge value are dropped.
    Booleans (flags) count as 0/1.
    """
    judge = _values(frame, judge_column, "mean")
    human = _values(frame, human_column, "mean")
    has_judge = judge.notna()
    labelled, unlabelled = has_judge & human.notna(), has_judge & human.isna()
    weights = frame[weight_column].astype(float) if weight_column else None
    return ppi_mean(judge[unlabelled], judge[labelled], human[labelled], alpha=alpha, power_tuning=power_tuning,
                    weights_unlabelled=None if weights is None else weights[unlabelled],
                    weights_labelled=None if weights is None else weights[labelled], metric=metric or metric_name(judge_column))


def ppi_moments(judge_values: Any, human_values: Any) -> dict[str, float]:
    """Sufficient statistics of a prediction-powered mean (Angelopoulos et al. 2023) that add up across days.

    ``judge_values`` and ``human_values`` are aligned (NaN where missing). Rows with a judge
    value and no human label give ``n_unlabelled``, ``judge_sum`` and ``judge_sum_sq``; rows
    with both give ``n_labelled`` and the residuals ``Y - f`` (human minus judge) as
    ``residual_sum`` and ``residual_sum_sq``. The mean is ``judge_sum / n_unlabelled +
    residual_sum / n_labelled`` (:class:`modelwatch.experiments.stats.PPIStats`).
    """
    judge, human = np.asarray(judge_values, dtype=float), np.asarray(human_values, dtype=float)
    if judge.shape != human.shape:
        raise ValueError(f"judge and human values differ in length: {judge.size} and {human.size}")
    has_judge, has_human = ~np.isnan(judge), ~np.isnan(human)
    unlabelled, residual = judge[has_judge & ~has_human], (human - judge)[has_judge & has_human]
    return {"n_unlabelled": int(unlabelled.size), "judge_sum": float(unlabelled.sum()), "judge_sum_sq": float(unlabelled @ unlabelled),
            "n_labelled": int(residual.size), "residual_sum": float(residual.sum()), "residual_sum_sq": float(residual @ residual)}


def ppi_by_arm(frame: pd.DataFrame, *, arm_column: str = "variant", human_prefix: str = "human_") -> dict[str, dict[str, dict[str, float]]]:
    """Per arm (``arm_column`` value), :func:`ppi_moments` of each judge metric that people labelled on some of the arm's rows.

    ``frame`` is the judged sample joined with review labels as ``{human_prefix}<label>``
    columns; keys are metric names (``judge.helpfulness``, ``judge.toxicity_rate``). Booleans
    (flags) count as 0/1. An arm whose rows have no human label for a metric has no entry for it.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for column in DIMENSIONS + FLAGS:
        human_column = f"{human_prefix}{column}"
        if column not in frame or human_column not in frame:
            continue
        judge, human = _values(frame, column, "mean"), _values(frame, human_column, "mean")
        for arm, rows in frame.groupby(arm_column, sort=True).groups.items():
            moments = ppi_moments(judge.loc[rows], human.loc[rows])
            if moments["n_labelled"]:
                out.setdefault(str(arm), {})[metric_name(column)] = moments
    return out
