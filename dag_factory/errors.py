"""The error that lists a folder's broken definition files, each with every problem it has.

It is never raised from the DAG file that builds the DAGs: Airflow's dag-processor marks every DAG
of a file with an import error as stale, so one broken definition would deactivate every
contactsync DAG. :func:`~airflow_provider_contactsync.dag_factory.check_definitions` raises it
from a DAG file of its own, which holds no DAG (docs/adr/0003-broken-definition-isolation.md).
"""

from __future__ import annotations

from airflow_provider_contactsync.core.errors import ContactsyncError


class ContactsyncDefinitionsError(ContactsyncError):
    """Some definition files could not become DAGs.

    :param problems: definition file -> what is wrong with it (one line per problem, each naming
        the file, and where known the line and key).
    :param lost_dag_ids: definition file -> the DAG id its text asks for, for the files whose DAG
        is not built at all (a duplicate's DAG id is built from the other file, so it is not here).
    """

    def __init__(self, problems: dict[str, str], lost_dag_ids: dict[str, str] | None = None) -> None:
        self.problems = dict(problems)
        self.lost_dag_ids = {path: dag_id for path, dag_id in (lost_dag_ids or {}).items() if path in self.problems}
        count = len(self.problems)
        header = (
            f"{count} contactsync definition file{'s' if count != 1 else ''} could not be loaded; "
            f"no DAG is built from {'them' if count != 1 else 'it'}:"
        )
        lines = [header, *self.problems.values()]
        if self.lost_dag_ids:
            lines.append(f"DAGs not loaded: {', '.join(sorted(set(self.lost_dag_ids.values())))}")
        super().__init__("\n".join(lines))
