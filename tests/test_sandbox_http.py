"""Sandbox behaviour over plain HTTP: auth, validation and error bodies, identifier and type rules,
persistence, rate limits, imports, exports and the control endpoints."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from polling import wait_for

from airflow_provider_contactsync.sandbox import BrevoSandbox


def api(sandbox: BrevoSandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.url, headers={"api-key": sandbox.api_key}, timeout=30)


def control(sandbox: BrevoSandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.base_url + "/_sandbox", headers={"api-key": sandbox.api_key}, timeout=30)


def finished(client: httpx.Client, process_id: int) -> dict[str, Any]:
    return wait_for(lambda: (p := client.get(f"/processes/{process_id}").json())["status"] == "completed" and p)


@pytest.fixture
def client(brevo_sandbox: BrevoSandbox) -> httpx.Client:
    return api(brevo_sandbox)


# --- auth and routing -------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"api-key": "wrong"}])
def test_unauthorized_without_or_with_wrong_key(brevo_sandbox: BrevoSandbox, headers: dict[str, str]) -> None:
    response = httpx.get(brevo_sandbox.url + "/contacts", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"code": "unauthorized", "message": "Key not found"}
    assert "x-sib-ratelimit-limit" in response.headers
    assert httpx.get(brevo_sandbox.base_url + "/_sandbox/requests", headers=headers).status_code == 401


def test_method_not_allowed_and_unknown_path(client: httpx.Client) -> None:
    response = client.patch("/contacts")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    assert client.get("/nothing/here").status_code == 404


def test_new_account_is_seeded(client: httpx.Client) -> None:
    names = [a["name"] for a in client.get("/contacts/attributes").json()["attributes"]]
    assert names == ["FIRSTNAME", "LASTNAME", "SMS", "WHATSAPP", "LANDLINE_NUMBER", "EXT_ID"]
    assert client.get("/contacts/folders").json()["count"] == 1
    lists = client.get("/contacts/lists").json()
    assert lists["count"] == 1 and lists["lists"][0]["folderId"] == 1


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/contacts", {"email": "not-an-email"}, 400, "invalid_parameter"),
        ("POST", "/contacts", {"attributes": {"FIRSTNAME": "x"}}, 400, "missing_parameter"),
        (
            "POST",
            "/contacts",
            {"email": "a@example.com", "emailBlacklisted": "yes"},
            400,
            "invalid_parameter",
        ),
        ("POST", "/contacts", {"email": "a@example.com", "listIds": [999]}, 400, "invalid_parameter"),
        (
            "POST",
            "/contacts",
            {"email": "a@example.com", "attributes": {"SMS": "12"}},
            400,
            "invalid_parameter",
        ),
        ("GET", "/contacts?limit=1001", None, 400, "out_of_range"),
        ("GET", "/contacts?limit=abc", None, 400, "invalid_parameter"),
        ("GET", "/contacts?sort=up", None, 400, "invalid_parameter"),
        ("GET", "/contacts?modifiedSince=yesterday", None, 400, "invalid_parameter"),
        ("GET", "/contacts/lists?limit=51", None, 400, "out_of_range"),
        ("GET", "/contacts/nobody@example.com", None, 404, "document_not_found"),
        ("GET", "/contacts/x?identifierType=nope", None, 400, "invalid_parameter"),
        ("GET", "/contacts/lists/999", None, 404, "document_not_found"),
        ("GET", "/processes/999", None, 404, "invalid_parameter"),
        ("POST", "/contacts/lists", {"name": "no folder"}, 400, "missing_parameter"),
        ("POST", "/contacts/import", {"jsonBody": [{"email": "a@example.com"}]}, 400, "missing_parameter"),
        ("POST", "/contacts/import", {"listIds": [2]}, 400, "missing_parameter"),
        ("POST", "/contacts/batch", {"contacts": "x"}, 400, "invalid_parameter"),
        (
            "POST",
            "/contacts/lists/2/contacts/add",
            {"emails": [f"{i}@x.io" for i in range(151)]},
            400,
            "out_of_range",
        ),
        ("POST", "/contacts/attributes/normal/AGE", {"type": "number"}, 400, "invalid_parameter"),
        ("POST", "/contacts/attributes/normal/FIRSTNAME", {"type": "text"}, 400, "invalid_parameter"),
        ("DELETE", "/contacts/attributes/normal/NOPE", None, 404, "document_not_found"),
    ],
)
def test_validation_errors(client: httpx.Client, method: str, path: str, body: Any, status: int, code: str) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["code"] == code and isinstance(payload["message"], str) and payload["message"]


def test_invalid_json_body(client: httpx.Client) -> None:
    response = client.post("/contacts", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "invalid_parameter"


def test_duplicate_contact_without_update_enabled(client: httpx.Client) -> None:
    assert client.post("/contacts", json={"email": "a@example.com"}).status_code == 201
    response = client.post("/contacts", json={"email": "A@example.com"})
    assert response.status_code == 400
    assert response.json()["code"] == "duplicate_parameter"
    assert response.json()["metadata"] == {"duplicate_identifiers": ["email"]}
    assert client.post("/contacts", json={"email": "a@example.com", "updateEnabled": True}).status_code == 204


# --- identifiers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["+33612345678", "33612345678", "0033612345678"])
def test_phone_formats_are_normalised(client: httpx.Client, phone: str) -> None:
    client.post("/contacts", json={"email": "a@example.com", "attributes": {"SMS": phone}})
    assert client.get("/contacts/a@example.com").json()["attributes"]["SMS"] == "33612345678"


def test_duplicate_sms_is_an_error_on_create_and_update(client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com", "attributes": {"SMS": "+33612345678"}})
    client.post("/contacts", json={"email": "b@example.com"})
    created = client.post("/contacts", json={"email": "c@example.com", "attributes": {"SMS": "0033612345678"}})
    assert created.status_code == 400
    assert created.json()["code"] == "duplicate_parameter"
    assert created.json()["metadata"] == {"duplicate_identifiers": ["SMS"]}
    updated = client.put("/contacts/b@example.com", json={"attributes": {"SMS": "33612345678"}})
    assert updated.status_code == 400 and updated.json()["metadata"] == {"duplicate_identifiers": ["SMS"]}
    upsert = client.post(
        "/contacts",
        json={"email": "b@example.com", "attributes": {"SMS": "+33612345678"}, "updateEnabled": True},
    )
    assert upsert.status_code == 400
    assert client.get("/contacts/b@example.com").json()["attributes"].get("SMS") is None
    # the owner itself may send its own number again
    assert client.put("/contacts/a@example.com", json={"attributes": {"SMS": "+33612345678"}}).status_code == 204


def test_identifier_auto_detection(client: httpx.Client) -> None:
    contact_id = client.post("/contacts", json={"email": "a@example.com", "ext_id": "e1"}).json()["id"]
    assert client.get(f"/contacts/{contact_id}").json()["email"] == "a@example.com"
    assert client.get("/contacts/a%40example.com").json()["id"] == contact_id
    assert client.get("/contacts/e1", params={"identifierType": "ext_id"}).json()["id"] == contact_id
    assert client.delete("/contacts/e1", params={"identifierType": "ext_id"}).status_code == 204
    assert client.delete(f"/contacts/{contact_id}").status_code == 404


# --- attribute types --------------------------------------------------------------------------------


def test_attribute_types_are_enforced_by_dropping(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    brevo_sandbox.create_attribute("BIRTHDAY", "date")
    brevo_sandbox.create_attribute("SCORE", "float")
    brevo_sandbox.create_attribute("VIP", "boolean")
    brevo_sandbox.create_attribute("COLORS", "multiple-choice", options=["red", "blue"])
    brevo_sandbox.create_attribute(
        "GENDER",
        "category",
        category="category",
        enumeration=[{"value": 1, "label": "Men"}, {"value": 2, "label": "Women"}],
    )
    good = {"BIRTHDAY": "1990-02-28", "SCORE": "12.5", "VIP": True, "COLORS": ["red", "green"], "GENDER": 2}
    client.post("/contacts", json={"email": "good@example.com", "attributes": good})
    assert client.get("/contacts/good@example.com").json()["attributes"] == {
        "BIRTHDAY": "1990-02-28",
        "SCORE": 12.5,
        "VIP": True,
        "COLORS": ["red"],
        "GENDER": "Women",
    }
    bad = {
        "BIRTHDAY": "28/02/1990",
        "SCORE": "lots",
        "VIP": "maybe",
        "COLORS": ["green"],
        "GENDER": "Other",
        "NOT_AN_ATTRIBUTE": "x",
        "FIRSTNAME": "Bo",
    }
    assert client.post("/contacts", json={"email": "bad@example.com", "attributes": bad}).status_code == 201
    assert client.get("/contacts/bad@example.com").json()["attributes"] == {"FIRSTNAME": "Bo"}
    by_label = client.put("/contacts/bad@example.com", json={"attributes": {"GENDER": "men", "BIRTHDAY": "2001-02-30"}})
    assert by_label.status_code == 204
    assert client.get("/contacts/bad@example.com").json()["attributes"] == {
        "FIRSTNAME": "Bo",
        "GENDER": "Men",
    }


def test_attribute_lifecycle(client: httpx.Client) -> None:
    assert (
        client.post(
            "/contacts/attributes/normal/colors",
            json={"type": "multiple-choice", "multiCategoryOptions": ["a"]},
        ).status_code
        == 201
    )
    assert client.put("/contacts/attributes/normal/COLORS", json={"multiCategoryOptions": ["b"]}).status_code == 204
    attrs = {a["name"]: a for a in client.get("/contacts/attributes").json()["attributes"]}
    assert attrs["COLORS"]["multiCategoryOptions"] == ["a", "b"]
    assert client.post("/contacts/attributes/category/TIER", json={"type": "category"}).status_code == 400
    assert client.delete("/contacts/attributes/normal/COLORS").status_code == 204
    assert client.delete("/contacts/attributes/normal/COLORS").status_code == 404


# --- persistence and seed ---------------------------------------------------------------------------


def test_state_persists_across_restart(tmp_path: Path, brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    db = tmp_path / "persist.sqlite3"
    first = brevo_sandbox_factory(db_path=db)
    with api(first) as c:
        c.post("/contacts", json={"email": "kept@example.com", "attributes": {"FIRSTNAME": "K"}, "listIds": [2]})
        c.post("/contacts/attributes/normal/AGE", json={"type": "float"})
    first.stop()
    second = brevo_sandbox_factory(db_path=db)
    with api(second) as c:
        contact = c.get("/contacts/kept@example.com").json()
        assert contact["attributes"] == {"FIRSTNAME": "K"} and contact["listIds"] == [2]
        assert "AGE" in [a["name"] for a in c.get("/contacts/attributes").json()["attributes"]]
        assert c.get("/contacts/lists").json()["count"] == 1  # not seeded twice
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_seed_file_is_applied_idempotently(tmp_path: Path, brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "attributes": [
                    {
                        "name": "plan",
                        "category": "category",
                        "type": "category",
                        "enumeration": [{"value": 1, "label": "Free"}],
                    },
                    {"name": "SIGNUP", "category": "normal", "type": "date"},
                ],
                "lists": [{"id": 10, "name": "Customers"}, {"name": "Prospects", "folderId": 1}],
            }
        )
    )
    db = tmp_path / "seeded.sqlite3"
    brevo_sandbox_factory(db_path=db, seed=str(seed)).stop()
    sandbox = brevo_sandbox_factory(db_path=db, seed=str(seed))
    with api(sandbox) as c:
        names = [a["name"] for a in c.get("/contacts/attributes").json()["attributes"]]
        assert names.count("PLAN") == 1 and "SIGNUP" in names
        lists = c.get("/contacts/lists", params={"sort": "asc"}).json()["lists"]
        assert [(lst["id"], lst["name"]) for lst in lists] == [
            (2, "Your first list"),
            (10, "Customers"),
            (11, "Prospects"),
        ]
        c.post("/contacts", json={"email": "a@example.com"})
    with control(sandbox) as ctl:
        assert ctl.post("/reset").status_code == 204
    assert sandbox.contacts() == []
    with api(sandbox) as c:
        assert c.get("/contacts/lists").json()["count"] == 3


# --- imports and exports ----------------------------------------------------------------------------


def test_import_counts_and_rules(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    brevo_sandbox.create_attribute("SCORE", "float")
    client.post("/contacts", json={"email": "owner@example.com", "attributes": {"SMS": "+33612345678"}})
    client.post("/contacts", json={"email": "old@example.com", "attributes": {"FIRSTNAME": "Old", "SCORE": 1}})
    csv_body = "\n".join(
        [
            "EMAIL;FIRSTNAME;SMS;SCORE;EXT_ID;NOT_THERE",
            "new@example.com;New;+33700000001;2.5;x1;z",
            "bad-email;X;;;;",
            "new@example.com;Again;;;;",
            "other@example.com;Other;0033612345678;;;",  # SMS owned by owner@ -> duplicate_phone_id, skipped
            "third@example.com;Third;;abc;x1;",  # ext id already used in this file
            "old@example.com;;;;;",  # empty cells do not erase by default
        ]
    )
    pid = client.post("/contacts/import", json={"fileBody": csv_body, "listIds": [2]}).json()["processId"]
    info = finished(client, pid)["info"]["import"]
    assert info["invalid_emails"] == 1
    assert info["duplicate_email_id"] == 1
    assert info["duplicate_phone_id"] == 1
    assert info["duplicate_ext_id"] == 1
    contacts = {c.get("email"): c for c in brevo_sandbox.contacts()}
    assert set(contacts) == {"owner@example.com", "old@example.com", "new@example.com"}
    assert contacts["new@example.com"]["attributes"] == {
        "FIRSTNAME": "New",
        "SCORE": 2.5,
        "SMS": "33700000001",
        "EXT_ID": "x1",
    }
    assert contacts["old@example.com"]["attributes"] == {"FIRSTNAME": "Old", "SCORE": 1}
    assert contacts["old@example.com"]["listIds"] == [2]

    erase = {
        "jsonBody": [{"email": "old@example.com", "attributes": {"FIRSTNAME": ""}}],
        "listIds": [2],
        "emptyContactsAttributes": True,
        "emailBlacklist": True,
    }
    finished(client, client.post("/contacts/import", json=erase).json()["processId"])
    old = client.get("/contacts/old@example.com").json()
    assert old["attributes"] == {"SCORE": 1} and old["emailBlacklisted"] is True

    keep = {
        "jsonBody": [{"email": "old@example.com", "attributes": {"FIRSTNAME": "Nope"}}],
        "newList": {"listName": "Fresh", "folderId": 1},
        "updateExistingContacts": False,
    }
    finished(client, client.post("/contacts/import", json=keep).json()["processId"])
    old = client.get("/contacts/old@example.com").json()
    assert "FIRSTNAME" not in old["attributes"] and len(old["listIds"]) == 2


def test_import_goes_through_queued_and_running_states(
    brevo_sandbox_factory: Callable[..., BrevoSandbox],
) -> None:
    sandbox = brevo_sandbox_factory(import_delay=0.6)
    with api(sandbox) as c:
        pid = c.post("/contacts/import", json={"jsonBody": [{"email": "a@example.com"}], "listIds": [2]}).json()[
            "processId"
        ]
        seen = set()
        wait_for(lambda: seen.add(c.get(f"/processes/{pid}").json()["status"]) or "completed" in seen)
    assert "queued" in seen and "completed" in seen


def test_import_body_over_10mb_is_refused(client: httpx.Client) -> None:
    big = "EMAIL;FIRSTNAME\n" + "x@example.com;" + "a" * (10 * 1024 * 1024) + "\n"
    response = client.post("/contacts/import", json={"fileBody": big, "listIds": [2]})
    assert response.status_code == 400 and response.json()["code"] == "out_of_range"


@pytest.mark.slow
def test_import_of_100k_contacts(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    rows = [
        {"email": f"user{i}@example.com", "attributes": {"FIRSTNAME": f"U{i}", "SMS": f"+3361{i:07d}"}}
        for i in range(100_000)
    ]
    pid = client.post("/contacts/import", json={"jsonBody": rows, "listIds": [2]}).json()["processId"]
    assert finished(client, pid)["info"]["import"]["duplicate_phone_id"] == 0
    assert client.get("/contacts", params={"limit": 1}).json()["count"] == 100_000
    assert client.get("/contacts/lists/2").json()["totalSubscribers"] == 100_000


def test_export_serves_a_csv(client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com", "attributes": {"FIRSTNAME": "A"}, "listIds": [2]})
    client.post("/contacts", json={"email": "b@example.com"})
    pid = client.post(
        "/contacts/export",
        json={
            "customContactFilter": {"actionForContacts": "allContacts", "listId": 2},
            "exportAttributes": ["FIRSTNAME"],
        },
    ).json()["processId"]
    process = finished(client, pid)
    assert process["name"] == "SEARCH_EXPORT_USERS" and process["info"]["export"]["total_records"] == 1
    csv_text = httpx.get(process["export_url"]).text
    assert csv_text.splitlines()[0].startswith("CONTACT_ID;EMAIL;FIRSTNAME")
    assert csv_text.splitlines()[1].startswith("1;a@example.com;A;")


# --- lists ------------------------------------------------------------------------------------------


def test_list_membership_by_ids_ext_ids_and_all(client: httpx.Client) -> None:
    ids = [
        client.post("/contacts", json={"email": f"{i}@example.com", "ext_id": f"e{i}"}).json()["id"] for i in range(3)
    ]
    list_id = client.post("/contacts/lists", json={"name": "L", "folderId": 1}).json()["id"]
    added = client.post(f"/contacts/lists/{list_id}/contacts/add", json={"ids": [ids[0], 999]}).json()
    assert added == {"contacts": {"success": [ids[0]], "failure": [999]}}
    added = client.post(f"/contacts/lists/{list_id}/contacts/add", json={"extIds": ["e1", "e2"]}).json()
    assert added["contacts"]["success"] == ["e1", "e2"]
    assert client.get(f"/contacts/lists/{list_id}/contacts").json()["count"] == 3
    assert client.get("/contacts", params={"listIds": list_id}).json()["count"] == 3
    removed = client.post(f"/contacts/lists/{list_id}/contacts/remove", json={"all": True}).json()
    assert removed["contacts"]["total"] == 3
    assert client.get(f"/contacts/lists/{list_id}").json()["totalSubscribers"] == 0
    assert client.put(f"/contacts/lists/{list_id}", json={"name": "Renamed"}).status_code == 204
    assert client.delete(f"/contacts/lists/{list_id}").status_code == 204


# --- rate limits ------------------------------------------------------------------------------------


def test_rate_limit_headers_on_every_answer(client: httpx.Client) -> None:
    for response in (client.get("/contacts"), client.get("/processes"), client.get("/contacts/nobody@x.io")):
        assert {"x-sib-ratelimit-limit", "x-sib-ratelimit-remaining", "x-sib-ratelimit-reset"} <= set(response.headers)


def test_contacts_bucket_per_hour(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    sandbox = brevo_sandbox_factory(contacts_per_hour=3)
    with api(sandbox) as c:
        answers = [c.get("/contacts") for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        assert [r.headers["x-sib-ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
        limited = answers[-1]
        assert limited.json()["code"] == "too_many_requests"
        assert limited.headers["x-sib-ratelimit-limit"] == "3"
        assert 3000 < int(limited.headers["x-sib-ratelimit-reset"]) <= 3600
        assert c.post("/contacts", json={"email": "a@example.com"}).status_code == 429
        assert c.get("/processes").status_code == 200  # the other bucket is independent
    assert sandbox.contacts() == []


def test_contacts_bucket_per_second(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    sandbox = brevo_sandbox_factory(contacts_rps=3)
    with api(sandbox) as c:
        answers = [c.get("/contacts") for _ in range(30)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited, "30 requests never exceeded 3 per second"
    assert limited[0].headers["x-sib-ratelimit-limit"] == "3"
    assert limited[0].headers["x-sib-ratelimit-reset"] == "1"


def test_other_bucket_per_hour(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    sandbox = brevo_sandbox_factory(other_per_hour=2)
    with api(sandbox) as c:
        statuses = [c.get("/processes").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = c.get("/account")
        assert limited.status_code == 429
        assert limited.headers["x-sib-ratelimit-limit"] == "2"
        assert 3000 < int(limited.headers["x-sib-ratelimit-reset"]) <= 3600
        assert c.get("/contacts").status_code == 200


def test_forced_429_rate_and_runtime_config(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    with control(brevo_sandbox) as ctl:
        assert ctl.post("/config", json={"rate_429": 1.0}).json()["rate_429"] == 1.0
        assert client.get("/contacts").status_code == 429
        assert ctl.post("/config", json={"rate_429": 0}).status_code == 200
        assert client.get("/contacts").status_code == 200
        assert ctl.post("/config", json={"no_such_setting": 1}).status_code == 400


# --- control endpoints ------------------------------------------------------------------------------


def test_request_log(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com"})
    client.get("/contacts", params={"limit": 5})
    with control(brevo_sandbox) as ctl:
        entries = ctl.get("/requests", params={"method": "GET"}).json()["requests"]
        assert [(e["method"], e["path"], e["query"], e["status"]) for e in entries] == [
            ("GET", "/v3/contacts", {"limit": "5"}, 200)
        ]
        posts = brevo_sandbox.requests(method="POST", path_prefix="/v3/contacts")
        assert posts[0]["body"] == {"email": "a@example.com"} and posts[0]["body_size"] > 0
        assert ctl.delete("/requests").status_code == 204
    assert brevo_sandbox.requests() == []
