"""The report pages' one Jinja2 environment: autoescaping templates shipped in ``publish/templates``.

Every page and every page section is one template file under ``publish/templates`` (the
page shells ``partition.html`` and ``site_index.html``, then ``sections/header.html``,
``sections/glance.html``, ``sections/health.html``, ``sections/drift.html``, ``sections/concept.html``,
``sections/estimation.html``, ``sections/baseline.html``, ``sections/cost.html``, ``sections/judge.html``,
``sections/experiments.html``, ``sections/details.html``, ``sections/index_latest.html`` and
``sections/index_days.html``), rendered by :func:`render` through the one :data:`ENVIRONMENT` built here:

- **autoescape** for every template (``select_autoescape``, default on), so every
  ``{{ value }}`` is HTML-escaped by MarkupSafe (``& < > " '``) in element content and in
  quoted attributes alike; no call site escapes by hand;
- **finalize**: every value a template prints is first cleaned by :func:`publish.text.clean`
  (control characters replaced by U+FFFD, a bidi closer with no opener in the text
  neutralised), so no template can write a raw NUL, escape byte or a PDI that would close
  the isolate around it;
- **StrictUndefined**: a name or key missing from the context fails the render loudly
  instead of printing an empty string;
- filters for cutting and isolating traffic text (``text`` at ``TEXT_CHARS``, ``label`` at
  ``LABEL_CHARS``, ``isolate``) and for numbers (``num``, ``metric``, ``estimated``, ``pct``, ``change``);
  templates put traffic text in ``<bdi>`` elements so a right-to-left override reorders only itself.

The one deliberate markup passed into a template is an inline SVG chart, marked safe by
:func:`chart` alone (see there why that is safe).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from modelwatch.publish.formatting import change, fmt, metric_cell, pct, performance_value
from modelwatch.publish.text import LABEL_CHARS, TEXT_CHARS, clean, isolate, shown


def _finalize(value: Any) -> Any:
    """What a template prints: markup as it is, anything else as cleaned text (escaped after this by autoescape)."""
    if hasattr(value, "__html__"):
        return value
    return clean(value)


def _cut(value: Any, limit: int | None = TEXT_CHARS) -> str:
    """Traffic text cleaned and cut at ``limit`` characters (``…`` last when cut; ``None`` never cuts)."""
    return shown(value, limit)[0]


def _label(value: Any) -> str:
    """An id, variant, segment value or column name cut at ``LABEL_CHARS``."""
    return shown(value, LABEL_CHARS)[0]


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("modelwatch.publish", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "svg"), default_for_string=True, default=True),
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(text=_cut, label=_label, isolate=isolate, num=fmt, metric=metric_cell, estimated=performance_value, pct=pct, change=change)
    return env


ENVIRONMENT = _environment()


def render(template: str, **context: Any) -> str:
    """The template ``template`` (a path under ``publish/templates``) rendered with ``context``."""
    return ENVIRONMENT.get_template(template).render(**context)


def chart(svg: str) -> Markup:
    """An inline SVG chart from :mod:`publish.svg`, marked safe: the one markup a template is given.

    Safe because ``publish.svg`` builds it from numbers (coordinates, formatted ticks) and
    from texts that each went through ``publish.text.attr`` (cleaned, cut, escaped with
    ``quote=True``), with no script, no event attribute and no external reference; the
    unit tests parse it as XML and plant payloads in every text it shows.
    """
    return Markup(svg)  # noqa: S704 - see the docstring: built from numbers and escaped texts only
