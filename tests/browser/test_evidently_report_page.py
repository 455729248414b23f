"""The Evidently report (report.html) in headless Chromium, with hostile text in every field that reaches it.

Payloads are planted where traffic reaches the report — category values (the LLM's
``metadata.topic``, the classifier's ``features.plan`` and its predicted class), prompts and
answers (summarised by text descriptors) — and run through the real stages on the S3
server (baselines, then a day's extract, validate and drift). Where only the config reaches
the report (column names, text descriptor names, the title), a report is built directly
with payload names. Each page is served on 127.0.0.1 and opened in Chromium; its drift
table rows are expanded (which draws each column's distribution, category labels included),
a chart is downloaded as PNG and its Tests tab is shown. Nothing may run: no global set, no
request to a listener the payloads call (fetch, navigation, meta refresh, images, base
URL), no element the payloads would make; and the page must still draw Evidently's widgets
with no console error (a script, style, font or image the page's Content-Security-Policy
blocked would log one).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from headless_chromium import chromium, errors, serve
from modelwatch.core.partition import Partition
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic, jsonl_bytes
from modelwatch.storage.s3 import get_bytes, put_bytes

START = date(2026, 11, 1)
BASELINE_DAYS = 2
DAY = START + timedelta(days=BASELINE_DAYS)
BOT, CHURN = "support-bot-v3", "churn-classifier-v2"
DIRECT = "columns-and-title"
FORBIDDEN_ELEMENTS = ("iframe, img, object, embed, base, form, meta[http-equiv='refresh' i], [onerror], [onload], "
                      "a[href^='javascript' i], svg a[href^='javascript' i]")


class _Listener(BaseHTTPRequestHandler):
    """Records every request path; a payload that runs calls it."""

    def __init__(self, hits: list[str], *args: Any) -> None:
        self.hits = hits
        super().__init__(*args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 that the payloads call: (its URL, the paths it was asked for)."""
    hits: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Listener, hits))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def payloads(url: str) -> list[str]:
    """Texts that run script, load or navigate to ``url``, or make elements, if a page writes them as HTML."""
    return [
        "</script><script>window.__pwned=1</script>",
        f"</SCRIPT ><script>fetch('{url}/fetch')</script>",
        f"</script><script>location.href='{url}/navigate'</script>",
        f'</script><meta http-equiv="refresh" content="0;url={url}/refresh">',
        f'</script><img src="{url}/img" onerror="window.__pwned=1">',
        f'</script><base href="{url}/base/">',
        '"><img src=x onerror="window.__pwned=1">',
        "'><svg onload=\"window.__pwned=1\"></svg>",
        '<a href="javascript:window.__pwned=1" id="pwn-link">click</a>',
        "javascript:window.__pwned=1",
        '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
        "<!--<script>",
        "line\u2028separator\u2029&amp;</script>",
    ]


def _bot_rows(day: date, texts: list[str]) -> list[dict[str, Any]]:
    """Valid LLM rows whose topic, prompt and answer are payloads (several rows each, so the categories count)."""
    rows = []
    for i in range(3 * len(texts)):
        payload = texts[i % len(texts)]
        rows.append({"request_id": f"{BOT}-{day:%Y%m%d}-hostile-{i}", "timestamp": f"{day.isoformat()}T12:{i % 60:02d}:00Z", "model_id": BOT,
                     "variant": "production", "status": "ok", "latency_ms": 800.0 + i, "prompt": f"How do I reset my password? {payload}",
                     "response": f"Sure, here you go: {payload}", "prompt_tokens": 12, "completion_tokens": 9, "cost_usd": 0.00002,
                     "metadata": {"topic": payload, "locale": "en-US", "user_tier": "free"}})
    return rows


def _churn_rows(day: date, texts: list[str]) -> list[dict[str, Any]]:
    """Valid classifier rows whose plan feature and predicted class are payloads."""
    return [{"request_id": f"{CHURN}-{day:%Y%m%d}-hostile-{i}", "timestamp": f"{day.isoformat()}T12:{i % 60:02d}:00Z", "model_id": CHURN,
             "variant": "production", "status": "ok", "latency_ms": 12.0 + i,
             "features": {"tenure_months": 10.0 + i, "monthly_spend": 50.0, "plan": texts[i % len(texts)], "support_calls": 1},
             "prediction": texts[(i + 1) % len(texts)], "probability": {"churn": 0.5, "stay": 0.5}, "metadata": {"region": "emea"}}
            for i in range(3 * len(texts))]


@pytest.fixture(scope="module")
def site(s3_server, listener, tmp_path_factory) -> Path:
    """A folder with the pipeline's report.html of each model for DAY, and a report built with payload column names and title."""
    from conftest import bundled_config_data, scoped_config
    from modelwatch.baseline.build import build_baseline
    from modelwatch.runner import drift, extract, validate
    from modelwatch.storage.s3 import make_client

    texts = payloads(listener[0])
    client = make_client(endpoint_url=s3_server.endpoint)
    cfg = scoped_config(client, "evidently-page", bundled_config_data("evidently-page"))
    exp = cfg.model(BOT).experiments[0]
    generate_traffic(client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, START, BASELINE_DAYS + 1, llm_rows=200, classic_rows=200,
                     scenario=Scenario(labels=False), plan=ExperimentPlan(exp.id, exp.weights()))
    for day in (START + timedelta(days=n) for n in range(BASELINE_DAYS + 1)):
        for model_id, rows in ((BOT, _bot_rows(day, texts)), (CHURN, _churn_rows(day, texts))):
            put_bytes(client, f"{Partition(model_id, day, 12).path(cfg.defaults.logs_uri)}/part-hostile.jsonl", jsonl_bytes(rows, gz=False))
    dest = tmp_path_factory.mktemp("evidently-site")
    for model_id in (BOT, CHURN):
        build_baseline(client, cfg, model_id, START, DAY - timedelta(days=1), progress=lambda _: None)
        drifted = drift(client, cfg, validate(client, cfg, extract(client, cfg, Partition(model_id, DAY))))
        assert drifted["outcome"] == "ok", drifted
        (dest / f"{model_id}.html").write_bytes(get_bytes(client, drifted["report_uri"]))
    (dest / f"{DIRECT}.html").write_text(_direct_report(texts).html)
    return dest


def _direct_report(texts: list[str]):
    """A report whose column names (numerical, categorical, text, hence descriptor names) and title are payloads."""
    from modelwatch.drift.evidently_report import build_report

    rng = np.random.default_rng(11)
    numerical, categorical, text = texts[1], texts[0], texts[2]

    def side(rows: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame({numerical: rng.normal(100.0 + shift, 20.0, rows), categorical: rng.choice(texts, rows),
                             text: [f"{rng.choice(texts)} how do I reset my password" for _ in range(rows)]})

    return build_report(side(300, 0.0), side(300, 40.0), numerical=[numerical], categorical=[categorical], text=[text],
                        timestamp=datetime(2026, 11, 3, tzinfo=UTC), title=f"modelwatch drift: {texts[3]} {texts[6]}")


def _expand_drift_rows(browser) -> None:
    """Expand every row of the drift table, which draws each column's distributions (category labels included)."""
    rows = "[...document.querySelectorAll('tr')].filter(r => r.cells.length > 3 && r.querySelector('button'))"
    for i in range(browser.script(f"return {rows}.length")):  # one at a time: a click re-renders the table
        browser.script(f"{rows}[{i}].querySelector('button').click()")
        time.sleep(0.3)


def _download_a_plot(browser) -> None:
    """Plotly's "download plot as PNG" (it draws the chart through a blob: image the policy must allow); the download itself is denied."""
    browser.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "deny"})
    browser.script("document.querySelector('.js-plotly-plot .modebar-btn[data-title^=\"Download plot\"]').click()")
    time.sleep(1)


def _plot_labels(browser) -> list[str]:
    return browser.script("return [...document.querySelectorAll('.js-plotly-plot text')].map(t => t.textContent)")


def _data_strings(browser) -> list[str]:
    """Every string (keys too) in the page's report data, Evidently's two global variables, as the browser decoded it."""
    return browser.script("""
        const out = [];
        const walk = v => {
            if (typeof v === 'string') out.push(v);
            else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) { out.push(k); walk(x); }
        };
        Object.keys(window).filter(k => /^(additional_graphs_)?metric_[0-9a-f]{32}$/.test(k)).forEach(k => walk(window[k]));
        return out;""")


def _assert_nothing_ran(browser, url: str, hits: list[str]) -> None:
    time.sleep(1.5)  # time for a fetch, a navigation or a meta refresh to happen
    assert hits == []
    assert browser.driver.current_url == url
    assert browser.script("return typeof window.__pwned") == "undefined"
    assert browser.script(f"return document.querySelectorAll({FORBIDDEN_ELEMENTS!r}).length") == 0
    assert browser.script("return document.scripts.length") == 4  # Evidently's three and the data


def _expected(page: str, texts: list[str]) -> tuple[list[str], list[str], str | None]:
    """(drift columns, text descriptor names, title) the page must show."""
    if page == BOT:
        return ["metadata.topic", "prediction.status"], ["prompt: text length", "response: word count"], None
    if page == CHURN:
        return ["features.plan", "prediction.class"], [], None
    return [texts[0], texts[1]], [f"{texts[2]}: text length"], f"modelwatch drift: {texts[3]} {texts[6]}"


@pytest.mark.parametrize("page", [BOT, CHURN, DIRECT])
def test_the_evidently_report_shows_planted_payloads_as_text_and_runs_none(site: Path, listener, page: str) -> None:
    url_base, hits = listener
    hits.clear()  # count this page's requests only
    texts = payloads(url_base)
    drift_columns, descriptors, title = _expected(page, texts)
    with serve(site) as base, chromium() as browser:
        url = f"{base}/{page}.html"
        logged = browser.open(url)
        _assert_nothing_ran(browser, url, hits)
        text = browser.text()
        assert "Dataset Drift" in text
        for name in [*drift_columns, *descriptors]:
            assert name in text, name
        if title:
            assert browser.script("return [document.title, document.querySelector('header h1').textContent]") == [title, title]
        strings = _data_strings(browser)
        for payload in texts:  # every payload reached the report's data unchanged, as a string
            assert any(payload in s for s in strings), payload

        plots = browser.script("return document.querySelectorAll('.js-plotly-plot').length")
        _expand_drift_rows(browser)
        _assert_nothing_ran(browser, url, hits)
        assert browser.script("return document.querySelectorAll('.js-plotly-plot').length") > plots
        assert set(_plot_labels(browser)) & {t for t in texts if t.startswith("</script>")}  # category labels, shown literally
        _download_a_plot(browser)

        browser.driver.find_element("xpath", "//button[normalize-space()='Tests']").click()
        time.sleep(0.5)
        _assert_nothing_ran(browser, url, hits)
        for column in drift_columns:
            assert f"Value Drift for column {column}" in browser.text(), column
        assert not errors(logged + browser.driver.get_log("browser"))
