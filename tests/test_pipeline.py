"""Transform then map: every row becomes a contact or rejects with reasons, in order."""

from __future__ import annotations

import pytest

from airflow_provider_contactsync.core.attributes import AttributeCatalog
from airflow_provider_contactsync.core.errors import RowError
from airflow_provider_contactsync.core.pipeline import (
    ContactPipeline,
    FieldUse,
    RowOutcome,
    compile_for,
    field_use,
    transform_rows,
)
from airflow_provider_contactsync.core.spec import parse_definition
from airflow_provider_contactsync.core.spec.models import Payload

DEFINITION = parse_definition(
    """\
integration: shop
source: {name: buyers, type: file, path: /d, fields: [id, email, phone, age], key: id}
transform:
  email: email.normalizeEmail()
  phone: phone.normalizePhoneNumber("FR")
  age: age.asInt()
mapping: {email: EMAIL, phone: SMS, age: AGE}
destination: {list_ids: [2]}
"""
)
CATALOG = AttributeCatalog.from_api([{"name": "SMS", "type": "text"}, {"name": "AGE", "type": "float"}])


def test_outcomes_in_order_with_row_keys() -> None:
    rows = [
        {"id": "a", "email": " A@X.io ", "phone": None, "age": "7"},
        {"id": "b", "email": "b@x.io", "phone": "not a phone", "age": "x"},
        RowError("line 4: 3 columns, the header has 4"),
        {"id": "d", "email": None, "phone": None, "age": None},
    ]
    outcomes = list(ContactPipeline(DEFINITION, CATALOG).process(rows))
    assert [o.index for o in outcomes] == [1, 2, 3, 4]
    assert outcomes[0].contact == {"EMAIL": "a@x.io", "AGE": 7.0}
    assert outcomes[1].contact is None
    assert {(r.row, r.field) for r in outcomes[1].rejects} == {("b", "phone"), ("b", "age")}
    assert outcomes[2].rejects[0].reason == "line 4: 3 columns, the header has 4"
    assert outcomes[3].rejects[0].field is None and "no identifier" in outcomes[3].rejects[0].reason


def test_failed_email_formula_is_not_also_blamed_as_missing_identifier() -> None:
    pipeline = ContactPipeline(DEFINITION, CATALOG)
    (outcome,) = pipeline.process([{"id": "z", "email": 42, "phone": None, "age": None}])
    assert [r.field for r in outcome.rejects] == ["email"]


def test_a_row_rejected_by_the_source_is_reported_under_its_key() -> None:
    rows = [RowError("JSON column: not valid JSON", field="traits", value="{", row="c-7"), RowError("unreadable")]
    outcomes = list(ContactPipeline(DEFINITION, CATALOG).process(rows))
    assert [(o.key, o.rejects[0].row) for o in outcomes] == [("c-7", "c-7"), (2, 2)]
    chunk = transform_rows(ContactPipeline(DEFINITION, CATALOG).transform, rows, key_field="id", start=1)
    assert chunk.rejected == 2 and [r.row for r in chunk.rejects] == ["c-7", 2]


# -- formulas on rows with missing values --------------------------------------------------------

SEED = parse_definition(
    """\
integration: crm
source: {name: customers, type: file, path: /d, fields: [id, email, first_name, last_name, age], key: id}
transform:
  email: email.normalizeEmail()
  full_name: (first_name + ' ' + last_name).trim()
  age: age.asInt()
  ext_id: "'crm-' + id"
mapping: {email: EMAIL, full_name: FIRSTNAME, ext_id: EXT_ID}
destination: {list_ids: [2]}
"""
)
SEED_CATALOG = AttributeCatalog.from_api([{"name": "FIRSTNAME", "type": "text"}, {"name": "EXT_ID", "type": "text"}])


def outcome_of(row: dict) -> RowOutcome:
    (outcome,) = ContactPipeline(SEED, SEED_CATALOG).process([{"id": "7", "email": "a@x.io", **row}])
    return outcome


@pytest.mark.parametrize(
    ("first", "last", "firstname"),
    [("Ann", "Lee", "Ann Lee"), ("Ann", None, "Ann"), (None, "Lee", "Lee"), (None, None, "")],
)
def test_the_seed_example_keeps_the_contact_when_a_name_part_is_null(first, last, firstname) -> None:
    outcome = outcome_of({"first_name": first, "last_name": last})
    assert outcome.ok
    assert outcome.contact == {"EMAIL": "a@x.io", "FIRSTNAME": firstname, "EXT_ID": "crm-7"}


def test_field_use_reads_the_mapping_and_the_payload() -> None:
    assert field_use(SEED) == FieldUse(frozenset({"email", "full_name", "ext_id"}), frozenset({"email", "ext_id"}))
    with_payload = SEED.model_copy(update={"payload": Payload(field="traits")})
    assert "traits" in field_use(with_payload).needed


def test_a_failing_formula_whose_field_is_not_mapped_does_not_reject() -> None:
    outcome = outcome_of({"first_name": "Ann", "last_name": "Lee", "age": "4.5"})
    assert outcome.ok and outcome.rejects == []
    assert [(r.row, r.field, r.value, r.reason) for r in outcome.tolerated] == [
        ("7", "age", "4.5", 'asInt: "4.5" is not an integer')
    ]


def test_a_failing_formula_whose_field_is_mapped_rejects() -> None:
    outcome = outcome_of({"first_name": "Ann", "last_name": 42})
    assert not outcome.ok
    assert [(r.field, r.reason) for r in outcome.rejects] == [("full_name", "no such overload: string + int")]


def test_an_identifier_formula_keeps_cel_plus_and_rejects() -> None:
    (outcome,) = ContactPipeline(SEED, SEED_CATALOG).process([{"id": None, "email": "a@x.io", "first_name": "Ann"}])
    assert not outcome.ok  # never an EXT_ID "crm-" shared by every row without an id
    assert [(r.field, r.reason) for r in outcome.rejects] == [("ext_id", "no such overload: string + null")]
    (outcome,) = ContactPipeline(SEED, SEED_CATALOG).process([{"id": "7", "email": "not an email"}])
    assert [r.field for r in outcome.rejects] == ["email"]


def test_transform_rows_counts_tolerated_failures_per_field() -> None:
    rows = [
        {"id": "1", "email": "a@x.io", "first_name": "A", "age": "x"},
        {"id": "2", "email": "b@x.io", "first_name": "B", "age": "y"},
        {"id": None, "email": "c@x.io", "first_name": "C", "age": "3"},
    ]
    chunk = transform_rows(compile_for(SEED), rows, key_field="id", start=1)
    assert [key for key, _ in chunk.passed] == ["1", "2"]
    assert chunk.passed[0][1]["age"] is None
    assert chunk.rejected == 1 and [r.field for r in chunk.rejects] == ["ext_id"]
    assert chunk.tolerated == {"age": 2}
