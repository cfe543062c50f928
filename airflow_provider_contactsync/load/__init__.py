"""The load stage: plan what to send, send it to Brevo, and settle what Brevo did with each contact.

- :mod:`.identity`: who a contact is, and conflicts inside one run (pure rules).
- :mod:`.preflight`: the run-wide identity check, before anything is sent.
- :mod:`.ledger`: what each source last delivered, imports in flight, contacts to retry.
- :mod:`.outcomes`: what Brevo did with each contact of an import, and why it refused one.
- :mod:`.loader`: :class:`ContactLoader`, which runs the four steps.
"""

from airflow_provider_contactsync.load.ledger import ContactLedger, contact_digest, open_ledger
from airflow_provider_contactsync.load.loader import ContactLoader, LoadProblem, LoadResult

__all__ = ["ContactLedger", "ContactLoader", "LoadProblem", "LoadResult", "contact_digest", "open_ledger"]
