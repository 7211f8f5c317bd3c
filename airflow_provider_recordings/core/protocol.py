"""Requests as data, and the meaning of PostHog's answers.

A driver (the sync hook or the async trigger) turns an :class:`ApiRequest` into bytes
on the wire and hands the answer back to :func:`interpret`, which returns the decoded
body or raises the typed error that says whether to retry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

from airflow_provider_recordings import __version__
from airflow_provider_recordings.core.config import RECORDING, ClientConfig
from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogAuthError,
    PostHogBadRequestError,
    PostHogConfigError,
    PostHogMalformedResponseError,
    PostHogNotFoundError,
    PostHogPermissionError,
    PostHogRateLimitError,
    PostHogRecordingApiFailure,
    PostHogServerError,
)

USER_AGENT = f"airflow-provider-recordings/{__version__}"


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request, before any I/O.

    ``path`` is relative to the project's ``resource`` root (``session_recordings/``
    unless said otherwise); ``url`` (an absolute pagination link) replaces path and
    params when set. ``kind`` names the rate-limit buckets the call counts in.
    """

    method: str
    path: str = ""
    params: tuple[tuple[str, str], ...] = ()
    json_body: Any = None
    url: str | None = None
    kind: str = RECORDING
    resource: str = "session_recordings"

    def target(self, config: ClientConfig) -> str:
        """The absolute URL of this request."""
        if self.url is not None:
            return self.url
        base = f"{config.base_url}{config.resource_path(self.resource)}{self.path}"
        return f"{base}?{urlencode(self.params)}" if self.params else base

    def describe(self, config: ClientConfig) -> str:
        """Method and path for messages and logs (no host, no query, never a secret)."""
        if self.url is not None:
            return f"{self.method} {self.url.split('?', 1)[0]}"
        return f"{self.method} {config.resource_path(self.resource)}{self.path}"


def request_headers(config: ClientConfig, has_body: bool) -> dict[str, str]:
    """Headers of every request; the only place the API key is ever written."""
    headers = {
        "Authorization": f"Bearer {config.api_key}",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    if has_body:
        headers["Content-Type"] = "application/json"
    return headers


#: Path segments every HTTP client resolves (``session_recordings/../`` is the project).
DOT_SEGMENTS = (".", "..")


def recording_path(recording_id: str, suffix: str = "") -> str:
    """Path of one recording, refusing ids that would address something else."""
    if not isinstance(recording_id, str) or not recording_id.strip():
        raise PostHogConfigError(f"recording id must be a non-empty string, got {recording_id!r}")
    if "/" in recording_id or any(ch.isspace() for ch in recording_id):
        raise PostHogConfigError(f"recording id {recording_id!r} contains '/' or white space")
    if recording_id in DOT_SEGMENTS:
        raise PostHogConfigError(f"recording id {recording_id!r} is a relative path, not an id")
    return f"{quote(recording_id, safe='')}/{suffix}"


def encode_param(value: Any) -> str:
    """Encode a query value the way PostHog decodes it: lists and dicts as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset | dict):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return json.dumps(list(items) if not isinstance(items, dict) else items, separators=(",", ":"))
    return str(value)


def encode_params(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Query parameters in a stable order, skipping None values."""
    return tuple((key, encode_param(value)) for key, value in params.items() if value is not None)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _decode_json(body: bytes) -> Any:
    return json.loads(body.decode("utf-8"))


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    """PostHog's ``detail`` (or ``error``) and ``code`` from an error body, if any.

    A body that is not PostHog's JSON (a proxy's or load balancer's page) is not quoted:
    such pages can echo the request, Authorization header included.
    """
    try:
        data = _decode_json(body)
    except (ValueError, UnicodeDecodeError):
        return (f"a non-JSON answer of {len(body)} bytes" if body.strip() else None), None
    if isinstance(data, dict):
        detail = data.get("detail") or data.get("error")
        attr = data.get("attr")
        if detail and attr:
            detail = f"{detail} (attr: {attr})"
        return (str(detail) if detail else None), (str(data["code"]) if data.get("code") else None)
    return None, None


#: What to check in the connection when PostHog refuses the key.
_AUTH_HINTS = {
    401: "check the personal API key in its password field",
    403: "give its personal API key the scope the call needs, and access to the project in extra.project_id",
}


def _about_the_key(detail: str | None) -> bool:
    """Whether a 403 is about the key's scopes or projects (which the connection can fix),
    not an action PostHog refuses to every key (bulk delete, say)."""
    text = (detail or "").lower()
    return "scope" in text or "access to the requested project" in text


_STATUS_ERRORS: dict[int, type[PostHogApiError]] = {
    400: PostHogBadRequestError,
    401: PostHogAuthError,
    403: PostHogPermissionError,
    404: PostHogNotFoundError,
}


def interpret(
    request: ApiRequest,
    config: ClientConfig,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> Any:
    """Decode a successful answer or raise the error that describes the failure.

    ``headers`` must be case-insensitive for lookups (both ``requests`` and ``httpx``
    give such mappings).
    """
    where = request.describe(config)
    if 200 <= status < 300:
        if status == 204 or not body.strip():
            return None
        try:
            return _decode_json(body)
        except (ValueError, UnicodeDecodeError):
            raise PostHogMalformedResponseError(
                f"{where} -> {status}: the body is not valid JSON ({len(body)} bytes, possibly cut short)",
                method=request.method,
                path=where.split(" ", 1)[1],
                status=status,
            ) from None

    detail, code = _error_fields(body)
    if detail and config.api_key in detail:
        detail = detail.replace(config.api_key, "***")
    fields: dict[str, Any] = {"method": request.method, "path": where.split(" ", 1)[1], "status": status}
    fields.update(detail=detail, code=code)
    message = f"{where} -> {status}: {detail or 'no detail given'}"
    if status == 401 or (status == 403 and _about_the_key(detail)):
        message += f" (PostHog connection {config.conn_id!r}: {_AUTH_HINTS[status]})"
    if status == 429:
        wait = parse_retry_after(headers.get("Retry-After"), now=now)
        hint = f"; PostHog asks to wait {wait:g} s" if wait is not None else "; no Retry-After given"
        raise PostHogRateLimitError(message + hint, retry_after=wait, **fields)
    if status >= 500:
        error_class = PostHogRecordingApiFailure if code == "recording_api_failure" else PostHogServerError
        raise error_class(message, **fields)
    raise _STATUS_ERRORS.get(status, PostHogApiError)(message, **fields)
