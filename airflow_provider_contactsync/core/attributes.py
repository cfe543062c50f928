"""Brevo contact attributes and the per-value checks that keep Brevo from silently dropping data.

Brevo ignores a value it cannot store (a bad date, a float that is text, an unknown category
option) without telling anyone. contactsync checks every value against the attribute's type
before sending, and rejects the row with the field, the value and the reason instead. Every value
these checks pass is one Brevo (as the sandbox models it, ``sandbox/validation.py``) stores, so
``preview`` and a load agree; tests/test_mapping.py holds the two side by side.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from airflow_provider_contactsync.core.errors import RowError

EMAIL_PATTERN = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])\Z"
)
"""The WHATWG (HTML) email syntax with a top-level domain of 2 or more characters starting with a
letter, as Brevo requires (``a@b.c`` and ``a@1.2`` are refused); checkable in ~1 µs."""

E164_PATTERN = re.compile(r"^\+[1-9][0-9]{5,14}\Z")
"""Brevo's rule for phone numbers: international format, 6 to 15 digits, and a possible number of
its country (:func:`possible_phone`)."""
PHONE_ATTRIBUTES = frozenset({"SMS", "WHATSAPP", "LANDLINE_NUMBER"})
"""Attributes Brevo checks as phone numbers."""

NUMBER_PATTERN = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
TRUE_WORDS = frozenset({"true", "yes", "1", "y", "oui", "si", "ja"})
FALSE_WORDS = frozenset({"false", "no", "0", "n", "non", "nein", "nee"})
READ_ONLY_CATEGORIES = frozenset({"calculated", "global"})

Converter = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Attribute:
    """One contact attribute as ``GET /contacts/attributes`` describes it."""

    name: str
    type: str
    category: str = "normal"
    enumeration: tuple[tuple[int, str], ...] = ()

    @property
    def kind(self) -> str:
        """How values are checked: the attribute type, or ``category`` when it has an enumeration."""
        if self.name == "EMAIL":
            return "email"
        if self.name == "SMS":
            return "sms"
        if self.name in PHONE_ATTRIBUTES:
            return "phone"
        if self.name == "EXT_ID":
            return "ext_id"
        if self.enumeration and self.type != "multiple-choice":
            return "category"
        return self.type

    @property
    def writable(self) -> bool:
        return self.category not in READ_ONLY_CATEGORIES and self.type != "user"


class AttributeCatalog:
    """The attributes of one Brevo account, by name."""

    def __init__(self, attributes: Iterable[Attribute]) -> None:
        self._by_name = {a.name: a for a in attributes}
        # EMAIL is the contact's identity, not a listed attribute; it is always writable.
        self._by_name.setdefault("EMAIL", Attribute("EMAIL", "text"))

    @classmethod
    def from_api(cls, attributes: Iterable[Mapping[str, Any]]) -> AttributeCatalog:
        """Build from the ``attributes`` array of ``GET /contacts/attributes``."""
        return cls(
            Attribute(
                name=str(a["name"]).upper(),
                type=str(a.get("type") or ("category" if a.get("enumeration") else "text")),
                category=str(a.get("category", "normal")),
                enumeration=_enumeration(a),
            )
            for a in attributes
        )

    @classmethod
    def brevo_defaults(cls) -> AttributeCatalog:
        """The attributes every new Brevo account has: used by ``preview`` when no account is given."""
        return cls(
            [
                Attribute("FIRSTNAME", "text"),
                Attribute("LASTNAME", "text"),
                Attribute("SMS", "text"),
                Attribute("WHATSAPP", "text"),
                Attribute("LANDLINE_NUMBER", "text"),
                Attribute("EXT_ID", "text"),
            ]
        )

    def get(self, name: str) -> Attribute | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)


def _enumeration(attribute: Mapping[str, Any]) -> tuple[tuple[int, str], ...]:
    """Category values (``enumeration``), or a multiple-choice attribute's ``multiCategoryOptions`` numbered from 1."""
    if attribute.get("enumeration"):
        return tuple((int(e["value"]), str(e["label"])) for e in attribute["enumeration"])
    return tuple(enumerate((str(o) for o in attribute.get("multiCategoryOptions") or ()), start=1))


# Which formula result types can be stored in which attribute kind. Types outside the set are a
# configuration error found at load time; values inside it are still checked row by row.
FITS: dict[str, frozenset[str]] = {
    "email": frozenset({"string", "dyn", "null"}),
    "sms": frozenset({"string", "dyn", "null"}),
    "phone": frozenset({"string", "int", "uint", "dyn", "null"}),
    "ext_id": frozenset({"string", "int", "uint", "dyn", "null"}),
    "text": frozenset({"string", "int", "uint", "double", "date", "timestamp", "dyn", "null"}),
    "id": frozenset({"string", "int", "uint", "dyn", "null"}),
    "float": frozenset({"int", "uint", "double", "string", "dyn", "null"}),
    "date": frozenset({"date", "timestamp", "string", "dyn", "null"}),
    "boolean": frozenset({"bool", "string", "dyn", "null"}),
    "category": frozenset({"string", "int", "uint", "dyn", "null"}),
    "multiple-choice": frozenset({"list", "string", "dyn", "null"}),
}


def converter_for(attribute: Attribute, *, text_max_length: int) -> Converter:
    """The function that checks one non-null value and returns what Brevo should receive."""
    kind = attribute.kind
    if kind == "email":
        return _email
    if kind in ("sms", "phone"):
        return _sms
    if kind in ("ext_id", "text"):
        return _text(text_max_length)
    if kind == "id":
        return _id
    if kind == "float":
        return _float
    if kind == "date":
        return _date
    if kind == "boolean":
        return _boolean
    if kind == "category":
        return _category(attribute.enumeration)
    if kind == "multiple-choice":
        return _multiple_choice(attribute.enumeration)
    raise ValueError(f"attribute {attribute.name} of type {attribute.type} is not supported")


def _email(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 254 or not EMAIL_PATTERN.match(value):
        raise RowError("not a valid email address")
    return value


def _sms(value: Any) -> str:
    if not isinstance(value, str) or not E164_PATTERN.match(value) or not possible_phone(value[1:]):
        raise RowError(
            "not an E.164 phone number (+ and 6 to 15 digits, possible for its country); "
            "normalize it with normalizePhoneNumber()"
        )
    return value


def possible_phone(digits: str) -> bool:
    """Whether ``+<digits>`` is a possible number of its country (phonenumbers' length rules), as Brevo checks.

    Parsing costs ~25 µs a number, so the answer is learnt once per (country code, length): for a
    number in international form, phonenumbers only checks the national number's length, unless its
    country's national prefix matches the start of it (then the number is parsed every time).
    """
    country = _phone_country(digits[:3])
    if country is not None:
        size, code, national_prefix = country
        rest = digits[size:]
        if national_prefix is None or not national_prefix.match(rest):
            key = (code, len(rest))
            known = _POSSIBLE_LENGTH.get(key)
            if known is None:
                known, plain = _parse_possible(digits, code, rest)
                if plain:
                    _POSSIBLE_LENGTH[key] = known
            return known
    return _parse_possible(digits, None, digits)[0]


_POSSIBLE_LENGTH: dict[tuple[int, int], bool] = {}


@lru_cache(maxsize=1024)
def _phone_country(head: str) -> tuple[int, int, re.Pattern[str] | None] | None:
    """(code length, country calling code, national prefix pattern) of a number's first 3 digits."""
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata, region_code_for_country_code

    if not head.isascii() or not head.isdigit() or head[0] == "0":
        return None
    for size in range(1, len(head) + 1):
        code = int(head[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region_code_for_country_code(code))
            prefix = metadata.national_prefix_for_parsing if metadata is not None else None
            return size, code, re.compile(prefix) if prefix else None
    return None


def _parse_possible(digits: str, code: int | None, rest: str) -> tuple[bool, bool]:
    """(possible, parsed as ``code`` + ``rest``): the reference answer, and whether it may be learnt."""
    import phonenumbers

    try:
        number = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return False, False
    plain = number.country_code == code and phonenumbers.national_significant_number(number) == rest
    return phonenumbers.is_possible_number(number), plain


def _text(limit: int) -> Converter:
    def convert(value: Any) -> str:
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool) or not isinstance(value, (int, float, Decimal, dt.date)):
            raise RowError(f"a {type(value).__name__} value cannot be stored as text")
        elif isinstance(value, dt.date):
            text = value.isoformat()
        elif isinstance(value, float) and not math.isfinite(value):
            raise RowError("not a finite number")
        elif isinstance(value, Decimal) and not value.is_finite():
            raise RowError("not a finite number")
        else:
            try:
                text = str(value)
            except ValueError:  # an integer of more digits than Python converts
                raise RowError(f"text is over the limit of {limit} characters (a number that long)") from None
        if len(text) > limit:
            raise RowError(f"text is {len(text)} characters, over the limit of {limit}")
        if "\x00" in text:
            raise RowError("text contains a NUL character (\\x00)")
        return text

    return convert


def _id(value: Any) -> int | str:
    """An ``id`` attribute holds a whole number: Brevo drops anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return value.strip()
    raise RowError("not a whole number (an id attribute holds digits only)")


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise RowError("not a number (a boolean)")
    if isinstance(value, (int, float, Decimal)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the largest float
            raise RowError("not a finite number (too large for a float)") from None
    elif isinstance(value, str) and NUMBER_PATTERN.match(value.strip()):
        number = float(value)
    else:
        raise RowError("not a number")
    if not math.isfinite(number):
        raise RowError("not a finite number")
    return number


def _date(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return dt.date.fromisoformat(text).isoformat()
            return dt.datetime.fromisoformat(text).date().isoformat()
        except ValueError:
            pass
    raise RowError("not a date (expected YYYY-MM-DD); parse it with asDate()")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise RowError("not a boolean (true/false)")


def _category(enumeration: tuple[tuple[int, str], ...]) -> Converter:
    by_label = {label.casefold(): number for number, label in enumeration}
    numbers = {number for number, _ in enumeration}
    allowed = ", ".join(label for _, label in enumeration)

    def convert(value: Any) -> int:
        if isinstance(value, str) and value.strip().casefold() in by_label:
            return by_label[value.strip().casefold()]
        if isinstance(value, int) and not isinstance(value, bool) and value in numbers:
            return value
        raise RowError(f"not one of the category's values: {allowed}")

    return convert


def _multiple_choice(enumeration: tuple[tuple[int, str], ...]) -> Converter:
    by_label = {label.casefold(): label for _, label in enumeration}
    allowed = ", ".join(label for _, label in enumeration)

    def convert(value: Any) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise RowError("not a list of options")
        chosen = []
        for item in items:
            label = by_label.get(str(item).strip().casefold()) if isinstance(item, str) else None
            if label is None:
                raise RowError(f"{item!r} is not one of the options: {allowed}")
            chosen.append(label)
        return chosen

    return convert
