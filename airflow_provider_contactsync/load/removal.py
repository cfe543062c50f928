"""Deletes: which contacts a run removes from the Brevo side, the guardrail, and doing it in bulk.

Two detections feed it: rows ``source.deleted_when`` marks deleted (staged with a ``delete``
intent), and, in mirror mode, contacts this source delivered that a full read no longer returned.
A source only ever removes contacts it owns (docs/adr/0006-deletes-and-ownership.md): those it
created in Brevo, or with ``deletes.ownership: delivered`` every contact it delivered. Others are
kept, and said so.

The guardrail (``deletes.max_per_run``) is checked on the whole plan before the run sends
anything: a run over it raises :class:`MassDeleteError` and changes nothing in Brevo.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_contactsync.core.errors import ContactsyncError
from airflow_provider_contactsync.core.spec import Deletes
from airflow_provider_contactsync.load.bulk import (
    batch_address,
    change_lists,
    delete_contact,
    update_batches,
    update_each,
)
from airflow_provider_contactsync.load.ledger import ContactLedger, LedgerContact
from airflow_provider_contactsync.load.outcomes import show

SAMPLE = 10
"""Contacts named in a guardrail failure and in the run summary."""

DELETED_IN_SOURCE = "deleted in the source"
GONE_FROM_SOURCE = "no longer in the source (mirror)"

STATE_OF = {"unlink": "unlinked", "blacklist": "blacklisted", "delete": "deleted"}


class MassDeleteError(ContactsyncError):
    """A run would remove more contacts than ``deletes.max_per_run`` allows; nothing was sent."""

    def __init__(self, count: int, limit: int, owned: int, setting: int | str, sample: list[str]) -> None:
        self.count, self.limit, self.owned, self.sample = count, limit, owned, sample
        share = f" ({count / owned:.0%} of the {owned:,} contacts this source owns)" if owned else ""
        super().__init__(
            f"this run would remove {count:,} contacts{share}, over deletes.max_per_run {setting} "
            f"(at most {limit:,}): nothing was sent to Brevo and nothing was removed. First ones: "
            f"{'; '.join(sample)}. If the source really lost them, trigger the DAG by hand with the param "
            "allow_mass_delete; if not (a truncated table, an empty export), fix the source and run again."
        )


@dataclass(frozen=True, slots=True)
class Removal:
    """One contact to remove, and why."""

    contact: LedgerContact
    why: str
    row_key: Any = None  # the source row that said so (soft deletes)


@dataclass
class RemovalPlan:
    """What a run removes, what it keeps (with why), and what it could not decide."""

    removals: list[Removal] = field(default_factory=list)
    kept: list[tuple[Any, str]] = field(default_factory=list)  # (row key or identity, reason)
    held: str | None = None  # why mirror removals were not planned this run

    def sample(self) -> list[str]:
        return [f"{_describe(r.contact)} ({r.why})" for r in self.removals[:SAMPLE]]


def plan_removals(
    ledger: ContactLedger,
    deletes: Deletes,
    soft_deleted: Sequence[tuple[Any, str]],
    *,
    mirror: bool,
    held: str | None = None,
) -> RemovalPlan:
    """Plan the run's removals (nothing is sent).

    :param soft_deleted: ``(row key, identity)`` of rows marked deleted, in run order.
    :param mirror: mirror mode: contacts the run did not see (``ledger.add_seen``) are gone.
    :param held: why this run's read cannot tell what is gone (mirror removals are then skipped).
    """
    plan = RemovalPlan(held=held if mirror else None)
    planned: set[str] = set()
    known = ledger.contacts(list(dict.fromkeys(identity for _, identity in soft_deleted)))
    for key, identity in soft_deleted:
        contact = known.get(identity)
        if contact is None:
            plan.kept.append((key, f"{DELETED_IN_SOURCE}: never delivered by this source, nothing to remove"))
        elif contact.state is not None or identity in planned:
            plan.kept.append((key, f"{DELETED_IN_SOURCE}: already {contact.state or 'removed'}"))
        elif not _owns(contact, deletes):
            plan.kept.append((key, f"{DELETED_IN_SOURCE}: {_not_owned(contact)}"))
        else:
            planned.add(identity)
            plan.removals.append(Removal(contact, DELETED_IN_SOURCE, key))
    if mirror and held is None:
        for contact in ledger.missing():
            if contact.identity in planned:
                continue
            if _owns(contact, deletes):
                plan.removals.append(Removal(contact, GONE_FROM_SOURCE))
            else:
                plan.kept.append((contact.identity, f"{GONE_FROM_SOURCE}: {_not_owned(contact)}"))
    return plan


def check_guardrail(ledger: ContactLedger, deletes: Deletes, plan: RemovalPlan, *, allowed: bool) -> None:
    """Raise :class:`MassDeleteError` when the plan removes more than ``max_per_run`` (unless ``allowed``)."""
    if not plan.removals or allowed:
        return
    owned = ledger.owned_count(deletes.ownership)
    limit = deletes.limit(owned)
    if len(plan.removals) > limit:
        raise MassDeleteError(len(plan.removals), limit, owned, deletes.max_per_run, plan.sample())


def remove(
    hook: Any, ledger: ContactLedger, deletes: Deletes, removals: Sequence[Removal], list_ids: Iterable[int]
) -> Counter[str]:
    """Do the planned removals in bulk; record them in the ledger. Returns counts by what was done."""
    counts: Counter[str] = Counter()
    if not removals:
        return counts
    contacts = [r.contact for r in removals]
    if deletes.behavior == "unlink":
        lists: dict[int, list[LedgerContact]] = {}
        for contact in contacts:
            for list_id in dict.fromkeys([*list_ids, *contact.lists]):
                lists.setdefault(list_id, []).append(contact)
        for list_id, members in sorted(lists.items()):
            change_lists(hook, list_id, "remove", [c.ids for c in members])
        counts["unlinked"] += len(contacts)
    elif deletes.behavior == "blacklist":
        addressed = [(c, batch_address(c.ids)) for c in contacts]
        bodies = [{**a, "emailBlacklisted": True, "smsBlacklisted": True} for _, a in addressed if a is not None]
        gone = len(update_batches(hook, bodies))
        by_ext_id = [(c, c.ids, {"emailBlacklisted": True, "smsBlacklisted": True}) for c, a in addressed if a is None]
        lost: list[LedgerContact] = []
        update_each(hook, by_ext_id, on_missing=lost.append)
        gone += len(lost)
        counts["blacklisted"] += len(contacts) - gone
        counts["already gone from Brevo"] += gone
    else:
        for contact in contacts:
            if delete_contact(hook, contact.ids):
                counts["deleted"] += 1
            else:
                counts["already gone from Brevo"] += 1
    ledger.mark_removed([c.identity for c in contacts], STATE_OF[deletes.behavior])
    return counts


def _owns(contact: LedgerContact, deletes: Deletes) -> bool:
    return contact.owned == 1 or deletes.ownership == "delivered"


def _not_owned(contact: LedgerContact) -> str:
    if contact.owned is None:
        return (
            "kept: delivered before contactsync recorded who created contacts (deletes.ownership: delivered removes it)"
        )
    return "kept: the contact existed in Brevo before this source delivered it (not created by this source)"


def _describe(contact: LedgerContact) -> str:
    values = contact.ids.values()
    kind, value = next(iter(values.items())) if values else ("identity", contact.identity)
    return f"{kind} {show(kind, value)}"
