"""The sandbox driven by the official brevo-python SDK: it accepts what the SDK sends and the SDK
parses what it answers."""

from __future__ import annotations

import pytest
from brevo import Brevo
from brevo.contacts import RemoveContactFromListRequestBodyExtIds, UpdateBatchContactsRequestContactsItem
from brevo.core.api_error import ApiError as SdkApiError
from polling import wait_for

from airflow_provider_contactsync.sandbox import BrevoSandbox


@pytest.fixture
def client(brevo_sandbox: BrevoSandbox) -> Brevo:
    return Brevo(api_key=brevo_sandbox.api_key, base_url=brevo_sandbox.url, max_retries=0)


def test_sdk_base_url_is_the_v3_prefix(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    client.account.get_account()
    assert brevo_sandbox.url.endswith("/v3")
    assert [r["path"] for r in brevo_sandbox.requests()] == ["/v3/account"]


def test_create_get_update_delete_contact(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    created = client.contacts.create_contact(
        email="Ann@Example.com", attributes={"FIRSTNAME": "Ann", "SMS": "+33612345678"}, list_ids=[2]
    )
    assert created.id is not None
    info = client.contacts.get_contact_info("ann@example.com")
    assert info.id == created.id and info.email == "ann@example.com"
    assert info.list_ids == [2]
    assert info.attributes.FIRSTNAME == "Ann"  # type: ignore[attr-defined]
    assert info.attributes.SMS == "33612345678"  # type: ignore[attr-defined]

    client.contacts.update_contact(str(created.id), attributes={"LASTNAME": "Lee"}, identifier_type="contact_id")
    by_id = client.contacts.get_contact_info(str(created.id))
    assert by_id.attributes.LASTNAME == "Lee"  # type: ignore[attr-defined]
    assert by_id.modified_at >= by_id.created_at

    # upsert through POST with updateEnabled answers 204 (the SDK returns None / an empty model)
    client.contacts.create_contact(email="ann@example.com", attributes={"FIRSTNAME": "Anne"}, update_enabled=True)
    assert brevo_sandbox.contacts()[0]["attributes"]["FIRSTNAME"] == "Anne"

    client.contacts.delete_contact("ann@example.com")
    with pytest.raises(SdkApiError) as err:
        client.contacts.get_contact_info("ann@example.com")
    assert err.value.status_code == 404
    assert brevo_sandbox.contacts() == []


def test_identifier_types(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    client.contacts.create_contact(ext_id="crm-7", attributes={"SMS": "0033612345678"})
    assert client.contacts.get_contact_info("crm-7", identifier_type="ext_id").attributes.EXT_ID == "crm-7"  # type: ignore[attr-defined]
    assert client.contacts.get_contact_info("+33612345678").id == 1
    assert client.contacts.get_contact_info("33612345678", identifier_type="phone_id").id == 1
    client.contacts.update_contact("crm-7", identifier_type="ext_id", attributes={"EMAIL": "new@example.com"})
    assert client.contacts.get_contact_info("new@example.com").id == 1


def test_attributes_lists_and_membership(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    client.contacts.create_attribute(
        "category",
        "GENDER",
        type="category",
        enumeration=[{"value": 1, "label": "Men"}, {"value": 2, "label": "Women"}],
    )
    client.contacts.create_attribute("normal", "BIRTHDAY", type="date")
    client.contacts.create_attribute("normal", "COLORS", type="multiple-choice", multi_category_options=["red", "blue"])
    names = {a.name: a for a in client.contacts.get_attributes().attributes or []}
    assert {"GENDER", "BIRTHDAY", "COLORS", "FIRSTNAME", "SMS", "EXT_ID"} <= set(names)
    assert names["GENDER"].category == "category" and names["GENDER"].enumeration
    assert names["COLORS"].multi_category_options == ["red", "blue"]

    folder = client.contacts.create_folder(name="Sync")
    new_list = client.contacts.create_list(name="Customers", folder_id=folder.id)
    lists = client.contacts.get_lists(limit=50)
    assert new_list.id in [lst.id for lst in lists.lists or []]

    for i in range(3):
        client.contacts.create_contact(
            email=f"u{i}@example.com",
            attributes={"GENDER": "Women", "BIRTHDAY": "1990-01-0" + str(i + 1), "COLORS": ["red"]},
        )
    added = client.contacts.add_contact_to_list(
        new_list.id, request={"emails": ["u0@example.com", "u1@example.com", "nobody@example.com"]}
    )
    assert added.contacts.success == ["u0@example.com", "u1@example.com"]
    assert added.contacts.failure == ["nobody@example.com"]
    members = client.contacts.get_contacts_from_list(new_list.id)
    assert members.count == 2
    removed = client.contacts.remove_contact_from_list(new_list.id, request={"emails": ["u0@example.com"]})
    assert removed.contacts.success == ["u0@example.com"]
    assert client.contacts.get_list(new_list.id).total_subscribers == 1
    contact = client.contacts.get_contact_info("u2@example.com")
    assert contact.attributes.GENDER == "Women"  # type: ignore[attr-defined]
    assert contact.attributes.BIRTHDAY == "1990-01-03"  # type: ignore[attr-defined]


def test_import_and_process_status(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    rows = [{"email": f"p{i}@example.com", "attributes": {"FIRSTNAME": f"P{i}", "UNKNOWN": "x"}} for i in range(20)]
    rows.append({"email": "not-an-email", "attributes": {}})
    rows.append({"email": "p0@example.com", "attributes": {}})
    process = client.contacts.import_contacts(json_body=rows, list_ids=[2])
    done = wait_for(lambda: (p := client.process.get_process(process.process_id)).status == "completed" and p)
    counts = done.info.import_
    assert counts.invalid_emails == 1 and counts.duplicate_email_id == 1
    assert len(brevo_sandbox.contacts()) == 20
    assert "UNKNOWN" not in brevo_sandbox.contacts()[0]["attributes"]
    listing = client.process.get_processes()
    assert listing.count == 1


def test_contacts_listing_with_modified_since(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    for i in range(5):
        client.contacts.create_contact(email=f"m{i}@example.com")
    first = client.contacts.get_contacts(sort="asc", limit=2)
    assert first.count == 5 and [c.email for c in first.contacts or []] == [
        "m0@example.com",
        "m1@example.com",
    ]
    cursor = client.contacts.get_contact_info("m4@example.com").modified_at
    client.contacts.update_contact("m1@example.com", attributes={"FIRSTNAME": "changed"})
    since = client.contacts.get_contacts(modified_since=cursor, sort="asc")
    assert [c.email for c in since.contacts or []] == ["m1@example.com", "m4@example.com"]


def test_batch_is_all_or_nothing(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    for i in range(3):
        client.contacts.create_contact(email=f"b{i}@example.com")
    with pytest.raises(SdkApiError) as err:
        client.contacts.update_batch_contacts(
            contacts=[
                {"email": "b0@example.com", "attributes": {"FIRSTNAME": "X"}},
                {"email": "missing@example.com", "attributes": {"FIRSTNAME": "X"}},
                {"id": 999, "attributes": {"FIRSTNAME": "X"}},
            ]
        )
    assert err.value.status_code == 404
    assert err.value.body == {"code": "document_not_found", "message": "No contact found for indexes 1,2"}
    assert all("FIRSTNAME" not in c["attributes"] for c in brevo_sandbox.contacts())
    client.contacts.update_batch_contacts(
        contacts=[
            {"email": "b0@example.com", "attributes": {"FIRSTNAME": "X"}},
            {"id": 2, "attributes": {"FIRSTNAME": "Y"}, "listIds": [2]},
        ]
    )
    firstnames = [c["attributes"].get("FIRSTNAME") for c in brevo_sandbox.contacts()]
    assert firstnames == ["X", "Y", None]


def test_contact_info_with_unsubscriptions(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    created = client.contacts.create_contact(email="u@example.com")
    assert client.contacts.get_contact_info("u@example.com").statistics.unsubscriptions.admin_unsubscription == []
    client.contacts.update_contact("u@example.com", email_blacklisted=True)
    client.contacts.update_contact("u@example.com", email_blacklisted=False)
    brevo_sandbox.unsubscribe(created.id, campaign_id=12, at="2025-03-04T05:06:07.890Z")
    info = client.contacts.get_contact_info(str(created.id), identifier_type="contact_id")
    assert info.email_blacklisted is True
    unsubscriptions = info.statistics.unsubscriptions
    [admin] = unsubscriptions.admin_unsubscription
    assert admin.ip == "127.0.0.1" and admin.event_time < info.modified_at
    [user] = unsubscriptions.user_unsubscription
    assert (user.campaign_id, user.event_time, user.ip) == (12, "2025-03-04T05:06:07.890+00:00", "127.0.0.1")


def test_batch_update_with_unlink_lists_and_blacklist_flags(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    second = client.contacts.create_list(name="Second", folder_id=1).id
    for i in range(2):
        client.contacts.create_contact(email=f"k{i}@example.com", list_ids=[2, second])
    client.contacts.update_batch_contacts(
        contacts=[
            UpdateBatchContactsRequestContactsItem(
                email="k0@example.com", unlink_list_ids=[second], email_blacklisted=True, attributes={"FIRSTNAME": "K"}
            ),
            UpdateBatchContactsRequestContactsItem(id=2, unlink_list_ids=[2], sms_blacklisted=True),
        ]
    )
    first, other = (client.contacts.get_contact_info(f"k{i}@example.com") for i in range(2))
    assert (first.list_ids, first.email_blacklisted, first.sms_blacklisted) == ([2], True, False)
    assert first.attributes.FIRSTNAME == "K"  # type: ignore[attr-defined]
    assert len(first.statistics.unsubscriptions.admin_unsubscription) == 1
    assert (other.list_ids, other.email_blacklisted, other.sms_blacklisted) == ([second], False, True)
    with pytest.raises(SdkApiError) as err:
        client.contacts.update_batch_contacts(
            contacts=[UpdateBatchContactsRequestContactsItem(email="nobody@example.com", email_blacklisted=True)]
        )
    assert err.value.status_code == 404
    assert err.value.body == {"code": "document_not_found", "message": "No contact found for indexes 0"}


def test_create_doi_contact(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    client.contacts.create_doi_contact(
        email="doi@example.com",
        include_list_ids=[2],
        redirection_url="https://example.com/thanks",
        template_id=1,
        attributes={"FIRSTNAME": "Doi"},
        contact_pixel_tracking_consent=True,
    )
    assert brevo_sandbox.contacts() == []
    [pending] = brevo_sandbox.pending_doi()
    assert brevo_sandbox.confirm_doi(pending["token"])["redirectionUrl"] == "https://example.com/thanks"
    info = client.contacts.get_contact_info("doi@example.com")
    assert info.list_ids == [2] and info.attributes.FIRSTNAME == "Doi"  # type: ignore[attr-defined]
    client.contacts.create_doi_contact(  # an existing contact: 204
        email="doi@example.com", include_list_ids=[2], redirection_url="https://example.com/thanks", template_id=2
    )
    assert [r["status"] for r in brevo_sandbox.requests(path_prefix="/v3/contacts/doubleOptin")] == [201, 204]
    with pytest.raises(SdkApiError) as err:
        client.contacts.create_doi_contact(
            email="doi@example.com", include_list_ids=[2], redirection_url="https://example.com/", template_id=99
        )
    assert err.value.status_code == 400
    assert err.value.body == {"code": "invalid_parameter", "message": "Template ID does not exist"}


def test_delete_contact_by_ext_id(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    client.contacts.create_contact(ext_id="crm-9", email="d@example.com", list_ids=[2])
    client.contacts.delete_contact("crm-9", identifier_type="ext_id")
    assert brevo_sandbox.contacts() == []
    assert client.contacts.get_list(2).total_subscribers == 0
    with pytest.raises(SdkApiError) as err:
        client.contacts.delete_contact("crm-9", identifier_type="ext_id")
    assert err.value.status_code == 404
    assert err.value.body == {"code": "document_not_found", "message": "Contact does not exist"}


def test_remove_contact_from_list_by_ext_ids(brevo_sandbox: BrevoSandbox, client: Brevo) -> None:
    for i in range(3):
        client.contacts.create_contact(
            ext_id=f"x{i}", email=f"x{i}@example.com", list_ids=[2], email_blacklisted=i == 0
        )
    removed = client.contacts.remove_contact_from_list(
        2, request=RemoveContactFromListRequestBodyExtIds(ext_ids=["x0", "x1", "x9"])
    )
    assert removed.contacts.success == ["x0", "x1"]
    assert removed.contacts.failure == ["x9"]
    assert [c["listIds"] for c in brevo_sandbox.contacts()] == [[], [], [2]]
