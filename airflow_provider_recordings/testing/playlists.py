"""PostHog's built-in ("synthetic") playlists: ``synthetic-shared``.

PostHog computes these playlists on the fly (``synthetic_playlists.py``,
``session_recording_playlist_api.py``). ``synthetic-shared`` holds every recording
with an enabled sharing configuration, which makes it the cheap way to find public
links: its retrieve carries the count, and ``recordings/`` pages through it. The page
is taken from the sharing table first (``limit``/``offset`` over its session ids), and
only then are those ids looked up, in two parts (``list_recordings_from_query``):
recordings persisted to long-term storage come from Postgres whatever their age, the
others like the list endpoint finds them, with ``date_from=-1y`` and the list's default
page of 50 (``has_next``/``next_cursor`` describe that part alone). Recordings that are
gone, or not persisted and started more than a year ago, drop out, so a page can come
back short or empty long before the end. The rows follow the page's id order. The
playlist's count comes from the sharing table alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_recordings.testing import errors, listing
from airflow_provider_recordings.testing.exchange import Call, Response
from airflow_provider_recordings.testing.store import VIEWED
from airflow_provider_recordings.testing.timefmt import to_us

if TYPE_CHECKING:
    from airflow_provider_recordings.testing.api import Api

SHARED = "synthetic-shared"
DEFAULT_LIMIT = 50


def retrieve(api: Api, call: Call) -> Response:
    _require_shared(api, call)
    with api.store.lock:
        ids = api.store.shared_ids()
        watched = sum(1 for recording_id in ids if _viewed(api, recording_id))
    return Response.json(200, _playlist(len(ids), watched))


def recordings(api: Api, call: Call) -> Response:
    _require_shared(api, call)
    limit = _as_int(call.query.get("limit", str(DEFAULT_LIMIT)))
    offset = _as_int(call.query.get("offset", "0"))
    now = api.clock.now()
    cutoff, now_us = to_us(one_year_before(now)), to_us(now)
    with api.store.lock:
        page = _slice(api.store.shared_ids(), limit, offset)
        live = {
            recording_id: row for recording_id in page if (row := api.store.row_of(recording_id)) is not None
        }
        persisted = {recording_id: row for recording_id, row in live.items() if _persisted(api, row)}
        recent = tuple(r for r, row in live.items() if r not in persisted and api.store.starts[row] >= cutoff)
        query = _lookup(recent, cutoff)
        result = listing.run(api.store, query, want_count=False)
        found = {api.store.ids[row]: api.summary(row, now_us) for row in result.rows}
        found.update((r, _from_postgres(api, api.summary(row, now_us))) for r, row in persisted.items())
    body: dict[str, Any] = {
        "results": [found[recording_id] for recording_id in page if recording_id in found],
        "has_next": result.has_next,
        "version": 4,
    }
    if result.has_next:
        body["next_cursor"] = query.cursor_for(result.keys[-1], api.store.ids[result.rows[-1]])
    return Response.json(200, body)


def one_year_before(now: datetime) -> datetime:
    """``-1y`` as PostHog parses it (``relativedelta(years=1)``: 29 February -> 28th)."""
    try:
        return now.replace(year=now.year - 1)
    except ValueError:
        return now.replace(year=now.year - 1, day=28)


def _require_shared(api: Api, call: Call) -> None:
    short_id = call.route.recording_id if call.route else None
    if short_id != SHARED or api.config.synthetic_playlists == "absent":
        raise errors.not_found()


def _persisted(api: Api, row: int) -> bool:
    spec = api.store.snapshots.get(row)
    return spec is not None and spec.lts


def _from_postgres(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    """A row read from Postgres lacks what only ClickHouse knows: ``ongoing`` falls back
    to false and ``activity_score`` to null."""
    if "ongoing" in body and api.config.ongoing_field == "present":
        body["ongoing"] = False
    body["activity_score"] = None
    return body


def _viewed(api: Api, recording_id: str) -> bool:
    row = api.store.last_row_of(recording_id)
    return row is not None and bool(api.store.flags[row] & VIEWED)


def _as_int(text: str) -> int:
    """``int(request.GET.get("limit", 50))``: anything else is an unhandled error, a 500."""
    try:
        return int(text)
    except ValueError as exc:
        raise errors.unhandled() from exc


def _slice(ids: list[str], limit: int, offset: int) -> list[str]:
    """A Django queryset slice ``[offset:offset + limit]``: negative bounds raise (500)."""
    start, end = offset, offset + limit
    if start < 0 or end < 0:
        raise errors.unhandled()
    return ids[start:end]


def _lookup(session_ids: tuple[str, ...], cutoff_us: int) -> listing.ListQuery:
    """``RecordingsQuery(session_ids=..., date_from="-1y", date_to=None)``: no limit of
    its own, so the list's default page."""
    return listing.ListQuery(
        limit=listing.DEFAULT_LIMIT,
        offset=None,
        after=None,
        date_from_us=cutoff_us,
        date_to_us=None,
        session_ids=session_ids,
        distinct_ids=None,
        person_uuid=None,
        order="start_time",
        descending=True,
        hide_viewed=False,
    )


def _playlist(count: int, watched: int) -> dict[str, Any]:
    """The serializer's fields for the in-memory playlist PostHog builds."""
    return {
        "id": -3,
        "short_id": SHARED,
        "name": "Shared recordings",
        "derived_name": None,
        "description": "Recordings that have been shared externally",
        "pinned": False,
        "created_at": None,
        "created_by": None,
        "deleted": False,
        "filters": {},
        "last_modified_at": None,
        "last_modified_by": None,
        "recordings_counts": {
            "saved_filters": {
                "count": None,
                "has_more": None,
                "watched_count": None,
                "increased": None,
                "last_refreshed_at": None,
            },
            "collection": {
                "count": count if count > 0 else None,
                "has_more": False,
                "watched_count": watched,
                "increased": None,
                "last_refreshed_at": None,
            },
        },
        "type": "collection",
        "is_synthetic": True,
        "user_access_level": "editor",
    }
