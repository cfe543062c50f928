"""The seed's Brevo -> Salesforce rules, one outcome per contact with its reason (issue 15, item 3)."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_provider_contactsync.sources.salesforce_writeback import (
    check_value,
    delete_outcome,
    linked_id,
    plan_writeback,
)

DESCRIBE = {
    "Id": {"type": "id", "updateable": False},
    "FirstName": {"type": "string", "length": 40, "updateable": True},
    "LastName": {"type": "string", "length": 80, "updateable": True},
    "Email": {"type": "email", "length": 80, "updateable": True},
    "Phone": {"type": "phone", "length": 40, "updateable": True},
    "Birthdate": {"type": "date", "updateable": True},
    "Newsletter__c": {"type": "boolean", "updateable": True},
    "Segment__c": {"type": "picklist", "updateable": True},
    "Full_Name_Formula__c": {"type": "string", "calculated": True, "updateable": False},
}
REVERSE = {"FIRSTNAME": "FirstName", "LASTNAME": "LastName", "EMAIL": "Email", "SMS": "Phone",
           "BIRTHDAY": "Birthdate", "NEWSLETTER": "Newsletter__c", "SEGMENT": "Segment__c",
           "FULLNAME": "Full_Name_Formula__c", "EXT_ID": "Id"}  # fmt: skip
CONTACT_ID = "0035g00000AbCdEAAZ"
LEAD_ID = "00Q5g00000AbCdEAAZ"
T = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)


def plan(changed: dict, *, obj: str = "Contact", ext_id: str = CONTACT_ID, **kwargs):
    kwargs.setdefault("salesforce_modstamp", T)
    kwargs.setdefault("brevo_modified_at", T + dt.timedelta(minutes=5))
    return plan_writeback(obj, {"attributes": {"EXT_ID": ext_id}}, changed, REVERSE, DESCRIBE, **kwargs)


@pytest.mark.parametrize(
    ("name", "value", "written", "reason"),
    [
        ("Birthdate", "1990-09-25", "1990-09-25", None),
        ("Birthdate", dt.date(1990, 9, 25), "1990-09-25", None),
        ("Birthdate", "25/09/1990", None, "dates must be YYYY-MM-DD"),
        ("Phone", "+33 6 12 34 56 78", "+33 6 12 34 56 78", None),
        ("Phone", "12345", None, "6 to 16 digits (5"),
        ("Phone", "+1234567890123456789", None, "6 to 16 digits (19"),
        ("LastName", "", None, "a mapped last name cannot be emptied"),
        ("LastName", None, None, "a mapped last name cannot be emptied"),
        ("FirstName", None, None, None),  # emptying another field is written as null
        ("Newsletter__c", True, None, "boolean fields are not synced"),
        ("Segment__c", "gold", None, "category fields are not synced"),
        ("Full_Name_Formula__c", "Ada L", None, "formula fields cannot be matched"),
        ("Id", "003x", None, "cannot be updated"),
    ],
)
def test_each_field_rule(name: str, value: object, written: object, reason: str | None) -> None:
    got, why = check_value("Contact", name, DESCRIBE[name], value)
    assert got == written
    assert (why is None) if reason is None else (reason in why)


def test_a_leads_name_over_40_characters_is_not_transferred_but_a_contacts_may_be() -> None:
    long = "A" * 41
    assert (
        "a lead's name over 40 characters"
        in check_value("Lead", "FirstName", DESCRIBE["FirstName"] | {"length": 80}, long)[1]
    )
    assert check_value("Contact", "LastName", DESCRIBE["LastName"], long) == (long, None)


def test_a_plan_writes_what_passes_and_reports_the_rest() -> None:
    result = plan({"FIRSTNAME": "Ada", "BIRTHDAY": "25/09/1990", "NEWSLETTER": True, "EXT_ID": CONTACT_ID})
    assert (result.outcome, result.salesforce_id, result.values) == ("update", CONTACT_ID, {"FirstName": "Ada"})
    assert [(r.attribute, r.field) for r in result.refusals] == [
        ("BIRTHDAY", "Birthdate"),
        ("NEWSLETTER", "Newsletter__c"),
    ]


def test_only_refusals_is_a_refused_contact_with_the_first_reason() -> None:
    result = plan({"LASTNAME": ""})
    assert result.outcome == "refused" and result.reason == "a mapped last name cannot be emptied"


def test_contacts_created_in_brevo_are_never_pushed() -> None:
    for ext_id in (None, "crm-42", LEAD_ID):  # no Id, not an Id, an Id of the other object
        result = plan({"FIRSTNAME": "Ada"}, ext_id=ext_id)
        assert (result.outcome, result.salesforce_id) == ("skipped", None)
        assert "never pushed" in result.reason
    assert linked_id("Lead", LEAD_ID) == LEAD_ID


def test_the_most_recent_change_wins_and_an_echo_is_not_written_back() -> None:
    newer_in_salesforce = plan({"FIRSTNAME": "Ada"}, salesforce_modstamp=T + dt.timedelta(minutes=10))
    assert newer_in_salesforce.outcome == "skipped" and "most recent change wins" in newer_in_salesforce.reason
    assert plan({"FIRSTNAME": "Ada"}, echo=True).reason == "contactsync's own change: not written back"
    assert plan({"FIRSTNAME": "Ada"}).outcome == "update"


@pytest.mark.parametrize(
    ("code", "outcome", "reason"),
    [
        (None, "deleted", ""),
        ("DELETE_FAILED", "skipped", "linked to a Case"),
        ("ENTITY_IS_DELETED", "skipped", "already deleted"),
        ("INSUFFICIENT_ACCESS_OR_READONLY", "refused", "Salesforce refused the delete"),
    ],
)
def test_delete_answers(code: str | None, outcome: str, reason: str) -> None:
    got_outcome, got_reason = delete_outcome(code, "because")
    assert got_outcome == outcome and reason in got_reason
