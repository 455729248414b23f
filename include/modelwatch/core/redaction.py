"""Redaction of personal data in free text: email addresses, phone numbers and payment card numbers.

Pure functions over strings, standard library only, so that the serving client (before
text leaves the service) and the reports (before text is shown) apply the same rules.

The pattern set, in order of precedence (where two matches overlap, the earlier rule
wins):

``email`` -> ``[EMAIL]``
    ``local@domain.tld``: a local part of letters, digits and ``._%+-``, a domain of
    letters, digits, dots and hyphens, and a top-level domain of two or more letters
    (the common subset of RFC 5322 addresses, as in the WHATWG HTML ``type=email`` rule,
    without quoted local parts or IP-literal domains).
``card`` -> ``[CARD]``
    13 to 19 digits, optionally grouped by single spaces or hyphens (ISO/IEC 7812 primary
    account numbers), kept only when the digits pass the Luhn checksum (ISO/IEC 7812-1
    Annex B), so order numbers and other long digit runs are left alone.
``phone`` -> ``[PHONE]``
    an optional ``+`` and country code, then groups of digits separated by spaces,
    hyphens, dots or a parenthesised area code, 10 to 15 digits in all (E.164 allows at
    most 15), or 7 to 15 digits when written with a leading ``+``. Dotted quads that look
    like IPv4 addresses and ISO dates (8 digits) are not phone numbers.

What is not covered: postal addresses, names, national id numbers, and numbers written
without any separator inside longer digit runs. Redaction is a safety net at the
source, not an anonymisation guarantee.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TEXT_FIELDS: tuple[str, ...] = ("prompt", "response", "reference")


@dataclass(frozen=True)
class Rule:
    """One kind of personal data: a pattern, an optional check on each match, and its replacement token."""

    name: str
    pattern: re.Pattern[str]
    replacement: str
    check: Callable[[str], bool] | None = None
    needs: str | None = None  # a substring every match contains: texts without it skip the pattern (a cheap scan first)

    def accepts(self, matched: str) -> bool:
        return self.check is None or self.check(matched)


@dataclass(frozen=True)
class Finding:
    """A span of ``text`` that a rule redacts."""

    rule: str
    start: int
    end: int


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) checksum of the digits in ``number`` (ISO/IEC 7812-1 Annex B); non-digits are ignored.

    From the rightmost digit, every second digit is doubled (minus 9 when above 9); the
    number is valid when the sum is a multiple of 10. Fewer than two digits is not valid.
    """
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _digit_count(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _is_card(matched: str) -> bool:
    return 13 <= _digit_count(matched) <= 19 and luhn_valid(matched)


_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def _is_phone(matched: str) -> bool:
    digits = _digit_count(matched)
    if _IPV4.fullmatch(matched):
        return False
    if matched.startswith("+"):
        return 7 <= digits <= 15
    return 10 <= digits <= 15


EMAIL = Rule("email", re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"), "[EMAIL]", needs="@")
CARD = Rule("card", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])"), "[CARD]", _is_card)
PHONE = Rule(
    "phone",
    re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{1,4}){1,5}(?![\w])"),
    "[PHONE]",
    _is_phone,
)
DEFAULT_RULES: tuple[Rule, ...] = (EMAIL, CARD, PHONE)


def find(text: str, rules: Iterable[Rule] = DEFAULT_RULES) -> list[Finding]:
    """The spans of ``text`` to redact, sorted by position; where two rules overlap, the earlier rule wins."""
    findings: list[Finding] = []
    for rule in rules:
        if rule.needs is not None and rule.needs not in text:
            continue
        for match in rule.pattern.finditer(text):
            start, end = match.span()
            if rule.accepts(match.group(0)) and not any(f.start < end and start < f.end for f in findings):
                findings.append(Finding(rule.name, start, end))
    return sorted(findings, key=lambda f: f.start)


def redact(text: str, rules: Iterable[Rule] = DEFAULT_RULES) -> str:
    """``text`` with every span ``find`` reports replaced by its rule's token (``[EMAIL]``, ``[CARD]``, ``[PHONE]``)."""
    rules = tuple(rules)
    tokens = {rule.name: rule.replacement for rule in rules}
    parts: list[str] = []
    cursor = 0
    for f in find(text, rules):
        parts += [text[cursor:f.start], tokens[f.rule]]
        cursor = f.end
    parts.append(text[cursor:])
    return "".join(parts)


def redact_fields(row: Mapping[str, Any], fields: Iterable[str] = TEXT_FIELDS, rules: Iterable[Rule] = DEFAULT_RULES) -> dict[str, Any]:
    """A copy of ``row`` with the string values of ``fields`` redacted; other values are kept as they are."""
    rules = tuple(rules)
    out = dict(row)
    for name in fields:
        value = out.get(name)
        if isinstance(value, str):
            out[name] = redact(value, rules)
    return out
