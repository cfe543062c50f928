"""contactsync sensors."""

from __future__ import annotations

from airflow_provider_contactsync.sensors.new_file import ContactsyncNewFileSensor

__all__ = ["ContactsyncNewFileSensor"]
