"""Export definitions (kind: export): validation with file:line errors, schedules, the DAG they become."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec.export_models import ExportContent, ExportDefinition
from airflow_provider_contactsync.core.spec.loader import inspect_definition_file
from airflow_provider_contactsync.exports.condition import attributes_of, compile_condition
from airflow_provider_contactsync.exports.content import ExportCursor, choose_method, export_filter

GOOD = """\
kind: export
integration: newsletter
name: unsubscribes
schedule: {every: daily, at: "06:30", timezone: Europe/Paris}
content:
  contacts: list
  list_id: 2
  status: unsubscribed
  incremental: true
  where: 'COUNTRY == "FR"'
  fields:
    - EMAIL
    - {attribute: SMS, column: phone, obfuscate: sha256}
    - MODIFIED_TIME
file: {name: "unsub_{date:%Y%m%d}", compression: gzip}
destination: {type: sftp, conn_id: partner_sftp, folder: /outbox}
confirmation: {format: keyvalue}
alerts: {emails: [a@example.com, b@example.com]}
"""


def _write(tmp_path: Path, text: str, name: str = "export.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_export_definition_validates(tmp_path: Path) -> None:
    report = inspect_definition_file(_write(tmp_path, GOOD))
    assert report.errors == []
    definition = report.definition
    assert isinstance(definition, ExportDefinition)
    assert definition.dag_id == "contactsync_export__newsletter__unsubscribes"
    assert definition.cron == "30 6 * * *" and definition.timezone == "Europe/Paris"
    assert [f.name for f in definition.content.fields] == ["EMAIL", "phone", "MODIFIED_TIME"]


def test_errors_name_file_line_and_key(tmp_path: Path) -> None:
    text = GOOD.replace("  status: unsubscribed\n", "  statuz: unsubscribed\n").replace(
        "{format: keyvalue}", "{format: xml}"
    )
    path = _write(tmp_path, text)
    messages = [str(e) for e in inspect_definition_file(path).errors]
    assert f"{path}:8: content.statuz: unknown key 'statuz' (did you mean 'status'?)" in messages[0]
    assert any(m.startswith(f"{path}:17: confirmation.format") for m in messages)


def test_where_condition_errors_are_located(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("'COUNTRY == \"FR\"'", "'COUNTRY +'"))
    (error,) = inspect_definition_file(path).errors
    assert str(error).startswith(f"{path}:10: content.where")


def test_where_must_give_a_boolean(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("'COUNTRY == \"FR\"'", "'COUNTRY + \"x\"'"))
    (error,) = inspect_definition_file(path).errors
    assert "must give true, false or null" in str(error)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("contacts: list\n  list_id: 2\n", "contacts: segment\n"), "segment_id is required"),
        (("status: unsubscribed", "status: unsubscribed_from_list\n  read: pages"), "only in Brevo's export"),
        (
            ("{attribute: SMS, column: phone, obfuscate: sha256}", "{attribute: SMS, obfuscate: hmac-sha256}"),
            "hmac_key_conn_id: required",
        ),
        (
            ("{type: sftp, conn_id: partner_sftp, folder: /outbox}", "{type: storage, path: 's3://k:s@b/x'}"),
            "credentials",
        ),
        (('{every: daily, at: "06:30", timezone: Europe/Paris}', "{every: daily, at: '25:00'}"), "at"),
        (("timezone: Europe/Paris", "timezone: Mars/Olympus"), "not an IANA time zone"),
        (("- EMAIL\n", "- EMAIL\n    - {attribute: FIRSTNAME, column: EMAIL}\n"), "appears twice"),
        (("{format: keyvalue}", "{path: '{date}.done'}"), "only {file}"),
        (('schedule: {every: daily, at: "06:30", timezone: Europe/Paris}', "schedule: '61 * * * *'"), "cron"),
    ],
)
def test_inconsistent_definitions_are_refused(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    errors = inspect_definition_file(_write(tmp_path, text)).errors
    assert errors and message in "\n".join(str(e) for e in errors)


def test_bigquery_refuses_encryption(tmp_path: Path) -> None:
    text = GOOD.replace(
        "{type: sftp, conn_id: partner_sftp, folder: /outbox}",
        "{type: bigquery, conn_id: gcp, dataset: d, table: t}",
    ).replace("compression: gzip}", "compression: gzip, encryption: {recipients: [{conn_id: pgp}]}}")
    text = text.replace("confirmation: {format: keyvalue}", "confirmation: {path: 's3://b/{file}.done'}")
    errors = inspect_definition_file(_write(tmp_path, text)).errors
    assert "no file.encryption" in str(errors[0])


def test_schedules_give_crons() -> None:
    base = ExportDefinition.model_validate(
        {
            "kind": "export",
            "integration": "i",
            "name": "n",
            "content": {"fields": ["EMAIL"]},
            "destination": {"type": "storage", "path": "/tmp/out"},
        }
    )
    cases = {
        "manual": None,
        "daily": "@daily",
        "15 3 * * 1-5": "15 3 * * 1-5",
    }
    for given, cron in cases.items():
        assert base.model_copy(update={"schedule": given}).cron == cron
    weekly = ExportDefinition.model_validate(
        {**base.model_dump(), "schedule": {"every": "weekly", "at": "07:05", "weekday": "sunday"}}
    )
    assert weekly.cron == "5 7 * * 0"
    monthly = ExportDefinition.model_validate({**base.model_dump(), "schedule": {"every": "monthly", "day": 3}})
    assert monthly.cron == "0 0 3 * *"


def test_condition_reads_attributes_it_names_outside_strings() -> None:
    content = ExportContent(fields=[{"attribute": "EMAIL"}], where='COUNTRY == "FR" && AGE > 3 && "NOPE" != EMAIL')
    assert attributes_of(content) == ["EMAIL", "COUNTRY", "AGE"]
    condition = compile_condition(content)
    assert condition is not None
    assert condition.keeps({"COUNTRY": "FR", "AGE": 4, "EMAIL": "a@b.c"})
    assert not condition.keeps({"COUNTRY": "FR", "AGE": 2, "EMAIL": "a@b.c"})


def test_method_choice_and_export_filter() -> None:
    listed = ExportContent(contacts="list", list_id=7, status="unsubscribed", fields=[{"attribute": "EMAIL"}])
    assert choose_method(listed, None, 50) == "pages"
    assert choose_method(listed, None, 50_000) == "export"
    incremental = listed.model_copy(update={"incremental": True})
    assert choose_method(incremental, ExportCursor("2026-01-01T00:00:00.000+00:00", frozenset({1})), 50_000) == "pages"
    per_list = listed.model_copy(update={"status": "unsubscribed_from_list"})
    assert choose_method(per_list, None, 1) == "export"
    assert export_filter(per_list) == {"actionForContacts": "unsubscribedPerList", "listId": 7}
    with pytest.raises(ValueError, match="needs a list or a segment"):
        ExportContent(read="export", fields=[{"attribute": "EMAIL"}])


def test_source_definitions_are_unchanged_by_kind(tmp_path: Path) -> None:
    demo = Path(__file__).resolve().parents[1] / "example_dags" / "definitions" / "demo_customers.yaml"
    report = inspect_definition_file(demo)
    assert report.errors == [] and report.definition.dag_id == "contactsync__demo__customers"


def test_missing_attribute_in_the_account_is_named() -> None:
    from airflow_provider_contactsync.exports.content import check_attributes

    content = ExportContent(fields=[{"attribute": "EMAIL"}, {"attribute": "LOYALTY"}], where="AGE > 1")
    with pytest.raises(ConfigurationError, match="no attribute LOYALTY, AGE"):
        check_attributes(content, {"FIRSTNAME": "text"})


def test_generated_export_docs_are_current_and_the_schema_validates_the_example() -> None:
    import json

    import jsonschema
    import yaml

    from airflow_provider_contactsync.core.spec.schema import (
        export_json_schema,
        export_json_schema_text,
        render_export_reference,
    )

    root = Path(__file__).resolve().parents[1]
    assert (root / "docs" / "export-definition.schema.json").read_text() == export_json_schema_text()
    assert (root / "docs" / "export-definition-reference.md").read_text() == render_export_reference()
    assert json.loads(export_json_schema_text())["title"] == "ExportDefinition"
    validator = jsonschema.Draft202012Validator(export_json_schema())
    validator.validate(yaml.safe_load(GOOD))
    bad = yaml.safe_load(GOOD)
    bad["content"]["statuz"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)


def test_export_cursor_keeps_every_contact_of_its_millisecond() -> None:
    start = ExportCursor("2026-01-01T00:00:00.000+00:00", frozenset({5}))
    assert not start.is_new("2026-01-01T00:00:00.000+00:00", 5)
    assert start.is_new("2026-01-01T00:00:00.000+00:00", 3)  # same instant, lower id, not delivered yet
    assert not start.is_new("2025-12-31T23:59:59.999+00:00", 9)
    later = start.after("2026-01-01T00:00:00.000+00:00", 3).after("2026-01-01T00:00:00.001+00:00", 1)
    assert later == ExportCursor("2026-01-01T00:00:00.001+00:00", frozenset({1}))
    assert ExportCursor.from_json(later.to_json()) == later


def test_a_broken_export_is_an_import_error_of_its_file_only(tmp_path: Path) -> None:
    import shutil

    from airflow_provider_contactsync.dag_factory import check_definitions, load_dags
    from airflow_provider_contactsync.dag_factory.errors import ContactsyncDefinitionsError

    demo = Path(__file__).resolve().parents[1] / "example_dags" / "definitions" / "demo_customers.yaml"
    shutil.copy(demo, tmp_path / "demo.yaml")
    _write(tmp_path, GOOD, "good_export.yaml")
    broken = _write(
        tmp_path, GOOD.replace("name: unsubscribes", "name: broken").replace("status:", "statuz:"), "broken_export.yaml"
    )
    dags = load_dags(tmp_path)
    assert sorted(dags) == ["contactsync__demo__customers", "contactsync_export__newsletter__unsubscribes"]
    assert [t.task_id for t in dags["contactsync_export__newsletter__unsubscribes"].tasks] == ["build_file", "deliver"]
    with pytest.raises(ContactsyncDefinitionsError) as caught:
        check_definitions(tmp_path)
    assert f"{broken}:8: content.statuz" in str(caught.value)
    assert "good_export.yaml" not in str(caught.value)


def test_schedule_time_zone_and_draft_reach_the_dag(tmp_path: Path) -> None:
    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag

    dag = build_dag(
        load_definition(_write(tmp_path, GOOD.replace("kind: export", "kind: export\nstatus: draft"))), register=False
    )
    assert dag.timetable.expression == "30 6 * * *"
    assert str(dag.timetable.timezone) == "Europe/Paris"
    assert dag.is_paused_upon_creation is True
    assert set(dag.params.keys()) == {"full_export", "retry_of"}


def test_history_records_ignore_and_prune(tmp_path: Path) -> None:
    import datetime as dt

    from airflow_provider_contactsync.exports import history

    base = f"file://{tmp_path}"
    kept = tmp_path / "kept.csv"
    for run_id, started, keep_until in (
        ("r1", "2026-01-01T00:00:00+00:00", "2026-01-10T00:00:00+00:00"),
        ("r2", "2026-01-05T00:00:00+00:00", "2026-03-01T00:00:00+00:00"),
    ):
        folder = history.run_folder(base, "d", run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "f.csv").write_bytes(b"x")
        record = history.ExportRecord(
            dag_id="d",
            run_id=run_id,
            export="e",
            integration="i",
            status="delivered",
            file_url=str(folder / "f.csv"),
            started_at=started,
            keep_until=keep_until,
        )
        with record.step("a step"):
            pass
        history.write_record(base, record)
    assert [r.run_id for r in history.list_records(base, "d")] == ["r2", "r1"]
    history.mark_ignored(base, "d", "r2", by="alice")
    assert [r.run_id for r in history.list_records(base, "d")] == ["r1"]
    assert history.is_ignored(base, "d", "r2")
    history.mark_ignored(base, "d", "r2", by="alice", ignored=False)
    assert len(history.list_records(base, "d")) == 2
    assert history.prune(base, "d", now=dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)) == ["r1"]
    r1 = history.read_record(base, "d", "r1")
    assert r1.file_removed and not (tmp_path / "d" / "exports" / "r1" / "f.csv").exists()
    assert (tmp_path / "d" / "exports" / "r2" / "f.csv").exists() and not kept.exists()
    assert r1.steps[0].name == "a step" and r1.steps[0].ok


def test_cli_validates_export_definitions_and_prints_their_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from airflow_provider_contactsync.cli import main

    good = _write(tmp_path, GOOD, "good.yaml")
    assert main(["validate", str(good), "--check-source"]) == 0
    assert "contactsync_export__newsletter__unsubscribes" in capsys.readouterr().out
    bad = _write(tmp_path, GOOD.replace("status: unsubscribed", "status: gone"), "bad.yaml")
    assert main(["validate", str(bad)]) == 1
    assert f"{bad}:8: content.status" in capsys.readouterr().err
    assert main(["schema", "--export"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "ExportDefinition"
