"""Source definitions: typed models, the safe YAML loader and the JSON Schema."""

from __future__ import annotations

from airflow_provider_contactsync.core.spec.loader import (
    iter_definition_files,
    load_definition,
    parse_definition,
)
from airflow_provider_contactsync.core.spec.models import (
    IDENTIFIER_ATTRIBUTES,
    Alerts,
    Consent,
    CsvOptions,
    Deletes,
    Destination,
    EventsQueue,
    EventsSource,
    FileSource,
    MongoSource,
    SourceDefinition,
    SqlSource,
)

__all__ = [
    "IDENTIFIER_ATTRIBUTES",
    "Alerts",
    "Consent",
    "CsvOptions",
    "Deletes",
    "Destination",
    "EventsQueue",
    "EventsSource",
    "FileSource",
    "MongoSource",
    "SourceDefinition",
    "SqlSource",
    "iter_definition_files",
    "load_definition",
    "parse_definition",
]
