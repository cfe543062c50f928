"""The package registers as an Airflow provider with the brevo connection type and its form fields."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

from airflow_provider_contactsync.get_provider_info import get_provider_info


def test_entry_point_points_at_provider_info() -> None:
    (entry,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_provider_contactsync")
    ]
    assert entry.load() is get_provider_info


def test_provider_info_matches_airflow_schema() -> None:
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_airflow_discovers_the_brevo_connection_type() -> None:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManagerTaskRuntime()
    assert "airflow-provider-contactsync" in manager.providers
    hook = manager.hooks["brevo"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_contactsync.hooks.brevo.BrevoHook"
    assert hook.connection_type == "brevo"


def test_connection_form_declares_api_key_and_base_url() -> None:
    (conn,) = get_provider_info()["connection-types"]
    behaviour = conn["ui-field-behaviour"]
    assert behaviour["relabeling"]["password"] == "API key"
    assert "host" not in behaviour["hidden-fields"] and "password" not in behaviour["hidden-fields"]
    assert set(conn["conn-fields"]) == {
        "timeout",
        "poll_interval",
        "max_retries",
        "max_wait_seconds",
        "shared_rate_limit",
    }
