"""Time conversions shared by the store and the API.

Recordings keep their times as integer microseconds since the epoch: a million of them
fit in compact arrays, and integer keys sort and bisect without float surprises.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND_US = 1_000_000
_RELATIVE = re.compile(r"^-(\d+)([wdhm])$")
_RELATIVE_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}


def to_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    return (delta.days * 86400 + delta.seconds) * SECOND_US + delta.microseconds


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def iso(value: datetime) -> str:
    """DRF's rendering: ISO 8601 in UTC with a ``Z`` suffix."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def iso_us(value: int) -> str:
    return iso(from_us(value))


def parse_filter_date(text: str, now: datetime, *, end_of_day: bool) -> datetime:
    """A ``date_from``/``date_to`` value: ``-Nd``/``-Nh``/``-Nm`` (minutes)/``-Nw``, or ISO.

    A bare date as ``date_to`` means the end of that day, so the bound stays inclusive of
    the whole day the user named.
    """
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(seconds=int(match.group(1)) * _RELATIVE_UNITS[match.group(2)])
    if len(text) == 10:
        day = date.fromisoformat(text)
        moment = time.max if end_of_day else time.min
        return datetime.combine(day, moment, tzinfo=UTC)
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
