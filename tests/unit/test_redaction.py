import random

import pytest
from modelwatch.core.redaction import CARD, DEFAULT_RULES, EMAIL, PHONE, find, luhn_valid, redact, redact_fields

# Published test card numbers (valid Luhn) and the same numbers with the last digit changed.
VALID_CARDS = ["4111111111111111", "5500 0000 0000 0004", "3400-0000-0000-009", "6011000000000004", "4222222222222"]


def _luhn_reference(number: str) -> bool:
    """Luhn by the textbook statement: double every second digit from the right, sum the digits of the products."""
    digits = [int(c) for c in number]
    total = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
    return total % 10 == 0


@pytest.mark.parametrize("card", VALID_CARDS)
def test_valid_cards_are_redacted_and_a_wrong_check_digit_is_not(card):
    assert redact(f"my card is {card}, thanks") == "my card is [CARD], thanks"
    digits = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert not luhn_valid(digits)
    assert "[CARD]" not in redact(f"my card is {digits}")


def test_luhn_matches_the_textbook_definition_on_random_numbers():
    rng = random.Random(3)
    numbers = ["".join(rng.choice("0123456789") for _ in range(rng.randint(2, 19))) for _ in range(3000)]
    assert [luhn_valid(n) for n in numbers] == [_luhn_reference(n) for n in numbers]
    assert sum(luhn_valid(n) for n in numbers) > 200  # about one in ten


@pytest.mark.parametrize("text", ["write to jane.doe+billing@example.co.uk today", "CC: ops_team@mail-1.example.org."])
def test_emails(text):
    out = redact(text)
    assert "[EMAIL]" in out and "@" not in out


@pytest.mark.parametrize("phone", ["+1 (415) 555-0132", "415-555-0132", "+44 20 7946 0958", "020 7946 0958", "+49 30 901820", "415.555.0132"])
def test_phone_numbers(phone):
    assert redact(f"call me on {phone} please") == "call me on [PHONE] please"


@pytest.mark.parametrize("text", [
    "Order #A1043 left on 2026-11-03 at 10:15",
    "Error code E-401 appears", "I was charged $129.95 twice", "server 192.168.100.200 is down",
    "Withdrawals of 12345 ETH", "ticket 1234567",
])
def test_ordinary_numbers_are_left_alone(text):
    assert redact(text) == text and find(text) == []


def test_find_reports_spans_and_rules_in_text_order():
    text = "a@b.io then 4111 1111 1111 1111 then +1 415 555 0132"
    found = find(text)
    assert [f.rule for f in found] == ["email", "card", "phone"]
    assert [text[f.start:f.end] for f in found] == ["a@b.io", "4111 1111 1111 1111", "+1 415 555 0132"]


def test_a_card_is_not_also_a_phone_and_rules_can_be_chosen():
    assert redact("4111111111111111") == "[CARD]"
    assert redact("4111111111111111 or a@b.io", rules=(EMAIL,)) == "4111111111111111 or [EMAIL]"
    assert DEFAULT_RULES == (EMAIL, CARD, PHONE)


def test_redact_fields_is_pure_and_touches_only_text_fields():
    row = {"prompt": "mail x@y.com", "response": None, "metadata": {"note": "x@y.com"}, "latency_ms": 5.0}
    out = redact_fields(row)
    assert out["prompt"] == "mail [EMAIL]" and out["response"] is None and out["metadata"] == {"note": "x@y.com"}
    assert row["prompt"] == "mail x@y.com"


def test_the_pipelines_prefilter_never_skips_a_text_redact_would_change():
    """pipeline._redacted sends only candidate texts to ``redact``: the result equals redacting every text."""
    import pyarrow as pa
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from modelwatch.ingest.read import redact_columns as _redacted

    pieces = st.sampled_from(["4111 1111 1111 1111", "+49 30 1234567", "(555) 123-4567", "555.123.4567", "+1 (415) 555-0100", "ann@example.com",
                              "order 12345678", "192.168.0.1", "2026-11-04", "١٢٣٤٥٦٧٨٩٠١", "０１２３４５６７８９", "+", "(", ")", "-", ".", " ", "@", "x"])
    texts = st.lists(st.one_of(pieces, st.text(alphabet="0123456789 ()+-.@a", max_size=12)), max_size=8).map("".join)

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(st.lists(st.one_of(st.none(), texts), min_size=1, max_size=20))
    def check(values):
        table = pa.table({"prompt": pa.array(values, pa.string()), "n": list(range(len(values)))})
        expected = [None if v is None else redact(v) for v in values]
        assert _redacted(table, ("prompt", "missing"))["prompt"].to_pylist() == expected

    check()
