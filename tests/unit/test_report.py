"""Report rendering: SVG charts match their data, gaps stay gaps, forest plots mark intervals, thresholds and zero; text is escaped."""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from datetime import date, timedelta
from html.parser import HTMLParser

import pandas as pd
import pytest
from markupsafe import escape
from modelwatch.publish.data import History, baseline_comparison, history_from_summaries, select_examples, window_comparison
from modelwatch.publish.glance import answers
from modelwatch.publish.page import PageContext, render_partition_page
from modelwatch.publish.site import site_index_html
from modelwatch.publish.svg import ChartBox, Interval, LinearScale, Series, forest_plot, line_chart, nice_ticks, runs
from prom_servers import sample_summary

SVG = "{http://www.w3.org/2000/svg}"
PAYLOADS = ["<script>window.__pwned=1</script>", '"><img src=x onerror="window.__pwned=1">', "javascript:alert(1)", "</textarea><svg onload=alert(1)>",
            "' onmouseover='alert(1)"]


def full_summary(**knobs) -> dict:
    """The Prometheus tests' sample summary with the fields publish also writes (hard-limit details, files, outputs)."""
    s = sample_summary(**knobs)
    for check in s["hard_limits"]:
        check.update(arm="treatment", min=None, requests=1200, reason="")
    for breach in s["breaches"]:
        breach.update(value=0.03, requests=1200)
    s.update(files=[{"uri": "s3://logs/part-0.jsonl.gz", "format": "jsonl.gz", "rows_read": 12050}], prompt_token_histogram=[], validation=None,
             outputs={"evidently_report": "s3://r/report.html", "page": "s3://r/index.html"}, run={"run_id": "manual"})
    s["judge"].update(backend={"backend": "heuristic"}, sampled=380, limited_by="max_samples", pairwise=None)
    return s


def _points(svg: str) -> list[list[tuple[float, float]]]:
    root = ET.fromstring(svg)
    return [[tuple(map(float, p.split(","))) for p in line.get("points").split()] for line in root.iter(f"{SVG}polyline")]


def test_polyline_points_are_the_data_scaled_onto_the_axes():
    box = ChartBox()
    values = [10.0, 20.0, 15.0, 40.0]
    svg = line_chart(["a", "b", "c", "d"], [Series("latency", values)], title="t", y_label="ms", box=box)
    (line,) = _points(svg)
    ticks = nice_ticks(0.0, 40.0)
    y = LinearScale((ticks[0], ticks[-1]), box.y_span)
    x = LinearScale((0, 3), box.x_span)
    assert line == [(pytest.approx(x(i), abs=0.06), pytest.approx(y(v), abs=0.06)) for i, v in enumerate(values)]
    assert line[3][1] < line[0][1]  # larger values sit higher (smaller y)
    labels = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text") if t.get("class") == "y-tick"]
    assert labels[0] == "0" and labels[-1] == "40"


def test_missing_days_are_gaps_and_isolated_days_are_dots():
    values = [1.0, 2.0, None, 3.0, float("nan"), 5.0, 6.0, 7.0]
    assert runs(values) == [[0, 1], [3], [5, 6, 7]]
    svg = line_chart([str(i) for i in range(len(values))], [Series("s", values)], title="t", y_label="y")
    lines = _points(svg)
    assert [len(p) for p in lines] == [2, 3]  # the lone day 3 is not part of any line ...
    circles = list(ET.fromstring(svg).iter(f"{SVG}circle"))
    assert len(circles) == 6  # ... but has its dot, like every present day
    empty = line_chart(["a", "b"], [Series("s", [None, None])], title="t", y_label="y")
    assert "no data in this window" in empty and "<polyline" not in empty


def test_line_chart_rejects_misaligned_series_and_has_a_legend_for_several():
    with pytest.raises(ValueError, match="2 values for 3 x positions"):
        line_chart(["a", "b", "c"], [Series("s", [1, 2])], title="t", y_label="y")
    svg = line_chart(["a", "b"], [Series("p50", [1, 2]), Series("p99", [3, 4], dashed=True)], title="t", y_label="ms")
    legend = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "legend-item"]
    assert ["".join(g.itertext()) for g in legend] == ["p50", "p99"]


def test_nice_ticks_cover_the_range_with_round_steps():
    for lo, hi in [(0, 1), (0.0013, 0.0071), (-3.2, 17.9), (1234, 98765), (5, 5)]:
        ticks = nice_ticks(lo, hi)
        steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:])}
        assert ticks[0] <= min(lo, hi) and ticks[-1] >= max(lo, hi) and len(steps) == 1
        step = steps.pop()
        mantissa = step / 10 ** __import__("math").floor(__import__("math").log10(step))
        assert round(mantissa, 9) in (1, 2, 5, 10)


def test_forest_plot_marks_the_interval_the_zero_line_and_the_threshold():
    rows = [Interval("error_rate", 0.002, -0.001, 0.005, "inconclusive", threshold=0.001),
            Interval("latency_p99_ms", None, None, None, "inconclusive", note="needs 1000 rows")]
    svg = forest_plot(rows, title="guardrails", x_label="difference")
    root = ET.fromstring(svg)
    zero = next(e for e in root.iter(f"{SVG}line") if e.get("class") == "zero")
    ci = next(e for e in root.iter(f"{SVG}line") if e.get("class") == "ci")
    threshold = next(e for e in root.iter(f"{SVG}line") if e.get("class") == "threshold")
    estimate = next(e for e in root.iter(f"{SVG}rect") if e.get("class") == "estimate")
    lo, hi, z, t = float(ci.get("x1")), float(ci.get("x2")), float(zero.get("x1")), float(threshold.get("x1"))
    assert lo < z < t < hi  # the interval straddles both zero and the margin: inconclusive, as drawn
    assert lo < float(estimate.get("x")) + 4 < hi
    assert (t - z) / (hi - lo) == pytest.approx(0.001 / 0.006, rel=1e-2)  # positions are linear in the values
    assert "needs 1000 rows" in "".join(root.itertext())
    assert {"estimate and interval", "no effect (0)", "threshold (margin or MDE)"} <= set(root.itertext())


@pytest.mark.parametrize("payload", PAYLOADS)
def test_svg_text_is_escaped_in_content_and_attributes(payload):
    svg = line_chart(["d1", payload], [Series(payload, [1, 2]), Series("x", [2, 1])], title=payload, y_label=payload)
    svg += forest_plot([Interval(payload, 0.1, 0.0, 0.2, payload, note=payload)], title=payload, x_label=payload)
    assert payload not in svg.replace(html.escape(payload, quote=True), "")
    for doc in svg.split("</svg>")[:-1]:
        root = ET.fromstring(doc + "</svg>")  # still well-formed: nothing broke out of its attribute or element
        assert not [e for e in root.iter() if e.tag.split("}")[-1] in ("script", "img", "foreignObject")]
        assert not [k for e in root.iter() for k in e.attrib if k.lower().startswith("on")]


def _days(n: int, start: date = date(2026, 11, 1)) -> list[dict]:
    out = []
    for i in range(n):
        s = full_summary()
        s["partition"]["dt"] = (start + timedelta(days=i)).isoformat()
        s["metrics"]["__all__"]["latency_p95_ms"] = 1000.0 + 100 * i
        out.append(s)
    return out


def test_history_has_gaps_for_missing_days_and_compares_with_the_median():
    summaries = _days(5)
    del summaries[2]
    history = history_from_summaries(summaries, "support-bot-v3", date(2026, 11, 5), days=7)
    assert [s is not None for s in history.summaries] == [False, False, True, True, False, True, True]
    (row,) = window_comparison(history, ["latency_p95_ms"])
    assert row["today"] == 1400.0 and row["median"] == 1100.0 and row["days"] == 3
    assert row["change"] == pytest.approx(1400 / 1100 - 1)


def test_baseline_comparison_reads_the_profile_quantiles():
    summary = sample_summary()
    profiles = {"latency_ms": {"kind": "numerical", "quantiles": {"p50": 400.0, "p95": 2000.0, "p99": 3200.0}},
                "input.prompt_tokens": {"kind": "numerical", "quantiles": {"p95": 1000.0}}}
    rows = {r["metric"]: r for r in baseline_comparison(profiles, summary)}
    assert rows["latency_p95_ms"]["baseline"] == 2000.0 and rows["latency_p95_ms"]["change"] == pytest.approx(1850 / 2000 - 1)
    assert rows["prompt_tokens_p95"]["change"] == pytest.approx(900 / 1000 - 1) and len(rows) == 4


def test_examples_put_flagged_answers_first_then_the_lowest_scored():
    frame = pd.DataFrame({
        "request_id": ["a", "b", "c", "d", "e"], "variant": "control", "prompt": ["p"] * 5, "response": ["r"] * 4 + ["x" * 5000],
        "reasoning": ["why"] * 5, "helpfulness": [5.0, 1.0, 4.0, 2.0, None], "coherence": [5.0, 2.0, 4.0, 2.0, None],
        "toxicity": pd.array([False, False, True, False, None], dtype="boolean"), "hallucination": pd.array([False] * 5, dtype="boolean")})
    chosen = select_examples(frame, ["helpfulness", "coherence"], flagged=2, lowest=2)
    assert [e.request_id for e in chosen] == ["c", "b", "d"]
    assert chosen[0].why == "flagged toxicity" and chosen[0].flags == ["toxicity"]
    assert chosen[1].why.startswith("lowest mean score (1.50)")
    long = select_examples(frame.assign(helpfulness=[5, 5, 5, 5, 1.0], coherence=[5, 5, 5, 5, 1.0]), ["helpfulness"], flagged=0, lowest=1)
    assert long[0].request_id == "e" and long[0].truncated and len(long[0].response) == 2000 and long[0].response.endswith("…")


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v) for k, v in attrs]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_partition_page_and_index_escape_traffic_and_judge_text(payload):
    s = full_summary()
    s["model_id"] = s["partition"]["model_id"] = "bot" + payload
    s["segments"][0]["value"] = payload
    s["drift"]["alerts"][0]["column"] = payload
    s["experiments"][0]["reasons"] = [payload]
    example = select_examples(pd.DataFrame({"request_id": [payload], "variant": [payload], "prompt": [payload], "response": [payload],
                                            "reasoning": [payload], "helpfulness": [1.0]}), ["helpfulness"])
    days = _days(3)
    history = History([date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)], [days[0], None, s])
    page = render_partition_page(s, PageContext(history=history, examples=example, index_href="../../index.html"))
    index = site_index_html([s, *days])
    for doc in (page, index):
        parser = _Tags()
        parser.feed(doc)
        assert "script" not in parser.tags and "img" not in parser.tags and "textarea" not in parser.tags
        assert not [a for a in parser.attrs if a[1].startswith("on")]
        assert not [a for a in parser.attrs if a[1] == "href" and a[2].lower().startswith("javascript")]
    assert page.count(str(escape(payload))) >= 6  # model id, segment, column, reason, prompt, response, reasoning ...
    assert 'http-equiv="Content-Security-Policy"' in page


def test_the_five_answers_follow_the_summary():
    ok = full_summary()
    state = {a.question: a.state for a in answers(ok)}
    assert state == {"healthy now?": "ok", "drifting?": "medium", "vs baseline?": "not_checked", "cost?": "ok", "experiments?": "continue"}
    bad = full_summary(decision="roll_back")
    assert {a.question: a.state for a in answers(bad)}["healthy now?"] == "breach"
    assert answers(bad)[4].state == "roll_back"


def test_a_classifier_page_shows_the_performance_estimate_and_the_health_card_flags_it():
    from modelwatch.publish.page import render_partition_page
    from prom_servers import classic_summary_with_estimate

    summary = {**full_summary(model_id="churn-classifier-v2"),
               "concept": classic_summary_with_estimate("churn-classifier-v2", estimate=0.64, gap=-0.05)["concept"], "judge": None}
    summary["concept"]["estimation"].update(primary_metric="accuracy", alerts=["accuracy"], gap_alert=True,
                                            history=[], assumptions=["calibration holds"], band="±3 sampling errors",
                                            thresholds="reference chunks mean ± 3 sd", calibration="isotonic", source="NannyML")
    page = render_partition_page(summary)
    assert "estimated accuracy 0.640 (outside its reference range)" in page
    assert '<span class="badge alert">alert</span>' in page
    after = page.split("Concept drift", 1)[1]  # the estimation section follows the concept-drift line
    assert "<h3>Estimated performance" in after and "64.0%" in after and "72.0% … 83.0%" in after


# --- traffic text as the pages show it: cut, cleaned of controls, bidi-isolated; wide tables stay in their box ---------

RLO, PDI, FSI = "\u202e", "\u2069", "\u2068"
LONG_TOPIC = "long-topic-" + "L" * 50_000
CONTROLS = "nul\x00 esc\x1b bell\x07 del\x7f c1\x85 surrogate\ud800 end"


class _Isolation(HTMLParser):
    """Every text chunk of a page with whether it sits inside a <bdi> (or an element isolating by its own nature)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.chunks = [], []

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        self.chunks.append((data, "bdi" in self.stack, self.stack[-1] if self.stack else ""))


def _isolated(chunk: str, in_bdi: bool, tag: str = "") -> bool:
    """An RLO is contained when its text is in a <bdi>, or is all of an SVG <text> (its own bidi paragraph), or FSI … PDI enclose it."""
    if in_bdi or tag == "text":
        return True
    depth, ok = 0, True
    for c in chunk:
        depth += c == FSI
        depth -= c == PDI and depth > 0
        ok &= c != RLO or depth > 0
    return ok


def _hostile_summary(value: str) -> dict:
    """A summary with ``value`` as a segment value, a drift alert's segment, a variant, reasons, notes and a quarantine example."""
    s = full_summary()
    s["segments"][0]["value"] = value
    s["drift"]["alerts"][2]["segment"] = f"metadata.topic={value}"
    s["experiments"][0]["reasons"] = [f"reason {value}"]
    s["experiments"][0]["primary"][0]["reason"] = f"note {value}"
    s["validation"] = {"failures": {"schema": 2}, "examples": {"schema": [value, "b"]}, "quarantine_uri": "s3://q/x"}
    s["baseline_comparison"] = {"version": "v1", "quantiles": [{"measure": "latency_ms p95", "metric": "latency_p95_ms", "baseline": 1.0,
                                                               "today": 2.0, "change": 1.0}],
                                "segment_mix": [{"segment": "metadata.topic", "value": value, "baseline_share": 0.1, "today_share": 0.5}]}
    s["judge"]["by_variant"] = {value: s["judge"]["overall"]}
    return s


def _hostile_page(value: str) -> str:
    """The page of :func:`_hostile_summary` with a 2-day history and a judged example whose every text carries ``value``."""
    s = _hostile_summary(value)
    frame = pd.DataFrame({"request_id": [f"req-{value}"], "variant": [value], "prompt": [f"prompt {value}"],
                          "response": [f"answer {value}"], "reasoning": [f"why {value}"], "helpfulness": [1.0],
                          "toxicity": pd.array([True], dtype="boolean")})
    history = History([date(2026, 11, 19), date(2026, 11, 20)], [_days(1)[0], s])
    return render_partition_page(s, PageContext(history=history, examples=select_examples(frame, ["helpfulness"])))


def test_the_shown_text_helper_cleans_cuts_escapes_and_isolates():
    from modelwatch.publish.templating import ENVIRONMENT
    from modelwatch.publish.text import attr, clean, isolate, shown

    assert clean(CONTROLS) == "nul\ufffd esc\ufffd bell\ufffd del\ufffd c1\ufffd surrogate\ufffd end"
    assert clean("a\tb\nc\rd") == "a\tb\nc\rd" and clean(None) == "" and clean(float("nan")) == ""
    assert clean(f"{PDI}{RLO}x") == f"\ufffd{RLO}x"  # a stray closer cannot close the isolate around the text
    assert clean(f"\u202c{RLO}x\u202c") == f"\ufffd{RLO}x\u202c"  # a PDF closes only what the text opened
    assert clean(f"{FSI}{RLO}x{PDI}{PDI}") == f"{FSI}{RLO}x{PDI}\ufffd"
    text, cut = shown(LONG_TOPIC, 200)
    assert cut and len(text) == 200 and text.endswith("…") and LONG_TOPIC.startswith(text[:-1])
    assert shown("short", 200) == ("short", False)
    shown_in_page = ENVIRONMENT.from_string("<bdi>{{ value|label }}</bdi>")  # the page templates: cleaned, cut, escaped by autoescape
    assert shown_in_page.render(value='<b x="1">\x00') == "<bdi>&lt;b x=&#34;1&#34;&gt;\ufffd</bdi>" and attr("'\"<") == "&#x27;&quot;&lt;"
    assert shown_in_page.render(value=LONG_TOPIC) == f"<bdi>{shown(LONG_TOPIC, 200)[0]}</bdi>"
    assert isolate(f"{RLO}abc") == f"{FSI}{RLO}abc{PDI}" and len(isolate(LONG_TOPIC)) == 202
    assert attr(LONG_TOPIC, limit=None) == LONG_TOPIC  # links are never cut
    assert attr(isolate(RLO) + " after") == f"{FSI}{RLO}{PDI} after"  # composed isolates survive the escape


def _block(page: str, start: str, end: str = "</table>") -> str:
    return page.split(start, 1)[1].split(end, 1)[0]


def test_segment_values_are_cut_on_the_page_and_index():
    from modelwatch.publish.text import LABEL_CHARS, TEXT_CHARS

    page = _hostile_page(LONG_TOPIC)
    cut = "long-topic-" + "L" * (LABEL_CHARS - len("long-topic-") - 1) + "…"
    for start, end in [('class="segments"', "</table>"), ('class="mix"', "</table>"), ('class="drift-alerts"', "</table>"),
                       ('class="judge"', "</table>"), ("<bdi>rule</bdi>", "</table>"), ('data-question="vs baseline?"', "</div></div>"),
                       ('<div class="example"', '<div class="label">')]:
        block = _block(page, start, end)
        assert "long-topic-L" in block and "L…" in block and "L" * LABEL_CHARS not in block, start  # ids, variants and values at LABEL_CHARS
    assert cut in _block(page, 'class="segments"', "</table>")
    assert "L" * TEXT_CHARS not in page  # prompts, responses and reasons at TEXT_CHARS
    assert len(page) < 120_000
    index = site_index_html([_hostile_summary(LONG_TOPIC)])  # the latest state's "vs baseline?" names the segment value
    assert cut in index and "L" * LABEL_CHARS not in index


def test_control_characters_never_reach_the_page_raw():
    page = _hostile_page(CONTROLS)
    assert not [c for c in page if (ord(c) < 32 and c not in "\t\n\r") or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF]
    assert "nul\ufffd esc\ufffd" in page
    page.encode("utf-8")  # a lone surrogate would make the page unwritable
    svg = line_chart(["a", "b"], [Series(CONTROLS, [1, 2]), Series("x", [2, 1])], title=CONTROLS, y_label=CONTROLS)
    svg += forest_plot([Interval(CONTROLS, 0.1, 0.0, 0.2, note=CONTROLS)], title=CONTROLS, x_label=CONTROLS)
    for doc in svg.split("</svg>")[:-1]:
        ET.fromstring(doc + "</svg>")  # XML refuses a NUL: the SVG stays well-formed


def test_every_traffic_text_on_the_page_is_bidi_isolated():
    page = _hostile_page(f"{PDI}{RLO}rlo-value")
    parser = _Isolation()
    parser.feed(page)
    holding = [(chunk, in_bdi, tag) for chunk, in_bdi, tag in parser.chunks if RLO in chunk]
    assert len(holding) >= 10  # request id, variant, segment value, reasons, notes, prompt, response, reasoning, examples, mix ...
    assert [(c[:40], tag) for c, in_bdi, tag in holding if not _isolated(c, in_bdi, tag)] == []
    assert f"{PDI}{RLO}" not in page  # the stray closer was neutralised before the text was isolated
    # SVG: a <text> holding only the label is its own bidi paragraph; a tooltip composing the label with numbers isolates it
    svg = forest_plot([Interval(f"{RLO}label", 0.1, 0.0, 0.2)], title="t", x_label="x")
    svg += line_chart(["a", "b"], [Series(f"{RLO}series", [1, 2]), Series("x", [2, 1])], title="t", y_label="y")
    root = ET.fromstring(f'<g xmlns="http://www.w3.org/2000/svg">{svg}</g>')
    tips = ["".join(e.itertext()) for e in root.iter(f"{SVG}title") if RLO in "".join(e.itertext())]
    assert tips and [t for t in tips if not _isolated(t, False)] == []
    assert f"{FSI}{RLO}label{PDI}: +10%" in tips[0]
    assert [e.text for e in root.iter(f"{SVG}text") if e.text and RLO in e.text] == [f"{RLO}label", f"{RLO}series"]


def test_wide_tables_wrap_or_scroll_inside_their_box():
    page = _hostile_page("v")
    assert "<table" in page and page.count("<table") == page.count('<div class="table-box"><table')
    notes = [row for row in page.split("<tr>") if "note v" in row]
    assert notes and all('<td class="num"><bdi>note v' not in row for row in notes)  # a note is text: it wraps, it is not a number
    css = page.split("<style>", 1)[1].split("</style>", 1)[0]
    assert ".table-box{overflow-x:auto" in css and "overflow-wrap:anywhere" in css.split("body{", 1)[1].split("}", 1)[0]


# --- the page templates: one autoescaping, strict environment; every template ships in the package ---------------------


def test_the_templates_escape_by_default_and_fail_on_a_missing_name():
    from jinja2 import UndefinedError
    from modelwatch.publish.templating import ENVIRONMENT, chart, render

    assert ENVIRONMENT.from_string("{{ x }}").render(x="<script>") == "&lt;script&gt;"
    assert render("sections/glance.html", answers=[], s={"outcome": "ok"}, history=None).strip() == '<div class="glance"></div>'
    with pytest.raises(UndefinedError, match="history"):
        render("sections/glance.html", answers=[], s={"outcome": "ok"})
    svg = line_chart(["a"], [Series("<b>", [1.0])], title="<t>", y_label="y")
    assert ENVIRONMENT.from_string("{{ c }}").render(c=chart(svg)) == svg  # the chart is the one markup passed through
    assert ENVIRONMENT.from_string("{{ c }}").render(c=svg) != svg  # the same text, not marked, is escaped


def test_every_template_ships_as_package_data():
    import fnmatch
    import tomllib
    from pathlib import Path

    import modelwatch.publish

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["modelwatch.publish"]
    templates = Path(modelwatch.publish.__file__).parent / "templates"
    files = [p.relative_to(templates.parent).as_posix() for p in templates.rglob("*") if p.is_file()]
    assert len(files) >= 15 and [f for f in files if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)] == []


class _Links(HTMLParser):
    """(href, text) of every link of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[list[str]] = []
        self._open = False

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append([dict(attrs).get("href") or "", ""])
            self._open = True

    def handle_endtag(self, tag):
        self._open = self._open and tag != "a"

    def handle_data(self, data):
        if self._open:
            self.links[-1][1] += data


def _links(page: str) -> list[list[str]]:
    parser = _Links()
    parser.feed(page)
    return parser.links


def test_the_drift_line_links_its_day_in_the_evidently_ui_escaped():
    url = 'http://127.0.0.1:8000/projects/p/reports/s?x="><script>window.__pwned=1</script>'
    s = full_summary()
    s["drift"]["evidently_ui_url"] = url
    page = render_partition_page(s)
    assert [url, "this day in the Evidently UI"] in _links(page)  # the attribute carries the URL whole, as data
    assert "<script>window.__pwned" not in page
    del s["drift"]["evidently_ui_url"]
    assert "Evidently UI" not in render_partition_page(s)
