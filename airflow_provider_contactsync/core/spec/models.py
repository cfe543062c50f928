"""The YAML source definition as typed models: validated once, passed everywhere.

The models are the user's documentation: field descriptions feed the JSON Schema that editors
use and the reference in docs/definition-reference.md. Unknown keys are errors.
"""

from __future__ import annotations

import codecs
import csv
import re
import string
from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"
"""Integration and source names: they become part of the DAG id ``contactsync__<integration>__<source>``."""

FIELD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
"""Field names are CEL identifiers (dots reach into nested documents)."""

ATTRIBUTE_PATTERN = r"^[A-Z][A-Z0-9_]*$"
"""Brevo attribute names are upper case."""

TABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_$-]*(\.[A-Za-z_][A-Za-z0-9_$-]*){0,2}$"
"""``table``, ``schema.table`` or ``database.schema.table`` (BigQuery: ``project.dataset.table``, project ids
have hyphens); each part is validated then quoted."""

CONN_ID_PATTERN = r"^[A-Za-z0-9_#!()\-.:/\\]+$"
"""Airflow connection ids: what Airflow itself accepts (``RE_SANITIZE_CONN_ID``), ASCII only."""

EMAIL_PATTERN = r'^[^@\s,;<>"()\[\]\\]+@[^@\s,;<>"()\[\]\\]+\.[^@\s,;<>"()\[\]\\]+$'
"""One address: no list separators (',' ';'), angle brackets or quotes that would make it several."""

MONGO_DATABASE_PATTERN = r'^[^/\\. "$*<>:|?]+$'
"""What MongoDB accepts as a database name."""

PATTERN_DESCRIPTIONS = {
    NAME_PATTERN: "a name is a letter, then letters, digits, '_' or '-' (it becomes part of the DAG id)",
    FIELD_PATTERN: "a field is a letter or '_', then letters, digits or '_' (dots reach into nested data: "
    "address.city)",
    ATTRIBUTE_PATTERN: "a Brevo attribute is upper case: a letter, then letters, digits or '_'",
    TABLE_PATTERN: "a table is table, schema.table or database.schema.table, each part a letter or '_' then "
    "letters, digits, '_', '$' or '-' (no quotes, spaces or ';')",
    CONN_ID_PATTERN: "an Airflow connection id is letters, digits and _ # ! ( ) - . : / \\",
    EMAIL_PATTERN: "one email address per entry (no ',', ';', spaces, quotes or angle brackets)",
    MONGO_DATABASE_PATTERN: 'a MongoDB database name has none of / \\ . space " $ * < > : | ?',
}
"""What each pattern means, for error messages (pydantic would print the regular expression)."""

MAX_WAIT_SECONDS = 7 * 24 * 3600
"""Upper bound of the lag and readiness delays and of the file sensor's timeout: one week. Larger values
are mistakes (a unit confusion, ms for s) that would hold rows back for ever or overflow a date."""

MAX_POKE_INTERVAL_SECONDS = 24 * 3600
"""The file sensor looks at least once a day."""

MAX_LIST_ID = 2**31 - 1
MAX_CONDITION_LENGTH = 10_000
"""Characters of a condition (deleted_when, a list's condition, consent): the formula size limit."""
MAX_CONDITIONAL_LISTS = 100
"""Brevo list ids are 32-bit integers."""

MAX_NAME_LENGTH = 1024
"""Longest field, table or attribute name: databases allow 63 (PostgreSQL) to 1,024 (BigQuery datasets)."""

FieldName = Annotated[str, Field(pattern=FIELD_PATTERN, max_length=MAX_NAME_LENGTH)]
AttributeName = Annotated[str, Field(pattern=ATTRIBUTE_PATTERN, max_length=MAX_NAME_LENGTH)]

MAX_TEXT_LENGTH = 100_000
"""Upper bound of ``destination.text_max_length``: Brevo text attributes hold far less."""

IDENTIFIER_ATTRIBUTES = ("EMAIL", "SMS", "EXT_ID")
"""Brevo needs at least one of these to identify a contact."""

SCHEDULE_PRESETS = {"manual": None, "hourly": "@hourly", "daily": "@daily"}

MAPPING_ERROR_TYPE = "mapping_consistency"
"""pydantic error type of :meth:`SourceDefinition._mapping_is_consistent`: the loader reports these
problems itself, every one of them, from :func:`mapping_problems`."""


def mapping_problems(
    fields: Collection[str] | None,
    outputs: Collection[str] | None,
    mapping: Mapping[Any, Any],
    payload_field: Any = None,
) -> list[tuple[tuple[str, ...], str]]:
    """Every ``(key path, message)`` that makes a mapping inconsistent with the rest of a definition.

    Works on validated values and on the raw data of a broken file alike: ``fields`` (source fields)
    or ``outputs`` (transform outputs) is None when unknown, which skips the checks that need them;
    entries that are not strings are left to the schema's own errors.
    """
    problems: list[tuple[tuple[str, ...], str]] = []
    if fields is not None and outputs is not None:
        available = set(fields) | set(outputs)
        for field in mapping:
            if isinstance(field, str) and field not in available:
                problems.append((("mapping", field), f"{field!r} is neither a source field nor a transform output"))
        if isinstance(payload_field, str) and payload_field not in available:
            problems.append(
                (("payload", "field"), f"{payload_field!r} is neither a source field nor a transform output")
            )
    by_attribute: dict[str, list[str]] = {}
    for field, attribute in mapping.items():
        if isinstance(attribute, str):
            by_attribute.setdefault(attribute, []).append(str(field))
    for attribute, mapped_from in by_attribute.items():
        if len(mapped_from) > 1:
            problems.append(
                (("mapping", mapped_from[1]), f"attribute {attribute} is mapped from several fields: {mapped_from}")
            )
    attributes = {a.strip().upper() for a in by_attribute}
    if mapping and not attributes & set(IDENTIFIER_ATTRIBUTES):
        problems.append((("mapping",), "must include at least one identifier attribute: EMAIL, SMS or EXT_ID"))
    return problems


class StrictModel(BaseModel):
    """Base: unknown keys are errors, and values are read strictly.

    ``true`` is not 1, ``'5'`` is not 5, ``1e20`` is not an integer and ``'yes'`` is not a boolean:
    a mistyped value is an error naming its key, never coerced. Floats must be finite.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, strict=True, allow_inf_nan=False)


class CsvOptions(StrictModel):
    """How to read CSV files."""

    delimiter: str = Field(",", min_length=1, max_length=1, description="One-character field separator.")
    quotechar: str = Field('"', min_length=1, max_length=1, description="Quote character.")
    encoding: str = Field(
        "utf-8",
        description="Text encoding, a Python codec name (utf-8, latin-1, cp1252, utf-16, ...); 'utf-8-sig' "
        "strips a BOM.",
    )
    header: bool = Field(True, description="The first line names the columns.")
    columns: list[Annotated[str, Field(min_length=1, max_length=1000)]] | None = Field(
        None, description="Column names when the file has no header line (header: false)."
    )

    @field_validator("encoding")
    @classmethod
    def _text_encoding(cls, encoding: str) -> str:
        try:
            codec = codecs.lookup(encoding)
        except LookupError:
            raise ValueError(
                f"unknown encoding {encoding!r}: give a Python codec name, such as utf-8, utf-8-sig, latin-1 or cp1252"
            ) from None
        if not getattr(codec, "_is_text_encoding", True) or codec.name == "undefined":
            raise ValueError(f"{encoding!r} is not a text encoding: give one such as utf-8, latin-1 or cp1252")
        return encoding

    @model_validator(mode="after")
    def _csv_dialect(self) -> CsvOptions:
        if self.delimiter in "\r\n" or self.quotechar in "\r\n":
            raise ValueError("delimiter and quotechar cannot be line breaks")
        if self.delimiter == self.quotechar:
            raise ValueError("delimiter and quotechar must differ")
        try:
            csv.reader((), delimiter=self.delimiter, quotechar=self.quotechar)
        except (csv.Error, TypeError) as exc:
            raise ValueError(f"delimiter {self.delimiter!r} and quotechar {self.quotechar!r}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _columns_when_headerless(self) -> CsvOptions:
        if not self.header and not self.columns:
            raise ValueError("columns is required when header is false")
        return self


class _SourceBase(StrictModel):
    name: str = Field(pattern=NAME_PATTERN, max_length=100, description="Source name, unique in its integration.")
    fields: list[FieldName] = Field(
        min_length=1, description="Fields to read from the source; formulas and mapping see only these."
    )
    updated_field: str | None = Field(
        None,
        description="Field checked for updates (the cursor). Makes the sync incremental: each run reads "
        "only rows whose value is newer than the last run's.",
    )
    key: str | None = Field(
        None,
        description="Unique row key. Tie-breaker of the cursor (required with updated_field) and the row id "
        "in error reports.",
    )
    deleted_when: str | None = Field(
        None,
        max_length=MAX_CONDITION_LENGTH,
        description="CEL condition on a row (source fields and transform outputs) that marks it deleted in the "
        "source, e.g. 'deleted_at != null'. Read like any change; what a delete does is set by 'deletes'.",
    )
    safety_lag_seconds: int = Field(
        0,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Rows updated less than this many seconds ago wait for the next run, so transactions "
        "still committing with an earlier timestamp are not skipped.",
    )

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, fields: list[str]) -> list[str]:
        seen: set[str] = set()
        for name in fields:
            if name in seen:
                raise ValueError(f"field {name!r} is listed twice")
            seen.add(name)
        return fields

    @model_validator(mode="after")
    def _cursor_fields_are_read(self) -> _SourceBase:
        for attr in ("updated_field", "key"):
            value = getattr(self, attr)
            if value is not None and value not in self.fields:
                raise ValueError(f"{attr} {value!r} is not one of the fields {self.fields}")
        if self.updated_field and not self.key:
            raise ValueError("key is required with updated_field: it breaks ties between rows sharing a cursor value")
        return self


class SqlSource(_SourceBase):
    """A SQL database table or query (PostgreSQL, BigQuery, Snowflake)."""

    type: Literal["postgres", "bigquery", "snowflake"]
    conn_id: str = Field(
        pattern=CONN_ID_PATTERN, max_length=250, description="Airflow connection holding the credentials."
    )
    table: str | None = Field(
        None,
        pattern=TABLE_PATTERN,
        max_length=3 * MAX_NAME_LENGTH,
        description="Table to read, e.g. public.customers (PostgreSQL), crm.customers or "
        "my-project.crm.customers (BigQuery), CRM.PUBLIC.CUSTOMERS (Snowflake).",
    )
    query: str | None = Field(
        None,
        description="One SELECT (or WITH ... SELECT) to read instead of a table, in the source's SQL dialect; the "
        "incremental predicate wraps it. Checked when the definition is read: another statement, a write, "
        "SELECT ... INTO, FOR UPDATE or a ')' closing the wrapper is refused; trailing ';' and comments are dropped.",
    )

    @field_validator("query")
    @classmethod
    def _one_select(cls, query: str | None, info: ValidationInfo) -> str | None:
        source_type = info.data.get("type")
        if query is None or source_type is None:
            return query
        from airflow_provider_contactsync.core.spec.sql import check_select

        return check_select(query, source_type)

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        return self


class MongoSource(_SourceBase):
    """A MongoDB collection, optionally filtered or aggregated."""

    type: Literal["mongo"]
    conn_id: str = Field(
        pattern=CONN_ID_PATTERN, max_length=250, description="Airflow connection holding the credentials."
    )
    database: str | None = Field(
        None,
        pattern=MONGO_DATABASE_PATTERN,
        max_length=64,
        description="Database; defaults to the connection's schema.",
    )
    collection: str = Field(min_length=1, max_length=255, description="Collection to read (no '$', not system.*).")
    filter: dict | None = Field(None, description="Find filter applied before the incremental predicate.")
    pipeline: list[dict] | None = Field(
        None, description="Aggregation pipeline, instead of a filter; it may only read ($out and $merge are refused)."
    )

    @field_validator("collection")
    @classmethod
    def _collection_name(cls, collection: str) -> str:
        if "$" in collection or collection.startswith("system."):
            raise ValueError(f"{collection!r} is not a collection name MongoDB allows to read: no '$', not system.*")
        return collection

    @field_validator("pipeline")
    @classmethod
    def _pipeline_only_reads(cls, pipeline: list[dict] | None) -> list[dict] | None:
        for index, stage in enumerate(pipeline or ()):
            for operator in ("$out", "$merge"):
                if operator in stage:
                    raise ValueError(f"stage {index + 1} ({operator}) writes to the database: a pipeline may only read")
        return pipeline

    @model_validator(mode="after")
    def _filter_or_pipeline(self) -> MongoSource:
        if self.filter is not None and self.pipeline is not None:
            raise ValueError("give at most one of filter or pipeline")
        return self


def _inside_folder(value: str, what: str) -> str:
    """A relative path that cannot leave the source folder (no absolute path, no '..')."""
    if value.startswith("/") or value.startswith("\\") or ".." in re.split(r"[/\\]", value):
        raise ValueError(f"{what} must stay inside the folder: no absolute paths or '..'")
    return value


class FileReadiness(StrictModel):
    """When a file counts as completely uploaded, so a file still being written is never read."""

    done_marker: str | None = Field(
        None,
        description="Marker file the uploader writes once the file is complete: '{name}' stands for the "
        "file's name, '{stem}' for the name without its last extension, e.g. '{name}.done' or '{stem}.ok'. "
        "A file is read only once its marker exists; markers are never imported.",
    )
    stable_seconds: int | None = Field(
        None,
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Read a file only once its size and modification time stayed the same across checks "
        "(sensor pokes or runs) at least this many seconds apart; 0 means two checks in a row.",
    )

    @field_validator("done_marker")
    @classmethod
    def _marker_template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "/" in value or "\\" in value:
            raise ValueError("done_marker is a file name next to the file, not a path")
        try:
            fields = [(field, spec, conversion) for _, field, spec, conversion in string.Formatter().parse(value)]
        except ValueError as exc:
            raise ValueError(f"done_marker: {exc} (write '{{{{' and '}}}}' for literal braces)") from None
        for field, spec, conversion in fields:
            # Parsed, not formatted: '{name:>999999999}' or '{name.__class__}' would run at parse time.
            if field is not None and (field not in ("name", "stem") or spec or conversion):
                raise ValueError(
                    f"done_marker: only {{name}} and {{stem}} can be used, without format or attribute "
                    f"(found {{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}})"
                )
        if not any(field is not None for field, _, _ in fields):  # '{{name}}' is a literal, not the name
            raise ValueError("done_marker must contain {name} or {stem}")
        return value


class FileWait(StrictModel):
    """A sensor before extract that waits for a new file without holding a worker slot (reschedule mode)."""

    poke_interval_seconds: int = Field(
        300, ge=1, le=MAX_POKE_INTERVAL_SECONDS, description="Seconds between two looks at the folder."
    )
    timeout_seconds: int = Field(
        3600,
        ge=1,
        le=MAX_WAIT_SECONDS,
        description="After this long with no new file the run ends as skipped, not failed.",
    )


class FileSource(_SourceBase):
    """Files in a folder: local (or mounted), SFTP or FTP (FTPS with an ftps connection)."""

    type: Literal["file", "sftp", "ftp"]
    conn_id: str | None = Field(
        None, pattern=CONN_ID_PATTERN, max_length=250, description="Airflow connection (required for sftp and ftp)."
    )
    path: str = Field("", description="Folder to look in; optional on servers (the login folder).")
    pattern: str = Field(
        "*.csv",
        description="Glob of file names to import, e.g. 'contacts_*.csv'. Matched against the file name, "
        "or against the path relative to the folder when it contains '/'.",
    )
    recursive: bool = Field(False, description="Look in subfolders of the folder too.")
    format: Literal["csv", "jsonl"] = Field("csv", description="File format.")
    compression: Literal["auto", "none", "gzip", "zip"] = Field(
        "auto", description="'auto' reads '.gz' files as gzip and '.zip' files as zip archives (every member)."
    )
    csv: CsvOptions = Field(default_factory=CsvOptions, description="CSV reading options.")
    ready: FileReadiness = Field(
        default_factory=FileReadiness, description="How to tell that a file is completely uploaded."
    )
    after_import: Literal["keep", "archive", "delete"] = Field(
        "keep",
        description="What happens to a file once its contacts are loaded. Kept files are not imported again "
        "unless they change (tracked by name, size, modification time and checksum).",
    )
    archive_path: str | None = Field(
        None,
        description="Folder imported files are moved to with after_import: archive (relative to path, or "
        "absolute); never searched for new files.",
    )
    wait_for_file: FileWait | None = Field(
        None, description="Wait for a new file with a sensor before extracting (else a run with none is skipped)."
    )

    @model_validator(mode="after")
    def _conn_for_servers(self) -> FileSource:
        if self.type != "file" and not self.conn_id:
            raise ValueError(f"conn_id is required for {self.type} sources")
        _inside_folder(self.pattern, "pattern")
        if self.after_import == "archive" and not self.archive_path:
            raise ValueError("archive_path is required with after_import: archive")
        if self.archive_path is not None and self.after_import != "archive":
            raise ValueError("archive_path is only used with after_import: archive")
        if self.archive_path is not None and self.archive_path.strip("/") in ("", "."):
            raise ValueError("archive_path must be another folder than the source folder")
        return self


EVENT_TYPE_FIELD = "event_type"
EVENT_TIME_FIELD = "event_time"
CUSTOMER_ID_FIELD = "id"
EVENT_FIELDS = (EVENT_TYPE_FIELD, EVENT_TIME_FIELD)
"""Fields every events row carries besides the customer's own: the kind of the newest event applied
(``created``, ``updated``, ``deleted``) and its time (ISO 8601, UTC). Formulas and conditions can use them."""

EVENTS_DELETED_WHEN = f'{EVENT_TYPE_FIELD} == "deleted"'
EVENTS_MAX_DELETES = 1000
"""Default ``deletes.max_per_run`` of an events source: a count, since a percentage of a young source's few
contacts would refuse its first deletes."""


class EventsQueue(StrictModel):
    """Where the customer events wait: the queue the webhook intake writes and the sync reads."""

    backend: Literal["redis", "postgres"] = Field(
        description="redis: a Redis stream with a consumer group (RedisHook); postgres: a table of events "
        "(PostgresHook), for users who already land webhooks in their database."
    )
    conn_id: str = Field(
        pattern=CONN_ID_PATTERN, max_length=250, description="Airflow connection of the Redis server or database."
    )
    table: str | None = Field(
        None,
        pattern=TABLE_PATTERN,
        max_length=2 * MAX_NAME_LENGTH,
        description="postgres only: the events table (name or schema.name); default "
        "contactsync_events__<integration>__<source>, created when missing.",
    )
    wake_conn_id: str | None = Field(
        None,
        pattern=CONN_ID_PATTERN,
        max_length=250,
        description="sync_mode realtime: the Redis connection the intake publishes wake-ups on and the "
        "triggerer listens to (default: conn_id with the redis backend; required with postgres).",
    )

    @model_validator(mode="after")
    def _table_for_postgres(self) -> EventsQueue:
        if self.table is not None and self.backend != "postgres":
            raise ValueError("table is for the postgres backend only")
        return self

    @property
    def wake_connection(self) -> str | None:
        """The Redis connection realtime wake-ups go through, if any."""
        return self.wake_conn_id or (self.conn_id if self.backend == "redis" else None)


class EventsSource(_SourceBase):
    """Customer events (created, updated, deleted) from a shop, read from a durable queue.

    With ``preset: true`` (the default) the platform's standard fields and mapping apply (email -> EMAIL,
    first and last name, phone -> SMS, the customer id -> EXT_ID, marketing consent); the definition's
    ``fields``, ``mapping`` and ``consent`` add to or override them (map a field to null to drop it).
    Every row also has ``id`` (the customer id, the row key), ``event_type`` and ``event_time``.
    """

    type: Literal["events"]
    platform: Literal["custom", "shopify", "woocommerce"] = Field(
        description="Payload shape: custom (the seed's JSON: event, timestamp, data, changes), shopify "
        "(customers/create|update|delete) or woocommerce (customer.created|updated|deleted)."
    )
    queue: EventsQueue
    sync_mode: Literal["batch", "realtime"] = Field(
        "batch",
        description="batch: runs follow the schedule; realtime: a run starts when events arrive (an Airflow "
        "AssetWatcher in the triggerer), and the schedule, if any, is a safety sweep.",
    )
    preset: bool = Field(
        True, description="Start from the platform's standard fields, mapping and consent (see above)."
    )
    fields: list[FieldName] = Field(  # type: ignore[assignment]
        default_factory=list, description="Fields of the customer to read besides the preset's (flattened with _)."
    )
    max_events_per_run: int = Field(
        100_000, ge=1, le=1_000_000, description="Most events one run claims from the queue (held in memory)."
    )
    max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="Runs that may claim an event before it goes to the dead-letter list: an event whose runs "
        "keep failing (Brevo down, a bug) is set aside with its reason instead of blocking the queue.",
    )

    @model_validator(mode="after")
    def _events_shape(self) -> EventsSource:
        if CUSTOMER_ID_FIELD not in self.fields or any(name not in self.fields for name in EVENT_FIELDS):
            raise ValueError(f"fields must include {CUSTOMER_ID_FIELD}, {EVENT_TYPE_FIELD} and {EVENT_TIME_FIELD}")
        if self.key != CUSTOMER_ID_FIELD:
            raise ValueError(f"key of an events source is {CUSTOMER_ID_FIELD!r} (the customer id)")
        if self.updated_field is not None:
            raise ValueError("updated_field: an events source has no cursor (the queue is)")
        if self.safety_lag_seconds:
            raise ValueError("safety_lag_seconds does not apply to an events source")
        if self.sync_mode == "realtime" and self.queue.wake_connection is None:
            raise ValueError(
                "sync_mode realtime with the postgres backend needs queue.wake_conn_id (a Redis connection)"
            )
        return self


def _creates_only(data: dict[str, Any]) -> bool:
    """The raw definition's destination never changes a contact (mode create_only, or its deprecated form)."""
    destination = data.get("destination")
    return isinstance(destination, dict) and (
        destination.get("mode") == "create_only" or destination.get("update_existing") is False
    )


def expand_events_source(data: Any) -> Any:
    """An events definition with its platform preset applied, as plain data (before validation).

    Idempotent: the result says ``preset: false``, so the JSON handed to tasks is validated as is.
    """
    if not isinstance(data, dict) or not isinstance(data.get("source"), dict):
        return data
    source = data["source"]
    if source.get("type") != "events":
        return data
    data, source = dict(data), dict(source)
    fields = source.get("fields") if isinstance(source.get("fields"), list) else []
    mapping = data.get("mapping") if isinstance(data.get("mapping"), dict) else {}
    if source.get("preset", True) is True and source.get("platform") in ("custom", "shopify", "woocommerce"):
        from airflow_provider_contactsync.sources.events.presets import preset

        standard = preset(source["platform"])
        fields = standard["fields"] + [name for name in fields if name not in standard["fields"]]
        mapping = {**standard["mapping"], **mapping}
        if "consent" not in data and standard["consent_email"]:
            data["consent"] = {"email": standard["consent_email"]}
        source["preset"] = False
    # null drops a preset's entry (pydantic would refuse a null attribute)
    data["mapping"] = {name: attribute for name, attribute in mapping.items() if attribute is not None}
    for name in (CUSTOMER_ID_FIELD, *EVENT_FIELDS):
        if name not in fields:
            fields = [*fields, name] if name != CUSTOMER_ID_FIELD else [name, *fields]
    source["fields"] = fields
    source.setdefault("key", CUSTOMER_ID_FIELD)
    if not _creates_only(data):
        source.setdefault("deleted_when", EVENTS_DELETED_WHEN)
        deletes = data.get("deletes")
        if deletes is None or isinstance(deletes, dict):
            data["deletes"] = {"max_per_run": EVENTS_MAX_DELETES, **(deletes or {})}
    data["source"] = source
    return data


SALESFORCE_SYSTEM_FIELDS = ("Id", "SystemModstamp", "IsDeleted")
"""Read from every Salesforce object: the key, the cursor (Salesforce's own last-change stamp) and the
soft-delete flag (deleted records are read through queryAll)."""
SALESFORCE_DELETED_WHEN = "IsDeleted == true"
MAX_CONNECTIONS_PER_ORG = 5
"""The seed: one Salesforce account can be connected at most five times across contacts and leads."""


class SalesforceSource(_SourceBase):
    """Salesforce Contacts or Leads through the Salesforce provider's SalesforceHook.

    Incremental on ``SystemModstamp`` with ``Id`` as tie-breaker; deleted records are read too
    (``queryAll``) and handled by ``deletes``. With ``preset: true`` (the default) Email, FirstName,
    LastName and the Id (EXT_ID) are mapped, and ``HasOptedOutOfEmail`` gives email consent; the
    definition's ``fields``, ``mapping`` and ``consent`` add to them and override them.
    """

    type: Literal["salesforce"]
    conn_id: str = Field(
        pattern=CONN_ID_PATTERN, max_length=250, description="Airflow connection of type salesforce (the org)."
    )
    object: Literal["Contact", "Lead"] = Field(description="The Salesforce object to sync.")
    preset: bool = Field(True, description="Start from the standard fields, mapping and consent (see above).")
    fields: list[FieldName] = Field(  # type: ignore[assignment]
        default_factory=list, description="Fields of the object to read besides the preset's (API names)."
    )
    read: Literal["auto", "rest", "bulk"] = Field(
        "auto",
        description="rest: SOQL query/queryMore pages; bulk: a Bulk API 2.0 query job; auto: bulk when the run "
        "has more than bulk_threshold records to read (counted first with SELECT COUNT()).",
    )
    bulk_threshold: int = Field(10_000, ge=0, le=100_000_000, description="Records above which auto reads in bulk.")
    writeback: bool = Field(
        False,
        description="Write changes made in Brevo to these contacts back to Salesforce, by the seed's rules (a "
        "writeback task after the load; contacts created in Brevo are never pushed).",
    )
    writeback_deletes: bool = Field(
        False,
        description="With writeback: a contact deleted in Brevo is deleted in Salesforce too (not a Contact linked to "
        "a Case: Salesforce refuses, and that deletion is not propagated); bounded by deletes.max_per_run.",
    )

    @model_validator(mode="after")
    def _salesforce_shape(self) -> SalesforceSource:
        missing = [name for name in SALESFORCE_SYSTEM_FIELDS if name not in self.fields]
        if missing:
            raise ValueError(f"fields must include {', '.join(missing)}")
        if (self.updated_field, self.key) != ("SystemModstamp", "Id"):
            raise ValueError("a Salesforce source is incremental on SystemModstamp with Id as tie-breaker")
        return self


def expand_salesforce_source(data: Any) -> Any:
    """A Salesforce definition with its preset and system fields applied, as plain data (idempotent)."""
    if not isinstance(data, dict) or not isinstance(data.get("source"), dict):
        return data
    source = data["source"]
    if source.get("type") != "salesforce":
        return data
    data, source = dict(data), dict(source)
    fields = source.get("fields") if isinstance(source.get("fields"), list) else []
    mapping = data.get("mapping") if isinstance(data.get("mapping"), dict) else {}
    if source.get("preset", True) is True:
        standard = ["Id", "Email", "FirstName", "LastName", "HasOptedOutOfEmail"]
        fields = standard + [name for name in fields if name not in standard]
        mapping = {"Id": "EXT_ID", "Email": "EMAIL", "FirstName": "FIRSTNAME", "LastName": "LASTNAME", **mapping}
        consent = data.get("consent")
        if consent is None or (isinstance(consent, dict) and "email" not in consent and "sms" not in consent):
            consent = dict(consent or {})
            consent["email"] = "HasOptedOutOfEmail == null ? null : !HasOptedOutOfEmail"
            data["consent"] = consent
        source["preset"] = False
    data["mapping"] = {name: attribute for name, attribute in mapping.items() if attribute is not None}
    for name in SALESFORCE_SYSTEM_FIELDS:
        if name not in fields:
            fields = [*fields, name]
    source["fields"] = fields
    source.setdefault("updated_field", "SystemModstamp")
    source.setdefault("key", "Id")
    if not _creates_only(data):
        source.setdefault("deleted_when", SALESFORCE_DELETED_WHEN)
    data["source"] = source
    return data


Source = Annotated[SqlSource | MongoSource | FileSource | EventsSource | SalesforceSource, Field(discriminator="type")]


class Payload(StrictModel):
    """A JSON object column whose keys become contact attributes (as warehouse syncs do with a PAYLOAD column)."""

    field: str = Field(
        pattern=FIELD_PATTERN,
        max_length=MAX_NAME_LENGTH,
        description="Source field (or transform output) holding a JSON object: JSON text, a JSON/VARIANT/OBJECT "
        "column, a document or a struct. Each key names an attribute (upper-cased: loyalty_tier -> LOYALTY_TIER).",
    )
    attributes: list[AttributeName] | None = Field(
        None,
        description="Expand only these attributes (other keys are ignored); by default every key is expanded and a "
        "key that is not a writable attribute of the account rejects the row with the reason.",
    )

    @field_validator("attributes")
    @classmethod
    def _no_identifiers(cls, attributes: list[str] | None) -> list[str] | None:
        for name in attributes or ():
            if name in IDENTIFIER_ATTRIBUTES:
                raise ValueError(f"{name} is an identifier: map it from a field in mapping, not from the payload")
        return attributes


Condition = Annotated[str, Field(min_length=1, max_length=MAX_CONDITION_LENGTH)]


SyncMode = Literal["upsert", "create_only", "update_only", "mirror"]
ListId = Annotated[int, Field(gt=0, le=MAX_LIST_ID)]


class Destination(StrictModel):
    """Where contacts go in Brevo, and how the Brevo side follows the source (docs/sync-semantics.md)."""

    conn_id: str = Field(
        "brevo_default",
        pattern=CONN_ID_PATTERN,
        max_length=250,
        description="Airflow connection of type brevo (API key as password).",
    )
    mode: SyncMode = Field(
        "upsert",
        description="upsert: create or update; create_only: never update an existing contact; update_only: never "
        "create (a contact not in Brevo is skipped); mirror: upsert, and contacts this source created that a "
        "full read no longer returns are removed as 'deletes' says (needs source.key; every run reads in full).",
    )
    list_ids: list[ListId] = Field(
        default_factory=list,
        description="Brevo lists every synced contact is added to (at least one, except in update_only mode).",
    )
    unlink_list_ids: list[ListId] = Field(
        default_factory=list, description="Brevo lists every synced contact is removed from."
    )
    # Keys read laxly: JSON (the definition handed to tasks, the JSON schema) has only text keys.
    lists: dict[Annotated[int, Field(gt=0, le=MAX_LIST_ID, strict=False)], Condition] = Field(
        default_factory=dict,
        max_length=MAX_CONDITIONAL_LISTS,
        description="Conditional membership: list id -> CEL condition on the row, e.g. {5: \"tier == 'gold'\"}. "
        "A contact joins the list while its condition is true and leaves it when it turns false (only lists "
        "this source put it in).",
    )
    update_existing: bool | None = Field(
        None,
        exclude=True,  # read into mode; the definition handed to tasks carries mode only
        description="Deprecated: false is mode create_only. Kept so older definitions keep working.",
    )
    empty_attributes: bool = Field(
        False,
        description="A null value erases the attribute in Brevo (else nulls leave it unchanged), on every write "
        "path: imports and batch updates alike.",
    )
    text_max_length: int = Field(
        2000, gt=0, le=MAX_TEXT_LENGTH, description="Longest text value accepted; longer values reject the row."
    )

    @field_validator("update_existing", mode="before")
    @classmethod
    def _update_existing_is_a_boolean(cls, value: Any) -> Any:
        if value is None:  # only an explicit null reaches here: leaving the key out is the way to unset it
            raise ValueError("update_existing must be true or false (or left out: it is deprecated, use mode)")
        return value

    @field_validator("lists", mode="before")
    @classmethod
    def _list_ids_are_numbers(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if isinstance(key, bool) or not isinstance(key, (int, str)):
                    raise ValueError(f"{key!r} is not a list id (a number such as 5)")
        return value

    @model_validator(mode="after")
    def _mode_and_lists(self) -> Destination:
        if self.update_existing is not None:
            implied = "upsert" if self.update_existing else "create_only"
            if self.mode not in (implied, "upsert"):
                raise ValueError(
                    f"destination.update_existing: {str(self.update_existing).lower()} contradicts mode {self.mode}: "
                    "drop update_existing (deprecated) and keep mode"
                )
            if not self.update_existing:
                object.__setattr__(self, "mode", "create_only")
            object.__setattr__(self, "update_existing", None)  # read into mode: one way to say it
        if not self.list_ids and self.mode != "update_only":
            raise ValueError(f"destination.list_ids: mode {self.mode} imports contacts, which needs at least one list")
        for name, ids in (("list_ids", self.list_ids), ("unlink_list_ids", self.unlink_list_ids)):
            if len(set(ids)) != len(ids):
                raise ValueError(f"destination.{name}: a list is given twice")
        overlap = (set(self.list_ids) & set(self.unlink_list_ids)) | (
            set(self.lists) & (set(self.list_ids) | set(self.unlink_list_ids))
        )
        if overlap:
            raise ValueError(
                f"destination.lists: list {sorted(overlap)[0]} appears in more than one of list_ids, "
                "unlink_list_ids and lists"
            )
        return self

    @property
    def update_enabled(self) -> bool:
        """Existing contacts are updated (every mode but create_only)."""
        return self.mode != "create_only"


class Deletes(StrictModel):
    """What happens to a contact deleted in the source (deleted_when) or gone from it (mirror mode)."""

    behavior: Literal["unlink", "blacklist", "delete"] = Field(
        "unlink",
        description="unlink: remove it from this source's lists; blacklist: emailBlacklisted and smsBlacklisted; "
        "delete: delete the contact in Brevo.",
    )
    max_per_run: int | Annotated[str, Field(pattern=r"^(100|[0-9]{1,2})(\.[0-9]+)?%$")] = Field(
        "10%",
        description="Most deletes one run may make: a count, or a percentage of the contacts this source owns. "
        "A run that would delete more deletes nothing, fails and alerts; a manual run with the param "
        "allow_mass_delete goes through.",
    )
    ownership: Literal["created", "delivered"] = Field(
        "created",
        description="Which contacts this source may delete: those it created (default), or every contact it "
        "delivered, including contacts that existed in Brevo before it updated them.",
    )

    @field_validator("max_per_run")
    @classmethod
    def _count_is_not_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 0 <= value <= 10**9:
            raise ValueError("max_per_run is a count from 0 to 1,000,000,000, or a percentage such as '5%'")
        return value

    def limit(self, owned: int) -> int:
        """The most contacts a run may delete when the source owns ``owned`` contacts."""
        if isinstance(self.max_per_run, int):
            return self.max_per_run
        return int(owned * float(self.max_per_run.rstrip("%")) / 100)


class Consent(StrictModel):
    """Marketing consent from the source, kept in Brevo's emailBlacklisted / smsBlacklisted.

    A condition that is true means opted in, false opted out (the contact is blacklisted), null unknown
    (Brevo's flag is left as it is). See docs/sync-semantics.md for how resubscription is decided.
    """

    email: Condition | None = Field(None, description="CEL: the contact accepts marketing email.")
    sms: Condition | None = Field(None, description="CEL: the contact accepts marketing SMS.")
    email_opt_in_at: Condition | None = Field(
        None,
        description="CEL timestamp of the contact's email opt-in (e.g. a consent_updated_at field): the explicit "
        "opt-in that may resubscribe a contact who unsubscribed in Brevo before it.",
    )
    sms_opt_in_at: Condition | None = Field(None, description="CEL timestamp of the contact's SMS opt-in.")
    opt_in_confirmed: bool = Field(
        False,
        description="You confirm that the contacts synced gave their consent to receive your marketing (the "
        "seed's checkbox). Required before a Salesforce definition with status active can run.",
    )
    resubscribe: Literal["explicit_only", "never"] = Field(
        "explicit_only",
        description="explicit_only: a contact blacklisted in Brevo is allowed again only when the source holds "
        "an opt-in newer than the unsubscription; never: a sync never lifts a blacklist.",
    )

    @model_validator(mode="after")
    def _something_to_do(self) -> Consent:
        if self.email is None and self.sms is None:
            raise ValueError("consent: needs email or sms (a condition that says whether the contact opted in)")
        if self.email_opt_in_at is not None and self.email is None:
            raise ValueError("consent.email_opt_in_at: needs email (the opt-in condition)")
        if self.sms_opt_in_at is not None and self.sms is None:
            raise ValueError("consent.sms_opt_in_at: needs sms (the opt-in condition)")
        return self


class Reports(StrictModel):
    """What the run's error report shows of the data (it holds personal data: emails, phones, names)."""

    values: Literal["raw", "masked", "hashed"] | None = Field(
        None,
        description="raw (the default for reports): values as read; masked: their shape only (j***@example.com), "
        "reasons kept; hashed: a short SHA-256 digest of each value (the same value gives the same digest). "
        "Emails quoted in reasons follow the same rule. Debug logs are masked unless this is set.",
    )

    @property
    def mode(self) -> str:
        """How error reports, summaries and alerts show values."""
        return self.values or "raw"


class Alerts(StrictModel):
    """Who hears about failures, and when a run with rejected rows counts as failed."""

    emails: list[Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254)]] = Field(
        default_factory=list, description="Addresses emailed when a task fails or too many rows are rejected."
    )
    max_error_rate: float = Field(
        0.05, ge=0, le=1, description="The run fails when the share of rejected rows is above this."
    )
    smtp_conn_id: str = Field(
        "smtp_default",
        pattern=CONN_ID_PATTERN,
        max_length=250,
        description="Airflow SMTP connection used to send alerts.",
    )


NOTIFICATION_EVENTS = ("sync_completed", "sync_failed", "batch_completed")
"""What a webhook can hear about: a run that succeeded, a run that failed, one import batch loaded."""

MAX_WEBHOOKS = 10

DEBUG_ROWS_PER_STAGE = 200
"""``debug: true`` traces at most this many rows per stage and run: debug on a million rows cannot flood the log."""


class Webhook(StrictModel):
    """One endpoint that receives a signed JSON summary (no personal data) of the events it listens to."""

    url_conn_id: str = Field(
        pattern=CONN_ID_PATTERN,
        max_length=250,
        description="Airflow connection of type http: host (or a whole URL such as https://hooks.example.com/"
        "contactsync), schema (http or https) and port give the URL; its password is the HMAC-SHA256 secret "
        "that signs each request (header X-Contactsync-Signature: t=<unix>,v1=<hex of HMAC(t + '.' + body)>) and "
        "is never sent; leave the login empty, put any Authorization header in the extra.",
    )
    events: list[Literal["sync_completed", "sync_failed", "batch_completed"]] = Field(
        min_length=1,
        max_length=len(NOTIFICATION_EVENTS),
        description="sync_completed: a run succeeded; sync_failed: a task of a run failed for good (after its "
        "retries); batch_completed: the load finished one import batch.",
    )

    @field_validator("events")
    @classmethod
    def _unique_events(cls, events: list[str]) -> list[str]:
        if len(set(events)) != len(events):
            raise ValueError("an event is listed twice")
        return events


class Notifications(StrictModel):
    """Who hears about runs besides the alert emails: outbound webhooks."""

    webhooks: list[Webhook] = Field(
        default_factory=list,
        max_length=MAX_WEBHOOKS,
        description="Endpoints posted a signed JSON summary of each event they listen to; a failing endpoint is "
        "retried briefly, then logged, and never fails the sync.",
    )

    @field_validator("webhooks")
    @classmethod
    def _one_entry_per_connection(cls, webhooks: list[Webhook]) -> list[Webhook]:
        seen: set[str] = set()
        for webhook in webhooks:
            if webhook.url_conn_id in seen:
                raise ValueError(f"connection {webhook.url_conn_id!r} is listed twice: list its events once")
            seen.add(webhook.url_conn_id)
        return webhooks


class Quota(StrictModel):
    """The most operations an integration may make in Brevo per calendar month (UTC).

    Each create, update and delete counts as one operation, summed over every source of the integration.
    At warn_at of the limit the alert addresses get one email a month; a run that would go past the
    limit sends nothing and fails, and every later run of the integration fails before sending until the
    month ends or the limit is raised (docs/sync-semantics.md).
    """

    operations_per_month: int = Field(
        100_000,
        ge=1,
        le=10**9,
        description="Creates, updates and deletes the integration may make in Brevo per calendar month (UTC).",
    )
    warn_at: float = Field(
        0.8, gt=0, lt=1, description="Share of the limit at which the alert addresses get a warning email."
    )


class SourceDefinition(StrictModel):
    """One source to sync into Brevo; the DAG factory turns each into one DAG."""

    version: Literal[1] = Field(1, description="Definition format version.")
    integration: str = Field(
        pattern=NAME_PATTERN, max_length=100, description="Groups several sources (e.g. crm, shop)."
    )
    description: str | None = Field(None, max_length=2000, description="Free text shown as the DAG's description.")
    source: Source
    schedule: str = Field(
        "manual",
        max_length=200,
        description="manual | hourly | daily | a five-field cron expression, e.g. '*/15 * * * *'.",
    )
    transform: dict[FieldName, str] = Field(
        default_factory=dict,
        description="CEL formula per field; a formula may define a new field. See docs/formulas.md.",
    )
    mapping: dict[FieldName, AttributeName] = Field(
        min_length=1, description="Field -> Brevo contact attribute (EMAIL, SMS, EXT_ID, FIRSTNAME, ...)."
    )
    payload: Payload | None = Field(
        None,
        description="Expand a JSON object field into attributes; attributes in mapping take precedence over its keys.",
    )
    destination: Destination
    deletes: Deletes | None = Field(
        None,
        description="What a delete does (source.deleted_when, or mirror mode); defaults apply when either is set.",
    )
    consent: Consent | None = Field(None, description="Marketing consent from the source (blacklist flags).")
    reports: Reports = Field(default_factory=Reports)
    alerts: Alerts = Field(default_factory=Alerts)
    notifications: Notifications = Field(default_factory=Notifications)
    quota: Quota | None = Field(
        None,
        description="Monthly operations quota of the integration; Salesforce sources get 100,000 a month "
        "unless they set their own.",
    )
    status: Literal["active", "draft"] = Field(
        "active",
        description="draft: the DAG is built paused, and a run started anyway (unpaused by mistake) is skipped "
        "with the reason; set active once the definition is ready (Salesforce: with consent.opt_in_confirmed).",
    )
    debug: bool = Field(
        False,
        description="Log each row's path through the stages (extract, transform, map, load), at most "
        f"{DEBUG_ROWS_PER_STAGE} rows per stage and run, so you can see why one contact did not arrive. Values "
        "are masked unless reports.values is set to raw (hashed when it is hashed).",
    )

    @model_validator(mode="before")
    @classmethod
    def _events_preset(cls, data: Any) -> Any:
        return expand_salesforce_source(expand_events_source(data))

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_a_number(cls, version: Any) -> Any:
        if type(version) is not int:
            raise ValueError(f"version must be the number 1, not {version!r}")
        return version

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, schedule: str) -> str:
        if schedule in SCHEDULE_PRESETS:
            return schedule
        from croniter import croniter

        if len(schedule.split()) != 5 or not croniter.is_valid(schedule):
            raise ValueError(f"{schedule!r} is not manual, hourly, daily or a five-field cron expression")
        return schedule

    @model_validator(mode="after")
    def _names_fit_a_dag_id(self) -> SourceDefinition:
        if len(self.integration) + len(self.source.name) > 240:
            raise ValueError("integration and source names are too long for a DAG id")
        if "__" in self.integration or "__" in self.source.name:
            raise ValueError("integration and source names cannot contain '__' (the DAG id separator)")
        return self

    @model_validator(mode="after")
    def _mapping_is_consistent(self) -> SourceDefinition:
        payload_field = self.payload.field if self.payload is not None else None
        problems = mapping_problems(self.source.fields, self.transform, self.mapping, payload_field)
        if problems:
            path, message = problems[0]
            raise PydanticCustomError(MAPPING_ERROR_TYPE, "{message}", {"message": f"{'.'.join(path)}: {message}"})
        return self

    @model_validator(mode="after")
    def _deletes_are_detected(self) -> SourceDefinition:
        mirror = self.destination.mode == "mirror"
        if mirror and not self.source.key:
            raise ValueError(
                "destination.mode: mirror needs source.key: a contact is removed only when no row with its key "
                "is read, and a rejected row must still count as present"
            )
        if self.deletes is not None and not mirror and self.source.deleted_when is None:
            raise ValueError(
                "deletes: nothing to act on: set source.deleted_when (a soft-delete marker) or destination.mode: mirror"
            )
        if self.source.deleted_when is not None and self.destination.mode == "create_only":
            raise ValueError("source.deleted_when: cannot be used with mode create_only (it never changes a contact)")
        return self

    @model_validator(mode="after")
    def _salesforce_opt_in(self) -> SourceDefinition:
        if self.source.type == "salesforce" and self.status == "active":
            if self.consent is None or not self.consent.opt_in_confirmed:
                raise ValueError(
                    "consent.opt_in_confirmed: an active Salesforce definition needs it set to true: confirm "
                    "that these contacts agreed to receive your marketing (or keep status: draft until then)"
                )
        return self

    @property
    def deletes_or_default(self) -> Deletes | None:
        """The delete rules in force: the ``deletes`` block, its defaults when deletes are detected, else None."""
        if self.deletes is not None:
            return self.deletes
        if self.destination.mode == "mirror" or self.source.deleted_when is not None:
            return Deletes()
        return None

    @property
    def quota_or_default(self) -> Quota | None:
        """The quota in force: the ``quota`` block, the default one for Salesforce sources, else None."""
        if self.quota is not None:
            return self.quota
        return Quota() if self.source.type == "salesforce" else None

    @property
    def dag_id(self) -> str:
        return f"contactsync__{self.integration}__{self.source.name}"

    @property
    def cron(self) -> str | None:
        """The Airflow schedule: a preset, a cron expression, or None for manual."""
        return SCHEDULE_PRESETS.get(self.schedule, self.schedule)
