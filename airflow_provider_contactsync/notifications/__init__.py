"""Outbound notifications: signed webhooks about runs (``notifications.webhooks`` in a definition)."""

from __future__ import annotations

from airflow_provider_contactsync.notifications.webhooks import (
    ContactsyncWebhookNotifier,
    Delivery,
    build_payload,
    notify_event,
    sign,
    verify_signature,
)

__all__ = [
    "ContactsyncWebhookNotifier",
    "Delivery",
    "build_payload",
    "notify_event",
    "sign",
    "verify_signature",
]
