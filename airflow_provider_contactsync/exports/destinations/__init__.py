"""Where an export's file goes: SFTP, FTP/FTPS, object storage or a local folder, BigQuery.

Every destination has the same three methods (:class:`Destination`): ``deliver`` the packed file,
``write_text`` a confirmation file after it, ``close``. :func:`destination_for` builds one from a
:class:`~.config.DestinationConfig`.

**Two-step transfer** (``two_step=True``, the default in definitions): the file is uploaded under a
temporary name next to the final one (``.<name>.part-<random>``: hidden on servers, and a suffix that
no watcher's ``*.csv.gz`` matches), its size and SHA-256 are read back from the destination and
compared with what was packed, and only then is it renamed to its final name. A failed check removes
the temporary file and raises :class:`TransferVerificationError`: the final name is never written,
and a final file left by an earlier run stays as it was. A successful delivery **replaces** an
existing final file (atomically where the protocol can: SFTP ``posix-rename``, FTP servers that
rename over a file, a local ``rename``; on object storage a server-side copy, which is atomic per
object). BigQuery loads into a temporary table, checks its row count, then copies it into the final
table (:mod:`.bigquery`).

With ``two_step=False`` the file is written straight under its final name: quicker, but a reader may
see it half-written and nothing is checked after the upload (the local file is still checked against
its size and SHA-256 before anything is sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from airflow_provider_contactsync.core.errors import ContactsyncError
from airflow_provider_contactsync.exports.destinations.config import DestinationConfig

__all__ = [
    "Delivered",
    "Destination",
    "DestinationConfig",
    "TransferVerificationError",
    "destination_for",
]


@dataclass(frozen=True)
class Delivered:
    """Where a file is after :meth:`Destination.deliver`, and how that was checked.

    :param location: for people: ``sftp://<conn_id>/out/x.csv.gz``, ``s3://bucket/key``, ``/abs/path``,
        ``bigquery://project.dataset.table``; never credentials.
    :param name: the final file name (BigQuery: the table).
    :param size: bytes delivered.
    :param sha256: SHA-256 of those bytes (lower-case hex).
    :param verified: ``read-back sha256`` (size and SHA-256 read back from the destination), ``rows``
        (BigQuery: the temporary table's row count), or ``none (two_step off)``.
    """

    location: str
    name: str
    size: int
    sha256: str
    verified: str


class TransferVerificationError(ContactsyncError):
    """What the destination holds is not what was packed: nothing was put under the final name.

    :param destination: where (a location as :class:`Delivered` shows it).
    :param file: the file's final name.
    :param expected: what was packed (``{"size": ..., "sha256": ...}`` or ``{"rows": ...}``).
    :param found: what was read back, same keys.
    :param detail: what that means, e.g. which side changed the bytes.
    """

    def __init__(
        self, destination: str, file: str, *, expected: dict[str, object], found: dict[str, object], detail: str = ""
    ) -> None:
        self.destination = destination
        self.file = file
        self.expected = expected
        self.found = found
        differences = ", ".join(
            f"{key} {expected[key]} expected, {found.get(key, 'unknown')} found"
            for key in expected
            if expected[key] != found.get(key)
        )
        message = f"{destination}: {file} failed verification: {differences}"
        message += f". {detail}" if detail else ""
        super().__init__(message)


class Destination(Protocol):
    """What the export operator calls; see the module docstring for the two-step semantics."""

    def deliver(self, local_file: Path, name: str, *, size: int, sha256: str, rows: int, two_step: bool) -> Delivered:
        """Put ``local_file`` (``size`` bytes, ``sha256``, ``rows`` data rows) at the destination as ``name``."""
        ...

    def write_text(self, relative_path: str, text: str) -> str:
        """Write a small UTF-8 text file (the confirmation) through a verified two-step transfer; return
        its location. A relative path is relative to the destination's folder (or to its
        ``confirmation_path``); a URL (``s3://bucket/done/x.done``) is written there; an absolute path is
        on the server for SFTP and FTP, a local path otherwise."""
        ...

    def close(self) -> None: ...


def destination_for(config: DestinationConfig) -> Destination:
    """The destination of ``config``; nothing connects until the first call."""
    from airflow_provider_contactsync.exports.destinations.folder import remote_folder, storage_folder

    confirmations = None
    if config.confirmation_path is not None:
        conn_id = config.confirmation_conn_id or (config.conn_id if config.type == "storage" else None)
        confirmations = storage_folder(config.confirmation_path, conn_id)
    if config.type == "bigquery":
        from airflow_provider_contactsync.exports.destinations.bigquery import BigQueryDestination

        return BigQueryDestination(config, confirmations=confirmations)
    if config.type == "storage":
        assert config.path is not None
        return storage_folder(config.path, config.conn_id, confirmations=confirmations)
    return remote_folder(config, confirmations=confirmations)
