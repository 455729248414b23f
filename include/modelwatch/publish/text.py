"""Text from traffic, judges and files as the report pages show it: the one cleaning, cutting, escaping and isolating helper.

Every string a page shows that is not a literal of the templates (model and experiment
ids, variants, segment values, request ids, column names, prompts, responses, judge
reasoning, reasons, URIs) passes through :func:`clean`, and is cut by :func:`shown`:

- in the page templates (``publish.templating``): every printed value is cleaned (the
  environment's ``finalize``), cut by the ``text`` and ``label`` filters, escaped by
  autoescape and, in element content, bidi-isolated in a ``<bdi>``;
- :func:`attr` for the SVG charts' attribute values, ``<title>`` and ``<text>``: cleaned, cut, escaped;
- :func:`isolate` for plain text that is composed into a longer string before it is
  escaped (the glance answers, SVG tooltips): cleaned, cut and wrapped in FSI … PDI.

What a shown text is guaranteed to be:

- no control character: C0 controls except tab, line feed and carriage return, DEL, the
  C1 controls, surrogate code points (a lone surrogate cannot be encoded as UTF-8) and
  the non-characters U+FFFE/U+FFFF are each replaced by U+FFFD, so no NUL or escape byte
  reaches a page raw and the inline SVG stays well-formed XML;
- bidi-contained: a bidi closer (PDF, PDI) with no opener inside the same text is also
  replaced by U+FFFD, and the text is isolated (``<bdi>`` or FSI … PDI), so a right-to-left
  override or an RTL value reorders only itself, never the text or badges after it;
- at most ``limit`` characters, the last one ``…`` when it was cut (the JSON and Parquet
  outputs keep the full value); ``limit=None`` keeps it whole (a link must not be cut);
- escaped (:func:`html.escape` with ``quote=True`` here, MarkupSafe in the templates), so
  safe in element content and in quoted attributes alike.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

TEXT_CHARS = 2_000  # prompts, responses, reasoning, reasons, problems, URIs
LABEL_CHARS = 200  # ids, variants, segment values, column names, chart labels
REPLACEMENT = "\ufffd"
ELLIPSIS = "…"
FSI, PDI = "\u2068", "\u2069"

_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_EMBEDDINGS = frozenset("\u202a\u202b\u202d\u202e")  # LRE, RLE, LRO, RLO: closed by PDF
_ISOLATES = frozenset("\u2066\u2067\u2068")  # LRI, RLI, FSI: closed by PDI
_PDF = "\u202c"
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


def _stray_closer(match: re.Match[str], stack: list[str]) -> str:
    """One explicit bidi character; a closer with no opener left in the text so far becomes U+FFFD (UAX #9, X6a and X7)."""
    char = match.group()
    if char in _EMBEDDINGS or char in _ISOLATES:
        stack.append(char)
        return char
    if char == PDI:
        if not any(c in _ISOLATES for c in stack):
            return REPLACEMENT
        while stack.pop() not in _ISOLATES:  # a PDI also closes the embeddings opened inside its isolate
            pass
        return char
    if stack and stack[-1] in _EMBEDDINGS:  # a PDF closes only an embedding opened inside the current isolate
        stack.pop()
        return char
    return REPLACEMENT


def clean(value: Any) -> str:
    """``value`` as text with no control character and no bidi closer that could close anything outside it (see the module docstring).

    ``None`` and NaN are the empty string. Each replaced character becomes one U+FFFD, so
    lengths and positions are kept.
    """
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = _CONTROLS.sub(REPLACEMENT, str(value))
    if _BIDI.search(text) is None:
        return text
    stack: list[str] = []
    return _BIDI.sub(lambda m: _stray_closer(m, stack), text)


def shown(value: Any, limit: int | None = TEXT_CHARS) -> tuple[str, bool]:
    """``value`` cleaned, then cut to at most ``limit`` characters (the last one ``…``; ``None``: never cut); and whether it was cut."""
    if limit is not None and limit < 1:
        raise ValueError(f"a shown text needs room for at least one character, got limit {limit}")
    text = clean(value)
    return (text, False) if limit is None or len(text) <= limit else (text[: limit - 1] + ELLIPSIS, True)


def attr(value: Any, limit: int | None = TEXT_CHARS) -> str:
    """``value`` for an attribute value, a ``<title>`` or an SVG ``<text>``: cleaned, cut, escaped (no markup added).

    Texts :func:`isolate` composed keep their FSI … PDI pairs.
    """
    return escape(shown(value, limit)[0], quote=True)


def isolate(value: Any, limit: int | None = LABEL_CHARS) -> str:
    """``value`` as plain text to compose into a longer text: cleaned, cut, and between FSI and PDI (not escaped)."""
    return f"{FSI}{shown(value, limit)[0]}{PDI}"
