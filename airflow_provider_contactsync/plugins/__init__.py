"""The Contactsync page in the Airflow UI: an Airflow plugin shipped with the provider.

``plugin.ContactsyncPlugin`` mounts a FastAPI app under ``/contactsync`` in Airflow's API server and
adds a "Contactsync" entry to the UI's navigation. Every process that loads plugins (workers
included) imports the plugin class, so this package imports nothing heavy until a request comes:
the app itself is built on the API server's first request. Why it is built this way:
docs/adr/0008-ui-plugin.md.
"""

from __future__ import annotations
