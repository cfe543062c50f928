"""contactsync: keep Brevo contacts in sync with the systems where customer data lives."""

from __future__ import annotations

__version__ = "0.1.0"
