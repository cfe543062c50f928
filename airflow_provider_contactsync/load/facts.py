"""What the load needs of each mapped contact, worked out where the contacts are made.

For every contact it sends, the load needs its identifiers in the form Brevo compares them, its
identity across runs and the digest of what would be sent (to skip unchanged contacts). Working
them out costs about 2.5 µs a contact, in the load's single process; the map task makes the
contacts in worker processes, one per core, so it works them out there and writes them next to
each chunk (``chunk-00001.msgpack.facts``), and the load reads them back at C speed (ADR 0017).

The facts are those :func:`~.identity.ids_of`, :func:`~.identity.identity_of` and
:func:`~.ledger.contact_digest` give: the load computes them itself for a chunk without them
(staged by an older version, or a payload they could not be computed for).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from airflow_provider_contactsync.load.identity import ContactIds, identity_of, ids_of
from airflow_provider_contactsync.load.ledger import contact_digest

FACTS_SUFFIX = ".facts"
"""The facts of ``chunk-00001.msgpack`` are in ``chunk-00001.msgpack.facts``."""


class ContactFacts(NamedTuple):
    """One contact's identity, identifiers and digest, as the load would compute them."""

    identity: str
    ids: ContactIds
    digest: str


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[ContactFacts])


def facts_of(key: Any, item: dict[str, Any], *, keyed: bool) -> ContactFacts:
    """The facts of one import item (what the load computes for a contact without staged facts)."""
    ids = ids_of(item)
    return ContactFacts(identity_of(ids, key, keyed=keyed), ids, contact_digest(item))


def chunk_facts(items: Sequence[tuple[Any, dict[str, Any]]], *, keyed: bool) -> list[ContactFacts] | None:
    """The facts of a chunk's ``(row key, import item)`` pairs, or None when one cannot be computed
    (the load then computes them, and meets the same problem where it always has)."""
    try:
        return [facts_of(key, item, keyed=keyed) for key, item in items]
    except Exception:  # noqa: BLE001 - any problem is the load's to report, as without facts
        return None


def encode_facts(facts: list[ContactFacts]) -> bytes:
    return _ENCODER.encode(facts)


def decode_facts(data: bytes, size: int) -> list[ContactFacts] | None:
    """The facts written next to a chunk of ``size`` contacts; None when they do not fit it."""
    try:
        facts = _DECODER.decode(data)
    except msgspec.DecodeError:
        return None
    return facts if len(facts) == size else None
