"""Public-link sharing state of a recording, and the passwords that can protect a link.

Access tokens are secrets (anyone holding one can watch the recording), so they are
generated with ``secrets`` and tests can fetch the live one to check it never leaks.
Share passwords are shown once, when created, and only hashed afterwards, as PostHog
does (``posthog/api/sharing.py``, ``posthog/models/share_password.py``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_recordings.testing import errors
from airflow_provider_recordings.testing.timefmt import iso

MIN_PASSWORD = 8
MAX_NOTE = 100


def new_token() -> str:
    return secrets.token_urlsafe(16)


def new_password() -> str:
    """PostHog's ``generate_default_password``."""
    return secrets.token_urlsafe(16)


@dataclass(slots=True)
class SharePassword:
    id: int
    salt: str
    digest: str
    note: str
    created_at: datetime
    created_by_email: str
    is_active: bool = True

    def matches(self, raw: str) -> bool:
        return secrets.compare_digest(self.digest, _digest(self.salt, raw))

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": iso(self.created_at),
            "note": self.note,
            "created_by_email": self.created_by_email,
            "is_active": self.is_active,
        }


@dataclass(slots=True)
class SharingState:
    access_token: str
    enabled: bool = False
    created_at: datetime | None = None
    password_required: bool = False
    passwords: list[SharePassword] = field(default_factory=list)
    #: A refresh leaves the old configuration behind, still enabled (only its token
    #: expires), so the recording stays in ``synthetic-shared`` even once disabled.
    stale_enabled: bool = False

    def enable(self, enabled: bool, now: datetime) -> None:
        self.enabled = enabled
        self.save(now)

    def save(self, now: datetime) -> None:
        """The configuration is stored from its first change on (``created_at`` is set)."""
        if self.created_at is None:
            self.created_at = now

    def rotate(self) -> None:
        self.stale_enabled = self.stale_enabled or self.enabled
        self.access_token = new_token()

    @property
    def listed_as_shared(self) -> bool:
        """Whether PostHog's ``enabled=True`` filter finds a configuration of it."""
        return self.enabled or self.stale_enabled

    def add_password(
        self, password_id: int, raw: str, note: str, email: str, now: datetime
    ) -> tuple[SharePassword, str]:
        salt = secrets.token_hex(8)
        entry = SharePassword(password_id, salt, _digest(salt, raw), note, now, email)
        self.passwords.append(entry)
        self.save(now)
        return entry, raw

    def deactivate_password(self, password_id: int) -> bool:
        for entry in self.passwords:
            if entry.id == password_id and entry.is_active:
                entry.is_active = False
                return True
        return False

    def active_passwords(self) -> list[SharePassword]:
        """Newest first, like the model's ``ordering = ["-created_at"]``."""
        active = [entry for entry in self.passwords if entry.is_active]
        return sorted(active, key=lambda entry: (entry.created_at, entry.id), reverse=True)


def _digest(salt: str, raw: str) -> str:
    return hashlib.sha256(f"{salt}:{raw}".encode()).hexdigest()


def describe(state: SharingState | None) -> dict[str, Any]:
    """The sharing object; a never-saved configuration shows a throwaway token each time."""
    if state is None or state.created_at is None:
        return _body(None, False, new_token(), False, [])
    passwords = [entry.body() for entry in state.active_passwords()]
    return _body(iso(state.created_at), state.enabled, state.access_token, state.password_required, passwords)


def _body(
    created_at: str | None,
    enabled: bool,
    token: str,
    password_required: bool,
    passwords: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "created_at": created_at,
        "enabled": enabled,
        "access_token": token,
        "settings": {},
        "password_required": password_required,
        "share_passwords": passwords,
    }


def password_answer(entry: SharePassword, raw: str) -> dict[str, Any]:
    """The 201 of ``POST sharing/passwords/``: the raw password, this once."""
    return {
        "id": entry.id,
        "password": raw,
        "note": entry.note,
        "created_at": iso(entry.created_at),
        "created_by_email": entry.created_by_email,
    }


def parse_password_request(payload: dict[str, Any]) -> tuple[str, str]:
    """``SharePasswordCreateSerializer``: an optional ``raw_password`` of 8+ characters
    (blank means generate one) and an optional ``note`` of up to 100."""
    raw = _char_field(payload, "raw_password")
    if raw and len(raw) < MIN_PASSWORD:
        raise errors.invalid_input("Password must be at least 8 characters long.", "raw_password")
    note = _char_field(payload, "note")
    if len(note) > MAX_NOTE:
        raise errors.invalid_input(f"Ensure this field has no more than {MAX_NOTE} characters.", "note")
    return raw or new_password(), note


def _char_field(payload: dict[str, Any], name: str) -> str:
    """DRF's CharField: strings, numbers turned into strings, nothing else."""
    if name not in payload:
        return ""
    value = payload[name]
    if value is None:
        raise errors.invalid_input("This field may not be null.", name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise errors.invalid_input("Not a valid string.", name)
    return str(value)
