"""File pickup end to end: real DAG runs reading a local folder, SFTP (sshd) and FTP/FTPS (pyftpdlib).

Each test drops files in a folder the way an uploader would, runs the source's DAG and checks
what reached the Brevo sandbox, what the run reported per file, and what happened to the files.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from servers.airflow_db import run_dag, task_states, xcom_value
from servers.ftp import RemoteFolder

from airflow_provider_contactsync.core.spec import SourceDefinition
from airflow_provider_contactsync.sandbox import BrevoSandbox

HEADER = "id,email,name\n"


def rows(*ids: int, domain: str = "example.com") -> str:
    return "".join(f"{i},user{i}@{domain},Name {i}\n" for i in ids)


class LocalFolder(RemoteFolder):
    """A plain folder with the same conveniences as the servers' folders."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.remote_root = str(root)
        self.owner = None


class Drop:
    """A folder of one kind, the source definition reading it, and the sandbox it syncs into."""

    def __init__(self, kind: str, folder: RemoteFolder, conn: str | None, sandbox: BrevoSandbox, tmp: Path) -> None:
        self.kind = kind
        self.folder = folder
        self.conn = conn
        self.sandbox = sandbox
        self.tmp = tmp
        self.integration = f"pickup{uuid.uuid4().hex[:8]}"  # fresh state (ledger, digests) per test

    def definition(self, **source: Any) -> SourceDefinition:
        spec: dict[str, Any] = {
            "name": "drop",
            "type": "file" if self.kind == "local" else "sftp" if self.kind == "sftp" else "ftp",
            "path": self.folder.remote_path(),
            "pattern": "*.csv",
            "fields": ["id", "email", "name"],
            "key": "id",
        }
        if self.conn:
            spec["conn_id"] = self.conn
        spec.update(source)
        return SourceDefinition.model_validate(
            {
                "integration": self.integration,
                "source": spec,
                "mapping": {"email": "EMAIL", "id": "EXT_ID", "name": "FIRSTNAME"},
                "destination": {"conn_id": "brevo_pickup", "list_ids": [2]},
                "alerts": {"max_error_rate": 1.0},
            }
        )

    def run(self, definition: SourceDefinition | None = None, **default_args: Any) -> Any:
        from airflow_provider_contactsync.dag_factory import build_dag

        dag = build_dag(
            definition or self.definition(),
            staging=f"file://{self.tmp}/staging",
            default_args={"retries": 0, **default_args},
        )
        return run_dag(dag)

    def emails(self) -> list[str]:
        return sorted(c["email"] for c in self.sandbox.contacts() if c.get("email"))

    def imports(self) -> int:
        return sum(1 for r in self.sandbox.requests() if r["method"] == "POST" and r["path"].endswith("/import"))


@pytest.fixture(params=["local", "sftp", "ftp", "ftps"])
def drop(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    brevo_sandbox: BrevoSandbox,
    monkeypatch: pytest.MonkeyPatch,
    airflow_db: str,
) -> Drop:
    monkeypatch.setenv(
        "AIRFLOW_CONN_BREVO_PICKUP",
        json.dumps(
            {
                "conn_type": "brevo",
                "host": brevo_sandbox.url,
                "password": brevo_sandbox.api_key,
                "extra": json.dumps({"poll_interval": 0.01}),
            }
        ),
    )
    kind = request.param
    if kind == "local":
        return Drop(kind, LocalFolder(tmp_path / "inbox"), None, brevo_sandbox, tmp_path)
    server = request.getfixturevalue(f"{kind}_server")
    server.clear()
    if kind == "ftps":
        monkeypatch.setenv(*server.trust_env())
        monkeypatch.setenv("AIRFLOW_CONN_PICKUP_SERVER", server.airflow_connection(tls=True))
    else:
        monkeypatch.setenv("AIRFLOW_CONN_PICKUP_SERVER", server.airflow_connection())
    return Drop(kind, server, "pickup_server", brevo_sandbox, tmp_path)


def test_first_import_then_skip_then_new_then_replaced_file(drop: Drop) -> None:
    drop.folder.put("a.csv", (HEADER + rows(1, 2)).encode(), mtime=1_000_000)

    first = drop.run()
    assert task_states(first) == dict.fromkeys(("extract", "transform", "map", "load"), "success")
    summary = xcom_value(first, "load")
    assert summary["files"] == [{"file": "a.csv", "rows": 2, "rejected": 0}]
    assert drop.emails() == ["user1@example.com", "user2@example.com"]

    nothing = drop.run()
    assert set(task_states(nothing).values()) == {"skipped"} and nothing.state == "success"
    imports = drop.imports()

    drop.folder.put("b.csv", (HEADER + rows(3)).encode(), mtime=1_000_100)
    assert [f["file"] for f in xcom_value(drop.run(), "load")["files"]] == ["b.csv"]
    assert drop.imports() == imports + 1

    drop.folder.put("a.csv", (HEADER + rows(1, 2, 4)).encode(), mtime=1_000_200)  # a new version
    replaced = xcom_value(drop.run(), "load")
    assert replaced["files"] == [{"file": "a.csv", "rows": 3, "rejected": 0}]
    assert (replaced["created"], replaced["unchanged"]) == (1, 2)  # only the new contact is sent
    assert len(drop.emails()) == 4


def test_several_files_oldest_first_with_per_file_rejects(drop: Drop) -> None:
    drop.folder.put("new.csv", (HEADER + "1,user1@example.com,New\n2,not-an-email,Bad\n").encode(), mtime=2_000_000)
    drop.folder.put("old.csv", (HEADER + "1,user1@example.com,Old\n" + rows(3)).encode(), mtime=1_000_000)

    dag_run = drop.run()

    assert xcom_value(dag_run, "extract")["files"][0]["name"] == "old.csv"
    summary = xcom_value(dag_run, "load")
    assert summary["files"] == [
        {"file": "old.csv", "rows": 2, "rejected": 0},
        {"file": "new.csv", "rows": 2, "rejected": 1},
    ]
    names = {c["email"]: c["attributes"]["FIRSTNAME"] for c in drop.sandbox.contacts()}
    assert names == {"user1@example.com": "New", "user3@example.com": "Name 3"}  # the newer file wins
    report = list(csv.DictReader(io.StringIO(Path(summary["error report"].removeprefix("file://")).read_text())))
    assert [(r["file"], r["row"], r["outcome"], r["field"]) for r in report] == [
        ("new.csv", "2", "rejected", "email"),
        ("old.csv", "1", "skipped", ""),  # the older file's row for user1: superseded by new.csv's
    ]
    assert "superseded by row" in report[1]["reason"]


def test_half_uploaded_file_waits_until_its_size_is_stable(drop: Drop) -> None:
    definition = drop.definition(ready={"stable_seconds": 0})
    drop.folder.put_partial("big.csv", (HEADER + rows(1)).encode())

    first = drop.run(definition)  # first sight: cannot tell yet whether the upload goes on
    assert task_states(first)["extract"] == "skipped"
    drop.folder.append("big.csv", rows(2).encode())
    drop.folder.touch("big.csv", 1_000_050)
    assert task_states(drop.run(definition))["extract"] == "skipped"  # it changed: still uploading

    summary = xcom_value(drop.run(definition), "load")  # unchanged since the last look: complete
    assert summary["files"] == [{"file": "big.csv", "rows": 2, "rejected": 0}]
    assert drop.sandbox.contacts() and len(drop.emails()) == 2


def test_file_waits_for_its_done_marker(drop: Drop) -> None:
    definition = drop.definition(ready={"done_marker": "{name}.done"}, pattern="*")
    drop.folder.put("a.csv", (HEADER + rows(1)).encode())

    assert task_states(drop.run(definition))["extract"] == "skipped"
    drop.folder.put("a.csv.done", b"")
    summary = xcom_value(drop.run(definition), "load")
    assert [f["file"] for f in summary["files"]] == ["a.csv"]  # the marker itself is not imported


def test_archive_after_success(drop: Drop) -> None:
    definition = drop.definition(after_import="archive", archive_path="done", recursive=True)
    drop.folder.put("a.csv", (HEADER + rows(1)).encode())

    summary = xcom_value(drop.run(definition), "load")

    assert summary["after import"][0].startswith("a.csv archived to ")
    assert not drop.folder.path("a.csv").exists()
    assert drop.folder.path("done/a.csv").read_bytes() == (HEADER + rows(1)).encode()
    assert task_states(drop.run(definition))["extract"] == "skipped"  # the archive is never searched
    drop.folder.put("a.csv", (HEADER + rows(1, 2)).encode())  # same name again: a new file
    assert xcom_value(drop.run(definition), "load")["files"][0]["rows"] == 2
    archived = sorted(p.name for p in drop.folder.path("done").iterdir())
    assert len(archived) == 2 and "a.csv" in archived  # the second one did not overwrite the first


def test_delete_after_success(drop: Drop) -> None:
    drop.folder.put("a.csv", (HEADER + rows(1)).encode())

    xcom_value(drop.run(drop.definition(after_import="delete")), "load")

    assert not drop.folder.path("a.csv").exists()
    assert drop.emails() == ["user1@example.com"]


def test_crash_mid_file_then_retry_loses_and_duplicates_nothing(drop: Drop, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_contactsync.sources.files import FilesSource

    drop.folder.put("a.csv", (HEADER + rows(*range(1, 8))).encode())
    real = FilesSource._rows
    crashes = []

    def crash_after_three_rows(self: FilesSource, *args: Any, **kwargs: Any) -> Any:
        for number, row in enumerate(real(self, *args, **kwargs)):
            if number == 3 and not crashes:
                crashes.append(number)
                raise ConnectionResetError("connection lost mid-file")
            yield row

    monkeypatch.setattr(FilesSource, "_rows", crash_after_three_rows)
    crashed = drop.run()
    assert task_states(crashed)["extract"] == "failed" and crashes
    assert drop.sandbox.contacts() == []

    summary = xcom_value(drop.run(), "load")  # the file was not marked imported: read again whole
    assert summary["files"] == [{"file": "a.csv", "rows": 7, "rejected": 0}]
    emails = drop.emails()
    assert len(emails) == len(set(emails)) == 7


def test_load_failure_then_retry_sends_no_duplicates(drop: Drop) -> None:
    drop.folder.put("a.csv", (HEADER + rows(1, 2, 3)).encode())
    drop.sandbox.add_fault(method="POST", path="/v3/contacts/import", action="drop_after", times=1)

    summary = xcom_value(drop.run(retries=1, retry_delay=0), "load")

    assert summary["created"] + summary.get("recovered", 0) >= 3
    emails = drop.emails()
    assert len(emails) == len(set(emails)) == 3


def test_compressed_files(drop: Drop) -> None:
    definition = drop.definition(pattern="*.*")
    drop.folder.put("a.csv.gz", gzip.compress((HEADER + rows(1)).encode()), mtime=1_000_000)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("part1.csv", HEADER + rows(2))
        zipped.writestr("part2.csv", HEADER + rows(3))
    drop.folder.put("b.zip", archive.getvalue(), mtime=1_000_100)

    summary = xcom_value(drop.run(definition), "load")

    assert summary["files"] == [
        {"file": "a.csv.gz", "rows": 1, "rejected": 0},
        {"file": "b.zip", "rows": 2, "rejected": 0},
    ]
    assert drop.emails() == [f"user{i}@example.com" for i in (1, 2, 3)]


@pytest.mark.parametrize("drop", ["local", "sftp"], indirect=True)
def test_bad_rows_are_rejected_with_line_and_reason(drop: Drop) -> None:
    data = (
        b"\xef\xbb\xbfid,email,name\n"  # a byte order mark before the header
        b"1,user1@example.com,Ann\n"
        b"2,user2@example.com,Bob,extra\n"  # wrong number of columns
        b'3,"user3@example.com"x,Cy\n'  # broken quoting
        b"4,user4@example.com,D\xe9nise\n"  # latin-1 byte in a utf-8 file
        b"5,user5@example.com,Eve\n"
    )
    drop.folder.put("a.csv", data)

    summary = xcom_value(drop.run(), "load")

    assert summary["files"] == [{"file": "a.csv", "rows": 5, "rejected": 3}]
    assert drop.emails() == ["user1@example.com", "user5@example.com"]
    report = list(csv.DictReader(io.StringIO(Path(summary["error report"].removeprefix("file://")).read_text())))
    reasons = {r["reason"].split(": ")[0]: r for r in report}
    assert set(reasons) == {"a.csv line 3", "a.csv line 4", "a.csv line 5"}
    assert "4 columns, the header has 3" in reasons["a.csv line 3"]["reason"]
    assert "unreadable CSV" in reasons["a.csv line 4"]["reason"]
    assert "not valid utf-8" in reasons["a.csv line 5"]["reason"] and reasons["a.csv line 5"]["field"] == "name"


@pytest.mark.parametrize("drop", ["local", "sftp"], indirect=True)
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"id,email\n1,user1@example.com\n", "the header lacks the fields ['name']"),
        (b"", "the file is empty"),
        (b"id,email,name,email\n1,a@x.io,A,b@x.io\n", "duplicate column names in the header: ['email']"),
    ],
)
def test_a_file_that_fails_whole_is_reported_and_tried_again(drop: Drop, content: bytes, problem: str) -> None:
    drop.folder.put("bad.csv", content, mtime=1_000_000)
    drop.folder.put("good.csv", (HEADER + rows(1)).encode(), mtime=1_000_100)

    dag_run = drop.run()

    assert task_states(dag_run)["load"] == "failed"  # so the failure alert goes out
    summary = xcom_value(dag_run, "load", key="summary")
    assert summary["files"] == [{"file": "good.csv", "rows": 1, "rejected": 0}]
    [failure] = summary["files failed"]
    assert failure.startswith(f"bad.csv: {problem}")
    assert drop.emails() == ["user1@example.com"]  # the good file is loaded and recorded
    report = Path(summary["error report"].removeprefix("file://")).read_text()
    assert "file not imported" in report and "bad.csv" in report

    again = drop.run()  # bad.csv was not marked imported: the next run tries it again, alone
    assert task_states(again)["extract"] == "failed"
    drop.folder.put("bad.csv", (HEADER + rows(2)).encode(), mtime=1_000_200)  # fixed by the sender
    fixed = xcom_value(drop.run(), "load")
    assert fixed["files"] == [{"file": "bad.csv", "rows": 1, "rejected": 0}]
    assert drop.emails() == ["user1@example.com", "user2@example.com"]


def test_the_sftp_example_definition_runs_against_a_real_server(
    sftp_server: Any, brevo_sandbox: BrevoSandbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, airflow_db: str
) -> None:
    from airflow_provider_contactsync.core.spec import load_definition
    from airflow_provider_contactsync.dag_factory import build_dag

    examples = Path(__file__).resolve().parents[1] / "example_dags" / "definitions"
    definition = load_definition(examples / "partner_drop_sftp.yaml")
    source = definition.source.model_copy(update={"path": sftp_server.remote_path(f"example-{uuid.uuid4().hex[:6]}")})
    definition = definition.model_copy(update={"source": source, "integration": f"ex{uuid.uuid4().hex[:8]}"})
    monkeypatch.setenv("AIRFLOW_CONN_PARTNER_SFTP", sftp_server.airflow_connection())
    conn = {"conn_type": "brevo", "host": brevo_sandbox.url, "password": brevo_sandbox.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_BREVO_DEFAULT", json.dumps({**conn, "extra": json.dumps({"poll_interval": 0.01})}))
    folder = source.path.removeprefix(sftp_server.remote_root).strip("/")
    data = "\ufeffcustomer_id;email;mobile;first_name;last_name\n7;ada@example.com;06 12 34 56 78;Ada;Lovelace\n"
    sftp_server.put(f"{folder}/contacts_2026-11-23.csv.gz", gzip.compress(data.encode()))
    sftp_server.put(f"{folder}/contacts_2026-11-23.csv.gz.done", b"")

    dag = build_dag(definition, staging=f"file://{tmp_path}/staging", default_args={"retries": 0})
    dag_run = run_dag(dag)

    assert task_states(dag_run) == dict.fromkeys(("wait_for_file", "extract", "transform", "map", "load"), "success")
    [contact] = brevo_sandbox.contacts()
    assert (contact["email"], contact["attributes"]["SMS"], contact["attributes"]["EXT_ID"]) == (
        "ada@example.com",
        "33612345678",
        "7",
    )
    assert sftp_server.path(f"{folder}/imported/contacts_2026-11-23.csv.gz").exists()
