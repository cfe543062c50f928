"""The YAML export definition (``kind: export``) as typed models: Brevo contacts -> a file or a table.

An export reads contacts from Brevo (all, a list, a segment; subscribed, unsubscribed, unsubscribed from
a list; optionally only those modified since the last successful export and those a CEL condition
keeps), writes the chosen fields in the order given, obfuscates the fields asked for, packs the file
(gzip or zip, OpenPGP) and delivers it (SFTP, FTP/FTPS, object storage or a local folder, BigQuery)
with a two-step transfer and a confirmation file. The factory turns each into one DAG
``contactsync_export__<integration>__<name>`` (docs/exports.md).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from airflow_provider_contactsync.core.spec.models import (
    ATTRIBUTE_PATTERN,
    CONN_ID_PATTERN,
    EMAIL_PATTERN,
    MAX_CONDITION_LENGTH,
    MAX_LIST_ID,
    NAME_PATTERN,
    StrictModel,
)

EXPORT_DAG_PREFIX = "contactsync_export__"

SYSTEM_FIELDS = (
    "CONTACT_ID",
    "EMAIL",
    "SMS",
    "EXT_ID",
    "ADDED_TIME",
    "MODIFIED_TIME",
    "EMAIL_BLACKLISTED",
    "SMS_BLACKLISTED",
)
"""Fields every contact has, whatever the account's attributes (Brevo's export names)."""

MAX_FIELDS = 500
MAX_RECIPIENTS = 20
TIME_OF_DAY = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

ColumnName = Annotated[str, Field(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$")]
ConnId = Annotated[str, Field(pattern=CONN_ID_PATTERN, max_length=250)]


class ExportField(StrictModel):
    """One column of the file: a Brevo field, the column's name, and how it is obfuscated."""

    attribute: str = Field(
        pattern=ATTRIBUTE_PATTERN,
        max_length=1024,
        description="Brevo attribute (FIRSTNAME, ...) or contact field: " + ", ".join(SYSTEM_FIELDS) + ".",
    )
    column: ColumnName | None = Field(None, description="The column's name in the file (default: the attribute).")
    obfuscate: Literal["sha256", "sha512", "hmac-sha256"] | None = Field(
        None,
        description="Hash the value (lower-case hex) after normalising it: email trimmed and lower-cased, phone "
        "in E.164, other text trimmed. hmac-sha256 takes its key from obfuscation.hmac_key_conn_id.",
    )
    normalise: Literal["email", "phone", "text"] | None = Field(
        None,
        description="How the value is normalised before hashing (default: email for EMAIL, phone for SMS, text "
        "otherwise).",
    )

    @property
    def name(self) -> str:
        return self.column or self.attribute

    @property
    def kind(self) -> str:
        if self.normalise:
            return self.normalise
        return {"EMAIL": "email", "SMS": "phone"}.get(self.attribute, "text")


def _field_entry(value: Any) -> Any:
    """``- EMAIL`` is short for ``- {attribute: EMAIL}``."""
    return {"attribute": value} if isinstance(value, str) else value


class ExportContent(StrictModel):
    """Which contacts, and which fields in which order."""

    contacts: Literal["all", "list", "segment"] = Field(
        "all", description="all: every contact of the account; list: list_id's members; segment: segment_id's."
    )
    list_id: int | None = Field(None, ge=1, le=MAX_LIST_ID, description="The Brevo list (contacts: list).")
    segment_id: int | None = Field(None, ge=1, le=MAX_LIST_ID, description="The Brevo segment (contacts: segment).")
    status: Literal["any", "subscribed", "unsubscribed", "unsubscribed_from_list"] = Field(
        "any",
        description="any; subscribed (not blacklisted); unsubscribed (email blacklisted by any means: the "
        "unsubscribes case); unsubscribed_from_list (unsubscribed from list_id only, still subscribed otherwise).",
    )
    where: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CONDITION_LENGTH,
        description="CEL condition on the contact's fields (attribute names, typed by the account: numbers, "
        "booleans, text), applied after reading; e.g. 'COUNTRY == \"FR\" && !EMAIL_BLACKLISTED'.",
    )
    incremental: bool = Field(
        False,
        description="Only contacts modified since the last successful export (its cursor: MODIFIED_TIME, then "
        "CONTACT_ID); the first run exports every matching contact. A retry or a failed run never moves it.",
    )
    read: Literal["auto", "export", "pages"] = Field(
        "auto",
        description="How contacts are read: export (Brevo's asynchronous CSV export, for many contacts), pages "
        "(GET /contacts, 1,000 a call: cheaper for small or incremental exports), auto (pages when incremental "
        "with a cursor or when at most pages_up_to contacts match, else export).",
    )
    pages_up_to: int = Field(
        10_000, ge=0, le=1_000_000, description="auto reads pages when at most this many contacts match."
    )
    fields: list[ExportField] = Field(
        min_length=1,
        max_length=MAX_FIELDS,
        description="The file's columns, in this order (it never changes unless this list does). An entry is an "
        "attribute name or {attribute, column, obfuscate, normalise}.",
    )

    @field_validator("fields", mode="before")
    @classmethod
    def _short_entries(cls, value: Any) -> Any:
        return [_field_entry(v) for v in value] if isinstance(value, list) else value

    @field_validator("fields")
    @classmethod
    def _unique_columns(cls, fields: list[ExportField]) -> list[ExportField]:
        seen: set[str] = set()
        for entry in fields:
            if entry.name in seen:
                raise ValueError(f"column {entry.name!r} appears twice: give one of them another column name")
            seen.add(entry.name)
        return fields

    @model_validator(mode="after")
    def _group_is_named(self) -> ExportContent:
        if self.contacts == "list" and self.list_id is None:
            raise ValueError("list_id is required with contacts: list")
        if self.contacts == "segment" and self.segment_id is None:
            raise ValueError("segment_id is required with contacts: segment")
        if self.contacts != "list" and self.list_id is not None:
            raise ValueError("list_id is only used with contacts: list")
        if self.contacts != "segment" and self.segment_id is not None:
            raise ValueError("segment_id is only used with contacts: segment")
        if self.status == "unsubscribed_from_list" and self.contacts != "list":
            raise ValueError("status unsubscribed_from_list needs contacts: list and list_id")
        if self.read == "pages" and self.status == "unsubscribed_from_list":
            raise ValueError("status unsubscribed_from_list is only in Brevo's export: use read: export or auto")
        if self.read == "export" and self.contacts == "all":
            raise ValueError("Brevo's export needs a list or a segment: use read: pages or auto for all contacts")
        return self

    def filter_summary(self) -> dict[str, Any]:
        """The filter, as the history and the confirmation file show it."""
        out: dict[str, Any] = {"contacts": self.contacts, "status": self.status}
        if self.list_id is not None:
            out["list_id"] = self.list_id
        if self.segment_id is not None:
            out["segment_id"] = self.segment_id
        if self.where:
            out["where"] = self.where
        out["incremental"] = self.incremental
        return out


class ExportFormat(StrictModel):
    """How rows are written: CSV with its options, or JSON lines (one object per contact, keys in order)."""

    type: Literal["csv", "jsonl"] = Field("csv", description="csv, or jsonl (JSON lines).")
    header: bool = Field(True, description="CSV: the first line names the columns.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field separator.")
    quotechar: str = Field('"', min_length=1, max_length=1, description="CSV quote character.")
    quoting: Literal["minimal", "all", "nonnumeric", "none"] = Field(
        "minimal",
        description="CSV quoting: minimal (only when needed), all, nonnumeric, none (a value that would need "
        "quotes fails the run, naming the row).",
    )
    encoding: Literal["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"] = Field(
        "utf-8", description="Text encoding; a character the encoding lacks fails the run, naming the row."
    )
    line_endings: Literal["lf", "crlf"] = Field("lf", description="lf (\\n) or crlf (\\r\\n).")

    @model_validator(mode="after")
    def _dialect(self) -> ExportFormat:
        if self.delimiter in "\r\n" or self.quotechar in "\r\n" or self.delimiter == self.quotechar:
            raise ValueError("delimiter and quotechar must differ and cannot be line breaks")
        return self


class Recipient(StrictModel):
    """One OpenPGP recipient: its public key in an Airflow connection, optionally pinned by fingerprint."""

    conn_id: ConnId = Field(description='Airflow connection whose extra holds the armored key: {"public_key": ...}.')
    fingerprint: str | None = Field(
        None,
        pattern=r"^(?:[0-9A-Fa-f] ?){39}[0-9A-Fa-f]$|^(?:[0-9A-Fa-f] ?){63}[0-9A-Fa-f]$",
        max_length=130,
        description="Expected key fingerprint, all 40 (or 64) hex digits, spaces allowed; another key fails the run.",
    )


class Encryption(StrictModel):
    """OpenPGP encryption to one or more public keys (any of their private keys decrypts)."""

    recipients: list[Recipient] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    armor: bool = Field(False, description="ASCII-armored output (.asc) instead of binary (.gpg).")


class ExportFile(StrictModel):
    """The file's name and packing."""

    name: str = Field(
        "{name}_{date:%Y%m%d}",
        min_length=1,
        max_length=200,
        description="File name template: {date} (the run's logical date; strftime pattern after ':', e.g. "
        "{date:%Y-%m-%d_%H%M}) and {name} (the export's name). The format's suffix (.csv, .jsonl), then .gz/.zip "
        "and .gpg/.asc are added unless the template already ends with the format's suffix.",
    )
    compression: Literal["none", "gzip", "zip"] = Field("none", description="none, gzip (.gz) or zip (.zip).")
    encryption: Encryption | None = None

    @field_validator("name")
    @classmethod
    def _template(cls, template: str) -> str:
        from airflow_provider_contactsync.exports.packaging import check_template

        return check_template(template)


class Obfuscation(StrictModel):
    """Settings shared by the obfuscated fields."""

    hmac_key_conn_id: ConnId | None = Field(
        None, description="Airflow connection whose password is the HMAC-SHA256 key (needed by hmac-sha256)."
    )
    phone_region: str = Field(
        "FR", pattern=r"^[A-Z]{2}$", description="Country assumed for phones without an international prefix."
    )


class ExportDestination(StrictModel):
    """Where the file goes."""

    type: Literal["sftp", "ftp", "ftps", "storage", "bigquery"] = Field(
        description="sftp, ftp, ftps (a server through its Airflow connection), storage (an object storage URL "
        "such as s3://bucket/prefix/ or a local folder), bigquery (a table, loaded by a load job)."
    )
    conn_id: ConnId | None = Field(
        None, description="Airflow connection of the server (sftp, ftp, ftps), of the bucket, or of BigQuery."
    )
    folder: str | None = Field(None, max_length=1000, description="sftp, ftp, ftps: remote folder (created).")
    path: str | None = Field(
        None, max_length=2000, description="storage: a URL (s3://bucket/prefix/, gs://...) or an absolute folder."
    )
    project: str | None = Field(None, max_length=100, description="bigquery: the project (default: the connection's).")
    dataset: str | None = Field(None, pattern=r"^[A-Za-z0-9_]{1,1024}$", description="bigquery: the dataset.")
    table: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,1024}$", description="bigquery: the table.")
    write: Literal["create", "append", "replace"] = Field(
        "append",
        description="bigquery: create (the table must not exist or be empty), append, replace (truncate first).",
    )
    two_step: bool = Field(
        True,
        description="Upload under a temporary name, check size and SHA-256 read back (BigQuery: into a temporary "
        "table, check the row count), then rename; a failed check leaves no final file and fails the run.",
    )

    @model_validator(mode="after")
    def _where(self) -> ExportDestination:
        if self.type in ("sftp", "ftp", "ftps"):
            if not self.conn_id:
                raise ValueError(f"conn_id is required for a {self.type} destination")
            if self.path or self.dataset or self.table:
                raise ValueError(f"a {self.type} destination takes conn_id and folder (not path, dataset, table)")
        elif self.type == "storage":
            if not self.path:
                raise ValueError("path is required for a storage destination")
            if "@" in self.path.split("/", 3)[2 if "://" in self.path else 0]:
                raise ValueError("path: no credentials in the URL; put them in the Airflow connection (conn_id)")
            if not ("://" in self.path or self.path.startswith("/")):
                raise ValueError("path must be a URL (s3://bucket/prefix/) or an absolute folder")
        elif self.type == "bigquery":
            if not (self.conn_id and self.dataset and self.table):
                raise ValueError("conn_id, dataset and table are required for a bigquery destination")
        return self


class Confirmation(StrictModel):
    """A small file written after the data file: its name, rows, size, SHA-256, export time and filter."""

    path: str = Field(
        "{file}.done",
        min_length=1,
        max_length=1000,
        description="Where: a template with {file} (the data file's name), relative to the destination's folder, "
        "or a URL/absolute folder path for storage (required for bigquery: e.g. s3://bucket/confirmations/{file}.json).",
    )
    format: Literal["json", "keyvalue"] = Field("json", description="json, or keyvalue (one key=value per line).")
    conn_id: ConnId | None = Field(
        None,
        description="Airflow connection of the object store when path is a URL elsewhere than the destination "
        "(s3://, gs://); default: the destination's connection for storage, the environment's credentials otherwise.",
    )

    @field_validator("path")
    @classmethod
    def _template(cls, template: str) -> str:
        from airflow_provider_contactsync.exports.confirmation import split_confirmation_location

        split_confirmation_location(template)
        return template


def _check_cron(expression: str, what: str) -> str:
    from croniter import croniter

    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValueError(f"{what} {expression!r} is not a five-field cron expression")
    return expression


class ExportSchedule(StrictModel):
    """When: a frequency and a time of day, or a cron expression."""

    every: Literal["manual", "hourly", "daily", "weekly", "monthly"] | None = Field(
        None, description="manual (only 'run now'), hourly, daily, weekly, monthly."
    )
    at: str = Field("00:00", pattern=TIME_OF_DAY, description="Time of day HH:MM (hourly: only the minutes count).")
    weekday: Literal[WEEKDAYS] = Field("monday", description="weekly: the day.")  # type: ignore[valid-type]
    day: int = Field(1, ge=1, le=28, description="monthly: the day of the month (1-28).")
    cron: str | None = Field(None, max_length=200, description="A five-field cron expression instead of every/at.")
    timezone: str = Field("UTC", max_length=64, description="IANA time zone of 'at' and 'cron' (Europe/Paris).")

    @model_validator(mode="after")
    def _one_way(self) -> ExportSchedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give either every (with at) or cron")
        if self.cron is not None:
            _check_cron(self.cron, "cron")
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not an IANA time zone (Europe/Paris, UTC)") from None
        return self

    def cron_expression(self) -> str | None:
        """The cron of the schedule (None when manual)."""
        if self.cron is not None:
            return self.cron
        hour, minute = (int(part) for part in self.at.split(":"))
        return {
            "manual": None,
            "hourly": f"{minute} * * * *",
            "daily": f"{minute} {hour} * * *",
            "weekly": f"{minute} {hour} * * {(WEEKDAYS.index(self.weekday) + 1) % 7}",
            "monthly": f"{minute} {hour} {self.day} * *",
        }[self.every or "manual"]


class History(StrictModel):
    """How long each execution's file is kept in the staging store, for 'retry' to re-send it as it was."""

    keep_days: int = Field(30, ge=1, le=3650, description="Days an execution's file is kept for retries.")


class ExportAlerts(StrictModel):
    """Who is emailed about executions (several recipients), and on what."""

    emails: list[Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254)]] = Field(
        default_factory=list, max_length=100, description="Addresses emailed, through the SMTP connection."
    )
    on_failure: bool = Field(True, description="Email when a task of an execution fails (after its retries).")
    on_success: bool = Field(False, description="Email when the file was delivered (file name, rows, size, where).")
    smtp_conn_id: ConnId = Field("smtp_default", description="Airflow SMTP connection used to send the emails.")


class ExportDefinition(StrictModel):
    """One automated export of Brevo contacts; the DAG factory turns each into one DAG."""

    kind: Literal["export"] = Field(description="export. Source definitions have no kind key.")
    version: Literal[1] = Field(1, description="Definition format version.")
    integration: str = Field(pattern=NAME_PATTERN, max_length=100, description="Groups exports and sources.")
    name: str = Field(pattern=NAME_PATTERN, max_length=100, description="The export's name (in the DAG id).")
    description: str | None = Field(None, max_length=2000, description="Free text shown as the DAG's description.")
    status: Literal["active", "draft"] = Field("active", description="draft: the DAG is built paused.")
    brevo_conn_id: ConnId = Field("brevo_default", description="Airflow connection of the Brevo account.")
    schedule: ExportSchedule | str = Field(
        "manual",
        description="manual | hourly | daily | a five-field cron, or {every, at, weekday, day, timezone} / "
        "{cron, timezone}.",
    )
    content: ExportContent
    format: ExportFormat = Field(default_factory=ExportFormat)
    obfuscation: Obfuscation = Field(default_factory=Obfuscation)
    file: ExportFile = Field(default_factory=ExportFile)
    destination: ExportDestination
    confirmation: Confirmation | None = Field(None, description="Write a confirmation file after the data file.")
    alerts: ExportAlerts = Field(default_factory=ExportAlerts)
    history: History = Field(default_factory=History)

    @field_validator("schedule")
    @classmethod
    def _schedule_text(cls, schedule: ExportSchedule | str) -> ExportSchedule | str:
        if isinstance(schedule, str) and schedule not in ("manual", "hourly", "daily"):
            _check_cron(schedule, "schedule: manual, hourly, daily or a cron;")
        return schedule

    @model_validator(mode="after")
    def _consistent(self) -> ExportDefinition:
        if "__" in self.integration or "__" in self.name:
            raise ValueError("integration and name cannot contain '__' (the DAG id separator)")
        hashed = [f for f in self.content.fields if f.obfuscate == "hmac-sha256"]
        if hashed and not self.obfuscation.hmac_key_conn_id:
            raise ValueError(
                f"obfuscation.hmac_key_conn_id: required by content.fields {hashed[0].name!r} (hmac-sha256)"
            )
        if self.destination.type == "bigquery":
            if self.file.encryption is not None or self.file.compression == "zip":
                raise ValueError("destination bigquery loads the rows: no file.encryption and no zip (gzip is fine)")
            if self.format.encoding not in ("utf-8", "latin-1"):
                raise ValueError(
                    "destination bigquery loads utf-8 or latin-1 files: set format.encoding to one of them"
                )
            for entry in self.content.fields:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,299}", entry.name):
                    raise ValueError(
                        f"content.fields: {entry.name!r} is not a BigQuery column name (a letter or '_', then letters, "
                        "digits or '_'): give it a column name"
                    )
            if self.format.type == "csv" and self.format.quoting == "none":
                raise ValueError("destination bigquery: CSV quoting none cannot be loaded safely; use minimal")
            if self.confirmation is not None and "://" not in self.confirmation.path:
                if not self.confirmation.path.startswith("/"):
                    raise ValueError(
                        "confirmation.path: a bigquery destination has no folder; give a URL or absolute path"
                    )
        return self

    @property
    def dag_id(self) -> str:
        return f"{EXPORT_DAG_PREFIX}{self.integration}__{self.name}"

    @property
    def cron(self) -> str | None:
        """The Airflow schedule's cron (None when manual)."""
        if isinstance(self.schedule, ExportSchedule):
            return self.schedule.cron_expression()
        return {"manual": None, "hourly": "@hourly", "daily": "@daily"}.get(self.schedule, self.schedule)

    @property
    def timezone(self) -> str:
        return self.schedule.timezone if isinstance(self.schedule, ExportSchedule) else "UTC"
