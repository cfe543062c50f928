"""A local Salesforce org for tests and demos: HTTPS server + SQLite, shipped in the package.

``SalesforceSandbox(db_path).start()`` (or the ``contactsync-salesforce-sandbox`` command, or the
``salesforce_sandbox`` pytest fixture) answers the calls an unmodified Airflow ``SalesforceHook`` and
simple-salesforce make: SOAP login, SOQL query/queryMore/queryAll (a subset, see :mod:`.soql`),
describe, record CRUD and composite/sobjects with Salesforce's error bodies, and Bulk API 2.0 query
jobs; plus call counters, fault injection and a daily API limit. No Airflow imports.
"""

from __future__ import annotations

from .errors import ApiError, Problem
from .server import SalesforceSandbox
from .settings import Settings

__all__ = ["ApiError", "Problem", "SalesforceSandbox", "Settings"]
