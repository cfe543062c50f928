"""The contactsync command: validate and preview behave as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile_definitions import CASES, GOOD

from airflow_provider_contactsync.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "example_dags" / "definitions"

DEFINITION = """\
integration: shop
source:
  name: buyers
  type: file
  path: .
  pattern: "*.csv"
  fields: [id, email, phone, first, last, age]
  key: id
transform:
  email: email.normalizeEmail()
  phone: phone.normalizePhoneNumber("FR")
  full_name: (first + ' ' + last).trim()
  age: age.asInt()
mapping:
  email: EMAIL
  phone: SMS
  id: EXT_ID
  full_name: FIRSTNAME
destination:
  list_ids: [2]
"""


@pytest.fixture
def definition(tmp_path: Path) -> Path:
    path = tmp_path / "buyers.yaml"
    path.write_text(DEFINITION)
    return path


def test_validate_example_definitions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "ok:" in out and "contactsync__demo__customers" in out


def test_validate_reports_every_bad_file_and_exits_1(
    tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(DEFINITION.replace("normalizeEmail()", "normalizeEmal()"))
    (tmp_path / "worse.yml").write_text("integration: [\n")
    assert main(["validate", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f"ok: {definition}" in captured.out
    assert "bad.yaml:10: transform.email: formula" in captured.err and "normalizeEmal" in captured.err
    assert "worse.yml" in captured.err
    assert "1 valid, 2 invalid" in captured.err


def test_validate_against_account_attributes(
    tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    attributes = tmp_path / "attributes.json"
    attributes.write_text(json.dumps({"attributes": [{"name": "SMS", "category": "normal", "type": "text"}]}))
    assert main(["validate", str(definition), "--attributes", str(attributes)]) == 1
    err = capsys.readouterr().err
    assert "attribute EXT_ID does not exist in the Brevo account" in err
    assert "attribute FIRSTNAME does not exist" in err


def test_preview_prints_one_json_object_per_row(
    tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "id,email,phone,first,last,age\n"
        "1, Ada@Example.COM ,06 12 34 56 78,Ada,Lovelace,36\n"
        "2,bad-email,12,Alan,Turing,4.5\n"
        "3,,,,,\n"
    )
    assert main(["preview", str(definition), "--rows", str(rows)]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["row"] for r in records] == [1, 2, 3]
    assert records[0] == {
        "row": 1,
        "status": "ok",
        "contact": {
            "EMAIL": "ada@example.com",
            "SMS": "+33612345678",
            "EXT_ID": "1",
            "FIRSTNAME": "Ada Lovelace",
        },
        "errors": [],
    }
    assert records[1]["status"] == "rejected"
    reasons = {e["field"]: e for e in records[1]["errors"]}
    assert set(reasons) == {"phone", "email"}  # age is not mapped: its formula failing rejects nothing
    assert records[2] == {"row": 3, "status": "ok", "contact": {"EXT_ID": "3", "FIRSTNAME": ""}, "errors": []}
    assert "3 rows: 2 ok, 1 rejected, 0 skipped" in captured.err


def test_preview_shows_the_identity_conflicts_the_load_would_find(
    tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "id,email,phone,first,last,age\n"
        "1,shared@example.com,,Ada,Lovelace,36\n"
        "2,alan@example.com,,Alan,Turing,41\n"
        "2,alan@example.com,,Alan M.,Turing,41\n"  # row 2 again, newer: the first one is superseded
        "3,shared@example.com,,Grace,Hopper,85\n"  # the same email as row 1 on another EXT_ID, newer
    )
    assert main(["preview", str(definition), "--rows", str(rows)]) == 0
    captured = capsys.readouterr()
    records = {r["row"]: r for r in map(json.loads, captured.out.splitlines())}
    assert [records[i]["status"] for i in (1, 2, 3, 4)] == ["rejected", "skipped", "ok", "ok"]
    (conflict,) = records[1]["errors"]
    assert (conflict["field"], conflict["value"]) == ("EMAIL", "shared@example.com")
    assert "also on row 3" in conflict["reason"]
    assert "superseded by row 2" in records[2]["errors"][0]["reason"]
    assert "4 rows: 2 ok, 1 rejected, 1 skipped" in captured.err


def test_preview_limit_and_jsonl(tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(json.dumps({"id": i, "email": f"u{i}@x.io", "first": "U", "last": str(i)}) for i in range(10)) + "\n"
    )
    assert main(["preview", str(definition), "--rows", str(rows), "--limit", "3"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["contact"]["EMAIL"] for r in records] == ["u0@x.io", "u1@x.io", "u2@x.io"]


def test_preview_of_invalid_definition_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(DEFINITION.replace("list_ids: [2]", "list_ids: []"))
    (tmp_path / "rows.csv").write_text("id\n1\n")
    assert main(["preview", str(path), "--rows", str(tmp_path / "rows.csv")]) == 1
    assert "destination.list_ids" in capsys.readouterr().err


def test_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "SourceDefinition"


BROKEN = """\
integration: shop
source:
  name: buyers
  type: file
  path: .
  token: abc
  patern: "*.csv"
  fields: [id, email, phone, first, last, age]
  key: id
transform:
  email: email.normalizeEmal()
  full_name: (first + ' ' + last).trim()
  vip: first.isNull()
mapping:
  nickname: FIRSTNAME
  full_name: LASTNAME
  vip: BIRTHDAY
destination:
  list_ids: [two]
"""


def test_validate_reports_every_problem_of_a_file_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[2] for line in lines[:-1]] == ["6", "7", "11", "14", "15", "19"]
    assert all(line.startswith(f"error: {path}:") for line in lines[:-1])
    err = "\n".join(lines)
    assert "source.token: 'token' looks like a credential" in err
    assert "source.patern: unknown key 'patern' (did you mean 'pattern'?)" in err
    assert "transform.email: formula line 1, column 7: unknown function 'normalizeEmal'" in err
    assert "mapping: must include at least one identifier attribute" in err
    assert "mapping.nickname: 'nickname' is neither a source field nor a transform output" in err
    assert "destination.list_ids[0]: Input should be a valid integer" in err
    assert lines[-1] == "0 valid, 1 invalid"


def test_validate_reports_account_problems_with_the_file_s_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    attributes = tmp_path / "attributes.json"
    attributes.write_text(
        json.dumps(
            [{"name": n, "category": "normal", "type": t} for n, t in (("LASTNAME", "text"), ("BIRTHDAY", "date"))]
        )
    )
    assert main(["validate", str(path), "--attributes", str(attributes)]) == 1
    err = capsys.readouterr().err
    assert "broken.yaml:11: transform.email: formula" in err  # the file's own problems ...
    assert f"{path}:15: mapping.nickname: attribute FIRSTNAME does not exist in the Brevo account" in err
    assert f"{path}:17: mapping.vip: field vip is a bool, which cannot fit attribute BIRTHDAY (date)" in err
    assert "LASTNAME" not in err.replace("did you mean LASTNAME", "")


def test_validate_names_the_line_of_an_account_problem(
    tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    attributes = tmp_path / "attributes.json"
    attributes.write_text(json.dumps({"attributes": [{"name": "SMS", "category": "normal", "type": "text"}]}))
    assert main(["validate", str(definition), "--attributes", str(attributes)]) == 1
    err = capsys.readouterr().err
    assert f"error: {definition}:17: mapping.id: attribute EXT_ID does not exist in the Brevo account" in err
    assert f"error: {definition}:18: mapping.full_name: attribute FIRSTNAME does not exist" in err


def test_validate_refuses_hostile_files_with_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: YAML bombs, deep nesting, mistyped values and a query leaving its wrapper are each one
    error line naming the file, the line, the key and the limit; no traceback, and the good file is ok."""
    chosen = {
        "laughs_seq": "values after alias expansion, the limit for a definition (CONTACTSYNC_MAX_YAML_VALUES)",
        "deep_flow_10000": ":19: nested deeper than 64 levels, the limit for a definition",
        "recursive_alias_map": ":19: extra.self: recursive alias",
        "encoding_klingon": ":8: source.csv.encoding: unknown encoding 'klingon'",
        "encoding_rot13": ":8: source.csv.encoding: 'rot13' is not a text encoding",
        "lag_true": ":10: source.safety_lag_seconds: Input should be a valid integer, not the boolean true",
        "update_existing_yes": ":19: destination.update_existing: Input should be a valid boolean, not the string",
        "list_ids_true": ":18: destination.list_ids[0]: Input should be a valid integer, not the boolean true",
        "query_escapes_wrapper_postgres": ":6: source.query: line 1: ')' closes a parenthesis the query did not open",
    }
    for case in CASES:
        if case.name in chosen:
            (tmp_path / f"{case.name}.yaml").write_text(case.text, encoding="utf-8")
    good = tmp_path / "zz_good.yaml"
    good.write_text(GOOD)
    assert main(["validate", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f"ok: {good} (contactsync__crm__customers)" in captured.out
    errors = captured.err.splitlines()
    for name, expected in chosen.items():
        assert any(line.startswith(f"error: {tmp_path / name}.yaml") and expected in line for line in errors), name
    assert "Traceback" not in captured.err and "RecursionError" not in captured.err
    assert errors[-1] == f"1 valid, {len(chosen)} invalid"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_validate_reads_an_endless_file_only_up_to_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/dev/zero"]) == 1
    assert "error: /dev/zero: the file is larger than the limit of 64 kB for a definition" in capsys.readouterr().err


# -- preview over hostile rows files: rejects name the file and the line, good rows still show (issue 11)


def _preview(definition: Path, rows: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list, str]:
    code = main(["preview", str(definition), "--rows", str(rows), *extra])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_preview_rejects_undecodable_lines_and_shows_the_others(
    tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_bytes(
        b"id,email,phone,first,last,age\n1,a@example.com,,Ada,L,1\n"
        + "2,b@example.com,,Ren\xe9e,L,2\n".encode("latin-1")
        + b"3,c@example.com,,\xff\xfe,L,3\n4,d@example.com,,Dan,L,4\n"
    )
    code, records, err = _preview(definition, rows, capsys)
    assert code == 0 and [r["status"] for r in records] == ["ok", "rejected", "rejected", "ok"]
    assert records[1]["errors"][0]["reason"].startswith(f"{rows} line 3: bytes that are not valid utf-8: Ren\\xe9e")
    assert records[2]["errors"][0]["reason"].startswith(f"{rows} line 4: bytes that are not valid utf-8: \\xff\\xfe")
    assert "4 rows: 2 ok, 2 rejected" in err


def test_preview_of_a_file_in_another_encoding_is_one_clear_error(
    tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_bytes("id,email,phone,first,last,age\n1,a@example.com,,Ada,L,1\n".encode("utf-16"))
    code, records, err = _preview(definition, rows, capsys)
    assert code == 1 and records == []
    assert err.startswith(f"error: {rows}: the header has bytes that are not valid utf-8: \\xff\\xfei\\x00d\\x00")
    rows.write_bytes(bytes(range(256)) * 100)
    code, _, err = _preview(definition, rows, capsys)
    assert code == 1 and err.startswith(f"error: {rows}: the header")
    code, _, err = _preview(definition, tmp_path / "missing.csv", capsys)
    assert code == 1 and "missing.csv: cannot open the file" in err


def test_preview_of_broken_quoting_and_a_10_mb_field_loses_no_good_row(
    tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.csv"
    good = "".join(f"{i},u{i}@example.com,,U,{i},1\n" for i in range(3, 8))
    rows.write_text(
        "id,email,phone,first,last,age\n"
        + '1,u1@example.com,,"'
        + ("x" * 99 + "\n") * 100_000
        + '",L,1\n'
        + '2,u2@example.com,,"Ann,L,2\n'
        + good
    )
    code, records, err = _preview(definition, rows, capsys)
    assert code == 0
    assert [r["status"] for r in records] == ["rejected", "rejected"] + ["ok"] * 5
    assert "a row of more than 1,048,576 characters (lines 2-100002)" in records[0]["errors"][0]["reason"]
    assert "line 100003: unreadable CSV: unexpected end of data" in records[1]["errors"][0]["reason"]
    assert "7 rows: 5 ok, 2 rejected" in err


def test_preview_of_hostile_json_lines(tmp_path: Path, definition: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(
        b'{"id": 1, "email": "a@example.com"}\n'
        + b'{"id": 2, "first": '
        + b"[" * 10_000
        + b"]" * 10_000
        + b"}\n"
        + b'{"id": '
        + b"9" * 5000
        + b"}\n"
        + b'{"id": 4, "email": "d@example.com", "first": "\\ud800"}\n'
        + b'{"id": 5, "email": "\xe9@example.com"}\n'
        + b'{"id": 1180591620717411303424, "email": "f@example.com"}\n'
        + b'{"id": 7, "email": "a@b.c"}\n{"id": 8, "email": "a@1.2"}\n'
    )
    code, records, err = _preview(definition, rows, capsys)
    assert code == 0
    assert [r["status"] for r in records] == ["ok", "rejected", "rejected", "rejected", "rejected", "ok"] + [
        "rejected"
    ] * 2
    reasons = [r["errors"][0]["reason"] for r in records if r["status"] == "rejected"]
    assert reasons[0].endswith("line 2: JSON nested deeper than 64 levels (CONTACTSYNC_MAX_JSON_DEPTH raises it)")
    assert reasons[1].endswith("line 3: not valid JSON: a number of more than 4,300 digits")
    assert reasons[2].endswith("line 4: a lone surrogate escape in first (half of a UTF-16 pair, not a character)")
    assert "line 5: bytes that are not valid utf-8" in reasons[3]
    assert reasons[4:] == ["not a valid email address", "not a valid email address"]  # Brevo refuses them
    assert records[5]["contact"]["EXT_ID"] == "1180591620717411303424"


def test_preview_output_escapes_text_no_encoding_can_write() -> None:
    from airflow_provider_contactsync.cli import _json_line

    line = _json_line({"value": "\ud800", "name": "Renée"})
    line.encode("utf-8")
    assert json.loads(line) == {"value": "\ud800", "name": "Renée"}
    assert _json_line({"name": "Renée"}) == '{"name": "Renée"}\n'
