"""Who a contact is: its identifiers, its identity across runs, and conflicts inside one run.

Pure rules, no I/O. Brevo keeps EMAIL, SMS and EXT_ID unique across contacts and never merges two
contacts, so two rows of one run that share an identifier but disagree on another cannot both be
loaded: the newest row (cursor order) wins, the others are rejected naming it. Two rows that are
the same contact (no identifier disagrees) are not a conflict: the older is *superseded*.

A contact's identity across runs is the source row key when the definition has one (so an email
change on row 42 is recognised as row 42's email changing), else its first identifier of EXT_ID,
EMAIL, SMS.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from airflow_provider_contactsync.core.identifiers import normalize_email, normalize_phone

IDENTIFIER_TYPES = ("EMAIL", "EXT_ID", "SMS")
"""In the order Brevo's import looks a contact up: email first, then EXT_ID, then SMS."""

_INDEX = {"EMAIL": 0, "EXT_ID": 1, "SMS": 2}

__all__ = ["ContactIds", "RunRow", "Verdict", "identity_of", "ids_of", "normalize_email", "normalize_phone"]


class ContactIds(NamedTuple):
    """A contact's identifiers in the form Brevo compares them (lower-case email, phone digits).

    A named tuple: one is made per contact of a run, and tuples are the cheapest to make.
    """

    email: str | None = None
    ext_id: str | None = None
    sms: str | None = None

    def values(self) -> dict[str, str]:
        """Identifier type -> value, for the identifiers this contact has."""
        found = {"EMAIL": self.email, "EXT_ID": self.ext_id, "SMS": self.sms}
        return {kind: value for kind, value in found.items() if value is not None}

    def get(self, kind: str) -> str | None:  # type: ignore[override]
        return self[_INDEX[kind]]

    @property
    def primary(self) -> tuple[str, str] | None:
        """The identifier Brevo's import finds the contact by: EMAIL, else EXT_ID, else SMS."""
        for kind in IDENTIFIER_TYPES:
            value = self.get(kind)
            if value is not None:
                return kind, value
        return None

    def disagreement(self, other: ContactIds) -> str | None:
        """The first identifier type both have with different values, if any."""
        for kind in IDENTIFIER_TYPES:
            mine, theirs = self.get(kind), other.get(kind)
            if mine is not None and theirs is not None and mine != theirs:
                return kind
        return None

    def describe(self) -> str:
        """``EMAIL a@x.com, EXT_ID 42`` for messages."""
        return ", ".join(f"{kind} {value}" for kind, value in self.values().items()) or "no identifier"


def ids_of(item: Mapping[str, Any]) -> ContactIds:
    """The identifiers of one import item ``{"email"?, "attributes": {"EXT_ID"?, "SMS"?, ...}}``."""
    attributes = item.get("attributes") or _EMPTY
    email = item.get("email")
    ext_id = attributes.get("EXT_ID")
    sms = attributes.get("SMS")
    return ContactIds(
        email.strip().lower() if type(email) is str and email else normalize_email(email),
        None if ext_id is None or ext_id == "" else str(ext_id),
        normalize_phone(sms) if sms else None,
    )


_EMPTY: dict[str, Any] = {}


def identity_of(ids: ContactIds, row_key: Any, *, keyed: bool) -> str:
    """The contact's identity across runs: ``K:<row key>`` for keyed sources, else its first identifier."""
    if keyed and row_key is not None:
        return f"K:{row_key}"
    for kind in ("EXT_ID", "EMAIL", "SMS"):
        value = ids.get(kind)
        if value is not None:
            return f"{kind}:{value}"
    return "NONE:"


class RunRow(NamedTuple):
    """One contact of a run, for the conflict check: its order, key, identity and identifiers."""

    seq: int
    key: Any
    identity: str
    ids: ContactIds


class Verdict(NamedTuple):
    """Why a row of the run is not loaded: superseded by a newer row of the same contact, or in conflict."""

    seq: int
    key: Any
    winner_key: Any
    superseded: bool
    kind: str  # the identifier (or "KEY") shared with the winner
    value: str
    reason: str


def resolve_conflicts(rows: Iterable[RunRow]) -> list[Verdict]:
    """Rows that must not be loaded, newest first wins.

    Rows are taken from the newest (highest ``seq``) down. A row is accepted when none of its
    identifier values (nor its row key, for keyed sources) is claimed by an accepted row; an
    accepted row claims them all. Otherwise it is *superseded* when the claiming row is the same
    contact (an older version of the same source row, or one claimer with no identifier that
    disagrees), else *rejected*: the reason names the shared identifier and the winning row.
    """
    claims: dict[tuple[str, str], RunRow] = {}
    verdicts: list[Verdict] = []
    for row in sorted(rows, key=lambda r: r.seq, reverse=True):
        keyed = row.identity.startswith("K:")
        keys = [*(([("KEY", row.identity)]) if keyed else []), *row.ids.values().items()]
        claimers = [(kind, value, claims[(kind, value)]) for kind, value in keys if (kind, value) in claims]
        if not claimers:
            for kind, value in keys:
                claims[(kind, value)] = row
            continue
        kind, value, winner = claimers[0]
        disagree = row.ids.disagreement(winner.ids)
        same_contact = kind == "KEY" or (len({id(c[2]) for c in claimers}) == 1 and disagree is None)
        if same_contact:
            reason = f"superseded by row {winner.key}, a newer row for the same contact ({winner.ids.describe()})"
        else:
            if disagree is not None:
                detail = f"which has {disagree} {winner.ids.get(disagree)}, not {row.ids.get(disagree)}"
            else:
                other = next(c for c in claimers if c[2] is not winner)
                detail = f"while {other[0]} {other[1]} is on row {other[2].key}"
            reason = (
                f"identity conflict: {kind} {value} is also on row {winner.key} ({detail}); the newer row "
                f"{winner.key} is loaded, this one is not"
            )
        verdicts.append(Verdict(row.seq, row.key, winner.key, same_contact, kind, value, reason))
    return verdicts


def needs_rekey(previous: ContactIds, new: ContactIds) -> bool:
    """Whether Brevo's import would miss the contact last delivered as ``previous``.

    The import finds a contact by its first identifier (EMAIL, else EXT_ID, else SMS). When that
    identifier changed (an email changed or was added on a known EXT_ID, say), the import would
    create a second contact or be refused, so the existing contact must first be given the new
    identifiers through an update that finds it by one it still has.
    """
    primary = new.primary
    if primary is None:
        return False
    kind, value = primary
    return previous.get(kind) != value and bool(previous.values())


def rekey_target(previous: ContactIds) -> tuple[str, str]:
    """How to find the contact last delivered as ``previous``: by email, else SMS, else EXT_ID."""
    for kind in ("EMAIL", "SMS", "EXT_ID"):
        value = previous.get(kind)
        if value is not None:
            return kind, value
    raise ValueError("a contact with no identifier cannot be found")
