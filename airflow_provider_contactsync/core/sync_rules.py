"""The per-contact sync rules of a definition: soft deletes, conditional lists, consent.

Each rule is a CEL formula on the transformed row (source fields and transform outputs), compiled
once. Per row, the rules give the contact's *intent*, carried to the load inside the staged import
item under :data:`SYNC_KEY` (so a change of intent is a change of the contact's digest, and the
load sends it). The key is there only when a rule says something, so definitions without rules
stage exactly what they did before.

Intent keys (all optional):

- ``delete``: the row is deleted in the source (``source.deleted_when`` is true).
- ``in`` / ``out``: conditional lists (``destination.lists``) whose condition is true / false.
- ``email`` / ``sms``: consent, true (opted in) or false (opted out); null conditions leave no key.
- ``email_at`` / ``sms_at``: the opt-in's time (ISO 8601, UTC), for the resubscribe rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError, FormulaError, RowError
from airflow_provider_contactsync.core.spec.models import SourceDefinition

SYNC_KEY = "_sync"
"""The key of an import item that holds the contact's intent; stripped before anything is sent."""

_BOOL_TYPES = frozenset({"bool", "dyn", "null_type"})
_TIME_TYPES = frozenset({"timestamp", "string", "dyn", "null_type"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One condition of a definition.

    :ivar key_path: where it is written (``destination.lists.5``), for errors.
    :ivar intent: the intent key its value fills.
    :ivar kind: ``condition`` (true/false/null) or ``timestamp``.
    """

    key_path: str
    intent: str
    text: str
    kind: str = "condition"
    list_id: int | None = None


def rules_of(definition: SourceDefinition) -> list[Rule]:
    """Every rule a definition writes, in a stable order."""
    rules: list[Rule] = []
    if definition.source.deleted_when is not None:
        rules.append(Rule("source.deleted_when", "delete", definition.source.deleted_when))
    for list_id, text in definition.destination.lists.items():
        rules.append(Rule(f"destination.lists.{list_id}", "list", text, list_id=list_id))
    consent = definition.consent
    if consent is not None:
        for channel in ("email", "sms"):
            text = getattr(consent, channel)
            if text is not None:
                rules.append(Rule(f"consent.{channel}", channel, text))
            at = getattr(consent, f"{channel}_opt_in_at")
            if at is not None:
                rules.append(Rule(f"consent.{channel}_opt_in_at", f"{channel}_at", at, kind="timestamp"))
    return rules


def rule_fields(definition: SourceDefinition) -> list[str]:
    """What a rule can read: the source's fields and the transform's outputs."""
    return list(dict.fromkeys([*definition.source.fields, *definition.transform]))


def check_rules(definition: SourceDefinition) -> list[ConfigurationError]:
    """Every rule that does not compile or cannot give the right type, located at its key."""
    return SyncRules.compile(definition, collect=True).problems


class SyncRules:
    """A definition's rules, compiled once; :meth:`intent` applies them to one row."""

    def __init__(self, compiled: list[tuple[Rule, Any]], problems: list[ConfigurationError]) -> None:
        self._compiled = compiled
        self.problems = problems
        self._delete = next(((r, f) for r, f in compiled if r.intent == "delete"), None)

    @classmethod
    def compile(cls, definition: SourceDefinition, *, collect: bool = False) -> SyncRules:
        """Compile the rules; a problem raises (or, with ``collect``, is kept in :attr:`problems`)."""
        from airflow_provider_contactsync.core.formulas import compile_formula

        fields = rule_fields(definition)
        compiled: list[tuple[Rule, Any]] = []
        problems: list[ConfigurationError] = []
        for rule in rules_of(definition):
            try:
                formula = compile_formula(rule.text, fields)
            except FormulaError as exc:
                problems.append(exc.located(key_path=rule.key_path))
                continue
            allowed = _BOOL_TYPES if rule.kind == "condition" else _TIME_TYPES
            if formula.result_type not in allowed:
                wanted = "true, false or null" if rule.kind == "condition" else "a timestamp (or ISO 8601 text)"
                problems.append(
                    ConfigurationError(
                        f"its type is {formula.result_type}; it must give {wanted}", key_path=rule.key_path
                    )
                )
                continue
            compiled.append((rule, formula))
        if problems and not collect:
            raise problems[0]
        return cls(compiled, problems)

    @property
    def empty(self) -> bool:
        return not self._compiled

    def deleted(self, row: Mapping[str, Any]) -> tuple[bool, RowError | None]:
        """Whether ``source.deleted_when`` marks the row deleted (a row it fails on is rejected)."""
        if self._delete is None:
            return False, None
        rule, formula = self._delete
        try:
            value = formula.evaluate(row)
        except RowError as exc:
            return False, RowError(f"{rule.key_path}: {exc.reason}", field=rule.key_path, value=exc.value)
        if value is not None and not isinstance(value, bool):
            return False, RowError(f"{rule.key_path} gave {value!r}, not true or false", field=rule.key_path)
        return value is True, None

    def intent(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], list[RowError]]:
        """The intent of a row that is not deleted, and the rules that failed on it (they reject the row)."""
        intent: dict[str, Any] = {}
        problems: list[RowError] = []
        joined: list[int] = []
        left: list[int] = []
        for rule, formula in self._compiled:
            if rule.intent == "delete":
                continue
            try:
                value = formula.evaluate(row)
            except RowError as exc:
                problems.append(RowError(f"{rule.key_path}: {exc.reason}", field=rule.key_path, value=exc.value))
                continue
            if value is None:
                continue  # unknown: nothing changes in Brevo
            if rule.kind == "timestamp":
                try:
                    intent[rule.intent] = _instant(value)
                except ValueError as exc:
                    problems.append(RowError(f"{rule.key_path}: {exc}", field=rule.key_path, value=value))
                continue
            if not isinstance(value, bool):
                problems.append(
                    RowError(f"{rule.key_path} gave {value!r}, not true, false or null", field=rule.key_path)
                )
                continue
            if rule.intent == "list":
                (joined if value else left).append(rule.list_id)  # type: ignore[arg-type]
            else:
                intent[rule.intent] = value
        if joined:
            intent["in"] = joined
        if left:
            intent["out"] = left
        return intent, problems


def _instant(value: Any) -> str:
    """An opt-in time as ISO 8601 UTC text (naive values are UTC)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 time") from None
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return moment.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc).isoformat()
    raise ValueError(f"{value!r} is not a time")


def intent_of(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """The intent staged with an import item (empty when none)."""
    return item.get(SYNC_KEY) or {}


def without_intent(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Import items as Brevo takes them: the intent key removed."""
    return [{k: v for k, v in item.items() if k != SYNC_KEY} if SYNC_KEY in item else dict(item) for item in items]
