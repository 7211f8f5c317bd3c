"""Decide, from one listing, whether the recordings a sensor waits for are finished."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_recordings.core.recordings import is_ongoing


@dataclass
class OngoingCheck:
    """One poke's verdict: which targeted recordings are finished, ongoing or unknown."""

    finished: list[dict[str, Any]] = field(default_factory=list)
    ongoing_ids: list[str] = field(default_factory=list)
    missing_ids: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.ongoing_ids


def finished_row(recording: dict[str, Any]) -> dict[str, Any]:
    """What the sensor hands downstream about a finished recording (small, no secrets)."""
    return {
        "id": recording["id"],
        "end_time": recording.get("end_time"),
        "recording_duration": recording.get("recording_duration"),
    }


def check_ongoing(
    recordings: Iterable[dict[str, Any]],
    *,
    missing_ids: Iterable[str] = (),
    now: datetime,
    window: timedelta,
) -> OngoingCheck:
    """Sort listed recordings into finished and ongoing (see :func:`is_ongoing`)."""
    check = OngoingCheck(missing_ids=list(missing_ids))
    for recording in recordings:
        if is_ongoing(recording, now, window):
            check.ongoing_ids.append(recording["id"])
        else:
            check.finished.append(finished_row(recording))
    return check
