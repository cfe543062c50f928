"""contactsync: keep Brevo contacts in sync with the systems where customer data lives."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_contactsync import _layout

__version__ = "0.1.0"

_layout.install(Path(__file__).resolve().parent)  # dag_factory/ and example_dags/ from a checkout
