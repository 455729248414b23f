"""rollback.promotion: a promotion's routing change, and a rolled-back experiment that is never promoted afterwards."""

from modelwatch.rollback.actions import VariableAction, rollback_change
from modelwatch.rollback.promotion import promotion_change


def _store():
    values: dict[str, str] = {}
    return values, VariableAction("routing", values.get, values.__setitem__)


def _promotion(cfg, day="2026-11-12"):
    exp = cfg.model("support-bot-v3").experiments[0]
    return {"model_id": "support-bot-v3", "experiment_id": exp.id, "variants": [exp.treatment], "start": "2026-11-01", "end": day,
            "version": f"promoted-{exp.id}-{day}", "reasons": []}


def test_promotion_routes_everything_to_the_treatment_once(isolated_config):
    cfg = isolated_config
    exp = cfg.model("support-bot-v3").experiments[0]
    _, action = _store()
    change = promotion_change(cfg, _promotion(cfg), "alice", "2026-11-12T09:00:00+00:00")
    assert change["weights"] == {exp.control: 0.0, exp.treatment: 1.0} and "approved by alice" in change["reason"]
    assert action.apply_change(change)["outcome"] == "promoted"
    assert action.apply_change(change)["outcome"] == "promoted"  # the same promotion retried: recorded once, as its own
    later = promotion_change(cfg, _promotion(cfg, "2026-11-13"), "bob", "2026-11-13T09:00:00+00:00")
    assert action.apply_change(later)["outcome"] == "already_promoted"


def test_a_rolled_back_experiment_is_never_promoted(isolated_config):
    cfg = isolated_config
    exp = cfg.model("support-bot-v3").experiments[0]
    values, action = _store()
    breach = {"model_id": "support-bot-v3", "experiment_id": exp.id, "control": exp.control, "treatment": exp.treatment, "breach_id": "b-1",
              "reason": "p99 latency", "detected_at": "2026-11-12T01:00:00+00:00"}
    assert action.apply_change(rollback_change(breach))["outcome"] == "rolled_back"
    before = dict(values)
    assert action.apply_change(promotion_change(cfg, _promotion(cfg), "alice", "now"))["outcome"] == "already_rolled_back"
    assert values == before
