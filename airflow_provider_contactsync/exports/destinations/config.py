"""Where an export's file goes, as one plain value checked once: :class:`DestinationConfig`.

The YAML model (``core/spec/export_models.py``) is what users write; the operator turns it, with the
export's format and columns, into this. A config that cannot work raises ValueError here, before
anything is uploaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

DestinationType = Literal["sftp", "ftp", "ftps", "storage", "bigquery"]
WriteMode = Literal["create", "append", "replace"]

TYPES = ("sftp", "ftp", "ftps", "storage", "bigquery")
WRITE_MODES = ("create", "append", "replace")
BIGQUERY_ENCODINGS = {"utf-8": "UTF-8", "latin-1": "ISO-8859-1", "iso-8859-1": "ISO-8859-1"}
"""Python codec names BigQuery loads, and BigQuery's name for each."""

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z][a-z0-9.-]*:[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_TABLE = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")


@dataclass(frozen=True)
class DestinationConfig:
    """One destination.

    :param type: ``sftp``, ``ftp``, ``ftps`` (a server through its Airflow connection), ``storage``
        (an ObjectStoragePath URL or a local folder), ``bigquery`` (a table, filled by a load job).
    :param conn_id: the server's connection (sftp, ftp, ftps: required), BigQuery's (required), or the
        bucket's for storage (optional: an ``aws``/``google_cloud_platform`` connection).
    :param folder: sftp, ftp, ftps: the remote folder, absolute or relative to the login folder
        ('' = the login folder itself); created if missing.
    :param path: storage: ``s3://bucket/prefix/``, ``gs://...``, ``file:///abs/folder`` or ``/abs/folder``;
        never credentials in the URL (they belong in the connection).
    :param project: bigquery: the project of the table (default: the connection's).
    :param dataset: bigquery: the dataset (it must exist).
    :param table: bigquery: the table (created if missing).
    :param write: bigquery: ``create`` (the table must not exist or be empty), ``append``, ``replace``.
    :param source_format: bigquery: what the file holds, ``csv`` or ``jsonl``.
    :param delimiter: bigquery, csv: the field separator.
    :param quotechar: bigquery, csv: the quote character.
    :param header: bigquery, csv: the file's first line names the columns (it is skipped).
    :param encoding: bigquery: the file's encoding, ``utf-8`` or ``latin-1``.
    :param columns: bigquery: the export's columns in the file's order; every column is a STRING.
    :param compression: how the file is packed: ``none``, ``gzip`` (BigQuery: decompressed before the
        load), ``zip`` (not for BigQuery).
    :param encrypted: the file is OpenPGP-encrypted (not for BigQuery).
    :param confirmation_path: where confirmation files with a relative path go instead of the
        destination's folder: an ObjectStoragePath URL or an absolute local folder. BigQuery has no
        folder: give this, or give ``write_text`` a URL or absolute path.
    :param confirmation_conn_id: the connection of confirmation files on object storage
        (``confirmation_path``, or a URL given to ``write_text``); default: ``conn_id`` for storage
        destinations, none (the platform's default credentials) otherwise.
    """

    type: DestinationType
    conn_id: str | None = None
    folder: str | None = ""
    path: str | None = None
    project: str | None = None
    dataset: str | None = None
    table: str | None = None
    write: WriteMode = "append"
    source_format: Literal["csv", "jsonl"] = "csv"
    delimiter: str = ","
    quotechar: str = '"'
    header: bool = True
    encoding: str = "utf-8"
    columns: tuple[str, ...] = ()
    compression: Literal["none", "gzip", "zip"] = "none"
    encrypted: bool = False
    confirmation_path: str | None = None
    confirmation_conn_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        folder = self.folder or ""
        object.__setattr__(self, "folder", folder)
        if self.type not in TYPES:
            raise ValueError(f"destination type {self.type!r}: one of {', '.join(TYPES)}")
        if self.write not in WRITE_MODES:
            raise ValueError(f"destination write {self.write!r}: create, append or replace")
        if self.compression not in ("none", "gzip", "zip"):
            raise ValueError(f"compression {self.compression!r}: none, gzip or zip")
        if self.type in ("sftp", "ftp", "ftps"):
            if not self.conn_id:
                raise ValueError(f"a {self.type} destination needs conn_id (the server's Airflow connection)")
            if self.path or self.dataset or self.table:
                raise ValueError(f"a {self.type} destination takes conn_id and folder, not path, dataset or table")
            if "\x00" in folder or "\n" in folder or "\r" in folder:
                raise ValueError(f"folder {folder!r}: no line breaks or NUL")
        elif self.type == "storage":
            if not self.path:
                raise ValueError("a storage destination needs path (s3://bucket/prefix/, or an absolute folder)")
            check_storage_url(self.path, "path")
        else:
            self._check_bigquery()
        if self.confirmation_path is not None:
            check_storage_url(self.confirmation_path, "confirmation_path")

    def _check_bigquery(self) -> None:
        if not (self.conn_id and self.dataset and self.table):
            raise ValueError("a bigquery destination needs conn_id, dataset and table")
        if self.project is not None and not _PROJECT.match(self.project):
            raise ValueError(f"project {self.project!r} is not a BigQuery project id")
        if not _DATASET.match(self.dataset):
            raise ValueError(f"dataset {self.dataset!r}: letters, digits and underscores")
        if not _TABLE.match(self.table):
            raise ValueError(f"table {self.table!r}: letters, digits, underscores and hyphens")
        if self.encrypted:
            raise ValueError("BigQuery loads rows, not encrypted files: no encryption with a bigquery destination")
        if self.compression == "zip":
            raise ValueError("BigQuery cannot load zip files: use gzip (or none) with a bigquery destination")
        if self.source_format not in ("csv", "jsonl"):
            raise ValueError(f"source_format {self.source_format!r}: csv or jsonl")
        if len(self.delimiter) != 1 or len(self.quotechar) != 1 or self.delimiter == self.quotechar:
            raise ValueError("delimiter and quotechar: one character each, not the same")
        if self.encoding.lower() not in BIGQUERY_ENCODINGS:
            raise ValueError(f"encoding {self.encoding!r}: BigQuery loads utf-8 or latin-1")
        if self.source_format == "jsonl" and self.bigquery_encoding != "UTF-8":
            raise ValueError(f"encoding {self.encoding!r}: BigQuery loads JSON lines in utf-8 only")
        if not self.columns:
            raise ValueError("a bigquery destination needs the export's columns, in the file's order")
        seen: dict[str, str] = {}
        for column in self.columns:
            if not _COLUMN.match(column):
                raise ValueError(
                    f"column {column!r} is not a BigQuery column name (a letter or '_', then letters, digits or "
                    "'_', at most 300): give the field another column name"
                )
            if column.lower() in seen:  # BigQuery column names ignore case
                raise ValueError(f"columns {seen[column.lower()]!r} and {column!r} are the same name for BigQuery")
            seen[column.lower()] = column

    @property
    def bigquery_encoding(self) -> str:
        return BIGQUERY_ENCODINGS[self.encoding.lower()]


def check_storage_url(value: str, key: str) -> str:
    """An ObjectStoragePath URL or absolute local folder, without credentials; ValueError otherwise."""
    if "\x00" in value or "\n" in value or "\r" in value:
        raise ValueError(f"{key} {value!r}: no line breaks or NUL")
    if "://" in value:
        parts = urlsplit(value)
        if not parts.scheme or not parts.netloc and parts.scheme != "file":
            raise ValueError(f"{key} {value!r} is not a URL such as s3://bucket/prefix/")
        if "@" in parts.netloc:
            raise ValueError(f"{key}: no credentials or connection in the URL; give the connection as a conn_id")
        if parts.scheme == "file" and not parts.path.startswith("/"):
            raise ValueError(f"{key} {value!r}: a file:// URL needs an absolute path (file:///folder)")
    elif not value.startswith("/"):
        raise ValueError(f"{key} {value!r} must be a URL (s3://bucket/prefix/) or an absolute folder")
    return value
