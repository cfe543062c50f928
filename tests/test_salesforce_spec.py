"""Salesforce definitions (issue 15): the preset, opt-in before activation, drafts, five connections per org."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from servers.airflow_db import run_dag, task_states

from airflow_provider_contactsync.core.errors import ConfigurationError
from airflow_provider_contactsync.core.spec import SourceDefinition, load_definition
from airflow_provider_contactsync.dag_factory import build_dag
from airflow_provider_contactsync.dag_factory.folder import scan_definitions


def definition_text(
    name: str = "contacts", *, obj: str = "Contact", conn: str = "crm_sf", extra: str = "", fields: str = "[]"
) -> str:
    return textwrap.dedent(
        f"""\
        integration: crm
        source:
          name: {name}
          type: salesforce
          conn_id: {conn}
          object: {obj}
          fields: {fields}
        destination: {{list_ids: [2]}}
        """
    ) + textwrap.dedent(extra)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_the_preset_reads_the_system_fields_and_maps_the_standard_ones(tmp_path: Path) -> None:
    definition = load_definition(
        write(
            tmp_path,
            "c.yaml",
            definition_text(fields="[Title]", extra="consent: {opt_in_confirmed: true}\nmapping: {Title: JOB}\n"),
        )
    )
    source = definition.source
    assert source.fields[:5] == ["Id", "Email", "FirstName", "LastName", "HasOptedOutOfEmail"]
    assert {"SystemModstamp", "IsDeleted"} <= set(source.fields)
    assert (source.updated_field, source.key, source.deleted_when) == ("SystemModstamp", "Id", "IsDeleted == true")
    assert definition.mapping == {"Id": "EXT_ID", "Email": "EMAIL", "FirstName": "FIRSTNAME", "LastName": "LASTNAME",
                                  "Title": "JOB"}  # fmt: skip
    assert definition.consent is not None and definition.consent.email.startswith("HasOptedOutOfEmail")
    again = SourceDefinition.model_validate(definition.model_dump(mode="json"))  # what tasks validate
    assert again == definition


def test_an_active_definition_needs_the_opt_in_confirmed_and_a_draft_does_not(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="consent.opt_in_confirmed"):
        load_definition(write(tmp_path, "a.yaml", definition_text()))
    draft = load_definition(write(tmp_path, "d.yaml", definition_text(extra="status: draft\n")))
    assert draft.status == "draft"


def test_a_sixth_definition_on_one_salesforce_connection_is_refused_naming_the_others(tmp_path: Path) -> None:
    opted = "consent: {opt_in_confirmed: true}\n"
    files = [
        write(tmp_path, f"{n}.yaml", definition_text(f"s{n}", obj="Lead" if n % 2 else "Contact", extra=opted))
        for n in range(1, 7)
    ]
    files.append(write(tmp_path, "other.yaml", definition_text("other", conn="other_sf", extra=opted)))
    scan = scan_definitions(sorted(files))
    assert sorted(scan.definitions) == sorted(
        [f"contactsync__crm__s{n}" for n in range(1, 6)] + ["contactsync__crm__other"]
    )
    [problem] = scan.problems.values()
    assert "6.yaml" in problem and "'crm_sf' already serves 5 definitions" in problem
    assert all(f"{n}.yaml (contactsync__crm__s{n})" in problem for n in range(1, 6))


def test_a_draft_dag_is_built_paused_and_a_run_started_anyway_is_skipped(tmp_path: Path, airflow_db: str) -> None:
    definition = load_definition(write(tmp_path, "d.yaml", definition_text(extra="status: draft\n")))
    dag = build_dag(definition, staging=f"file://{tmp_path}/staging", default_args={"retries": 0})
    assert dag.is_paused_upon_creation is True
    assert "**Draft**" in dag.doc_md and "consent.opt_in_confirmed" in dag.doc_md
    states = task_states(run_dag(dag))
    assert set(states.values()) == {"skipped"}  # no Salesforce call, no Brevo call: nothing to reach
