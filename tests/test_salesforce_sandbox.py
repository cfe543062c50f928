"""The Salesforce sandbox, through an unmodified Airflow ``SalesforceHook`` (connection from
``AIRFLOW_CONN_*``) and through simple-salesforce directly: login, SOQL with queryMore/queryAll,
describe, CRUD and its error bodies, composite, Bulk 2.0 query jobs, counters, faults and limits."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from servers.processes import free_port
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from airflow_provider_contactsync.salesforce_sandbox import ApiError, SalesforceSandbox
from airflow_provider_contactsync.salesforce_sandbox.schema import checksum, make_id, normalize_id

CONN_ID = "salesforce_sandbox_test"


@pytest.fixture
def hook_for(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """An unmodified SalesforceHook whose connection comes from ``AIRFLOW_CONN_<ID>``."""
    from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

    def make(sandbox: SalesforceSandbox, **overrides: Any) -> SalesforceHook:
        conn = json.loads(sandbox.airflow_connection())
        conn.update(overrides)
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        return SalesforceHook(salesforce_conn_id=CONN_ID)

    return make


@pytest.fixture
def sf(salesforce_sandbox: SalesforceSandbox) -> Salesforce:
    return Salesforce(**salesforce_sandbox.simple_salesforce_kwargs())


def contacts(n: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"FirstName": f"F{i}", "LastName": f"Last{i:05d}", "Email": f"user{i:05d}@example.com", **extra}
        for i in range(start, start + n)
    ]


def error_of(exc: SalesforceError) -> list[dict[str, Any]]:
    assert isinstance(exc.content, list), exc.content
    return exc.content


# --- the connection, login ---------------------------------------------------------------------------


def test_airflow_connection_json(salesforce_sandbox: SalesforceSandbox) -> None:
    conn = json.loads(salesforce_sandbox.airflow_connection())
    assert conn == {
        "conn_type": "salesforce",
        "login": "sandbox@contactsync.test",
        "password": "sandbox-password",
        "extra": {
            "security_token": "SANDBOXTOKEN0000",
            "domain": f"127.0.0.1:{salesforce_sandbox.port}/login?",
            "version": "59.0",
        },
    }
    env = salesforce_sandbox.environ("my_sf")
    assert env["AIRFLOW_CONN_MY_SF"] == salesforce_sandbox.airflow_connection()
    assert env["REQUESTS_CA_BUNDLE"] == str(salesforce_sandbox.ca_bundle) == os.environ["REQUESTS_CA_BUNDLE"]
    bundle = Path(env["REQUESTS_CA_BUNDLE"]).read_text()
    assert salesforce_sandbox.ca_file is not None and salesforce_sandbox.ca_file.read_text() in bundle
    assert bundle.count("BEGIN CERTIFICATE") > 10  # the CAs trusted before stay trusted


def test_hook_logs_in_from_an_airflow_connection(salesforce_sandbox: SalesforceSandbox, hook_for: Any) -> None:
    hook = hook_for(salesforce_sandbox)
    conn = hook.get_conn()
    assert conn.sf_instance == f"127.0.0.1:{salesforce_sandbox.port}"
    assert conn.base_url == f"https://127.0.0.1:{salesforce_sandbox.port}/services/data/v59.0/"
    assert hook.test_connection() == (True, "Connection successfully tested")  # describes Account
    assert salesforce_sandbox.calls() == {"describe": 1, "login": 1, "total": 1}
    login = salesforce_sandbox.requests("login")[0]
    assert login["path"] == "/login" and login["status"] == 200
    assert ".salesforce.com/services/Soap/u/59.0" in next(iter(login["query"]))


def test_hook_bad_password_is_invalid_login(salesforce_sandbox: SalesforceSandbox, hook_for: Any) -> None:
    hook = hook_for(salesforce_sandbox, password="wrong")
    with pytest.raises(SalesforceAuthenticationFailed) as info:
        hook.get_conn()
    assert info.value.code == "INVALID_LOGIN"
    assert info.value.auth_message == "Invalid username, password, security token; or user locked out."
    ok, message = hook_for(salesforce_sandbox, login="nobody@example.com").test_connection()
    assert not ok and "INVALID_LOGIN" in message


def test_login_without_the_security_token(salesforce_sandbox: SalesforceSandbox) -> None:
    kwargs = {**salesforce_sandbox.simple_salesforce_kwargs(), "security_token": "WRONG"}
    with pytest.raises(SalesforceAuthenticationFailed) as info:
        Salesforce(**kwargs)
    assert info.value.code == "INVALID_LOGIN"
    # The right password alone: Salesforce asks for the token.
    response = requests.post(
        f"{salesforce_sandbox.base_url}/services/Soap/u/59.0",
        data=(
            '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:n1="urn:partner.soap.sforce.com">'
            "<env:Body><n1:login><n1:username>SANDBOX@contactsync.test</n1:username>"
            "<n1:password>sandbox-password</n1:password></n1:login></env:Body></env:Envelope>"
        ),
        headers={"content-type": "text/xml", "SOAPAction": "login"},
        timeout=10,
    )
    assert response.status_code == 500
    assert "<sf:exceptionCode>LOGIN_MUST_USE_SECURITY_TOKEN</sf:exceptionCode>" in response.text


def test_calls_without_a_valid_session(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    url = f"{salesforce_sandbox.base_url}/services/data/v59.0/query"
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = requests.get(url, params={"q": "SELECT Id FROM Contact"}, headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    # An expired session: simple-salesforce logs in again by itself.
    salesforce_sandbox.expire_sessions()
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0
    assert salesforce_sandbox.calls()["login"] == 2


# --- SOQL ----------------------------------------------------------------------------------------------


def test_query_more_over_2000_rows(salesforce_sandbox: SalesforceSandbox, sf: Salesforce, hook_for: Any) -> None:
    ids = salesforce_sandbox.seed("Contact", contacts(4500))
    first = sf.query("SELECT Id, Email FROM Contact ORDER BY Email")
    assert first["totalSize"] == 4500 and first["done"] is False and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    record = first["records"][0]
    assert record == {
        "attributes": {"type": "Contact", "url": f"/services/data/v59.0/sobjects/Contact/{ids[0]}"},
        "Id": ids[0],
        "Email": "user00000@example.com",
    }
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert second["done"] is False and len(second["records"]) == 2000
    third = sf.query_more(second["nextRecordsUrl"].rsplit("/", 1)[1])  # the locator alone works too
    assert third["done"] is True and "nextRecordsUrl" not in third and len(third["records"]) == 500
    emails = [r["Email"] for page in (first, second, third) for r in page["records"]]
    assert emails == sorted(emails) and len(set(emails)) == 4500

    salesforce_sandbox.clear_calls()
    result = hook_for(salesforce_sandbox).make_query("SELECT Id, Name FROM Contact WHERE Email LIKE 'user0%'")
    assert result["totalSize"] == 4500 and result["done"] is True
    assert [r["Id"] for r in result["records"]] == ids  # no ORDER BY: insertion order
    assert salesforce_sandbox.calls() == {"login": 1, "query": 1, "query_more": 2, "total": 3}


def test_query_batch_size_and_bad_locator(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    salesforce_sandbox.seed("Lead", [{"LastName": f"L{i}", "Company": "Acme"} for i in range(450)])
    page = sf.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": "batchSize=200"})
    assert len(page["records"]) == 200 and page["nextRecordsUrl"].endswith("-200")
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query_more("01g8d0000000999AAA-200")
    assert error_of(info.value) == [{"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}]


def test_query_all_sees_deleted_records(salesforce_sandbox: SalesforceSandbox, sf: Salesforce, hook_for: Any) -> None:
    ids = salesforce_sandbox.seed("Contact", contacts(5))
    assert sf.Contact.delete(ids[1]) == 204
    salesforce_sandbox.seed("Contact", contacts(1, start=9, IsDeleted=True))
    live = sf.query("SELECT Id, IsDeleted FROM Contact")
    assert [r["Id"] for r in live["records"]] == [ids[0], *ids[2:]]
    everything = sf.query_all("SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true", include_deleted=True)
    assert everything["totalSize"] == 2 and everything["records"][0]["Id"] == ids[1]
    assert all(r["IsDeleted"] is True for r in everything["records"])
    hook = hook_for(salesforce_sandbox)
    assert hook.make_query("SELECT Id FROM Contact", include_deleted=True)["totalSize"] == 6
    assert hook.make_query("SELECT Id FROM Contact WHERE IsDeleted = true")["totalSize"] == 0
    assert len(salesforce_sandbox.records("Contact")) == 4
    assert len(salesforce_sandbox.records("Contact", include_deleted=True)) == 6
    assert salesforce_sandbox.calls()["query_all"] == 2


def test_count(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    salesforce_sandbox.seed("Contact", contacts(30) + contacts(12, start=100, Newsletter__c=True))
    assert sf.query("SELECT COUNT() FROM Contact") == {"totalSize": 42, "done": True, "records": []}
    assert sf.query("SELECT count() FROM Contact WHERE Newsletter__c = true")["totalSize"] == 12
    assert sf.query("SELECT COUNT() FROM Contact WHERE Newsletter__c = false LIMIT 5")["totalSize"] == 5
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] == 0


def test_where_order_limit(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    t0 = "2024-01-01T00:00:00Z"
    t1 = "2024-01-01T00:00:01Z"
    rows = [
        {"LastName": "A", "Email": "a@x.com", "SystemModstamp": t0, "Segment__c": "VIP", "Birthdate": "1990-05-01"},
        {"LastName": "B", "Email": "B@x.com", "SystemModstamp": t1, "Segment__c": "Customer", "Newsletter__c": True},
        {"LastName": "C", "SystemModstamp": t1, "Lifetime_Value__c": 12.5},
        {"LastName": "D", "Email": "d@x.com", "SystemModstamp": "2024-01-01T01:00:00+01:00"},  # = t0
        {"LastName": "E", "Email": "e@x.com", "SystemModstamp": dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)},
    ]
    ids = salesforce_sandbox.seed("Contact", rows)

    def names(where: str, order: str = "LastName") -> list[str]:
        result = sf.query(f"SELECT LastName FROM Contact WHERE {where} ORDER BY {order}")
        return [r["LastName"] for r in result["records"]]

    # A cursor over (SystemModstamp, Id): ties on the stamp are broken by Id.
    after = f"SystemModstamp > {t0} OR (SystemModstamp = {t0} AND Id > '{ids[0]}')"
    assert names(after, "SystemModstamp, Id") == ["D", "B", "C", "E"]
    assert names(f"SystemModstamp >= {t1} AND SystemModstamp < 2024-01-02T00:00:00.000Z") == ["B", "C"]
    assert names("Email = 'b@X.COM'") == ["B"]  # text comparisons ignore case
    assert names("Email != 'a@x.com'") == ["B", "C", "D", "E"]  # != matches nulls
    assert names("Email = null") == ["C"]
    assert names("Email != null AND (Segment__c = 'VIP' OR Newsletter__c = true)") == ["A", "B"]
    assert names("Segment__c IN ('VIP', 'Customer')") == ["A", "B"]
    assert names("Segment__c NOT IN ('VIP')") == ["B", "C", "D", "E"]
    assert names("NOT (Email LIKE '%x.com')") == ["C"]
    assert names("Birthdate < 2000-01-01") == ["A"]
    assert names("Lifetime_Value__c >= 12") == ["C"]
    assert names("LastName != null", "Email DESC NULLS LAST") == ["E", "D", "B", "A", "C"]
    assert names("LastName != null", "Email ASC") == ["C", "A", "B", "D", "E"]  # nulls first by default
    salesforce_sandbox.seed("Lead", [{"LastName": t, "Company": "C"} for t in ("50% off_now", "50X offYnow", "it's")])
    leads = sf.query("SELECT LastName FROM Lead WHERE LastName LIKE '50\\% off\\_%' OR LastName = 'it\\'s'")
    assert [r["LastName"] for r in leads["records"]] == ["50% off_now", "it's"]
    result = sf.query("SELECT LastName, SystemModstamp FROM Contact ORDER BY LastName DESC LIMIT 2 OFFSET 1")
    assert [(r["LastName"], r["SystemModstamp"]) for r in result["records"]] == [
        ("D", "2024-01-01T00:00:00.000+0000"),
        ("C", "2024-01-01T00:00:01.000+0000"),
    ]


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("SELECT Id FORM Contact", "MALFORMED_QUERY", "unexpected token: FORM"),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY", "unexpected token: <EOF>"),
        ("SELECT Id, Foo__c FROM Contact", "INVALID_FIELD", "No such column 'Foo__c' on entity 'Contact'"),
        ("SELECT Id FROM Contact ORDER BY Nope", "INVALID_FIELD", "No such column 'Nope'"),
        ("SELECT Id FROM Opportunity", "INVALID_TYPE", "sObject type 'Opportunity' is not supported"),
        ("SELECT Id FROM Contact WHERE Email = 'a' AND LastName = 'b' OR Title = 'c'", "MALFORMED_QUERY", "OR"),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp > '2024-01-01T00:00:00Z'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "must be of type dateTime and should not be enclosed in quotes",
        ),
        ("SELECT Id FROM Contact WHERE Email = 5", "INVALID_QUERY_FILTER_OPERATOR", "must be of type string"),
        ("SELECT Id FROM Contact WHERE Id = 'nope'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field: nope"),
        ("SELECT Id, Email, email FROM Contact", "MALFORMED_QUERY", "duplicate field selected: Email"),
        ("SELECT Id FROM Contact OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000"),
        ("SELECT Account.Name FROM Contact", "INVALID_FIELD", "not supported by the contactsync Salesforce sandbox"),
        ("SELECT COUNT(Id) FROM Contact", "MALFORMED_QUERY", "not supported by the contactsync Salesforce sandbox"),
        (
            "SELECT Segment__c FROM Contact GROUP BY Segment__c",
            "MALFORMED_QUERY",
            "unexpected token: GROUP (not supported",
        ),
        ("SELECT Id FROM Contact WHERE CreatedDate > TODAY", "MALFORMED_QUERY", "date literals"),
        ("SELECT Id FROM Contact WHERE Email = 'unterminated", "MALFORMED_QUERY", "no viable alternative"),
        ("SELECT Id FROM Contact WHERE Title = 'a\\q'", "MALFORMED_QUERY", "Illegal character sequence"),
        ("SELECT Id FROM Contact LIMIT 99999999999999999999", "NUMBER_OUTSIDE_VALID_RANGE", "not a valid integer"),
        (
            "SELECT Id FROM Contact WHERE " + "(" * 500 + "Title = 'a'" + ")" * 500,
            "MALFORMED_QUERY",
            "more than 100 nested conditions",
        ),
    ],
)
def test_query_errors(sf: Salesforce, query: str, code: str, message: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.query(query)
    assert info.value.status == 400
    [error] = error_of(info.value)
    assert set(error) == {"message", "errorCode"} and error["errorCode"] == code
    assert message in error["message"]
    assert "ERROR at Row:1:Column:" in error["message"]


def test_missing_q_and_unknown_paths(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful("query", params={"q": ""})
    assert error_of(info.value)[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.restful("sobjects/Opportunity/describe")
    assert error_of(missing.value) == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
    with pytest.raises(SalesforceGeneralError) as method:
        sf.restful("sobjects/Contact/describe", method="POST")
    assert method.value.status == 405 and error_of(method.value)[0]["errorCode"] == "METHOD_NOT_ALLOWED"


# --- describe ------------------------------------------------------------------------------------------


def test_describe(salesforce_sandbox: SalesforceSandbox, hook_for: Any) -> None:
    hook = hook_for(salesforce_sandbox)
    contact = hook.describe_object("Contact")
    assert contact["name"] == "Contact" and contact["keyPrefix"] == "003"
    fields = {f["name"]: f for f in contact["fields"]}
    formula = fields["Full_Name_Formula__c"]
    assert formula["calculated"] is True and formula["calculatedFormula"]
    assert formula["createable"] is formula["updateable"] is False
    assert {k: fields["LastName"][k] for k in ("type", "length", "nillable", "createable", "updateable")} == {
        "type": "string",
        "length": 80,
        "nillable": False,
        "createable": True,
        "updateable": True,
    }
    types = {name: f["type"] for name, f in fields.items()}
    assert types["Id"] == "id" and types["Email"] == "email" and types["Phone"] == "phone"
    assert types["Birthdate"] == "date" and types["SystemModstamp"] == "datetime"
    assert types["AccountId"] == "reference" and fields["AccountId"]["referenceTo"] == ["Account"]
    assert types["Newsletter__c"] == "boolean" and types["Description"] == "textarea"
    assert types["Lifetime_Value__c"] == "double" and types["Segment__c"] == "picklist"
    assert [v["value"] for v in fields["Segment__c"]["picklistValues"]] == ["Prospect", "Customer", "VIP", "Churned"]
    assert fields["Name"]["calculated"] is False and fields["Name"]["updateable"] is False
    assert fields["SystemModstamp"]["updateable"] is False
    assert {"HasOptedOutOfEmail", "HasOptedOutOfFax", "DoNotCall", "MobilePhone", "Title"} <= set(fields)

    lead = {f["name"]: f for f in hook.describe_object("Lead")["fields"]}
    assert lead["Full_Name_Formula__c"]["calculated"] is True
    assert lead["FirstName"]["length"] == 40 and lead["Company"]["nillable"] is False
    assert lead["Status"]["type"] == "picklist" and lead["Status"]["defaultedOnCreate"] is True
    assert "Birthdate" not in lead  # Leads have no Birthdate in Salesforce
    assert "Full_Name_Formula__c" in hook.get_available_fields("Lead")
    described = hook.get_conn().describe()
    assert [o["name"] for o in described["sobjects"]] == ["Contact", "Lead", "Account"]


# --- CRUD ----------------------------------------------------------------------------------------------


def test_crud(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    created = sf.Contact.create({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"})
    assert created["success"] is True and created["errors"] == []
    record_id = created["id"]
    assert record_id.startswith("003") and len(record_id) == 18 and normalize_id(record_id[:15]) == record_id
    got = sf.Contact.get(record_id)
    assert got["attributes"] == {"type": "Contact", "url": f"/services/data/v59.0/sobjects/Contact/{record_id}"}
    assert got["Name"] == "Ada Lovelace" and got["Full_Name_Formula__c"] == "Lovelace, Ada"
    assert got["HasOptedOutOfEmail"] is False and got["IsDeleted"] is False and got["Segment__c"] is None
    assert got["SystemModstamp"] == got["LastModifiedDate"] == got["CreatedDate"]
    assert got["SystemModstamp"].endswith(".000+0000")
    assert sf.Contact.get(record_id[:15])["Id"] == record_id  # 15-character ids work too

    later = salesforce_sandbox.api.clock() + 2  # date-times are kept to the second: the update comes later
    salesforce_sandbox.api.clock = lambda: later
    assert sf.Contact.update(record_id, {"FirstName": "Augusta", "Segment__c": "VIP", "Email": ""}) == 204
    updated = sf.Contact.get(record_id)
    assert updated["Name"] == "Augusta Lovelace" and updated["Segment__c"] == "VIP"
    assert updated["Email"] is None  # an empty string is saved as null
    assert updated["SystemModstamp"] > got["SystemModstamp"] and updated["CreatedDate"] == got["CreatedDate"]

    assert sf.Contact.delete(record_id) == 204
    for call in (
        lambda: sf.Contact.get(record_id),
        lambda: sf.Contact.update(record_id, {"Title": "x"}),
        lambda: sf.Contact.delete(record_id),
    ):
        with pytest.raises(SalesforceResourceNotFound) as info:
            call()
        assert error_of(info.value) == [
            {"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": []}
        ]
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.get(make_id("003", 999))
    with pytest.raises(SalesforceResourceNotFound):
        sf.Lead.get(make_id("003", 1))  # a Contact id under Lead
    assert salesforce_sandbox.calls()["retrieve"] >= 4


def _error(call: Callable[[], Any]) -> list[dict[str, Any]]:
    with pytest.raises(SalesforceMalformedRequest) as info:
        call()
    return error_of(info.value)


def test_write_errors(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    assert _error(lambda: sf.Contact.create({"FirstName": "x"})) == [
        {
            "message": "Required fields are missing: [LastName]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["LastName"],
        }
    ]
    assert _error(lambda: sf.Lead.create({"Email": "a@b.co"})) == [
        {
            "message": "Required fields are missing: [LastName, Company]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["LastName", "Company"],
        }
    ]
    too_long = [
        ("Lead", "FirstName", 40, "First Name"),
        ("Lead", "LastName", 80, "Last Name"),
        ("Contact", "LastName", 80, "Last Name"),
        ("Contact", "Email", 80, "Email"),
        ("Contact", "Phone", 40, "Business Phone"),
    ]
    for name, field, most, label in too_long:
        value = ("a" * (most - 7) + "@ex.com") if field == "Email" else "7" * most
        ok = {"LastName": "L", "Company": "C"} if name == "Lead" else {"LastName": "L"}
        assert getattr(sf, name).create({**ok, field: value})["success"] is True  # exactly the limit
        long_value = "a" + value
        [error] = _error(lambda name=name, field=field, ok=ok, v=long_value: getattr(sf, name).create({**ok, field: v}))
        assert error == {
            "message": f"{label}: data value too large: {long_value} (max length={most})",
            "errorCode": "STRING_TOO_LONG",
            "fields": [field],
        }
    assert _error(lambda: sf.Contact.create({"LastName": "L", "Email": "not-an-email"})) == [
        {
            "message": "Email: invalid email address: not-an-email",
            "errorCode": "INVALID_EMAIL_ADDRESS",
            "fields": ["Email"],
        }
    ]
    for field in ("Name", "Full_Name_Formula__c", "SystemModstamp", "IsDeleted"):
        [error] = _error(lambda f=field: sf.Contact.create({"LastName": "L", f: "x"}))
        assert error["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE" and error["fields"] == [field]
        assert error["message"].startswith(f"Unable to create/update fields: {field}.")
    record_id = sf.Contact.create({"LastName": "L"})["id"]
    [error] = _error(lambda: sf.Contact.update(record_id, {"Full_Name_Formula__c": "x"}))
    assert error["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert _error(lambda: sf.Contact.update(record_id, {"LastName": None})) == [
        {
            "message": "Required fields are missing: [LastName]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["LastName"],
        }
    ]
    assert _error(lambda: sf.Contact.update(record_id, {"Nope__c": 1})) == [
        {"message": "No such column 'Nope__c' on sobject of type Contact", "errorCode": "INVALID_FIELD"}
    ]
    [error] = _error(lambda: sf.Contact.update(record_id, {"Segment__c": "Gold"}))
    assert error["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" and error["fields"] == ["Segment__c"]
    [error] = _error(lambda: sf.Contact.update(record_id, {"Newsletter__c": "yes"}))
    assert error["errorCode"] == "JSON_PARSER_ERROR"
    [error] = _error(lambda: sf.Contact.update(record_id, {"AccountId": "001nope"}))
    assert error["errorCode"] == "MALFORMED_ID"
    [error] = _error(lambda: sf.Contact.update(record_id, {"Birthdate": "1990-02-30"}))
    assert error["errorCode"] == "JSON_PARSER_ERROR"
    account = sf.Account.create({"Name": "Acme"})["id"]
    assert sf.Contact.update(record_id, {"AccountId": account, "Birthdate": "1990-02-28", "Newsletter__c": True}) == 204
    assert sf.Contact.get(record_id)["Newsletter__c"] is True
    # Nothing refused was written: the three creates at the limits and record_id.
    assert len(salesforce_sandbox.records("Contact")) == 4 and len(salesforce_sandbox.records("Lead")) == 2
    assert salesforce_sandbox.records("Contact")[-1]["Segment__c"] is None


def test_lead_defaults(sf: Salesforce) -> None:
    lead = sf.Lead.get(sf.Lead.create({"LastName": "Doe", "Company": "Acme"})["id"])
    assert lead["Status"] == "Open - Not Contacted" and lead["Newsletter__c"] is False
    assert lead["Id"].startswith("00Q") and lead["Name"] == "Doe" and lead["Full_Name_Formula__c"] == "Doe"


def test_delete_refused_for_a_contact_with_a_case(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    record_id = sf.Contact.create({"FirstName": "Jane", "LastName": "Doe"})["id"]
    case = salesforce_sandbox.add_case(record_id)
    assert case["ContactId"] == record_id and case["Id"].startswith("500")
    assert _error(lambda: sf.Contact.delete(record_id)) == [
        {
            "message": "Your attempt to delete Jane Doe could not be completed because it is associated with the "
            f"following cases.: {case['CaseNumber']}\n",
            "errorCode": "DELETE_FAILED",
            "fields": [],
        }
    ]
    assert sf.Contact.get(record_id)["IsDeleted"] is False
    result = sf.restful("composite/sobjects", method="DELETE", params={"ids": record_id})
    assert result[0]["success"] is False and result[0]["errors"][0]["statusCode"] == "DELETE_FAILED"
    with pytest.raises(ApiError):
        salesforce_sandbox.add_case(make_id("003", 12345))


# --- composite -----------------------------------------------------------------------------------------


def test_composite_update_and_create(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    ids = salesforce_sandbox.seed("Contact", contacts(3))
    salesforce_sandbox.clear_calls()
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Contact"}, "id": ids[0], "Title": "CEO"},
            {"attributes": {"type": "Contact"}, "id": ids[1], "Email": "broken"},
            {"attributes": {"type": "Contact"}, "Title": "no id"},
            {"attributes": {"type": "Contact"}, "id": ids[2], "HasOptedOutOfEmail": True},
        ],
    }
    result = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert result == [
        {"id": ids[0], "success": True, "errors": []},
        {
            "id": ids[1],
            "success": False,
            "errors": [
                {
                    "statusCode": "INVALID_EMAIL_ADDRESS",
                    "message": "Email: invalid email address: broken",
                    "fields": ["Email"],
                }
            ],
        },
        {
            "id": None,
            "success": False,
            "errors": [
                {"statusCode": "MISSING_ARGUMENT", "message": "Id not specified in an update call", "fields": []}
            ],
        },
        {"id": ids[2], "success": True, "errors": []},
    ]
    by_id = {r["Id"]: r for r in salesforce_sandbox.records("Contact")}
    assert by_id[ids[0]]["Title"] == "CEO" and by_id[ids[1]]["Email"] == "user00001@example.com"
    assert by_id[ids[2]]["HasOptedOutOfEmail"] is True
    assert salesforce_sandbox.calls() == {"composite_update": 1, "total": 1}

    body["allOrNone"] = True
    body["records"] = [{"attributes": {"type": "Contact"}, "id": ids[0], "Title": "CTO"}, body["records"][1]]
    result = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert [r["success"] for r in result] == [False, False]
    assert result[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert salesforce_sandbox.records("Contact")[0]["Title"] == "CEO"

    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "records": [
                {"attributes": {"type": "Lead"}, "LastName": "N", "Company": "C"},
                {"attributes": {"type": "Lead"}},
            ]
        },
    )
    assert created[0]["success"] is True and created[0]["id"].startswith("00Q")
    assert created[1] == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [LastName, Company]",
                "fields": ["LastName", "Company"],
            }
        ],
    }
    with pytest.raises(SalesforceMalformedRequest) as info:
        sf.restful(
            "composite/sobjects",
            method="PATCH",
            json={"records": [{"attributes": {"type": "Contact"}, "id": ids[0]}] * 201},
        )
    assert error_of(info.value)[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


# --- Bulk API 2.0 --------------------------------------------------------------------------------------


def test_bulk2_query_5000_rows_through_the_hook(salesforce_sandbox: SalesforceSandbox, hook_for: Any) -> None:
    ids = salesforce_sandbox.seed("Contact", contacts(5000, Segment__c="VIP"))
    salesforce_sandbox.seed("Contact", contacts(1, start=7000, IsDeleted=True))
    conn = hook_for(salesforce_sandbox).get_conn()
    salesforce_sandbox.clear_calls()
    pages = list(
        conn.bulk2.Contact.query(
            "SELECT Id, Email, Newsletter__c, SystemModstamp, Lifetime_Value__c FROM Contact ORDER BY Email",
            max_records=2000,
            wait=0,
        )
    )
    assert len(pages) == 3
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(rows) == 5000 and [r["Id"] for r in rows] == ids
    assert rows[0]["Newsletter__c"] == "false" and rows[0]["Lifetime_Value__c"] == ""
    assert rows[0]["SystemModstamp"].endswith(".000Z")
    assert pages[0].startswith('"Id","Email","Newsletter__c","SystemModstamp","Lifetime_Value__c"\n"003')
    assert salesforce_sandbox.calls() == {"bulk2_create_job": 1, "bulk2_job": 1, "bulk2_results": 3, "total": 5}
    results = salesforce_sandbox.requests("bulk2_results")
    assert [r["query"].get("maxRecords") for r in results] == ["2000"] * 3
    assert "locator" not in results[0]["query"] and results[1]["query"]["locator"]

    everything = list(conn.bulk2.Contact.query_all("SELECT Id, IsDeleted FROM Contact WHERE IsDeleted = true", wait=0))
    assert list(csv.DictReader(io.StringIO(everything[0]))) == [
        {"Id": salesforce_sandbox.records("Contact", include_deleted=True)[-1]["Id"], "IsDeleted": "true"}
    ]
    with pytest.raises(SalesforceMalformedRequest):
        list(conn.bulk2.Contact.query("SELECT COUNT() FROM Contact", wait=0))
    with pytest.raises(SalesforceMalformedRequest) as info:
        list(conn.bulk2.Contact.query("SELECT Nope FROM Contact", wait=0))
    assert error_of(info.value)[0]["errorCode"] == "INVALID_FIELD"


def test_bulk2_job_states_and_delimiters(salesforce_sandbox_factory: Callable[..., SalesforceSandbox]) -> None:
    sandbox = salesforce_sandbox_factory(bulk_job_seconds=1.0)
    sandbox.seed("Lead", [{"LastName": "O'Brien, Jr.", "Company": 'Say "hi"'}])
    sf = Salesforce(**sandbox.simple_salesforce_kwargs())
    pages = list(
        sf.bulk2.Lead.query("SELECT LastName, Company FROM Lead", column_delimiter="PIPE", line_ending="CRLF", wait=0)
    )
    assert pages == ['"LastName"|"Company"\r\n"O\'Brien, Jr."|"Say ""hi"""\r\n']
    assert sandbox.calls()["bulk2_job"] >= 2  # polled while InProgress
    job = sf.restful("jobs/query", method="POST", json={"operation": "query", "query": "SELECT Id FROM Lead"})
    assert job["state"] == "UploadComplete" and job["object"] == "Lead" and job["id"].startswith("750")
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful(f"jobs/query/{job['id']}/results")  # not complete yet
    aborted = sf.restful(f"jobs/query/{job['id']}", method="PATCH", json={"state": "Aborted"})
    assert aborted["state"] == "Aborted"
    with pytest.raises(SalesforceResourceNotFound):
        sf.restful("jobs/query/7508d0000000999AAA")


# --- seeding, counters, faults, limits -----------------------------------------------------------------


def test_seed_with_explicit_stamps(salesforce_sandbox: SalesforceSandbox) -> None:
    stamp = "2024-03-01T12:00:00.999Z"
    ids = salesforce_sandbox.seed("Contact", contacts(3, SystemModstamp=stamp))
    records = salesforce_sandbox.records("Contact")
    assert [r["Id"] for r in records] == ids
    assert {r["SystemModstamp"] for r in records} == {"2024-03-01T12:00:00.000+0000"}  # kept to the second
    assert records[0]["LastModifiedDate"] == records[0]["CreatedDate"] == "2024-03-01T12:00:00.000+0000"
    explicit = make_id("003", 10**6)
    assert salesforce_sandbox.seed("Contact", [{"Id": explicit, "LastName": "X"}]) == [explicit]
    with pytest.raises(ApiError) as info:
        salesforce_sandbox.seed("Contact", [{"Id": explicit, "LastName": "X"}])
    assert info.value.code == "DUPLICATE_VALUE"
    with pytest.raises(ApiError) as info:
        salesforce_sandbox.seed("Contact", [{"LastName": "x" * 81}])
    assert info.value.code == "STRING_TOO_LONG"
    with pytest.raises(ValueError):
        salesforce_sandbox.seed("Opportunity", [])
    assert salesforce_sandbox.calls() == {"total": 0}


def test_updated_and_deleted_resources(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    ids = salesforce_sandbox.seed("Contact", contacts(3, SystemModstamp="2024-01-01T00:00:00Z"))
    sf.Contact.delete(ids[0])
    now = dt.datetime.now(dt.timezone.utc)
    start = dt.datetime(2023, 12, 31, tzinfo=dt.timezone.utc)
    assert sf.Contact.updated(start, now)["ids"] == ids[1:]
    deleted = sf.Contact.deleted(start, now + dt.timedelta(minutes=1))
    assert [d["id"] for d in deleted["deletedRecords"]] == [ids[0]]


def test_faults(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    salesforce_sandbox.add_fault(method="GET", path="/services/data/v*/query/", status=503, times=1)
    with pytest.raises(SalesforceGeneralError) as info:
        sf.query("SELECT Id FROM Contact")
    assert info.value.status == 503 and error_of(info.value)[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0
    salesforce_sandbox.add_fault(path="*/sobjects/Contact/", action="drop_after", times=1)
    with pytest.raises(requests.ConnectionError):
        sf.Contact.create({"LastName": "Dropped"})
    assert [r["LastName"] for r in salesforce_sandbox.records("Contact")] == ["Dropped"]  # processed anyway
    salesforce_sandbox.add_fault(path="*/describe", status=401, times=1)  # expired session: logged in again
    assert sf.Contact.describe()["name"] == "Contact"
    assert salesforce_sandbox.calls()["login"] == 2
    assert [r["fault"] for r in salesforce_sandbox.requests() if r["fault"]] == [
        "status:503",
        "drop_after",
        "status:401",
    ]
    with pytest.raises(ValueError):
        salesforce_sandbox.add_fault(action="explode")


def test_daily_api_limit(salesforce_sandbox: SalesforceSandbox, sf: Salesforce) -> None:
    salesforce_sandbox.configure(daily_api_limit=3)
    sf.query("SELECT COUNT() FROM Contact")
    assert sf.api_usage["api-usage"].used == 1 and sf.api_usage["api-usage"].total == 3
    assert sf.limits()["DailyApiRequests"] == {"Max": 3, "Remaining": 1}
    sf.query("SELECT COUNT() FROM Contact")
    with pytest.raises(SalesforceRefusedRequest) as info:
        sf.query("SELECT COUNT() FROM Contact")
    assert error_of(info.value) == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    salesforce_sandbox.reset()
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0  # sessions survive a reset


def test_persistence_and_control_endpoints(
    salesforce_sandbox_factory: Callable[..., SalesforceSandbox], tmp_path: Path
) -> None:
    db_path = tmp_path / "org.sqlite3"
    first = salesforce_sandbox_factory(db_path=db_path)
    ids = first.seed("Lead", [{"LastName": "Kept", "Company": "Acme"}])
    first.stop()
    second = salesforce_sandbox_factory(db_path=db_path)
    assert [r["Id"] for r in second.records("Lead")] == ids
    base = f"{second.base_url}/_sandbox"
    auth = {"X-Sandbox-Password": "sandbox-password"}
    assert requests.get(f"{base}/calls", timeout=10).status_code == 401
    seeded = requests.post(f"{base}/seed/Contact", json=[{"LastName": "Z"}], headers=auth, timeout=10)
    assert seeded.status_code == 201
    case = requests.post(f"{base}/cases", json={"ContactId": seeded.json()["ids"][0]}, headers=auth, timeout=10)
    assert case.status_code == 201 and case.json()["CaseNumber"]
    fault = requests.post(f"{base}/faults", json={"path": "*/query", "status": 500}, headers=auth, timeout=10)
    assert fault.json()["status"] == 500
    assert requests.post(f"{base}/config", json={"page_size": 0}, headers=auth, timeout=10).status_code == 400
    assert requests.post(f"{base}/reset", headers=auth, timeout=10).status_code == 204
    assert requests.get(f"{base}/records/Lead", headers=auth, timeout=10).json() == []


def test_ids() -> None:
    assert checksum("0035g00000AbCdE") == "AAV"  # A, C and E are upper case: bits 0, 2, 4 of the last chunk
    assert make_id("003", 1) == "0038d0000000001AAA"
    assert make_id("003", 62) < make_id("003", 63) < make_id("003", 62**2)
    assert normalize_id("0038d0000000001") == "0038d0000000001AAA"
    assert normalize_id("0038d0000000001aaa") == "0038d0000000001AAA"
    assert normalize_id("0038d0000000001AAB") is None and normalize_id("nope") is None


# --- the command ---------------------------------------------------------------------------------------


def test_cli_serves_simple_salesforce_until_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = shutil.which("contactsync-salesforce-sandbox", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "airflow_provider_contactsync.salesforce_sandbox.cli"]
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"Contact": contacts(3), "Lead": [{"LastName": "L", "Company": "C"}]}))
    port = free_port()
    proc = subprocess.Popen(
        [
            *command,
            "--port",
            str(port),
            "--db",
            str(tmp_path / "cli.sqlite3"),
            "--seed",
            str(seed),
            "--page-size",
            "500",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "AIRFLOW_CONN_SALESFORCE_DEFAULT" not in lines:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            key = line.split("=", 1)[0] if "=" in line else line.strip()
            lines[key] = line.strip()
        assert any(f"https://127.0.0.1:{port}" in line for line in lines.values()), (
            lines,
            proc.stderr.read() if proc.stderr else "",
        )
        bundle = lines["REQUESTS_CA_BUNDLE"].split("=", 1)[1]
        assert bundle == str(tmp_path / "cli.sqlite3.tls" / "bundle.pem")
        conn = json.loads(lines["AIRFLOW_CONN_SALESFORCE_DEFAULT"].split("=", 1)[1].strip("'"))
        # Not Session.verify: requests prefers REQUESTS_CA_BUNDLE from the environment when it is set.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
        sf = Salesforce(
            username=conn["login"],
            password=conn["password"],
            security_token=conn["extra"]["security_token"],
            domain=conn["extra"]["domain"],
        )
        assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 3
        assert sf.query("SELECT Id FROM Lead")["records"][0]["Id"].startswith("00Q")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
