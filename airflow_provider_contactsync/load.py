"""Loading contacts into Brevo so that a run sends only what changed and a retry resumes cleanly.

Per chunk: contacts sharing an identity keep the last one (rows arrive in cursor order); each
contact's digest is compared with what was last delivered, so unchanged contacts are not sent;
the rest go out as bulk imports. Contacts of unfinished imports are kept as *pending* on disk:
a load retried after a crash first settles those imports, then skips what they delivered.

Uploading a body (megabytes) runs on one sender thread while the next chunk is prepared, so
network time and Brevo's answer overlap the CPU work; one sender keeps the imports in order.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from airflow_provider_contactsync.core.spec import Destination
from airflow_provider_contactsync.state import DigestStore, contact_digest

_FINISHED = {"completed"}
_FAILED = {"failed", "cancelled", "canceled"}


def contact_identity(item: dict[str, Any]) -> str:
    """How Brevo recognises the contact: EXT_ID, else email, else SMS."""
    attributes = item.get("attributes") or {}
    if attributes.get("EXT_ID") is not None:
        return f"EXT_ID:{attributes['EXT_ID']}"
    if item.get("email"):
        return f"EMAIL:{item['email']}"
    return f"SMS:{attributes.get('SMS')}"


class ContactLoader:
    """Classify, send and account for contacts of one run.

    :param hook: a BrevoHook.
    :param digests: the source's digest store.
    :param destination: lists and update options.
    :param full_refresh: send every contact, changed or not.
    """

    def __init__(self, hook: Any, digests: DigestStore, destination: Destination, *, full_refresh: bool) -> None:
        self.hook = hook
        self.digests = digests
        self.destination = destination
        self.full_refresh = full_refresh
        self.counts = {
            "created": 0,
            "updated": 0,
            "unchanged": 0,
            "superseded": 0,
            "failed": 0,
            "recovered": 0,
        }
        self._batches: list[tuple[int, list[int]]] = []
        self._sender: ThreadPoolExecutor | None = None
        self._in_flight: deque[tuple[Future[list[int]], list[tuple[str, str]]]] = deque()

    def recover(self) -> None:
        """Settle imports a crashed attempt left unfinished, so their contacts are not sent again."""
        for batch, process_ids in self.digests.pending_batches():
            statuses = [str(self.hook.get_process(pid).get("status", "")).lower() for pid in process_ids]
            if any(status in _FAILED for status in statuses):
                self.digests.settle(batch, delivered=False)
                continue
            if not all(status in _FINISHED for status in statuses):
                self.hook.wait_for_processes(process_ids)
            self.counts["recovered"] += self.digests.settle(batch, delivered=True)

    def submit(self, chunk: list[tuple[Any, dict[str, Any]]]) -> None:
        """Send the contacts of one chunk that are new or changed."""
        latest: dict[str, dict[str, Any]] = {}
        for _key, item in chunk:
            identity = contact_identity(item)
            if identity in latest:
                self.counts["superseded"] += 1
            latest[identity] = item
        if not latest:
            return
        digests = {identity: contact_digest(item) for identity, item in latest.items()}
        known = self.digests.lookup(digests)
        to_send: list[tuple[str, str]] = []
        for identity, digest in digests.items():
            previous = known.get(identity)
            if previous == digest and not self.full_refresh:
                self.counts["unchanged"] += 1
                continue
            self.counts["updated" if previous is not None else "created"] += 1
            to_send.append((identity, digest))
        if not to_send:
            return
        if self._sender is None:
            self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="contactsync-import")
        future = self._sender.submit(
            self.hook.import_contacts,
            [latest[identity] for identity, _ in to_send],
            list_ids=self.destination.list_ids,
            update_existing=self.destination.update_existing,
            empty_attributes=self.destination.empty_attributes,
        )
        self._in_flight.append((future, to_send))
        self._collect(keep=1)  # one body uploading while the next chunk is prepared: bounded memory

    def _collect(self, *, keep: int) -> None:
        """Record sent bodies as pending imports (on disk) until at most ``keep`` are in flight."""
        while len(self._in_flight) > keep:
            future, to_send = self._in_flight.popleft()
            process_ids = future.result()  # a failed upload raises here, in the task's thread
            self._batches.append((self.digests.add_pending(process_ids, to_send), process_ids))

    def close(self) -> None:
        """Stop the sender thread (after a failure, uploads not yet started are dropped)."""
        if self._sender is not None:
            for future, _ in self._in_flight:
                future.cancel()
            self._sender.shutdown(wait=True)
            self._sender = None

    def finish(self) -> dict[str, int]:
        """Wait for this run's imports, record what they delivered, and return the counts."""
        self._collect(keep=0)
        self.close()
        all_ids = [pid for _, ids in self._batches for pid in ids]
        if all_ids:
            processes = self.hook.wait_for_processes(all_ids)
            self.counts["failed"] = sum(_failures(p) for p in processes)
            for batch, _ in self._batches:
                self.digests.settle(batch, delivered=True)
        return dict(self.counts)


def _failures(process: dict[str, Any]) -> int:
    """Contacts Brevo refused in an import, as its process report counts them."""
    report = (process.get("info") or {}).get("import") or {}
    return sum(int(v) for v in report.values() if isinstance(v, (int, float)) and not isinstance(v, bool))
