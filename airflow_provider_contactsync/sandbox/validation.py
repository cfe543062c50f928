"""Contact values as Brevo checks them: emails, phone numbers, and attribute values by type.

Brevo silently ignores attribute values that do not fit the attribute's type; :func:`coerce_value`
returns :data:`DROP` for those so callers can mimic that (and the request log still shows them).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import phonenumbers

DROP = object()
"""Marker: the value does not fit the attribute and is ignored, as Brevo does."""

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
PHONE_ATTRIBUTES = frozenset({"SMS", "WHATSAPP", "LANDLINE_NUMBER"})
ATTRIBUTE_TYPES = ("text", "date", "float", "boolean", "id", "category", "multiple-choice", "user")
ATTRIBUTE_CATEGORIES = ("normal", "transactional", "category", "calculated", "global")


def normalize_email(value: Any) -> str | None:
    """Lower-cased email, or ``None`` when it is not an email address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if EMAIL_RE.match(email) and len(email) <= 254 else None


def normalize_phone(value: Any) -> str | None:
    """Digits with country code (``33612345678``) from ``+33…``, ``33…`` or ``0033…``; ``None`` if invalid."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = re.sub(r"[\s.\-()]", "", str(value))
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    if not text.isdigit() or not 6 <= len(text) <= 15:
        return None
    try:
        number = phonenumbers.parse("+" + text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return f"{number.country_code}{number.national_number}"


def parse_date(value: Any) -> str | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        return None
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return None


def coerce_value(attr: dict[str, Any], value: Any) -> Any:
    """The stored form of ``value`` for attribute ``attr`` (a store row), or :data:`DROP`."""
    kind = attr["type"]
    if value is None:
        return DROP
    if kind == "text":
        if isinstance(value, bool) or isinstance(value, (list, dict)):
            return DROP
        return value if isinstance(value, str) else str(value)
    if kind == "date":
        return parse_date(value) or DROP
    if kind == "float":
        if isinstance(value, bool):
            return DROP
        if isinstance(value, (int, float)):
            return value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return DROP
            return int(number) if number.is_integer() and "." not in value else number
        return DROP
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return DROP
    if kind == "id":
        if isinstance(value, bool):
            return DROP
        if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
            return int(value)
        return DROP
    if kind == "category":
        for item in attr.get("enumeration") or []:
            if isinstance(value, bool):
                break
            if isinstance(value, int) and value == item["value"]:
                return item["value"]
            if isinstance(value, str) and (
                value.strip() == str(item["value"]) or value.strip().lower() == str(item["label"]).lower()
            ):
                return item["value"]
        return DROP
    if kind == "multiple-choice":
        options = {o.lower(): o for o in attr.get("options") or []}
        items = value if isinstance(value, list) else value.split(",") if isinstance(value, str) else None
        if items is None:
            return DROP
        chosen = [options[str(i).strip().lower()] for i in items if str(i).strip().lower() in options]
        return chosen or DROP
    return DROP


def render_value(attr: dict[str, Any] | None, value: Any) -> Any:
    """How a stored value is shown in answers: category attributes show their label."""
    if attr is not None and attr["type"] == "category":
        for item in attr.get("enumeration") or []:
            if item["value"] == value:
                return item["label"]
    return value
