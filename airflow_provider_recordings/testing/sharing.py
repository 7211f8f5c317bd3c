"""Public-link sharing state of a recording.

Access tokens are secrets (anyone holding one can watch the recording), so they are
generated with ``secrets`` and tests can fetch the live one to check it never leaks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_recordings.testing.timefmt import iso


def new_token() -> str:
    return secrets.token_urlsafe(16)


@dataclass(slots=True)
class SharingState:
    access_token: str
    enabled: bool = False
    created_at: datetime | None = None

    def enable(self, enabled: bool, now: datetime) -> None:
        self.enabled = enabled
        if enabled and self.created_at is None:
            self.created_at = now

    def rotate(self) -> None:
        self.access_token = new_token()


def describe(state: SharingState | None) -> dict[str, Any]:
    """The sharing object; a never-enabled recording shows a throwaway token each time."""
    if state is None or state.created_at is None:
        return _body(None, False, new_token())
    return _body(iso(state.created_at), state.enabled, state.access_token)


def _body(created_at: str | None, enabled: bool, token: str) -> dict[str, Any]:
    return {
        "created_at": created_at,
        "enabled": enabled,
        "access_token": token,
        "settings": {},
        "password_required": False,
        "share_passwords": [],
    }
