"""The drift stage: the partition's incumbent traffic against the model's baseline; drift.json, report.html (Evidently).

The day is not read again: the shard tasks summarise its incumbent rows (``drift.summary``) and the stage
tests the merge of their summaries (``drift.sides.SummarySide``) against the baseline's reference sample.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.results import DriftRecord, ValidateRecord
from modelwatch.stages import StageContext, StageResult, Upstream, record
from modelwatch.storage.keys import report_uri
from modelwatch.storage.s3 import put_bytes, put_json

NAME = "drift"
NEEDS: tuple[str, ...] = ("validate",)


def run(ctx: StageContext, upstream: Upstream) -> StageResult[DriftRecord]:
    """Drift against the baseline (raises BaselineMissing: the runner records no_baseline)."""
    return StageResult(NAME, _drift(ctx.client, ctx.cfg, record(upstream["validate"])))


def _embedding_drift(client, cfg: MonitoringConfig, model, baseline, current, seed: int) -> list[dict[str, Any]]:
    """MMD permutation test per text column: the baseline's embedding sample against the day's (``current``, a ``drift.sides`` side)
    ``drift.embedding_sample`` non-empty texts of smallest request-id hash, the baseline's own inclusion rule."""
    import numpy as np

    from modelwatch.drift.mmd import mmd_test
    from modelwatch.drift.sides import bottom_k_texts
    from modelwatch.embeddings import EmbeddingCache

    out = []
    cache = EmbeddingCache(client, cfg.defaults.reports_uri, backend=cfg.defaults.embedding_backend)
    for column in model.drift.text:
        reference = baseline.embeddings(client, column, cache)
        if reference is None:
            out.append({"column": column, "drift": False, "severity": "none", "reason": "the baseline has no embedding sample of this column"})
            continue
        texts = bottom_k_texts(current.text_rows(column), column, model.drift.embedding_sample)
        vectors, cache_stats = cache.get_or_embed(texts) if texts else (np.zeros((0, reference.shape[1]), np.float32), {})
        result = mmd_test(reference, vectors, n_permutations=model.drift.permutations, alpha=model.drift.embedding_alpha, seed=seed)
        out.append({"column": column, **result.to_dict(), "cache": cache_stats})
    return _decide_embedding_family(out, model.drift.embedding_alpha)


def _segment_embedding_test(client, cfg: MonitoringConfig, model, seed: int):
    """The MMD test of one segment's texts (``drift.families.EmbeddingTest``): at most ``drift.segment_embedding_rows``
    texts a side (smallest request-id hashes), embedded through the content-addressed cache (the baseline's and yesterday's texts are hits)."""
    from modelwatch.drift.mmd import mmd_test
    from modelwatch.drift.sides import bottom_k_texts
    from modelwatch.embeddings import EmbeddingCache

    cache = EmbeddingCache(client, cfg.defaults.reports_uri, backend=cfg.defaults.embedding_backend)
    rows = model.drift.segment_embedding_rows

    def test(reference, current, column: str, permutations: int) -> dict[str, Any]:
        texts = {side: bottom_k_texts(frame, column, rows) for side, frame in (("reference", reference), ("current", current))}
        if not (texts["reference"] and texts["current"]):
            return {"mmd2": None, "p_value": None, "drift": False, "n_reference": len(texts["reference"]), "n_current": len(texts["current"]),
                    "reason": "no text on one side"}
        (ref, _), (cur, _) = cache.get_or_embed(texts["reference"]), cache.get_or_embed(texts["current"])
        # no cache counts in the result: a re-run of the day (all hits) writes the same drift.json
        return mmd_test(ref, cur, n_permutations=permutations, alpha=model.drift.alpha, seed=seed).to_dict()

    return test


def _decide_embedding_family(checks: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    """Benjamini–Hochberg over the text columns' MMD p-values, as over every other drift family.

    MMD has no calibrated effect scale, so a significant embedding drift is graded medium.
    """
    from scipy.stats import false_discovery_control

    tested = [c for c in checks if c.get("p_value") is not None]
    adjusted = false_discovery_control([c["p_value"] for c in tested], method="bh") if tested else []
    for check, p_adj in zip(tested, adjusted):
        check.update(p_adjusted=float(p_adj), drift=bool(p_adj < alpha))
    for check in checks:
        check["severity"] = "medium" if check.get("drift") else "none"
    return checks


def _drift(client, cfg: MonitoringConfig, validated: ValidateRecord) -> DriftRecord:
    """Drift of the partition's incumbent traffic against the model's baseline: drift.json, report.html (Evidently)."""
    from modelwatch.baseline.columns import DriftColumns
    from modelwatch.baseline.store import load_baseline
    from modelwatch.drift import summary
    from modelwatch.drift.families import analyze
    from modelwatch.drift.sides import SummarySide
    from modelwatch.drift.univariate import DriftPolicy, worst
    from modelwatch.summaries import merged

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    settings = model.drift
    drift_uri = report_uri(cfg, partition, "drift.json")
    baseline = load_baseline(client, cfg, model)  # BaselineMissing: the runner records no_baseline in drift.json
    day = merged(client, validated["valid_uri"], NAME, summary.load)
    current = SummarySide(day)
    names = baseline.manifest["columns"]
    columns = DriftColumns(features=names["features"], prediction=names["prediction"], input_length=names["input_length"],
                           segments=names["segments"], text=names["text"], kinds=baseline.kinds)
    policy = DriftPolicy(alpha=settings.alpha, methods=dict(settings.methods))
    seed = int(partition.dt.strftime("%Y%m%d"))
    segment_embedding = _segment_embedding_test(client, cfg, model, seed) if settings.text and settings.segment_embedding_segments else None
    result = analyze(baseline.reference, current, columns, policy, settings.min_segment_count, baseline.profiles, segment_embedding,
                     settings.segment_embedding_segments, settings.permutations)
    result["embedding"] = _embedding_drift(client, cfg, model, baseline, current, seed) if settings.text and len(current) else []
    result["alerts"] += [{"family": "embedding", "column": e["column"], "severity": e["severity"], "effect_method": "mmd2", "effect": e.get("mmd2"),
                          "p_adjusted": e.get("p_adjusted")} for e in result["embedding"] if e.get("drift")]
    result["severity"] = worst([result["severity"], *(e["severity"] for e in result["embedding"])])
    result.update(partition=partition.to_dict(), outcome="ok", baseline={k: baseline.manifest[k] for k in ("version", "window", "rows_used", "reference_rows", "uri")})
    result["report"] = _evidently_report(client, cfg, model, partition, baseline.reference, day, columns)
    put_json(client, drift_uri, result)
    top = sorted(result["alerts"], key=lambda a: ["none", "low", "medium", "high"].index(a["severity"]), reverse=True)
    return {"partition": partition.to_dict(), "outcome": "ok", "severity": result["severity"], "alerts": top[:50], "alert_count": len(result["alerts"]),
            "drift_uri": drift_uri, "report_uri": result["report"].get("uri"), "evidently_ui_url": result["report"].get("ui_url"), "baseline_version": baseline.manifest["version"],
            "segment_embedding": [{k: e.get(k) for k in ("segment", "column", "n_reference", "n_current", "mmd2", "p_adjusted", "drift", "reason")}
                                  for e in result["segment_embedding"]]}


def _evidently_report(client, cfg: MonitoringConfig, model, partition: Partition, reference, day, columns) -> dict[str, Any]:
    """The analysts' Evidently report (report.html) on the day summary's ``report`` sample (``drift.report_rows`` incumbent rows of
    smallest request-id hash: a uniform sample, every row on a smaller day, as its page says), its snapshot (evidently_snapshot.json) and the day's snapshot in the
    Evidently workspace (``MODELWATCH_EVIDENTLY_WORKSPACE``, else ``defaults.evidently_workspace_uri``), linked to its
    page in the Evidently UI when ``defaults.evidently_ui_url`` is set."""
    import os

    from modelwatch.drift.evidently_report import build_report
    from modelwatch.drift.evidently_workspace import add_to_workspace, workspace_ui_path

    numerical = [c for c in columns.tested() if columns.kinds[c] == "numerical"]
    categorical = [c for c in columns.tested() if columns.kinds[c] == "categorical"]
    stamp = datetime(partition.dt.year, partition.dt.month, partition.dt.day, partition.hour or 0, tzinfo=UTC)
    run = build_report(reference, day.report_frame(), numerical=numerical, categorical=categorical, text=columns.text, timestamp=stamp,
                       title=f"modelwatch drift: {model.id} {partition.label}", max_rows=model.drift.report_rows, current_rows=day.row_count)
    uri = put_bytes(client, report_uri(cfg, partition, "report.html"), run.html.encode(), "text/html; charset=utf-8")
    snapshot_uri = put_bytes(client, report_uri(cfg, partition, "evidently_snapshot.json"), run.snapshot_json.encode(), "application/json")
    workspace = os.environ.get("MODELWATCH_EVIDENTLY_WORKSPACE") or cfg.defaults.evidently_workspace_uri
    project_id, run_id = add_to_workspace(workspace, f"modelwatch {model.id}", run.snapshot_json, s3_client=client) if workspace else (None, None)
    ui = cfg.defaults.evidently_ui_url
    return {"uri": uri, "snapshot_uri": snapshot_uri, "workspace": workspace, "workspace_project": project_id, "workspace_run": run_id,
            "ui_url": f"{ui}/{workspace_ui_path(project_id, run_id)}" if ui and project_id and run_id else None,
            "evidently_drifted_columns": run.drifted_columns, "evidently_drift_share": run.drift_share,
            "rows": {"reference": run.rows_reference, "current": run.rows_current}, "skipped_columns": run.skipped_columns}
