"""How every operator (and the sensor) chooses its recordings: one mechanism, used by all.

A selection is either explicit ``recording_ids`` (a list, a JSON list, or the sensor's
XCom rows) or a query: PostHog list ``filters`` plus the operator's own criteria. A query
never silently inherits PostHog's three-day default window: unless the filters name a
``date_from``, the selection starts at :data:`ALL_TIME`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any, Protocol

from airflow_provider_recordings.core.endpoints import LIST_PARAMS, validate_recording_ids
from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.core.limits import IDS_PER_LIST_CALL, chunks
from airflow_provider_recordings.core.recordings import parse_time

#: ``date_from`` meaning "every recording the key can see" (older than PostHog's replay).
ALL_TIME = "2000-01-01T00:00:00Z"

#: Parameters the hook controls itself; a selection may not set them.
PAGING_PARAMS = frozenset({"limit", "offset", "after"})
FILTER_PARAMS = LIST_PARAMS - PAGING_PARAMS

#: Filters PostHog reads as JSON lists: a bare string would be sent as it is and match
#: nothing (or fail), so it is refused before any request.
LIST_FILTERS = ("distinct_ids", "session_ids")


class RecordingLister(Protocol):
    """What a selection needs of a client: the sync hook has it."""

    def iter_recordings(self, **params: Any) -> Iterator[dict[str, Any]]: ...


def _coerce_ids(recording_ids: Any) -> list[str]:
    """Accept a list of ids, a JSON list (a rendered template), or rows with an ``id``."""
    if isinstance(recording_ids, str):
        text = recording_ids.strip()
        try:
            recording_ids = json.loads(text)
        except ValueError:
            raise PostHogConfigError(
                f"recording_ids must be a list of ids (or a JSON list), got the string {text[:80]!r}"
            ) from None
    if isinstance(recording_ids, Mapping) or not hasattr(recording_ids, "__iter__"):
        raise PostHogConfigError(f"recording_ids must be a list of ids, got {type(recording_ids).__name__}")
    flat = []
    for item in recording_ids:
        if isinstance(item, Mapping):
            item = item.get("id")
        flat.append(item)
    return validate_recording_ids(flat)


def from_json_text(name: str, value: Any, expected: str = "a dict (or a JSON object)") -> Any:
    """A parameter that a rendered template may have turned into JSON text, decoded."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise PostHogConfigError(f"{name} must be {expected}, got {value[:80]!r}") from None


def _coerce_filters(filters: Any) -> dict[str, Any]:
    if filters is None or filters == "":
        return {}
    filters = from_json_text("filters", filters)
    if not isinstance(filters, Mapping):
        raise PostHogConfigError(f"filters must be a dict, got {type(filters).__name__}")
    unknown = sorted(set(filters) - FILTER_PARAMS)
    if unknown:
        hint = " (there is no singular 'distinct_id'; use 'distinct_ids')" if "distinct_id" in unknown else ""
        raise PostHogConfigError(
            f"unknown filter(s) {unknown}{hint}; accepted: {', '.join(sorted(FILTER_PARAMS))}"
        )
    for name in LIST_FILTERS:
        if name in filters:
            filters = {**filters, name: _string_list(name, filters[name])}
    return dict(filters)


def _string_list(name: str, value: Any) -> list[str]:
    """A list filter's value: a list of non-empty strings (a JSON list is decoded)."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            raise PostHogConfigError(
                f"filters.{name} must be a list, got the single string {text[:60]!r}; write [{text[:60]!r}]"
            )
        value = from_json_text(f"filters.{name}", text, "a list (or a JSON list)")
    if not isinstance(value, list | tuple) or not value:
        raise PostHogConfigError(f"filters.{name} must be a non-empty list of strings, got {value!r}")
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise PostHogConfigError(f"filters.{name} must hold only non-empty strings, got {value!r}")
    return list(value)


@dataclass
class Selection:
    """A validated selection, built before any request is made."""

    recording_ids: list[str] | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    missing_ids: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, recording_ids: Any = None, filters: Any = None) -> Selection:
        """Validate the operator's arguments; raises :class:`PostHogConfigError`."""
        has_ids = recording_ids is not None and recording_ids != ""
        parsed_filters = _coerce_filters(filters)
        if has_ids and parsed_filters:
            raise PostHogConfigError("give either recording_ids or filters, not both")
        if has_ids:
            return cls(recording_ids=_coerce_ids(recording_ids))
        return cls(filters=parsed_filters)

    @property
    def is_explicit(self) -> bool:
        return self.recording_ids is not None

    def describe(self) -> str:
        if self.recording_ids is not None:
            return f"{len(self.recording_ids)} explicit recording id(s)"
        return f"recordings matching {self.list_params()}"

    def list_params(self, **criteria: Any) -> dict[str, Any]:
        """List parameters of a query selection; the operator's criteria apply unless
        the user's filters already name that parameter."""
        params = {"date_from": ALL_TIME, **criteria}
        params.update(self.filters)
        return params

    def queries(self, **criteria: Any) -> list[dict[str, Any]]:
        """The list calls that fetch this selection, as parameter dicts.

        Explicit ids are looked up with the ``session_ids`` filter, a page of ids per
        call (which also bypasses the date window). Shared by the sync hook and the
        async trigger, so both select exactly the same recordings.
        """
        if self.recording_ids is None:
            return [self.list_params(**criteria)]
        return [
            {"session_ids": chunk, "limit": len(chunk)}
            for chunk in chunks(self.recording_ids, IDS_PER_LIST_CALL)
        ]

    def keep(self, recording: dict[str, Any]) -> bool:
        """Whether a listed recording belongs to the selection (explicit ids only)."""
        return self.recording_ids is None or recording.get("id") in self._wanted

    @property
    def _wanted(self) -> frozenset[str]:
        return frozenset(self.recording_ids or ())

    def find_missing(self, found_ids: set[str]) -> list[str]:
        """Explicit ids PostHog did not return (unknown, deleted or expired)."""
        return [i for i in self.recording_ids or () if i not in found_ids]

    def iter_recordings(self, hook: RecordingLister, **criteria: Any) -> Iterator[dict[str, Any]]:
        """Yield the selected recordings with their details (each once).

        Ids PostHog does not return end up in :attr:`missing_ids` once the iterator is
        exhausted.
        """
        found: set[str] = set()
        wanted = self._wanted
        for params in self.queries(**criteria):
            for recording in hook.iter_recordings(**params):
                if self.recording_ids is not None and recording.get("id") not in wanted:
                    continue
                found.add(recording["id"])
                yield recording
        self.missing_ids = self.find_missing(found)

    def local_check(self) -> Callable[[Mapping[str, Any]], bool] | None:
        """A test, on a listed row, of whether it belongs to this selection, when the
        selection can be decided from the row alone: explicit ids, or filters of only
        absolute ``date_from``/``date_to`` (on the start time, as PostHog filters) and
        ``distinct_ids``. None when a filter needs PostHog to decide (properties, events,
        relative dates...)."""
        if self.recording_ids is not None:
            wanted = self._wanted
            return lambda row: row.get("id") in wanted
        unknown = set(self.filters) - {"date_from", "date_to", "distinct_ids"}
        if unknown:
            return None
        bounds = {}
        for name in ("date_from", "date_to"):
            if name in self.filters:
                moment = _absolute(self.filters[name], end_of_day=name == "date_to")
                if moment is None:
                    return None
                bounds[name] = moment
        users = set(self.filters.get("distinct_ids") or ())
        start, end = bounds.get("date_from"), bounds.get("date_to")

        def check(row: Mapping[str, Any]) -> bool:
            started = parse_time(row.get("start_time"))
            if started is None:
                return False
            if (start is not None and started < start) or (end is not None and started > end):
                return False
            return not users or row.get("distinct_id") in users

        return check


def _absolute(value: Any, *, end_of_day: bool) -> datetime | None:
    """An absolute ISO date or datetime filter value; None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        return datetime.combine(day, time.max if end_of_day else time.min, tzinfo=UTC)
    return parse_time(text) if "T" in text else None
