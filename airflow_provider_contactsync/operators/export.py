"""The two operators of an export DAG: ``build_file`` (Brevo -> the packed file, staged) >> ``deliver``.

Two tasks, so that a failed delivery (a server down, a failed two-step check) is retried by Airflow
without asking Brevo for a new export: the retry re-sends the staged file. Each keeps the
execution's record (:mod:`..exports.history`) up to date with its steps and timings.

A manual run with ``retry_of`` (the history's "retry") re-sends the exact file of that execution:
no Brevo call, no cursor change; the file must still be in the staging store (history.keep_days).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec.export_models import ExportDefinition
from airflow_provider_contactsync.exports import history
from airflow_provider_contactsync.exports.history import RETRY_OF, ExportRecord
from airflow_provider_contactsync.staging import default_staging_base

FULL_EXPORT_PARAM = "full_export"
_CHUNK = 1 << 20


def export_asset(integration: str, name: str) -> Any:
    """The Airflow asset standing for one export (its cursor lives in the asset's state store)."""
    from airflow.sdk import Asset

    return Asset(name=f"contactsync-export/{integration}/{name}", uri=f"x-contactsync-export://{integration}/{name}")


CURSOR_KEY = "export_cursor"


def export_state(context: Any, spec: ExportDefinition) -> Any:
    """The export's small persistent state (its cursor): the asset state store, else Variables."""
    from airflow_provider_contactsync.state import SourceState

    return SourceState(context, export_asset(spec.integration, spec.name))


class _ExportOperator(BaseOperator):
    """Shared plumbing: the definition (a JSON dict, so the DAG serialises), the staging base, the record."""

    template_fields: Sequence[str] = ("staging",)
    ui_color = "#fdf3e8"

    def __init__(
        self,
        *,
        definition: dict[str, Any],
        staging: str | None = None,
        definition_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("inlets", [export_asset(definition["integration"], definition["name"])])
        super().__init__(**kwargs)
        self.definition = definition
        self.staging = staging
        self.definition_file = definition_file

    @cached_property
    def spec(self) -> ExportDefinition:
        return ExportDefinition.model_validate(self.definition)

    @property
    def base(self) -> str:
        return self.staging or default_staging_base()

    def execute(self, context: Any) -> Any:
        from airflow_provider_contactsync.operators.failures import configuration_errors_fail_at_once

        with configuration_errors_fail_at_once():
            return self.run_task(context)

    def run_task(self, context: Any) -> Any:
        raise NotImplementedError

    def save(self, record: ExportRecord) -> None:
        history.write_record(self.base, record)

    def retry_of(self, context: Any) -> str | None:
        value = (context.get("params") or {}).get(RETRY_OF)
        if not value:
            conf = getattr(context.get("dag_run"), "conf", None) or {}
            value = conf.get(RETRY_OF)
        return str(value) if value else None


class ContactsyncExportOperator(_ExportOperator):
    """Reads the contacts from Brevo, writes them in the definition's format, packs, encrypts, stages.

    Returns (XCom) only the staged file's URL, name, size, SHA-256, rows and the cursor after this
    execution; the rows go through the file, never XCom.
    """

    def run_task(self, context: Any) -> dict[str, Any]:
        spec = self.spec
        run_id = context["run_id"]
        record = ExportRecord(
            dag_id=spec.dag_id,
            run_id=run_id,
            export=spec.name,
            integration=spec.integration,
            definition_file=self.definition_file,
            definition_text=_as_yaml(self.definition),
            filter=spec.content.filter_summary(),
        )
        original = self.retry_of(context)
        try:
            if original:
                return self._reuse(record, original)
            if spec.status == "draft":
                from airflow.exceptions import AirflowSkipException

                raise AirflowSkipException(
                    f"{spec.dag_id} is a draft (status: draft): nothing is exported; set status: active"
                )
            return self._build(record, context)
        except BaseException as exc:
            if type(exc).__name__ != "AirflowSkipException":
                record.status = "failed"
                record.error = f"{type(exc).__name__}: {exc}"[:4000]
                record.finished_at = history._now()
                self.save(record)
            raise

    def _reuse(self, record: ExportRecord, original_run: str) -> dict[str, Any]:
        """A retry: the original execution's file, checked unchanged, handed to deliver as it is."""
        from airflow.sdk import ObjectStoragePath

        record.retry_of = original_run
        with record.step("find the original file", detail=original_run):
            original = history.read_record(self.base, self.spec.dag_id, original_run)
            if original is None or not original.file_url:
                raise ConfigurationError(
                    f"retry_of {original_run!r}: no export file recorded for that run of {self.spec.dag_id}"
                )
            if original.file_removed:
                raise ConfigurationError(
                    f"retry_of {original_run!r}: its file was removed after history.keep_days "
                    f"({self.spec.history.keep_days} days); run a new export instead"
                )
            stored = ObjectStoragePath(original.file_url)
            digest, size = _sha256_of(stored)
            if digest != original.sha256 or size != original.size:
                raise ConfigurationError(
                    f"retry_of {original_run!r}: the stored file {stored} changed since it was made "
                    f"(SHA-256 {digest}, {size} bytes; recorded {original.sha256}, {original.size} bytes)"
                )
        for name in ("file_name", "file_url", "size", "sha256", "rows", "filter", "read"):
            setattr(record, name, getattr(original, name))
        record.definition_text = original.definition_text
        record.status = "built"
        self.save(record)
        return {
            "file_url": record.file_url,
            "file_name": record.file_name,
            "size": record.size,
            "sha256": record.sha256,
            "rows": record.rows,
            "cursor_after": None,
            "retry_of": original_run,
        }

    def _build(self, record: ExportRecord, context: Any) -> dict[str, Any]:
        from airflow_provider_contactsync.exports.condition import compile_condition
        from airflow_provider_contactsync.exports.content import (
            ContactReader,
            ExportCursor,
            attribute_types,
            check_attributes,
            choose_method,
        )
        from airflow_provider_contactsync.exports.packaging import file_name, pack
        from airflow_provider_contactsync.exports.writer import SUFFIX, ContactWriter
        from airflow_provider_contactsync.hooks.brevo import BrevoHook

        spec = self.spec
        self.save(record)
        hook = BrevoHook(brevo_conn_id=spec.brevo_conn_id)
        with record.step("check the account's attributes"):
            types = attribute_types(hook.get_attributes())
            check_attributes(spec.content, types)
        cursor = None
        if spec.content.incremental and not (context.get("params") or {}).get(FULL_EXPORT_PARAM):
            cursor = ExportCursor.from_json(export_state(context, spec).get(CURSOR_KEY))
        record.cursor_before = cursor.to_json() if cursor else None
        reader = ContactReader(hook, spec.content, types, cursor=cursor, condition=compile_condition(spec.content))
        when = _run_date(context)
        template = spec.file.name
        if not template.endswith(SUFFIX[spec.format.type]):
            template += SUFFIX[spec.format.type]
        name = file_name(template, when=when, name=spec.name, compression=spec.file.compression)
        member = name.removesuffix(".zip").removesuffix(".gz")  # the uncompressed file (a zip's member)
        workdir = tempfile.mkdtemp(prefix="contactsync-export-")
        try:
            method = choose_method(spec.content, cursor, reader.count())
            raw = os.path.join(workdir, member)
            with record.step(f"read contacts from Brevo ({method}) and write {spec.format.type}"):
                with open(raw, "wb") as stream:
                    writer = ContactWriter(
                        stream,
                        spec.content.fields,
                        spec.format,
                        hmac_key=_hmac_key(spec),
                        phone_region=spec.obfuscation.phone_region,
                    )
                    writer.write_header()
                    rows = writer.write_all(reader.contacts(method))
                record.steps[-1].detail = f"{reader.stats.read:,} read, {rows:,} written"
            record.rows = rows
            record.read = reader.stats.as_dict()
            current = os.path.join(workdir, name)
            if spec.file.compression != "none":
                with record.step(f"compress ({spec.file.compression})"):
                    pack(raw, current, spec.file.compression, member=member)
                    os.unlink(raw)
            else:
                os.replace(raw, current)
            if spec.file.encryption is not None:
                with record.step("encrypt (OpenPGP)"):
                    current, name = _encrypt(spec, current, name)
            with record.step("stage the file"):
                target = history.run_folder(self.base, spec.dag_id, record.run_id) / name
                digest, size = _stage(current, target)
            record.file_name, record.file_url, record.size, record.sha256 = name, str(target), size, digest
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        after = reader.last if spec.content.incremental else None
        record.cursor_after = after.to_json() if after else None
        record.status = "built"
        self.save(record)
        self.log.info(
            "Export %s: %s rows (%s), file %s, %s bytes, SHA-256 %s",
            spec.dag_id,
            record.rows,
            reader.stats.as_dict(),
            name,
            record.size,
            record.sha256,
        )
        return {
            "file_url": record.file_url,
            "file_name": name,
            "size": record.size,
            "sha256": record.sha256,
            "rows": record.rows,
            "cursor_after": record.cursor_after,
            "retry_of": None,
        }


class ContactsyncExportDeliverOperator(_ExportOperator):
    """Sends the staged file to the destination (two-step when asked), then the confirmation file;
    advances the incremental cursor only once the file is delivered (never for a retry)."""

    def run_task(self, context: Any) -> dict[str, Any]:
        spec = self.spec
        built = context["ti"].xcom_pull(task_ids="build_file")
        if not isinstance(built, dict):
            raise RuntimeError("no result from task 'build_file' in this run; clear it to run it again")
        record = history.read_record(self.base, spec.dag_id, context["run_id"])
        if record is None:
            raise RuntimeError(f"no export record for run {context['run_id']!r}; clear build_file to run it again")
        try:
            delivered = self._deliver(record, built)
        except BaseException as exc:
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}"[:4000]
            record.finished_at = history._now()
            self.save(record)
            raise
        if built.get("cursor_after") and not built.get("retry_of"):
            export_state(context, spec).set(CURSOR_KEY, built["cursor_after"])
        record.status = "delivered"
        record.error = None
        record.finished_at = history._now()
        keep = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=spec.history.keep_days)
        record.keep_until = keep.isoformat(timespec="seconds")
        self.save(record)
        pruned = history.prune(self.base, spec.dag_id)
        if pruned:
            self.log.info("Removed the files of %d executions past history.keep_days: %s", len(pruned), pruned)
        return {"file_name": record.file_name, "rows": record.rows, "size": record.size, **delivered}

    def _deliver(self, record: ExportRecord, built: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk import ObjectStoragePath

        from airflow_provider_contactsync.exports.confirmation import confirmation_text, render_confirmation_path
        from airflow_provider_contactsync.exports.destinations import destination_for

        spec = self.spec
        stored = ObjectStoragePath(built["file_url"])
        workdir = tempfile.mkdtemp(prefix="contactsync-deliver-")
        try:
            if stored.protocol == "file":
                local = stored.path
            else:
                local = os.path.join(workdir, built["file_name"])
                with record.step("fetch the staged file"), stored.open("rb") as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            destination = destination_for(destination_config(spec))
            try:
                with record.step(
                    f"deliver to {spec.destination.type}" + (" (two-step)" if spec.destination.two_step else "")
                ):
                    delivered = destination.deliver(
                        _Path(local),
                        built["file_name"],
                        size=int(built["size"]),
                        sha256=built["sha256"],
                        rows=int(built["rows"]),
                        two_step=spec.destination.two_step,
                    )
                    record.steps[-1].detail = f"{delivered.location} ({delivered.verified})"
                record.delivered = {
                    "location": delivered.location,
                    "name": delivered.name,
                    "size": delivered.size,
                    "sha256": delivered.sha256,
                    "verified": delivered.verified,
                }
                if spec.confirmation is not None:
                    with record.step("write the confirmation file"):
                        text = confirmation_text(
                            spec.confirmation.format,
                            file_name=built["file_name"],
                            rows=int(built["rows"]),
                            size=int(built["size"]),
                            sha256=built["sha256"],
                            exported_at=dt.datetime.fromisoformat(record.started_at),
                            filter=record.filter,
                            extra={
                                "export": spec.dag_id,
                                "run_id": record.run_id,
                                **({"retry_of": record.retry_of} if record.retry_of else {}),
                            },
                        )
                        path = render_confirmation_path(spec.confirmation.path, file=built["file_name"])
                        record.confirmation = destination.write_text(path, text)
            finally:
                destination.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return dict(record.delivered)


def _Path(path: str) -> Any:  # noqa: N802 - a constructor
    from pathlib import Path

    return Path(path)


def destination_config(spec: ExportDefinition) -> Any:
    """The destination package's config for a definition (format facts BigQuery needs included)."""
    from airflow_provider_contactsync.exports.destinations.config import DestinationConfig

    d = spec.destination
    return DestinationConfig(
        type=d.type,
        conn_id=d.conn_id,
        folder=d.folder,
        path=d.path,
        project=d.project,
        dataset=d.dataset,
        table=d.table,
        write=d.write,
        source_format=spec.format.type,
        delimiter=spec.format.delimiter,
        header=spec.format.header,
        columns=[entry.name for entry in spec.content.fields],
        compression=spec.file.compression,
        encrypted=spec.file.encryption is not None,
        quotechar=spec.format.quotechar,
        encoding=spec.format.encoding,
        confirmation_conn_id=spec.confirmation.conn_id if spec.confirmation is not None else None,
    )


def _encrypt(spec: ExportDefinition, current: str, name: str) -> tuple[str, str]:
    from airflow_provider_contactsync.exports.encryption import encrypt_file, public_keys_from_connection

    encryption = spec.file.encryption
    assert encryption is not None
    keys = []
    for recipient in encryption.recipients:
        keys.extend(public_keys_from_connection(recipient.conn_id, fingerprint=recipient.fingerprint))
    name = name + (".asc" if encryption.armor else ".gpg")
    target = os.path.join(os.path.dirname(current), name)
    encrypt_file(_Path(current), _Path(target), keys, armor=encryption.armor, compress=spec.file.compression == "none")
    os.unlink(current)
    return target, name


def _hmac_key(spec: ExportDefinition) -> bytes | None:
    conn_id = spec.obfuscation.hmac_key_conn_id
    if not conn_id or not any(f.obfuscate == "hmac-sha256" for f in spec.content.fields):
        return None
    from airflow.sdk import BaseHook

    secret = BaseHook.get_connection(conn_id).password
    if not secret:
        raise ConfigurationError(
            f"connection {conn_id!r} has no password: put the HMAC-SHA256 key there",
            key_path="obfuscation.hmac_key_conn_id",
        )
    return secret.encode("utf-8")


def _stage(local: str, target: Any) -> tuple[str, int]:
    """Copy the file into the staging store (owner-only when local); its SHA-256 and size as stored."""
    from airflow_provider_contactsync.staging import make_private_dirs

    digest = hashlib.sha256()
    size = 0
    if target.protocol == "file":
        make_private_dirs(os.path.dirname(target.path))
        shutil.move(local, target.path)
        os.chmod(target.path, 0o600)
        with open(target.path, "rb") as stream:
            for block in iter(lambda: stream.read(_CHUNK), b""):
                digest.update(block)
                size += len(block)
        return digest.hexdigest(), size
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(local, "rb") as src, target.open("wb") as dst:
        for block in iter(lambda: src.read(_CHUNK), b""):
            digest.update(block)
            size += len(block)
            dst.write(block)
    stored_digest, stored_size = _sha256_of(target)
    if (stored_digest, stored_size) != (digest.hexdigest(), size):
        raise RuntimeError(f"the staged copy {target} differs from the file made ({stored_size} of {size} bytes)")
    return stored_digest, stored_size


def _sha256_of(target: Any) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with target.open("rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _run_date(context: Any) -> dt.datetime:
    """The date in the file name: the run's logical date (its data interval end for scheduled runs), else now."""
    for key in ("logical_date", "data_interval_end"):
        value = context.get(key)
        if isinstance(value, dt.datetime):
            return value
    return dt.datetime.now(dt.timezone.utc)


def _as_yaml(definition: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(definition, sort_keys=False, allow_unicode=True)
