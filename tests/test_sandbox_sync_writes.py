"""The sandbox's write paths for sync semantics (update-only, mirror and deletes, list membership,
consent): unsubscription history, double opt-in, batch updates, list membership, deletes, and
``modifiedAt`` on every change of blacklist flags and list membership."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from polling import wait_for

from airflow_provider_contactsync.sandbox import ApiError, BrevoSandbox

ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00")
NO_EVENTS = {"adminUnsubscription": [], "userUnsubscription": []}


def api(sandbox: BrevoSandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.url, headers={"api-key": sandbox.api_key}, timeout=30)


def control(sandbox: BrevoSandbox) -> httpx.Client:
    return httpx.Client(base_url=sandbox.base_url + "/_sandbox", headers={"api-key": sandbox.api_key}, timeout=30)


@pytest.fixture
def client(brevo_sandbox: BrevoSandbox) -> httpx.Client:
    return api(brevo_sandbox)


@pytest.fixture
def ctl(brevo_sandbox: BrevoSandbox) -> httpx.Client:
    return control(brevo_sandbox)


def contact(client: httpx.Client, identifier: str | int, **params: str) -> dict[str, Any]:
    response = client.get(f"/contacts/{identifier}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def unsubscriptions(client: httpx.Client, identifier: str | int, **params: str) -> dict[str, Any]:
    return contact(client, identifier, **params)["statistics"]["unsubscriptions"]


def by_email(sandbox: BrevoSandbox) -> dict[str, dict[str, Any]]:
    return {c.get("email", c["id"]): c for c in sandbox.contacts()}


def import_and_wait(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post("/contacts/import", json=body)
    assert response.status_code == 202, response.text
    pid = response.json()["processId"]
    wait_for(lambda: client.get(f"/processes/{pid}").json()["status"] == "completed")


# --- unsubscription history ---------------------------------------------------------------------------


def test_a_contact_never_unsubscribed_has_both_arrays_empty(client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com"})
    assert contact(client, "a@example.com")["statistics"] == {"unsubscriptions": NO_EVENTS}


def test_creating_a_blacklisted_contact_is_an_admin_unsubscription(client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com", "emailBlacklisted": True})
    found = contact(client, "a@example.com")
    events = found["statistics"]["unsubscriptions"]
    assert events == {
        "adminUnsubscription": [{"eventTime": found["modifiedAt"], "ip": "127.0.0.1"}],
        "userUnsubscription": [],
    }
    assert ISO_MS.fullmatch(events["adminUnsubscription"][0]["eventTime"])


def test_put_records_each_false_to_true_and_keeps_history_on_resubscription(client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com"})
    stamps = [contact(client, "a@example.com")["modifiedAt"]]

    def put(body: dict[str, Any]) -> dict[str, Any]:
        assert client.put("/contacts/a@example.com", json=body).status_code == 204
        found = contact(client, "a@example.com")
        stamps.append(found["modifiedAt"])
        return found

    first = put({"emailBlacklisted": True})
    put({"emailBlacklisted": True})  # already blacklisted: no new event
    put({"emailBlacklisted": False})  # re-subscribed: the history stays
    put({"smsBlacklisted": True})  # SMS is not an email unsubscription
    last = put({"emailBlacklisted": True})
    admin = last["statistics"]["unsubscriptions"]["adminUnsubscription"]
    assert [e["eventTime"] for e in admin] == [first["modifiedAt"], last["modifiedAt"]]
    assert last["statistics"]["unsubscriptions"]["userUnsubscription"] == []
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # every change moved modifiedAt


def test_upsert_through_post_records_the_unsubscription(client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com"})
    response = client.post(
        "/contacts", json={"email": "a@example.com", "emailBlacklisted": True, "updateEnabled": True}
    )
    assert response.status_code == 204
    assert len(unsubscriptions(client, "a@example.com")["adminUnsubscription"]) == 1


def test_batch_blacklisting_records_one_event_per_contact_it_blacklists(
    brevo_sandbox: BrevoSandbox, client: httpx.Client
) -> None:
    for i in range(3):
        client.post("/contacts", json={"email": f"b{i}@example.com", "emailBlacklisted": i == 2})
    response = client.post(
        "/contacts/batch",
        json={"contacts": [{"email": f"b{i}@example.com", "emailBlacklisted": True} for i in range(3)]},
    )
    assert response.status_code == 204
    assert [len(unsubscriptions(client, f"b{i}@example.com")["adminUnsubscription"]) for i in range(3)] == [1, 1, 1]
    assert all(c["emailBlacklisted"] for c in brevo_sandbox.contacts())


def test_import_with_email_blacklist_records_events(client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "old@example.com"})
    client.post("/contacts", json={"email": "gone@example.com", "emailBlacklisted": True})
    rows = [{"email": e} for e in ("old@example.com", "gone@example.com", "new@example.com")]
    import_and_wait(client, {"jsonBody": rows, "listIds": [2], "emailBlacklist": True})
    for email in ("old@example.com", "new@example.com", "gone@example.com"):
        found = contact(client, email)
        admin = found["statistics"]["unsubscriptions"]["adminUnsubscription"]
        assert found["emailBlacklisted"] and len(admin) == 1
        if email != "gone@example.com":  # recorded by the import, when it changed the contact
            assert admin[0]["eventTime"] == found["modifiedAt"]


def test_unsubscribe_link_through_the_control_endpoint(client: httpx.Client, ctl: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com", "listIds": [2]})
    before = contact(client, "a@example.com")["modifiedAt"]
    response = ctl.post(
        "/contacts/a%40example.com/unsubscribe", json={"campaignId": 3, "at": "2024-05-06T07:08:09.123Z"}
    )
    assert response.status_code == 200
    answer = response.json()
    assert answer["emailBlacklisted"] is True and answer["modifiedAt"] > before
    assert answer["statistics"]["unsubscriptions"] == {
        "adminUnsubscription": [],
        "userUnsubscription": [{"campaignId": 3, "eventTime": "2024-05-06T07:08:09.123+00:00", "ip": "127.0.0.1"}],
    }
    assert contact(client, "a@example.com")["statistics"] == answer["statistics"]
    assert answer["listIds"] == [2]  # an unsubscription does not leave lists
    changed = client.get("/contacts", params={"modifiedSince": answer["modifiedAt"]}).json()
    assert [c["email"] for c in changed["contacts"]] == ["a@example.com"]


def test_unsubscribe_defaults_identifier_types_and_errors(
    brevo_sandbox: BrevoSandbox, client: httpx.Client, ctl: httpx.Client
) -> None:
    client.post("/contacts", json={"ext_id": "crm-1", "attributes": {"SMS": "+33612345678"}})
    answer = ctl.post("/contacts/crm-1/unsubscribe", json={"identifierType": "ext_id"}).json()
    event = answer["statistics"]["unsubscriptions"]["userUnsubscription"][0]
    assert event["campaignId"] == 1 and ISO_MS.fullmatch(event["eventTime"])
    assert event["eventTime"] >= answer["createdAt"]  # "at" defaults to now
    assert ctl.post("/contacts/crm-1/unsubscribe", params={"identifierType": "ext_id"}).status_code == 200
    assert ctl.post("/contacts/%2B33612345678/unsubscribe").status_code == 200  # phone, detected from '+'
    assert len(unsubscriptions(client, "crm-1", identifierType="ext_id")["userUnsubscription"]) == 3

    nobody = ctl.post("/contacts/nobody%40example.com/unsubscribe")
    assert (nobody.status_code, nobody.json()) == (
        404,
        {"code": "document_not_found", "message": "Contact does not exist"},
    )
    for body in ({"at": "yesterday"}, {"campaignId": "3"}, {"campaignId": 0}, {"surprise": 1}, {"identifierType": "x"}):
        response = ctl.post("/contacts/crm-1/unsubscribe", json={"identifierType": "ext_id", **body})
        assert response.status_code == 400 and response.json()["code"] == "invalid_parameter", body
    assert len(unsubscriptions(client, "crm-1", identifierType="ext_id")["userUnsubscription"]) == 3


def test_unsubscribe_python_helper(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    created = client.post("/contacts", json={"email": "a@example.com"}).json()["id"]
    at = dt.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    answer = brevo_sandbox.unsubscribe(created, campaign_id=9, at=at)
    assert answer["id"] == created and answer["emailBlacklisted"] is True
    assert answer["statistics"]["unsubscriptions"]["userUnsubscription"] == [
        {"campaignId": 9, "eventTime": "2025-01-02T03:04:05.678+00:00", "ip": "127.0.0.1"}
    ]
    assert (
        brevo_sandbox.unsubscribe("a@example.com", at="2025-02-01T00:00:00+01:00")["statistics"]["unsubscriptions"][
            "userUnsubscription"
        ][1]["eventTime"]
        == "2025-01-31T23:00:00.000+00:00"
    )
    with pytest.raises(ApiError) as err:
        brevo_sandbox.unsubscribe("nobody@example.com")
    assert err.value.status == 404
    with pytest.raises(ApiError):
        brevo_sandbox.unsubscribe(created, at=dt.datetime(2025, 1, 1))  # naive: ambiguous


def test_resubscribing_keeps_the_link_unsubscription(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com"})
    brevo_sandbox.unsubscribe("a@example.com", campaign_id=5)
    client.put("/contacts/a@example.com", json={"emailBlacklisted": False})
    found = contact(client, "a@example.com")
    assert found["emailBlacklisted"] is False
    assert [e["campaignId"] for e in found["statistics"]["unsubscriptions"]["userUnsubscription"]] == [5]
    assert found["statistics"]["unsubscriptions"]["adminUnsubscription"] == []


def test_deleted_contact_takes_its_history_and_reset_wipes_everything(
    brevo_sandbox: BrevoSandbox, client: httpx.Client
) -> None:
    client.post("/contacts", json={"email": "a@example.com", "emailBlacklisted": True})
    assert client.delete("/contacts/a@example.com").status_code == 204
    client.post("/contacts", json={"email": "a@example.com"})
    assert unsubscriptions(client, "a@example.com") == NO_EVENTS
    brevo_sandbox.unsubscribe("a@example.com")
    client.post(
        "/contacts/doubleOptinConfirmation",
        json={"email": "d@example.com", "includeListIds": [2], "templateId": 1, "redirectionUrl": "https://x.io/"},
    )
    brevo_sandbox.reset()
    assert brevo_sandbox.pending_doi() == []
    client.post("/contacts", json={"email": "a@example.com"})
    assert unsubscriptions(client, "a@example.com") == NO_EVENTS


# --- modifiedAt on list membership ------------------------------------------------------------------------


def test_list_changes_move_modified_at_of_the_contacts_they_change(
    brevo_sandbox: BrevoSandbox, client: httpx.Client
) -> None:
    client.post("/contacts", json={"email": "in@example.com", "listIds": [2], "emailBlacklisted": True})
    client.post("/contacts", json={"email": "out@example.com"})

    def stamps() -> dict[str, str]:
        return {email: c["modifiedAt"] for email, c in by_email(brevo_sandbox).items()}

    list_id = brevo_sandbox.create_list("Mirror")
    before = stamps()
    added = client.post(f"/contacts/lists/{list_id}/contacts/add", json={"emails": ["in@example.com"]}).json()
    assert added == {"contacts": {"success": ["in@example.com"], "failure": []}}  # blacklisted: still added
    after_add = stamps()
    assert (
        after_add["in@example.com"] > before["in@example.com"]
        and after_add["out@example.com"] == before["out@example.com"]
    )
    client.post(f"/contacts/lists/{list_id}/contacts/add", json={"emails": ["in@example.com"]})  # already in
    assert stamps() == after_add
    assert client.delete(f"/contacts/lists/{list_id}").status_code == 204
    after_delete = stamps()
    assert after_delete["in@example.com"] > after_add["in@example.com"]
    assert after_delete["out@example.com"] == before["out@example.com"]
    assert by_email(brevo_sandbox)["in@example.com"]["listIds"] == [2]


def test_import_that_only_adds_to_a_list_moves_modified_at(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    list_id = brevo_sandbox.create_list("Mirror")
    client.post("/contacts", json={"email": "a@example.com"})
    client.post("/contacts", json={"email": "b@example.com", "listIds": [list_id]})
    before = {e: c["modifiedAt"] for e, c in by_email(brevo_sandbox).items()}
    rows = [{"email": "a@example.com", "attributes": {"FIRSTNAME": "ignored"}}, {"email": "b@example.com"}]
    import_and_wait(client, {"jsonBody": rows, "listIds": [list_id], "updateExistingContacts": False})
    after = by_email(brevo_sandbox)
    assert after["a@example.com"]["listIds"] == [list_id] and after["a@example.com"]["attributes"] == {}
    assert after["a@example.com"]["modifiedAt"] > before["a@example.com"]
    assert after["b@example.com"]["modifiedAt"] == before["b@example.com"]  # already a member: unchanged


# --- double opt-in ------------------------------------------------------------------------------------------

DOI = {
    "email": "Dora@Example.com",
    "includeListIds": [2],
    "templateId": 3,
    "redirectionUrl": "https://shop.example/welcome",
    "attributes": {"FIRSTNAME": "Dora", "UNKNOWN": "x", "LASTNAME": ["a", "b"]},
}


def test_doi_for_a_new_contact_creates_it_only_when_confirmed(
    brevo_sandbox: BrevoSandbox, client: httpx.Client, ctl: httpx.Client
) -> None:
    response = client.post("/contacts/doubleOptinConfirmation", json=DOI)
    assert (response.status_code, response.content) == (201, b"")
    assert brevo_sandbox.contacts() == []
    assert client.get("/contacts/dora@example.com").status_code == 404
    pending = ctl.get("/doi").json()["pending"]
    assert len(pending) == 1
    token = pending[0].pop("token")
    assert ISO_MS.fullmatch(pending[0].pop("requested_at"))
    assert pending[0] == {
        "email": "dora@example.com",
        "templateId": 3,
        "includeListIds": [2],
        "excludeListIds": [],
        "attributes": DOI["attributes"],
        "redirectionUrl": "https://shop.example/welcome",
    }
    confirmed = ctl.post(f"/doi/{token}/confirm")
    assert confirmed.status_code == 200
    assert confirmed.json() == {"redirectionUrl": "https://shop.example/welcome", "contactId": 1, "created": True}
    found = contact(client, "dora@example.com")
    # unknown attributes and values that do not fit (an array for a text attribute) are dropped, as elsewhere
    assert (found["attributes"], found["listIds"], found["emailBlacklisted"]) == ({"FIRSTNAME": "Dora"}, [2], False)
    assert ctl.get("/doi").json() == {"pending": []}
    again = ctl.post(f"/doi/{token}/confirm")
    assert again.status_code == 404 and again.json()["code"] == "document_not_found"


def test_doi_for_an_existing_contact_is_204_and_changes_it_only_when_confirmed(
    brevo_sandbox: BrevoSandbox, client: httpx.Client
) -> None:
    keep, leave = brevo_sandbox.create_list("Keep"), brevo_sandbox.create_list("Leave")
    client.post(
        "/contacts", json={"email": "dora@example.com", "attributes": {"LASTNAME": "Old"}, "listIds": [keep, leave]}
    )
    before = contact(client, "dora@example.com")
    body = {**DOI, "attributes": {"FIRSTNAME": "Dora", "LASTNAME": ""}, "excludeListIds": [leave]}
    response = client.post("/contacts/doubleOptinConfirmation", json=body)
    assert (response.status_code, response.content) == (204, b"")
    assert contact(client, "dora@example.com") == before
    [pending] = brevo_sandbox.pending_doi(email="DORA@example.com")
    assert pending["excludeListIds"] == [leave]
    assert brevo_sandbox.confirm_doi(pending["token"]) == {
        "redirectionUrl": DOI["redirectionUrl"],
        "contactId": before["id"],
        "created": False,
    }
    after = contact(client, "dora@example.com")
    assert after["attributes"] == {"FIRSTNAME": "Dora"}  # "" erases, as in PUT
    assert after["listIds"] == [2, keep] and after["modifiedAt"] > before["modifiedAt"]
    with pytest.raises(ApiError) as err:
        brevo_sandbox.confirm_doi(pending["token"])
    assert err.value.status == 404


def test_each_doi_request_is_its_own_pending_confirmation(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    client.post("/contacts/doubleOptinConfirmation", json=DOI)
    client.post("/contacts/doubleOptinConfirmation", json={**DOI, "email": "eve@example.com"})
    client.post("/contacts/doubleOptinConfirmation", json={**DOI, "templateId": 4})
    assert [p["templateId"] for p in brevo_sandbox.pending_doi(email="dora@example.com")] == [3, 4]
    assert len(brevo_sandbox.pending_doi()) == 3
    brevo_sandbox.confirm_doi(brevo_sandbox.pending_doi(email="eve@example.com")[0]["token"])
    assert [c["email"] for c in brevo_sandbox.contacts()] == ["eve@example.com"]
    assert len(brevo_sandbox.pending_doi()) == 2


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in DOI.items() if k != key}


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (_without("email"), "missing_parameter", "email is required"),
        (_without("includeListIds"), "missing_parameter", "includeListIds is required"),
        (_without("redirectionUrl"), "missing_parameter", "redirectionUrl is required"),
        (_without("templateId"), "missing_parameter", "templateId is required"),
        ({**DOI, "email": "not-an-email"}, "invalid_parameter", "Invalid email address"),
        ({**DOI, "includeListIds": []}, "invalid_parameter", "includeListIds should not be empty"),
        ({**DOI, "includeListIds": ["2"]}, "invalid_parameter", "includeListIds should be an array of integers"),
        ({**DOI, "excludeListIds": 2}, "invalid_parameter", "excludeListIds should be an array of integers"),
        ({**DOI, "redirectionUrl": "welcome"}, "invalid_parameter", "redirectionUrl should be an http(s) URL"),
        ({**DOI, "templateId": "3"}, "invalid_parameter", "templateId should be an integer"),
        ({**DOI, "templateId": 11}, "invalid_parameter", "Template ID does not exist"),
        ({**DOI, "attributes": []}, "invalid_parameter", "attributes should be an object"),
        (
            {**DOI, "attributes": {"FIRSTNAME": {"x": 1}}},
            "invalid_parameter",
            "attributes.FIRSTNAME should be a number, a string, a boolean or an array of strings",
        ),
        (
            {**DOI, "attributes": {"TAGS": [1]}},
            "invalid_parameter",
            "attributes.TAGS should be a number, a string, a boolean or an array of strings",
        ),
        (
            {**DOI, "contactPixelTrackingConsent": "yes"},
            "invalid_parameter",
            "contactPixelTrackingConsent should be boolean",
        ),
        ({**DOI, "includeListIds": [2, 77]}, "invalid_parameter", "List ID(s) not found: 77"),
        ({**DOI, "excludeListIds": [78]}, "invalid_parameter", "List ID(s) not found: 78"),
    ],
)
def test_doi_validation(
    brevo_sandbox: BrevoSandbox, client: httpx.Client, body: dict[str, Any], code: str, message: str
) -> None:
    response = client.post("/contacts/doubleOptinConfirmation", json=body)
    assert response.status_code == 400
    assert response.json() == {"code": code, "message": message}
    assert brevo_sandbox.pending_doi() == []


def test_doi_templates_are_a_setting(brevo_sandbox: BrevoSandbox, client: httpx.Client, ctl: httpx.Client) -> None:
    assert ctl.get("/config").json()["doi_template_ids"] == list(range(1, 11))
    assert ctl.post("/config", json={"doi_template_ids": [42]}).json()["doi_template_ids"] == [42]
    assert client.post("/contacts/doubleOptinConfirmation", json={**DOI, "templateId": 42}).status_code == 201
    assert client.post("/contacts/doubleOptinConfirmation", json=DOI).status_code == 400
    assert brevo_sandbox.configure(doi_template_ids="5, 6")["doi_template_ids"] == [5, 6]
    for bad in ([0], ["x"], [True], "1,,2", 7):
        assert ctl.post("/config", json={"doi_template_ids": bad}).status_code == 400, bad
    optional = {
        **DOI,
        "templateId": 5,
        "excludeListIds": None,
        "attributes": None,
        "contactPixelTrackingConsent": False,
    }
    assert client.post("/contacts/doubleOptinConfirmation", json=optional).status_code == 201


# --- batch updates ------------------------------------------------------------------------------------------


def test_batch_unknown_contacts_refuse_the_whole_batch(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    for i in range(3):
        client.post("/contacts", json={"email": f"b{i}@example.com", "attributes": {"SMS": f"+3361234567{i}"}})
    before = brevo_sandbox.contacts()
    items = [
        {"email": "b0@example.com", "emailBlacklisted": True, "listIds": [2]},
        {"id": 2, "attributes": {"FIRSTNAME": "X"}},
        {"sms": "+33612345672", "smsBlacklisted": True},
        {"email": "missing@example.com"},
        {"id": 999},
    ]
    response = client.post("/contacts/batch", json={"contacts": items})
    assert response.status_code == 404
    assert response.json() == {"code": "document_not_found", "message": "No contact found for indexes 3,4"}
    assert brevo_sandbox.contacts() == before
    assert unsubscriptions(client, "b0@example.com") == NO_EVENTS
    assert client.post("/contacts/batch", json={"contacts": items[:3]}).status_code == 204
    after = by_email(brevo_sandbox)
    assert after["b0@example.com"]["emailBlacklisted"] and after["b0@example.com"]["listIds"] == [2]
    assert after["b1@example.com"]["attributes"]["FIRSTNAME"] == "X"
    assert after["b2@example.com"]["smsBlacklisted"] is True


def test_batch_ext_id_sets_the_ext_id_but_does_not_identify(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com", "ext_id": "old"})
    response = client.post("/contacts/batch", json={"contacts": [{"email": "a@example.com", "ext_id": "new"}]})
    assert response.status_code == 204
    assert brevo_sandbox.contacts()[0]["attributes"]["EXT_ID"] == "new"
    response = client.post("/contacts/batch", json={"contacts": [{"ext_id": "new", "attributes": {"FIRSTNAME": "X"}}]})
    assert response.status_code == 400
    assert response.json() == {"code": "missing_parameter", "message": "contacts[0]: pass one of email, id or sms"}


def test_batch_attributes_follow_put(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    start = {"FIRSTNAME": "Ann", "LASTNAME": "Lee", "SMS": "+33612345678"}
    client.post("/contacts", json={"email": "put@example.com", "attributes": start})
    client.post("/contacts", json={"email": "batch@example.com", "attributes": {**start, "SMS": "+33612345679"}})
    change = {"FIRSTNAME": None, "LASTNAME": "", "SMS": "", "UNKNOWN": "x"}
    assert client.put("/contacts/put@example.com", json={"attributes": change}).status_code == 204
    batch = {"contacts": [{"email": "batch@example.com", "attributes": change}]}
    assert client.post("/contacts/batch", json=batch).status_code == 204
    contacts = by_email(brevo_sandbox)
    assert contacts["put@example.com"]["attributes"] == contacts["batch@example.com"]["attributes"] == {}
    client.post(
        "/contacts/batch", json={"contacts": [{"email": "batch@example.com", "attributes": {"FIRSTNAME": "B"}}]}
    )
    client.post("/contacts/batch", json={"contacts": [{"email": "batch@example.com", "attributes": {"LASTNAME": "C"}}]})
    assert by_email(brevo_sandbox)["batch@example.com"]["attributes"] == {"FIRSTNAME": "B", "LASTNAME": "C"}


def test_batch_lists_flags_and_two_items_for_one_contact(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    other = brevo_sandbox.create_list("Other")
    client.post("/contacts", json={"email": "a@example.com", "listIds": [2, other], "emailBlacklisted": True})
    before = contact(client, "a@example.com")
    items = [
        {"email": "a@example.com", "unlinkListIds": [2], "emailBlacklisted": False, "attributes": {"FIRSTNAME": "A"}},
        {"id": before["id"], "smsBlacklisted": True, "attributes": {"LASTNAME": "B"}},
    ]
    assert client.post("/contacts/batch", json={"contacts": items}).status_code == 204
    after = contact(client, "a@example.com")
    assert after["listIds"] == [other] and after["emailBlacklisted"] is False and after["smsBlacklisted"] is True
    assert after["attributes"] == {"FIRSTNAME": "A", "LASTNAME": "B"}
    assert after["modifiedAt"] > before["modifiedAt"]
    assert len(after["statistics"]["unsubscriptions"]["adminUnsubscription"]) == 1  # from the creation


@pytest.mark.parametrize("key", ["listIds", "unlinkListIds"])
def test_batch_unknown_list_answers_as_put_does(brevo_sandbox: BrevoSandbox, client: httpx.Client, key: str) -> None:
    client.post("/contacts", json={"email": "a@example.com"})
    client.post("/contacts", json={"email": "b@example.com"})
    before = brevo_sandbox.contacts()
    put = client.put("/contacts/a@example.com", json={key: [999]})
    items = [{"email": "b@example.com", "emailBlacklisted": True}, {"email": "a@example.com", key: [999]}]
    batch = client.post("/contacts/batch", json={"contacts": items})
    assert (batch.status_code, batch.json()) == (put.status_code, put.json())
    assert batch.json() == {"code": "invalid_parameter", "message": "List ID(s) not found: 999"}
    assert brevo_sandbox.contacts() == before  # the first item is rolled back too


def test_batch_size_limit_is_a_setting(brevo_sandbox: BrevoSandbox, client: httpx.Client) -> None:
    client.post("/contacts", json={"email": "a@example.com"})
    item = {"email": "a@example.com", "attributes": {"FIRSTNAME": "X"}}
    assert client.post("/contacts/batch", json={"contacts": [item] * 1000}).status_code == 204
    over = client.post("/contacts/batch", json={"contacts": [item] * 1001})
    assert over.status_code == 400
    assert over.json() == {"code": "out_of_range", "message": "contacts: at most 1000 contacts per batch (got 1001)"}
    brevo_sandbox.configure(max_batch_contacts=2)
    assert client.post("/contacts/batch", json={"contacts": [item] * 2}).status_code == 204
    assert client.post("/contacts/batch", json={"contacts": [item] * 3}).json()["code"] == "out_of_range"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"id": "1"}, "contacts[0].id should be an integer"),
        ({"email": 5}, "contacts[0].email should be a string"),
        ({"email": "a@example.com", "emailBlacklisted": "yes"}, "emailBlacklisted should be boolean"),
        ({"email": "a@example.com", "unlinkListIds": "2"}, "unlinkListIds should be an array of integers"),
    ],
)
def test_batch_item_validation(client: httpx.Client, item: dict[str, Any], message: str) -> None:
    client.post("/contacts", json={"email": "a@example.com"})
    response = client.post("/contacts/batch", json={"contacts": [item]})
    assert response.status_code == 400 and response.json() == {"code": "invalid_parameter", "message": message}


# --- lists --------------------------------------------------------------------------------------------------


def test_list_add_and_remove_by_ext_ids_with_blacklisted_contacts(
    brevo_sandbox: BrevoSandbox, client: httpx.Client
) -> None:
    list_id = brevo_sandbox.create_list("L")
    client.post("/contacts", json={"ext_id": "e1", "attributes": {"SMS": "+33612345678"}, "emailBlacklisted": True})
    client.post("/contacts", json={"email": "e2@example.com", "ext_id": "e2", "smsBlacklisted": True})
    added = client.post(f"/contacts/lists/{list_id}/contacts/add", json={"extIds": ["e1", "e2", "nope"]})
    assert (added.status_code, added.json()) == (201, {"contacts": {"success": ["e1", "e2"], "failure": ["nope"]}})
    assert client.get(f"/contacts/lists/{list_id}").json()["totalBlacklisted"] == 1
    stamps = {c["id"]: c["modifiedAt"] for c in brevo_sandbox.contacts()}
    removed = client.post(f"/contacts/lists/{list_id}/contacts/remove", json={"extIds": ["e1", "nope"]})
    assert (removed.status_code, removed.json()) == (201, {"contacts": {"success": ["e1"], "failure": ["nope"]}})
    after = {c["id"]: c for c in brevo_sandbox.contacts()}
    assert after[1]["listIds"] == [] and after[1]["modifiedAt"] > stamps[1]
    assert after[2]["listIds"] == [list_id] and after[2]["modifiedAt"] == stamps[2]
    missing = client.post("/contacts/lists/999/contacts/remove", json={"extIds": ["e2"]})
    assert (missing.status_code, missing.json()) == (
        404,
        {"code": "document_not_found", "message": "List ID does not exist"},
    )


# --- deletes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "identifier_type"),
    [
        ("a@example.com", "email_id"),
        ("a@example.com", None),
        ("1", "contact_id"),
        ("1", None),
        ("crm-1", "ext_id"),
        ("+33612345678", "phone_id"),
        ("0033612345678", "phone_id"),
    ],
)
def test_delete_by_each_identifier_type(
    brevo_sandbox: BrevoSandbox, client: httpx.Client, identifier: str, identifier_type: str | None
) -> None:
    list_id = brevo_sandbox.create_list("L")
    body = {"email": "a@example.com", "ext_id": "crm-1", "attributes": {"SMS": "+33612345678"}, "listIds": [2, list_id]}
    client.post("/contacts", json=body)
    params = {"identifierType": identifier_type} if identifier_type else {}
    response = client.delete(f"/contacts/{identifier}", params=params)
    assert (response.status_code, response.content) == (204, b"")
    assert brevo_sandbox.contacts() == []
    assert [client.get(f"/contacts/lists/{i}").json()["totalSubscribers"] for i in (2, list_id)] == [0, 0]
    again = client.delete(f"/contacts/{identifier}", params=params)
    assert (again.status_code, again.json()) == (
        404,
        {"code": "document_not_found", "message": "Contact does not exist"},
    )
    client.post("/contacts", json={"email": "a@example.com"})  # the identifiers are free again
    assert contact(client, "a@example.com")["listIds"] == []


def test_delete_is_counted_in_the_contacts_bucket(brevo_sandbox_factory: Callable[..., BrevoSandbox]) -> None:
    sandbox = brevo_sandbox_factory(contacts_per_hour=3)
    with api(sandbox) as c:
        c.post("/contacts", json={"email": "a@example.com"})
        first = c.delete("/contacts/a@example.com")
        assert (first.status_code, first.headers["x-sib-ratelimit-limit"]) == (204, "3")
        assert first.headers["x-sib-ratelimit-remaining"] == "1"
        assert c.delete("/contacts/a@example.com").status_code == 404
        assert c.delete("/contacts/a@example.com").status_code == 429
        assert c.get("/processes").status_code == 200
