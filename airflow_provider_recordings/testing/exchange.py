"""The request and answer objects passed between the HTTP layer and the actions."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_recordings.testing import errors, routes
from airflow_provider_recordings.testing.auth import ApiKey


@dataclass
class Response:
    """An answer; ``stream`` (with its ``length``, when known) replaces ``body`` for
    bodies too large to hold in memory."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False
    throttled: bool = False
    stream: Iterable[bytes] | None = None
    length: int | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        data = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, data, {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def error(cls, exc: errors.ApiError) -> Response:
        return cls.json(exc.status, exc.body(), exc.headers)


@dataclass
class Call:
    """A parsed API request, as handed over by the HTTP layer."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    route: routes.Route | None = None
    key: ApiKey | None = None
    raw_query: str = ""

    @property
    def kind(self) -> str:
        return "other" if self.route is None else self.route.kind(self.method)

    def json_body(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise errors.parse_error(f"JSON parse error - {exc}") from exc
        if not isinstance(data, dict):
            raise errors.parse_error("JSON parse error - expected an object")
        return data
