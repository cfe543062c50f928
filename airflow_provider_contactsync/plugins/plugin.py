"""The Airflow plugin: the Contactsync FastAPI app and its entry in the UI's navigation."""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_contactsync.plugins.urls import URL_PREFIX


class LazyApp:
    """An ASGI app that builds the real FastAPI app on its first request.

    Airflow imports every plugin class in every process that loads plugins, workers included, before
    each task. Building the app there would import FastAPI and Airflow's API security module (~2 s) for
    nothing; only the API server ever calls it.
    """

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from importlib import import_module

                    module, _, name = self.factory.partition(":")
                    self._app = getattr(import_module(module), name)()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class ContactsyncPlugin(AirflowPlugin):
    """The Contactsync page: every source's last import, its runs, error reports and "Sync now"."""

    name = "contactsync"
    fastapi_apps = [
        {
            "name": "contactsync",
            "app": LazyApp("airflow_provider_contactsync.plugins.app:create_app"),
            "url_prefix": URL_PREFIX,
        }
    ]
    external_views = [
        {
            "name": "Contactsync",
            # Relative (no leading slash): the UI resolves it against its own base, [api] base_url's path.
            "href": f"{URL_PREFIX.lstrip('/')}/",
            "icon": f"{URL_PREFIX.lstrip('/')}/static/icon.svg",
            "icon_dark_mode": f"{URL_PREFIX.lstrip('/')}/static/icon-dark.svg",
            "url_route": "contactsync",
            "destination": "nav",
            "nav_top_level": True,
        }
    ]
