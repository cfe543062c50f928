"""Google BigQuery through the provider's BigQueryHook: a standard-SQL query read page by page.

Why it looks like this:

- **Constant memory**: the read is one query job whose result is fetched with
  ``result(page_size=chunk_size)``: one ``getQueryResults`` page (at most ``chunk_size`` rows) at
  a time, one chunk per page. The Storage Read API would be faster for huge tables but needs
  ``bigquery.readsessions`` permissions and a gRPC endpoint; the REST pages need neither.
- **No SQL built from values**: table names are ``dataset.table`` or ``project.dataset.table``,
  each part checked then quoted with backticks; fields are quoted the same way; the cursor's value
  and the safety-lag bound are query parameters (``@since``, ``@until``) typed from the column's
  BigQuery type. A ``query`` is wrapped as ``(<query>) AS src``.
- **Incremental predicate**: ``u >= @since AND u <= @until``, ``ORDER BY u, k``. The cursor's own
  value is read again, so a row committed late with that value and a key below the cursor's is
  read by the next run; rows sharing it are read again and the load's digests skip those that
  did not change (docs/adr/0004-cursor-boundary.md). BigQuery orders STRING values by their bytes
  (UTF-8), which is Unicode code point order, as Python compares the cursor's keys (a key column
  declared with a non-default collation such as ``und:ci`` would order differently: leave keys
  without collation).
- **Time zones**: TIMESTAMP is an instant: bound and returned as tz-aware UTC. DATETIME has no
  zone: its values are **taken as UTC** (returned tz-aware UTC, the cursor bound as naive UTC),
  so a DATETIME column must hold UTC wall-clock times. DATE cursors compare with ``until``'s
  date. The safety-lag bound applies only to these time-typed cursors, not to numbers.
- **Probe first**: the table's schema (``get_table``) or the query's (a ``LIMIT 0`` run, which
  BigQuery answers without scanning) is read before anything else: a missing table, a missing
  column (``source.fields``), a cursor that cannot order rows (``source.updated_field``), a key
  the query does not return (``source.key``) are ConfigurationErrors before any row is read.
- **Skipped rows**: one ``COUNTIF`` query over the same relation counts null cursors and rows
  after the bound. BigQuery has no multi-statement snapshot for two jobs: a row written between
  the count and the read may be counted or not (the read itself is consistent).
- **Values per cell, errors per row**: rows are converted from the REST page's cells (the
  documented ``{"f": [{"v": ...}]}`` form, kept in ``page.raw_page``) by the table below, so a
  value that cannot be converted rejects its row (RowError naming the column) instead of
  ending the read.

Connection (an Airflow ``google_cloud_platform`` connection, ``conn_id``): everything the hook
supports (key file, keyfile JSON, ADC, impersonation, ``project``, ``location``) works as usual
and the client comes from ``BigQueryHook.get_client``. For an emulator or a private endpoint, add
the extra ``api_endpoint`` (e.g. ``"http://127.0.0.1:9050"``): the client is then built with the
hook's credentials and ``client_options={"api_endpoint": ...}``. Emulators need no credentials:
set the hook's own extra ``is_anonymous: true`` (anonymous credentials are used only then) and
``project``::

    {"conn_type": "google_cloud_platform",
     "extra": {"project": "my-project", "api_endpoint": "http://127.0.0.1:9050", "is_anonymous": true}}

Type table (BigQuery type -> value formulas see):

===============================  ===============================================================
BigQuery type                    value
===============================  ===============================================================
NULL (any type)                  None
INT64 (INTEGER)                  int
NUMERIC, BIGNUMERIC              Decimal
FLOAT64 (FLOAT)                  float (NaN and infinities included)
BOOL (BOOLEAN)                   bool
STRING                           str
BYTES                            bytes
DATE                             datetime.date
TIMESTAMP                        tz-aware UTC datetime
DATETIME                         tz-aware datetime, the value taken as UTC
TIME                             str, ``HH:MM:SS[.ffffff]``
STRUCT (RECORD)                  dict (str keys), values converted recursively; null -> None
ARRAY (REPEATED)                 list, items converted recursively; an empty or null array -> []
JSON                             parsed: dict, list, str, int, float, bool or None; text that is
                                 not strict JSON (NaN, Infinity, malformed) rejects the row
GEOGRAPHY                        str (WKT, e.g. ``POINT(1 2)``)
INTERVAL                         str (BigQuery's canonical ``Y-M D H:M:S[.F]``, e.g. ``1-2 3 4:0:0``)
RANGE, others                    str (their text form)
===============================  ===============================================================
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from functools import cached_property
from typing import Any

from airflow_provider_contactsync.core.cursor import as_instant
from airflow_provider_contactsync.core.errors import ConfigurationError, RowError
from airflow_provider_contactsync.core.rows import dig, top_level_columns
from airflow_provider_contactsync.core.spec.models import SqlSource
from airflow_provider_contactsync.sources.base import (
    SKIP_AFTER_UNTIL,
    SKIP_NULL,
    Chunk,
    ReadWindow,
    SqlTableSource,
    check_chunk_size,
)

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

# Legacy names (query result schemas use them) -> standard SQL names.
_STANDARD = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT", "DECIMAL": "NUMERIC"}
_STANDARD["BIGDECIMAL"] = "BIGNUMERIC"
_TIME_TYPES = {"TIMESTAMP", "DATETIME", "DATE"}
_NUMBER_TYPES = {"INT64", "NUMERIC", "BIGNUMERIC", "FLOAT64"}
_CURSOR_TYPES = _TIME_TYPES | _NUMBER_TYPES
"""Types an ``updated_field`` may have: they order rows the way the cursor compares its values."""
_KEY_TYPES = _CURSOR_TYPES | {"STRING"}

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{2,61}[a-z0-9]$")
_DATASET = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,1023}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")


def standard_type(field: Any) -> str:
    """``INT64``, ``STRUCT``, ... for a SchemaField, whichever name (legacy or standard) the API gave."""
    name = str(field.field_type).upper()
    return _STANDARD.get(name, name)


class BigQuerySource(SqlTableSource):
    """A BigQuery table or query, read through ``BigQueryHook(gcp_conn_id=spec.conn_id)``.

    :param spec: a ``type: bigquery`` SQL source.
    :param hook: a ready hook (tests, callers that already hold one); built from ``conn_id`` if omitted.
    """

    source_type, database_name = "bigquery", "BigQuery"

    def __init__(self, spec: SqlSource, *, hook: Any = None) -> None:
        super().__init__(spec, hook=hook)
        self._table_parts = _table_parts(spec) if spec.table is not None else None
        for name in (spec.updated_field, spec.key):
            if name is not None:
                _quoted_path(name)  # the model's pattern already holds; BigQuery's names are stricter

    def make_hook(self) -> Any:
        from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

        return BigQueryHook(gcp_conn_id=self.spec.conn_id, use_legacy_sql=False)

    @cached_property
    def client(self) -> Any:
        """The ``google.cloud.bigquery.Client`` of the connection (see the module docstring)."""
        hook = self.hook
        project = hook.project_id
        if not project:
            raise ConfigurationError(
                f"source {self.spec.name!r}: connection {self.spec.conn_id!r} names no project: set its "
                "'project' extra or use credentials that carry one",
                key_path="source.conn_id",
            )
        location = getattr(hook, "location", None)
        endpoint = _extra(hook, "api_endpoint")
        if not endpoint:
            return hook.get_client(project_id=project, location=location)
        from google.cloud.bigquery import Client

        try:
            from airflow.providers.google.common.consts import CLIENT_INFO
        except ImportError:  # pragma: no cover - older providers
            CLIENT_INFO = None  # noqa: N806
        return Client(
            project=project,
            location=location,
            credentials=hook.get_credentials(),
            client_options=hook.get_client_options(api_endpoint_override=endpoint),
            client_info=CLIENT_INFO,
        )

    # -- reading -------------------------------------------------------------------------------

    def read(self, window: ReadWindow, *, chunk_size: int) -> Iterator[Chunk]:
        check_chunk_size(chunk_size)
        self.skipped.clear()
        schema = self._probe()
        plan = _Plan(self.spec, self._relation(), schema, window)
        if plan.count_sql is not None:
            row = next(iter(self._query(plan.count_sql, plan.count_params).result()))
            for reason, count in zip(plan.count_reasons, row.values(), strict=True):
                self._skip(reason, int(count or 0))
        rows = self._query(plan.select, plan.params).result(page_size=chunk_size)
        make_row = _RowMaker(self.spec, rows.schema)
        for page in rows.pages:
            cells = (page.raw_page or {}).get("rows") or []
            for start in range(0, len(cells), chunk_size):  # a server may send more than asked
                yield [make_row(raw) for raw in cells[start : start + chunk_size]]

    # -- discovery -----------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """Columns of the table or query, in order, each followed by the dotted paths of its struct fields."""
        names: list[str] = []
        for field in self._probe(check_fields=False):
            names += _paths(field, "")
        return names

    def list_tables(self) -> list[str]:
        """``dataset.table`` names of the tables and views of the connection's project."""
        client = self.client
        return sorted(
            f"{dataset.dataset_id}.{table.table_id}"
            for dataset in client.list_datasets()
            for table in client.list_tables(dataset.reference)
        )

    def test_connection(self) -> tuple[bool, str]:
        try:
            client = self.client
            schema = self._probe()
            if self.spec.updated_field is not None:
                _Plan(self.spec, self._relation(), schema, ReadWindow())  # checks the cursor's types
        except Exception as exc:  # an unreachable service or a wrong definition is an answer here
            return False, f"cannot use {self.spec.conn_id!r}: {exc}"
        return True, f"BigQuery project {client.project}: {self.relation_name} has the {len(self.spec.fields)} fields"

    # -- helpers -------------------------------------------------------------------------------

    def _relation(self) -> str:
        if self._table_parts is not None:
            return ".".join(f"`{part}`" for part in self._table_parts)
        assert self.spec.query is not None
        return "(" + self.spec.query.strip().rstrip(";").strip() + "\n)"

    def _query(self, sql: str, params: Sequence[Any] = ()) -> Any:
        from google.cloud.bigquery import QueryJobConfig

        config = QueryJobConfig(use_legacy_sql=False, query_parameters=list(params))
        return self.client.query(sql, job_config=config)

    def _probe(self, *, check_fields: bool = True) -> list[Any]:
        """Top-level SchemaFields of the relation; refuse a missing cursor, key or field before reading."""
        from google.api_core.exceptions import BadRequest, NotFound

        try:
            if self._table_parts is not None:
                schema = list(self.client.get_table(".".join(self._table_parts)).schema)
            else:
                schema = list(self._query(f"SELECT * FROM {self._relation()} AS src LIMIT 0").result().schema)
        except (NotFound, BadRequest) as exc:
            raise ConfigurationError(
                f"source {self.spec.name!r}: cannot read {self.relation_name}: {_message(exc)}",
                key_path="source.table" if self.spec.table else "source.query",
            ) from None
        if check_fields:
            names = [f.name for f in schema]
            for attr in ("updated_field", "key"):
                name = getattr(self.spec, attr)
                if name is not None and _find(schema, name) is None:
                    raise ConfigurationError(
                        f"source {self.spec.name!r}: {self.relation_name} has no column {name!r} "
                        f"({attr}); its columns are {names}",
                        key_path=f"source.{attr}",
                    )
            self.check_fields(names)
        return schema


class _Plan:
    """The statements of one read: the windowed SELECT and the skipped-rows COUNTIF, with their parameters."""

    def __init__(self, spec: SqlSource, relation: str, schema: list[Any], window: ReadWindow) -> None:
        from google.cloud.bigquery import ScalarQueryParameter

        select_list = ", ".join(f"src.`{c}`" for c in top_level_columns(spec.fields))
        self.params: list[Any] = []
        self.count_sql: str | None = None
        self.count_params: list[Any] = []
        self.count_reasons: list[str] = []
        if spec.updated_field is None:
            # Everything, every run; no ORDER BY: sorting a whole table buys nothing here.
            self.select = f"SELECT {select_list} FROM {relation} AS src"
            return
        assert spec.key is not None  # the model requires key with updated_field
        updated_type = _cursor_type(spec, schema, spec.updated_field, _CURSOR_TYPES, "updated_field")
        _cursor_type(spec, schema, spec.key, _KEY_TYPES, "key")  # the key orders ties in ORDER BY
        u, k = _quoted_path(spec.updated_field), _quoted_path(spec.key)
        conditions = [f"{u} IS NOT NULL"]
        after_since = ""
        since_params: list[Any] = []
        if window.since is not None:
            # Inclusive: the cursor's own value is read again, so a late commit at it is not lost.
            after_since = f"{u} >= @since"
            since_params = [ScalarQueryParameter("since", updated_type, _bind(window.since.value, updated_type))]
            conditions.append(after_since)
            self.params += since_params
        # A safety-lag bound is a time: it cannot apply to a version-number cursor.
        bounded = window.until is not None and updated_type in _TIME_TYPES
        if bounded:
            until = ScalarQueryParameter("until", updated_type, _bind(window.until, updated_type))
            conditions.append(f"{u} <= @until")
            self.params.append(until)
        self.select = f"SELECT {select_list} FROM {relation} AS src WHERE {' AND '.join(conditions)} ORDER BY {u}, {k}"
        # Rows a run deliberately leaves out, in one scan of the same relation.
        counts = [f"COUNTIF({u} IS NULL)"]
        self.count_reasons.append(SKIP_NULL.format(field=spec.updated_field))
        if bounded:
            later = f"{u} > @until" + (f" AND {after_since}" if after_since else "")
            counts.append(f"COUNTIF({later})")
            self.count_params = [until, *since_params]
            self.count_reasons.append(SKIP_AFTER_UNTIL)
        self.count_sql = f"SELECT {', '.join(counts)} FROM {relation} AS src"


def _cursor_type(spec: SqlSource, schema: list[Any], name: str, allowed: set[str], attr: str) -> str:
    field = _find(schema, name)
    assert field is not None  # _probe checked it exists
    kind = standard_type(field)
    if kind not in allowed or field.mode == "REPEATED":
        what = "a TIMESTAMP, DATETIME, DATE or number" if attr == "updated_field" else "a STRING, number or time"
        shown = f"ARRAY<{kind}>" if field.mode == "REPEATED" else kind
        raise ConfigurationError(
            f"source {spec.name!r}: {attr} {name!r} must be {what} column, not {shown}"
            + ("; cast it in a query if it holds timestamps as text" if attr == "updated_field" else ""),
            key_path=f"source.{attr}",
        )
    return kind


def _bind(value: Any, kind: str) -> Any:
    """A cursor value (or stored key) as the query parameter of a column of type ``kind``."""
    if kind == "TIMESTAMP":
        return as_instant(_as_datetime(value))
    if kind == "DATETIME":
        return as_instant(_as_datetime(value)).replace(tzinfo=None)  # DATETIME values are taken as UTC
    if kind == "DATE":
        if isinstance(value, dt.datetime):
            return as_instant(value).date()
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
    if kind == "INT64":
        return int(value)
    if kind in ("NUMERIC", "BIGNUMERIC"):
        return value if isinstance(value, Decimal) else Decimal(str(value))
    if kind == "FLOAT64":
        return float(value)
    return str(value)


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class _RowMaker:
    """Builds a row dict (exactly ``fields``) from one REST row; a failed conversion becomes a RowError."""

    def __init__(self, spec: SqlSource, schema: Sequence[Any]) -> None:
        self.fields = list(spec.fields)
        self.columns = [(f.name, _converter(f)) for f in schema]
        self.key = spec.key

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any] | RowError:
        document: dict[str, Any] = {}
        failure: tuple[str, Any, Exception] | None = None
        for (name, convert), cell in zip(self.columns, raw.get("f") or (), strict=True):
            value = cell.get("v") if isinstance(cell, dict) else cell
            try:
                document[name] = convert(value)
            except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                failure = failure or (name, value, exc)
                document[name] = None
        if failure is not None:
            name, value, exc = failure
            key = dig(document, self.key) if self.key else None
            return RowError(f"{name}: cannot read the value: {exc}", field=name, value=value, row=key)
        return {f: dig(document, f) for f in self.fields}


def _converter(field: Any) -> Callable[[Any], Any]:
    """From a REST cell's ``v`` to the row-model native of the SchemaField's type (see the type table)."""
    kind = standard_type(field)
    if kind == "STRUCT":
        subs = [(sub.name, _converter(sub)) for sub in field.fields]

        def scalar(value: Any) -> Any:
            cells = value.get("f") or []
            return {name: convert(cell.get("v")) for (name, convert), cell in zip(subs, cells, strict=True)}

    else:
        scalar = _SCALARS.get(kind, str)
    if field.mode == "REPEATED":
        return lambda value: [] if value is None else [None if i.get("v") is None else scalar(i["v"]) for i in value]
    return lambda value: None if value is None else scalar(value)


def _timestamp(value: Any) -> dt.datetime:
    """Microseconds since the epoch (``formatOptions.useInt64Timestamp``), or seconds as a float string."""
    text = str(value)
    if re.fullmatch(r"-?\d+", text):
        return EPOCH + dt.timedelta(microseconds=int(text))
    return EPOCH + dt.timedelta(microseconds=int((Decimal(text) * 1_000_000).to_integral_value()))


def _datetime_as_utc(value: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text not in ("true", "false"):
        raise ValueError(f"not a BOOL: {value!r}")
    return text == "true"


def _strict_json(value: Any) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(value, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg}") from None


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "INT64": int,
    "FLOAT64": float,
    "NUMERIC": lambda v: Decimal(str(v)),
    "BIGNUMERIC": lambda v: Decimal(str(v)),
    "BOOL": _bool,
    "STRING": str,
    "BYTES": lambda v: base64.b64decode(v, validate=True),
    "DATE": lambda v: dt.date.fromisoformat(str(v)),
    "TIMESTAMP": _timestamp,
    "DATETIME": _datetime_as_utc,
    "TIME": str,
    "JSON": _strict_json,
    "GEOGRAPHY": str,
    "INTERVAL": str,
}


def _find(schema: Sequence[Any], path: str) -> Any:
    """The SchemaField at a dotted path (``address.city``), or None."""
    fields: Sequence[Any] = schema
    found = None
    for part in path.split("."):
        found = next((f for f in fields if f.name == part), None)
        if found is None:
            return None
        fields = found.fields or ()
    return found


def _paths(field: Any, prefix: str) -> list[str]:
    name = prefix + field.name
    if standard_type(field) != "STRUCT" or field.mode == "REPEATED":
        return [name]  # dig() cannot reach into arrays: their items are not listed
    return [name] + [p for sub in field.fields for p in _paths(sub, name + ".")]


def _quoted_path(path: str) -> str:
    """``src.`address`.`city``` for ``address.city``; each part checked against BigQuery's column names."""
    parts = path.split(".")
    for part in parts:
        if not _FIELD.match(part):
            raise ConfigurationError(f"{path!r} is not a BigQuery column name", key_path="source.fields")
    return "src." + ".".join(f"`{p}`" for p in parts)


def _table_parts(spec: SqlSource) -> list[str]:
    assert spec.table is not None
    parts = spec.table.split(".")
    problem = None
    if len(parts) == 1:
        problem = "write dataset.table or project.dataset.table"
    elif len(parts) == 3 and not _PROJECT.match(parts[0]):
        problem = f"{parts[0]!r} is not a project id (lowercase letters, digits and hyphens)"
    elif not _DATASET.match(parts[-2]):
        problem = f"{parts[-2]!r} is not a dataset name (letters, digits and underscores)"
    elif not _TABLE.match(parts[-1]):
        problem = f"{parts[-1]!r} is not a table name (letters, digits, underscores and hyphens)"
    if problem:
        raise ConfigurationError(f"source {spec.name!r}: table {spec.table!r}: {problem}", key_path="source.table")
    return parts


def _extra(hook: Any, name: str) -> Any:
    """A connection extra, short or ``extra__google_cloud_platform__`` prefixed, as the hook reads its own."""
    extras = getattr(hook, "extras", None) or {}
    value = extras.get(name, extras.get(f"extra__google_cloud_platform__{name}"))
    return None if value == "" else value


def _message(exc: Exception) -> str:
    """The service's own words, without the job id and location lines the client appends."""
    text = getattr(exc, "message", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
