"""Sources: one module per source type, each adapting a provider hook to :class:`Source`."""

from __future__ import annotations

from airflow_provider_contactsync.sources.base import (
    Chunk,
    ReadWindow,
    Source,
    open_source,
    read_window,
)

__all__ = ["Chunk", "ReadWindow", "Source", "open_source", "read_window"]
