"""What Brevo did with each contact of an import: created, updated, left alone, or refused, and why.

Brevo's import process reports only counters (``info.import``: ``duplicate_email_id``,
``invalid_emails``, ...). When they are all zero every contact was applied, and one count query
(``createdSince``) tells created from updated. When any is not zero, the contacts Brevo modified
since the import was received are read back (``GET /contacts?modifiedSince``, 1,000 a page): a
sent contact is applied when a contact there carries all of its identifiers. For each refused
contact, the contact holding one of its identifiers is named, from the read-back or by a lookup.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_contactsync.load.identity import IDENTIFIER_TYPES, ContactIds, normalize_email, normalize_phone


def refusal_counters(process: Mapping[str, Any]) -> dict[str, int]:
    """The non-zero refusal counters of an import process document."""
    report = (process.get("info") or {}).get("import") or {}
    counters: dict[str, int] = {}
    for name, value in report.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value:
            counters[str(name)] = int(value)
    return counters


@dataclass(frozen=True, slots=True)
class BrevoContact:
    """A contact as Brevo holds it: its id, identifiers and creation time."""

    id: int
    ids: ContactIds
    created_at: dt.datetime | None

    def describe_other(self, besides: str, prefer: str | None = None) -> str:
        """``whose EMAIL is a@x.com``: the identifier that best tells this contact apart."""
        order = [k for k in (prefer, "EMAIL", "EXT_ID", "SMS") if k and k != besides]
        for kind in order:
            value = self.ids.get(kind)
            if value is not None:
                return f"whose {kind} is {show(kind, value)}"
        return f"which has no other identifier (besides {besides})"


def brevo_contact(document: Mapping[str, Any]) -> BrevoContact:
    """A ``GET /contacts`` item as a :class:`BrevoContact`."""
    attributes = document.get("attributes") or {}
    ext_id = attributes.get("EXT_ID")
    return BrevoContact(
        id=int(document["id"]),
        ids=ContactIds(
            email=normalize_email(document.get("email")),
            ext_id=None if ext_id in (None, "") else str(ext_id),
            sms=normalize_phone(attributes.get("SMS")),
        ),
        created_at=parse_time(document.get("createdAt")),
    )


def parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def show(kind: str, value: str) -> str:
    """An identifier as a user writes it (phone numbers with their +)."""
    return f"+{value}" if kind == "SMS" else value


def applied(sent: ContactIds, found: BrevoContact | None) -> bool:
    """Whether Brevo holds a contact carrying every identifier that was sent."""
    return found is not None and all(found.ids.get(kind) == value for kind, value in sent.values().items())


class ReadBack:
    """Contacts Brevo modified since an instant, indexed by identifier in a temporary SQLite file.

    :param contacts: ``GET /contacts`` items (streamed; pages of 1,000).
    """

    def __init__(self, contacts: Iterable[Mapping[str, Any]]) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="contactsync-readback-")
        self._db = sqlite3.connect(os.path.join(self._folder.name, "seen.sqlite"))
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE seen (id INTEGER PRIMARY KEY, email TEXT, ext_id TEXT, sms TEXT, created TEXT)")
        batch: list[tuple[Any, ...]] = []
        self.count = 0
        for document in contacts:
            contact = brevo_contact(document)
            created = contact.created_at.isoformat() if contact.created_at else None
            batch.append((contact.id, contact.ids.email, contact.ids.ext_id, contact.ids.sms, created))
            self.count += 1
            if len(batch) >= 10_000:
                self._insert(batch)
        self._insert(batch)
        for column in ("email", "ext_id", "sms"):
            self._db.execute(f"CREATE INDEX seen_{column} ON seen({column})")

    def _insert(self, batch: list[tuple[Any, ...]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO seen VALUES (?, ?, ?, ?, ?)", batch)
        batch.clear()

    def holder(self, kind: str, value: str) -> BrevoContact | None:
        """The read-back contact holding ``value`` as identifier ``kind``, if any."""
        column = {"EMAIL": "email", "EXT_ID": "ext_id", "SMS": "sms"}[kind]
        row = self._db.execute(f"SELECT id, email, ext_id, sms, created FROM seen WHERE {column} = ?", (value,))
        found = row.fetchone()
        if found is None:
            return None
        return BrevoContact(found[0], ContactIds(found[1], found[2], found[3]), parse_time(found[4]))

    def close(self) -> None:
        self._db.close()
        self._folder.cleanup()


_COUNTER_KINDS = {"duplicate_email_id": "EMAIL", "duplicate_ext_id": "EXT_ID", "duplicate_phone_id": "SMS"}


def _lookup_order(counters: Mapping[str, int]) -> list[str]:
    """Identifier types to look up first: those the import's counters say were duplicates (fewer lookups)."""
    likely = [kind for name, kind in _COUNTER_KINDS.items() if counters.get(name)]
    return [*likely, *(kind for kind in IDENTIFIER_TYPES if kind not in likely)]


Lookup = Callable[[str, str], BrevoContact | None]
"""``lookup(kind, value)``: the Brevo contact holding that identifier (a ``GET /contacts/{id}``)."""


def refusal(
    sent: ContactIds,
    counters: Mapping[str, int],
    *,
    holder: Lookup,
    exclude: ContactIds | None = None,
) -> tuple[str | None, str | None, str | None, BrevoContact | None]:
    """Why Brevo did not apply a contact: ``(identifier kind, value, reason, holder)``.

    Each identifier is looked up in turn; the first held by a contact whose other identifiers
    disagree is the conflict. When no identifier is in conflict and a contact carrying them is
    found, the reason is None and that contact is returned: the import left it as it was (an
    existing contact in a create-only import, or values Brevo found unchanged).

    :param exclude: identifiers of a contact that is not a conflict (the contact being given new
        identifiers still holds its old ones).
    """
    same: BrevoContact | None = None
    for kind in _lookup_order(counters):
        value = sent.get(kind)
        if value is None:
            continue
        owner = holder(kind, value)
        if owner is None or (exclude is not None and applied(exclude, owner)):
            continue
        disagree = sent.disagreement(owner.ids)
        if disagree is None:
            same = same or owner
            continue
        return (
            kind,
            value,
            f"refused by Brevo: {kind} {show(kind, value)} belongs to contact {owner.id} "
            f"{owner.describe_other(kind, prefer=disagree)}",
            owner,
        )
    if sent.email is not None and counters.get("invalid_emails") and (same is None or same.ids.email != sent.email):
        return (
            "EMAIL",
            sent.email,
            f"refused by Brevo: the email address {sent.email} is invalid for Brevo "
            f"(its import counted {counters['invalid_emails']} invalid_emails)",
            None,
        )
    if same is not None and all(same.ids.get(k) == v for k, v in sent.values().items()):
        return None, None, None, same
    primary = sent.primary
    shown = ", ".join(f"{name} {count}" for name, count in sorted(counters.items())) or "no counter"
    return (
        primary[0] if primary else None,
        primary[1] if primary else None,
        f"refused by Brevo (its import counted {shown}); no contact holding one of its identifiers was found",
        None,
    )
