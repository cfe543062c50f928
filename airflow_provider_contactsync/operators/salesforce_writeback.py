"""Brevo -> Salesforce: changes made in Brevo to contacts that came from Salesforce, written back.

A task after the load (``source.writeback: true``). It reads the Brevo contacts modified since its
last run (``modifiedSince``), keeps those linked to a record of the source's object (EXT_ID is a
Salesforce Id), reads those records (SystemModstamp and the mapped fields, 200 Ids per SOQL call),
and writes back the attributes whose Brevo value differs from Salesforce's, by the seed's rules
(:mod:`..sources.salesforce_writeback`), 200 records per composite call.

No ping-pong: an attribute is written back only when its Brevo value differs from the record's
current value, so what the forward sync itself wrote into Brevo (equal to Salesforce's value) is
never echoed back. Conflicts: a record changed in Salesforce after the contact was changed in Brevo
is left alone (the most recent change wins; the next forward run brings Salesforce's value).

Every contact looked at ends in one outcome with its reason: ``written``, ``skipped`` (not linked,
nothing changed, newer in Salesforce, ...) or ``refused`` (a seed rule, or Salesforce's answer).
Deletions made in Brevo are not propagated (Brevo does not list deleted contacts by date).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from airflow_provider_contactsync.operators.contactsync import ContactsyncBaseOperator

WRITEBACK_KEY = "writeback_since"
BATCH = 200  # SOQL IN list and composite/sobjects: Salesforce's limit per call
MAX_REASONS = 10


class ContactsyncSalesforceWritebackOperator(ContactsyncBaseOperator):
    """Write Brevo's changes to linked Salesforce records back, by the seed's rules."""

    def run_stage(self, context: Any) -> dict[str, Any]:
        from airflow_provider_contactsync.hooks.brevo import BrevoHook
        from airflow_provider_contactsync.load.quota import MonthlyQuota
        from airflow_provider_contactsync.sources import open_source
        from airflow_provider_contactsync.state import SourceState

        state = SourceState(context, self.asset)
        started = dt.datetime.now(dt.timezone.utc)
        self._context = context
        self._quota = MonthlyQuota.of(self.spec)  # writes back count as operations too
        self._quota_run = f"{self.spec.dag_id}/{context['run_id']}/writeback"
        self._lines: list[Any] = []  # per-contact outcomes for the run's error report
        since_text = state.get(WRITEBACK_KEY)
        if since_text is None:  # first run: from now on (the past was Salesforce's to begin with)
            state.set(WRITEBACK_KEY, started.isoformat())
            self.log.info("Write-back starts now: changes made in Brevo from %s on go back to Salesforce", started)
            return {"looked at": 0, "written": 0, "since": started.isoformat()}
        since = dt.datetime.fromisoformat(since_text)
        source = open_source(self.spec.source)
        reverse = {attribute: field for field, attribute in self.spec.mapping.items()}
        outcomes: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        written = deletes = 0
        with BrevoHook(self.spec.destination.conn_id) as brevo:
            batch: list[dict[str, Any]] = []
            for contact in brevo.iter_contacts(modified_since=since):
                batch.append(contact)
                if len(batch) == BATCH:
                    written += self._write(source, batch, reverse, outcomes, reasons)
                    batch = []
            if batch:
                written += self._write(source, batch, reverse, outcomes, reasons)
            deletes = (
                self._propagate_deletes(brevo, source, outcomes, reasons) if self.spec.source.writeback_deletes else 0
            )
        state.set(WRITEBACK_KEY, started.isoformat())
        self._report(context)
        summary = {
            "deleted in Salesforce": deletes,
            "looked at": sum(outcomes.values()),
            "written": written,
            **{f"{name}": count for name, count in outcomes.items() if name != "written"},
            "reasons": dict(reasons.most_common(MAX_REASONS)),
            "salesforce calls": dict(source.client.api_usage) if hasattr(source.client, "api_usage") else {},
            "since": since.isoformat(),
        }
        if self._quota is not None:
            summary.update(self._quota.summary(self._quota.usage()))
        self.log.info("Brevo -> Salesforce: %s", summary)
        return summary

    def _write(
        self, source: Any, contacts: list[dict[str, Any]], reverse: dict[str, str], outcomes: Counter, reasons: Counter
    ) -> int:
        from airflow_provider_contactsync.sources.salesforce import parse_datetime
        from airflow_provider_contactsync.sources.salesforce_writeback import linked_id, plan_writeback

        obj = self.spec.source.object
        linked = {}
        for contact in contacts:
            record = linked_id(obj, (contact.get("attributes") or {}).get("EXT_ID"))
            if record is None:
                outcomes["skipped"] += 1
                reasons["created in Brevo (no Salesforce Id): never pushed"] += 1
                self._line(contact.get("email"), "skipped", "created in Brevo (no Salesforce Id): never pushed")
            else:
                linked[record] = contact
        if not linked:
            return 0
        fields = sorted({name for name in reverse.values() if "." not in name} | {"Id", "SystemModstamp"})
        ids = ", ".join(f"'{record}'" for record in linked)  # ids matched the Salesforce Id pattern
        answer = source.client.query_all(f"SELECT {', '.join(fields)} FROM {obj} WHERE Id IN ({ids})")
        current = {row["Id"]: row for row in answer["records"]}
        updates: list[dict[str, Any]] = []
        for record, contact in linked.items():
            row = current.get(record)
            if row is None:
                outcomes["skipped"] += 1
                reasons["no longer in Salesforce"] += 1
                self._line(record, "skipped", "no longer in Salesforce")
                continue
            # An attribute missing in Brevo was emptied there: compared as null (the rules decide what goes)
            shown = {**(contact.get("attributes") or {}), "EMAIL": contact.get("email")}
            changed = {
                attribute: shown.get(attribute)
                for attribute, name in reverse.items()
                if attribute != "EXT_ID" and "." not in name and not _same(shown.get(attribute), row.get(name))
            }
            if not changed:
                outcomes["skipped"] += 1
                reasons["nothing to write back (equal in Salesforce)"] += 1
                continue
            plan = plan_writeback(
                obj,
                contact,
                changed,
                reverse,
                source.describe,
                salesforce_modstamp=parse_datetime(row.get("SystemModstamp")),
                brevo_modified_at=_brevo_time(contact.get("modifiedAt")),
            )
            for refusal in plan.refusals:
                reasons[refusal.reason.split(" (")[0]] += 1
                self._line(record, "refused", refusal.reason, field=refusal.field, value=refusal.value)
            if plan.outcome != "update":
                outcomes[plan.outcome] += 1
                if plan.outcome == "skipped":  # refusals were counted above, field by field
                    reasons[plan.reason.split(" (")[0]] += 1
                    self._line(record, "skipped", plan.reason)
                continue
            updates.append({"attributes": {"type": obj}, "id": record, **plan.values})
        written = 0
        for start in range(0, len(updates), BATCH):
            part = updates[start : start + BATCH]
            month = self._reserve(len(part))  # stops before a batch that would cross the monthly quota
            results = source.client.restful(
                "composite/sobjects", method="PATCH", json={"allOrNone": False, "records": part}
            )
            done = 0
            for sent, result in zip(part, results, strict=True):
                if result.get("success"):
                    done += 1
                    outcomes["written"] += 1
                else:
                    outcomes["refused"] += 1
                    errors = result.get("errors") or [{}]
                    reasons[f"Salesforce refused it: {errors[0].get('statusCode', '?')}"] += 1
                    why = f"Salesforce refused it: {errors[0].get('statusCode', '?')}: {errors[0].get('message', '')}"
                    self._line(sent["id"], "refused", why)
            self._settle_quota(done, month)
            written += done
        return written

    def _propagate_deletes(self, brevo: Any, source: Any, outcomes: Counter, reasons: Counter) -> int:
        """Records whose Brevo contact was deleted in Brevo, deleted in Salesforce (``writeback_deletes``).

        Brevo lists no deleted contacts, so the contacts this source delivered (the ledger's, still live)
        are compared with every EXT_ID Brevo holds now (one scan, 1,000 contacts a request). Salesforce's
        ``DELETE_FAILED`` (a Contact linked to a Case) and ``ENTITY_IS_DELETED`` are outcomes, not errors;
        either way the contact is not tried again. ``deletes.max_per_run`` bounds a run, as for deletes
        the other way: a run that would delete more deletes nothing and fails.
        """
        from airflow_provider_contactsync.load.ledger import open_ledger
        from airflow_provider_contactsync.sources.salesforce_writeback import delete_outcome, linked_id
        from airflow_provider_contactsync.staging import ChunkStore, default_staging_base

        obj = self.spec.source.object
        in_brevo = {str((c.get("attributes") or {}).get("EXT_ID")) for c in brevo.iter_contacts()}
        store = ChunkStore(self.staging or default_staging_base(), self.spec.dag_id, self._context["run_id"])
        with open_ledger(store.dag_root) as ledger:
            live = ledger.live_ext_ids()
            gone = {ext: identity for identity, ext in live if linked_id(obj, ext) and ext not in in_brevo}
            if not gone:
                return 0
            rules = self.spec.deletes_or_default
            limit = rules.limit(len(live)) if rules is not None else 0
            if len(gone) > limit:
                from airflow.sdk.exceptions import AirflowFailException

                raise AirflowFailException(
                    f"{len(gone)} contacts deleted in Brevo would be deleted in Salesforce, over deletes.max_per_run "
                    f"({limit}): nothing was deleted. If that is right, raise deletes.max_per_run for a run."
                )
            deleted = 0
            records = list(gone)
            for start in range(0, len(records), BATCH):
                part = records[start : start + BATCH]
                month = self._reserve(len(part))
                results = source.client.restful(
                    "composite/sobjects", method="DELETE", params={"ids": ",".join(part), "allOrNone": "false"}
                )
                done = 0
                for record, result in zip(part, results, strict=True):
                    errors = result.get("errors") or [{}]
                    outcome, reason = delete_outcome(
                        None if result.get("success") else errors[0].get("statusCode"), errors[0].get("message", "")
                    )
                    outcomes[f"delete {outcome}"] += 1
                    if reason:
                        reasons[reason] += 1
                        self._line(record, outcome, f"deleted in Brevo: {reason}")
                    done += outcome == "deleted"
                self._settle_quota(done, month)
                deleted += done
                ledger.mark_removed([gone[record] for record in part], "deleted")  # handled: never tried again
        return deleted

    def _line(self, row: Any, outcome: str, reason: str, *, field: str | None = None, value: Any = None) -> None:
        from airflow_provider_contactsync.load.loader import LoadProblem

        if hasattr(self, "_lines"):
            self._lines.append(LoadProblem(row, outcome, field, value, f"write-back to Salesforce: {reason}"))

    def _report(self, context: Any) -> None:
        """The per-contact outcomes, added to the run's error report (the dashboard's download)."""
        if not self._lines:
            return
        from airflow_provider_contactsync.operators.contactsync import append_to_report

        report = self.upstream(context, "map")["error_report"]
        append_to_report(report, self._lines, None, values=self.spec.reports.mode)

    def _reserve(self, planned: int) -> str | None:
        """Check and reserve ``planned`` operations in the month's quota; raise when it would be crossed."""
        quota = getattr(self, "_quota", None)
        if quota is None:
            return None
        check = quota.check(planned, run=self._quota_run, source=self.spec.dag_id)
        self.enforce_quota(self._context, check)
        return check.usage.month

    def _settle_quota(self, operations: int, month: str | None) -> None:
        quota = getattr(self, "_quota", None)
        if quota is None:
            return
        from airflow_provider_contactsync import alerts

        settled = quota.settle(operations, run=self._quota_run, month=month)
        if settled.warn:
            alerts.send_quota_warning(self.spec, settled.usage, quota.limit, self._context)
        if settled.newly_stopped:
            reason = f"Writing back to Salesforce brought integration {quota.integration} to {settled.usage.used:,}."
            alerts.send_quota_exhausted(self.spec, settled.usage, quota.limit, reason, self._context)


def _same(brevo: Any, salesforce: Any) -> bool:
    """Equal as Brevo and Salesforce show them (text compared without case for emails, dates as text)."""
    if brevo in (None, "") and salesforce in (None, ""):
        return True
    if isinstance(brevo, str) and isinstance(salesforce, str):
        return brevo.strip().lower() == salesforce.strip().lower() if "@" in brevo else brevo == salesforce
    return str(brevo) == str(salesforce)


def _brevo_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
