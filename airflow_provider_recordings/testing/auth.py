"""Personal API keys with scopes and project access, checked like PostHog checks them.

Clients must surface a missing scope or a wrong project clearly instead of retrying, so
the emulator distinguishes these failures exactly as the service does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from airflow_provider_recordings.testing import errors

ALL_SCOPES = (
    "session_recording:read",
    "session_recording:write",
    "sharing_configuration:read",
    "sharing_configuration:write",
    "person:read",
    "person:write",
    "session_recording_playlist:read",
    "session_recording_playlist:write",
)
#: The user a key belongs to, as PostHog names them (``created_by_email``, ``deleted_by``).
DEFAULT_EMAIL = "emulator.user@example.com"


@dataclass(frozen=True)
class ApiKey:
    value: str
    scopes: frozenset[str]
    projects: frozenset[str]
    email: str = DEFAULT_EMAIL

    def has_scope(self, scope: str) -> bool:
        """``:write`` implies ``:read``, and ``*`` grants everything, as on PostHog."""
        if "*" in self.scopes or scope in self.scopes:
            return True
        return scope.endswith(":read") and scope[: -len(":read")] + ":write" in self.scopes


class KeyRing:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKey] = {}

    def add(
        self, value: str, scopes: Iterable[str], projects: Iterable[str], email: str = DEFAULT_EMAIL
    ) -> ApiKey:
        if not value:
            raise ValueError("an API key cannot be empty")
        key = ApiKey(value, frozenset(scopes), frozenset(str(p) for p in projects), email)
        with self._lock:
            self._keys[value] = key
        return key

    def remove(self, value: str) -> None:
        with self._lock:
            self._keys.pop(value, None)

    def authenticate(self, authorization: str | None) -> ApiKey:
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            raise errors.not_authenticated()
        with self._lock:
            key = self._keys.get(token.strip())
        if key is None:
            raise errors.not_authenticated()
        return key


def require_project(key: ApiKey, project_id: str) -> None:
    if project_id not in key.projects:
        raise errors.permission_denied(
            f"API key does not have access to the requested project: ID {project_id}."
        )


def require_scope(key: ApiKey, scope: str) -> None:
    if not key.has_scope(scope):
        raise errors.permission_denied(f"API key missing required scope '{scope}'")
