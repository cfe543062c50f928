"""A BigQuery table as an export's destination: the file's rows loaded by a load job (``BigQueryHook``).

Why it looks like this:

- **Every column a STRING, in the export's order**: the table's schema is the export's ``columns``;
  a CSV is read by position (its header line skipped), JSON lines by key. Quoted newlines are allowed
  (a value may hold one).
- **Two-step**: the rows are loaded into a temporary table next to the final one
  (``<table>_contactsync_part_<random>``, expiring after a day should the run die), its row count is
  read with ``COUNT(*)`` and compared with the export's, and only then is it copied into the final
  table by a copy job with the write disposition (``create``: WRITE_EMPTY, ``append``: WRITE_APPEND,
  ``replace``: WRITE_TRUNCATE). A copy job is atomic: readers see the table before or after. The
  temporary table is dropped in every case. A wrong count raises :class:`TransferVerificationError`
  and leaves the final table untouched.
- **Checked before loading**: an existing final table must have the export's columns in the same
  order, all STRING (``create`` and ``append``), and for ``create`` no rows; otherwise a
  ConfigurationError says so before anything is loaded. ``replace`` takes the export's columns: when
  they differ from the table's, the table is dropped just before the copy creates it again (for that
  moment there is no table). BigQuery's WRITE_TRUNCATE alone would replace the schema too, but the
  emulator keeps the old one and fills it by position, and column names that lie are worse than a
  moment without the table.
- **What cannot be loaded**: BigQuery loads rows, so zip and OpenPGP files are refused (ValueError).
  A gzip file is decompressed to a local temporary file first: the emulator the tests use reads no
  gzip, and BigQuery loads uncompressed files faster (in parallel).
- **An empty file** (no bytes: JSON lines or header-less CSV without rows) is not sent: load jobs
  need data. The empty temporary table is copied as for any delivery.

Tested against bqemulator 1.3.0 (tests/servers/bigquery.py). What it supports and what it does not,
for this module: load jobs from a local file (CSV, JSON lines) honour WRITE_EMPTY/WRITE_TRUNCATE;
copy jobs honour WRITE_EMPTY, WRITE_APPEND and WRITE_TRUNCATE; ``COUNT(*)`` is exact. It does not:
read gzip, honour ``skipLeadingRows`` (a CSV's first line is always taken as a header, so a
header-less CSV loses its first row there; the row count check catches it), query jobs with a
destination table (hence a copy job, which is also what real BigQuery does best), table expiry, or
keep ``numRows`` up to date after a copy (hence ``COUNT(*)``).

The connection is an Airflow ``google_cloud_platform`` connection, read as the BigQuery source reads
it (its ``api_endpoint`` extra reaches an emulator).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import logging
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.exports.destinations import Delivered, Destination, TransferVerificationError
from airflow_provider_contactsync.exports.destinations.config import DestinationConfig
from airflow_provider_contactsync.exports.destinations.folder import UNVERIFIED, check_local, write_text_at

log = logging.getLogger(__name__)

DISPOSITIONS = {"create": "WRITE_EMPTY", "append": "WRITE_APPEND", "replace": "WRITE_TRUNCATE"}
TEMPORARY_TABLE_HOURS = 24
_REFUSED_SUFFIXES = (".zip", ".gpg", ".pgp", ".asc")
_CHUNK = 1 << 20


class BigQueryDestination:
    """A BigQuery table; see the module docstring.

    :param config: a ``bigquery`` destination (dataset, table, columns, format, write).
    :param confirmations: where confirmation files go (a table has no folder); None: none can be written.
    """

    def __init__(self, config: DestinationConfig, *, confirmations: Destination | None = None) -> None:
        if config.type != "bigquery":
            raise ValueError(f"not a bigquery destination: {config.type}")
        self.config = config
        self.confirmations = confirmations

    @cached_property
    def hook(self) -> Any:
        from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook

        return BigQueryHook(gcp_conn_id=self.config.conn_id, use_legacy_sql=False)

    @cached_property
    def client(self) -> Any:
        """The ``google.cloud.bigquery.Client`` of the connection (``api_endpoint`` extra honoured)."""
        hook = self.hook
        project = self.config.project or hook.project_id
        if not project:
            raise ConfigurationError(
                f"BigQuery connection {self.config.conn_id!r} names no project: set the destination's project "
                "or the connection's 'project' extra",
                key_path="destination.project",
            )
        location = getattr(hook, "location", None)
        extras = getattr(hook, "extras", None) or {}
        endpoint = extras.get("api_endpoint") or extras.get("extra__google_cloud_platform__api_endpoint")
        if not endpoint:
            return hook.get_client(project_id=project, location=location)
        from google.cloud.bigquery import Client

        return Client(
            project=project,
            location=location,
            credentials=hook.get_credentials(),
            client_options=hook.get_client_options(api_endpoint_override=endpoint),
        )

    @property
    def project(self) -> str:
        return self.config.project or self.client.project

    @property
    def location(self) -> str:
        return f"bigquery://{self.project}.{self.config.dataset}.{self.config.table}"

    def deliver(self, local_file: Path, name: str, *, size: int, sha256: str, rows: int, two_step: bool) -> Delivered:
        """Load the file's rows into the table (``write``: create, append or replace).

        :param name: the file's name (only to refuse zip and OpenPGP files; the table is the config's).
        :raises ValueError: a zip or OpenPGP file.
        :raises ConfigurationError: the existing table does not fit the export (columns, or rows with create).
        :raises TransferVerificationError: the local file is not the packed one, or (two-step) the rows
            loaded are not ``rows``; the final table is untouched.
        """
        local_file = Path(local_file)
        _refuse_unloadable(local_file, name)
        config = self.config
        assert config.table is not None  # DestinationConfig checked it
        check_local(local_file, self.location, name, size=size, sha256=sha256)
        final = self._table(config.table)
        same_columns = self._check_final(final)
        with _plain(local_file) as data:
            empty = data.stat().st_size == 0
            if two_step or empty or not same_columns:
                self._two_step(data, final, rows=rows, name=name, check=two_step, drop_final=not same_columns)
            else:
                self._load(data, final, DISPOSITIONS[config.write])
        return Delivered(self.location, config.table, size, sha256, "rows" if two_step else UNVERIFIED)

    def write_text(self, relative_path: str, text: str) -> str:
        """Write ``text`` at a URL or absolute local path, or relative to ``confirmation_path``: a table has
        no folder of its own."""
        if "://" in relative_path or relative_path.startswith("/"):
            return write_text_at(relative_path, text, self.config.confirmation_conn_id)
        if self.confirmations is None:
            raise ValueError(
                f"a bigquery destination has no folder for {relative_path!r}: give the confirmation a URL or "
                "absolute path (s3://bucket/confirmations/{file}.done), or set the destination's confirmation_path"
            )
        return self.confirmations.write_text(relative_path, text)

    def close(self) -> None:
        client = self.__dict__.pop("client", None)
        try:
            if client is not None:
                client.close()
        finally:
            if self.confirmations is not None:
                self.confirmations.close()

    def __enter__(self) -> BigQueryDestination:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- steps --------------------------------------------------------------------------------------

    def _two_step(self, data: Path, final: Any, *, rows: int, name: str, check: bool, drop_final: bool) -> None:
        from google.cloud import bigquery

        client = self.client
        assert self.config.table is not None
        temporary = self._table(f"{self.config.table[:990]}_contactsync_part_{secrets.token_hex(6)}")
        table = bigquery.Table(temporary, schema=self._schema())
        table.expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=TEMPORARY_TABLE_HOURS)
        client.create_table(table)
        try:
            if data.stat().st_size:
                self._load(data, temporary, "WRITE_APPEND")
            if check:
                found = self._count(temporary)
                if found != rows:
                    raise TransferVerificationError(
                        self.location,
                        name,
                        expected={"rows": rows},
                        found={"rows": found},
                        detail="The rows were loaded into a temporary table, now dropped; the table was not changed.",
                    )
            if drop_final:  # replace with other columns (see the module docstring)
                client.delete_table(final, not_found_ok=True)
            job = client.copy_table(
                temporary,
                final,
                job_config=bigquery.CopyJobConfig(
                    write_disposition=DISPOSITIONS[self.config.write], create_disposition="CREATE_IF_NEEDED"
                ),
            )
            _wait(job, f"copying into {self.location}")
        finally:
            try:
                client.delete_table(temporary, not_found_ok=True)
            except Exception as exc:  # noqa: BLE001 - the delivery's own outcome matters more; it expires
                log.warning("could not drop the temporary table %s: %s", temporary, exc)

    def _load(self, data: Path, table: Any, disposition: str) -> None:
        from google.cloud import bigquery

        config = self.config
        job_config = bigquery.LoadJobConfig(
            schema=self._schema(),
            write_disposition=disposition,
            create_disposition="CREATE_IF_NEEDED",
            max_bad_records=0,
        )
        if config.source_format == "csv":
            job_config.source_format = bigquery.SourceFormat.CSV
            job_config.field_delimiter = config.delimiter
            job_config.quote_character = config.quotechar
            job_config.skip_leading_rows = 1 if config.header else 0
            job_config.allow_quoted_newlines = True
            job_config.encoding = config.bigquery_encoding
        else:
            job_config.source_format = bigquery.SourceFormat.NEWLINE_DELIMITED_JSON
        with open(data, "rb") as stream:
            try:
                job = self.client.load_table_from_file(stream, table, job_config=job_config)
            except Exception as exc:
                exc.add_note(f"loading the export's rows into {self.location}")
                raise
        _wait(job, f"loading into {self.location}")

    def _count(self, table: Any) -> int:
        sql = f"SELECT COUNT(*) AS n FROM `{table.project}.{table.dataset_id}.{table.table_id}`"
        return int(next(iter(self.client.query(sql).result()))[0])

    def _check_final(self, final: Any) -> bool:
        """Whether the table is missing or has the export's columns (in order, all STRING).

        With create and append it must; create also needs it empty.
        """
        from google.api_core.exceptions import NotFound

        try:
            table = self.client.get_table(final)
        except NotFound:
            return True
        found = [(field.name, str(field.field_type).upper()) for field in table.schema]
        wanted = [(column, "STRING") for column in self.config.columns]
        same = [(n.lower(), t) for n, t in found] == [(n.lower(), t) for n, t in wanted]
        if self.config.write == "replace":
            return same
        if not same:
            raise ConfigurationError(
                f"{self.location} has the columns {', '.join(f'{n} {t}' for n, t in found) or 'none'}; the export "
                f"writes {', '.join(self.config.columns)}, all STRING, in that order. Use write: replace to "
                "replace the table, or another table.",
                key_path="destination.table",
            )
        if self.config.write == "create":
            count = self._count(final)
            if count:
                raise ConfigurationError(
                    f"{self.location} already has {count} rows and write is create: use append or replace",
                    key_path="destination.write",
                )
        return True

    def _schema(self) -> list[Any]:
        from google.cloud import bigquery

        return [bigquery.SchemaField(column, "STRING", mode="NULLABLE") for column in self.config.columns]

    def _table(self, table: str) -> Any:
        from google.cloud import bigquery

        return bigquery.TableReference(bigquery.DatasetReference(self.project, self.config.dataset or ""), table)


def _wait(job: Any, doing: str) -> None:
    try:
        job.result()
    except Exception as exc:
        exc.add_note(doing)
        raise


def _refuse_unloadable(local_file: Path, name: str) -> None:
    """Zip and OpenPGP files are refused: BigQuery loads rows."""
    with open(local_file, "rb") as stream:
        head = stream.read(64)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")) or name.lower().endswith(".zip"):
        raise ValueError(f"{name}: BigQuery cannot load a zip file (use gzip or none)")
    if name.lower().endswith(_REFUSED_SUFFIXES) or head.lstrip().startswith(b"-----BEGIN PGP"):
        raise ValueError(f"{name}: BigQuery cannot load an encrypted file (no encryption with a bigquery destination)")


@contextlib.contextmanager
def _plain(local_file: Path) -> Iterator[Path]:
    """The file, or a decompressed temporary copy of a gzip file."""
    with open(local_file, "rb") as stream:
        magic = stream.read(2)
    if magic != b"\x1f\x8b":
        yield local_file
        return
    with tempfile.TemporaryDirectory(prefix="contactsync-bigquery-") as folder:
        plain = Path(folder) / "rows"
        with gzip.open(local_file, "rb") as source, open(plain, "wb") as target:
            shutil.copyfileobj(source, target, _CHUNK)
        yield plain
