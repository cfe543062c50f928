"""Mapping checked against the account, and per-row checks that never drop a value silently."""

from __future__ import annotations

import datetime as dt
import random
import textwrap
from decimal import Decimal

import pytest

from airflow_provider_contactsync.core.attributes import AttributeCatalog
from airflow_provider_contactsync.core.errors import MappingError, RowError
from airflow_provider_contactsync.core.mapping import ContactMapper, to_import_item
from airflow_provider_contactsync.core.spec import parse_definition

ACCOUNT = AttributeCatalog.from_api(
    [
        {"name": "FIRSTNAME", "category": "normal", "type": "text"},
        {"name": "LASTNAME", "category": "normal", "type": "text"},
        {"name": "SMS", "category": "normal", "type": "text"},
        {"name": "EXT_ID", "category": "normal", "type": "text"},
        {"name": "DOB", "category": "normal", "type": "date"},
        {"name": "SCORE", "category": "normal", "type": "float"},
        {"name": "VIP", "category": "normal", "type": "boolean"},
        {
            "name": "GENDER",
            "category": "category",
            "type": "text",
            "enumeration": [{"label": "Men", "value": 1}, {"label": "Women", "value": 2}],
        },
        {
            "name": "INTERESTS",
            "category": "normal",
            "type": "multiple-choice",
            "enumeration": [{"label": "Running", "value": 1}, {"label": "Cycling", "value": 2}],
        },
        {"name": "OPENS", "category": "calculated", "type": "float"},
    ]
)

FIELDS = ["id", "email", "phone", "first_name", "dob", "score", "vip", "gender", "interests"]


def definition(mapping: dict[str, str], *, empty_attributes: bool = False, text_max_length: int = 20):
    lines = "\n".join(f"  {field}: {attribute}" for field, attribute in mapping.items())
    text = textwrap.dedent(
        f"""\
        integration: crm
        source: {{name: customers, type: file, path: /data, fields: [{", ".join(FIELDS)}]}}
        destination:
          list_ids: [2]
          empty_attributes: {str(empty_attributes).lower()}
          text_max_length: {text_max_length}
        mapping:
        """
    )
    return parse_definition(text + lines + "\n")


FULL = {
    "email": "EMAIL",
    "phone": "SMS",
    "id": "EXT_ID",
    "first_name": "FIRSTNAME",
    "dob": "DOB",
    "score": "SCORE",
    "vip": "VIP",
    "gender": "GENDER",
    "interests": "INTERESTS",
}


@pytest.fixture
def mapper() -> ContactMapper:
    return ContactMapper(definition(FULL), ACCOUNT)


def test_good_row_becomes_a_contact(mapper: ContactMapper) -> None:
    row = {
        "id": 42,
        "email": "ada@example.com",
        "phone": "+33612345678",
        "first_name": "Ada",
        "dob": dt.date(1990, 9, 25),
        "score": "4.5",
        "vip": "yes",
        "gender": "women",
        "interests": ["running", "Cycling"],
    }
    contact, problems = mapper.map_row(row)
    assert problems == []
    assert contact == {
        "EMAIL": "ada@example.com",
        "SMS": "+33612345678",
        "EXT_ID": "42",
        "FIRSTNAME": "Ada",
        "DOB": "1990-09-25",
        "SCORE": 4.5,
        "VIP": True,
        "GENDER": 2,
        "INTERESTS": ["Running", "Cycling"],
    }
    assert to_import_item(contact)["email"] == "ada@example.com"
    assert "EMAIL" not in to_import_item(contact)["attributes"]
    assert to_import_item(contact)["attributes"]["SMS"] == "+33612345678"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("email", "ada@", "not a valid email address"),
        ("email", "ada example.com", "not a valid email address"),
        ("phone", "0612345678", "not an E.164 phone number"),
        ("phone", "+33 6 12 34 56 78", "not an E.164 phone number"),
        ("phone", "+12345", "not an E.164 phone number"),
        ("phone", "+12345678901234567", "not an E.164 phone number"),
        ("dob", "25/09/1990", "not a date"),
        ("dob", "1990-02-30", "not a date"),
        ("score", "4,5", "not a number"),
        ("score", True, "not a number"),
        ("score", "nan", "not a number"),
        ("gender", "Other", "not one of the category's values: Men, Women"),
        ("gender", 7, "not one of the category's values"),
        ("interests", ["Swimming"], "'Swimming' is not one of the options: Running, Cycling"),
        ("first_name", "x" * 21, "text is 21 characters, over the limit of 20"),
        ("first_name", ["a"], "a list value cannot be stored as text"),
        ("vip", "maybe", "not a boolean"),
    ],
)
def test_bad_values_reject_the_row_with_field_value_and_reason(
    mapper: ContactMapper, field: str, value: object, reason: str
) -> None:
    row = {"email": "ada@example.com", field: value}
    _, problems = mapper.map_row(row)
    assert len(problems) == 1
    assert problems[0].field == field
    assert problems[0].value == value
    assert reason in problems[0].reason


def test_phone_limits_follow_brevo(mapper: ContactMapper) -> None:
    """6 to 15 digits, and a possible number of its country: what Brevo (the sandbox) accepts."""
    for phone in ("+33612345678", "+6834002", "+491511234567890"):
        _, problems = mapper.map_row({"phone": phone})
        assert problems == [], phone
    for phone in ("+123456", "+1234567890123456", "+999123456789", "+3361234"):
        _, problems = mapper.map_row({"phone": phone})
        assert [p.field for p in problems] == ["phone"], phone


def test_every_bad_field_is_reported(mapper: ContactMapper) -> None:
    _, problems = mapper.map_row({"email": "nope", "phone": "123", "dob": "soon"})
    assert [p.field for p in problems] == ["email", "phone", "dob"]


def test_row_without_identifier_is_rejected(mapper: ContactMapper) -> None:
    _, problems = mapper.map_row({"first_name": "Ada", "email": None, "phone": None, "id": None})
    assert [p.field for p in problems] == [None]
    assert "no identifier" in problems[0].reason


def test_nulls_are_omitted_or_erase_when_asked() -> None:
    keep = ContactMapper(definition(FULL), ACCOUNT)
    erase = ContactMapper(definition(FULL, empty_attributes=True), ACCOUNT)
    row = {"email": "ada@example.com", "first_name": None}
    assert "FIRSTNAME" not in keep.map_row(row)[0]
    contact, problems = erase.map_row(row)
    assert problems == [] and contact["FIRSTNAME"] == ""
    assert "SMS" not in contact  # identifiers are never erased


def test_unknown_attribute_is_a_configuration_error_with_hint() -> None:
    with pytest.raises(MappingError) as info:
        ContactMapper(definition({"email": "EMAIL", "first_name": "FIRSTNAM"}), ACCOUNT)
    assert (
        "mapping.first_name: attribute FIRSTNAM does not exist in the Brevo account (did you mean FIRSTNAME?)"
        in str(info.value)
    )


def test_calculated_attribute_cannot_be_written() -> None:
    with pytest.raises(MappingError, match="OPENS is calculated/float: Brevo computes it"):
        ContactMapper(definition({"email": "EMAIL", "score": "OPENS"}), ACCOUNT)


@pytest.mark.parametrize(
    ("formula_type", "attribute", "ok"),
    [
        ("bool", "DOB", False),
        ("bool", "FIRSTNAME", False),
        ("list", "FIRSTNAME", False),
        ("bool", "VIP", True),
        ("int", "SCORE", True),
        ("timestamp", "DOB", True),
        ("list", "INTERESTS", True),
        ("map", "GENDER", False),
        ("string", "DOB", True),
    ],
)
def test_formula_type_must_fit_the_attribute(formula_type: str, attribute: str, ok: bool) -> None:
    mapping = {"email": "EMAIL", "score": attribute}
    build = lambda: ContactMapper(definition(mapping), ACCOUNT, {"score": formula_type})  # noqa: E731
    if ok:
        build()
    else:
        with pytest.raises(
            MappingError, match=f"field score is a {formula_type}, which cannot fit attribute {attribute}"
        ):
            build()


def test_several_mapping_errors_are_reported_together() -> None:
    with pytest.raises(MappingError) as info:
        ContactMapper(definition({"email": "EMAIL", "score": "NOPE", "vip": "OPENS"}), ACCOUNT)
    assert "NOPE" in str(info.value) and "OPENS" in str(info.value)


# -- preview and load agree: every value the checks pass is one Brevo (the sandbox) stores ----------

EMAILS = [
    "a@b.c",
    "a@1.2",
    "a@b.12",
    "a@b.co",
    "ada@example.com",
    "Ada.Lovelace+tag@Example.COM",
    "a@b",
    "a@-b.com",
    "a@b-.com",
    "a@b..com",
    ".a@b.com",
    "a@xn--p1ai",
    "a@b.xn--p1ai",
    "a b@c.com",
    "a@b.c0m",
    "a@b.c-m",
    "a@b.com.",
    "a@@b.com",
    "\u00e9@b.com",
    "a@\u00e9.com",
    "a@b.com\n",
    "a@b.com\x00",
    "x" * 64 + "@" + "d" * 63 + ".com",
    "x@" + ".".join(["d" * 63] * 4) + ".com",
]


def test_emails_the_checks_pass_are_emails_brevo_takes() -> None:
    from airflow_provider_contactsync.core.attributes import converter_for
    from airflow_provider_contactsync.sandbox.validation import normalize_email

    check = converter_for(ACCOUNT.get("EMAIL"), text_max_length=100)
    passed = []
    for email in EMAILS:
        try:
            sent = check(email)
        except RowError:
            continue
        passed.append(email)
        assert normalize_email(sent) is not None, email
    assert "a@b.c" not in passed and "a@1.2" not in passed and "a@b.12" not in passed
    assert {"ada@example.com", "Ada.Lovelace+tag@Example.COM", "a@b.co", "a@b.xn--p1ai"} <= set(passed)


def test_phones_the_checks_pass_are_exactly_those_brevo_takes() -> None:
    from airflow_provider_contactsync.core.attributes import converter_for
    from airflow_provider_contactsync.sandbox.validation import normalize_phone

    check = converter_for(ACCOUNT.get("SMS"), text_max_length=100)
    rng = random.Random(7)
    heads = ["1", "7", "20", "33", "39", "44", "49", "61", "86", "91", "352", "377", "683", "999", "0", "3"]
    numbers = {
        "+" + rng.choice(heads) + "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 16)))
        for _ in range(3000)
    }
    agreed = 0
    for number in sorted(numbers):
        try:
            check(number)
            ours = True
        except RowError:
            ours = False
        assert ours == (normalize_phone(number) is not None), number
        agreed += ours
    assert agreed > 200  # the corpus holds numbers of both kinds


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("float", float("nan")),
        ("float", float("inf")),
        ("float", 10**400),
        ("float", "1e999"),
        ("float", "9" * 5000),
        ("float", Decimal("4.5")),
        ("float", Decimal("NaN")),
        ("float", 2**70),
        ("float", "  -1.5e3 "),
        ("date", "2024-02-30"),
        ("date", "2024-W01-1"),
        ("date", dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc)),
        ("date", "20240101"),
        ("id", "42"),
        ("id", " 7 "),
        ("id", "\u0664\u0662"),
        ("id", "4.2"),
        ("id", 2**70),
        ("id", True),
        ("text", 2**70),
        ("text", Decimal("1.50")),
        ("text", Decimal("Infinity")),
        ("text", "a\x00b"),
        ("text", float("nan")),
        ("boolean", "oui"),
    ],
)
def test_values_the_checks_pass_are_values_brevo_stores(kind: str, value: object) -> None:
    """A value passed by the checks is never one Brevo silently drops (what preview shows is what loads)."""
    from airflow_provider_contactsync.core.attributes import Attribute, converter_for
    from airflow_provider_contactsync.sandbox.validation import DROP, coerce_value

    check = converter_for(Attribute("X", kind), text_max_length=10_000)
    try:
        sent = check(value)
    except RowError as exc:
        assert exc.reason  # refused with a reason, never a crash
        return
    assert coerce_value({"type": kind}, sent) is not DROP, (value, sent)


def test_huge_and_special_numbers_are_rejected_with_a_reason(mapper: ContactMapper) -> None:
    for value, reason in [
        (10**400, "not a finite number (too large for a float)"),
        (float("nan"), "not a finite number"),
        ("1e999", "not a finite number"),
    ]:
        _, problems = mapper.map_row({"email": "ada@example.com", "score": value})
        assert [(p.field, p.reason) for p in problems] == [("score", reason)]
    contact, problems = mapper.map_row({"email": "ada@example.com", "score": Decimal("4.5"), "id": 2**60})
    assert problems == [] and contact["SCORE"] == 4.5 and contact["EXT_ID"] == "1152921504606846976"
    _, problems = mapper.map_row({"email": "ada@example.com", "first_name": "A\x00da"})
    assert [p.reason for p in problems] == ["text contains a NUL character (\\x00)"]


def test_whatsapp_and_landline_are_checked_as_phone_numbers() -> None:
    account = AttributeCatalog.from_api(
        [{"name": "WHATSAPP", "type": "text"}, {"name": "LANDLINE_NUMBER", "type": "text"}]
    )
    mapper = ContactMapper(
        definition({"email": "EMAIL", "phone": "WHATSAPP", "first_name": "LANDLINE_NUMBER"}), account
    )
    contact, problems = mapper.map_row({"email": "a@example.com", "phone": "+33612345678", "first_name": "+3361234"})
    assert [p.field for p in problems] == ["first_name"] and "not an E.164 phone number" in problems[0].reason
