"""The four operators of a contactsync DAG: extract -> transform -> map -> load.

Each is a thin shell: it reads its input chunks from the staging store, calls the core, writes
its output chunks, and returns paths and counts through XCom (never the rows themselves).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_contactsync.core.boundary import SKIP_UNCHANGED, BoundaryFilter
from airflow_provider_contactsync.core.cursor import Cursor, normalize_value
from airflow_provider_contactsync.core.errors import ConfigurationError, Reject, RowError
from airflow_provider_contactsync.core.spec import SourceDefinition
from airflow_provider_contactsync.operators.links import ERROR_REPORT_XCOM_KEY, ErrorReportLink
from airflow_provider_contactsync.staging import ChunkStore, default_staging_base
from airflow_provider_contactsync.state import BOUNDARY_FILE, read_boundary, source_asset, write_boundary


def definition_asset(definition: dict[str, Any]) -> Any:
    return source_asset(definition["integration"], definition["source"]["name"])


class DefinitionMixin:
    """The source definition (kept as a JSON dict so the DAG serialises) and its asset, parsed when used."""

    definition: dict[str, Any]

    @cached_property
    def spec(self) -> SourceDefinition:
        return SourceDefinition.model_validate(self.definition)

    @cached_property
    def asset(self) -> Any:
        return source_asset(self.spec.integration, self.spec.source.name)


class ContactsyncBaseOperator(DefinitionMixin, BaseOperator):
    """Shared plumbing: the definition (a JSON dict, so the DAG serialises) and the staging base.

    :param definition: the source definition, as ``SourceDefinition.model_dump(mode="json")``.
    :param staging: ObjectStoragePath URL under which chunk files are written
        (default: ``[contactsync] staging`` config, else ``file://$AIRFLOW_HOME/contactsync/staging``).
    """

    template_fields: Sequence[str] = ("staging",)
    ui_color = "#e8f4fd"

    def __init__(self, *, definition: dict[str, Any], staging: str | None = None, **kwargs: Any) -> None:
        # The dict came from a validated definition: read the names, don't re-validate (parse cost).
        kwargs.setdefault("inlets", [definition_asset(definition)])
        super().__init__(**kwargs)
        self.definition = definition
        self.staging = staging

    def execute(self, context: Any) -> Any:
        from airflow_provider_contactsync.core.gc_policy import bulk_collection
        from airflow_provider_contactsync.operators.failures import configuration_errors_fail_at_once

        with configuration_errors_fail_at_once(), bulk_collection():
            return self.run_stage(context)

    def run_stage(self, context: Any) -> Any:
        """The task's work; :meth:`execute` runs it so that configuration errors are not retried."""
        raise NotImplementedError

    def tracer(self) -> Any:
        """``debug: true``: the row tracer of this task (values masked unless reports.values says raw)."""
        from airflow_provider_contactsync.core.debug import RowTracer

        return RowTracer.for_definition(self.spec, self.log)

    def chunk_store(self, context: Any) -> ChunkStore:
        return ChunkStore(self.staging or default_staging_base(), self.spec.dag_id, context["run_id"])

    def stop_at_quota(self, context: Any) -> None:
        """Fail at once, before reading the source, when the integration used up its monthly quota
        (:mod:`..load.quota`); dry runs go on (they count nothing)."""
        from airflow_provider_contactsync.dag_factory.builder import DRY_RUN_PARAM
        from airflow_provider_contactsync.load.quota import MonthlyQuota

        quota = MonthlyQuota.of(self.spec)
        if quota is None or (context.get("params") or {}).get(DRY_RUN_PARAM):
            return
        self.enforce_quota(context, quota.check(0, source=self.spec.dag_id))

    def enforce_quota(self, context: Any, check: Any) -> None:
        """Fail the run when the quota check refused it; the first refusal of the month emails."""
        if check.reason is None:
            return
        from airflow_provider_contactsync import alerts
        from airflow_provider_contactsync.load.quota import QuotaExhaustedError

        if check.newly_stopped:
            alerts.send_quota_exhausted(self.spec, check.usage, check.limit, check.reason, context)
        raise QuotaExhaustedError(check.reason)

    @staticmethod
    def upstream(context: Any, task_id: str) -> dict[str, Any]:
        result = context["ti"].xcom_pull(task_ids=task_id)
        if not isinstance(result, dict):
            raise RuntimeError(f"no result from task {task_id!r} in this run; clear it to run it again")
        return result


class ContactsyncExtractOperator(ContactsyncBaseOperator):
    """Read new or changed rows (after the stored cursor) from the source into staged chunks.

    :param chunk_size: rows per chunk file.
    """

    def __init__(self, *, chunk_size: int = 50_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chunk_size = chunk_size

    def run_stage(self, context: Any) -> dict[str, Any]:
        from airflow_provider_contactsync.sources import open_source, read_window
        from airflow_provider_contactsync.sources.base import ReadWindow
        from airflow_provider_contactsync.sources.files import FilesSource
        from airflow_provider_contactsync.state import CursorStore

        source_spec = self.spec.source
        if self.spec.status == "draft":
            from airflow.sdk.exceptions import AirflowSkipException

            reason = f"{self.spec.dag_id} is a draft: nothing is synced until its definition says status: active"
            self.log.warning("%s", reason)
            raise AirflowSkipException(reason)
        self.stop_at_quota(context)
        if source_spec.type == "events":  # the queue is the cursor: claims, acknowledged by the load
            from airflow_provider_contactsync.operators.event_pickup import extract_events

            store = self.chunk_store(context)
            store.clear_stage("extract")
            return extract_events(self, context, store)
        full_refresh = bool((context.get("params") or {}).get("full_refresh"))
        # Mirror mode reads the whole source every run, unbounded: a row left out (by the cursor or the
        # safety lag) would look gone. Unchanged contacts are still not sent (the ledger's digests).
        mirror = self.spec.destination.mode == "mirror"
        cursors = CursorStore(context, self.asset)
        stored = cursors.get()
        if mirror:
            window = ReadWindow()
        else:
            window = read_window(source_spec, stored, dt.datetime.now(dt.timezone.utc), full_refresh=full_refresh)
        source = open_source(source_spec)
        store = self.chunk_store(context)
        store.clear_stage("extract")
        if isinstance(source, FilesSource):
            from airflow_provider_contactsync.operators.file_pickup import extract_files

            result = extract_files(self, context, source, window, store, full_refresh=full_refresh)
            result.update(cursor_start=stored.to_json() if stored else None, cursor_store=cursors.backend)
            # Each run's files are the whole source (a snapshot); no file, or a failed one, is no snapshot.
            result["full_read"] = bool(result["files"]) and not result["failed_files"]
            return result
        urls: list[str] = []
        chunk_rows: list[int] = []
        latest: Cursor | None = None
        field, key = source_spec.updated_field, source_spec.key
        boundary = self._boundary_filter(store, stored, source, full_refresh=full_refresh or mirror)
        tracer = self.tracer()
        for chunk in source.read(window, chunk_size=self.chunk_size):
            if tracer is not None:
                trace_rows(tracer, chunk, key)
            if field and key:
                # Ordered reads end with their latest row; otherwise every row is looked at.
                latest = latest_cursor(_last_row(chunk) if source.ordered_reads else chunk, field, key, latest)
            rows_to_stage = boundary.feed(chunk) if boundary is not None else chunk
            if rows_to_stage:
                urls.append(store.write("extract", len(urls), rows_to_stage, native=source.native_rows))
                chunk_rows.append(len(rows_to_stage))
        rows = sum(chunk_rows)
        skipped = dict(source.skipped)
        if boundary is not None and boundary.unchanged:
            skipped[SKIP_UNCHANGED] = boundary.unchanged
        result = {
            "chunks": urls,
            "chunk_rows": chunk_rows,
            "rows": rows,
            "skipped": skipped,
            "full_refresh": full_refresh,
            "full_read": full_refresh or mirror or stored is None,
            "cursor_start": stored.to_json() if stored else None,
            "cursor_end": latest.to_json() if latest else None,
            "cursor_store": cursors.backend,
        }
        if tracer is not None:
            tracer.finish()
        read_boundary = boundary.boundary() if boundary is not None else None
        if read_boundary is not None:
            result["boundary"] = write_boundary(store.path("extract", "boundary.json"), read_boundary)
        self.log.info(
            "Extracted %d rows in %d chunks from %s %s (cursor %s -> %s); skipped: %s",
            rows,
            len(urls),
            source_spec.type,
            source_spec.name,
            stored or "none (full read)" if not full_refresh else "ignored (full refresh)",
            latest or "unchanged",
            result["skipped"] or "none",
        )
        return result

    def _boundary_filter(
        self, store: ChunkStore, stored: Cursor | None, source: Any, *, full_refresh: bool
    ) -> BoundaryFilter | None:
        """Database reads re-read the cursor's value; this drops what they read there unchanged."""
        spec = self.spec.source
        if not (spec.updated_field and spec.key and source.ordered_reads):
            return None
        previous = None
        if stored is not None and not full_refresh:
            saved = read_boundary(store.dag_root / "state" / BOUNDARY_FILE)
            previous = saved if saved is not None and saved.value == stored.value else None
        return BoundaryFilter(spec.updated_field, spec.key, previous)


def trace_rows(tracer: Any, chunk: list[Any], key: str | None) -> None:
    """Debug lines for a chunk of read rows (the tracer stops writing past its per-stage limit)."""
    for position, row in enumerate(chunk, start=1):
        if isinstance(row, RowError):
            tracer.rejected("extract", row.row if row.row is not None else f"#{position}", row.reason)
        else:
            tracer.extract(row.get(key) if key else f"#{position}", row)


def _last_row(chunk: list[Any]) -> list[Any]:
    """The last readable row of an ordered chunk (a row rejected at read time holds no cursor)."""
    for row in reversed(chunk):
        if not isinstance(row, RowError):
            return [row]
    return []


def latest_cursor(chunk: list[Any], field: str, key: str, latest: Cursor | None) -> Cursor | None:
    """The largest (updated, key) cursor of a chunk's readable rows, or ``latest`` if larger."""
    for row in chunk:
        if isinstance(row, RowError):
            continue
        try:
            candidate = Cursor(normalize_value(row[field], field=field), row[key])
        except RowError:
            continue
        latest = candidate.max(latest)
    return latest


class ContactsyncTransformOperator(ContactsyncBaseOperator):
    """Apply the definition's formulas to every staged row; failing rows become rejects.

    :param workers: processes transforming chunks in parallel (default: one per available core;
        runs with a single chunk stay in-process).
    """

    def __init__(self, *, workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workers = workers

    def run_stage(self, context: Any) -> dict[str, Any]:
        from functools import partial

        from airflow_provider_contactsync.core.parallel import transform_files

        extracted = self.upstream(context, "extract")
        store = self.chunk_store(context)
        store.clear_stage("transform")
        starts = [1 + sum(extracted["chunk_rows"][:index]) for index in range(len(extracted["chunks"]))]
        urls = [store.chunk_url("transform", index) for index in range(len(extracted["chunks"]))]
        jobs = list(zip(extracted["chunks"], urls, starts, strict=True))
        workers = _workers_for(self.workers, len(jobs))
        run = partial(
            transform_files,
            formulas=self.spec.transform,
            fields=self.spec.source.fields,
            key_field=self.spec.source.key,
            workers=workers,
            definition=self.spec,
        )
        results = list(store.run_jobs(jobs, run))
        passed = sum(p for p, _ in results)
        rejected = sum(r for _, r in results)
        tolerated: Counter[str] = Counter()
        for counts in results:
            tolerated.update(counts.tolerated)
        rows = int(extracted["rows"])
        self.log.info(
            "Transformed %d rows on %d process(es): %d passed, %d rejected; formulas that failed on a field "
            "nothing maps (left null, row kept): %s",
            rows,
            workers,
            passed,
            rejected,
            dict(tolerated) or "none",
        )
        return {
            "chunks": urls,
            "rows": rows,
            "passed": passed,
            "rejected": rejected,
            "chunk_rejected": [r for _, r in results],
            "formula failures on unmapped fields": dict(tolerated),
        }


def _workers_for(configured: int | None, jobs: int) -> int:
    """Worker processes worth starting: spawning one costs ~1 s, a 50k-row chunk ~1.5 s of formulas.

    ``configured`` (the operator's ``workers``) wins; else ``[contactsync] task_workers``; else one
    per core the task may use, and no more than one per two chunks.
    """
    if configured is None:
        configured = _task_workers_setting()
    if configured is None:
        from airflow_provider_contactsync.core.parallel import default_workers

        return max(1, min(default_workers(), jobs // 2))
    return max(1, min(configured, jobs))


def _task_workers_setting() -> int | None:
    """``[contactsync] task_workers``, or None when it is not set."""
    from airflow.configuration import conf

    text = (conf.get("contactsync", "task_workers", fallback="") or "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ConfigurationError(f"[contactsync] task_workers must be a whole number >= 1, not {text!r}")
    return int(text)


class ContactsyncMapOperator(ContactsyncBaseOperator):
    """Map rows to Brevo contacts checked against the account; write the error report; enforce max_error_rate.

    :param workers: processes mapping chunks in parallel (default: one per available core).
    """

    operator_extra_links = (ErrorReportLink(),)

    def __init__(self, *, workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workers = workers

    def run_stage(self, context: Any) -> dict[str, Any]:
        from functools import partial

        from airflow_provider_contactsync.core.attributes import AttributeCatalog
        from airflow_provider_contactsync.core.formulas import compile_transform
        from airflow_provider_contactsync.core.mapping import ContactMapper
        from airflow_provider_contactsync.core.parallel import map_files
        from airflow_provider_contactsync.hooks.brevo import BrevoHook

        extracted = self.upstream(context, "extract")
        transformed = self.upstream(context, "transform")
        store = self.chunk_store(context)
        store.clear_stage("contacts")
        attributes: list[dict[str, Any]] | None = None
        result_types: dict[str, str] = {}
        if transformed["passed"]:  # only ask Brevo when there is something to map
            with BrevoHook(self.spec.destination.conn_id) as hook:
                attributes = hook.get_attributes()
            result_types = compile_transform(self.spec.transform, self.spec.source.fields).result_types
            # Checked here, before any worker starts: a mapping that cannot fit fails the task clearly.
            ContactMapper(self.spec, AttributeCatalog.from_api(attributes), result_types)
        urls = [store.chunk_url("contacts", index) for index in range(len(transformed["chunks"]))]
        jobs = list(zip(transformed["chunks"], urls, strict=True))
        workers = _workers_for(self.workers, len(jobs)) if transformed["passed"] else 1
        run = partial(
            map_files, definition=self.definition, attributes=attributes, result_types=result_types, workers=workers
        )
        contacts_total = mapping_rejected = 0
        reasons: Counter[str] = Counter()
        file_names = [f["name"] for f in extracted["files"]] if "files" in extracted else None
        report = _ErrorReport(store, context["run_id"], with_file=file_names is not None, values=self.spec.reports.mode)
        chunk_rejected = list(transformed.get("chunk_rejected") or [0] * len(jobs))
        tracer = self.tracer()
        for index, (contacts, rejected_rows, rejects) in enumerate(store.run_jobs(jobs, run)):
            report.add(rejects, reasons, file=file_names[extracted["chunk_files"][index]] if file_names else None)
            for reject in rejects if tracer is not None else ():
                tracer.rejected("transform/map", reject.row, reject.reason, field=reject.field, value=reject.value)
            mapping_rejected += rejected_rows
            chunk_rejected[index] += rejected_rows
            contacts_total += contacts
        if tracer is not None:
            tracer.finish()
        if file_names is not None:
            from airflow_provider_contactsync.operators.file_pickup import file_rejects

            for reject in file_rejects(extracted):
                report.add([reject], reasons, file=str(reject.row))
        rows = int(extracted["rows"])
        rejected = int(transformed["rejected"]) + mapping_rejected
        report_url = report.close()
        context["ti"].xcom_push(key=ERROR_REPORT_XCOM_KEY, value=report_url)
        result = {
            "chunks": urls,
            "rows": rows,
            "contacts": contacts_total,
            "rejected": rejected,
            "error_report": report_url,
            "reject_reasons": dict(reasons.most_common(10)),
        }
        if file_names is not None:
            from airflow_provider_contactsync.operators.file_pickup import per_file_counts

            result["files"] = per_file_counts(extracted, chunk_rejected)
        self.log.info(
            "Mapped %d contacts on %d process(es); %d of %d rows rejected; error report: %s",
            contacts_total,
            workers,
            rejected,
            rows,
            report_url,
        )
        self._enforce_reject_rate(result, context)
        return result

    def _enforce_reject_rate(self, result: dict[str, Any], context: Any) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_provider_contactsync import alerts

        problem = alerts.check_reject_rate(self.spec, result["rows"], result["rejected"])
        if problem is None:
            return
        alerts.send_reject_rate_alert(self.spec, result, context)
        # Not retried: the same rows would be rejected again. Fix the data or the formulas, then re-run.
        raise AirflowFailException(f"{problem}; nothing was loaded. Error report: {result['error_report']}")


REPORT_COLUMNS = ("row", "outcome", "field", "value", "reason")
"""The error report's columns (file sources add ``file``): one line per row not loaded as read, with why.
``outcome`` is ``rejected`` (by the checks, before sending), ``refused`` (by Brevo), ``skipped``, or for an
events source ``dead-lettered`` (an event set aside after ``max_attempts`` runs)."""


class _ErrorReport:
    """Streams rejects into the run's error report CSV: owner-only on local storage, constant memory."""

    def __init__(self, store: ChunkStore, run_id: str, *, with_file: bool = False, values: str = "raw") -> None:
        import csv

        from airflow_provider_contactsync.staging import PrivateFile

        self._file = PrivateFile(store.dag_root / "reports" / f"{store.root.name}.csv")
        self._writer = csv.writer(self._file.stream)
        self._with_file = with_file  # file sources: which file each rejected row came from
        self._values = values  # reports.values: raw, masked or hashed
        self._writer.writerow((*REPORT_COLUMNS, *(("file",) if with_file else ())))
        self.count = 0
        self.run_id = run_id

    def add(self, rejects: list[Reject], reasons: Counter[str], *, file: str | None = None) -> None:
        extra = (file or "",) if self._with_file else ()
        for reject in rejects:
            self._writer.writerow(
                _report_line(reject.row, "rejected", reject.field, reject.value, reject.reason, self._values, extra)
            )
            reasons[_reason_family(_shown_reason(reject.reason, self._values))] += 1
            self.count += 1

    def close(self) -> str:
        return self._file.close()


def _reason_family(reason: str) -> str:
    """Group reasons that differ only by the value they quote ("asInt: "x" is not...")."""
    head, _, _ = reason.partition(": ")
    return head if len(head) < len(reason) and len(head) < 40 else reason


class ContactsyncLoadOperator(ContactsyncBaseOperator):
    """Bulk-upsert the contacts into Brevo, then advance the cursor and return the run summary.

    :param retention_days: staged data of other runs older than this is removed after a success
        (default: ``[contactsync] retention_days``, else 7). Error reports are kept apart.
    """

    def __init__(self, *, retention_days: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("outlets", [definition_asset(kwargs["definition"])])
        super().__init__(**kwargs)
        self.retention_days = retention_days

    def run_stage(self, context: Any) -> dict[str, Any]:
        return self._load(context)

    def resume_after_rate_limit(self, context: Any, event: Any = None) -> Any:
        """Back from waiting out Brevo's rate limit (a trigger, no worker slot held): load on."""
        from airflow_provider_contactsync.core.gc_policy import bulk_collection
        from airflow_provider_contactsync.operators.failures import configuration_errors_fail_at_once

        with configuration_errors_fail_at_once(), bulk_collection():
            return self._load(context)

    def _load(self, context: Any) -> dict[str, Any]:
        from airflow_provider_contactsync.dag_factory.builder import ALLOW_MASS_DELETE_PARAM, DRY_RUN_PARAM
        from airflow_provider_contactsync.hooks.brevo import BrevoHook, BrevoRateLimitedError
        from airflow_provider_contactsync.load import ContactLoader, open_ledger
        from airflow_provider_contactsync.load.quota import MonthlyQuota
        from airflow_provider_contactsync.load.removal import MassDeleteError
        from airflow_provider_contactsync.load.settings import SyncSettings

        extracted = self.upstream(context, "extract")
        mapped = self.upstream(context, "map")
        store = self.chunk_store(context)
        destination = self.spec.destination
        params = context.get("params") or {}
        settings = SyncSettings.of(
            self.spec,
            allow_mass_delete=bool(params.get(ALLOW_MASS_DELETE_PARAM)),
            dry_run=bool(params.get(DRY_RUN_PARAM)),
            full_read=bool(extracted.get("full_read", extracted.get("full_refresh"))),
        )
        with BrevoHook(destination.conn_id) as hook, open_ledger(store.dag_root) as ledger:
            settled = ledger.settled_run(context["run_id"])
            if settled is not None:
                return self._replay(context, *settled)
            loader = ContactLoader(
                hook,
                ledger,
                destination,
                full_refresh=bool(extracted["full_refresh"]),
                keyed=self.spec.source.key is not None,
                run_id=context["run_id"],
                read_chunk=store.read,
                read_identities=store.read_identities,
                settings=settings,
                read_sync=store.read_sync,
                on_batch=self._batch_notifier(context),
            )
            quota = MonthlyQuota.of(self.spec)
            quota_run = f"{self.spec.dag_id}/{context['run_id']}"  # its reservation in the month's usage
            checked: list[Any] = []

            def before_sending() -> None:
                self._fail_before_sending(context, extracted, mapped, loader.problems)
                if quota is not None:
                    checked.append(self._check_quota(context, quota, quota_run, loader, mapped))

            try:
                result = loader.run(mapped["chunks"], before_sending=before_sending)
            except MassDeleteError as exc:
                from airflow.sdk.exceptions import AirflowFailException

                from airflow_provider_contactsync import alerts

                alerts.send_mass_delete_alert(self.spec, exc, context)
                raise AirflowFailException(str(exc)) from None
            except BrevoRateLimitedError as exc:
                until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=exc.resume_in)
                why = f"{exc.bucket} until {until:%Y-%m-%d %H:%M:%S} UTC"
                ledger.add_deferral(context["run_id"], why)  # the summary says so once the load ends
                self.log.warning(
                    "%s. The load stops here and resumes at %s, without holding a worker slot; what it sent is "
                    "recorded, so it goes on where it stopped.",
                    exc.message,
                    why,
                )
                self._defer_until(until)
            if settings.dry_run:  # nothing happened: no cursor, no files settled, no run recorded
                summary = {"rows read": int(extracted["rows"]), "rejected": mapped["rejected"], **result.counts}
                summary["notes"] = result.notes
                if quota is not None:  # what a real run would meet, nothing counted
                    planned = int(result.counts.get("would send", 0)) + int(result.counts.get("would remove", 0))
                    check = quota.check(planned, source=self.spec.dag_id, write=False)
                    summary.update(quota.summary(check.usage))
                    if check.reason is not None:
                        summary["notes"].append(f"a real run would stop: {check.reason}")
                self.log.info("Dry run\n%s", format_summary(summary))
                return summary
            summary, failure = self._settle_run(context, extracted, mapped, result, dict(hook.stats.requests))
            if quota is not None and checked:
                self._settle_quota(context, quota, quota_run, checked[-1], summary)
            tracer = self.tracer()
            if tracer is not None:  # the rows the load did not deliver as read, and why
                for problem in result.problems:
                    tracer.trace("load", problem.row, f"{problem.outcome}: {problem.reason}")
                tracer.finish()
            deferred = ledger.deferrals(context["run_id"])
            if deferred:
                summary["deferred for Brevo's rate limit"] = deferred
            ledger.mark_settled(context["run_id"], summary, failure)
        self.log.info("Run summary\n%s", format_summary(summary, extracted["skipped"]))
        store.cleanup()
        store.cleanup_older_than(
            dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=self._retention_days()), keep=store.root.name
        )
        if failure is None and any(p.outcome == "refused" and not p.retry for p in result.problems):
            from airflow_provider_contactsync import alerts

            alerts.send_refusal_alert(self.spec, summary, context)
        if failure is not None:
            from airflow.sdk.exceptions import AirflowFailException

            context["ti"].xcom_push(key="summary", value=summary)
            raise AirflowFailException(failure)
        self._describe_asset_event(context, summary)
        return summary

    def _batch_notifier(self, context: Any) -> Any:
        """``batch_completed`` webhooks: one post per settled import batch (None when nobody listens)."""
        if not any("batch_completed" in webhook.events for webhook in self.spec.notifications.webhooks):
            return None
        from airflow_provider_contactsync.notifications.webhooks import notify_event

        dry_run = bool((context.get("params") or {}).get("dry_run"))

        def notify(batch: int, counts: dict[str, int]) -> None:  # never raises: notify_event logs failures
            notify_event(self.spec, "batch_completed", counts, run_id=context["run_id"], batch=batch, dry_run=dry_run)

        return notify

    def _describe_asset_event(self, context: Any, summary: dict[str, Any]) -> None:
        """The run's counts in the asset event's extra, so Airflow's Assets page shows them too."""
        events = context.get("outlet_events") if hasattr(context, "get") else None
        if events is None:
            return
        extra = {
            name: value for name, value in summary.items() if isinstance(value, int) and not isinstance(value, bool)
        }
        extra["cursor"] = summary.get("cursor")
        events[self.asset].extra = {"contactsync": extra}

    def _defer_until(self, until: dt.datetime) -> None:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        self.defer(trigger=DateTimeTrigger(moment=until), method_name="resume_after_rate_limit")

    def _replay(self, context: Any, summary: dict[str, Any], failure: str | None) -> dict[str, Any]:
        """This run's load had finished (cursor advanced, staging removed) before Airflow recorded it:
        a retry or a cleared task ends as that load did, instead of failing on the missing chunks."""
        self.log.info(
            "This run's load already finished; nothing to send again (to load the source again, run the DAG "
            "with full_refresh). Its summary:\n%s",
            format_summary(summary),
        )
        if failure is not None:
            from airflow.sdk.exceptions import AirflowFailException

            context["ti"].xcom_push(key="summary", value=summary)
            raise AirflowFailException(f"{failure} (this run's load had already finished so)")
        return summary

    def _check_quota(self, context: Any, quota: Any, run: str, loader: Any, mapped: dict[str, Any]) -> Any:
        """Before sending: the run's planned operations against what is left of the month's quota.

        An upper bound (every staged contact, the retries and the planned removals) is enough when it fits;
        near the limit the exact plan is counted (the chunks read again, unchanged contacts left out).
        Refused: nothing is sent and the run fails (:meth:`enforce_quota`). Allowed: reserved in the month.
        """
        bound = int(mapped.get("contacts") or 0) + loader.planned_retries + loader.planned_removals
        planned = bound if bound <= quota.room(run) else loader.planned_operations(mapped["chunks"])
        check = quota.check(planned, run=run, source=self.spec.dag_id)
        self.enforce_quota(context, check)
        self.log.info(
            "Monthly quota of integration %s: %d of %d operations used in %s; this run may make %d",
            quota.integration,
            check.usage.used,
            quota.limit,
            check.usage.month,
            planned,
        )
        return check

    def _settle_quota(self, context: Any, quota: Any, run: str, check: Any, summary: dict[str, Any]) -> None:
        """After settling: what Brevo did added to the month of the check; the warning and stop emails."""
        from airflow_provider_contactsync import alerts
        from airflow_provider_contactsync.load.quota import operations_of

        settled = quota.settle(operations_of(summary), run=run, month=check.usage.month)
        summary.update(quota.summary(settled.usage))
        usage = settled.usage
        if settled.warn:
            alerts.send_quota_warning(self.spec, usage, quota.limit, context)
        if settled.newly_stopped:
            reason = (
                f"The run made {settled.operations:,} operations, bringing integration {quota.integration} to "
                f"{usage.used:,} of its {quota.limit:,} for {usage.month} (UTC)."
            )
            alerts.send_quota_exhausted(self.spec, usage, quota.limit, reason, context)

    def _settle_run(
        self,
        context: Any,
        extracted: dict[str, Any],
        mapped: dict[str, Any],
        result: Any,
        requests: dict[str, int],
    ) -> tuple[dict[str, Any], str | None]:
        """After the load: error report, cursor, files, the run summary, and why the run fails (if it does)."""
        from airflow_provider_contactsync.state import CursorStore, promote_boundary

        store = self.chunk_store(context)
        report_url = mapped["error_report"]
        if result.problems:
            append_to_report(
                report_url, result.problems, _file_of_chunk(extracted, mapped), values=self.spec.reports.mode
            )
        cursor = CursorStore(context, self.asset).advance(Cursor.from_json(extracted["cursor_end"]))
        if extracted.get("boundary"):
            promote_boundary(store.dag_root, extracted["boundary"], cursor)
        events: dict[str, Any] = {}
        if "events_file" in extracted:  # the run's events state, then their acknowledgement
            from airflow_provider_contactsync.operators.event_pickup import settle_events

            events = settle_events(self, context, store, extracted, report_url)
        settled: list[str] = []
        if "files" in extracted:
            from airflow_provider_contactsync.operators.file_pickup import settle_files
            from airflow_provider_contactsync.sources import open_source

            settled = settle_files(self, context, open_source(self.spec.source), extracted)  # type: ignore[arg-type]
        counts = result.counts
        transformed = self.upstream(context, "transform")
        summary = {
            "rows read": int(extracted["rows"]),
            "rejected": mapped["rejected"],
            **{name: counts.get(name, 0) for name in _SUMMARY_COUNTS},
            "skipped at source": sum(extracted["skipped"].values()),
            "max error rate": self.spec.alerts.max_error_rate,  # the page's reject alert uses the same threshold
            "cursor": cursor.to_json() if cursor else None,
            "error report": report_url,
            **{name: value for name, value in counts.items() if name not in _SUMMARY_COUNTS},
            "refusals": [
                _shown_reason(f"row {p.row}: {p.reason}", self.spec.reports.mode)
                for p in result.problems
                if p.outcome == "refused"
            ][:MAX_LISTED],
            "brevo requests": requests,
            "load seconds": result.seconds,
        }
        summary.update(events)
        if result.notes:
            summary["notes"] = result.notes
        unmapped_failures = transformed.get("formula failures on unmapped fields")
        if unmapped_failures:  # rows kept: the field that failed is not sent; said here so it is not silent
            summary["formula failures on unmapped fields"] = unmapped_failures
        if "files" in extracted:
            summary["files"] = mapped.get("files") or []
            summary["files failed"] = [f"{f['name']}: {f['error']}" for f in extracted["failed_files"]]
            summary["after import"] = settled
        failure = self._error_rate_failure(context, extracted, mapped, result.problems, summary)
        if failure is None and summary.get("files failed"):
            # The other files are loaded and recorded; these stay for the next run. Fail so someone hears.
            failure = f"file(s) not imported, tried again next run: {'; '.join(summary['files failed'])}"
        return summary, failure

    def _fail_before_sending(
        self, context: Any, extracted: dict[str, Any], mapped: dict[str, Any], problems: list[Any]
    ) -> None:
        """Before sending: fail the run (nothing loaded) when rejects and identity conflicts pass
        ``max_error_rate``."""
        from airflow.sdk.exceptions import AirflowFailException

        problem = self._error_rate_failure(context, extracted, mapped, problems, None)
        if problem is not None:
            raise AirflowFailException(problem)

    def _error_rate_failure(
        self,
        context: Any,
        extracted: dict[str, Any],
        mapped: dict[str, Any],
        problems: list[Any],
        summary: dict[str, Any] | None,
    ) -> str | None:
        """Why the run fails on ``max_error_rate`` (alert sent), or None.

        Rejected, conflicting and refused rows count together. Before sending (``summary`` None)
        nothing is loaded yet. After settling, what Brevo accepted stays recorded and the refused
        contacts are queued for the next run, so failing loses nothing. Only this run's rows count: a
        contact refused again when retried was counted (and alerted) the first time.
        """
        from airflow_provider_contactsync import alerts

        rows = int(extracted["rows"])
        failed = int(mapped["rejected"]) + sum(p.outcome in ("rejected", "refused") and not p.retry for p in problems)
        problem = alerts.check_reject_rate(self.spec, rows, failed)
        if problem is None:
            return None
        reasons = Counter(mapped.get("reject_reasons") or {})
        reasons.update(_reason_family(line.partition(": ")[2]) for line in (summary or {}).get("refusals") or [])
        alert = {
            "rows": rows,
            "rejected": failed,
            "error_report": mapped["error_report"],
            "reject_reasons": dict(reasons),
            "loaded": summary is not None,
        }
        alerts.send_reject_rate_alert(self.spec, alert, context)
        if summary is None:
            return (
                f"{problem} (identity conflicts included); nothing was loaded. Error report: {mapped['error_report']}"
            )
        return (
            f"{problem} (identity conflicts and contacts refused by Brevo included); the accepted contacts are "
            f"loaded and the refused ones will be sent again next run. Error report: {mapped['error_report']}"
        )

    def _retention_days(self) -> float:
        if self.retention_days is not None:
            return float(self.retention_days)
        from airflow.configuration import conf

        return conf.getfloat("contactsync", "retention_days", fallback=7.0)


_SUMMARY_COUNTS = (
    "identity conflicts",
    "superseded",
    "unchanged",
    "created",
    "updated",
    "skipped (exists)",
    "refused",
    "retried",
    "recovered",
)
"""The load's counts in the run summary. Every row read, and every refused contact of an earlier run
sent again (``retried``), ends in exactly one of: rejected (by the map task), identity conflicts,
superseded, unchanged, created, updated, skipped (exists), refused. ``recovered`` counts contacts a
crashed attempt of this load delivered (they show as unchanged)."""


MAX_LISTED = 10
"""Refusals listed in the run summary and the alert; the error report has them all."""


def _file_of_chunk(extracted: dict[str, Any], mapped: dict[str, Any]) -> dict[str, str] | None:
    """File sources: the file each mapped chunk came from, for the error report's ``file`` column."""
    if "files" not in extracted:
        return None
    names = [f["name"] for f in extracted["files"]]
    return {url: names[extracted["chunk_files"][index]] for index, url in enumerate(mapped["chunks"])}


def append_to_report(url: str, problems: list[Any], files: dict[str, str] | None, *, values: str = "raw") -> None:
    """Add the load's rows (identity conflicts, superseded rows, refusals) to the run's error report."""
    import csv
    import io

    from airflow_provider_contactsync.staging import append_private

    out = io.StringIO()
    writer = csv.writer(out)
    for problem in problems:
        extra = ((files or {}).get(problem.chunk_url or "", ""),) if files is not None else ()
        writer.writerow(
            _report_line(problem.row, problem.outcome, problem.field, problem.value, problem.reason, values, extra)
        )
    append_private(url, out.getvalue())


def _shown_reason(reason: str, mode: str) -> str:
    """A reason as it may appear outside the report (summary, alerts): emails protected as the report's."""
    if mode == "raw":
        return reason
    from airflow_provider_contactsync.core.masking import protect_reason

    return protect_reason(reason, mode)


def _report_line(
    row: Any, outcome: str, field: Any, value: Any, reason: str, mode: str, extra: tuple[str, ...]
) -> tuple[str, ...]:
    """One error-report line (:data:`REPORT_COLUMNS`), its data shown as ``reports.values`` says."""
    if mode != "raw":
        from airflow_provider_contactsync.core.masking import protect, protect_reason

        row = protect(str(row), mode) if row is not None and "@" in str(row) else row  # a key can be an email
        value = protect(str(value), mode) if value is not None else None
        reason = protect_reason(str(reason), mode)
    return _report_cells(row, outcome, field, value, reason, *extra)


def _report_cells(*cells: Any) -> tuple[str, ...]:
    """Report cells as text UTF-8 can hold: data can bring lone surrogates and NUL bytes, shown escaped."""
    out = []
    for cell in cells:
        text = "" if cell is None else str(cell)
        if not text.isascii():
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        out.append(text.replace("\x00", "\\x00"))
    return tuple(out)


def format_summary(summary: dict[str, Any], skipped: dict[str, int] | None = None) -> str:
    """The run summary as a two-column table for the task log."""
    lines = []
    for name, value in summary.items():
        if name == "cursor" and value:
            value = str(Cursor.from_json(value))
        if isinstance(value, list):
            lines.append(f"  {name:<20} {len(value)}")
            for item in value:
                if isinstance(item, dict):
                    item = ", ".join(f"{k} {v}" for k, v in item.items())
                lines.append(f"    - {item}")
            continue
        lines.append(f"  {name:<20} {value}")
    for reason, count in (skipped or {}).items():
        lines.append(f"    skipped: {reason:<30} {count}")
    return "\n".join(lines)
