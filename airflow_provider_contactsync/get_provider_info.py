"""Provider metadata read by Airflow's ProvidersManager through the ``apache_airflow_provider`` entry point.

Connection form fields are declared here (Airflow >= 3.2 reads ``conn-fields`` and
``ui-field-behaviour`` from provider info; the hook methods that used to do it are deprecated).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_contactsync import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-contactsync",
        "name": "contactsync",
        "description": "Sync contacts from databases and file servers into Brevo.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Brevo",
                "external-doc-url": "https://developers.brevo.com/reference",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Brevo",
                "python-modules": ["airflow_provider_contactsync.hooks.brevo"],
            }
        ],
        "config": {
            "contactsync": {
                "description": "contactsync DAG factory and staging options.",
                "options": {
                    "definitions_folder": {
                        "description": "Folder of YAML source definitions read by load_dags() and check_definitions(); "
                        "relative to the DAG file that calls it.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/opt/airflow/dags/contactsync",
                        "default": "definitions",
                    },
                    "retention_days": {
                        "description": "Days the staged chunks of other runs are kept (failed runs, for "
                        "inspection); a successful run removes its own at once.",
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "3",
                        "default": "7",
                    },
                    "webhook_max_body_bytes": {
                        "description": "Largest webhook body the intake accepts (413 above it, read no further).",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "2097152",
                        "default": "1048576",
                    },
                    "webhook_replay_window_seconds": {
                        "description": "How far a custom-shape webhook's signed timestamp may be from now "
                        "(older or newer deliveries are refused as replays).",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "600",
                        "default": "300",
                    },
                    "task_workers": {
                        "description": "Processes a transform or map task may start (its chunks in parallel). "
                        "Empty: one per core the task may use (its CPU affinity, capped by a container's CPU "
                        "quota). Set it to cores / task slots when a worker runs several tasks at once "
                        "(Celery worker_concurrency > 1).",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "2",
                        "default": "",
                    },
                    "staging": {
                        "description": "ObjectStoragePath URL where tasks stage chunk files and error reports. "
                        "Use shared storage (s3://, gs://) when tasks run on several machines.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "s3://aws_default@my-bucket/contactsync",
                        "default": "",
                    },
                },
            }
        },
        # The Contactsync page in the Airflow UI (the same class is an ``airflow.plugins`` entry point: Airflow
        # loads provider-declared plugins only with [core] lazy_discover_providers = False).
        "plugins": [
            {"name": "contactsync", "plugin-class": "airflow_provider_contactsync.plugins.plugin.ContactsyncPlugin"}
        ],
        "connection-types": [
            {
                "connection-type": "brevo",
                "hook-class-name": "airflow_provider_contactsync.hooks.brevo.BrevoHook",
                "hook-name": "Brevo",
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (s)",
                        "description": "Seconds before an HTTP request to Brevo times out.",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 1},
                    },
                    "poll_interval": {
                        "label": "Latest first import poll (s)",
                        "description": "At most this many seconds before the first check of an import "
                        "process (sooner for small imports, from their size and the speed observed); the "
                        "interval doubles up to 60 s. Brevo allows ~100 process checks per hour.",
                        "schema": {"type": ["number", "null"], "default": 2, "minimum": 0},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries on 429, 5xx and timeouts for idempotent calls.",
                        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
                    },
                    "max_wait_seconds": {
                        "label": "Longest rate-limit wait (s)",
                        "description": "A load waits for Brevo's rate limit to reset up to this long; past it, "
                        "the task defers (no worker slot held) and resumes at the reset.",
                        "schema": {"type": ["number", "null"], "default": 300, "minimum": 1},
                    },
                    "shared_rate_limit": {
                        "label": "Shared rate limit (Redis)",
                        "description": "Share Brevo's per-account limits with every task syncing into this account "
                        'through Redis: {"redis_conn_id": "redis_default"}; optional contacts_per_second (10), '
                        "contacts_per_hour (36000), general_per_hour (100), margin_seconds (0.05), account. "
                        "Empty: each task paces itself.",
                        "schema": {"type": ["object", "null"], "default": None},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"password": "API key", "host": "Base URL (optional)"},
                    "placeholders": {
                        "host": "https://api.brevo.com/v3 (or a contactsync sandbox URL)",
                        "password": "xkeysib-...",
                    },
                },
            }
        ],
    }
