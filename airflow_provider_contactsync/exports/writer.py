"""Writing contacts into the export file: the definition's columns in its order, CSV or JSON lines.

The columns are exactly ``content.fields``, in that order, whatever Brevo returns or in which order:
the file's layout changes only when the definition does. Obfuscated fields are hashed here, after
normalisation (:mod:`.obfuscation`). A value the chosen encoding cannot hold, or that CSV without
quoting cannot write, fails the run with an error naming the row's contact id and the column.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec.export_models import ExportField, ExportFormat
from airflow_provider_contactsync.exports.obfuscation import obfuscate

_QUOTING = {
    "minimal": csv.QUOTE_MINIMAL,
    "all": csv.QUOTE_ALL,
    "nonnumeric": csv.QUOTE_NONNUMERIC,
    "none": csv.QUOTE_NONE,
}
SUFFIX = {"csv": ".csv", "jsonl": ".jsonl"}


class ExportRowError(ConfigurationError):
    """One contact cannot be written as asked (encoding, quoting); names the contact and the column."""


def text_of(value: Any) -> str:
    """A typed value as file text: null is empty, booleans true/false, whole floats without '.0'."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(text_of(v) for v in value)
    return str(value)


class ContactWriter:
    """Writes contacts to a binary stream in the definition's format; counts rows and hashed phones left as text.

    :param stream: where the encoded bytes go (a file opened "wb").
    :param fields: the definition's columns, in order.
    :param fmt: the definition's format block.
    :param hmac_key: the HMAC-SHA256 key (from an Airflow connection) when a field uses it.
    :param phone_region: country assumed for phones without a prefix.
    """

    def __init__(
        self,
        stream: Any,
        fields: list[ExportField],
        fmt: ExportFormat,
        *,
        hmac_key: bytes | None = None,
        phone_region: str = "FR",
    ) -> None:
        self.stream = stream
        self.fields = fields
        self.fmt = fmt
        self.hmac_key = hmac_key
        self.phone_region = phone_region
        self.rows = 0
        self._buffer = io.StringIO()
        self._newline = "\r\n" if fmt.line_endings == "crlf" else "\n"
        self._csv = (
            csv.writer(
                self._buffer,
                delimiter=fmt.delimiter,
                quotechar=fmt.quotechar,
                quoting=_QUOTING[fmt.quoting],
                escapechar=None,
                lineterminator=self._newline,
            )
            if fmt.type == "csv"
            else None
        )
        self._bom = fmt.encoding in ("utf-8-sig", "utf-16")  # written once, by the first encode

    def write_header(self) -> None:
        """The column names line (CSV with header: true; nothing otherwise)."""
        if self._csv is not None and self.fmt.header:
            self._csv.writerow([entry.name for entry in self.fields])
            self._flush(None)

    def write_all(self, contacts: Iterable[Mapping[str, Any]], *, flush_every: int = 2000) -> int:
        """Write every contact; return how many."""
        pending = 0
        for contact in contacts:
            self.write(contact, flush=False)
            pending += 1
            if pending >= flush_every:
                self._flush(contact)
                pending = 0
        if pending:
            self._flush(None)
        return self.rows

    def write(self, contact: Mapping[str, Any], *, flush: bool = True) -> None:
        values = [self._value(entry, contact.get(entry.attribute)) for entry in self.fields]
        try:
            if self._csv is not None:
                self._csv.writerow(values)
            else:
                record = dict(zip((entry.name for entry in self.fields), values, strict=True))
                self._buffer.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + self._newline)
        except csv.Error as exc:
            raise self._row_error(contact, f"cannot be written as CSV with quoting {self.fmt.quoting}: {exc}") from None
        self.rows += 1
        if flush:
            self._flush(contact)

    def _value(self, entry: ExportField, value: Any) -> Any:
        if entry.obfuscate is not None:
            return obfuscate(
                text_of(value) if value is not None else None,
                entry.obfuscate,
                kind=entry.kind,  # type: ignore[arg-type]
                key=self.hmac_key if entry.obfuscate == "hmac-sha256" else None,
                region=self.phone_region,
            )
        if self._csv is not None:
            if self.fmt.quoting == "nonnumeric" and isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
            return text_of(value)
        return value

    def _flush(self, contact: Mapping[str, Any] | None) -> None:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        if not text:
            return
        encoding = self.fmt.encoding
        if not self._bom and encoding in ("utf-8-sig", "utf-16"):
            encoding = "utf-8" if encoding == "utf-8-sig" else "utf-16-le"
        try:
            data = text.encode(encoding)
        except UnicodeEncodeError as exc:
            self._raise_encoding(text, exc)
        self._bom = False
        self.stream.write(data)

    def _raise_encoding(self, text: str, exc: UnicodeEncodeError) -> None:
        line = text[: exc.start].count(self._newline)
        character = text[exc.start]
        raise ExportRowError(
            f"contact line {self.rows - text.count(self._newline) + line + 1} of the file: character {character!r} "
            f"cannot be written in {self.fmt.encoding}; choose format.encoding utf-8",
            key_path="format.encoding",
        ) from None

    def _row_error(self, contact: Mapping[str, Any], reason: str) -> ExportRowError:
        return ExportRowError(f"contact {contact.get('CONTACT_ID')}: {reason}", key_path="format.quoting")
