"""Salesforce Contacts and Leads through the Salesforce provider's ``SalesforceHook`` (simple-salesforce).

Why it looks like this:

- **Incremental on SystemModstamp, ties broken by Id**: Salesforce's own last-change stamp moves on
  every write (including system ones), so nothing changed is missed. The window is
  ``SystemModstamp >= cursor AND SystemModstamp <= until ORDER BY SystemModstamp, Id``: the cursor's
  own instant is read again (rows committed late with it are not lost) and the extract's boundary
  filter drops those read unchanged, as for the SQL sources (docs/adr/0004).
- **Deletes are read too** (``queryAll``): a deleted record comes back with ``IsDeleted = true``, which
  the definition's ``deleted_when`` (``IsDeleted == true``) turns into the delete rules.
- **REST pages or one Bulk API 2.0 job, by volume**: ``read: auto`` counts the window first
  (``SELECT COUNT()``, one call) and reads more than ``bulk_threshold`` records with a Bulk API 2.0
  query job (CSV pages of up to 50,000 records, a few calls), fewer with SOQL ``query``/``queryMore``
  (2,000 records a call, no job to wait for). Both stream: one page in memory at a time.
- **Typed values either way**: REST gives JSON types; Bulk gives CSV text, converted with the types
  ``describe`` gives (booleans, numbers, dates), so both paths stage the same rows.
- **Formula fields cannot be matched** (the seed's rule): a ``fields`` entry that ``describe`` says is
  calculated is refused before reading, with the reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from decimal import Decimal
from functools import cached_property
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.rows import dig
from airflow_provider_contactsync.sources.base import Chunk, ReadWindow, Source, check_chunk_size, chunked

BULK_PAGE_RECORDS = 50_000
_NUMBER_TYPES = {"double", "currency", "percent"}
_INT_TYPES = {"int", "long"}


def soql_datetime(moment: dt.datetime) -> str:
    """A SOQL datetime literal (UTC, no quotes): 2024-01-01T00:00:00.000Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    utc = moment.astimezone(dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_datetime(value: Any) -> Any:
    """Salesforce's ``2024-01-01T00:00:00.000+0000`` as an aware datetime (other values as they are)."""
    if not isinstance(value, str) or len(value) < 20 or value[10] != "T":
        return value
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value


class SalesforceSource(Source):
    """One object (Contact or Lead) of a Salesforce org.

    :param spec: a ``type: salesforce`` source.
    :param hook: a ready ``SalesforceHook`` (tests); built from ``conn_id`` if omitted.
    """

    ordered_reads = True  # ORDER BY SystemModstamp, Id
    tables_word = "objects"

    def __init__(self, spec: Any, *, hook: Any = None) -> None:
        super().__init__(spec)
        self._hook = hook
        #: "rest" or "bulk": how the last read went (for the run's log and the benchmark)
        self.read_mode = ""

    @cached_property
    def hook(self) -> Any:
        if self._hook is not None:
            return self._hook
        from airflow.providers.salesforce.hooks.salesforce import SalesforceHook

        return SalesforceHook(salesforce_conn_id=self.spec.conn_id)

    @property
    def client(self) -> Any:
        """The simple-salesforce client the hook logged in with."""
        return self.hook.conn

    @cached_property
    def describe(self) -> dict[str, dict[str, Any]]:
        """The object's fields by API name, from ``describe`` (one call)."""
        answer = getattr(self.client, self.spec.object).describe()
        return {field["name"]: field for field in answer["fields"]}

    # -- reading ----------------------------------------------------------------------------------

    def read(self, window: ReadWindow, *, chunk_size: int) -> Iterator[Chunk]:
        check_chunk_size(chunk_size)
        self.skipped.clear()
        self.check_fields()
        where = self._where(window)
        count = None
        if self.spec.read == "auto":
            count = self._count(where)
        bulk = self.spec.read == "bulk" or (count is not None and count > self.spec.bulk_threshold)
        self.read_mode = "bulk" if bulk else "rest"
        soql = f"SELECT {', '.join(self._columns())} FROM {self.spec.object}{where} ORDER BY SystemModstamp, Id"
        records = self._bulk(soql) if bulk else self._rest(soql)
        yield from chunked((self._row(record) for record in records), chunk_size)

    def _where(self, window: ReadWindow) -> str:
        conditions = []
        if window.since is not None and window.since.value is not None:
            since = window.since.value
            if isinstance(since, dt.datetime):
                conditions.append(f"SystemModstamp >= {soql_datetime(since)}")
        if window.until is not None:
            conditions.append(f"SystemModstamp <= {soql_datetime(window.until)}")
        return f" WHERE {' AND '.join(conditions)}" if conditions else ""

    def _count(self, where: str) -> int:
        answer = self.client.query(f"SELECT COUNT() FROM {self.spec.object}{where}", include_deleted=True)
        return int(answer["totalSize"])

    def _columns(self) -> list[str]:
        return list(self.spec.fields)

    def _rest(self, soql: str) -> Iterator[dict[str, Any]]:
        """SOQL ``queryAll`` then ``queryMore`` pages (simple-salesforce follows nextRecordsUrl lazily)."""
        yield from self.client.query_all_iter(soql, include_deleted=True)

    def _bulk(self, soql: str) -> Iterator[dict[str, Any]]:
        """One Bulk API 2.0 ``queryAll`` job; its CSV pages converted to the REST path's types."""
        bulk = getattr(self.client.bulk2, self.spec.object)
        converters = {name: _converter(self.describe.get(name.split(".", 1)[0], {})) for name in self._columns()}
        for page in bulk.query_all(soql, max_records=BULK_PAGE_RECORDS):
            for record in csv.DictReader(io.StringIO(page)):
                yield {name: converters[name](value) for name, value in record.items() if name in converters}

    def _row(self, record: dict[str, Any]) -> dict[str, Any]:
        row = {name: dig(record, name) if "." in name else record.get(name) for name in self.spec.fields}
        row["SystemModstamp"] = parse_datetime(row.get("SystemModstamp"))
        return row

    def check_fields(self) -> None:
        """Refuse fields the object does not have, and formula fields (they cannot be matched)."""
        fields = self.describe
        missing = [name for name in self.spec.fields if name.split(".", 1)[0] not in fields]
        if missing:
            raise ConfigurationError(
                f"source {self.spec.name!r}: {self.spec.object} has no field "
                + ", ".join(repr(name) for name in missing)
                + " (listed in fields); see `contactsync validate --check-source` for its fields",
                key_path="source.fields",
            )
        formulas = [name for name in self.spec.fields if fields[name.split(".", 1)[0]].get("calculated")]
        if formulas:
            raise ConfigurationError(
                f"source {self.spec.name!r}: {', '.join(repr(name) for name in formulas)} "
                f"{'is a formula field' if len(formulas) == 1 else 'are formula fields'} in Salesforce: formula "
                "fields cannot be matched; read the fields it is computed from and write the formula in transform",
                key_path="source.fields",
            )

    # -- discovery --------------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """The object's fields (formula fields marked ``(formula)``: they cannot be matched)."""
        return [name + (" (formula)" if field.get("calculated") else "") for name, field in self.describe.items()]

    def list_tables(self) -> list[str]:
        return ["Contact", "Lead"]

    def test_connection(self) -> tuple[bool, str]:
        try:
            count = self._count("")
            return True, f"Salesforce: {count} {self.spec.object} records (deleted ones included)"
        except Exception as exc:  # an unreachable org is an answer here, not a crash
            return False, f"cannot reach Salesforce with {self.spec.conn_id!r}: {exc}"


def _converter(field: dict[str, Any]) -> Any:
    """CSV text of one Bulk API field -> the value REST would give (empty text is null)."""
    kind = field.get("type")

    def convert(text: str) -> Any:
        if text == "":
            return None
        if kind == "boolean":
            return text.lower() == "true"
        if kind in _INT_TYPES:
            return int(text)
        if kind in _NUMBER_TYPES:
            return Decimal(text)
        return text  # text, dates and datetimes as REST gives them

    return convert
