"""pytest fixtures for an S3-compatible server on 127.0.0.1: moto in server mode, its own process.

Staging on ``s3://`` (chunks, error reports, the ledger) goes through Airflow's ObjectStoragePath and
the Amazon provider's connection, exactly as against AWS; the server keeps its buckets in memory and
is stopped by PID at the end of the session. A test gets a fresh bucket and an Airflow connection
(``aws_s3_test``) whose endpoint is the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from servers.processes import free_port, log_tail, stop_process

START_TIMEOUT = 30.0
CONN_ID = "aws_s3_test"


@dataclass
class S3Server:
    """A running moto server: its endpoint URL and process."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )

    def create_bucket(self) -> str:
        name = f"contactsync-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def connection(self) -> str:
        """The Airflow connection (JSON) the Amazon provider and ObjectStoragePath use to reach it."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": "test",
                "password": "test",
                "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
            }
        )


def start_server(folder: Path) -> S3Server:
    port = free_port()
    log = folder / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    import httpx

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited: {log_tail(log)}")
        try:
            httpx.get(endpoint, timeout=1.0)
            return S3Server(endpoint, process, log)
        except httpx.TransportError:
            time.sleep(0.1)  # not synchronising a test: waiting for a server to listen
    stop_process(process, 5.0)
    raise RuntimeError(f"moto_server did not listen on {endpoint}: {log_tail(log)}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_server(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        stop_process(server.process, 5.0)


@pytest.fixture
def s3_staging(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; returns the staging base URL ``s3://aws_s3_test@<bucket>/staging``."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", s3_server.connection())
    bucket = s3_server.create_bucket()
    return f"s3://{CONN_ID}@{bucket}/staging"
