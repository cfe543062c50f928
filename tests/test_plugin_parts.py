"""The Contactsync page's parts without a server: report paths, the extra link, docs rendering, panels, charts."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_contactsync.plugins import charts, markdown, panels
from airflow_provider_contactsync.plugins.data import Run, Source, SourceDetail
from airflow_provider_contactsync.plugins.reports import ReportRefused, checked_report_path

DAG = "contactsync__crm__customers"
BASES = ["file:///srv/staging", "s3://aws_default@bucket/prefix"]


@pytest.mark.parametrize(
    "url",
    [
        f"file:///srv/staging/{DAG}/reports/manual__2026-11-20T08_00_00_00_00.csv",
        f"s3://aws_default@bucket/prefix/{DAG}/reports/scheduled__2026-11-20.csv",
        f"s3://bucket/prefix/{DAG}/reports/r.csv",  # the connection is not part of where the file is
    ],
)
def test_a_report_of_the_dag_under_a_staging_base_is_allowed(url: str) -> None:
    path = checked_report_path(url, DAG, BASES)
    assert path.name.endswith(".csv")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        f"file:///srv/staging/{DAG}/reports/../../other_dag/reports/r.csv",
        "file:///srv/staging/contactsync__crm__other/reports/r.csv",  # another DAG's report
        f"file:///srv/staging/{DAG}/runs/manual/extract/chunk-00000.csv",  # staged rows, not a report
        f"file:///srv/staging/{DAG}/reports/sub/r.csv",
        f"file:///srv/staging/{DAG}/reports/r.msgpack",
        f"file:///srv/elsewhere/{DAG}/reports/r.csv",
        f"file:///srv/staging-evil/{DAG}/reports/r.csv",
        f"s3://other-bucket/prefix/{DAG}/reports/r.csv",
        f"gs://bucket/prefix/{DAG}/reports/r.csv",
        f"s3://bucket/prefix/{DAG}/reports/%2e%2e/r.csv",
        f"/srv/staging/{DAG}/reports/r.csv/..",
        "no-such-protocol://x/y.csv",
    ],
)
def test_any_other_location_is_refused(url: str) -> None:
    with pytest.raises(ReportRefused):
        checked_report_path(url, DAG, BASES)


class _TI(SimpleNamespace):
    dag_id = DAG
    run_id = "manual__2026-11-20T08:00:00+00:00"


def _link(monkeypatch: pytest.MonkeyPatch, link: Any, stored: str | None) -> str:
    from airflow.sdk.execution_time import xcom

    monkeypatch.setattr(
        xcom.XCom, "get_value", staticmethod(lambda ti_key, key: stored if key == "error_report" else None)
    )
    return link.get_link(operator=None, ti_key=_TI())


def test_the_error_report_link_is_the_plugins_download_under_the_api_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_contactsync.operators.links import ErrorReportLink

    report = f"file:///srv/staging/{DAG}/reports/manual.csv"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/tools/")
    expected = f"https://airflow.example.com/tools/contactsync/reports/{DAG}/manual__2026-11-20T08%3A00%3A00%2B00%3A00"
    assert _link(monkeypatch, ErrorReportLink(), report) == expected
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "")
    assert _link(monkeypatch, ErrorReportLink(), report).startswith(f"/contactsync/reports/{DAG}/")  # same origin
    assert _link(monkeypatch, ErrorReportLink(), None) == ""  # no report: no button


def test_the_map_task_uses_the_http_error_report_link(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_contactsync.operators import ContactsyncMapOperator

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://localhost:8080")
    (link,) = ContactsyncMapOperator.operator_extra_links
    assert _link(monkeypatch, link, "file:///srv/r.csv").startswith("http://localhost:8080/contactsync/reports/")


def test_the_dag_docs_render_escaped() -> None:
    html = str(
        markdown.render(
            "### contactsync: crm / <b>x</b>\n\nDefinition: `/a/<script>.yaml`\n\n"
            "- **Source**: `file`\n  - path: `in`\n- **Schedule**: daily\n\n"
            "| field | formula |\n|---|---|\n| `email` | `a \\| b <img src=x onerror=alert(1)>` |\n"
        )
    )
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "<h4>contactsync: crm / &lt;b&gt;x&lt;/b&gt;</h4>" in html
    assert "<code>/a/&lt;script&gt;.yaml</code>" in html
    assert "<ul><li><strong>Source</strong>: <code>file</code><ul><li>path: <code>in</code></li></ul></li><li>" in html
    assert "<td><code>a | b &lt;img src=x onerror=alert(1)&gt;</code></td>" in html


def _detail(source_type: str, summary: dict[str, Any] | None) -> SourceDetail:
    run = Run(1, "r1", "success", "manual", None, None, None, {}, summary=summary)
    source = Source(DAG, "crm", "customers", source_type, "daily", False, False, False, None, None, run, run)
    return SourceDetail(source, [run], None, None, None)


def test_each_source_type_gets_its_panels_and_a_failing_panel_does_not_break_the_page() -> None:
    summary = {"files": [{"file": "a.csv", "rows": 3, "rejected": 1}], "files failed": ["b.csv: empty file"]}
    (files,) = panels.panels_for(_detail("sftp", summary))
    assert files.key == "files" and list(files.rows) == [
        ("a.csv", 3, 1, "imported"),
        ("b.csv", "", "", "failed: empty file"),
    ]
    assert panels.panels_for(_detail("postgres", summary)) == []

    @panels.register_panel("postgres")
    def broken_quota(detail: Any) -> panels.Panel:
        raise RuntimeError("quota API down")

    try:
        (panel,) = panels.panels_for(_detail("postgres", summary))
        assert panel.error and panel.key == "broken_quota" and "quota API down" in panel.note
    finally:
        panels._PROVIDERS["postgres"].remove(broken_quota)


def test_charts_stack_each_runs_counts_on_a_round_axis() -> None:
    runs = [
        Run(2, "new", "success", "manual", None, None, None, {}, {"rows read": 40, "created": 30, "rejected": 10}),
        Run(1, "old", "failed", "manual", None, None, None, {}, None),
    ]
    counts, duration, rate = charts.run_charts(runs)
    assert counts.top == 50 and [bar.series for bar in counts.bars] == ["created", "not loaded"]
    assert sum(bar.height for bar in counts.bars) == pytest.approx((40 / 50) * (charts.HEIGHT - 26))
    assert counts.bars[0].x > charts.PAD_LEFT + (charts.WIDTH - charts.PAD_LEFT) / 2  # the newest on the right
    assert duration.bars == [] and rate.top == 0.5 and [label for _, _, label in rate.points] == ["new: 25.0%"]


def test_importing_the_plugin_loads_no_web_framework() -> None:
    """Workers import every plugin before each task: the app is built on the API server's first request only."""
    heavy = ("fastapi", "airflow.api_fastapi.core_api.security", "airflow_provider_contactsync.plugins.app")
    code = f"import sys, airflow_provider_contactsync.plugins.plugin; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("max_error_rate", "alerted"), [(None, True), (0.6, False), (0.4, True)])
def test_the_reject_alert_uses_the_definitions_max_error_rate(max_error_rate: float | None, alerted: bool) -> None:
    from airflow_provider_contactsync.plugins.data import Run, Source

    summary = {"rows read": 2, "rejected": 1, "refused": 0, "identity conflicts": 0}
    if max_error_rate is not None:  # summaries written before it was recorded use the default 5%
        summary["max error rate"] = max_error_rate
    run = Run(1, "r", "success", "manual", None, None, None, {}, summary)
    source = Source("contactsync__a__b", "a", "b", "file", "manual", False, False, False, None, None, run, run)
    texts = [alert.text for alert in source.alerts]
    assert (texts == ["1 row not loaded (50.0%)"]) is alerted
