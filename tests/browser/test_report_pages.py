"""The report site in headless Chromium: real pipeline outputs with hostile text planted in traffic and in the judge's reasoning.

Three days of generated traffic (a toxic burst and a drift on the last day) go through
every stage on the S3 server, judged by an OpenAI-compatible judge server whose
reasoning quotes payloads; prompts, responses and segment values carry payloads too. The
pages are mirrored, served on 127.0.0.1 and opened in Chromium: no console error, the
summary's numbers on the page, no payload ran, and full-page screenshots are saved under
``test-output/screenshots/``.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from headless_chromium import chromium, errors, serve
from modelwatch.core.partition import Partition
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic, jsonl_bytes
from modelwatch.storage.s3 import get_json, put_bytes

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
START = date(2026, 11, 1)
DAYS = [date(2026, 11, 4), date(2026, 11, 5), date(2026, 11, 6)]
BOT, CHURN = "support-bot-v3", "churn-classifier-v2"
PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "'><svg onload=\"window.__pwned=1\"></svg>",
    "javascript:window.__pwned=1",
    "</textarea></pre></table><script>window.__pwned=1</script>",
    '<a href="javascript:window.__pwned=1" id="pwn-link">click</a>',
    "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>",
    "<style>body{display:none}</style>",
]
HOSTILE_TOPIC = '<img src=x onerror="window.__pwned=1">'
LONG_TOPIC = "long-topic-" + "L" * 50_000  # one segment value of 50,000 characters
RLO, PDI = "\u202e", "\u2069"
RLO_MARKER = "rlo-marker-7f3"  # the judge flags the answer whose prompt carries it, so it is shown as an example
CONTROL_TEXT = "nul\x00 esc\x1b c1\x85 end"


def _hostile_rows(day: date) -> list[dict]:
    """Valid contract rows whose prompt, response and segment value are payloads (a few per day)."""
    rows = []
    for i, payload in enumerate(PAYLOADS):
        ts = f"{day.isoformat()}T12:{i:02d}:00Z"
        rows.append({"request_id": f"{BOT}-{day:%Y%m%d}-hostile-{i}", "timestamp": ts, "model_id": BOT, "variant": "production", "status": "ok", "latency_ms": 800.0 + i, "prompt": f"How do I reset my password? {payload}",
                     "response": f"Sure, here you go: {payload}", "prompt_tokens": 12, "completion_tokens": 9, "cost_usd": 0.00002, "feedback": 0,
                     "metadata": {"topic": HOSTILE_TOPIC if i % 2 else "billing", "locale": payload, "user_tier": "free"}})
    base = {"timestamp": f"{day.isoformat()}T13:00:00Z", "model_id": BOT, "variant": "production", "status": "ok", "latency_ms": 900.0,
            "prompt_tokens": 12, "completion_tokens": 9, "cost_usd": 0.00002, "feedback": 0}
    rows += [
        {**base, "request_id": f"{BOT}-{day:%Y%m%d}-long-topic", "prompt": "Where is my invoice?", "response": "In billing.",
         "metadata": {"topic": LONG_TOPIC, "locale": "en-US", "user_tier": "free"}},
        # a stray PDI first, to try to close the isolate around the id before the override starts
        {**base, "request_id": f"!rlo-{day:%Y%m%d}-{PDI}{RLO}reversed-id", "prompt": f"{RLO_MARKER} {RLO}reversed prompt {CONTROL_TEXT}",
         "response": f"{RLO}reversed answer {CONTROL_TEXT}", "metadata": {"topic": f"rlo-topic-{RLO}reversed", "locale": "en-US", "user_tier": "free"}},
        {**base, "request_id": f"{BOT}-{day:%Y%m%d}-controls", "prompt": "Hello", "response": "Hi",
         "metadata": {"topic": f"controls {CONTROL_TEXT}", "locale": "en-US", "user_tier": "free"}},
    ]
    return rows


@pytest.fixture(scope="module")
def site(s3_server, tmp_path_factory):
    """Run every stage over three days (after building the baselines), then mirror the reports to a local folder."""
    from conftest import bundled_config_data, scoped_config
    from judge_server import FakeJudgeServer
    from modelwatch.baseline.build import build_baseline
    from modelwatch.embeddings import EmbeddingCache
    from modelwatch.judge.rubric import load_rubric
    from modelwatch.publish.mirror import mirror_reports
    from modelwatch.runner import concept, drift, experiments, extract, judge, profile, publish, validate
    from modelwatch.storage.s3 import make_client

    class HostileJudge(FakeJudgeServer):
        """A judge whose reasoning quotes hostile text, as an LLM judge quoting an answer would."""

        def judgment_for(self, user: str):
            answer = super().judgment_for(user)
            answer["reasoning"] += " quoting the answer: " + PAYLOADS[len(user) % len(PAYLOADS)]
            if RLO_MARKER in user:  # flagged and scored lowest: shown first among the examples, its badges after its id
                low = self.scale[0]
                answer.update(scores=dict.fromkeys(answer["scores"], low), flags=dict.fromkeys(answer["flags"], True))
                answer["reasoning"] += f" {RLO}reversed reasoning {CONTROL_TEXT}"
            return answer

    client = make_client(endpoint_url=s3_server.endpoint)
    data = bundled_config_data("browser")
    for model in data["models"]:
        model.setdefault("drift", {}).update(embedding_sample=60, permutations=100)
    data["models"][0]["judge"].update(backend="openai_compatible", model="judge-test", max_samples=60, review_sample=0, pairwise_samples=0,
                                      price_per_1k_input_usd=0.0001, price_per_1k_output_usd=0.0002)
    cfg = scoped_config(client, "browser", data)
    exp = cfg.model(BOT).experiments[0]
    generate_traffic(client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, START, 6, llm_rows=400, classic_rows=300,
                     scenario=Scenario(drift_from=DAYS[-1], toxic_burst_on=DAYS[-1]), plan=ExperimentPlan(exp.id, exp.weights()))
    for day in DAYS:
        put_bytes(client, f"{Partition(BOT, day, 12).path(cfg.defaults.logs_uri)}/part-hostile.jsonl", jsonl_bytes(_hostile_rows(day), gz=False))
    cache = EmbeddingCache(client, cfg.defaults.reports_uri, backend=cfg.defaults.embedding_backend)
    for model_id in (BOT, CHURN):
        build_baseline(client, cfg, model_id, START, START + timedelta(days=2), progress=lambda _: None,
                       embed_texts=cache)
    summaries = {}
    with HostileJudge.for_rubric(load_rubric("support-v2")) as server:
        connection = {"password": "test-key", "extra": {"base_url": server.openai_url}}
        for day in DAYS:
            for model_id in (BOT, CHURN):
                extracted = extract(client, cfg, Partition(model_id, day))
                validated = validate(client, cfg, extracted)
                profiled = profile(client, cfg, validated, "daily")
                judged = judge(client, cfg, validated, connection)
                judged = judged if judged.get("outcome") == "ok" else None
                experimented = experiments(client, cfg, validated, profiled, judged)
                result = publish(client, cfg, extracted, validated, profiled, {"run_id": f"browser-{day}"}, drift(client, cfg, validated),
                                 concept(client, cfg, validated), experimented, judged)
                summaries[(model_id, day)] = get_json(client, result["summary_uri"])
    dest = tmp_path_factory.mktemp("site")
    index = mirror_reports(client, cfg.defaults.reports_uri, dest)
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    return dest, index, summaries, client, cfg


def _not_pwned(browser) -> None:
    assert browser.script("return typeof window.__pwned") == "undefined"
    assert browser.script("return document.querySelectorAll('script, iframe, img, a[href^=\"javascript\"], [onerror], [onload]').length") == 0
    assert browser.script("return getComputedStyle(document.body).display") != "none"


def test_the_last_days_page_shows_its_numbers_and_runs_no_payload(site):
    dest, _, summaries, _, _ = site
    summary = summaries[(BOT, DAYS[-1])]
    with serve(dest) as base, chromium() as browser:
        logged = browser.open(f"{base}/model_id={BOT}/dt={DAYS[-1].isoformat()}/index.html")
        browser.screenshot(SCREENSHOTS / f"{BOT}-{DAYS[-1].isoformat()}.png")
        assert not errors(logged), logged
        _not_pwned(browser)
        text = browser.text()
        overall = summary["metrics"]["__all__"]
        assert f"{overall['requests']:,.0f}" in text and f"{overall['error_rate']:.2%}" in text
        assert f"{overall['latency_p99_ms']:,.4g}" in text
        assert f"{summary['drift']['alert_count']} drifting column test" in text and summary["drift"]["severity"] in ("medium", "high")
        for e in summary["experiments"]:
            assert e["experiment_id"] in text
        for payload in PAYLOADS[:3]:  # shown as text, literally
            assert payload in text
        assert HOSTILE_TOPIC in text  # the segment value, in the segment table
        reasoning = browser.script("return [...document.querySelectorAll('pre.reasoning')].map(e => e.textContent)")
        assert reasoning and all("quoting the answer: " in r for r in reasoning)
        charts = browser.script("return document.querySelectorAll('svg.line-chart').length")
        forest = browser.script("return document.querySelectorAll('svg.forest-plot line.zero').length")
        assert charts >= 8 and forest >= 2
        lines = browser.script("return document.querySelectorAll('svg.line-chart g.series polyline').length")
        assert lines > 0  # three consecutive days make lines, not only dots
        links = browser.script("return [...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
        assert "report.html" in links and "../../index.html" in links
        assert (dest / f"model_id={BOT}" / f"dt={DAYS[-1].isoformat()}" / "report.html").exists()


def test_every_page_and_the_index_load_cleanly(site):
    dest, index, summaries, _, _ = site
    with serve(dest) as base, chromium() as browser:
        logged = browser.open(f"{base}/index.html")
        browser.screenshot(SCREENSHOTS / "index.png")
        assert not errors(logged), logged
        _not_pwned(browser)
        text = browser.text()
        for model_id in (BOT, CHURN):
            assert model_id in text
        rows = browser.script("return document.querySelectorAll('table.latest tbody tr').length")
        assert rows == 2
        hrefs = browser.script("return [...document.querySelectorAll('table.days a')].map(a => a.getAttribute('href'))")
        assert len(hrefs) == len(summaries)
        for (model_id, day), summary in sorted(summaries.items()):
            logged = browser.open(f"{base}/model_id={model_id}/dt={day.isoformat()}/index.html")
            assert not errors(logged), (model_id, day, logged)
            _not_pwned(browser)
            assert f"{summary['rows']['read']:,}" in browser.text()
            if (model_id, day) == (CHURN, DAYS[-1]):
                browser.screenshot(SCREENSHOTS / f"{CHURN}-{DAYS[-1].isoformat()}.png")


def test_the_index_published_to_s3_matches_the_days(site):
    from modelwatch.storage.s3 import get_bytes

    _, _, summaries, client, cfg = site
    html = get_bytes(client, f"{cfg.defaults.reports_uri}/index.html").decode()
    for model_id, day in summaries:
        assert f'href="model_id={model_id}/dt={day.isoformat()}/index.html"' in html
    assert "<script" not in html.replace("&lt;script", "")


def _page(dest: Path, model_id: str, day: date) -> Path:
    return dest / f"model_id={model_id}" / f"dt={day.isoformat()}" / "index.html"


def test_a_long_segment_value_is_cut_on_the_page_and_kept_whole_in_drift_json(site):
    dest, _, _, client, cfg = site
    day = DAYS[-1]
    with serve(dest) as base, chromium() as browser:
        browser.viewport(1400, 900)
        browser.open(f"{base}/model_id={BOT}/dt={day.isoformat()}/index.html")
        height = browser.script("return document.documentElement.scrollHeight")
        row = browser.script("return Math.max(...[...document.querySelectorAll('table.segments tr')]"
                             ".filter(r => r.textContent.includes('long-topic-')).map(r => r.getBoundingClientRect().height))")
    assert row < 120, f"the long value's row is {row} px high"
    assert height < 16_000, f"the page is {height} px high"
    assert "L" * 1_000 not in _page(dest, BOT, day).read_text()
    drift = get_json(client, f"{cfg.defaults.reports_uri}/model_id={BOT}/dt={day.isoformat()}/drift.json")
    values = [s["value"] for family in drift["segments"] for s in family["segments"] + family["skipped"]]
    assert LONG_TOPIC in values  # drift.json keeps the whole value


_NOT_ISOLATED = """
const out = [];
const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
const enclosed = (text) => {  // FSI ... PDI around every RLO of a plain-text node (SVG text, titles)
  let depth = 0;
  for (const c of text) { if (c === '\\u2068') depth++; else if (c === '\\u2069' && depth) depth--; else if (c === '\\u202e' && !depth) return false; }
  return true;
};
let seen = 0;
while (walker.nextNode()) {
  const node = walker.currentNode;
  if (!node.data.includes('\\u202e')) continue;
  seen++;
  const parent = node.parentElement;
  const isolated = parent && ['isolate', 'isolate-override', 'plaintext'].includes(getComputedStyle(parent).unicodeBidi);
  if (!isolated && !enclosed(node.data)) out.push((parent ? parent.tagName : '') + ': ' + node.data.slice(0, 60));
}
return [seen, out];
"""


def test_a_right_to_left_override_reorders_only_its_own_text(site):
    dest, _, _, _, _ = site
    with serve(dest) as base, chromium() as browser:
        browser.viewport(1400, 900)
        browser.open(f"{base}/model_id={BOT}/dt={DAYS[-1].isoformat()}/index.html")
        boxes = browser.script("""
            const ex = [...document.querySelectorAll('div.example')].find(d => (d.dataset.requestId || '').includes('\\u202e'));
            if (!ex) return null;
            return {id: ex.querySelector('span.muted').getBoundingClientRect().toJSON(),
                    badges: [...ex.querySelectorAll('span.badge')].map(b => b.getBoundingClientRect().toJSON())};""")
        seen, not_isolated = browser.script(_NOT_ISOLATED)
    assert boxes is not None and boxes["badges"], "the flagged example with the RLO request id is shown"
    id_box = boxes["id"]
    for badge in boxes["badges"]:  # the badges follow the id on its line, to its right
        assert badge["left"] >= id_box["right"] - 0.5 and abs(badge["top"] - id_box["top"]) < id_box["height"], (id_box, badge)
    assert seen >= 4 and not_isolated == []  # request id, prompt, response, reasoning, segment values ...


def test_control_characters_are_not_written_raw(site):
    dest, _, _, _, _ = site
    for day in DAYS:
        text = _page(dest, BOT, day).read_text(encoding="utf-8")
        raw = sorted({f"U+{ord(c):04X}" for c in text if (ord(c) < 32 and c not in "\t\n\r") or 0x7F <= ord(c) <= 0x9F})
        assert raw == [], (day, raw)
        assert "nul\ufffd esc\ufffd c1\ufffd end" in text


_WIDER = """
const width = document.documentElement.clientWidth;
return [document.documentElement.scrollWidth,
        [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > width + 0.5
            && !e.closest('.table-box'))  // inside a scroll box, a wide table scrolls; it does not widen the page
            .slice(0, 8).map(e => e.tagName + '.' + e.className + ': ' + (e.textContent || '').slice(0, 60))];
"""


def test_no_page_is_wider_than_a_1400_px_window(site):
    dest, _, summaries, _, _ = site
    with serve(dest) as base, chromium() as browser:
        browser.viewport(1400, 900)
        for path in ["index.html", *(f"model_id={m}/dt={d.isoformat()}/index.html" for m, d in sorted(summaries))]:
            browser.open(f"{base}/{path}")
            width, wider = browser.script(_WIDER)
            assert width <= 1400 and wider == [], (path, width, wider)
