"""One broken definition never touches another DAG, in a real Airflow 3.3 (issue 10, items 4 and 5).

Airflow's own processes (servers.airflow_services: dag-processor, scheduler with the LocalExecutor,
triggerer, api-server) on a PostgreSQL metadata database, over a DAGs folder holding the two shipped one-line
DAG files (example_dags/contactsync_dags.py and contactsync_check.py) and a definitions folder with
the example definitions plus one broken file. Everything is checked the way a user sees it: the
REST API (what the UI shows), the metadata database, and a DAG run through the real scheduler.

One test, in steps: the stack takes a while to start, and pytest -n could hand separate tests of
this module to separate workers, each starting a stack of its own (xdist's ``loadgroup``, which
would keep them together, does not group anything with pytest 9.2's node ids).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers.airflow_services import AirflowServices

from airflow_provider_contactsync.sandbox import BrevoSandbox

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "example_dags"
DAG_FILE = "contactsync_dags.py"
CHECK_FILE = "contactsync_check.py"
DEMO = "contactsync__demo__customers"
BROKEN = "contactsync__broken__customers"  # the DAG id the broken file asks for
GOOD = {
    "contactsync__app__users",
    "contactsync__crm__customers",
    DEMO,
    "contactsync__partners__drop",
    "contactsync__salesforce__contacts",
    "contactsync__shop__customers",
    "contactsync__shopify__customers",
    "contactsync__warehouse__users",
    "contactsync__webshop__customers",
    "contactsync__woocommerce__customers",
    "contactsync_export__newsletter__unsubscribes",
}
PARSE_TIMEOUT = 90.0  # a change shows after a parse loop or two (intervals of 2 to 5 s here)
RUN_TIMEOUT = 180.0


@dataclass
class Workspace:
    """The DAGs folder Airflow parses, its definitions folder, and the demo's data folder."""

    dags: Path
    definitions: Path
    data: Path

    def write(self, name: str, text: str) -> Path:
        path = self.definitions / name
        path.write_text(text, encoding="utf-8")
        return path


def demo_definition(data: Path) -> str:
    """The demo definition on the copied CSV (absolute path); ``manual``, so only the test's run runs."""
    text = (EXAMPLES / "definitions" / "demo_customers.yaml").read_text(encoding="utf-8")
    assert "  path: ../data" in text and "schedule: daily" in text
    # a daily DAG, once unpaused, would get a scheduled run of its own next to the triggered one
    return text.replace("  path: ../data", f"  path: {data}").replace("schedule: daily", "schedule: manual")


def broken_definition(data: Path) -> str:
    """The demo under another integration, with an unknown key and a bad schedule: two problems."""
    text = demo_definition(data).replace("integration: demo", "integration: broken")
    return text.replace("  pattern: customers.csv", "  patern: customers.csv").replace(
        "schedule: manual", "schedule: sometimes"
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The shipped DAG files and example definitions, the demo on a copy of its CSV, and a broken file."""
    root = tmp_path_factory.mktemp("definition-isolation")
    space = Workspace(root / "dags", root / "dags" / "definitions", root / "data")
    shutil.copytree(EXAMPLES / "data", space.data)
    shutil.copytree(EXAMPLES / "definitions", space.definitions)
    for dag_file in (DAG_FILE, CHECK_FILE):  # the shipped files, as users copy them
        shutil.copy(EXAMPLES / dag_file, space.dags / dag_file)
    space.write("demo_customers.yaml", demo_definition(space.data))
    space.write("zz_broken.yaml", broken_definition(space.data))
    return space


@pytest.fixture(scope="module")
def airflow(workspace: Workspace, airflow_services_factory: Callable[..., AirflowServices]) -> AirflowServices:
    return airflow_services_factory(workspace.dags)


def active(airflow: AirflowServices) -> set[str]:
    """DAGs that are neither stale nor marked with import errors, according to the REST API."""
    return {dag_id for dag_id, dag in airflow.dags().items() if not dag["is_stale"] and not dag["has_import_errors"]}


def shows(airflow: AirflowServices, *, dags: set[str], broken: dict[str, list[str]]) -> bool:
    """True once exactly ``dags`` are active and the check file's import error names exactly ``broken``.

    :param broken: definition file name -> texts its part of the import error must contain.
    """
    if active(airflow) != dags:
        return False
    errors = airflow.import_errors()
    if not broken:
        return errors == {}
    if set(errors) != {CHECK_FILE}:
        return False
    text = errors[CHECK_FILE]
    named = {line.split(":")[0].rsplit("/", 1)[-1] for line in text.splitlines() if "/definitions/" in line}
    return named == set(broken) and all(part in text for parts in broken.values() for part in parts)


BASELINE_ERROR = {
    "zz_broken.yaml": [
        "zz_broken.yaml:9: source.patern: unknown key 'patern' (did you mean 'pattern'?)",
        "zz_broken.yaml:14: schedule: 'sometimes' is not manual, hourly, daily or a five-field cron expression",
        f"DAGs not loaded: {BROKEN}",
    ]
}


def test_one_broken_definition_never_touches_another_dag(
    workspace: Workspace, airflow: AirflowServices, brevo_sandbox: BrevoSandbox
) -> None:
    airflow.wait_for(lambda: shows(airflow, dags=GOOD, broken=BASELINE_ERROR), timeout=PARSE_TIMEOUT)
    every_good_dag_is_active_and_the_error_names_the_broken_file(airflow, workspace)
    a_good_dag_runs_to_success_while_a_definition_is_broken(airflow, brevo_sandbox)
    fixing_or_breaking_a_definition_changes_only_its_own_dag(airflow, workspace)


def every_good_dag_is_active_and_the_error_names_the_broken_file(
    airflow: AirflowServices, workspace: Workspace
) -> None:
    dags = airflow.dags()
    assert GOOD <= set(dags) and BROKEN not in dags
    for dag_id in GOOD:
        assert (dags[dag_id]["is_stale"], dags[dag_id]["has_import_errors"]) == (False, False), dag_id
    assert airflow.dag_ids() == GOOD  # the UI's default list (stale DAGs excluded)

    # The metadata database says the same: the DAG file has no error; the check file holds no DAG.
    rows = airflow.query("SELECT dag_id, is_stale, has_import_errors, relative_fileloc FROM dag")
    assert {row[0]: row[1:] for row in rows} == {dag_id: (False, False, DAG_FILE) for dag_id in GOOD}
    assert airflow.query("SELECT filename FROM import_error") == [(CHECK_FILE,)]

    # One import error, on the file without DAGs, naming the broken file, its lines and every problem.
    (error,) = airflow.import_errors().values()
    broken_path = workspace.definitions / "zz_broken.yaml"
    assert "1 contactsync definition file could not be loaded; no DAG is built from it:" in error
    assert f"{broken_path}:9: source.patern: unknown key 'patern' (did you mean 'pattern'?)" in error
    assert f"{broken_path}:14: schedule: 'sometimes' is not manual" in error
    assert "other DAGs are loaded" not in error  # the old, false claim

    # Users with only the DAG file are not left in the dark: its parse log names the problems.
    assert f"{broken_path}:9: source.patern: unknown key 'patern'" in airflow.parse_log(DAG_FILE)


def a_good_dag_runs_to_success_while_a_definition_is_broken(
    airflow: AirflowServices, brevo_sandbox: BrevoSandbox
) -> None:
    for name, kind in {"COUNTRY": "text", "BIRTHDAY": "date", "LOYALTY_POINTS": "float"}.items():
        brevo_sandbox.create_attribute(name, kind)
    connection = {
        "connection_id": "brevo_demo",
        "conn_type": "brevo",
        "host": brevo_sandbox.url,
        "password": brevo_sandbox.api_key,
        # A wait for Brevo's rate limit past half a second defers the load to Airflow's triggerer.
        "extra": json.dumps({"poll_interval": 0.05, "max_wait_seconds": 0.5}),
    }
    airflow.api("POST", "/connections", json=connection)  # in the metadata DB, read by the tasks
    # Brevo answers the first import with a 429 without a reset time: the client would wait 1 s.
    brevo_sandbox.add_fault(method="POST", path="/v3/contacts/import", action="status", status=429, times=1)

    airflow.unpause(DEMO)
    run_id = airflow.trigger(DEMO)  # answered 404 when the broken file deactivated every DAG
    state = airflow.wait_for_run(DEMO, run_id, timeout=RUN_TIMEOUT)

    tasks = airflow.task_states(DEMO, run_id)
    assert (state, tasks) == ("success", dict.fromkeys(("extract", "transform", "map", "load"), "success")), (
        airflow.task_log(DEMO, run_id, next((t for t, s in tasks.items() if s != "success"), "load"))
    )
    summary = airflow.xcom(DEMO, run_id, "load")
    assert (summary["rows read"], summary["rejected"], summary["created"]) == (10, 3, 7)
    # The load deferred (no worker slot held), the real triggerer woke it at the reset, and it went on.
    (deferral,) = summary["deferred for Brevo's rate limit"]
    assert deferral.startswith("contacts until ")
    assert [r["status"] for r in brevo_sandbox.requests("POST", "/v3/contacts/import")] == [429, 202]
    emails = {contact.get("email") for contact in brevo_sandbox.contacts()}
    assert len(emails) == 7 and "ada.lovelace@example.com" in emails
    assert set(airflow.import_errors()) == {CHECK_FILE}  # the broken file was there all along


def fixing_or_breaking_a_definition_changes_only_its_own_dag(airflow: AirflowServices, workspace: Workspace) -> None:
    # Fixed: the import error goes away and the file's DAG appears; the others stay.
    workspace.write(
        "zz_broken.yaml", demo_definition(workspace.data).replace("integration: demo", "integration: broken")
    )
    airflow.wait_for(lambda: shows(airflow, dags=GOOD | {BROKEN}, broken={}), timeout=PARSE_TIMEOUT)
    assert airflow.query("SELECT count(*) FROM import_error") == [(0,)]

    # A good definition becomes broken: only its DAG goes (stale), and the error says which and why.
    crm = workspace.definitions / "crm_customers_postgres.yaml"
    crm_text = crm.read_text(encoding="utf-8")
    assert "  table: public.customers" in crm_text
    workspace.write(crm.name, crm_text.replace("  table: public.customers", "  tabel: public.customers"))
    crm_error = [
        "source.tabel: unknown key 'tabel' (did you mean 'table'?)",
        "DAGs not loaded: contactsync__crm__customers",
    ]
    still_good = (GOOD | {BROKEN}) - {"contactsync__crm__customers"}
    airflow.wait_for(lambda: shows(airflow, dags=still_good, broken={crm.name: crm_error}), timeout=PARSE_TIMEOUT)
    crm_dag = airflow.dags()["contactsync__crm__customers"]
    assert (crm_dag["is_stale"], crm_dag["has_import_errors"]) == (True, False)
    assert "contactsync__crm__customers" not in airflow.dag_ids()
