"""modelwatch_baseline: build a versioned reference artifact for one model from a chosen window.

Runs when triggered by hand, and on the ``model_promoted`` asset: when the daily run
promotes an experiment's treatment, its traffic since the experiment's start becomes a new
baseline version (``promoted-<experiment>-<day>``; point the model's ``baseline.version`` at
it to compare against the new model from then on).

Each build writes ``_baselines/model_id=M/version=V/``: a bottom-k reference sample,
DataSketches profiles of every drift column and an embedding sample. Trigger by hand with
conf ``{"model_id": "support-bot-v3", "start": "2026-11-01", "end": "2026-11-03"}``;
``version`` defaults to the config's baseline version, else ``<start>_<end>``.
"""

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task
from common.monitoring import DEFAULT_ARGS, MODEL_PROMOTED, config_or_fail, failure_notifier, s3_client


def _requests(params: dict) -> list[dict]:
    """What to build: the promotions of the triggering asset events, else the run's params."""
    events = get_current_context().get("triggering_asset_events") or {}
    promoted = [p for event in events.get(MODEL_PROMOTED, []) for p in event.extra.get("promotions", [])]
    if promoted:
        return promoted
    return [{"model_id": params["model_id"], "start": params.get("start"), "end": params.get("end"), "version": params.get("version")}]


@task(execution_timeout=timedelta(hours=6))
def build(params: dict | None = None) -> list[dict]:
    from datetime import date

    from airflow.sdk.exceptions import AirflowFailException
    from modelwatch.baseline.build import build_baseline
    from modelwatch.embeddings import EmbeddingCache

    cfg = config_or_fail()
    client = s3_client(cfg)
    cache = EmbeddingCache(client, cfg.defaults.reports_uri, backend=cfg.defaults.embedding_backend)
    built = []
    for request in _requests(params or {}):
        try:
            model = cfg.model(request["model_id"])
        except KeyError as exc:
            raise AirflowFailException(str(exc)) from None
        window = model.baseline.window
        start = request.get("start") or (window.start if window else None)
        end = request.get("end") or (window.end if window else None)
        if not start or not end:
            raise AirflowFailException(f"model {model.id} has no baseline window in its config: pass start and end (YYYY-MM-DD) in the run conf")
        manifest = build_baseline(client, cfg, model.id, date.fromisoformat(start), date.fromisoformat(end), request.get("version") or None,
                                  embed_texts=cache, variants=request.get("variants"))
        built.append({k: manifest[k] for k in ("model_id", "version", "window", "variants", "rows_used", "reference_rows", "uri")})
    return built


@dag(
    dag_id="modelwatch_baseline",
    schedule=[MODEL_PROMOTED],
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    on_failure_callback=failure_notifier("the baseline was not built: drift checks keep comparing against the previous version"),
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
