"""Salesforce-shaped errors: raised anywhere in a handler, answered as ``[{"message", "errorCode", ...}]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One entry of a Salesforce error array (``fields`` only for DML errors, as Salesforce does)."""

    code: str
    message: str
    fields: list[str] | None = field(default=None)

    def rest(self) -> dict[str, Any]:
        """The REST form: ``{"message", "errorCode"[, "fields"]}``."""
        out: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            out["fields"] = self.fields
        return out

    def composite(self) -> dict[str, Any]:
        """The form inside a composite/sobjects result: ``{"statusCode", "message", "fields"}``."""
        return {"statusCode": self.code, "message": self.message, "fields": self.fields or []}


class ApiError(Exception):
    """An answer Salesforce would give as an error: an HTTP status and one or more problems."""

    def __init__(self, status: int, problems: list[Problem], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} " + "; ".join(f"{p.code}: {p.message}" for p in problems))
        self.status = status
        self.problems = problems
        self.headers = headers or {}

    @property
    def code(self) -> str:
        return self.problems[0].code

    def body(self) -> list[dict[str, Any]]:
        return [p.rest() for p in self.problems]


def fail(status: int, code: str, message: str, fields: list[str] | None = None) -> ApiError:
    return ApiError(status, [Problem(code, message, fields)])


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    return fail(404, "NOT_FOUND", message)


def invalid_session() -> ApiError:
    return fail(401, "INVALID_SESSION_ID", "Session expired or invalid")


def json_parser(message: str) -> ApiError:
    return fail(400, "JSON_PARSER_ERROR", message)
