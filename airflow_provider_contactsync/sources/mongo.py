"""MongoDB through the provider's MongoHook: a find (or an aggregation) in (updated, key) order.

Why it looks like this:

- **Constant memory**: documents come through a server cursor with ``batch_size(chunk_size)``;
  the client holds one batch and one chunk, whatever the collection size. Only the top-level
  keys the fields need are projected.
- **No query built from values**: the incremental predicate is a query document whose values
  are BSON values (datetime, number), never text pasted into a query: ``{u: {"$gte": v}}`` plus
  ``"$lte": until`` for dates (one range an index on ``(u, k)`` serves), sorted on
  ``[(u, 1), (k, 1)]``. A pipeline gets these as ``$match`` and ``$sort`` stages appended after
  the user's stages (``allowDiskUse``); a filter is combined with ``$and``.
- **The cursor's boundary is read again** (``$gte``, not after the stored key): a document
  committed late with the cursor's own date and a key below the cursor's is read by the next
  run; documents sharing that value are read again and the load's digests skip those that did
  not change (docs/adr/0004-cursor-boundary.md).
- **Schemaless, so the types come from the data**: MongoDB compares values of one BSON type
  bracket only (``{"$gt": <date>}`` never matches a number or a string), so a cursor field
  holding several types would silently lose documents. The cursor's type is decided from the
  documents matched: date if any document holds a date there, else number (int, long, double,
  decimal128). A field holding only other types (string, bool, object, ...) is a
  ConfigurationError on ``source.updated_field``. Documents whose cursor is null or missing, or
  of another type than the cursor's (arrays included), are counted in ``skipped``, and so are
  documents whose key is null or of another type than the key's. BSON Timestamps are not
  cursors (a date field is what applications write).
- **Tie order matches ``core/cursor.py``**: the key's type is decided from the first document:
  an ObjectId (compared as its 24-hex string by the cursor: same order as the 12 bytes MongoDB
  compares), a string (sorted with the ``simple`` collation, i.e. UTF-8 bytes, which is code
  point order like Python's, whatever the collection's default collation) or a number. The
  stored cursor's key is not part of the query (the boundary value is read whole).
- **Probe before reading**: the first document of the filter or pipeline tells what exists: a
  key dropped by a pipeline's ``$project`` is a ConfigurationError on ``source.key``, a field no
  document has at all (a typo) one on ``source.fields``; a field missing from one document is
  just null in that row. A missing collection is a ConfigurationError listing what exists.
- **No snapshot**: unlike PostgreSQL, the skipped counts (one ``$facet`` aggregation) and the
  read are separate operations; a document written in between may be counted or not.

Type table (BSON type -> value formulas see):

=====================================  ===========================================================
BSON type                              value
=====================================  ===========================================================
null, missing field or nested part     None
bool, string, double                   bool, str, float
int, long (Int64)                      int
decimal128                             Decimal (NaN and infinities included)
date (pymongo gives naive UTC)         tz-aware UTC datetime; a date out of Python's range
                                       (year 1-9999) rejects the row (RowError)
objectId                               24-hex str
binData                                bytes; UUID subtype 4 -> str (a malformed UUID rejects the
                                       row)
object (embedded document)             dict (str keys), values converted recursively
array                                  list, items converted recursively
timestamp, regex, javascript, minKey,  str (their Python repr, e.g. ``Timestamp(1700000000, 1)``)
maxKey, dbPointer/DBRef, others
=====================================  ===========================================================
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus

from airflow_provider_contactsync.core.cursor import CursorValue
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.rows import dig, top_level_columns
from airflow_provider_contactsync.core.spec.models import FIELD_PATTERN
from airflow_provider_contactsync.core.spec.models import MongoSource as MongoSpec
from airflow_provider_contactsync.sources.base import (
    SKIP_AFTER_UNTIL,
    SKIP_NULL,
    Chunk,
    ReadWindow,
    Source,
    check_chunk_size,
    chunked,
)

UTC = dt.timezone.utc
SKIP_OTHER_TYPE = "{field} has another BSON type than {kind}"
"""Reason in ``skipped`` for documents MongoDB's type bracketing would leave out of the window."""

_CURSOR_KINDS = ("date", "number")
"""``$type`` aliases a cursor may have, in order of preference when a field holds both."""
_KEY_KINDS = ("objectId", "string", "number")
"""``$type`` aliases a key may have: the ones whose MongoDB order is the cursor's order."""
_SAMPLE = 100
"""Documents :meth:`MongoSource.discover` looks at."""
_FIELD_NAME = re.compile(FIELD_PATTERN)


class MongoSource(Source):
    """A MongoDB collection (filtered or aggregated), read through ``MongoHook(spec.conn_id)``.

    :param spec: a ``type: mongo`` source.
    :param hook: a ready hook (tests, callers that already hold one): anything with ``get_conn()``
        returning a pymongo-compatible client (and ``connection.schema`` for the default
        database); built from ``conn_id`` if omitted.
    """

    ordered_reads = True  # sorted on (updated, key)
    tables_word = "collections"

    spec: MongoSpec

    def __init__(self, spec: MongoSpec, *, hook: Any = None) -> None:
        if spec.type != "mongo":
            raise ConfigurationError(f"source {spec.name!r}: a {spec.type} source is not MongoDB")
        super().__init__(spec)
        self._hook = hook
        self._secrets: set[str] = set()

    # -- reading -------------------------------------------------------------------------------

    def read(self, window: ReadWindow, *, chunk_size: int) -> Iterator[Chunk]:
        check_chunk_size(chunk_size)
        self.skipped.clear()
        with self._collection() as collection:
            probe = self._probe(collection)
            plan = _Plan(self.spec, collection, probe, window)
            for reason, count in plan.skipped_counts().items():
                self._skip(reason, count)
            documents = collection.find(
                plan.match,
                sort=plan.sort,
                projection=_projection(self.spec.fields),
                batch_size=chunk_size,
            )
            try:
                yield from chunked((_row(d, self.spec.fields, self.spec.key) for d in documents), chunk_size)
            finally:
                documents.close()

    # -- discovery -----------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """Dotted paths of the keys of the first documents (``address``, ``address.city``, ...).

        The filter or pipeline applies, so a pipeline's output fields are what is listed.
        """
        with self._collection() as collection:
            paths: dict[str, None] = {}
            documents = collection.find(limit=_SAMPLE)
            try:
                for document in documents:
                    paths.update(dict.fromkeys(_paths(document)))
            finally:
                documents.close()
            return list(paths)

    def list_tables(self) -> list[str]:
        """Collections and views of the database (``system.*`` left out)."""
        with self._database() as database:
            return sorted(n for n in database.list_collection_names() if not n.startswith("system."))

    def test_connection(self) -> tuple[bool, str]:
        try:
            with self._database() as database:
                version = database.client.server_info().get("version", "?")
                with self._collection_of(database) as collection:
                    self._probe(collection)
                return True, (
                    f"MongoDB {version}: {database.name}.{self.spec.collection} offers the "
                    f"{len(self.spec.fields)} fields"
                )
        except ConfigurationError as exc:
            return False, str(exc)
        except Exception as exc:  # an unreachable server is an answer here, not a crash
            message = f"cannot connect with {self.spec.conn_id!r}: {type(exc).__name__}: {exc}"
            for secret in self._secrets:
                message = message.replace(secret, "***")
            return False, message

    # -- helpers -------------------------------------------------------------------------------

    @contextmanager
    def _database(self) -> Iterator[Any]:
        """The database to read; a hook built here is closed (with its client) afterwards."""
        if self._hook is not None:
            yield self._database_of(self._hook)
            return
        from airflow.providers.mongo.hooks.mongo import MongoHook

        with MongoHook(mongo_conn_id=self.spec.conn_id) as hook:
            password = hook.connection.password
            if password:  # never shown in a message, as typed or as quoted in the URI
                self._secrets = {password, quote_plus(password)}
            yield self._database_of(hook)

    def _database_of(self, hook: Any) -> Any:
        name = self.spec.database or getattr(getattr(hook, "connection", None), "schema", None)
        if not name:
            raise ConfigurationError(
                f"source {self.spec.name!r}: no database: set source.database or the schema of "
                f"connection {self.spec.conn_id!r}",
                key_path="source.database",
            )
        return hook.get_conn()[name]

    @contextmanager
    def _collection(self) -> Iterator[_Collection]:
        with self._database() as database, self._collection_of(database) as collection:
            yield collection

    @contextmanager
    def _collection_of(self, database: Any) -> Iterator[_Collection]:
        from pymongo.errors import OperationFailure

        try:
            names = database.list_collection_names()
        except OperationFailure:
            names = None  # no listCollections privilege: let the read itself tell
        if names is not None and self.spec.collection not in names:
            existing = sorted(n for n in names if not n.startswith("system."))
            raise ConfigurationError(
                f"source {self.spec.name!r}: database {database.name!r} has no collection "
                f"{self.spec.collection!r}; it has {existing or 'no collection at all'}",
                key_path="source.collection",
            )
        yield _Collection(database[self.spec.collection], self.spec)

    def _probe(self, collection: _Collection) -> dict[str, Any] | None:
        """The first document; refuse a key, cursor or field that no document has, before reading.

        A field missing from the first document is looked for in the others (``$exists``): a
        sparse field is fine, a field that exists nowhere is a typo or a ``$project`` that drops it.
        """
        first = collection.first()
        if first is None:
            return None
        missing = [
            column
            for column in top_level_columns(self.spec.fields)
            if column not in first and collection.first({column: {"$exists": True}}, projection=[column]) is None
        ]
        if not missing:
            return first
        what = "the pipeline's output" if self.spec.pipeline is not None else f"collection {self.spec.collection}"
        shown = f"; the first document has {list(first)}"
        for role, field in (("key", self.spec.key), ("updated_field", self.spec.updated_field)):
            if field is not None and field.split(".", 1)[0] in missing:
                raise ConfigurationError(
                    f"source {self.spec.name!r}: no document of {what} has the {role} {field!r}{shown}",
                    key_path=f"source.{role}",
                )
        raise ConfigurationError(
            f"source {self.spec.name!r}: no document of {what} has "
            + ", ".join(repr(m) for m in missing)
            + f" (listed in fields){shown}",
            key_path="source.fields",
        )


class _Collection:
    """The documents of the source (its filter or pipeline), with extra conditions and stages on top."""

    def __init__(self, collection: Any, spec: MongoSpec) -> None:
        self.collection = _lenient_dates(collection)
        self.filter = spec.filter or {}
        self.pipeline = spec.pipeline
        self.collation: dict[str, str] | None = None

    def find(
        self,
        match: dict[str, Any] | None = None,
        *,
        sort: list[tuple[str, int]] | None = None,
        projection: dict[str, int] | list[str] | None = None,
        limit: int = 0,
        batch_size: int = 0,
    ) -> Any:
        """A cursor over the documents matching ``match`` too (a find, or the pipeline plus stages)."""
        options: dict[str, Any] = {} if self.collation is None else {"collation": self.collation}
        if self.pipeline is None:
            return self.collection.find(
                _and(self.filter, match),
                projection=projection,
                sort=sort,
                limit=limit,
                batch_size=batch_size,
                **options,
            )
        stages = list(self.pipeline)
        if match:
            stages.append({"$match": match})
        if sort:
            stages.append({"$sort": dict(sort)})
        if limit:
            stages.append({"$limit": limit})
        if projection:
            fields = projection if isinstance(projection, dict) else dict.fromkeys(projection, 1)
            stages.append({"$project": fields})
        if batch_size:
            options["batchSize"] = batch_size
        return self.collection.aggregate(stages, allowDiskUse=True, **options)

    def first(self, match: dict[str, Any] | None = None, projection: list[str] | None = None) -> Any:
        documents = self.find(match, projection=projection, limit=1)
        try:
            return next(iter(documents), None)
        finally:
            documents.close()

    def counts(self, conditions: dict[str, dict[str, Any]]) -> dict[str, int]:
        """How many documents match each condition: one ``$facet`` aggregation (one scan)."""
        if not conditions:
            return {}
        stages = (
            list(self.pipeline) if self.pipeline is not None else ([{"$match": self.filter}] if self.filter else [])
        )
        names = {f"c{i}": reason for i, reason in enumerate(conditions)}
        facets = {name: [{"$match": conditions[reason]}, {"$count": "n"}] for name, reason in names.items()}
        stages.append({"$facet": facets})
        options = {} if self.collation is None else {"collation": self.collation}
        [result] = list(self.collection.aggregate(stages, allowDiskUse=True, **options))
        return {reason: int(result[name][0]["n"]) if result[name] else 0 for name, reason in names.items()}


class _Plan:
    """What one read asks: the match and sort of the window, and the conditions of the skipped counts."""

    def __init__(
        self, spec: MongoSpec, collection: _Collection, probe: dict[str, Any] | None, window: ReadWindow
    ) -> None:
        self.spec = spec
        self.collection = collection
        self.match: dict[str, Any] | None = None
        self.sort: list[tuple[str, int]] | None = None
        self.conditions: dict[str, dict[str, Any]] = {}
        if spec.updated_field is None:
            return  # everything, every run, in natural order
        assert spec.key is not None  # the model requires key with updated_field
        updated, key = spec.updated_field, spec.key
        kind = self._cursor_kind(window)
        key_kind = self._key_kind(probe)
        if key_kind == "string":
            collection.collation = {"locale": "simple"}  # UTF-8 bytes: Python's code point order
        good_updated = _of_kind(kind)
        good_key = _of_kind(key_kind)
        since: dict[str, Any] = {}
        if window.since is not None:
            # Inclusive: the cursor's own value is read again, so a late commit at it is not lost.
            since["$gte"] = _bson_cursor_value(spec, kind, window.since.value)
        bounded = window.until is not None and kind == "date"
        window_range = {**good_updated, **since}
        if bounded:
            window_range["$lte"] = _bson_datetime(window.until)
        self.match = {updated: window_range, key: good_key}
        self.sort = [(updated, 1), (key, 1)]
        # Documents left out on purpose, so nothing is lost silently.
        self.conditions[SKIP_NULL.format(field=updated)] = {updated: None}
        self.conditions[SKIP_OTHER_TYPE.format(field=updated, kind=kind)] = {
            updated: {"$ne": None},
            "$nor": [{updated: good_updated}],
        }
        self.conditions[SKIP_NULL.format(field=key)] = {updated: good_updated, key: None}
        self.conditions[SKIP_OTHER_TYPE.format(field=key, kind=key_kind)] = {
            updated: good_updated,
            key: {"$ne": None},
            "$nor": [{key: good_key}],
        }
        if bounded:
            later = {**good_updated, **since, "$gt": _bson_datetime(window.until)}
            self.conditions[SKIP_AFTER_UNTIL] = {updated: later, key: good_key}

    def skipped_counts(self) -> dict[str, int]:
        return self.collection.counts(self.conditions)

    def _cursor_kind(self, window: ReadWindow) -> str:
        """date or number: the type found in the documents (date first), else the stored cursor's."""
        updated = self.spec.updated_field
        assert updated is not None
        for kind in _CURSOR_KINDS:
            if self.collection.first({updated: _of_kind(kind)}, projection=[updated]) is not None:
                return kind
        other = self.collection.first({updated: {"$ne": None}}, projection=[updated.split(".", 1)[0], "_id"])
        if other is not None:
            value = dig(other, updated)
            raise ConfigurationError(
                f"source {self.spec.name!r}: updated_field {updated!r} holds {_bson_type(value)} values "
                f"(e.g. in document {_native_or_text(other.get('_id'))!r}), not dates or numbers: MongoDB "
                "cannot order documents on it; store dates, or convert it in a pipeline ($toDate)",
                key_path="source.updated_field",
            )
        # No value at all yet (empty, or all null): whatever the stored cursor was; nothing will match.
        since = window.since.value if window.since is not None else None
        return "date" if since is None or isinstance(since, dt.date) else "number"

    def _key_kind(self, probe: dict[str, Any] | None) -> str:
        """objectId, string or number: the type of the first document's key."""
        key = self.spec.key
        assert key is not None
        value = dig(probe, key) if probe is not None else None
        if value is None:
            found = self.collection.first({key: {"$ne": None}}, projection=[key.split(".", 1)[0]])
            value = dig(found, key) if found is not None else None
        kind = _bson_type(value) if value is not None else "objectId"
        if kind in ("int", "long", "double", "decimal"):
            return "number"
        if kind not in _KEY_KINDS:
            raise ConfigurationError(
                f"source {self.spec.name!r}: key {key!r} holds {kind} values: a key must be an ObjectId, a "
                "string or a number, so that ties on the cursor are broken in the same order here and in MongoDB",
                key_path="source.key",
            )
        return kind


# -- query values --------------------------------------------------------------------------------


def _of_kind(kind: str) -> dict[str, Any]:
    """Values of one ``$type`` (a single alias: every server and mongomock take it), arrays excluded."""
    return {"$type": kind, "$not": {"$type": "array"}}


def _and(*parts: dict[str, Any] | None) -> dict[str, Any]:
    kept = [part for part in parts if part]
    if not kept:
        return {}
    return kept[0] if len(kept) == 1 else {"$and": kept}


def _bson_datetime(value: dt.datetime) -> dt.datetime:
    """Naive UTC: what BSON dates are, whatever the client's tz_aware setting."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _bson_number(value: Any) -> Any:
    from bson.decimal128 import Decimal128

    if isinstance(value, Decimal):
        return Decimal128(value)
    return value


def _bson_cursor_value(spec: MongoSpec, kind: str, value: CursorValue) -> Any:
    """The stored cursor value as the BSON value the predicate compares with."""
    if kind == "date" and isinstance(value, dt.datetime):
        return _bson_datetime(value)
    if kind == "number" and isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return _bson_number(value)
    raise ConfigurationError(
        f"source {spec.name!r}: the stored cursor ({value!r}) is not a {kind}, but updated_field "
        f"{spec.updated_field!r} now holds {kind}s: run once with full_refresh to start over",
        key_path="source.updated_field",
    )


def _projection(fields: list[str]) -> dict[str, int]:
    columns = top_level_columns(fields)
    projection = dict.fromkeys(columns, 1)
    if "_id" not in projection:
        projection["_id"] = 0
    return projection


def _lenient_dates(collection: Any) -> Any:
    """Dates outside Python's range decode as ``DatetimeMS`` (one row rejected) instead of failing the batch."""
    from bson.codec_options import DatetimeConversion

    try:
        options = collection.codec_options.with_options(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
        return collection.with_options(codec_options=options)
    except NotImplementedError:  # mongomock: it hands out DatetimeMS values as stored anyway
        return collection


# -- values ----------------------------------------------------------------------------------------


class _Unconvertible(ValueError):
    """A BSON value with no row-model native (a date out of Python's range, a malformed UUID)."""


def _row(document: Mapping[str, Any], fields: list[str], key: str | None) -> dict[str, Any] | RowError:
    """The row of one document; a value that cannot be converted rejects the row, naming the field and the key."""
    row: dict[str, Any] = {}
    for field in fields:
        raw = dig(document, field)  # type: ignore[arg-type]
        try:
            row[field] = _native(raw)
        except (_Unconvertible, ValueError, OverflowError) as exc:
            where = _row_key(document, key)
            return RowError(f"{field}: cannot convert the BSON value: {exc}", field=field, value=_text(raw), row=where)
    return row


def _row_key(document: Mapping[str, Any], key: str | None) -> Any:
    """The document's key as reports show it (ObjectIds as hex), or None when it has none that converts."""
    if key is None:
        return None
    try:
        return _native(dig(document, key))  # type: ignore[arg-type]
    except (_Unconvertible, ValueError, OverflowError):
        return None


def _native(value: Any) -> Any:
    """Row-model natives for what pymongo returns (see the type table in the module docstring)."""
    from bson.binary import Binary
    from bson.datetime_ms import DatetimeMS
    from bson.decimal128 import Decimal128
    from bson.objectid import ObjectId

    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, str):
        return value if type(value) is str else str(value)  # Code is a str subclass
    if isinstance(value, int):
        return int(value)  # Int64 is an int subclass
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, Decimal128):
        return value.to_decimal()
    if isinstance(value, Binary) and value.subtype == 4:
        if len(value) != 16:
            raise _Unconvertible(f"a UUID (binary subtype 4) of {len(value)} bytes instead of 16")
        return str(uuid.UUID(bytes=bytes(value)))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_native(v) for v in value]
    if isinstance(value, DatetimeMS):
        raise _Unconvertible(f"the date {int(value)} ms after 1970 is outside the years 1-9999 a row can hold")
    return str(value)


def _native_or_text(value: Any) -> Any:
    try:
        return _native(value)
    except ValueError:
        return _text(value)


def _text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


_BSON_TYPES = {
    "bool": "bool",
    "Int64": "long",
    "float": "double",
    "str": "string",
    "datetime": "date",
    "DatetimeMS": "date",
    "ObjectId": "objectId",
    "Decimal128": "decimal",
    "Binary": "binData",
    "bytes": "binData",
    "UUID": "binData",
    "Timestamp": "timestamp",
    "Regex": "regex",
    "Pattern": "regex",
    "Code": "javascript",
    "MinKey": "minKey",
    "MaxKey": "maxKey",
    "DBRef": "object",
}


def _bson_type(value: Any) -> str:
    """The ``$type`` alias of a decoded value, for messages and the key's type."""
    if isinstance(value, Mapping) and type(value).__name__ != "DBRef":
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    name = type(value).__name__
    if name == "int":
        return "int" if -(2**31) <= value < 2**31 else "long"
    return _BSON_TYPES.get(name, "null" if value is None else name)


def _paths(document: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of a document's keys, embedded documents included; names fields cannot use are left out."""
    for name, value in document.items():
        path = f"{prefix}{name}"
        if not _FIELD_NAME.match(path):
            continue
        yield path
        if isinstance(value, Mapping):
            yield from _paths(value, f"{path}.")
