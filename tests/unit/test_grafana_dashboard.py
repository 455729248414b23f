"""The generated Grafana dashboard: committed file up to date, valid layout, and queries only over series a run really emits.

The emitted series come from :func:`modelwatch.observe.prom_metrics.summary_metrics` over the run summaries the
Prometheus tests push (``prom_servers.sample_summary``: an LLM under an experiment, daily and hourly, a
rollback day, a classifier), with the labels the Pushgateway adds from the push's grouping key.
Expressions are parsed by Prometheus' own parser through ``promtool check rules``.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from modelwatch.config import DEFAULT_CONFIG_PATH, load_config
from modelwatch.observe import alert_rules, prom_metrics
from modelwatch.observe.grafana import GRID_WIDTH, dashboard, render
from modelwatch.observe.promql import as_recording_rules, dashboard_metric_names, dashboard_queries, promql_refs, substitute, variable_query
from modelwatch.runtime.cli import main
from prom_servers import PROMTOOL, classic_summary_with_estimate, sample_summary
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
COMMITTED = GRAFANA / "dashboards" / "modelwatch.json"
RULES = GRAFANA / "prometheus" / "rules" / "modelwatch-rules.yml"
QUESTIONS = ["Is the model healthy now?", "Is anything drifting?", "How does today compare with the baseline?", "What does it cost?",
             "How are the experiments doing?"]


def _summaries() -> list[dict]:
    return [sample_summary(), sample_summary(hour=5), sample_summary(decision="roll_back", guardrail_verdict="inferior", error_rate=0.05),
            classic_summary_with_estimate("churn-classifier-v2")]


def emitted_series(summaries: list[dict]) -> dict[str, list[dict[str, str]]]:
    """metric name -> label sets of its samples, as Prometheus stores them after scraping the Pushgateway."""
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    for summary in summaries:
        registry = prom_metrics.summary_metrics(summary, CollectorRegistry(), now=1.0)
        group = {"job": "modelwatch", **prom_metrics.grouping_key(summary)}
        for family in registry.collect():
            for sample in family.samples:
                out[sample.name].append({**sample.labels, **group})
    return dict(out)


@pytest.fixture(scope="module")
def series():
    return emitted_series(_summaries())


@pytest.fixture(scope="module")
def dash():
    return dashboard()


def _content(dash):
    return [p for p in dash["panels"] if p["type"] != "row"]


def problems(dash, series) -> list[str]:
    """Every reference of the dashboard's queries to a metric, label or literal label value that no emitted series has."""
    found = []
    for where, expr in dashboard_queries(dash):
        label = None
        if expr.startswith("label_values("):
            expr, label = variable_query(expr)
        refs = promql_refs(expr)
        unknown = refs.metrics - set(series)
        if unknown:
            found.append(f"{where}: metric(s) {sorted(unknown)} not emitted")
            continue
        carried = {k for m in refs.metrics for s in series[m] for k in s}
        for metric, name, op, quoted in refs.matchers:
            labels = {k for s in series[metric] for k in s}
            if name not in labels:
                found.append(f"{where}: {metric} has no label {name!r} (has {sorted(labels)})")
                continue
            value = json.loads(quoted)
            if "$" in value or op in ("!=", "!~"):
                continue
            wanted = value.split("|") if op == "=~" else [value]
            present = {s.get(name) for s in series[metric]}
            missing = [w for w in wanted if w not in present]
            if missing:
                found.append(f"{where}: no {metric} series has {name}={missing}")
        for name in refs.grouping - carried:
            found.append(f"{where}: grouping label {name!r} is carried by none of {sorted(refs.metrics)}")
        if label and label not in carried:
            found.append(f"{where}: variable label {label!r} is carried by none of {sorted(refs.metrics)}")
    return found


def test_committed_dashboard_is_the_generated_one():
    assert COMMITTED.read_text(encoding="utf-8") == render(), "regenerate it: modelwatch grafana-dashboard"


def test_committed_rules_are_generated_from_the_bundled_config():
    assert yaml.safe_load(RULES.read_text()) == alert_rules.rules_from_config(load_config(DEFAULT_CONFIG_PATH)), (
        "regenerate it: modelwatch alert-rules --out grafana/prometheus/rules/modelwatch-rules.yml")


def test_cli_writes_the_dashboard(tmp_path, capsys):
    out = tmp_path / "d" / "modelwatch.json"
    assert main(["grafana-dashboard", "--out", str(out)]) == 0
    assert out.read_text() == render()
    assert main(["grafana-dashboard", "--out", "-"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1]) == dashboard()  # after the "-> path" line


def test_one_row_per_question_in_order(dash):
    assert [p["title"] for p in dash["panels"] if p["type"] == "row"] == QUESTIONS
    assert all(not p["collapsed"] and p["panels"] == [] for p in dash["panels"] if p["type"] == "row")


def test_panel_ids_unique_and_every_panel_has_datasource_and_targets(dash):
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in _content(dash):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["expr"].strip(), p["title"]
        assert p["title"] and p["description"], p["id"]


def _rect(p):
    g = p["gridPos"]
    return g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]


def test_grid_positions_fit_and_never_overlap(dash):
    rects = [(p["title"], _rect(p)) for p in dash["panels"]]
    for title, (x0, y0, x1, y1) in rects:
        assert 0 <= x0 < x1 <= GRID_WIDTH and 0 <= y0 < y1, title
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(rects):
        for b, (bx0, by0, bx1, by1) in rects[i + 1:]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, f"{a!r} overlaps {b!r}"


def test_panels_sit_under_their_row_header(dash):
    header_y = None
    for p in dash["panels"]:
        if p["type"] == "row":
            assert header_y is None or p["gridPos"]["y"] > header_y
            header_y = p["gridPos"]["y"]
            bottom = header_y + 1
        else:
            assert p["gridPos"]["y"] >= bottom, p["title"]  # below its own header, above the next (headers are increasing)
    rows = [i for i, p in enumerate(dash["panels"]) if p["type"] == "row"]
    for start, end in zip(rows, rows[1:] + [len(dash["panels"])], strict=True):
        next_y = dash["panels"][end]["gridPos"]["y"] if end < len(dash["panels"]) else float("inf")
        assert all(_rect(p)[3] <= next_y for p in dash["panels"][start + 1:end])


def test_variables_cover_model_segment_cadence_variant_and_datasource(dash):
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"datasource", "model", "cadence", "variant", "segment", "experiment", "baseline_window"} == set(variables)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["segment"]["multi"] and variables["segment"]["includeAll"] and variables["segment"]["allValue"] == ".*"
    used = {m for _, expr in dashboard_queries(dash) for m in re.findall(r"\$\{?(\w+)", expr)}
    assert used <= set(variables), used - set(variables)
    for _, expr in dashboard_queries(dash):  # every query is scoped to one model (and one cadence: daily and hourly never mix)
        if not expr.startswith("label_values("):
            for metric, *_ in promql_refs(expr).matchers:
                scoped = {(n, v) for m, n, _, v in promql_refs(expr).matchers if m == metric}
                assert {("model", '"$model"'), ("cadence", '"$cadence"')} <= scoped, expr


def test_every_query_reads_only_emitted_metrics_and_labels(dash, series):
    assert problems(dash, series) == []
    assert dashboard_metric_names(dash) <= set(series)


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("modelwatch_drift_severity{", "modelwatch_drift_severty{", "not emitted"),
    ('quantile="0.95"', 'quantile="0.9"', "quantile=['0.9']"),
    ('state="quarantined"', 'status="quarantined"', "no label 'status'"),
    ("ignoring(state)", "ignoring(stage)", "grouping label 'stage'"),
])
def test_the_check_catches_a_broken_query(dash, series, old, new, expected):
    broken = json.loads(json.dumps(dash).replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1], 1))
    assert broken != dash
    found = problems(broken, series)
    assert found and expected in found[0], found


def test_the_variable_check_catches_an_unknown_label(dash, series):
    broken = copy.deepcopy(dash)
    seg = next(v for v in broken["templating"]["list"] if v["name"] == "segment")
    seg["definition"] = seg["definition"].replace(", segment)", ", segment_key)")
    assert any("variable label 'segment_key'" in p for p in problems(broken, series))


def test_promql_refs_reads_functions_strings_and_grouping():
    refs = promql_refs('sum without (value) (rate(a_total{x="by(y)",z=~"q|r"}[5m] offset 1d)) / on(k) group_left(j) b - time() > bool 0.5')
    assert refs.metrics == {"a_total", "b"}
    assert refs.matchers == (("a_total", "x", "=", '"by(y)"'), ("a_total", "z", "=~", '"q|r"'))
    assert refs.grouping == {"value", "k", "j"}
    with pytest.raises(ValueError, match="cannot read the matchers"):
        promql_refs("m{this is not a matcher}")


def test_prometheus_parses_every_query(tmp_path):
    rules = tmp_path / "dashboard-queries.yml"
    spec = as_recording_rules()
    rules.write_text(yaml.safe_dump(spec))
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(spec['groups'][0]['rules'])} rules found" in result.stdout
    assert len(spec["groups"][0]["rules"]) == len(dashboard_queries())


def test_promtool_rejects_a_malformed_query(tmp_path):
    """The promtool check is not vacuous: an unbalanced expression fails it."""
    rules = tmp_path / "bad.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "x:y", "expr": substitute('sum(m{model="$model"}')}]}]}))
    assert subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=120).returncode != 0


# --- the compose stack --------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def _mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (relative to the repository)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            out[target] = ROOT / source
    return out


def test_compose_keeps_the_airflow_stack_and_adds_the_metrics_stack(compose):
    services = compose["services"]
    assert {"postgres", "redis", "minio", "airflow-init", "api-server", "scheduler", "dag-processor", "worker", "triggerer"} <= set(services)
    assert {"pushgateway", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith("./") or source in compose.get("volumes", {}), f"{name}: volume {source} is not declared"


def test_compose_mounts_grafana_provisioning_that_exists(compose):
    mounts = _mounts(compose["services"]["grafana"])
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    for target, source in mounts.items():
        assert source.exists(), f"grafana mounts {source} at {target}, which does not exist"
    providers = [p for f in (GRAFANA / "provisioning" / "dashboards").glob("*.yaml") for p in yaml.safe_load(f.read_text())["providers"]]
    [provider] = providers
    assert mounts[provider["options"]["path"]] == COMMITTED.parent  # the provider reads the directory the dashboard is mounted at
    datasources = [d for f in (GRAFANA / "provisioning" / "datasources").glob("*.yaml") for d in yaml.safe_load(f.read_text())["datasources"]]
    [prometheus] = datasources
    assert prometheus["type"] == "prometheus" and prometheus["isDefault"]
    assert prometheus["url"] == "http://prometheus:9090" and "127.0.0.1:9090:9090" in compose["services"]["prometheus"]["ports"]
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() in mounts and (mounts[Path(home).parent.as_posix()] / Path(home).name).exists()


def test_compose_prometheus_scrapes_the_gateway_and_loads_the_rules(compose, tmp_path):
    service = compose["services"]["prometheus"]
    mounts = _mounts(service)
    config_path = next(a.split("=", 1)[1] for a in service["command"] if a.startswith("--config.file="))
    config = yaml.safe_load(mounts[config_path].read_text())
    [gateway] = [j for j in config["scrape_configs"] if j["job_name"] == "pushgateway"]
    assert gateway["honor_labels"] is True
    assert gateway["static_configs"][0]["targets"] == ["pushgateway:9091"] and "127.0.0.1:9091:9091" in compose["services"]["pushgateway"]["ports"]
    [pattern] = config["rule_files"]
    rules_dir = str(Path(pattern).parent)
    assert mounts[rules_dir] == RULES.parent and list(RULES.parent.glob(Path(pattern).name)) == [RULES]
    local = {**config, "rule_files": [str(RULES.parent / Path(pattern).name)]}  # the same config with the host's paths
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(local))
    result = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_baseline_comparisons_use_the_preceding_window(tmp_path):
    """promtool evaluates the baseline row's queries over 8 days of hourly samples: 2 for a week, then 3 for the last day.

    Today's value is 3, the baseline (the average over the 7 days before the last one) is 2, the relative change 3/2 - 1.
    """
    dash = dashboard()
    rows = [i for i, p in enumerate(dash["panels"]) if p["type"] == "row"]
    start = next(i for i in rows if dash["panels"][i]["title"] == "How does today compare with the baseline?")
    end = next((i for i in rows if i > start), len(dash["panels"]))
    exprs = [substitute(t["expr"]) for p in dash["panels"][start + 1:end] for t in p["targets"]]
    before, today, points = 2.0, 3.0, 8 * 24
    series, rules, tests = {}, [], []
    for i, expr in enumerate(exprs):
        refs = promql_refs(expr)
        [metric] = refs.metrics
        labels = {name: json.loads(value) for m, name, op, value in refs.matchers if m == metric and op == "="}
        selector = metric + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        series[selector] = f"{before:g}x{points - 24} {today:g}x23"  # samples 0..168h at 2, 169h..192h at 3
        expected = today / before - 1 if "/ avg_over_time" in expr else before if expr.startswith("avg_over_time") else today
        name = f"modelwatch_dashboard:baseline_{i:02d}"
        rules.append({"record": name, "expr": expr})
        tests.append({"expr": name, "eval_time": f"{points}h",
                      "exp_samples": [{"labels": name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}", "value": expected}]})
    assert len(rules) >= 9 and any("/ avg_over_time" in e for e in exprs)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "baseline", "rules": rules}]}))
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1h",
        "tests": [{"interval": "1h", "input_series": [{"series": s, "values": v} for s, v in series.items()], "promql_expr_test": tests}]}))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
