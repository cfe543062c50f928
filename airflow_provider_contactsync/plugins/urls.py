"""Where the plugin's pages live, for the code that links to them from outside the plugin (extra links).

Light on purpose: imported on workers, where the "Error report" extra link is computed at task end.
"""

from __future__ import annotations

from urllib.parse import quote

URL_PREFIX = "/contactsync"
"""Where the plugin's FastAPI app is mounted in Airflow's API server (under ``[api] base_url``'s path)."""


WEBHOOKS_PATH = "/webhooks"
"""Where the signed webhook intake lives under the plugin's mount point (no Airflow user: the signature
authenticates the shop; :mod:`airflow_provider_contactsync.sources.events.intake`)."""


def webhook_path(integration: str, source: str) -> str:
    """The webhook of a source, relative to the plugin's mount point."""
    return f"{WEBHOOKS_PATH}/{quote(integration, safe='')}/{quote(source, safe='')}"


def api_base_url() -> str:
    """``[api] base_url`` without its trailing slash ("" when unset: links are then relative to the host)."""
    try:  # on workers, the Task SDK's configuration (Airflow 3.2+); the same [api] section
        from airflow.sdk.configuration import conf
    except ImportError:
        from airflow.configuration import conf

    return (conf.get("api", "base_url", fallback="") or "").rstrip("/")


def report_path(dag_id: str, run_id: str) -> str:
    """The download of a run's error report, relative to the plugin's mount point."""
    return f"/reports/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"


def report_url(dag_id: str, run_id: str) -> str:
    """The absolute URL (or, without ``[api] base_url``, the host-relative path) of a run's error report."""
    return f"{api_base_url()}{URL_PREFIX}{report_path(dag_id, run_id)}"
