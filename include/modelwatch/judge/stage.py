"""The judge stage: a stratified, budgeted sample of the day's answers judged against a rubric.

Writes ``judge.parquet`` (every judgment with its reasoning, weight and cost) and
``judge.json`` (sample design, spend, weighted estimates with intervals, golden-set
agreement and the per-label verdict of ``judge.trust`` under ``agreement``, warnings for
experiment primary metrics that are not usable, prediction-powered estimates from returned
review labels, the shadow/served pairwise comparison) and the day's blind review queue;
returns the small summary the run publishes, ``agreement`` included (the experiments stage
reads it). The statistics live in ``judge.sampling``, ``judge.estimates``,
``judge.calibration``, ``judge.trust`` and ``judge.pairwise``; the calls in ``judge.calls``,
``judge.runner`` and ``judge.attempts``.
"""

from __future__ import annotations

import logging
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.results import JudgeRecord, ValidateRecord
from modelwatch.stages import StageContext, StageResult, Upstream, record
from modelwatch.storage.keys import report_uri
from modelwatch.storage.s3 import get_bytes, list_objects, put_bytes, put_json, put_table

log = logging.getLogger(__name__)

NAME = "judge"
NEEDS: tuple[str, ...] = ("validate",)


def run(ctx: StageContext, upstream: Upstream) -> StageResult[JudgeRecord]:
    """Judge a stratified, budgeted sample (the runner has checked that the model has a judge)."""
    return StageResult(NAME, _judge(ctx.client, ctx.cfg, record(upstream["validate"]), ctx.judge_connection()))



def _judge_backend(settings, connection: dict[str, Any] | None):
    """The configured judge; prices from the settings unless the connection's extra sets its own."""
    from modelwatch.judge.backends import backend_from_settings, connection_extra

    if settings.backend == "heuristic":
        return backend_from_settings("heuristic")
    extra = {"price_in_per_1k": settings.price_per_1k_input_usd, "price_out_per_1k": settings.price_per_1k_output_usd,
             **connection_extra(connection or {})}
    return backend_from_settings(settings.backend, settings.model, {**(connection or {}), "extra": extra})


def _judge(client, cfg: MonitoringConfig, validated: ValidateRecord, connection: dict[str, Any] | None = None) -> JudgeRecord:
    """Judge a stratified, budgeted sample of the day's answers; judge.parquet, weighted estimates, review queue, reference metrics."""
    import pandas as pd

    from modelwatch.judge import summary
    from modelwatch.judge.calibration import review_queue
    from modelwatch.judge.day_rows import DayRows, judge_items
    from modelwatch.judge.estimates import estimate_judgments, judgments_frame
    from modelwatch.judge.reference_metrics import reference_scores, reference_summary
    from modelwatch.judge.rubric import load_rubric
    from modelwatch.judge.runner import JudgeRunner, JudgmentCache
    from modelwatch.judge.sampling import plan_sample_size
    from modelwatch.judge.trust import agreement_table, injection_resistance, primary_metric_warnings
    from modelwatch.summaries import merged

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    settings = model.judge
    rubric = load_rubric(settings.rubric)
    backend = _judge_backend(settings, connection)
    day = DayRows(merged(client, validated["valid_uri"], NAME, summary.load))
    seed = int(partition.dt.strftime("%Y%m%d"))
    cache = JudgmentCache(client, cfg.defaults.reports_uri, io_threads=8)

    def runner(budget: float) -> JudgeRunner:
        return JudgeRunner(backend, rubric, cache, budget_usd=budget, concurrency=settings.concurrency, retries=settings.retries,
                           timeout_s=settings.timeout_s, seed=seed)

    # The golden set may take up to GOLDEN_BUDGET_SHARE of the day's budget; cached, it is a one-time cost per rubric version
    # and judge (spread over days when the share is too small), and never starves the day's sample.
    golden = _golden_items(settings.rubric)
    golden_run = runner(settings.daily_budget_usd * GOLDEN_BUDGET_SHARE).run([item for item, _ in golden])
    calibration = _golden_agreement(golden_run, golden)
    judged_golden, human_golden = _golden_frames(golden_run, golden)
    remaining = max(settings.daily_budget_usd - golden_run.spent_usd, 0.0)
    plan = plan_sample_size(remaining, _expected_cost(backend, rubric, day.median_answer()), settings.max_samples, ci_width=settings.ci_width,
                            population=day.population)
    sample = day.sample(plan.n, settings, seed)
    result = runner(remaining).run(judge_items(sample.rows))
    outcomes = pd.DataFrame([{k: v for k, v in o.to_dict().items() if k != "judgment"} | {"reasoning": o.judgment.reasoning if o.judgment else None}
                             for o in result.outcomes]).rename(columns={"item_id": "request_id", "status": "judge_status"})
    judged = sample.rows.join(judgments_frame(result.judgments()), on="request_id").merge(outcomes, on="request_id", how="left")
    agreement = agreement_table(judged_golden, human_golden, judged, dimensions=list(rubric.dimensions), flags=list(rubric.flags),
                                min_kappa=settings.min_kappa)
    agreement_warnings = primary_metric_warnings(model.experiments, agreement, settings.min_kappa)
    attacks = {item.item_id: labels["metadata"]["attack"] for item, labels in golden if "attack" in (labels.get("metadata") or {})}
    resistance = injection_resistance(judged_golden, human_golden, attacks, dimensions=list(rubric.dimensions), flags=list(rubric.flags))
    for warning in agreement_warnings:
        log.warning("%s", warning["message"])
    keep = [c for c in judged.columns if c not in ("prompt", "response", "reference", "metadata")]
    judge_uri = put_table(client, report_uri(cfg, partition, "judge.parquet"), _arrow(judged[keep + ["prompt", "response"]]))
    estimates = estimate_judgments(judged, by=["variant", *[s for s in model.segments if s.startswith("metadata.")]],
                                   population=sample.population_sizes())
    queue_jsonl, queue_csv = review_queue(sample.rows, settings.review_sample, list(settings.stratify_by), seed) if settings.review_sample else (b"", b"")
    review_prefix = report_uri(cfg, partition, "review")
    put_bytes(client, f"{review_prefix}/queue.jsonl", queue_jsonl, "application/x-ndjson")
    put_bytes(client, f"{review_prefix}/queue.csv", queue_csv, "text/csv")
    pairwise = _shadow_pairwise(day, settings, backend, rubric, max(remaining - result.spent_usd, 0.0), seed)
    ppi = _ppi_with_review_labels(client, cfg, model.id, judged)
    with_reference = day.reference_rows(MAX_REFERENCE_ROWS, seed)  # ROUGE/BLEU/semantic similarity embed every row: a uniform sample bounds the cost
    references = reference_summary(reference_scores(with_reference)).to_dict(orient="records") if len(with_reference) else []
    record = {"partition": partition.to_dict(), "outcome": "ok", "rubric": {"name": rubric.name, "version": rubric.version},
              "backend": backend.describe(), "plan": plan.to_dict(), "design": sample.to_dict(), "run": result.summary(),
              "golden_run": golden_run.summary(), "agreement": agreement, "agreement_warnings": agreement_warnings,
              "injection_resistance": resistance,
              "estimates": [e.to_dict() for e in estimates], "reference_metrics": references, "calibration": calibration, "ppi": ppi,
              "pairwise": pairwise,
              "review_queue": {"jsonl": f"{review_prefix}/queue.jsonl", "csv": f"{review_prefix}/queue.csv"}, "judge_uri": judge_uri}
    uri = put_json(client, report_uri(cfg, partition, "judge.json"), record)
    overall = {e.metric: {k: e.to_dict()[k] for k in ("estimate", "ci_low", "ci_high", "n")} for e in estimates if e.domain == "all" and not e.abstained}
    by_variant = {}
    for e in estimates:
        if e.domain.startswith("variant=") and not e.abstained:
            by_variant.setdefault(e.domain.split("=", 1)[1], {})[e.metric] = {k: e.to_dict()[k] for k in ("estimate", "ci_low", "ci_high", "n")}
    return {"partition": partition.to_dict(), "outcome": "ok", "judge_json": uri, "judge_uri": judge_uri, "overall": overall, "by_variant": by_variant,
            "counts": result.counts, "spent_usd": result.spent_usd, "budget_usd": settings.daily_budget_usd, "sampled": sample.sampled,
            "limited_by": plan.limited_by, "backend": backend.describe(), "agreement": agreement, "agreement_warnings": agreement_warnings,
            "pairwise": {k: pairwise.get(k) for k in ("label_a", "label_b", "judged", "consistency_rate", "wins", "losses", "ties", "win_rate",
                                                       "win_rate_ci", "sign_test_p")} if pairwise.get("judged") else None,
            "ppi_by_arm": ppi.get("by_arm") or {}}


MAX_REFERENCE_ROWS = 1000  # reference metrics per day: the mean of 1,000 rows has a standard error under 1/30 of the score's sd
EXPECTED_OUTPUT_TOKENS = 200  # a rubric answer: scores, flags and a few sentences of reasoning
GOLDEN_BUDGET_SHARE = 0.2


def _expected_cost(backend, rubric, median: tuple[str, str] | None) -> float:
    """Expected cost of one judge call, to size the sample: the median answer's (prompt, response) at ~4 characters a token.

    The runner enforces the budget with each call's worst-case cost; planning with that
    bound would judge several times fewer rows than the budget buys.
    """
    pricing = getattr(backend, "pricing", None)
    if pricing is None or median is None:
        return 0.0
    system, user = rubric.prompt(*median)
    return pricing.cost(len(system + user) // 4, EXPECTED_OUTPUT_TOKENS)


def _shadow_pairwise(day, settings, backend, rubric, budget: float, seed: int) -> dict[str, Any]:
    """Shadow answers against the served answer to the same request, judged in both orders (position-consistency controlled).

    A shadow row names the request it mirrors in ``metadata.shadow_of``; at most
    ``judge.pairwise_samples`` pairs are drawn (``judge.day_rows.DayRows.shadow_pairs``) and
    judged within what is left of the day's budget.
    """
    from modelwatch.judge.pairwise_runner import PairwiseRunner

    if not settings.pairwise_samples:
        return {"reason": "pairwise_samples is 0"}
    chosen, drawn = day.shadow_pairs(settings.pairwise_samples, seed)
    if not chosen:
        return drawn
    runner = PairwiseRunner(backend, rubric, budget_usd=budget, concurrency=settings.concurrency, retries=settings.retries,
                            timeout_s=settings.timeout_s, seed=seed)
    return {**drawn, **runner.run(chosen).summary()}


def _golden_items(rubric: str) -> list[tuple[Any, dict[str, Any]]]:
    """(JudgeItem, human labels) of the rubric's golden set; empty when the rubric has none."""
    from modelwatch.judge.calibration import golden_path, load_golden
    from modelwatch.judge.calls import JudgeItem

    path = golden_path(rubric)
    if not path.exists():
        return []
    golden = load_golden(path)
    return [(JudgeItem(f"golden:{gid}", row["prompt"], row["response"], row["reference"] if isinstance(row["reference"], str) else None),
             row.to_dict()) for gid, row in golden.iterrows()]


def _golden_frames(result, golden: list[tuple[Any, dict[str, Any]]]):
    """The judge's and the people's labels of the golden set, indexed by item id; (None, None) when the rubric has none."""
    import pandas as pd

    from modelwatch.judge.calibration import LABELS
    from modelwatch.judge.estimates import judgments_frame

    if not golden:
        return None, None
    human = pd.DataFrame([{"request_id": item.item_id, **{k: labels.get(k) for k in LABELS}} for item, labels in golden]).set_index("request_id")
    return judgments_frame(result.judgments()), human


def _golden_agreement(result, golden: list[tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    """Judge–human agreement on the golden set (Cohen's kappa, flag precision/recall)."""
    from modelwatch.judge.calibration import agreement

    judged, human = _golden_frames(result, golden)
    if judged is None:
        return {"reason": "this rubric has no golden set under include/config/golden/"}
    return agreement(judged, human)


def _ppi_with_review_labels(client, cfg: MonitoringConfig, model_id: str, judged) -> dict[str, Any]:
    """Prediction-powered estimates (Angelopoulos et al. 2023) where people labelled part of today's judged rows.

    Filled-in review files go under ``{labels_uri}/model_id=M/review/*.jsonl``; labels are
    matched to today's judged rows by request_id. ``estimates`` are the day's overall
    estimates; ``by_arm`` the per-variant sums the experiments stage adds up from an
    experiment's start (:func:`modelwatch.judge.estimates.ppi_by_arm`), kept from one label on.
    """
    from modelwatch.judge.calibration import DIMENSIONS, FLAGS, read_review_labels
    from modelwatch.judge.estimates import ppi_by_arm, ppi_from_frame

    frames, problems = [], []
    for uri, _ in list_objects(client, f"{cfg.defaults.labels_uri}/model_id={model_id}/review/"):
        if uri.endswith(".jsonl"):
            read = read_review_labels(get_bytes(client, uri))
            frames.append(read.labels)
            problems += [f"{uri}:{p.line}: {p.reason}" for p in read.problems]
    labelled = [f for f in frames if len(f)]
    if not labelled:
        return {"reason": "no human review labels for this model yet", "problems": problems}
    import pandas as pd

    labels = pd.concat(labelled)
    labels = labels[~labels.index.duplicated(keep="last")].add_prefix("human_")
    frame = judged.join(labels, on="request_id")
    matched = int(frame[[f"human_{d}" for d in DIMENSIONS + FLAGS if f"human_{d}" in frame]].notna().any(axis=1).sum())
    by_arm = ppi_by_arm(frame) if matched and "variant" in frame else {}
    if matched < 2:
        return {"reason": f"{matched} of today's judged rows have human labels; PPI needs at least 2", "problems": problems, "by_arm": by_arm}
    out = {}
    for name in DIMENSIONS + FLAGS:
        if f"human_{name}" in frame and name in frame:
            out[name] = ppi_from_frame(frame, name, f"human_{name}", power_tuning=True, weight_column="weight").to_dict()
    return {"labelled_rows": matched, "estimates": out, "problems": problems, "by_arm": by_arm}


def _arrow(frame):
    """A frame as an Arrow table, object columns with mixed content rendered as text."""
    import pyarrow as pa

    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    return pa.Table.from_pandas(frame, preserve_index=False)
