"""Contact identifiers as Brevo compares them, and compact hashes of a chunk's identities.

Brevo compares emails without case or surrounding spaces and phone numbers as digits with their
country code. The load's run-wide identity check (``load/preflight.py``) needs, for every contact
of a run, its row key and identifiers: the map task computes them where it makes the contacts (in
its worker processes) as 64-bit hashes, 32 bytes a contact, written next to each chunk. The hash
is the same in every process (Python's ``hash()`` is not), and exact values are compared again
for the few contacts whose hashes meet.
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Iterable
from typing import Any

SIDECAR_SUFFIX = ".ids"
"""The identity hashes of ``chunk-00001.msgpack`` are in ``chunk-00001.msgpack.ids``."""

_EMPTY: dict[str, Any] = {}


def normalize_email(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value).strip().lower()


def normalize_phone(value: Any) -> str | None:
    """Digits with country code: ``+33612345678``, ``0033612345678`` and ``33612345678`` are one number."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text.startswith("+"):
        return text[1:]
    if text.startswith("00"):
        return text[2:]
    return text


def stable_hash(text: str) -> int:
    """A non-zero 64-bit hash, the same in every process (0 stands for "no value")."""
    data = text.encode()
    return (zlib.crc32(data) << 32 | zlib.adler32(data)) or 1


class IdentityColumns:
    """Per contact, in order: hashes of the row key (keyed sources), EMAIL, EXT_ID and SMS."""

    def __init__(self) -> None:
        self.columns = [array("Q") for _ in range(4)]

    def __len__(self) -> int:
        return len(self.columns[0])

    def add(self, key_text: str | None, email: str | None, ext_id: str | None, sms: str | None) -> None:
        for column, value in zip(self.columns, (key_text, email, ext_id, sms), strict=True):
            column.append(stable_hash(value) if value is not None else 0)

    def add_chunk(self, chunk: Iterable[tuple[Any, dict[str, Any]]], *, keyed: bool) -> None:
        """Add a chunk of ``(row key, import item)`` pairs, as the map task stages them."""
        key_, email_, ext_id_, sms_ = (column.append for column in self.columns)
        for key, item in chunk:
            key_(stable_hash(str(key)) if keyed and key is not None else 0)
            email = item.get("email")
            email_(stable_hash(email.strip().lower()) if type(email) is str and email else 0)
            attributes = item.get("attributes") or _EMPTY
            ext_id = attributes.get("EXT_ID")
            ext_id_(stable_hash(str(ext_id)) if ext_id is not None and ext_id != "" else 0)
            sms = attributes.get("SMS")
            sms_(stable_hash(normalize_phone(sms) or "") if sms else 0)

    def extend(self, other: IdentityColumns) -> None:
        for mine, theirs in zip(self.columns, other.columns, strict=True):
            mine.extend(theirs)

    def to_bytes(self) -> bytes:
        return b"".join(column.tobytes() for column in self.columns)

    @classmethod
    def from_bytes(cls, data: bytes) -> IdentityColumns:
        columns = cls()
        size = len(data) // 4
        for index, column in enumerate(columns.columns):
            column.frombytes(data[index * size : (index + 1) * size])
        return columns
