"""Facts about one recording that every operator and the sensor decide on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

#: PostHog calls a recording ongoing while it received data in the last five minutes.
DEFAULT_ONGOING_WINDOW = timedelta(minutes=5)


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from PostHog's ISO strings (``Z`` or an offset); None if absent."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_ongoing(recording: dict[str, Any], now: datetime, window: timedelta = DEFAULT_ONGOING_WINDOW) -> bool:
    """Whether the recording may still be receiving data.

    ``ongoing`` is missing or null on older deployments (PostHog issue #41838); then a
    recording counts as ongoing while its ``end_time`` is within ``window`` of now, and
    one without a usable ``end_time`` counts as ongoing too: doubt never deletes.
    """
    flag = recording.get("ongoing")
    if isinstance(flag, bool):
        return flag
    end_time = parse_time(recording.get("end_time"))
    return end_time is None or now - end_time < window


def isoformat(moment: datetime) -> str:
    """UTC ISO 8601 with a ``Z``, as PostHog writes it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
