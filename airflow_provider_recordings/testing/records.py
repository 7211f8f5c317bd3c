"""How a stored row becomes a PostHog recording object.

Only times, a random ``salt`` and sparse overrides are stored; counters, URLs and the
person are derived from the salt on demand. That keeps a million recordings in a few
hundred megabytes while every recording still looks different and stays stable.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from airflow_provider_recordings.testing.timefmt import SECOND_US, from_us, iso, iso_us

ONGOING_US = 5 * 60 * SECOND_US
RETENTION_DAYS = 30
PERSON_POOL = 5000
_PERSON_NAMESPACE = uuid.UUID("6f1c2a3e-5b7d-4c9e-8a10-2b3c4d5e6f70")
_PERSON_EPOCH_US = 1_704_067_200 * SECOND_US  # 2024-01-01T00:00:00Z
_URLS = (
    "https://app.example.com/",
    "https://app.example.com/pricing",
    "https://app.example.com/signup",
    "https://app.example.com/checkout",
    "https://app.example.com/dashboard",
    "https://app.example.com/settings/billing",
    "https://docs.example.com/getting-started",
    "https://blog.example.com/2026/release-notes",
)
ORDER_FIELDS = (
    "start_time",
    "duration",
    "recording_duration",
    "active_seconds",
    "inactive_seconds",
    "console_error_count",
    "click_count",
    "activity_score",
)


class Metrics(NamedTuple):
    recording_duration: int
    active_seconds: int
    inactive_seconds: int
    click_count: int
    keypress_count: int
    mouse_activity_count: int
    console_log_count: int
    console_warn_count: int
    console_error_count: int
    activity_score: float


@dataclass(slots=True)
class RowView:
    """A consistent copy of one row, taken under the store lock."""

    id: str
    start_us: int
    end_us: int
    salt: int
    viewed: bool
    analyzed: bool
    distinct_id: str | None
    extra: dict[str, Any] | None


def _active(salt: int, duration: int) -> int:
    return duration * (26 + (salt & 0xFF)) // 300


def _clicks(salt: int, duration: int) -> int:
    return _active(salt, duration) * ((salt >> 8) & 0xFF) // 1024


def _keypresses(salt: int, duration: int) -> int:
    return _active(salt, duration) * ((salt >> 16) & 0xFF) // 512


def _mouse(salt: int, duration: int) -> int:
    return _active(salt, duration) * (32 + ((salt >> 24) & 0xFF)) // 16


def _console_errors(salt: int, duration: int) -> int:
    return max(0, ((salt >> 41) & 0xF) - 10)


def _activity_score(salt: int, duration: int) -> float:
    busy = _clicks(salt, duration) * 3 + _keypresses(salt, duration) + _mouse(salt, duration) / 20
    return round(min(100.0, busy / max(1.0, duration / 60)), 2)


FIELD_VALUES: dict[str, Callable[[int, int], float]] = {
    "recording_duration": lambda salt, duration: duration,
    "active_seconds": _active,
    "inactive_seconds": lambda salt, duration: duration - _active(salt, duration),
    "click_count": _clicks,
    "console_error_count": _console_errors,
    "activity_score": _activity_score,
}


def duration_of(start_us: int, end_us: int) -> int:
    return max(0, (end_us - start_us) // SECOND_US)


def metrics(salt: int, start_us: int, end_us: int) -> Metrics:
    duration = duration_of(start_us, end_us)
    active = _active(salt, duration)
    return Metrics(
        recording_duration=duration,
        active_seconds=active,
        inactive_seconds=duration - active,
        click_count=_clicks(salt, duration),
        keypress_count=_keypresses(salt, duration),
        mouse_activity_count=_mouse(salt, duration),
        console_log_count=((salt >> 32) & 0x3F) * min(duration, 600) // 600,
        console_warn_count=(salt >> 38) & 0x7,
        console_error_count=_console_errors(salt, duration),
        activity_score=_activity_score(salt, duration),
    )


def default_distinct_id(salt: int) -> str:
    return f"user-{(salt >> 48) % PERSON_POOL:04d}"


def distinct_id_of(row: RowView) -> str:
    return row.distinct_id if row.distinct_id is not None else default_distinct_id(row.salt)


def person_uuid(distinct_id: str) -> str:
    return str(uuid.uuid5(_PERSON_NAMESPACE, distinct_id))


def person(distinct_id: str) -> dict[str, Any]:
    number = zlib.crc32(distinct_id.encode()) % 1_000_000 + 1
    return {
        "id": number,
        "name": distinct_id,
        "distinct_ids": [distinct_id],
        "properties": {},
        "created_at": iso_us(_PERSON_EPOCH_US + (number % 17_520) * 3600 * SECOND_US),
        "uuid": person_uuid(distinct_id),
    }


def start_url(row: RowView) -> str:
    """The page the recording starts on, as answers show it (overrides included)."""
    if row.extra and isinstance(row.extra.get("start_url"), str):
        return str(row.extra["start_url"])
    return _URLS[(row.salt >> 45) & 0x7]


def is_ongoing(end_us: int, now_us: int) -> bool:
    return now_us - end_us < ONGOING_US


def order_field(field: str) -> str:
    """The recording field an ``order`` value sorts on (``duration`` is an alias)."""
    return "recording_duration" if field == "duration" else field


def summary(row: RowView, now_us: int) -> dict[str, Any]:
    """The object the list endpoint returns (the seed document's fields)."""
    distinct_id = distinct_id_of(row)
    body: dict[str, Any] = {"id": row.id, "distinct_id": distinct_id, "viewed": row.viewed}
    stats = metrics(row.salt, row.start_us, row.end_us)
    body.update(
        recording_duration=stats.recording_duration,
        active_seconds=stats.active_seconds,
        inactive_seconds=stats.inactive_seconds,
        start_time=iso_us(row.start_us),
        end_time=iso_us(row.end_us),
        click_count=stats.click_count,
        keypress_count=stats.keypress_count,
        mouse_activity_count=stats.mouse_activity_count,
        console_log_count=stats.console_log_count,
        console_warn_count=stats.console_warn_count,
        console_error_count=stats.console_error_count,
        start_url=_URLS[(row.salt >> 45) & 0x7],  # keep in step with start_url()
        person=person(distinct_id),
        storage="object_storage",
        snapshot_source="web",
        ongoing=is_ongoing(row.end_us, now_us),
        activity_score=stats.activity_score,
    )
    if row.extra:
        body.update(row.extra)
    return body


def detail(row: RowView, now_us: int) -> dict[str, Any]:
    """The retrieve endpoint's object: the summary plus retention information."""
    body = summary(row, now_us)
    start_day = from_us(row.start_us).replace(hour=0, minute=0, second=0, microsecond=0)
    expiry = start_day + timedelta(days=RETENTION_DAYS)
    body.update(
        viewers=[],
        retention_period_days=RETENTION_DAYS,
        expiry_time=iso(expiry),
        recording_ttl=max(0, (expiry - from_us(now_us)).days),
    )
    if row.extra:
        body.update(row.extra)
    return body


def apply_ongoing_mode(body: dict[str, Any], mode: str) -> dict[str, Any]:
    """Older deployments omit ``ongoing`` or send null; clients must cope with both."""
    if mode == "missing":
        body.pop("ongoing", None)
    elif mode == "null":
        body["ongoing"] = None
    return body
