"""runtime.fire_drill: the canary's world is its own, and the alert-rules link asks the real promtool whether the planted alerts fire."""

from datetime import date

from modelwatch.observe.alert_rules import ALL_VARIANT
from modelwatch.runtime import fire_drill as drill


def test_the_canary_lives_under_its_own_prefix_and_rolls_back_in_dry_run(isolated_config):
    cfg = isolated_config
    canary = drill.drill_config(cfg, date(2026, 12, 2))
    root = f"{cfg.defaults.reports_uri}/_fire_drill"
    assert [m.id for m in canary.models] == [drill.CANARY]
    for uri in (canary.defaults.logs_uri, canary.defaults.reports_uri, canary.defaults.labels_uri, canary.model(drill.CANARY).rollback.uri):
        assert uri.startswith(root + "/")
    assert canary.model(drill.CANARY).rollback.dry_run and canary.defaults.pushgateway_url == cfg.defaults.pushgateway_url
    assert canary.model(drill.CANARY).baseline.window.end == "2026-12-01"  # the clean day before the drill


def _pushed(error_rate: float, severity: float):
    return [("modelwatch_error_rate", {"model": drill.CANARY, "variant": ALL_VARIANT, "job": "modelwatch", "instance": ""}, error_rate),
            ("modelwatch_drift_family_severity", {"model": drill.CANARY, "family": "features", "job": "modelwatch", "instance": ""}, severity),
            ("modelwatch_breaches", {"model": drill.CANARY, "job": "modelwatch", "instance": ""}, 1.0)]


def test_alert_rules_link_fires_on_planted_values_and_names_what_would_not(isolated_config):
    canary = drill.drill_config(isolated_config, date(2026, 12, 2))
    ok = drill.alert_rules_link(canary, _pushed(0.04, 3))
    assert ok.ok, ok.detail
    quiet = drill.alert_rules_link(canary, _pushed(0.001, 1))
    assert not quiet.ok and "ModelwatchErrorRateHigh" in quiet.detail and "ModelwatchInputDrift" in quiet.detail
    half = drill.alert_rules_link(canary, _pushed(0.04, 1))
    assert not half.ok and "['ModelwatchInputDrift']" in half.detail


def test_without_promtool_the_link_is_broken_and_says_why(isolated_config):
    canary = drill.drill_config(isolated_config, date(2026, 12, 2))
    link = drill.alert_rules_link(canary, _pushed(0.04, 3), promtool="/nonexistent/promtool")
    assert not link.ok
