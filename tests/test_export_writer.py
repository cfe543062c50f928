"""The export file's layout: the definition's columns in its order, CSV options, JSON lines, hashing."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json

import pytest

from airflow_provider_contactsync.core.spec.export_models import ExportField, ExportFormat
from airflow_provider_contactsync.exports.writer import ContactWriter, ExportRowError

CONTACTS = [
    {
        "CONTACT_ID": 1,
        "EMAIL": " Ann@Example.COM ",
        "SMS": "06 12 34 56 78",
        "FIRSTNAME": "Ann",
        "AGE": 31,
        "EMAIL_BLACKLISTED": True,
        "SCORE": 2.5,
        "VIP": None,
    },
    {
        "CONTACT_ID": 2,
        "EMAIL": "bob@example.com",
        "SMS": None,
        "FIRSTNAME": 'Bo; "B"',
        "AGE": None,
        "EMAIL_BLACKLISTED": False,
        "SCORE": 3.0,
        "VIP": False,
    },
]


def _write(fields: list[ExportField], fmt: ExportFormat, contacts=CONTACTS, **kwargs) -> bytes:
    out = io.BytesIO()
    writer = ContactWriter(out, fields, fmt, **kwargs)
    writer.write_header()
    assert writer.write_all(contacts) == len(contacts)
    return out.getvalue()


def _fields(*names: str) -> list[ExportField]:
    return [ExportField(attribute=name) for name in names]


def test_columns_follow_the_definition_order_not_the_contact_order() -> None:
    text = _write(_fields("FIRSTNAME", "CONTACT_ID", "EMAIL"), ExportFormat()).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["FIRSTNAME", "CONTACT_ID", "EMAIL"]
    assert rows[1] == ["Ann", "1", " Ann@Example.COM "]
    reordered = _write(_fields("EMAIL", "FIRSTNAME"), ExportFormat()).decode()
    assert list(csv.reader(io.StringIO(reordered)))[0] == ["EMAIL", "FIRSTNAME"]


def test_header_off_writes_only_rows() -> None:
    text = _write(_fields("CONTACT_ID"), ExportFormat(header=False)).decode()
    assert text == "1\n2\n"


def test_csv_options_delimiter_quoting_crlf_and_typed_values() -> None:
    fmt = ExportFormat(delimiter=";", quoting="all", line_endings="crlf")
    text = _write(_fields("CONTACT_ID", "FIRSTNAME", "EMAIL_BLACKLISTED", "SCORE", "VIP"), fmt).decode()
    assert text.split("\r\n")[1] == '"1";"Ann";"true";"2.5";""'
    assert text.split("\r\n")[2] == '"2";"Bo; ""B""";"false";"3";"false"'
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")


def test_quoting_none_fails_naming_the_contact() -> None:
    with pytest.raises(ExportRowError, match="contact 2"):
        _write(_fields("CONTACT_ID", "FIRSTNAME"), ExportFormat(delimiter=";", quoting="none"))


def test_encoding_latin1_and_a_character_it_lacks() -> None:
    contacts = [{"CONTACT_ID": 1, "FIRSTNAME": "Zoë"}]
    data = _write(_fields("FIRSTNAME"), ExportFormat(encoding="latin-1"), contacts)
    assert data == "FIRSTNAME\nZoë\n".encode("latin-1")
    with pytest.raises(ExportRowError, match="cannot be written in latin-1"):
        _write(_fields("FIRSTNAME"), ExportFormat(encoding="latin-1"), [{"CONTACT_ID": 1, "FIRSTNAME": "日本"}])


def test_utf8_sig_writes_one_bom() -> None:
    data = _write(_fields("CONTACT_ID"), ExportFormat(encoding="utf-8-sig"))
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\xef\xbb\xbf") == 1


def test_json_lines_keep_types_and_column_names() -> None:
    fields = [ExportField(attribute="EMAIL", column="email"), *_fields("AGE", "EMAIL_BLACKLISTED", "VIP")]
    lines = _write(fields, ExportFormat(type="jsonl")).decode().splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["email", "AGE", "EMAIL_BLACKLISTED", "VIP"]
    assert first == {"email": " Ann@Example.COM ", "AGE": 31, "EMAIL_BLACKLISTED": True, "VIP": None}


def test_obfuscation_matches_hashlib_and_hmac_after_normalisation() -> None:
    key = b"k3y"
    fields = [
        ExportField(attribute="EMAIL", obfuscate="sha256"),
        ExportField(attribute="SMS", obfuscate="sha512"),
        ExportField(attribute="FIRSTNAME", column="name_hmac", obfuscate="hmac-sha256"),
    ]
    rows = list(csv.reader(io.StringIO(_write(fields, ExportFormat(), hmac_key=key).decode())))
    assert rows[1][0] == hashlib.sha256(b"ann@example.com").hexdigest()
    assert rows[1][1] == hashlib.sha512(b"+33612345678").hexdigest()
    assert rows[1][2] == hmac.new(key, b"Ann", hashlib.sha256).hexdigest()
    assert rows[2][1] == ""  # a null phone stays empty, not the digest of ""
