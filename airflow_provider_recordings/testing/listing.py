"""The list endpoint's query language, cursors and paging.

It is strict where PostHog is strict (unknown parameters, bad values and bad cursors are
400s) and lenient where PostHog is lenient (JSON-looking values are decoded), because a
client tested against a looser emulator breaks in production.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_recordings.testing import errors, records
from airflow_provider_recordings.testing.store import VIEWED, RecordingStore
from airflow_provider_recordings.testing.timefmt import parse_filter_date, to_us

ACCEPTED = frozenset(
    {
        "limit",
        "offset",
        "after",
        "date_from",
        "date_to",
        "person_uuid",
        "distinct_ids",
        "session_ids",
        "order",
        "order_direction",
        "filter_test_accounts",
        "properties",
        "events",
        "actions",
        "operand",
        "kind",
        "hide_viewed_recordings",
    }
)
DEFAULT_LIMIT = 50
DEFAULT_DATE_FROM = "-3d"


@dataclass(frozen=True)
class Cursor:
    order: str
    descending: bool
    key: float
    id: str

    def encode(self) -> str:
        raw = json.dumps({"o": self.order, "d": self.descending, "k": self.key, "i": self.id})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
            cursor = cls(str(data["o"]), bool(data["d"]), data["k"], str(data["i"]))
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise errors.invalid_input("Invalid cursor", "after") from exc
        if not isinstance(cursor.key, int | float) or isinstance(cursor.key, bool):
            raise errors.invalid_input("Invalid cursor", "after")
        return cursor


@dataclass(frozen=True)
class ListQuery:
    limit: int
    offset: int | None
    after: Cursor | None
    date_from_us: int | None
    date_to_us: int | None
    session_ids: tuple[str, ...] | None
    distinct_ids: frozenset[str] | None
    person_uuid: str | None
    order: str
    descending: bool
    hide_viewed: bool

    def cursor_for(self, key: float, recording_id: str) -> str:
        return Cursor(self.order, self.descending, key, recording_id).encode()


@dataclass
class Page:
    rows: list[int]
    keys: list[float]
    has_next: bool
    count: int | None


# -- parsing ---------------------------------------------------------------------------


def _decode(text: str) -> Any:
    """PostHog JSON-decodes any value that parses as JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _as_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.invalid_input("Input should be a valid integer", name)
    if value < minimum:
        raise errors.invalid_input(f"Input should be greater than or equal to {minimum}", name)
    return value


def _as_str_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise errors.invalid_input("Input should be a valid list of strings", name)
    return [str(v) for v in value]


def _as_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise errors.invalid_input("Input should be a valid boolean", name)
    return value


def _as_date(name: str, value: Any, now: datetime) -> int:
    try:
        return to_us(parse_filter_date(str(value), now, end_of_day=name == "date_to"))
    except ValueError as exc:
        raise errors.invalid_input(f"Invalid date: {value!r}", name) from exc


def _check_known(params: dict[str, str]) -> None:
    for name in params:
        if name not in ACCEPTED:
            raise errors.invalid_input("Extra inputs are not permitted", name)


def _order(values: dict[str, Any]) -> tuple[str, bool]:
    order = values.get("order", "start_time")
    if order not in records.ORDER_FIELDS:
        raise errors.invalid_input(f"Input should be one of {', '.join(records.ORDER_FIELDS)}", "order")
    direction = values.get("order_direction", "DESC")
    if direction not in ("ASC", "DESC"):
        raise errors.invalid_input("Input should be 'ASC' or 'DESC'", "order_direction")
    return str(order), direction == "DESC"


def _check_ignored(values: dict[str, Any]) -> None:
    """Filters the emulator accepts but does not apply still get type-checked."""
    for name in ("properties", "events", "actions"):
        if name in values and not isinstance(values[name], list):
            raise errors.invalid_input("Input should be a valid list", name)
    if "operand" in values and values["operand"] not in ("AND", "OR"):
        raise errors.invalid_input("Input should be 'AND' or 'OR'", "operand")
    if "kind" in values and values["kind"] != "RecordingsQuery":
        raise errors.invalid_input("Input should be 'RecordingsQuery'", "kind")
    if "filter_test_accounts" in values:
        _as_bool("filter_test_accounts", values["filter_test_accounts"])


def parse(params: dict[str, str], now: datetime, max_page_size: int | None) -> ListQuery:
    _check_known(params)
    values = {name: (text if name == "after" else _decode(text)) for name, text in params.items() if text}
    _check_ignored(values)
    limit = _as_int("limit", values.get("limit", DEFAULT_LIMIT), 1)
    if max_page_size is not None:
        limit = min(limit, max_page_size)
    offset = _as_int("offset", values.get("offset", 0), 0) if "offset" in params else None
    order, descending = _order(values)
    after = Cursor.decode(str(values["after"])) if "after" in values else None
    if after is not None and (after.order, after.descending) != (order, descending):
        raise errors.invalid_input("Invalid cursor: it was issued for a different order", "after")
    session_ids = values.get("session_ids")
    person = values.get("person_uuid")
    return ListQuery(
        limit=limit,
        offset=offset,
        after=after,
        date_from_us=_as_date("date_from", values.get("date_from", DEFAULT_DATE_FROM), now),
        date_to_us=_as_date("date_to", values["date_to"], now) if "date_to" in values else None,
        session_ids=None if session_ids is None else tuple(_as_str_list("session_ids", session_ids)),
        distinct_ids=(
            frozenset(_as_str_list("distinct_ids", values["distinct_ids"]))
            if "distinct_ids" in values
            else None
        ),
        person_uuid=None if person is None else str(person),
        order=order,
        descending=descending,
        hide_viewed=_as_bool("hide_viewed_recordings", values.get("hide_viewed_recordings", False)),
    )


# -- running ---------------------------------------------------------------------------


def _row_filter(store: RecordingStore, query: ListQuery) -> Callable[[int], bool]:
    flags = store.flags
    needs_view = query.distinct_ids is not None or query.person_uuid is not None

    def accept(row: int) -> bool:
        if not store.is_live(row) or (query.hide_viewed and flags[row] & VIEWED):
            return False
        if not needs_view:
            return True
        distinct_id = records.distinct_id_of(store.view(row))
        if query.distinct_ids is not None and distinct_id not in query.distinct_ids:
            return False
        return query.person_uuid is None or records.person_uuid(distinct_id) == query.person_uuid

    return accept


def _date_window(store: RecordingStore, query: ListQuery) -> tuple[int, int]:
    """Index positions of rows whose start lies within [date_from, date_to]."""
    order, key = store.order(), store.start_key()
    lo = 0 if query.date_from_us is None else bisect.bisect_left(order, query.date_from_us, key=key)
    hi = len(order) if query.date_to_us is None else bisect.bisect_right(order, query.date_to_us, key=key)
    return lo, max(lo, hi)


def _indexed_positions(store: RecordingStore, query: ListQuery) -> Iterator[int]:
    """Walk the (start, id) index in the requested direction, after the cursor."""
    order = store.order()
    lo, hi = _date_window(store, query)
    if query.after is not None:
        mark = (int(query.after.key), query.after.id)
        if query.descending:
            hi = bisect.bisect_left(order, mark, lo, hi, key=store.sort_key())
        else:
            lo = bisect.bisect_right(order, mark, lo, hi, key=store.sort_key())
    positions = range(hi - 1, lo - 1, -1) if query.descending else range(lo, hi)
    return (order[p] for p in positions)


def _sort_values(store: RecordingStore, order: str, rows: Iterable[int]) -> Iterator[tuple[float, str, int]]:
    """(value, id, row) per row, computed from the columns without building row views."""
    ids, starts, ends, salts, extra = store.ids, store.starts, store.ends, store.salts, store.extra
    if order == "start_time":
        return ((starts[row], ids[row], row) for row in rows)
    name = records.order_field(order)
    derive = records.FIELD_VALUES[name]

    def value(row: int) -> float:
        overrides = extra.get(row) if extra else None
        if overrides is not None and name in overrides:
            return float(overrides[name])
        return derive(salts[row], records.duration_of(starts[row], ends[row]))

    return ((value(row), ids[row], row) for row in rows)


def _sorted_candidates(
    store: RecordingStore, query: ListQuery, rows: Iterable[int]
) -> list[tuple[float, str, int]]:
    """Rows sorted by (value, id) in the requested direction, after the cursor."""
    keyed = sorted(_sort_values(store, query.order, rows), reverse=query.descending)
    if query.after is None:
        return keyed
    mark = (query.after.key, query.after.id)
    if query.descending:
        start = _first_index(keyed, lambda item: (item[0], item[1]) < mark)
    else:
        start = _first_index(keyed, lambda item: (item[0], item[1]) > mark)
    return keyed[start:]


def _first_index(
    items: list[tuple[float, str, int]], beyond: Callable[[tuple[float, str, int]], bool]
) -> int:
    """Binary search for the first item past the cursor in an already ordered list."""
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if beyond(items[mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _candidate_rows(store: RecordingStore, query: ListQuery, accept: Callable[[int], bool]) -> Iterator[int]:
    if query.session_ids is not None:
        found = (store.row_of(recording_id) for recording_id in dict.fromkeys(query.session_ids))
        return (row for row in found if row is not None and accept(row))
    order = store.order()
    lo, hi = _date_window(store, query)
    return (order[p] for p in range(lo, hi) if accept(order[p]))


def run(store: RecordingStore, query: ListQuery, *, want_count: bool) -> Page:
    """One page of results; call with ``store.lock`` held."""
    accept = _row_filter(store, query)
    if query.session_ids is None and query.order == "start_time":
        return _page_from_index(store, query, accept, want_count)
    keyed = _sorted_candidates(store, query, _candidate_rows(store, query, accept))
    skip = query.offset or 0
    chosen = keyed[skip : skip + query.limit]
    return Page(
        rows=[row for _, _, row in chosen],
        keys=[key for key, _, _ in chosen],
        has_next=len(keyed) > skip + query.limit,
        count=len(keyed) if want_count else None,
    )


def _page_from_index(
    store: RecordingStore, query: ListQuery, accept: Callable[[int], bool], want_count: bool
) -> Page:
    skip, wanted, seen = query.offset or 0, query.limit, 0
    rows: list[int] = []
    has_next = False
    for row in _indexed_positions(store, query):
        if not accept(row):
            continue
        seen += 1
        if seen <= skip:
            continue
        if len(rows) < wanted:
            rows.append(row)
        else:
            has_next = True
            if not want_count:
                break
    keys: list[float] = [store.starts[row] for row in rows]
    return Page(rows=rows, keys=keys, has_next=has_next, count=seen if want_count else None)
