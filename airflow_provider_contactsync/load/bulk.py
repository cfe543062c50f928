"""Bulk writes to existing contacts: list membership, batch updates, deletes; never a loop per contact
where Brevo has a bulk endpoint.

- List calls (``/contacts/lists/{id}/contacts/add|remove``) take emails or ext ids, 150 a call.
- ``POST /contacts/batch`` finds contacts by email or SMS, and is all-or-nothing: a batch naming a
  contact Brevo does not know is refused whole (404 ``No contact found for indexes 3,4``). The
  contacts named are taken out and the rest sent again (one more request per such batch).
- A contact known only by its EXT_ID has no batch address: it is updated on its own (``PUT`` with
  ``identifierType=ext_id``). Deleting has no bulk endpoint at all: one ``DELETE`` per contact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from airflow_provider_contactsync.core.errors import BrevoError
from airflow_provider_contactsync.load.identity import ContactIds

T = TypeVar("T")

BATCH_SIZE = 100
"""Contacts per ``POST /contacts/batch`` (Brevo documents no maximum)."""


def list_address(ids: ContactIds) -> tuple[str, str] | None:
    """How a list call names the contact: ``("emails", email)`` or ``("extIds", ext_id)``; None for SMS only."""
    if ids.email is not None:
        return "emails", ids.email
    if ids.ext_id is not None:
        return "extIds", ids.ext_id
    return None


def batch_address(ids: ContactIds) -> dict[str, str] | None:
    """How a batch update names the contact: ``{"email": ...}`` or ``{"sms": "+..."}``; None for EXT_ID only."""
    if ids.email is not None:
        return {"email": ids.email}
    if ids.sms is not None:
        return {"sms": f"+{ids.sms}"}
    return None


def change_lists(hook: Any, list_id: int, action: str, contacts: Sequence[ContactIds]) -> int:
    """Add contacts to (or remove them from) one list, 150 a call; SMS-only contacts through batches.

    Returns how many Brevo reported done (a contact already in, or not in, the list is not an error).
    """
    grouped: dict[str, list[str]] = {"emails": [], "extIds": []}
    by_sms: list[dict[str, Any]] = []
    for ids in contacts:
        address = list_address(ids)
        if address is not None:
            grouped[address[0]].append(address[1])
        elif ids.sms is not None:
            by_sms.append({"sms": f"+{ids.sms}", "listIds" if action == "add" else "unlinkListIds": [list_id]})
    done = 0
    call = hook.add_to_list if action == "add" else hook.remove_from_list
    for key, values in grouped.items():
        if values:
            answer = call(list_id, **{"emails" if key == "emails" else "ext_ids": values})
            done += len(answer.get("success") or [])
    if by_sms:
        done += len(by_sms) - len(update_batches(hook, by_sms))
    return done


def update_batches(hook: Any, bodies: Sequence[Mapping[str, Any]], *, batch_size: int = BATCH_SIZE) -> set[int]:
    """Send batch updates; return the positions of contacts Brevo does not know (the rest are updated)."""
    missing: set[int] = set()
    for start in range(0, len(bodies), batch_size):
        part = list(range(start, min(start + batch_size, len(bodies))))
        while part:
            try:
                hook.update_contacts_batch([bodies[i] for i in part], batch_size=len(part))
                break
            except BrevoError as err:
                unknown = err.metadata.get("missing_indexes") if err.status == 404 else None
                if not unknown:
                    raise
                gone = {part[i] for i in unknown if 0 <= i < len(part)}
                missing |= gone
                part = [i for i in part if i not in gone]
    return missing


def update_each(
    hook: Any, contacts: Iterable[tuple[T, ContactIds, dict[str, Any]]], *, on_missing: Callable[[T], None]
) -> int:
    """Update contacts known only by EXT_ID, one ``PUT`` each; ``on_missing`` for those Brevo lacks."""
    done = 0
    for tag, ids, body in contacts:
        try:
            hook.update_contact(
                ids.ext_id,
                "EXT_ID",
                attributes=body.get("attributes") or None,
                list_ids=body.get("listIds"),
                unlink_list_ids=body.get("unlinkListIds"),
                email_blacklisted=body.get("emailBlacklisted"),
                sms_blacklisted=body.get("smsBlacklisted"),
            )
            done += 1
        except BrevoError as err:
            if err.status != 404:
                raise
            on_missing(tag)
    return done


def delete_contact(hook: Any, ids: ContactIds) -> bool:
    """Delete one contact by its first identifier; False when Brevo no longer had it."""
    if ids.email is not None:
        return bool(hook.delete_contact(ids.email, "EMAIL", missing_ok=True))
    if ids.ext_id is not None:
        return bool(hook.delete_contact(ids.ext_id, "EXT_ID", missing_ok=True))
    if ids.sms is not None:
        return bool(hook.delete_contact(f"+{ids.sms}", "SMS", missing_ok=True))
    return False
