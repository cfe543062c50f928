"""Broken definition files become one Airflow import error, while every good DAG still loads.

Why not simply raise from the DAG file: Airflow 3.3's ``PythonDagImporter`` discards every DAG
of a module that raises (it clears ``DagContext.autoregistered_dags``), so one typo in one YAML
file would take down every contactsync DAG of the folder. What the DagBag does keep apart is
validation: it calls ``dag.validate()`` on each collected DAG, bags those that pass, and records
the exception of one that fails as the file's import error. So the problems are raised from the
``validate()`` of one extra, never-bagged DAG: :class:`DefinitionsReport`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG

from airflow_provider_contactsync.core.errors import ContactsyncError

REPORT_DAG_ID = "contactsync_definition_errors"


class ContactsyncDefinitionsError(ContactsyncError):
    """Some definition files of a folder could not become DAGs.

    :param problems: definition file -> what is wrong with it (one line per problem, each
        naming the file, and where known the line and key).
    """

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        count = len(self.problems)
        header = (
            f"{count} contactsync definition file{'s' if count != 1 else ''} could not be loaded "
            "(the folder's other DAGs are loaded):"
        )
        super().__init__("\n".join([header, *self.problems.values()]))


class DefinitionsReport(DAG):
    """A DAG that never gets bagged: its ``validate()`` raises the folder's definition problems."""

    contactsync_error: ContactsyncDefinitionsError | None = None

    def validate(self) -> Any:
        if self.contactsync_error is not None:
            raise self.contactsync_error
        return super().validate()


def register_report(error: ContactsyncDefinitionsError) -> DAG:
    """Register (inside a DAG file import) the DAG whose validation reports ``error``."""
    with DefinitionsReport(
        dag_id=REPORT_DAG_ID,
        schedule=None,
        description="Not a real DAG: carries the import error of broken contactsync definitions.",
    ) as report:
        report.contactsync_error = error
    return report
