"""Reading contacts out of the Brevo sandbox as the export feature will: ``POST /contacts/export``, the
process, the ``export_url`` download, and ``GET /contacts`` through a segment, driven by the official
brevo-python SDK where it has the call (the CSV is downloaded with httpx, as the SDK has no call
for it). Segments and per-list unsubscriptions are set up through the sandbox's control endpoints."""

from __future__ import annotations

import csv
import io
import sqlite3
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from brevo import Brevo
from brevo.contacts import RequestContactExportRequestCustomContactFilter as Filter
from brevo.core.api_error import ApiError as SdkApiError
from polling import wait_for

from airflow_provider_contactsync.sandbox import BrevoSandbox

MANDATORY = ["ADDED_TIME", "MODIFIED_TIME", "EMAIL_BLACKLISTED", "SMS_BLACKLISTED"]
NEWSLETTER = 3  # the second list of the account (list 2 is the default one)


@pytest.fixture
def client(brevo_sandbox: BrevoSandbox) -> Brevo:
    return Brevo(api_key=brevo_sandbox.api_key, base_url=brevo_sandbox.url, max_retries=0)


@pytest.fixture
def control(brevo_sandbox: BrevoSandbox) -> httpx.Client:
    return httpx.Client(
        base_url=brevo_sandbox.base_url + "/_sandbox", headers={"api-key": brevo_sandbox.api_key}, timeout=30
    )


@pytest.fixture
def account(brevo_sandbox: BrevoSandbox, client: Brevo) -> dict[str, int]:
    """Five contacts with typed attributes on two lists; returns their ids by first name.

    ann: FR, VIP, lists 2 and newsletter     bob: BE, blacklisted (API), list 2
    cat: FR, newsletter                      dan: DE, VIP, lists 2 and newsletter
    eve: FR, no list, unsubscribed by the link of campaign 7
    """
    client.contacts.create_attribute("normal", "COUNTRY", type="text")
    client.contacts.create_attribute("normal", "VIP", type="boolean")
    client.contacts.create_attribute("normal", "AGE", type="float")
    client.contacts.create_attribute("normal", "BIRTHDAY", type="date")
    client.contacts.create_attribute("normal", "COLORS", type="multiple-choice", multi_category_options=["red", "blue"])
    client.contacts.create_attribute(
        "category", "GENDER", type="category", enumeration=[{"value": 1, "label": "Men"}, {"value": 2, "label": "W"}]
    )
    assert client.contacts.create_list(name="Newsletter", folder_id=1).id == NEWSLETTER
    people = {
        "ann": ({"COUNTRY": "FR", "VIP": True, "AGE": 31.5, "GENDER": "W", "COLORS": ["red", "blue"]}, [2, 3]),
        "bob": ({"COUNTRY": "BE", "VIP": False, "AGE": 40, "GENDER": 1, "BIRTHDAY": "1984-02-29"}, [2]),
        "cat": ({"COUNTRY": "FR", "FIRSTNAME": 'Cat; "the" cat', "COLORS": ["blue"]}, [3]),
        "dan": ({"COUNTRY": "DE", "VIP": True, "SMS": "+33612345678", "EXT_ID": "crm-4"}, [2, 3]),
        "eve": ({"COUNTRY": "FR"}, []),
    }
    ids = {}
    for name, (attributes, lists) in people.items():
        ids[name] = client.contacts.create_contact(
            email=f"{name}@example.com", attributes=attributes, list_ids=lists, email_blacklisted=name == "bob"
        ).id
    brevo_sandbox.unsubscribe("eve@example.com", campaign_id=7)
    return ids


def finished(client: Brevo, process_id: int) -> Any:
    """The process once it left queued/in_process (polled with a deadline)."""
    return wait_for(lambda: (p := client.process.get_process(process_id)).status in ("completed", "failed") and p)


def export(client: Brevo, **request: Any) -> tuple[Any, list[list[str]]]:
    """Request an export through the SDK, wait for its process, download ``export_url``: (process, rows)."""
    process = finished(client, client.contacts.request_contact_export(**request).process_id)
    assert process.status == "completed", process
    assert process.name == "SEARCH_EXPORT_USERS"
    response = httpx.get(process.export_url)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text), delimiter=";"))
    assert process.info.export == {"total_records": len(rows) - 1, "file_size": len(response.content)}
    return process, rows


def emails(rows: list[list[str]]) -> list[str]:
    return [row[1] for row in rows[1:]]


def exported(client: Brevo, action: str, **where: int) -> list[str]:
    """The emails an export of ``actionForContacts: action`` on ``where`` (list_id or segment_id) gives."""
    return emails(export(client, custom_contact_filter=Filter(action_for_contacts=action, **where))[1])


def sdk_error(call: Callable[[], Any]) -> tuple[int, Any]:
    with pytest.raises(SdkApiError) as err:
        call()
    return err.value.status_code, err.value.body


# --- segments ----------------------------------------------------------------------------------------


def test_segments_are_listed_like_brevo_lists_them(client: Brevo, control: httpx.Client) -> None:
    assert client.contacts.get_segments().count == 0
    created = [
        control.post("/segments", json={"name": f"S{i}", "category": "Tests", "rules": {"emailBlacklisted": False}})
        for i in range(3)
    ]
    assert [r.status_code for r in created] == [201, 201, 201]
    assert [r.json()["id"] for r in created] == [1, 2, 3]
    assert created[0].json()["rules"] == {"emailBlacklisted": False}

    page = client.contacts.get_segments(limit=2, offset=0, sort="asc")
    assert page.count == 3
    assert [(s.id, s.segment_name, s.category_name) for s in page.segments or []] == [
        (1, "S0", "Tests"),
        (2, "S1", "Tests"),
    ]
    assert [s.id for s in client.contacts.get_segments().segments or []] == [3, 2, 1]  # newest first by default
    assert [s.id for s in client.contacts.get_segments(offset=2, sort="asc").segments or []] == [3]

    before = page.segments[0].updated_at  # type: ignore[index]
    renamed = control.put("/segments/1", json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["segmentName"] == "Renamed"
    assert renamed.json()["rules"] == {"emailBlacklisted": False} and renamed.json()["updatedAt"] > before
    assert control.delete("/segments/2").status_code == 204
    assert [s["id"] for s in control.get("/segments").json()["segments"]] == [1, 3]
    gone = control.delete("/segments/2")
    assert gone.json() == {"code": "document_not_found", "message": "Segment ID does not exist"}
    # a new segment never takes the id of a deleted one
    assert control.post("/segments", json={"name": "S4", "rules": []}).json()["id"] == 4
    assert client.contacts.get_segments(sort="asc").segments[-1].category_name == "Sandbox"  # type: ignore[index]


def test_get_contacts_through_a_segment_evaluates_it_when_read(
    brevo_sandbox: BrevoSandbox, client: Brevo, account: dict[str, int]
) -> None:
    def members(segment_id: int, **query: Any) -> list[str]:
        page = client.contacts.get_contacts(segment_id=segment_id, sort="asc", **query)
        found = [c.email for c in page.contacts or []]
        assert page.count == len(found) or query
        return found

    french = brevo_sandbox.create_segment("French", {"attribute": "country", "equals": "FR"})
    assert members(french) == ["ann@example.com", "cat@example.com", "eve@example.com"]
    client.contacts.update_contact("dan@example.com", attributes={"COUNTRY": "FR"})
    assert members(french) == ["ann@example.com", "cat@example.com", "dan@example.com", "eve@example.com"]
    page = client.contacts.get_contacts(segment_id=french, sort="asc", limit=1, offset=1)
    assert page.count == 4 and [c.email for c in page.contacts or []] == ["cat@example.com"]

    vip_subscribers = brevo_sandbox.create_segment(
        "VIP subscribers", [{"attribute": "VIP", "equals": "true"}, {"emailBlacklisted": False}, {"listId": 2}]
    )
    assert members(vip_subscribers) == ["ann@example.com", "dan@example.com"]
    client.contacts.remove_contact_from_list(2, request={"emails": ["dan@example.com"]})
    assert members(vip_subscribers) == ["ann@example.com"]

    cases: list[tuple[Any, list[str]]] = [
        ({"attribute": "COUNTRY", "in": ["BE", "DE"]}, ["bob"]),
        ({"not": {"attribute": "COUNTRY", "equals": "FR"}}, ["bob"]),
        ({"not": {"attribute": "VIP", "equals": True}}, ["bob", "cat", "eve"]),  # no value is "not true"
        ({"attribute": "VIP", "equals": None}, ["cat", "eve"]),
        ({"attribute": "GENDER", "equals": "men"}, ["bob"]),  # a category's label, or its value
        ({"attribute": "GENDER", "in": [2]}, ["ann"]),
        ({"attribute": "COLORS", "equals": "blue"}, ["ann", "cat"]),  # has the option
        ({"attribute": "AGE", "in": [40, 31.5]}, ["ann", "bob"]),
        ({"attribute": "BIRTHDAY", "equals": "1984-02-29"}, ["bob"]),
        ({"attribute": "SMS", "equals": "0033612345678"}, ["dan"]),  # any form of the number
        ({"attribute": "EXT_ID", "equals": "crm-4"}, ["dan"]),
        ({"attribute": "email", "in": ["ANN@example.com", "nobody@example.com"]}, ["ann"]),
        ({"any": [{"emailBlacklisted": True}, {"listId": NEWSLETTER}]}, ["ann", "bob", "cat", "dan", "eve"]),
        ({"all": [{"listId": NEWSLETTER}, {"not": {"listId": 2}}]}, ["cat", "dan"]),
        ({"any": []}, []),
        ([], ["ann", "bob", "cat", "dan", "eve"]),
    ]
    for rules, expected in cases:
        segment_id = brevo_sandbox.create_segment(f"case {rules}", rules)
        assert members(segment_id) == [f"{name}@example.com" for name in expected], rules

    # with the other filters of GET /contacts
    cursor = client.contacts.get_contact_info("eve@example.com").modified_at  # dan changed later, cat did not
    client.contacts.update_contact("ann@example.com", attributes={"FIRSTNAME": "Ann"})
    assert members(french, modified_since=cursor) == ["ann@example.com", "dan@example.com", "eve@example.com"]
    assert members(french, ids=[account["eve"], account["bob"]]) == ["eve@example.com"]


def test_unknown_segments_and_lists_answer_brevos_errors(
    brevo_sandbox: BrevoSandbox, client: Brevo, control: httpx.Client, account: dict[str, int]
) -> None:
    missing = {"code": "invalid_parameter", "message": "Segment ID does not exist"}
    assert sdk_error(lambda: client.contacts.get_contacts(segment_id=99)) == (400, missing)
    assert sdk_error(
        lambda: client.contacts.request_contact_export(
            custom_contact_filter=Filter(action_for_contacts="allContacts", segment_id=99)
        )
    ) == (400, missing)
    segment_id = brevo_sandbox.create_segment("All", [])
    status, body = sdk_error(lambda: client.contacts.get_contacts(segment_id=segment_id, list_ids=[2]))
    assert status == 400 and body["code"] == "invalid_parameter"
    status, body = sdk_error(
        lambda: client.contacts.request_contact_export(
            custom_contact_filter=Filter(action_for_contacts="allContacts", segment_id=segment_id, list_id=2)
        )
    )
    assert status == 400 and body["code"] == "invalid_parameter"
    brevo_sandbox.delete_segment(segment_id)
    assert sdk_error(lambda: client.contacts.get_contacts(segment_id=segment_id)) == (400, missing)

    assert sdk_error(
        lambda: client.contacts.request_contact_export(
            custom_contact_filter=Filter(action_for_contacts="subscribed", list_id=99)
        )
    ) == (400, {"code": "invalid_parameter", "message": "List ID does not exist"})
    status, body = sdk_error(
        lambda: client.contacts.request_contact_export(custom_contact_filter=Filter(action_for_contacts="allContacts"))
    )
    assert (status, body["code"]) == (400, "missing_parameter")
    assert control.post("/lists/99/unsubscribe", json={"emails": ["ann@example.com"]}).json() == {
        "code": "document_not_found",
        "message": "List ID does not exist",
    }
    assert client.process.get_processes().count == 0  # nothing was queued


@pytest.mark.parametrize(
    "rules",
    [
        {"attribute": "NOPE", "equals": 1},
        {"attribute": "COUNTRY') OR 1=1 --", "equals": "FR"},
        {"attribute": "AGE", "equals": "old"},
        {"attribute": "VIP", "in": []},
        {"attribute": "VIP", "in": [None]},
        {"attribute": "GENDER", "equals": "Other"},
        {"attribute": "COUNTRY", "equals": "FR", "in": ["FR"]},
        {"attribute": "COUNTRY", "equals": {"sql": "1"}},
        {"listId": 99},
        {"listId": True},
        {"emailBlacklisted": "yes"},
        {"sql": "1=1"},
        {"listId": 2, "emailBlacklisted": True},
        {"all": {"listId": 2}},
        {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"listId": 2}}}}}}}}},
        {"any": [{"listId": 2}] * 100},
        "COUNTRY = 'FR'",
    ],
)
def test_segment_rules_are_checked_when_defined(
    control: httpx.Client, client: Brevo, account: dict[str, int], rules: Any
) -> None:
    response = control.post("/segments", json={"name": "Bad", "rules": rules})
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_parameter"
    assert client.contacts.get_segments().count == 0


def test_segment_values_are_data_never_sql(brevo_sandbox: BrevoSandbox, client: Brevo, account: dict[str, int]) -> None:
    client.contacts.update_contact("bob@example.com", attributes={"COUNTRY": "x' OR '1'='1"})
    segment_id = brevo_sandbox.create_segment("Quote", {"attribute": "COUNTRY", "in": ["x' OR '1'='1", "') --"]})
    assert [c.email for c in client.contacts.get_contacts(segment_id=segment_id).contacts or []] == ["bob@example.com"]


def test_segment_control_endpoint_body_is_checked(control: httpx.Client) -> None:
    for body in ({"rules": []}, {"name": "", "rules": []}, {"name": "N"}, {"name": "N", "rules": [], "sql": "x"}, []):
        response = control.post("/segments", json=body)
        assert response.status_code == 400 and response.json()["code"] in ("invalid_parameter", "missing_parameter")
    assert control.put("/segments/7", json={"name": "N"}).status_code == 404
    assert control.get("/segments").json() == {"segments": []}


# --- exports: which contacts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "target", "expected"),
    [
        ("allContacts", "list", ["ann", "bob", "dan"]),
        ("subscribed", "list", ["ann", "dan"]),
        ("unsubscribed", "list", ["bob"]),
        ("unsubscribedPerList", "list", []),
        ("allContacts", "newsletter", ["ann", "cat", "dan"]),
        ("allContacts", "segment", ["ann", "bob", "cat", "eve"]),
        ("subscribed", "segment", ["ann", "cat"]),
        ("unsubscribed", "segment", ["bob", "eve"]),
    ],
)
def test_export_filters(
    brevo_sandbox: BrevoSandbox, client: Brevo, account: dict[str, int], action: str, target: str, expected: list[str]
) -> None:
    not_dan = brevo_sandbox.create_segment("Not DE", {"not": {"attribute": "COUNTRY", "equals": "DE"}})
    where = {"list": {"list_id": 2}, "newsletter": {"list_id": NEWSLETTER}, "segment": {"segment_id": not_dan}}[target]
    process, rows = export(client, custom_contact_filter=Filter(action_for_contacts=action, **where))
    assert rows[0] == ["CONTACT_ID", "EMAIL", *MANDATORY]
    assert emails(rows) == [f"{name}@example.com" for name in expected]
    assert [int(row[0]) for row in rows[1:]] == [account[name] for name in expected]
    assert process.info.export["total_records"] == len(expected)


def test_unsubscribed_per_list(
    brevo_sandbox: BrevoSandbox, client: Brevo, control: httpx.Client, account: dict[str, int]
) -> None:
    before = client.contacts.get_contact_info("dan@example.com")
    answer = control.post(
        f"/lists/{NEWSLETTER}/unsubscribe", json={"emails": ["DAN@example.com", "bob@example.com", "zed@example.com"]}
    )
    assert answer.status_code == 200
    assert answer.json()["contacts"] == {
        "success": ["DAN@example.com"],
        "failure": ["bob@example.com", "zed@example.com"],  # not in the list, not a contact
    }
    dan = client.contacts.get_contact_info("dan@example.com")
    assert dan.list_ids == [2] and dan.email_blacklisted is False and dan.modified_at > before.modified_at

    def per_list(list_id: int) -> list[str]:
        return exported(client, "unsubscribedPerList", list_id=list_id)

    assert per_list(NEWSLETTER) == ["dan@example.com"]
    assert per_list(2) == []
    assert exported(client, "allContacts", list_id=NEWSLETTER) == ["ann@example.com", "cat@example.com"]
    # unsubscribedPerList is not the global unsubscription: bob (blacklisted) is not in it, dan is not in "unsubscribed"
    assert exported(client, "unsubscribed", list_id=NEWSLETTER) == []
    assert brevo_sandbox.unsubscribe_from_list(NEWSLETTER, ids=[account["cat"]]) == {
        "contacts": {"success": [account["cat"]], "failure": []}
    }
    assert per_list(NEWSLETTER) == ["cat@example.com", "dan@example.com"]
    # joining the list again ends the unsubscription
    client.contacts.add_contact_to_list(NEWSLETTER, request={"emails": ["dan@example.com"]})
    assert per_list(NEWSLETTER) == ["cat@example.com"]

    everyone = brevo_sandbox.create_segment("S", [])
    status, body = sdk_error(
        lambda: client.contacts.request_contact_export(
            custom_contact_filter=Filter(action_for_contacts="unsubscribedPerList", segment_id=everyone)
        )
    )
    assert (status, body["code"]) == (400, "invalid_parameter")
    bad = ({}, {"emails": []}, {"ids": ["1"]}, {"emails": ["a@example.com"], "ids": [1]}, {"emails": "a@example.com"})
    for body in bad:
        assert control.post(f"/lists/{NEWSLETTER}/unsubscribe", json=body).status_code == 400, body


def test_unsubscribed_per_list_forgets_deleted_lists_and_contacts(
    brevo_sandbox: BrevoSandbox, client: Brevo, account: dict[str, int]
) -> None:
    brevo_sandbox.unsubscribe_from_list(NEWSLETTER, emails=["ann@example.com", "cat@example.com"])
    client.contacts.delete_contact("cat@example.com")
    assert exported(client, "unsubscribedPerList", list_id=NEWSLETTER) == ["ann@example.com"]
    client.contacts.delete_list(NEWSLETTER)
    again = client.contacts.create_list(name="Newsletter again", folder_id=1).id
    assert again == NEWSLETTER  # the id is used again: the old unsubscriptions must not come back
    assert exported(client, "unsubscribedPerList", list_id=again) == []


def test_campaign_actions(brevo_sandbox: BrevoSandbox, client: Brevo, account: dict[str, int]) -> None:
    brevo_sandbox.unsubscribe("ann@example.com", campaign_id=8)
    by_campaign = Filter(action_for_email_campaigns="unsubscribed", email_campaign_id=7)
    assert emails(export(client, custom_contact_filter=by_campaign)[1]) == ["eve@example.com"]
    openers = Filter(action_for_email_campaigns="openers", email_campaign_id=7)
    assert export(client, custom_contact_filter=openers)[1] == [["CONTACT_ID", "EMAIL", *MANDATORY]]
    status, body = sdk_error(
        lambda: client.contacts.request_contact_export(
            custom_contact_filter=Filter(action_for_email_campaigns="clickers")
        )
    )
    assert (status, body["code"]) == (400, "missing_parameter")


# --- exports: which columns --------------------------------------------------------------------------


def test_export_columns_follow_the_request(client: Brevo, account: dict[str, int]) -> None:
    asked = ["vip", "GENDER", "Country", "COLORS", "AGE", "BIRTHDAY", "FIRSTNAME", "EXT_ID", "SMS", "email", "VIP"]
    _, rows = export(
        client,
        custom_contact_filter=Filter(action_for_contacts="allContacts", list_id=NEWSLETTER),
        export_attributes=asked,
    )
    asked_in_order = ["VIP", "GENDER", "COUNTRY", "COLORS", "AGE", "BIRTHDAY", "FIRSTNAME", "EXT_ID", "SMS"]
    assert rows[0] == ["CONTACT_ID", "EMAIL", *asked_in_order, *MANDATORY]
    by_email = {row[1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    ann, cat, dan = by_email["ann@example.com"], by_email["cat@example.com"], by_email["dan@example.com"]
    assert (ann["VIP"], ann["GENDER"], ann["COLORS"], ann["AGE"]) == ("true", "W", "red,blue", "31.5")
    assert cat["FIRSTNAME"] == 'Cat; "the" cat'  # quoted in the file, read back whole
    assert (cat["VIP"], cat["GENDER"], cat["AGE"], cat["SMS"]) == ("", "", "", "")
    assert (dan["EXT_ID"], dan["SMS"], dan["COUNTRY"]) == ("crm-4", "33612345678", "DE")
    info = client.contacts.get_contact_info("ann@example.com")
    assert (ann["ADDED_TIME"], ann["MODIFIED_TIME"]) == (info.created_at, info.modified_at)
    assert (ann["EMAIL_BLACKLISTED"], ann["SMS_BLACKLISTED"]) == ("false", "false")

    _, rows = export(
        client,
        custom_contact_filter=Filter(action_for_contacts="unsubscribed", list_id=2),
        export_attributes=["AGE", "BIRTHDAY", "EMAIL_BLACKLISTED"],
    )
    assert rows[0] == ["CONTACT_ID", "EMAIL", "AGE", "BIRTHDAY", "EMAIL_BLACKLISTED", *MANDATORY[:2], MANDATORY[3]]
    assert rows[1][:5] == [str(account["bob"]), "bob@example.com", "40", "1984-02-29", "true"]


def test_export_without_mandatory_attributes(client: Brevo, account: dict[str, int]) -> None:
    _, rows = export(
        client,
        custom_contact_filter=Filter(action_for_contacts="allContacts", list_id=2),
        export_attributes=["COUNTRY", "FIRSTNAME"],
        export_mandatory_attributes=False,
    )
    assert rows == [
        ["CONTACT_ID", "EMAIL", "COUNTRY", "FIRSTNAME"],
        [str(account["ann"]), "ann@example.com", "FR", ""],
        [str(account["bob"]), "bob@example.com", "BE", ""],
        [str(account["dan"]), "dan@example.com", "DE", ""],
    ]
    status, body = sdk_error(
        lambda: client.contacts.request_contact_export(
            custom_contact_filter=Filter(action_for_contacts="allContacts", list_id=2),
            export_mandatory_attributes=False,
        )
    )
    assert (status, body["code"]) == (400, "missing_parameter")


def test_export_attributes_must_exist(client: Brevo, account: dict[str, int]) -> None:
    status, body = sdk_error(
        lambda: client.contacts.request_contact_export(
            custom_contact_filter=Filter(action_for_contacts="allContacts", list_id=2),
            export_attributes=["COUNTRY", "Shoe_Size", "NOPE"],
        )
    )
    assert status == 400 and body["code"] == "invalid_parameter"
    assert "SHOE_SIZE, NOPE" in body["message"]
    assert client.process.get_processes().count == 0


# --- export files ------------------------------------------------------------------------------------


def test_export_file_download_head_and_reset(
    brevo_sandbox: BrevoSandbox, client: Brevo, control: httpx.Client, account: dict[str, int]
) -> None:
    process, _ = export(client, custom_contact_filter=Filter(action_for_contacts="allContacts", list_id=2))
    url = process.export_url
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == process.info.export["file_size"]
    assert httpx.post(url).status_code == 405
    assert httpx.get(url.replace(f"/{process.id}.csv", "/99.csv")).status_code == 404
    files = list(brevo_sandbox.store.export_dir.iterdir())
    assert [f.name for f in files] == [f"{process.id}.csv"]
    with brevo_sandbox.store.reading() as db:  # the database keeps the file's name, not its text
        assert [tuple(r) for r in db.execute("SELECT * FROM export_files")] == [(process.id, f"{process.id}.csv")]

    assert control.post("/reset").status_code == 204
    assert list(brevo_sandbox.store.export_dir.iterdir()) == []
    assert httpx.get(url).status_code == 404


def test_exports_survive_a_restart_and_earlier_databases_keep_theirs(
    brevo_sandbox_factory: Callable[..., BrevoSandbox], tmp_path: Path
) -> None:
    db_path = tmp_path / "kept.sqlite3"
    sandbox = brevo_sandbox_factory(db_path=db_path)
    client = Brevo(api_key=sandbox.api_key, base_url=sandbox.url, max_retries=0)
    client.contacts.create_contact(email="a@example.com", list_ids=[2])
    process, rows = export(client, custom_contact_filter=Filter(action_for_contacts="allContacts", list_id=2))
    sandbox.stop()
    # an earlier sandbox kept the CSV text in an "exports" table
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE exports(process_id INTEGER PRIMARY KEY, csv TEXT NOT NULL)")
        db.execute("INSERT INTO exports VALUES (77, 'CONTACT_ID;EMAIL\n9;old@example.com\n')")
        db.execute(
            "INSERT INTO processes(id, name, status, export_path, created_at) VALUES"
            " (77, 'SEARCH_EXPORT_USERS', 'completed', '/_sandbox/exports/77.csv', 1)"
        )
    db.close()

    again = brevo_sandbox_factory(db_path=db_path)
    client = Brevo(api_key=again.api_key, base_url=again.url, max_retries=0)
    url = client.process.get_process(process.id).export_url
    assert url.startswith(again.base_url)
    assert list(csv.reader(io.StringIO(httpx.get(url).text), delimiter=";")) == rows
    old = httpx.get(client.process.get_process(77).export_url)
    assert old.text == "CONTACT_ID;EMAIL\n9;old@example.com\n"
    with again.store.reading() as db:
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name='exports'").fetchone() is None


def test_export_goes_through_the_process_states(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    sandbox = brevo_sandbox_factory(import_delay=1.0)  # half queued, half in_process, as imports
    client = Brevo(api_key=sandbox.api_key, base_url=sandbox.url, max_retries=0)
    client.contacts.create_contact(email="a@example.com", list_ids=[2])
    pid = client.contacts.request_contact_export(
        custom_contact_filter=Filter(action_for_contacts="allContacts", list_id=2)
    ).process_id
    seen: list[str] = []
    wait_for(lambda: seen.append(client.process.get_process(pid).status) or seen[-1] == "completed")
    order = ["queued", "in_process", "completed"]
    assert "in_process" in seen and seen[-1] == "completed"
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)  # never back
    assert client.process.get_process(pid).info.export["total_records"] == 1


def test_a_segment_deleted_before_the_export_runs_fails_the_process(
    brevo_sandbox_factory: Callable[..., BrevoSandbox],
) -> None:
    sandbox = brevo_sandbox_factory(import_delay=1.0)  # the process waits a second before it reads
    client = Brevo(api_key=sandbox.api_key, base_url=sandbox.url, max_retries=0)
    segment_id = sandbox.create_segment("Gone", [])
    pid = client.contacts.request_contact_export(
        custom_contact_filter=Filter(action_for_contacts="allContacts", segment_id=segment_id)
    ).process_id
    sandbox.delete_segment(segment_id)
    process = finished(client, pid)
    assert process.status == "failed" and process.error == "Segment ID does not exist"  # type: ignore[attr-defined]
    assert process.export_url is None


def test_a_large_export_is_streamed(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    client.contacts.create_attribute("normal", "NOTES", type="text")
    total = 20_000
    notes = "n" * 300
    rows = [
        {"email": f"big{i}@example.com", "attributes": {"FIRSTNAME": f"F{i}", "NOTES": f"{notes}{i}"}}
        for i in range(total)
    ]
    imported = client.contacts.import_contacts(json_body=rows, list_ids=[2])  # the sandbox's bulk path
    assert finished(client, imported.process_id).status == "completed"
    del rows

    tracemalloc.start()
    try:
        pid = client.contacts.request_contact_export(
            custom_contact_filter=Filter(action_for_contacts="allContacts", list_id=2),
            export_attributes=["NOTES", "FIRSTNAME"],
        ).process_id
        process = finished(client, pid)
        size = last_id = 0
        header, tail = None, b""
        with httpx.stream("GET", process.export_url) as response:
            assert int(response.headers["content-length"]) == process.info.export["file_size"]
            for chunk in response.iter_bytes(1 << 16):
                size += len(chunk)
                *lines, tail = (tail + chunk).split(b"\n")
                for line in lines:
                    if header is None:
                        header = line
                        continue
                    contact_id = int(line.split(b";", 1)[0])
                    assert contact_id == last_id + 1  # every contact once, in id order
                    last_id = contact_id
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert process.info.export["total_records"] == total
    assert size == process.info.export["file_size"] and tail == b""
    assert header == b"CONTACT_ID;EMAIL;NOTES;FIRSTNAME;" + ";".join(MANDATORY).encode()
    assert last_id == total
    # memory is not the limit: the export and the download hold a batch of rows, never the file
    assert size > 6_000_000
    assert peak < size / 4, (peak, size)


# --- conformance ---------------------------------------------------------------------------------------


def test_segments_listing_conforms_to_the_spec(brevo_sandbox: BrevoSandbox) -> None:
    for i in range(3):
        brevo_sandbox.create_segment(f"S{i}", {"emailBlacklisted": False}, category="Tests")
    spec = Path(__file__).parent / "data" / "brevo-openapi.yaml"
    schema = schemathesis.openapi.from_path(spec).include(path_regex=r"^/contacts/segments$")
    [operation] = [result.ok() for result in schema.get_all_operations()]
    for query, status in (
        ({}, 200),
        ({"limit": 2, "offset": 1, "sort": "asc"}, 200),
        ({"limit": 0}, 200),
        ({"limit": 51}, 400),
        ({"sort": "up"}, 400),
    ):
        case = operation.Case(query=query)
        response = case.call(base_url=brevo_sandbox.url, headers={"api-key": brevo_sandbox.api_key})
        case.validate_response(response)
        assert response.status_code == status, query
