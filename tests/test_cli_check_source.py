"""``contactsync validate --check-source``: a definition checked against the real source through its connection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from airflow_provider_contactsync.cli import main

DEFINITION = """\
integration: crm
source:
  name: customers
  type: postgres
  conn_id: {conn_id}
  table: public.customers
  fields: [{fields}]
mapping:
  email: EMAIL
destination:
  list_ids: [2]
"""


@pytest.fixture
def crm_db(postgres_db: str) -> str:
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{postgres_db.upper()}"])
    dsn = f"host={conn['host']} port={conn['port']} dbname={conn['schema']} user={conn['login']}"
    with psycopg.connect(dsn, password=conn.get("password") or "", autocommit=True) as db:
        db.execute("CREATE TABLE public.customers (id int, email text)")
        db.execute("CREATE VIEW public.active AS SELECT * FROM public.customers")
    return postgres_db


def validate(tmp_path: Path, conn_id: str, fields: str) -> list[str]:
    file = tmp_path / "crm.yaml"
    file.write_text(DEFINITION.format(conn_id=conn_id, fields=fields))
    return ["validate", str(file), "--check-source"]


def test_lists_tables_and_columns_of_the_real_source(
    crm_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(validate(tmp_path, crm_db, "id, email")) == 0
    out = capsys.readouterr().out
    assert "tables: public.active, public.customers" in out
    assert "columns: id, email" in out


def test_a_field_the_table_lacks_fails_validation(
    crm_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(validate(tmp_path, crm_db, "id, email, phone")) == 1
    assert "has no column 'phone'" in capsys.readouterr().err


def test_an_unreachable_source_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOWHERE", json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 9}))
    assert main(validate(tmp_path, "nowhere", "id, email")) == 1
    assert "cannot connect with 'nowhere'" in capsys.readouterr().err


MONGO_DEFINITION = """\
integration: app
source:
  name: users
  type: mongo
  conn_id: app_mongo
  collection: users
  fields: [_id, email, {nested}]
mapping:
  email: EMAIL
destination:
  list_ids: [2]
"""


def test_lists_collections_and_nested_paths_of_a_mongo_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mongomock
    from airflow.providers.mongo.hooks.mongo import MongoHook

    client = mongomock.MongoClient()
    client["app"]["users"].insert_one({"_id": 1, "email": "a@x.org", "address": {"city": "Lyon"}})
    client["app"]["events"].insert_one({"_id": 1})
    monkeypatch.setattr(MongoHook, "get_conn", lambda self: client)
    monkeypatch.setenv(
        "AIRFLOW_CONN_APP_MONGO", json.dumps({"conn_type": "mongo", "host": "mongo.invalid", "schema": "app"})
    )
    file = tmp_path / "users.yaml"
    file.write_text(MONGO_DEFINITION.format(nested="address.city"))

    assert main(["validate", str(file), "--check-source"]) == 0
    out = capsys.readouterr().out
    assert "collections: events, users" in out
    assert "columns: _id, email, address, address.city" in out

    file.write_text(MONGO_DEFINITION.format(nested="adress.city"))
    assert main(["validate", str(file), "--check-source"]) == 1
    err = capsys.readouterr().err
    assert "source.fields" in err and "'adress'" in err and "['_id', 'email', 'address']" in err
