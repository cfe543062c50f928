"""Consent: who is blacklisted in Brevo, and when a sync may lift a blacklist.

- A contact whose consent condition is false is blacklisted: its import carries ``emailBlacklist``
  / ``smsBlacklist`` (imports are grouped by those flags), a batch update carries the flags.
- A contact whose condition is true is imported without them, which never lifts a blacklist.
- Lifting one (resubscribing) needs ``consent.resubscribe: explicit_only`` (the default), an opt-in
  time from the source (``consent.email_opt_in_at``) and proof the opt-in is newer than the
  unsubscription: Brevo's ``GET /contacts/{id}`` lists every unsubscription with its ``eventTime``
  (``statistics.unsubscriptions``: by a campaign's link, or by an administrator or the API). The
  opt-in must be newer than the latest of them. A blacklisted contact with no unsubscription
  recorded (a hard bounce, an import made blacklisted) stays blacklisted: nothing shows that the
  opt-in came after. SMS has no such dates in Brevo, so an SMS blacklist is never lifted by a sync.
  See docs/adr/0007-consent-and-resubscription.md.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_contactsync.load.bulk import batch_address, update_batches
from airflow_provider_contactsync.load.identity import ContactIds

LOOKUP_BUDGET = 300
"""Contacts a run may look up (``GET /contacts/{id}``) to decide a resubscription; the others are
sent again next run (their digest is cleared) and decided then."""


def import_flags(intent: dict[str, Any]) -> tuple[bool, bool]:
    """``(emailBlacklist, smsBlacklist)`` for the import that carries this contact."""
    return intent.get("email") is False, intent.get("sms") is False


@dataclass(frozen=True, slots=True)
class Candidate:
    """A contact the source says opted in to email, at ``opted_in_at``, that Brevo may hold blacklisted."""

    identity: str
    ids: ContactIds
    opted_in_at: str


def resubscribe(hook: Any, candidates: Sequence[Candidate]) -> tuple[Counter[str], list[str], list[tuple[str, str]]]:
    """Lift the email blacklist of candidates whose opt-in is newer than their last unsubscription.

    Returns counts, the identities to decide next run (over the lookup budget), and
    ``(identity, reason)`` for each contact kept unsubscribed.
    """
    counts: Counter[str] = Counter()
    later = [c.identity for c in candidates[LOOKUP_BUDGET:]]
    kept: list[tuple[str, str]] = []
    lift: list[dict[str, Any]] = []
    for candidate in candidates[:LOOKUP_BUDGET]:
        if candidate.ids.email is None:
            continue
        contact = hook.get_contact(candidate.ids.email, "EMAIL")
        if not contact or not contact.get("emailBlacklisted"):
            continue  # not blacklisted: nothing to lift
        last = last_unsubscription(contact)
        opted_in = _instant(candidate.opted_in_at)
        if last is None:
            kept.append((candidate.identity, "kept unsubscribed: Brevo records no unsubscription date to compare"))
        elif opted_in <= last:
            kept.append(
                (
                    candidate.identity,
                    f"kept unsubscribed: opted in {opted_in:%Y-%m-%d %H:%M:%S} UTC, before the unsubscription "
                    f"of {last:%Y-%m-%d %H:%M:%S} UTC",
                )
            )
        else:
            address = batch_address(candidate.ids)
            if address is not None:
                lift.append({**address, "emailBlacklisted": False})
    if lift:
        missing = update_batches(hook, lift)
        counts["resubscribed"] += len(lift) - len(missing)
    counts["kept unsubscribed"] += len(kept)
    return counts, later, kept


def last_unsubscription(contact: dict[str, Any]) -> dt.datetime | None:
    """The latest ``eventTime`` of a contact's unsubscriptions (by link or by administrator), if any."""
    found = ((contact.get("statistics") or {}).get("unsubscriptions")) or {}
    times = [
        _instant(event["eventTime"])
        for kind in ("userUnsubscription", "adminUnsubscription")
        for event in found.get(kind) or []
        if isinstance(event, dict) and event.get("eventTime")
    ]
    return max(times) if times else None


def _instant(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
