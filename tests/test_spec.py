"""Source definitions: schema, errors that name file/line/key, credential refusal, JSON Schema."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from airflow_provider_contactsync.core.errors import DefinitionError
from airflow_provider_contactsync.core.spec import load_definition, parse_definition
from airflow_provider_contactsync.core.spec.schema import json_schema, json_schema_text, render_reference

GOOD = textwrap.dedent(
    """\
    integration: crm
    source:
      name: customers
      type: postgres
      conn_id: crm_pg
      table: public.customers
      fields: [id, email, first_name, last_name, phone, country, updated_at]
      updated_field: updated_at
      key: id
    schedule: hourly
    transform:
      email: email.normalizeEmail()
      phone: phone.normalizePhoneNumber(["FR", "BE", "CH"])
      full_name: (first_name + ' ' + last_name).trim()
    mapping:
      email: EMAIL
      phone: SMS
      id: EXT_ID
      first_name: FIRSTNAME
    destination:
      conn_id: brevo_default
      list_ids: [5]
      update_existing: true
    alerts:
      emails: [data-team@example.com]
      max_error_rate: 0.05
    """
)


def errors_of(text: str) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse_definition(text, file="crm.yaml")
    return str(info.value).splitlines()


def test_issue_example_loads_with_typed_values(tmp_path: Path) -> None:
    path = tmp_path / "customers.yaml"
    path.write_text(GOOD)
    definition = load_definition(path)
    assert definition.dag_id == "contactsync__crm__customers"
    assert definition.cron == "@hourly"
    assert definition.source.type == "postgres"
    assert definition.source.table == "public.customers"
    assert definition.destination.list_ids == [5]
    assert definition.alerts.max_error_rate == 0.05
    assert definition.transform["full_name"] == "(first_name + ' ' + last_name).trim()"


@pytest.mark.parametrize(
    ("schedule", "cron"),
    [("manual", None), ("hourly", "@hourly"), ("daily", "@daily"), ("*/15 * * * *", "*/15 * * * *")],
)
def test_schedules(schedule: str, cron: str | None) -> None:
    definition = parse_definition(GOOD.replace("schedule: hourly", f"schedule: '{schedule}'"))
    assert definition.cron == cron


def test_bad_schedule_names_line_and_key() -> None:
    (error,) = errors_of(GOOD.replace("schedule: hourly", "schedule: every hour"))
    assert error.startswith("crm.yaml:10: schedule: ")
    assert "'every hour' is not manual, hourly, daily or a five-field cron" in error


def test_unknown_key_is_an_error_with_suggestion() -> None:
    (error,) = errors_of(GOOD.replace("  table: public.customers", "  table: public.customers\n  tabel: x"))
    assert error.startswith("crm.yaml:7: source.tabel: unknown key 'tabel' (did you mean 'table'?)")


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("list_ids: [5]", "list_id: [5]").replace("schedule: hourly", "schedule: sometimes")
    errors = errors_of(text)
    assert any("schedule:" in e for e in errors)
    assert any("destination.list_id: unknown key 'list_id' (did you mean 'list_ids'?)" in e for e in errors)


def test_unknown_source_type() -> None:
    (error,) = errors_of(GOOD.replace("type: postgres", "type: mysql"))
    assert "source.type" in error or "source:" in error
    assert "postgres, bigquery, snowflake, mongo, file, sftp, ftp" in error


def test_table_and_query_are_exclusive() -> None:
    text = GOOD.replace("  table: public.customers", "  table: public.customers\n  query: select 1")
    (error,) = errors_of(text)
    assert "give exactly one of table or query" in error


def test_table_identifier_is_validated() -> None:
    (error,) = errors_of(GOOD.replace("public.customers", "customers; drop table x"))
    assert "source.table" in error


def test_cursor_fields_must_be_read() -> None:
    (error,) = errors_of(GOOD.replace("updated_field: updated_at", "updated_field: modified"))
    assert "updated_field 'modified' is not one of the fields" in error


def test_updated_field_needs_a_key() -> None:
    (error,) = errors_of(GOOD.replace("  key: id\n", ""))
    assert "key is required with updated_field" in error


def test_mapping_needs_an_identifier() -> None:
    text = GOOD.replace("  email: EMAIL\n", "").replace("  phone: SMS\n", "").replace("  id: EXT_ID\n", "")
    (error,) = errors_of(text)
    assert "at least one identifier attribute: EMAIL, SMS or EXT_ID" in error


def test_mapping_field_must_exist() -> None:
    (error,) = errors_of(GOOD.replace("first_name: FIRSTNAME", "nickname: FIRSTNAME"))
    assert (
        "crm.yaml:" in error
        and "mapping.nickname: 'nickname' is neither a source field nor a transform output" in error
    )


def test_mapping_to_a_transform_output_is_allowed() -> None:
    definition = parse_definition(GOOD.replace("first_name: FIRSTNAME", "full_name: FIRSTNAME"))
    assert definition.mapping["full_name"] == "FIRSTNAME"


def test_attribute_mapped_twice() -> None:
    (error,) = errors_of(GOOD.replace("first_name: FIRSTNAME", "first_name: EMAIL"))
    assert "attribute EMAIL is mapped from several fields" in error


def test_duplicate_yaml_key_is_refused() -> None:
    (error,) = errors_of(GOOD.replace("schedule: hourly", "schedule: hourly\nschedule: daily"))
    assert error.startswith("crm.yaml:11: schedule: key 'schedule' appears twice")


def test_broken_yaml_names_the_position() -> None:
    (error,) = errors_of("integration: crm\nsource: [unclosed\n")
    assert error.startswith("crm.yaml: line 3")
    assert "not valid YAML" in error


def test_yaml_is_loaded_safely() -> None:
    (error,) = errors_of("integration: !!python/object/apply:os.system ['echo pwned']\n")
    assert error.startswith("crm.yaml:1: integration: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'")


def test_empty_file() -> None:
    assert errors_of("") == ["crm.yaml: the file is empty"]


@pytest.mark.parametrize(
    "insert",
    [
        "  password: hunter2",
        "  api_key: abc",
        "  private_key: abc",
        "  token: abc",
    ],
)
def test_credential_keys_are_refused(insert: str) -> None:
    (error,) = errors_of(GOOD.replace("  conn_id: crm_pg", f"  conn_id: crm_pg\n{insert}"))
    key = insert.split(":")[0].strip()
    assert error.startswith(f"crm.yaml:6: source.{key}: '{key}' looks like a credential")
    assert "Airflow connection" in error


@pytest.mark.parametrize(
    "value",
    [
        "xkeysib-0123456789abcdef0123456789abcdef",
        "postgresql://bob:s3cret@db.example.com/crm",
        "-----BEGIN RSA PRIVATE KEY-----",
    ],
)
def test_credential_values_are_refused(value: str) -> None:
    (error,) = errors_of(GOOD.replace("conn_id: crm_pg", f"conn_id: '{value}'"))
    assert "source.conn_id" in error and "looks like a credential" in error
    assert value not in error  # the secret itself is not echoed


def test_field_named_token_is_not_a_credential() -> None:
    text = GOOD.replace("country, updated_at]", "country, updated_at, token]").replace(
        "  full_name:", "  token: token.trim()\n  full_name:"
    )
    assert "token" in parse_definition(text).transform


def test_file_source_refuses_patterns_that_escape_the_folder() -> None:
    text = GOOD.replace(
        "  type: postgres\n  conn_id: crm_pg\n  table: public.customers\n",
        "  type: file\n  path: /data\n  pattern: ../*.csv\n",
    )
    (error,) = errors_of(text)
    assert "pattern must stay inside the folder" in error


def test_sftp_needs_a_connection() -> None:
    text = GOOD.replace(
        "  type: postgres\n  conn_id: crm_pg\n  table: public.customers\n", "  type: sftp\n  path: in\n"
    )
    (error,) = errors_of(text)
    assert "conn_id is required for sftp sources" in error


def test_json_schema_validates_like_the_models() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json_schema()
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(GOOD))
    bad = yaml.safe_load(GOOD)
    bad["source"]["tabel"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(bad)


def test_generated_docs_are_current() -> None:
    root = Path(__file__).resolve().parents[1]
    assert (root / "docs" / "source-definition.schema.json").read_text() == json_schema_text()
    assert (root / "docs" / "definition-reference.md").read_text() == render_reference()
    assert json.loads(json_schema_text())["title"] == "SourceDefinition"


BROKEN = textwrap.dedent(
    """\
    integration: crm
    source:
      name: customers
      type: postgres
      conn_id: crm_pg
      password: hunter2
      tabel: public.customers
      fields: [id, email, first_name, last_name]
    schedule: hourly
    transform:
      email: email.normalizeEmal()
      full_name: (first_name + ' ' + last_name).trim()
    mapping:
      nickname: FIRSTNAME
      full_name: LASTNAME
    destination:
      list_ids: five
    """
)

BROKEN_ERRORS = [
    "crm.yaml:6: source.password: 'password' looks like a credential",
    "crm.yaml:7: source.tabel: unknown key 'tabel' (did you mean 'table'?)",
    "crm.yaml:11: transform.email: formula line 1, column 7: unknown function 'normalizeEmal'",
    "crm.yaml:13: mapping: must include at least one identifier attribute: EMAIL, SMS or EXT_ID",
    "crm.yaml:14: mapping.nickname: 'nickname' is neither a source field nor a transform output",
    "crm.yaml:17: destination.list_ids: Input should be a valid list",
]


def test_one_problem_of_each_kind_is_reported_at_once_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "crm.yaml"
    path.write_text(BROKEN)
    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    errors = str(info.value).replace(f"{path}:", "crm.yaml:").splitlines()
    assert len(errors) == len(BROKEN_ERRORS)
    for error, expected in zip(errors, BROKEN_ERRORS, strict=True):
        assert error.startswith(expected), (error, expected)
    assert [e.file_line for e in info.value.errors] == [6, 7, 11, 13, 14, 17]


def test_formulas_are_checked_when_other_sections_are_broken() -> None:
    text = GOOD.replace("normalizeEmail()", "normalizeEmal()").replace("list_ids: [5]", "list_ids: []")
    errors = errors_of(text)
    assert [e.split(":")[1] for e in errors] == ["12", "22"]
    assert "unknown function 'normalizeEmal'" in errors[0] and "destination.list_ids" in errors[1]


def test_every_mapping_problem_is_reported_not_only_the_first() -> None:
    text = GOOD.replace("first_name: FIRSTNAME", "nickname: FIRSTNAME\n  surname: FIRSTNAME")
    assert errors_of(text) == [
        "crm.yaml:19: mapping.nickname: 'nickname' is neither a source field nor a transform output",
        "crm.yaml:20: mapping.surname: 'surname' is neither a source field nor a transform output",
        "crm.yaml:20: mapping.surname: attribute FIRSTNAME is mapped from several fields: ['nickname', 'surname']",
    ]


def test_a_credential_key_is_not_also_an_unknown_key() -> None:
    (error,) = errors_of(GOOD.replace("  conn_id: crm_pg", "  conn_id: crm_pg\n  password: x"))
    assert "looks like a credential" in error


def test_formulas_are_not_checked_against_unusable_fields() -> None:
    text = GOOD.replace("fields: [id, email, first_name, last_name, phone, country, updated_at]", "fields: id")
    errors = errors_of(text)
    assert not any("transform." in e for e in errors)  # every field reference would look unknown
    assert any("source.fields: Input should be a valid list" in e for e in errors)
