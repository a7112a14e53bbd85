"""The offline Hub's error answer: an HTTP status, a message and the Hub's ``X-Error-Code``."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["HubHTTPError"]


class HubHTTPError(Exception):
    """An error answer: HTTP status, message and the Hub's ``X-Error-Code`` (drives client exceptions)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})  # more fields for the JSON body
