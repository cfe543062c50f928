"""Transform then map: every row becomes a contact or rejects with reasons, in order."""

from __future__ import annotations

from airflow_provider_contactsync.core.attributes import AttributeCatalog
from airflow_provider_contactsync.core.errors import RowError
from airflow_provider_contactsync.core.pipeline import ContactPipeline
from airflow_provider_contactsync.core.spec import parse_definition

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
    from airflow_provider_contactsync.core.pipeline import transform_rows

    rows = [RowError("JSON column: not valid JSON", field="traits", value="{", row="c-7"), RowError("unreadable")]
    outcomes = list(ContactPipeline(DEFINITION, CATALOG).process(rows))
    assert [(o.key, o.rejects[0].row) for o in outcomes] == [("c-7", "c-7"), (2, 2)]
    _, rejects, rejected = transform_rows(ContactPipeline(DEFINITION, CATALOG).transform, rows, key_field="id", start=1)
    assert rejected == 2 and [r.row for r in rejects] == ["c-7", 2]
