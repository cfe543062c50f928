"""Brevo-shaped API errors: raised anywhere in a handler, turned into ``{"code", "message"}`` bodies."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An answer Brevo would give as an error, with its HTTP status and body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.metadata = metadata
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.metadata is not None:
            out["metadata"] = self.metadata
        return out


def invalid(message: str, status: int = 400) -> ApiError:
    return ApiError(status, "invalid_parameter", message)


def missing(message: str) -> ApiError:
    return ApiError(400, "missing_parameter", message)


def out_of_range(message: str) -> ApiError:
    return ApiError(400, "out_of_range", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "document_not_found", message)


def duplicate(message: str, identifiers: list[str] | None = None) -> ApiError:
    meta = {"duplicate_identifiers": identifiers} if identifiers else None
    return ApiError(400, "duplicate_parameter", message, meta)
