"""An export's ``content.where``: a CEL condition on each contact read, compiled once.

The condition may name any attribute of the account, exported or not: the attributes it names are
read along with the exported ones. Which names those are is known from the text alone (upper-case
identifiers: Brevo attribute names), so the definition is checked without an account; a name the
account lacks fails the run before anything is read (:func:`attributes_of`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError, FormulaError, RowError
from airflow_provider_contactsync.core.spec.export_models import SYSTEM_FIELDS, ExportContent

_ATTRIBUTE_NAME = re.compile(r"(?<![\w.\"'])[A-Z][A-Z0-9_]*\b")
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")


def attributes_of(content: ExportContent) -> list[str]:
    """The attributes a run reads: the exported ones in order, then those only the condition names."""
    names = [entry.attribute for entry in content.fields]
    if content.where:
        names += _ATTRIBUTE_NAME.findall(_STRING.sub('""', content.where))
    return list(dict.fromkeys(names))


def _fields(content: ExportContent) -> list[str]:
    return list(dict.fromkeys([*SYSTEM_FIELDS, *attributes_of(content)]))


def check_condition(content: ExportContent) -> ConfigurationError | None:
    """The condition's problem (it does not compile, or does not give true/false), located at content.where."""
    if not content.where:
        return None
    try:
        compile_condition(content)
    except ConfigurationError as exc:
        return exc
    return None


class Condition:
    """``content.where`` compiled; :meth:`keeps` tells one contact (a typed mapping of its fields)."""

    def __init__(self, formula: Any) -> None:
        self._formula = formula

    def keeps(self, contact: Mapping[str, Any]) -> bool:
        """True to export the contact; null counts as false. A value the condition cannot use raises RowError."""
        value = self._formula.evaluate(contact)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise RowError(f"content.where gave {value!r}, not true, false or null", field="content.where")
        return value


def compile_condition(content: ExportContent) -> Condition | None:
    """The compiled condition, or None without one; ConfigurationError located at content.where."""
    if not content.where:
        return None
    from airflow_provider_contactsync.core.formulas import compile_formula

    try:
        formula = compile_formula(content.where, _fields(content))
    except FormulaError as exc:
        raise exc.located(key_path="content.where") from None
    if formula.result_type not in ("bool", "dyn", "null_type"):
        raise ConfigurationError(
            f"its type is {formula.result_type}; it must give true, false or null", key_path="content.where"
        )
    return Condition(formula)
