"""contactsync operators."""

from __future__ import annotations

from airflow_provider_contactsync.operators.contactsync import (
    ContactsyncExtractOperator,
    ContactsyncLoadOperator,
    ContactsyncMapOperator,
    ContactsyncTransformOperator,
)

__all__ = [
    "ContactsyncExtractOperator",
    "ContactsyncLoadOperator",
    "ContactsyncMapOperator",
    "ContactsyncTransformOperator",
]
