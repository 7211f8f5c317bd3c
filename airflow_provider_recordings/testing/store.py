"""Recordings held column-wise, with an index sorted by (start_time, id).

Retention jobs page through tens of thousands of recordings, and load tests seed a
million, so rows live in typed arrays (a few dozen bytes each plus the id string) and
deletes leave tombstones that are compacted in bulk rather than shifting the index on
every delete.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_recordings.testing.records import RowView
from airflow_provider_recordings.testing.sharing import SharingState, new_token
from airflow_provider_recordings.testing.snapshots import SnapshotSpec

DELETED = 1
VIEWED = 2
ANALYZED = 4
_COMPACT_MIN = 1024
_BULK_INSERT = 2048


@dataclass(frozen=True, slots=True)
class NewRow:
    id: str
    start_us: int
    end_us: int
    salt: int
    distinct_id: str | None = None
    extra: dict[str, Any] | None = None
    flags: int = 0
    snapshot: SnapshotSpec | None = None


@dataclass(frozen=True, slots=True)
class Deletion:
    """When a recording was deleted (epoch seconds) and by whom (an email, or None)."""

    at: int
    by: str | None


class RecordingStore:
    """All recordings of the emulated project. Callers hold ``lock`` across a query."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.ids: list[str] = []
        self.starts = array("q")
        self.ends = array("q")
        self.salts = array("Q")
        self.flags = bytearray()
        self.distinct: dict[int, str] = {}
        self.extra: dict[int, dict[str, Any]] = {}
        #: The sharing table: it outlives the recording (PostHog keeps a deleted
        #: recording's sharing configuration), in the order configurations were created.
        self.sharing: dict[int, SharingState] = {}
        self.snapshots: dict[int, SnapshotSpec] = {}
        self.deletions: dict[int, Deletion] = {}
        #: Share passwords are numbered across the project, like a table's primary key.
        self.password_ids = itertools.count(1)
        self._by_id: dict[str, int] = {}
        self._order = array("q")
        self._tombstones = 0
        self._live = 0

    # -- reading -------------------------------------------------------------------

    def __len__(self) -> int:
        return self._live

    def row_of(self, recording_id: str) -> int | None:
        """The live row holding ``recording_id``, or None if unknown or deleted."""
        row = self._by_id.get(recording_id)
        if row is None or self.flags[row] & DELETED:
            return None
        return row

    def ever_existed(self, recording_id: str) -> bool:
        return recording_id in self._by_id

    def last_row_of(self, recording_id: str) -> int | None:
        """The newest row that held ``recording_id``, deleted or not."""
        return self._by_id.get(recording_id)

    def is_live(self, row: int) -> bool:
        return not self.flags[row] & DELETED

    def view(self, row: int) -> RowView:
        flags = self.flags[row]
        return RowView(
            id=self.ids[row],
            start_us=self.starts[row],
            end_us=self.ends[row],
            salt=self.salts[row],
            viewed=bool(flags & VIEWED),
            analyzed=bool(flags & ANALYZED),
            distinct_id=self.distinct.get(row),
            extra=self.extra.get(row),
        )

    def order(self) -> array[int]:
        """Rows sorted by (start, id); may contain deleted rows, which callers skip."""
        if self._tombstones >= max(_COMPACT_MIN, len(self._order) // 8):
            self._order = array("q", (r for r in self._order if not self.flags[r] & DELETED))
            self._tombstones = 0
        return self._order

    def sort_key(self) -> Callable[[int], tuple[int, str]]:
        starts, ids = self.starts, self.ids
        return lambda row: (starts[row], ids[row])

    def start_key(self) -> Callable[[int], int]:
        return self.starts.__getitem__

    def live_rows(self) -> Iterator[int]:
        flags = self.flags
        return (row for row in self._order if not flags[row] & DELETED)

    # -- writing -------------------------------------------------------------------

    def add(self, rows: Iterable[NewRow]) -> list[int]:
        """Append rows; a few are inserted into the index, many trigger one re-sort."""
        added: list[int] = []
        try:
            added.extend(self._append(new) for new in rows)  # keeps rows added before an error
        finally:
            self._index(added)
        return added

    def _index(self, added: list[int]) -> None:
        if len(added) > _BULK_INSERT:
            self._resort()
            return
        key = self.sort_key()
        for row in added:
            bisect.insort(self._order, row, key=key)

    def _append(self, new: NewRow) -> int:
        if new.end_us < new.start_us:
            raise ValueError(f"recording {new.id}: end_time is before start_time")
        if self.row_of(new.id) is not None:
            raise ValueError(f"recording {new.id} already exists")
        row = len(self.ids)
        self.ids.append(new.id)
        self.starts.append(new.start_us)
        self.ends.append(new.end_us)
        self.salts.append(new.salt & 0xFFFF_FFFF_FFFF_FFFF)
        self.flags.append(new.flags & ~DELETED)
        if new.distinct_id is not None:
            self.distinct[row] = new.distinct_id
        if new.extra:
            self.extra[row] = dict(new.extra)
        if new.snapshot is not None:
            self.snapshots[row] = new.snapshot
        previous = self._by_id.get(new.id)
        if previous is not None:
            self._forget(previous)
        self._by_id[new.id] = row
        self._live += 1
        return row

    def _forget(self, row: int) -> None:
        """Drop the side data of a deleted row whose id is being reused."""
        self.distinct.pop(row, None)
        self.extra.pop(row, None)
        self.sharing.pop(row, None)
        self.snapshots.pop(row, None)
        self.deletions.pop(row, None)

    def _resort(self) -> None:
        flags = self.flags
        live = [row for row in range(len(self.ids)) if not flags[row] & DELETED]
        # Two stable sorts (id, then start) give (start, id) order without building a
        # million key tuples.
        live.sort(key=self.ids.__getitem__)
        live.sort(key=self.starts.__getitem__)
        self._order = array("q", live)
        self._tombstones = 0

    def delete(self, row: int, *, at: int = 0, by: str | None = None) -> None:
        """Delete a row; ``at`` (epoch seconds) and ``by`` are what snapshots answer later."""
        if self.flags[row] & DELETED:
            return
        self.flags[row] |= DELETED
        self.deletions[row] = Deletion(at, by)
        self._tombstones += 1
        self._live -= 1

    def set_flag(self, row: int, flag: int, value: bool) -> None:
        if value:
            self.flags[row] |= flag
        else:
            self.flags[row] &= ~flag

    def set_end(self, row: int, end_us: int) -> None:
        self.ends[row] = max(end_us, self.starts[row])

    def sharing_state(self, row: int, *, create: bool) -> SharingState | None:
        state = self.sharing.get(row)
        if state is None and create:
            state = self.sharing[row] = SharingState(new_token())
        return state

    def shared_count(self) -> int:
        return sum(1 for row, state in self.sharing.items() if state.enabled and self.is_live(row))

    def shared_ids(self) -> list[str]:
        """Ids with an enabled sharing configuration, in the sharing table's order (one
        order PostHog's unordered query may give); a deleted recording's configuration
        stays, and so does an old one left enabled by a token refresh."""
        return [self.ids[row] for row, state in self.sharing.items() if state.listed_as_shared]
