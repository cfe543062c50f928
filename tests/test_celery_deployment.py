"""Two Celery workers that share nothing on disk run the PostgreSQL and SFTP example DAGs (issue 17).

A real multi-worker deployment (servers.airflow_celery): Airflow 3.3's CeleryExecutor with Redis as the
broker, PostgreSQL as metadata database and Celery result backend, the scheduler, dag-processor,
triggerer and api-server, and two workers, each with its own home, DAGs folder copy, TMPDIR and
hostname; where Linux allows it, each runs with the other worker's folders and the control plane's
hidden. Staging, error reports and task logs are on S3 (moto's server, through the Amazon provider's
connection): the only storage the machines share.

Several runs at once (the PostgreSQL example twice, the same example under a second integration
twice, the SFTP example once) spread their tasks over both workers. Checked: every run's outcome,
which worker ran each task (``TaskInstance.hostname``), that nothing points at a worker's local disk
(XComs hold ``s3://`` URLs only, each worker's logs are its own tasks', its temp folder is left
empty), that the staged chunks are gone from the bucket after success, and that the Contactsync page
serves the error report from the bucket.

One test, in steps: the deployment takes a while to start, and pytest -n could hand separate tests of
this module to separate workers, each starting a deployment of its own.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import io
import json
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from servers.airflow_celery import WORKER_NAMES, CeleryAirflow, can_hide_folders, start_celery_airflow
from servers.postgres import PostgresServer
from servers.s3 import CONN_ID as S3_CONN_ID
from servers.s3 import S3Server
from servers.sftp import SftpServer
from test_e2e_postgres import ROWS, T0

from airflow_provider_contactsync.sandbox import BrevoSandbox

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"
CRM = "contactsync__crm__customers"
CRM_EU = "contactsync__crmeu__customers"  # the PostgreSQL example under a second integration
PARTNERS = "contactsync__partners__drop"
TASKS = ("extract", "transform", "map", "load")
# What the worker's processes keep in TMPDIR while they live: multiprocessing's folder, cel-python's grammar cache
PROCESS_TEMP = ("pymp-", ".lark_cache_")
PARSE_TIMEOUT = 120.0
RUN_TIMEOUT = 300.0
PARTNER_FILE = "contacts_2026-11-23.csv.gz"
PARTNER_ROWS = "\ufeffcustomer_id;email;mobile;first_name;last_name\n" + "".join(
    f"p{i};Partner.{i}@Example.net;06 98 76 54 {i:02d};Pat {i};Partner\n" for i in range(1, 21)
)  # 20 good rows; one bad one below keeps the reject rate under the example's 5 %
PARTNER_ROWS += "p21;not-an-email;06 98 76 54 21;Nope;Partner\n"


@dataclass
class Deployment:
    airflow: CeleryAirflow
    brevo: BrevoSandbox  # the crm and partners DAGs' account
    brevo_eu: BrevoSandbox  # the second integration's
    s3: S3Server
    bucket: str
    sftp: SftpServer
    inbox: str  # the SFTP example's folder, relative to the server's root
    crm: Any  # a connection factory for the PostgreSQL example's database


def definitions(dags: Path, sftp_inbox: str) -> None:
    """The shipped DAG files and the two examples (plus the PostgreSQL one as a second integration), manual."""
    (dags / "definitions").mkdir(parents=True)
    for dag_file in ("contactsync_dags.py", "contactsync_check.py"):
        shutil.copy(EXAMPLES / dag_file, dags / dag_file)
    crm = (EXAMPLES / "definitions" / "crm_customers_postgres.yaml").read_text(encoding="utf-8")
    assert "schedule: hourly" in crm and "integration: crm\n" in crm and "conn_id: brevo_default" in crm
    crm = crm.replace("schedule: hourly", "schedule: manual")
    (dags / "definitions" / "crm_customers_postgres.yaml").write_text(crm, encoding="utf-8")
    eu = crm.replace("integration: crm\n", "integration: crmeu\n")
    eu = eu.replace("conn_id: brevo_default", "conn_id: brevo_eu")
    (dags / "definitions" / "crm_eu_customers_postgres.yaml").write_text(eu, encoding="utf-8")
    partners = (EXAMPLES / "definitions" / "partner_drop_sftp.yaml").read_text(encoding="utf-8")
    assert "  path: inbox" in partners and "schedule: daily" in partners
    partners = partners.replace("  path: inbox", f"  path: {sftp_inbox}").replace("schedule: daily", "schedule: manual")
    (dags / "definitions" / "partner_drop_sftp.yaml").write_text(partners, encoding="utf-8")


def brevo_connection(sandbox: BrevoSandbox) -> dict[str, Any]:
    return {
        "conn_type": "brevo",
        "host": sandbox.url,
        "password": sandbox.api_key,
        # A wait for Brevo's rate limit past half a second defers the load to the triggerer.
        "extra": json.dumps({"poll_interval": 0.05, "max_wait_seconds": 0.5}),
    }


@pytest.fixture
def deployment(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer,
    brevo_sandbox_factory: Any,
    s3_server: S3Server,
    sftp_server: SftpServer,
) -> Any:
    brevo, brevo_eu = brevo_sandbox_factory(), brevo_sandbox_factory()
    for sandbox in (brevo, brevo_eu):
        for name, kind in {"COUNTRY": "text", "BIRTHDAY": "date", "LOYALTY_POINTS": "float"}.items():
            sandbox.create_attribute(name, kind)

    crm_db = postgres_server.create_database()
    with postgres_server.connect(crm_db) as conn:
        conn.execute(
            "CREATE TABLE public.customers (id int PRIMARY KEY, email text, first_name text, last_name text, "
            "phone text, country text, birthday date, loyalty_points text, updated_at timestamptz)"
        )
        for *values, minutes in ROWS:
            conn.execute(
                "INSERT INTO public.customers VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s + %s * interval '1 minute')",
                (*values, T0, minutes),
            )

    inbox = f"celery-{uuid.uuid4().hex[:8]}"
    sftp_server.put(f"{inbox}/{PARTNER_FILE}", gzip.compress(PARTNER_ROWS.encode()))
    sftp_server.put(f"{inbox}/{PARTNER_FILE}.done", b"")

    dags = tmp_path_factory.mktemp("celery-dags")
    definitions(dags, sftp_server.remote_path(inbox))
    bucket = s3_server.create_bucket()
    metadata_db = postgres_server.create_database()
    db_url = postgres_server.conn_uri(metadata_db).replace("postgresql://", "postgresql+psycopg2://", 1)
    airflow = None
    try:
        airflow = start_celery_airflow(
            dags,
            db_url,
            home=tmp_path_factory.mktemp("celery-control-home"),
            # One slot each: a worker busy with a task takes no other (Airflow acks late, prefetch 1), so two
            # tasks queued together always go to both workers.
            concurrency=1,
            connections={
                "crm_pg": json.loads(postgres_server.airflow_connection(crm_db)),
                "brevo_default": brevo_connection(brevo),
                "brevo_eu": brevo_connection(brevo_eu),
                # the key travels in the connection: no worker has the control machine's key file
                "partner_sftp": json.loads(sftp_server.airflow_connection(auth="private_key")),
                S3_CONN_ID: json.loads(s3_server.connection()),
            },
            env={
                "AIRFLOW__CONTACTSYNC__STAGING": f"s3://{S3_CONN_ID}@{bucket}/staging",
                "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
                "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{bucket}/logs",
                "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": S3_CONN_ID,
            },
            # pytest's temp root holds the control plane's home, its DAGs folder and the sandboxes' files
            hidden=[tmp_path_factory.getbasetemp()],
        )
        crm = functools.partial(postgres_server.connect, crm_db)
        yield Deployment(airflow, brevo, brevo_eu, s3_server, bucket, sftp_server, inbox, crm)
    finally:
        if airflow is not None:
            airflow.stop()
        postgres_server.drop_database(metadata_db)
        postgres_server.drop_database(crm_db)


def test_two_workers_that_share_nothing_run_the_examples(deployment: Deployment) -> None:
    airflow, services = deployment.airflow, deployment.airflow.services
    services.wait_for(lambda: {CRM, CRM_EU, PARTNERS} <= services.dag_ids(), timeout=PARSE_TIMEOUT)
    for dag_id in (CRM, CRM_EU, PARTNERS):
        services.unpause(dag_id)
    runs = [(dag_id, services.trigger(dag_id)) for dag_id in (CRM, CRM_EU, PARTNERS, CRM, CRM_EU)]
    for dag_id, run_id in runs:
        state = services.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT)
        assert state == "success", failure_report(airflow, dag_id, run_id)

    every_run_did_its_work(deployment, runs)
    tasks_ran_on_both_workers(airflow, runs)
    nothing_points_at_a_workers_disk(airflow, runs)
    the_staged_chunks_are_gone_from_the_bucket(deployment)
    error_reports_download_from_the_page_through_s3(deployment, runs)
    a_deferred_load_resumes_on_the_other_worker(deployment)


def every_run_did_its_work(deployment: Deployment, runs: list[tuple[str, str]]) -> None:
    services = deployment.airflow.services
    summaries: dict[str, list[dict[str, Any]]] = {}
    for dag_id, run_id in runs:
        expected = ("wait_for_file", *TASKS) if dag_id == PARTNERS else TASKS
        assert services.task_states(dag_id, run_id) == dict.fromkeys(expected, "success"), (dag_id, run_id)
        summaries.setdefault(dag_id, []).append(services.xcom(dag_id, run_id, "load"))
    for dag_id in (CRM, CRM_EU):  # the same table under two integrations, each into its own account
        first, second = summaries[dag_id]
        assert (first["rows read"], first["rejected"], first["created"]) == (10, 3, 7), dag_id
        assert (second["rows read"], second["created"], second["updated"]) == (0, 0, 0), dag_id  # nothing new
    (partners,) = summaries[PARTNERS]
    assert partners["files"] == [{"file": PARTNER_FILE, "rows": 21, "rejected": 1}]
    assert (partners["created"], partners["rejected"]) == (20, 1)
    assert deployment.sftp.path(f"{deployment.inbox}/imported/{PARTNER_FILE}").exists()
    emails = {contact.get("email") for contact in deployment.brevo.contacts()}
    assert len(deployment.brevo.contacts()) == 27 and {"partner.1@example.net", "ada.lovelace@example.com"} <= emails
    assert len(deployment.brevo_eu.contacts()) == 7


def tasks_ran_on_both_workers(airflow: CeleryAirflow, runs: list[tuple[str, str]]) -> None:
    seen: set[str | None] = set()
    for dag_id, run_id in runs:
        hostnames = airflow.hostnames(dag_id, run_id)
        assert set(hostnames.values()) <= set(WORKER_NAMES), (dag_id, run_id, hostnames)
        seen.update(hostnames.values())
    assert seen == set(WORKER_NAMES)


def nothing_points_at_a_workers_disk(airflow: CeleryAirflow, runs: list[tuple[str, str]]) -> None:
    services = airflow.services
    dag_ids = sorted({dag_id for dag_id, _ in runs})
    xcoms = services.query("SELECT dag_id, task_id, key, value::text FROM xcom WHERE dag_id = ANY(%s)", dag_ids)
    assert xcoms
    urls = [url for *_, text in xcoms for url in re.findall(r'"(\w+://[^"]+)"', text)]
    links = [url for url in urls if url.startswith(("http://", "https://"))]  # the error report's extra link
    assert links and all(url.startswith(f"{services.api_url}/contactsync/reports/") for url in links), links
    staged = [url for url in urls if url not in links]  # chunks, error reports, the read boundary
    assert staged and [url for url in staged if not url.startswith("s3://")] == [], staged
    worker_roots = [str(worker.root) for worker in airflow.workers.values()]
    for dag_id, task_id, key, text in xcoms:
        assert "file://" not in text, (dag_id, task_id, key, text)
        assert not any(root in text for root in worker_roots), (dag_id, task_id, key, text)

    # Each worker's home holds the logs of its own tasks only; the tasks left nothing in its temp folder.
    for dag_id, run_id in runs:
        for task_id, hostname in airflow.hostnames(dag_id, run_id).items():
            for name, worker in airflow.workers.items():
                logs = [p for p in worker.task_logs(dag_id, run_id) if f"task_id={task_id}" in p.parts]
                assert bool(logs) == (name == hostname), (dag_id, run_id, task_id, name, logs)
    for worker in airflow.workers.values():
        left = sorted(path.name for path in worker.tmp.iterdir() if not path.name.startswith(PROCESS_TEMP))
        assert left == [], (worker.name, left)
        assert not (worker.home / "contactsync").exists()  # the default local staging was never used
    if can_hide_folders():  # and each worker ran with the other's folders out of its sight
        assert airflow.isolated
        for name in airflow.workers:
            mounts = Path(f"/proc/{services.processes[name].pid}/mountinfo").read_text()
            for other in airflow.workers.values():
                assert (f" {other.root} " in mounts) == (other.name != name), (name, other.name)


def the_staged_chunks_are_gone_from_the_bucket(deployment: Deployment) -> None:
    listing = deployment.s3.client().list_objects_v2(Bucket=deployment.bucket, Prefix="staging/")  # type: ignore[attr-defined]
    keys = [item["Key"] for item in listing.get("Contents", [])]
    kept = {tuple(key.split("/")[1:3]) for key in keys}
    # per DAG: its error reports and its state (ledger, boundary); no run's chunks
    assert {folder for _, folder in kept} == {"reports", "state"}, keys
    assert {dag_id for dag_id, _ in kept} == {CRM, CRM_EU, PARTNERS}


def error_reports_download_from_the_page_through_s3(deployment: Deployment, runs: list[tuple[str, str]]) -> None:
    services = deployment.airflow.services
    for dag_id, run_id in runs[:3]:  # the first run of each DAG: the one with rejects
        report_url = services.xcom(dag_id, run_id, "load")["error report"]
        assert report_url.startswith(f"s3://{S3_CONN_ID}@{deployment.bucket}/staging/{dag_id}/reports/")
        answer = httpx.get(
            f"{services.api_url}/contactsync/reports/{dag_id}/{quote(run_id, safe='')}",
            headers={"Authorization": f"Bearer {services.token()}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        assert [row["outcome"] for row in rows] == ["rejected"] * (1 if dag_id == PARTNERS else 3), rows
        key = report_url.split(f"@{deployment.bucket}/", 1)[1]
        stored = deployment.s3.client().get_object(Bucket=deployment.bucket, Key=key)  # type: ignore[attr-defined]
        assert answer.content == stored["Body"].read()


def a_deferred_load_resumes_on_the_other_worker(deployment: Deployment) -> None:
    """Brevo's rate limit defers a load; the machine that ran it goes away; the other worker finishes it."""
    airflow, services = deployment.airflow, deployment.airflow.services
    services.stop_one("triggerer")  # the load stays deferred until it is back: no race with the resumption
    with deployment.crm() as conn:
        for values in ((11, "hedy@example.com", "Hedy"), (12, "radia@example.com", "Radia")):
            conn.execute(
                "INSERT INTO public.customers (id, email, first_name, updated_at) VALUES (%s, %s, %s, %s)",
                (*values, T0 + dt.timedelta(days=1)),
            )
    deployment.brevo.add_fault(method="POST", path="/v3/contacts/import", action="status", status=429, times=1)
    run_id = services.trigger(CRM)
    services.wait_for(lambda: services.task_states(CRM, run_id).get("load") == "deferred", timeout=RUN_TIMEOUT)
    first = airflow.hostnames(CRM, run_id)["load"]
    (other,) = set(WORKER_NAMES) - {first}
    airflow.stop_worker(str(first))
    services.start("triggerer", "triggerer")

    assert services.wait_for_run(CRM, run_id, timeout=RUN_TIMEOUT) == "success", failure_report(airflow, CRM, run_id)
    assert airflow.hostnames(CRM, run_id)["load"] == other
    summary = services.xcom(CRM, run_id, "load")
    assert (summary["rows read"], summary["created"], summary["updated"]) == (2, 2, 0)
    (deferral,) = summary["deferred for Brevo's rate limit"]
    assert deferral.startswith("contacts until ")
    statuses = [r["status"] for r in deployment.brevo.requests("POST", "/v3/contacts/import")]
    assert statuses[-2:] == [429, 202]  # sent once, after the wait
    assert len(deployment.brevo.contacts()) == 29
    for worker in airflow.workers.values():  # each wrote its part of the load's log, on its own disk
        assert [p for p in worker.task_logs(CRM, run_id) if "task_id=load" in p.parts], worker.name


def failure_report(airflow: CeleryAirflow, dag_id: str, run_id: str) -> str:
    """What went wrong: the tasks' states, hosts and logs (from S3 through the API), and the processes' logs."""
    services = airflow.services
    states = services.task_states(dag_id, run_id)
    lines = [f"{dag_id} {run_id}: {states}", f"hosts: {airflow.hostnames(dag_id, run_id)}"]
    for task_id, state in states.items():
        if state not in ("success", None):
            try:
                lines.append(f"--- {task_id} ({state}) ---\n{services.task_log(dag_id, run_id, task_id)[-4000:]}")
            except AssertionError as exc:
                lines.append(f"--- {task_id} ({state}): no log: {exc}")
    return "\n".join([*lines, services.logs(60)])
