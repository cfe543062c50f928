"""pytest fixture for a BigQuery emulator on 127.0.0.1: ``bqemulator`` (DuckDB-backed, REST + gRPC), no Docker.

``bigquery_emulator`` (session): one ``bqemulator start --ephemeral`` per pytest(-xdist) worker, as a
separate process on free ports, in-memory (nothing left on disk but its log folder, removed at the end).
The official ``google-cloud-bigquery`` client talks to it over HTTP, with anonymous credentials and
``client_options={"api_endpoint": url}``; :meth:`BigQueryEmulator.airflow_connection` gives the same as
an Airflow ``google_cloud_platform`` connection (extras ``project``, ``is_anonymous``, ``api_endpoint``).

Why the emulator is started through this module (``python tests/servers/bigquery.py start ...``) and not
the ``bqemulator`` script: bqemulator refuses to start without DuckDB's ``spatial`` extension (GEOGRAPHY),
which DuckDB downloads from its own site on first use; there is no network here, and no packaged build of
the extension for DuckDB 2.0. The launcher below loads the extension when it can, and otherwise starts
without it: only GEOGRAPHY (``ST_*``) queries fail then, everything else works. Tests that need
GEOGRAPHY check :attr:`BigQueryEmulator.has_geography`.

Other differences from real BigQuery seen with bqemulator 1.3.0 (DuckDB 2.0), worked around in the tests:
BIGNUMERIC columns cannot be created (DuckDB decimals stop at 38 digits); DDL NUMERIC columns are
DECIMAL(18, 3); unnamed ``STRUCT(...)`` literals do not insert into named STRUCT columns (name the
fields); ``PARSE_JSON`` accepts ``NaN`` and trailing commas; ``CAST(string AS BYTES)`` fails on non-ASCII
text; out-of-range dates and invalid JSON in ``insertAll`` answer HTTP 500, which the client retries for
up to 10 minutes, where BigQuery answers 400.

The process is stopped by its PID (SIGTERM, then SIGKILL), and gets SIGTERM too if the test process
dies first (``PR_SET_PDEATHSIG``), so a killed run leaves no emulator behind.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

if __package__ in (None, ""):  # run as a script: the emulator's own process (see _serve); make `servers` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from servers.processes import free_port, log_tail, stop_process  # noqa: E402

PROJECT = "contactsync-test"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
NO_SPATIAL = "bqemulator: DuckDB spatial extension unavailable; GEOGRAPHY disabled"


@dataclass
class BigQueryEmulator:
    """A running emulator: its REST URL, the project it serves, and how to stop it."""

    url: str
    project_id: str
    grpc_port: int
    base_dir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_file(self) -> Path:
        return self.base_dir / "bqemulator.log"

    @property
    def has_geography(self) -> bool:
        """False when the emulator started without DuckDB's spatial extension (see the module docstring)."""
        return NO_SPATIAL not in log_tail(self.log_file, 10_000)

    def client(self) -> Any:
        """A ``google.cloud.bigquery.Client`` on the emulator (anonymous credentials, custom endpoint)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project_id,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.url),
        )

    def airflow_connection(self, **extra: Any) -> str:
        """The JSON form of an Airflow connection, as an ``AIRFLOW_CONN_<ID>`` variable holds it."""
        extras = {"project": self.project_id, "is_anonymous": True, "api_endpoint": self.url, **extra}
        return json.dumps({"conn_type": "google_cloud_platform", "extra": extras})

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process(process, STOP_TIMEOUT)
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> BigQueryEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_emulator(*, project_id: str = PROJECT, attempts: int = 5) -> BigQueryEmulator:
    """Start ``bqemulator`` on free ports of 127.0.0.1; return once ``/readyz`` answers."""
    base = Path(tempfile.mkdtemp(prefix="contactsync-bqemu-"))
    try:
        for _ in range(attempts):
            rest_port, grpc_port = free_port(), free_port()
            emulator = BigQueryEmulator(f"http://127.0.0.1:{rest_port}", project_id, grpc_port, base)
            command = [
                *(sys.executable, str(Path(__file__).resolve()), "start"),
                *("--rest-host", "127.0.0.1", "--rest-port", str(rest_port)),
                *("--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port)),
                *("--ephemeral", "--project", project_id, "--log-format", "json", "--log-level", "warning"),
            ]
            log = open(emulator.log_file, "ab")  # noqa: SIM115 - the emulator owns it while it runs
            try:
                emulator.process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=base,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads are started around it
                )
            finally:
                log.close()
            if _wait_until_ready(emulator):
                return emulator
            emulator.process = None  # exited (a port was taken): try other ports
        raise RuntimeError(f"bqemulator did not start; log:\n{log_tail(base / 'bqemulator.log')}")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:  # noqa: S310 - our own http URL
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _wait_until_ready(emulator: BigQueryEmulator) -> bool:
    """Poll ``/readyz`` until it answers (True) or the process exits (False); fail past the deadline."""
    assert emulator.process is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            if "address already in use" in log_tail(emulator.log_file).lower():
                return False
            raise RuntimeError(
                f"bqemulator exited with code {emulator.process.returncode}:\n{log_tail(emulator.log_file)}"
            )
        if _ready(emulator.url):
            return True
        time.sleep(0.05)  # polling interval, not a wait for a guessed duration
    stop_process(emulator.process, STOP_TIMEOUT)
    raise RuntimeError(f"bqemulator did not answer in {START_TIMEOUT:.0f} s:\n{log_tail(emulator.log_file)}")


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    """One BigQuery emulator per test session (per xdist worker), stopped at the end."""
    emulator = start_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


def _serve(argv: list[str]) -> None:  # pragma: no cover - runs in the emulator's own process
    """``bqemulator`` with the spatial extension made optional (see the module docstring)."""
    from bqemulator.cli import main
    from bqemulator.domain.errors import InternalError
    from bqemulator.storage.engine import DuckDBEngine

    load_spatial = DuckDBEngine._load_spatial

    def load_spatial_if_available(self: DuckDBEngine) -> None:
        try:
            load_spatial(self)
        except InternalError:
            print(NO_SPATIAL, file=sys.stderr, flush=True)

    DuckDBEngine._load_spatial = load_spatial_if_available  # type: ignore[method-assign]
    main(argv, prog_name="bqemulator")


if __name__ == "__main__":  # pragma: no cover
    here = Path(__file__).resolve().parent  # this folder's modules (ftp, smtp, ...) are not the emulator's
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    _serve(sys.argv[1:])
