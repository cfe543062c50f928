"""Exports end to end through Airflow: real DAG runs from the Brevo sandbox to a real sshd, FTP server,
moto's S3 server, the BigQuery emulator and a local folder; PGP files decrypted with the private key here."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pgp_keys import dispose_keypair, generate_keypair
from servers.airflow_db import run_dag, task_states, xcom_value

from airflow_provider_contactsync.core.spec.loader import parse_definition
from airflow_provider_contactsync.exports import history
from airflow_provider_contactsync.sandbox import BrevoSandbox

EXAMPLE = Path(__file__).resolve().parents[1] / "example_dags" / "definitions" / "newsletter_unsubscribes_export.yaml"
DAY = dt.datetime(2026, 11, 27, 5, 0, tzinfo=dt.timezone.utc)


class Account:
    """A sandbox account with a newsletter list, some contacts, and the Airflow connections of the tests."""

    def __init__(self, sandbox: BrevoSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from airflow_provider_contactsync.hooks.brevo import BrevoHook

        self.sandbox = sandbox
        self.tmp_path = tmp_path
        self.monkeypatch = monkeypatch
        self.staging = f"file://{tmp_path}/staging"
        self.integration = f"x{uuid.uuid4().hex[:8]}"  # a fresh cursor per test
        sandbox.create_attribute("COUNTRY", "text")
        sandbox.create_attribute("AGE", "float")
        self.list_id = sandbox.create_list("newsletter")
        self.other_list = sandbox.create_list("other")
        conn = {
            "conn_type": "brevo",
            "host": sandbox.url,
            "password": sandbox.api_key,
            "extra": json.dumps({"poll_interval": 0.01}),
        }
        monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEFAULT", json.dumps(conn))
        self.hook = BrevoHook("brevo_default")
        self.runs = 0

    def add(self, email: str, *, lists: tuple[int, ...] | None = None, **attributes: Any) -> None:
        self.hook.create_contact(
            email=email, attributes=attributes or None, list_ids=list(lists if lists is not None else [self.list_id])
        )

    def definition(self, text: str) -> Any:
        return parse_definition(text.replace("integration: newsletter", f"integration: {self.integration}"))

    def run(self, definition: Any, **conf: Any) -> Any:
        from airflow_provider_contactsync.dag_factory import build_dag

        dag = build_dag(definition, staging=self.staging, default_args={"retries": 0})
        self.runs += 1
        return run_dag(dag, conf=conf or None, logical_date=DAY + dt.timedelta(days=self.runs))

    def record(self, definition: Any, run: Any) -> history.ExportRecord:
        record = history.read_record(self.staging, definition.dag_id, run.run_id)
        assert record is not None
        return record

    def export_requests(self) -> int:
        return len(self.sandbox.requests("POST", "/v3/contacts/export"))


@pytest.fixture
def account(brevo_sandbox: BrevoSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: str) -> Account:
    return Account(brevo_sandbox, tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def partner_key() -> Any:
    pair = generate_keypair("partner")
    yield pair
    dispose_keypair(pair)


def _decrypt(pair: Any, data: bytes, folder: Path) -> bytes:
    encrypted, plain = folder / f"{uuid.uuid4().hex}.gpg", folder / f"{uuid.uuid4().hex}.out"
    encrypted.write_bytes(data)
    return pair.decrypt(encrypted, plain).read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_example_unsubscribes_to_sftp_gzip_pgp_two_step_confirmation_incremental_and_retry(
    account: Account, sftp_server: Any, partner_key: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SFTP", sftp_server.airflow_connection())
    monkeypatch.setenv(
        "AIRFLOW_CONN_PARTNER_PGP", json.dumps({"conn_type": "generic", "extra": {"public_key": partner_key.public}})
    )
    folder = sftp_server.remote_path(f"outbox-{uuid.uuid4().hex[:6]}")
    text = EXAMPLE.read_text().replace("list_id: 2 ", f"list_id: {account.list_id} ")
    text = text.replace("folder: outbox/unsubscribes", f"folder: {folder}")
    definition = account.definition(text)
    for n, ext in enumerate(["A1", "A2", "A3", "A4"]):
        account.add(f"User{n}@Example.com", EXT_ID=ext)
    account.add("elsewhere@example.com", lists=(account.other_list,))
    account.sandbox.unsubscribe("user1@example.com")
    account.sandbox.unsubscribe("user3@example.com")
    account.sandbox.unsubscribe("elsewhere@example.com")  # unsubscribed, but not a newsletter member

    first = account.run(definition)
    assert task_states(first) == {"build_file": "success", "deliver": "success"}
    local_folder = folder.removeprefix(sftp_server.remote_root).strip("/")
    name = f"unsubscribes_{(DAY + dt.timedelta(days=1)).astimezone(dt.timezone(dt.timedelta(hours=1))):%Y-%m-%d}"
    name += ".csv.gz.gpg"
    remote = sftp_server.path(f"{local_folder}/{name}")
    assert sorted(p.name for p in remote.parent.iterdir()) == [name, f"{name}.done"]  # no temporary file left
    data = remote.read_bytes()
    plain = gzip.decompress(_decrypt(partner_key, data, tmp_path))
    lines = plain.decode().split("\r\n")
    assert lines[0] == "customer_id;email_sha256;unsubscribed_at"
    rows = [line.split(";") for line in lines[1:] if line]
    assert sorted(r[0] for r in rows) == ["A2", "A4"]
    assert {r[1] for r in rows} == {_sha(b"user1@example.com"), _sha(b"user3@example.com")}
    confirmation = json.loads(sftp_server.path(f"{local_folder}/{name}.done").read_text())
    assert confirmation["file"] == name and confirmation["rows"] == 2
    assert confirmation["size"] == len(data) and confirmation["sha256"] == _sha(data)
    assert confirmation["filter"]["status"] == "unsubscribed"
    record = account.record(definition, first)
    assert record.status == "delivered" and record.sha256 == _sha(data) and record.rows == 2
    assert [s.name for s in record.steps][-3:] == [
        "stage the file",
        "deliver to sftp (two-step)",
        "write the confirmation file",
    ]

    second = account.run(definition)  # nothing new: an empty file (header only) still arrives
    assert xcom_value(second, "deliver")["rows"] == 0
    account.sandbox.unsubscribe("user0@example.com")
    third = account.run(definition)
    assert xcom_value(third, "deliver")["rows"] == 1
    third_name = xcom_value(third, "deliver")["file_name"]
    plain = gzip.decompress(
        _decrypt(partner_key, sftp_server.path(f"{local_folder}/{third_name}").read_bytes(), tmp_path)
    ).decode()
    assert plain.split("\r\n")[1].startswith("A1;")

    remote.unlink()  # the partner lost the first file: retry re-sends it exactly, without a new export
    exports_before = account.export_requests()
    contacts_reads = len(account.sandbox.requests("GET", "/v3/contacts"))
    retry = account.run(definition, retry_of=first.run_id)
    assert task_states(retry) == {"build_file": "success", "deliver": "success"}
    assert _sha(remote.read_bytes()) == record.sha256
    assert account.export_requests() == exports_before
    assert len(account.sandbox.requests("GET", "/v3/contacts")) == contacts_reads
    assert account.record(definition, retry).retry_of == first.run_id
    fourth = account.run(definition)  # the retry did not move the cursor back or forward
    assert xcom_value(fourth, "deliver")["rows"] == 0
    full = account.run(definition, full_export=True)  # the param ignores the cursor once
    assert xcom_value(full, "deliver")["rows"] == 3
    assert xcom_value(account.run(definition), "deliver")["rows"] == 0


def test_brevo_export_to_a_local_folder_as_zip_json_lines_with_a_where_condition(account: Account) -> None:
    out = account.tmp_path / "out"
    for n in range(6):
        account.add(f"c{n}@example.com", COUNTRY="FR" if n % 2 else "DE", AGE=20 + n, FIRSTNAME=f"N{n}")
    text = f"""
kind: export
integration: newsletter
name: adults_fr
content:
  contacts: list
  list_id: {account.list_id}
  read: export
  where: 'COUNTRY == "FR" && AGE >= 22'
  fields: [CONTACT_ID, {{attribute: FIRSTNAME, column: first_name}}, AGE, EMAIL_BLACKLISTED]
format: {{type: jsonl}}
file: {{name: "adults_{{date:%Y%m%d}}", compression: zip}}
destination: {{type: storage, path: "{out}"}}
confirmation: {{format: keyvalue}}
"""
    definition = account.definition(text)
    run = account.run(definition)
    assert task_states(run) == {"build_file": "success", "deliver": "success"}
    assert account.export_requests() == 1  # read through Brevo's export process
    name = xcom_value(run, "deliver")["file_name"]
    assert name.endswith(".jsonl.zip")
    with zipfile.ZipFile(out / name) as archive:
        (member,) = archive.namelist()
        lines = archive.read(member).decode().splitlines()
    objects = [json.loads(line) for line in lines]
    assert [list(o) for o in objects] == [["CONTACT_ID", "first_name", "AGE", "EMAIL_BLACKLISTED"]] * 2
    assert [(o["first_name"], o["AGE"], o["EMAIL_BLACKLISTED"]) for o in objects] == [
        ("N3", 23, False),
        ("N5", 25, False),
    ]
    confirmation = dict(line.split("=", 1) for line in (out / f"{name}.done").read_text().splitlines())
    assert confirmation["rows"] == "2" and confirmation["sha256"] == _sha((out / name).read_bytes())


def test_all_subscribed_contacts_to_s3_csv_without_header(
    account: Account, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EXPORT_S3", s3_server.connection())
    bucket = s3_server.create_bucket()
    for n in range(3):
        account.add(f"s{n}@example.com", FIRSTNAME=f"S{n}")
    account.sandbox.unsubscribe("s1@example.com")
    text = f"""
kind: export
integration: newsletter
name: subscribed
content:
  status: subscribed
  fields: [EMAIL, FIRSTNAME]
format: {{header: false, quoting: all, delimiter: "|"}}
file: {{name: "subscribed"}}
destination: {{type: storage, conn_id: export_s3, path: "s3://{bucket}/exports/"}}
"""
    run = account.run(account.definition(text))
    assert task_states(run) == {"build_file": "success", "deliver": "success"}
    body = s3_server.client().get_object(Bucket=bucket, Key="exports/subscribed.csv")["Body"].read().decode()
    assert body == '"s0@example.com"|"S0"\n"s2@example.com"|"S2"\n'
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["exports/subscribed.csv"]  # no temporary object left behind


def test_bigquery_replace_then_append(
    account: Account, bigquery_emulator: Any, s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EXPORT_BQ", bigquery_emulator.airflow_connection())
    monkeypatch.setenv("AIRFLOW_CONN_CONFIRMATIONS_S3", s3_server.connection())
    bucket = s3_server.create_bucket()
    dataset = f"exports_{uuid.uuid4().hex[:8]}"
    client = bigquery_emulator.client()
    client.create_dataset(dataset)
    for n in range(3):
        account.add(f"b{n}@example.com", FIRSTNAME=f"B{n}")

    def definition(write: str) -> Any:
        return account.definition(f"""
kind: export
integration: newsletter
name: to_bq_{write}
content: {{fields: [{{attribute: EMAIL, column: email}}, {{attribute: FIRSTNAME, column: first_name}}]}}
file: {{compression: gzip}}
destination: {{type: bigquery, conn_id: export_bq, dataset: {dataset}, table: contacts, write: {write}}}
confirmation: {{path: "s3://{bucket}/confirmations/{{file}}.json", conn_id: confirmations_s3}}
""")

    def table() -> list[tuple[str, str]]:
        return sorted(
            tuple(r.values()) for r in client.query(f"SELECT email, first_name FROM {dataset}.contacts").result()
        )

    for _ in range(2):
        run = account.run(definition("replace"))
        assert task_states(run) == {"build_file": "success", "deliver": "success"}
        assert table() == [(f"b{n}@example.com", f"B{n}") for n in range(3)]
    account.run(definition("append"))
    assert len(table()) == 6
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="confirmations/")["Contents"]
    body = s3_server.client().get_object(Bucket=bucket, Key=listed[0]["Key"])["Body"].read()
    assert json.loads(body)["rows"] == 3


def test_failure_alert_reaches_every_recipient(account: Account, smtp_server: Any, smtp_conn_id: str) -> None:
    account.add("f@example.com")
    text = f"""
kind: export
integration: newsletter
name: failing
content: {{fields: [EMAIL, NOT_AN_ATTRIBUTE]}}
destination: {{type: storage, path: "{account.tmp_path}/never"}}
alerts: {{emails: [ops@example.com, dpo@example.com], smtp_conn_id: {smtp_conn_id}, on_success: true}}
"""
    definition = account.definition(text)
    run = account.run(definition)
    assert task_states(run)["build_file"] == "failed"
    (message,) = smtp_server.wait_for(1)
    assert set(message["To"].replace(" ", "").split(",")) == {"ops@example.com", "dpo@example.com"}
    assert "build_file failed" in message["Subject"]
    assert "NOT_AN_ATTRIBUTE" in message.get_body(("html",)).get_content()
    record = account.record(definition, run)
    assert record.status == "failed" and "NOT_AN_ATTRIBUTE" in (record.error or "")
    assert not (account.tmp_path / "never").exists()


def test_success_alert_names_the_file(account: Account, smtp_server: Any, smtp_conn_id: str) -> None:
    account.add("ok@example.com")
    text = f"""
kind: export
integration: newsletter
name: fine
content: {{fields: [EMAIL]}}
destination: {{type: storage, path: "{account.tmp_path}/fine"}}
alerts: {{emails: [ops@example.com, crm@example.com], smtp_conn_id: {smtp_conn_id}, on_success: true}}
"""
    run = account.run(account.definition(text))
    assert task_states(run) == {"build_file": "success", "deliver": "success"}
    (message,) = smtp_server.wait_for(1)
    assert "export delivered" in message["Subject"]
    assert xcom_value(run, "deliver")["file_name"] in message.get_body(("html",)).get_content()


def test_csv_reader_handles_brevo_exports_with_quoted_values(tmp_path: Path) -> None:
    from airflow_provider_contactsync.core.spec.export_models import ExportContent
    from airflow_provider_contactsync.exports.content import ContactReader

    content = ExportContent(contacts="list", list_id=1, fields=[{"attribute": "EMAIL"}, {"attribute": "AGE"}])
    reader = ContactReader(None, content, {"AGE": "float"})
    text = (
        "CONTACT_ID;EMAIL;AGE;ADDED_TIME;MODIFIED_TIME;EMAIL_BLACKLISTED;SMS_BLACKLISTED\n"
        '7;"a;b@example.com";31;2026-01-01T00:00:00.000+00:00;2026-01-02T00:00:00.000+01:00;true;false\n'
    )
    path = tmp_path / "export.csv"
    path.write_text(text)
    (contact,) = list(reader._read_csv(str(path)))
    assert contact["EMAIL"] == "a;b@example.com" and contact["AGE"] == 31 and contact["EMAIL_BLACKLISTED"] is True
    assert contact["MODIFIED_TIME"] == "2026-01-01T23:00:00.000+00:00"


def test_segment_and_unsubscribed_from_list_to_ftp(
    account: Account, ftp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_EXPORT_FTP", ftp_server.airflow_connection())
    for n in range(4):
        account.add(f"p{n}@example.com", COUNTRY="FR" if n < 3 else "DE")
    account.sandbox.unsubscribe_from_list(account.list_id, emails=["p0@example.com", "p3@example.com"])
    segment = account.sandbox.create_segment("French", {"attribute": "COUNTRY", "equals": "FR"})
    folder = f"drop-{uuid.uuid4().hex[:6]}"

    def export(name: str, content: str) -> list[str]:
        definition = account.definition(f"""
kind: export
integration: newsletter
name: {name}
content:
{content}
  fields: [EMAIL]
file: {{name: "{name}"}}
destination: {{type: ftp, conn_id: export_ftp, folder: {folder}}}
""")
        run = account.run(definition)
        assert task_states(run) == {"build_file": "success", "deliver": "success"}
        return ftp_server.read(f"{folder}/{name}.csv").decode().splitlines()[1:]

    left = export(
        "left_newsletter", f"  contacts: list\n  list_id: {account.list_id}\n  status: unsubscribed_from_list"
    )
    assert sorted(left) == ["p0@example.com", "p3@example.com"]
    french = export("french", f"  contacts: segment\n  segment_id: {segment}\n  read: export")
    assert sorted(french) == ["p0@example.com", "p1@example.com", "p2@example.com"]
    french_pages = export("french_pages", f"  contacts: segment\n  segment_id: {segment}\n  read: pages")
    assert sorted(french_pages) == sorted(french)
