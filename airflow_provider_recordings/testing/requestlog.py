"""What the emulator was asked and what it answered.

Tests assert on client behaviour (how many deletes, which page sizes, whether a retry
waited), which is only observable from the server side.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

KINDS = (
    "list",
    "retrieve",
    "update",
    "delete",
    "bulk_delete",
    "snapshots",
    "sharing_get",
    "sharing_patch",
    "sharing_refresh",
    "sharing_password_create",
    "sharing_password_delete",
    "persons_list",
    "person_retrieve",
    "person_destroy",
    "persons_bulk_delete",
    "person_delete_recordings",
    "playlist_retrieve",
    "playlist_recordings",
    "other",
)


@dataclass(frozen=True)
class RequestRecord:
    """One API request. ``status`` is 0 before handling and for dropped connections."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    authorization: str | None
    time: float
    body: Any
    kind: str = "other"


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._by_kind: Counter[str] = Counter()
        self._by_endpoint: Counter[str] = Counter()
        self._by_method: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._throttled = 0
        self._faults = 0

    def append(self, record: RequestRecord, *, throttled: bool, faulted: bool) -> None:
        with self._lock:
            self._records.append(record)
            self._by_kind[record.kind] += 1
            self._by_endpoint[f"{record.method} {record.kind}"] += 1
            self._by_method[record.method] += 1
            self._by_status[record.status] += 1
            self._throttled += throttled
            self._faults += faulted

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget the requests and reset the counters, so stats match what is listed."""
        with self._lock:
            self._records.clear()
            self._by_kind.clear()
            self._by_endpoint.clear()
            self._by_method.clear()
            self._by_status.clear()
            self._throttled = 0
            self._faults = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            counts: dict[str, Any] = {kind: self._by_kind.get(kind, 0) for kind in KINDS}
            counts.update(
                total=len(self._records),
                throttled=self._throttled,
                faults=self._faults,
                requests=dict(self._by_endpoint),
                by_method=dict(self._by_method),
                by_status={str(status): n for status, n in sorted(self._by_status.items())},
            )
            return counts
