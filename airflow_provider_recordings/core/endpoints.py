"""Requests for each recordings endpoint, and the endpoint-specific meaning of answers.

Field validation lives here so that bad input fails before the first request, whichever
driver sends it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airflow_provider_recordings.core.config import PERSONS, PERSONS_DELETE, PLAYLIST, SHARING
from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogConfigError,
    PostHogNotFoundError,
    PostHogPermissionError,
)
from airflow_provider_recordings.core.limits import PERSONS_BULK_DELETE_MAX
from airflow_provider_recordings.core.protocol import DOT_SEGMENTS, ApiRequest, recording_path

#: Query parameters the list endpoint accepts; anything else PostHog rejects with a 400.
LIST_PARAMS: frozenset[str] = frozenset(
    {
        "limit", "offset", "after", "date_from", "date_to", "person_uuid", "distinct_ids",
        "session_ids", "order", "order_direction", "filter_test_accounts", "properties",
        "events", "actions", "operand", "kind", "hide_viewed_recordings",
        "console_log_filters", "having_predicates", "filter_group", "user_modified_filters",
    }
)  # fmt: skip

#: Fields PATCH accepts: the live service's and the published document's.
LIVE_UPDATE_FIELDS: dict[str, tuple[type, ...]] = {
    "viewed": (bool,),
    "analyzed": (bool,),
    "player_metadata": (dict, list, str, int, float, bool),
}
PUBLISHED_UPDATE_FIELDS: dict[str, tuple[type, ...]] = {"person": (dict, str, int)}
UPDATE_FIELDS = {**LIVE_UPDATE_FIELDS, **PUBLISHED_UPDATE_FIELDS}


def validate_list_params(params: Mapping[str, Any]) -> None:
    """Refuse names PostHog would reject, before spending a scarce list call on a 400."""
    unknown = sorted(set(params) - LIST_PARAMS)
    if unknown:
        hint = (
            " (PostHog has no singular 'distinct_id'; use 'distinct_ids')" if "distinct_id" in unknown else ""
        )
        raise PostHogConfigError(
            f"unknown list filter(s) {unknown}{hint}; accepted: {', '.join(sorted(LIST_PARAMS))}"
        )
    for name in ("distinct_ids", "session_ids"):
        value = params.get(name)
        # A bare string would go out as it is and match nothing: PostHog reads a JSON list.
        if isinstance(value, str) and not value.strip().startswith("["):
            text = value.strip()[:60]
            raise PostHogConfigError(
                f"{name} must be a list, got the single string {text!r}; write [{text!r}]"
            )


def validate_update_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Check a PATCH body against the fields PostHog reads; return it as a plain dict.

    The live service ignores everything but ``viewed``, ``analyzed`` and
    ``player_metadata`` and answers 400 unless ``viewed`` or ``analyzed`` is true;
    the published document's ``person`` is accepted for servers that follow it.
    """
    if not isinstance(fields, Mapping) or not fields:
        raise PostHogConfigError(
            f"update must be a non-empty dict of fields; allowed: {sorted(UPDATE_FIELDS)}"
        )
    unknown = sorted(set(fields) - set(UPDATE_FIELDS))
    if unknown:
        raise PostHogConfigError(f"unknown update field(s) {unknown}; allowed: {sorted(UPDATE_FIELDS)}")
    for name, value in fields.items():
        if not isinstance(value, UPDATE_FIELDS[name]):
            expected = " or ".join(t.__name__ for t in UPDATE_FIELDS[name])
            raise PostHogConfigError(f"update field {name!r} must be {expected}, got {value!r}")
    live = set(fields) & set(LIVE_UPDATE_FIELDS)
    if (
        live
        and "person" not in fields
        and not (fields.get("viewed") is True or fields.get("analyzed") is True)
    ):
        raise PostHogConfigError(
            "PostHog only applies an update that sets 'viewed' or 'analyzed' to true "
            f"(it answers 400 otherwise); got {dict(fields)!r}"
        )
    return dict(fields)


def validate_recording_ids(recording_ids: Iterable[Any]) -> list[str]:
    """Return the ids in order without repeats, refusing anything that is not a usable id."""
    if isinstance(recording_ids, str | bytes):
        raise PostHogConfigError("recording_ids must be a list of ids, not a single string")
    ordered: dict[str, None] = {}
    for recording_id in recording_ids:
        recording_path(recording_id)
        ordered[recording_id] = None
    return list(ordered)


def retrieve(recording_id: str) -> ApiRequest:
    return ApiRequest("GET", recording_path(recording_id))


def update(recording_id: str, fields: Mapping[str, Any]) -> ApiRequest:
    return ApiRequest("PATCH", recording_path(recording_id), json_body=validate_update_fields(fields))


def delete(recording_id: str) -> ApiRequest:
    return ApiRequest("DELETE", recording_path(recording_id))


def bulk_delete(recording_ids: list[str]) -> ApiRequest:
    return ApiRequest("POST", "bulk_delete/", json_body={"session_recording_ids": list(recording_ids)})


def get_sharing(recording_id: str) -> ApiRequest:
    return ApiRequest("GET", recording_path(recording_id, "sharing/"), kind=SHARING)


def set_sharing(recording_id: str, enabled: bool) -> ApiRequest:
    if not isinstance(enabled, bool):
        raise PostHogConfigError(f"enabled must be true or false, got {enabled!r}")
    return ApiRequest(
        "PATCH", recording_path(recording_id, "sharing/"), json_body={"enabled": enabled}, kind=SHARING
    )


# -- Playlists (PostHog's built-in "synthetic" ones) -------------------------------------------

#: PostHog's built-in playlist of every recording with an enabled sharing configuration.
SHARED_PLAYLIST = "synthetic-shared"

#: Rows per page of a synthetic playlist: its lookup answers at most the list's default
#: page (50), so a larger ``limit`` would be cut short without saying so.
PLAYLIST_PAGE = 50


def playlist(short_id: str) -> ApiRequest:
    """One playlist; a synthetic one carries its size at ``recordings_counts.collection.count``."""
    return ApiRequest(
        "GET", path=f"{quote(short_id, safe='')}/", kind=PLAYLIST, resource="session_recording_playlists"
    )


def playlist_recordings(short_id: str, *, offset: int, limit: int = PLAYLIST_PAGE) -> ApiRequest:
    """A page of a playlist's recordings (the list's shape; it can be short before the end)."""
    return ApiRequest(
        "GET",
        path=f"{quote(short_id, safe='')}/recordings/",
        params=(("limit", str(limit)), ("offset", str(offset))),
        kind=PLAYLIST,
        resource="session_recording_playlists",
    )


def playlist_count(data: Any) -> int:
    """How many recordings a playlist holds (PostHog sends null for none)."""
    counts = data.get("recordings_counts") if isinstance(data, dict) else None
    collection = counts.get("collection") if isinstance(counts, dict) else None
    count = collection.get("count") if isinstance(collection, dict) else None
    return int(count) if isinstance(count, int) and not isinstance(count, bool) else 0


# -- Persons (erasure requests) ---------------------------------------------------------


def find_persons(distinct_id: str) -> ApiRequest:
    """The person (if any) that owns ``distinct_id``."""
    return ApiRequest("GET", params=(("distinct_id", distinct_id),), kind=PERSONS, resource="persons")


def retrieve_person(person: str) -> ApiRequest:
    """One person, by numeric id or UUID."""
    return ApiRequest("GET", path=person_path(person), kind=PERSONS, resource="persons")


def delete_person_recordings(person: str) -> ApiRequest:
    """Queue PostHog's job deleting every recording of the person's distinct ids (202)."""
    return ApiRequest(
        "POST", path=person_path(person, "delete_recordings/"), kind=PERSONS_DELETE, resource="persons"
    )


def bulk_delete_person_recordings(person_uuids: list[str]) -> ApiRequest:
    """Queue PostHog's job deleting every recording of these persons, keeping the persons
    (``POST persons/bulk_delete/``, the route PostHog publishes; 202)."""
    if not person_uuids or len(person_uuids) > PERSONS_BULK_DELETE_MAX:
        raise PostHogConfigError(
            f"persons/bulk_delete takes 1 to {PERSONS_BULK_DELETE_MAX} persons, got {len(person_uuids)}"
        )
    body = {"ids": list(person_uuids), "delete_recordings": True, "keep_person": True, "delete_events": False}
    return ApiRequest("POST", path="bulk_delete/", json_body=body, kind=PERSONS_DELETE, resource="persons")


def person_path(person: str, suffix: str = "") -> str:
    if not isinstance(person, str) or not person.strip() or "/" in person or person.strip() in DOT_SEGMENTS:
        raise PostHogConfigError(f"a person is addressed by its id or UUID, got {person!r}")
    return f"{quote(person.strip(), safe='')}/{suffix}"


def person_route_unavailable(exc: PostHogApiError) -> bool:
    """Whether the key or the server cannot delete recordings by person (so delete them one
    by one): a missing ``person:write`` scope (403), or an older server (404/405)."""
    if isinstance(exc, PostHogPermissionError):
        return True
    return exc.status == 405 or (
        isinstance(exc, PostHogNotFoundError) and "person not found" not in (exc.detail or "").lower()
    )


def bulk_delete_unsupported(exc: PostHogApiError) -> bool:
    """Whether a bulk-delete failure means "use single deletes" rather than a real error.

    The live service refuses the action to personal API keys (403), and older or
    self-hosted servers lack it (404 or 405).
    """
    if isinstance(exc, PostHogNotFoundError) or exc.status == 405:
        return True
    return isinstance(exc, PostHogPermissionError) and "personal api key" in (exc.detail or "").lower()


@dataclass
class DeleteSummary:
    """What a batch of deletes achieved.

    ``gone`` lists every id that no longer exists afterwards. ``deleted`` counts what the
    server says this call removed; ``already_gone`` what it says did not exist (a 404,
    or the shortfall of a bulk delete's ``deleted_count``, which does not say which ids).
    """

    requested: int = 0
    gone: list[str] = field(default_factory=list)
    deleted: int = 0
    already_gone: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def add(self, other: DeleteSummary) -> None:
        self.requested += other.requested
        self.gone.extend(other.gone)
        self.deleted += other.deleted
        self.already_gone += other.already_gone
        self.failed.update(other.failed)

    def outcome(self, recording_id: str) -> tuple[str, str | None]:
        """``("deleted" | "already_gone" | "failed", reason)`` of one id of this part.

        A bulk answer only counts ids it did not find; an id is reported as already
        gone when the whole part was, and as deleted otherwise.
        """
        if recording_id in self.failed:
            return "failed", self.failed[recording_id]
        if self.deleted == 0 and self.already_gone:
            return "already_gone", None
        return "deleted", None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "deleted": self.deleted,
            "already_gone": self.already_gone,
            "failed": len(self.failed),
            "failed_ids": sorted(self.failed)[:100],
        }


def reconcile_bulk_delete(chunk: list[str], data: Any) -> DeleteSummary:
    """Read ``{"deleted_count", "total_requested", "failed_ids"}`` for one chunk."""
    data = data if isinstance(data, dict) else {}
    failed_ids = {str(i) for i in data.get("failed_ids") or []} & set(chunk)
    gone = [i for i in chunk if i not in failed_ids]
    reported = data.get("deleted_count")
    deleted = int(reported) if isinstance(reported, int) else len(gone)
    deleted = max(0, min(deleted, len(gone)))
    return DeleteSummary(
        requested=len(chunk),
        gone=gone,
        deleted=deleted,
        already_gone=len(gone) - deleted,
        failed=dict.fromkeys(sorted(failed_ids), "PostHog listed it in failed_ids"),
    )
