"""Panels a source type adds to its source's page: a small registry keyed by source type.

A panel provider is a function of the page's data (:class:`~.data.SourceDetail`) that returns a
:class:`Panel` (a title, a note and a table of plain values: the page escapes them, so a provider never
writes HTML) or None when it has nothing to show. The events source, the Salesforce quota and the
exports register theirs here the same way::

    from airflow_provider_contactsync.plugins.panels import Panel, register_panel

    @register_panel("events")
    def queue_depth(detail):
        return Panel("Queue", columns=("queue", "waiting"), rows=[("orders", 12)])

Providers named in :data:`BUILTIN` are imported when a page of their source type is first shown, so a
provider module costs nothing until then. A provider that fails shows its error in its panel, not a
broken page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import Any

log = logging.getLogger(__name__)

FILE_TYPES = ("file", "sftp", "ftp")


@dataclass
class Panel:
    title: str
    columns: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()
    note: str = ""
    key: str = ""  # the panel's id on the page (data-panel), defaults to the provider's name
    error: bool = False


PanelProvider = Callable[[Any], "Panel | None"]

_PROVIDERS: dict[str, list[PanelProvider]] = {}
_IMPORTED: set[str] = set()

BUILTIN: dict[str, tuple[str, ...]] = {
    "events": ("airflow_provider_contactsync.plugins.events_panel",),
    "salesforce": ("airflow_provider_contactsync.plugins.salesforce_panel",),
    "*": ("airflow_provider_contactsync.plugins.quota_panel",),
}
"""Source type ("*": every type) -> modules that register its panels when imported (the file panel lives in
this module)."""


def register_panel(*source_types: str) -> Callable[[PanelProvider], PanelProvider]:
    """Decorator: show the provider's panel on the pages of sources of these types ("*" for every type)."""

    def add(provider: PanelProvider) -> PanelProvider:
        for source_type in source_types:
            providers = _PROVIDERS.setdefault(source_type, [])
            if provider not in providers:
                providers.append(provider)
        return provider

    return add


def panels_for(detail: Any) -> list[Panel]:
    """The panels of the source's type (and those for every type), in registration order."""
    source_type = detail.source.source_type
    for module in (*BUILTIN.get(source_type, ()), *BUILTIN.get("*", ())):
        if module not in _IMPORTED:
            import_module(module)
            _IMPORTED.add(module)
    panels = []
    for provider in [*_PROVIDERS.get(source_type, []), *_PROVIDERS.get("*", [])]:
        name = getattr(provider, "__name__", "panel")
        try:
            panel = provider(detail)
        except Exception as exc:  # one broken panel must not take the page down
            log.exception("Contactsync panel %s failed for %s", name, detail.source.dag_id)
            panel = Panel(name.replace("_", " "), note=f"This panel failed: {type(exc).__name__}: {exc}", error=True)
        if panel is not None:
            panel.key = panel.key or name
            panels.append(panel)
    return panels


@register_panel(*FILE_TYPES)
def files(detail: Any) -> Panel | None:
    """File sources: the files of the last import, with their rows and rejected rows, and those that failed."""
    run = detail.source.last_import
    summary = (run.summary or {}) if run is not None else {}
    imported = summary.get("files") or []
    failed = summary.get("files failed") or []
    if not imported and not failed:
        return None
    rows: list[tuple[Any, ...]] = [
        (f.get("file", ""), f.get("rows", ""), f.get("rejected", ""), "imported")
        for f in imported
        if isinstance(f, dict)
    ]
    rows += [(str(line).partition(": ")[0], "", "", f"failed: {str(line).partition(': ')[2]}") for line in failed]
    after = summary.get("after import") or []
    return Panel(
        "Files of the last import",
        columns=("file", "rows", "rejected", "status"),
        rows=rows,
        note="; ".join(str(line) for line in after),
    )
