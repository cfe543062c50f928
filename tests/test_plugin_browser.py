"""The Contactsync page in a real browser: Debian's headless Chromium, driven by Playwright, against a
real Airflow (api-server, scheduler, dag-processor, triggerer on 127.0.0.1, servers.airflow_services).

A user logs in through Airflow's own login page, opens "Contactsync" from the navigation, sees the demo
source's last run with its counts, clicks "Sync now", and downloads the run's error report. Screenshots
of each step are saved as test artefacts (``CONTACTSYNC_ARTEFACTS``, default ``artefacts/`` at the
repository root) so a reviewer can look at the page.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers.airflow_services import ADMIN, AirflowServices

from airflow_provider_contactsync.sandbox import BrevoSandbox

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "example_dags"
CHROMIUM = Path("/usr/bin/chromium")
DEMO = "contactsync__demo__customers"
RUN_TIMEOUT = 180.0
# The flags this machine's closed network needs (the machine notes): no background connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def artefacts() -> Path:
    folder = Path(os.environ.get("CONTACTSYNC_ARTEFACTS", ROOT / "artefacts")) / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def airflow(
    tmp_path_factory: pytest.TempPathFactory,
    airflow_services_factory: Callable[..., AirflowServices],
) -> AirflowServices:
    root = tmp_path_factory.mktemp("ui")
    dags, data = root / "dags", root / "data"
    shutil.copytree(EXAMPLES / "data", data)
    (dags / "definitions").mkdir(parents=True)
    text = (EXAMPLES / "definitions" / "demo_customers.yaml").read_text()
    text = text.replace("  path: ../data", f"  path: {data}").replace("schedule: daily", "schedule: manual")
    (dags / "definitions" / "demo_customers.yaml").write_text(text)
    shutil.copy(EXAMPLES / "contactsync_dags.py", dags / "contactsync_dags.py")
    return airflow_services_factory(dags)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-servers.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def test_a_user_sees_the_last_run_syncs_now_and_downloads_the_error_report(
    airflow: AirflowServices, browser: object, brevo_sandbox: BrevoSandbox
) -> None:
    for name, kind in {"COUNTRY": "text", "BIRTHDAY": "date", "LOYALTY_POINTS": "float"}.items():
        brevo_sandbox.create_attribute(name, kind)
    airflow.api(
        "POST",
        "/connections",
        json={
            "connection_id": "brevo_demo",
            "conn_type": "brevo",
            "host": brevo_sandbox.url,
            "password": brevo_sandbox.api_key,
            "extra": json.dumps({"poll_interval": 0.05}),
        },
    )
    airflow.wait_for(lambda: DEMO in airflow.dag_ids(), timeout=120)
    airflow.unpause(DEMO)
    first = airflow.trigger(DEMO)
    assert airflow.wait_for_run(DEMO, first, timeout=RUN_TIMEOUT) == "success"
    shots = artefacts()

    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{airflow.api_url}/", wait_until="networkidle")
    page.fill("input[name='username']", ADMIN)
    page.fill("input[name='password']", airflow.password)
    page.click("button[type='submit']")
    page.wait_for_url(lambda url: "/auth/login" not in url)
    page.screenshot(path=str(shots / "1-airflow-home.png"))

    page.get_by_role("link", name="Contactsync").first.click()  # the plugin's entry in the navigation
    frame = page.frame_locator("iframe").first
    row = frame.locator(f"[data-dag-id='{DEMO}']").first
    row.wait_for()
    page.screenshot(path=str(shots / "2-overview.png"))
    counts = {name: row.locator(f"td[data-count='{name}']").inner_text() for name in ("created", "rejected")}
    assert counts == {"created": "7", "rejected": "3"}

    page.goto(f"{airflow.api_url}/contactsync/sources/{DEMO}", wait_until="networkidle")
    page.locator("#runs").wait_for()
    page.screenshot(path=str(shots / "3-source.png"), full_page=True)
    with page.expect_download() as download_info:
        page.locator(f"a.report-download[data-run-id='{first}']").click()
    report = download_info.value.path().read_text()  # type: ignore[union-attr]
    rows = list(csv.DictReader(io.StringIO(report)))
    assert len(rows) == 3 and {r["outcome"] for r in rows} == {"rejected"}

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#sync-now")
    page.locator("#trigger-status.ok").wait_for()  # the API answered: "Run ... is queued."
    airflow.wait_for(lambda: len(airflow.api("GET", f"/dags/{DEMO}/dagRuns")["dag_runs"]) == 2, timeout=60)
    page.screenshot(path=str(shots / "4-sync-now.png"), full_page=True)
    context.close()
