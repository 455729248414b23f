"""modelwatch_baseline: build a versioned reference artifact for one model from a chosen window.

Manual runs (and, later, a promotion) build ``_baselines/model_id=M/version=V/``: a bottom-k
reference sample, DataSketches profiles of every drift column and an embedding sample.
The daily drift stage compares each day against the version the model's config names.

Trigger with conf ``{"model_id": "support-bot-v3", "start": "2026-11-01", "end": "2026-11-03"}``;
``version`` defaults to the config's baseline version, else ``<start>_<end>``.
"""

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task
from common.monitoring import DEFAULT_ARGS


@task(execution_timeout=timedelta(hours=6))
def build(params: dict | None = None) -> dict:
    from datetime import date

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk.exceptions import AirflowFailException
    from modelwatch.baseline import build_baseline
    from modelwatch.config import ConfigError, load_config
    from modelwatch.embeddings import EmbeddingCache

    try:
        cfg = load_config()
        model = cfg.model(params["model_id"])
    except (ConfigError, KeyError) as exc:
        raise AirflowFailException(str(exc)) from None
    window = model.baseline.window
    start = params.get("start") or (window.start if window else None)
    end = params.get("end") or (window.end if window else None)
    if not start or not end:
        raise AirflowFailException(f"model {model.id} has no baseline window in its config: pass start and end (YYYY-MM-DD) in the run conf")
    client = S3Hook(aws_conn_id=cfg.defaults.aws_conn_id).get_conn()
    cache = EmbeddingCache(client, cfg.defaults.reports_uri)
    manifest = build_baseline(client, cfg, model.id, date.fromisoformat(start), date.fromisoformat(end), params.get("version") or None,
                              embed_texts=lambda texts: cache.get_or_embed(texts)[0])
    return {k: manifest[k] for k in ("model_id", "version", "window", "rows_used", "reference_rows", "uri")}


@dag(
    dag_id="modelwatch_baseline",
    schedule=None,
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    params={
        "model_id": Param("support-bot-v3", type="string", description="The model whose baseline to build."),
        "start": Param(None, type=["null", "string"], format="date", description="First day of the window (default: the config's baseline window)."),
        "end": Param(None, type=["null", "string"], format="date", description="Last day of the window, inclusive."),
        "version": Param(None, type=["null", "string"], description="Version name (default: the config's baseline version, else <start>_<end>)."),
    },
    tags=["modelwatch", "baseline"],
    doc_md=__doc__,
)
def modelwatch_baseline():
    build()


modelwatch_baseline()
