"""The optional Rust port of phonenumbers must answer exactly as phonenumbers does."""

from __future__ import annotations

import random

import phonenumbers
import pytest

rphonenumbers = pytest.importorskip("rphonenumbers")

REGIONS = [None, "FR", "BE", "CH", "GB", "US", "DE", "IT", "ES", "NL", "CA", "BR", "IN", "JP", "AU"]


def corpus() -> list[str]:
    rng = random.Random(7)
    numbers = ["12", "abc", "", "+", "0033612345678", "+33 (0)6 12 34 56 78", "06.12.34.56.78", "+1-202-555-0143"]
    numbers += ["0471 23 45 67", "044 668 18 00", "+44 20 7946 0958", "+49 30 123456", "+81 3-1234-5678"]
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 15)))
        prefix = rng.choice(["", "0", "+", "00", "+33 ", "+1 ", "+44 ", "06 ", "(0) "])
        numbers.append(prefix + digits)
    return numbers


def outcome(library: object, text: str, region: str | None) -> str | None:
    try:
        number = library.parse(text, region)  # type: ignore[attr-defined]
    except library.NumberParseException:  # type: ignore[attr-defined]
        return "error"
    if not library.is_valid_number(number):  # type: ignore[attr-defined]
        return None
    return library.format_number(number, library.PhoneNumberFormat.E164)  # type: ignore[attr-defined]


@pytest.mark.parametrize("region", REGIONS)
def test_same_answers_as_phonenumbers(region: str | None) -> None:
    mismatches = [
        (text, outcome(phonenumbers, text, region), outcome(rphonenumbers, text, region))
        for text in corpus()
        if outcome(phonenumbers, text, region) != outcome(rphonenumbers, text, region)
    ]
    assert mismatches == []


def test_engine_uses_the_port_when_installed() -> None:
    from airflow_provider_contactsync.core.formulas.contactsync import PHONE_LIBRARY

    assert PHONE_LIBRARY.__name__ in ("rphonenumbers", "phonenumbers")
