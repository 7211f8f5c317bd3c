"""The session recordings API: authentication, rate limiting and the actions.

Checks run in the order Django REST framework runs them on PostHog (routing, then
authentication and permissions, then throttling, then the action), because clients see
different answers depending on which check fails first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from airflow_provider_recordings.testing import (
    errors,
    listing,
    playlists,
    records,
    routes,
    sharing,
    snapshot_requests,
)
from airflow_provider_recordings.testing import persons as persons_module
from airflow_provider_recordings.testing.auth import (
    DEFAULT_EMAIL,
    ApiKey,
    KeyRing,
    require_project,
    require_scope,
)
from airflow_provider_recordings.testing.clock import EmulatorClock
from airflow_provider_recordings.testing.config import EmulatorConfig
from airflow_provider_recordings.testing.exchange import Call, Response
from airflow_provider_recordings.testing.persons import Person, PersonStore
from airflow_provider_recordings.testing.ratelimit import RateLimiter
from airflow_provider_recordings.testing.store import ANALYZED, VIEWED, RecordingStore
from airflow_provider_recordings.testing.timefmt import SECOND_US, to_us

Handler = Callable[["Api", Call], Response]


class Api:
    def __init__(
        self,
        config: EmulatorConfig,
        store: RecordingStore,
        clock: EmulatorClock,
        keys: KeyRing,
        limiter: RateLimiter | None,
        persons: PersonStore | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.keys = keys
        self.limiter = limiter
        self.persons = persons or PersonStore()

    def route(self, call: Call) -> routes.Route | None:
        call.route = routes.match(
            call.path,
            bulk_delete=self.config.bulk_delete,
            persons_route=self.config.persons_route,
            persons_bulk_delete=self.config.persons_bulk_delete,
        )
        return call.route

    def handle(self, call: Call) -> Response:
        try:
            return self._handle(call)
        except errors.ApiError as exc:
            response = Response.error(exc)
            response.throttled = exc.status == 429
            return response

    def _handle(self, call: Call) -> Response:
        self.run_person_jobs()
        route = call.route or self.route(call)
        if route is None:
            raise errors.not_found()
        call.key = key = self.keys.authenticate(call.headers.get("authorization"))
        require_project(key, route.project_id)
        if route.project_id != self.config.project_id:
            raise errors.not_found("Project not found.")
        action = route.actions.get(call.method)
        if action is None:
            raise errors.method_not_allowed(call.method)
        if action == "bulk_delete" and self.config.bulk_delete == "forbidden":
            raise errors.permission_denied("This action does not support personal API key access")
        require_scope(key, routes.SCOPES[action])
        self._throttle(key, action)
        return _HANDLERS[action](self, call)

    def _throttle(self, key: ApiKey, action: str) -> None:
        if self.limiter is None:
            return
        blocked = self.limiter.check(key.value, routes.limit_kind(action), self.clock.monotonic())
        if blocked is not None:
            config = self.limiter.config
            raise errors.throttled(config.format_wait(blocked.wait), config.detail(blocked))

    # -- helpers ---------------------------------------------------------------------

    def now_us(self) -> int:
        return to_us(self.clock.now())

    def now_seconds(self) -> int:
        return self.now_us() // SECOND_US

    def run_person_jobs(self) -> int:
        return self.persons.run_due_jobs(self.store, self.clock.monotonic(), self.now_seconds())

    def queue_person_job(self, persons: list[Person], call: Call) -> None:
        due = self.clock.monotonic() + self.config.person_job_delay
        self.persons.queue_recordings_job(persons, due, call.key.email if call.key else None)

    def delete_row(self, row: int, call: Call) -> None:
        self.store.delete(row, at=self.now_seconds(), by=call.key.email if call.key else None)

    def live_row(self, call: Call) -> int:
        row = self.store.row_of(_recording_id(call))
        if row is None:
            raise errors.recording_not_found()
        return row

    def summary(self, row: int, now_us: int) -> dict[str, Any]:
        body = records.summary(self.store.view(row), now_us)
        return records.apply_ongoing_mode(body, self.config.ongoing_field)

    def detail(self, row: int, now_us: int) -> dict[str, Any]:
        body = records.detail(self.store.view(row), now_us)
        return records.apply_ongoing_mode(body, self.config.ongoing_field)

    def page_link(self, call: Call, limit: int, offset: int) -> str:
        """An absolute link like DRF's LimitOffsetPagination builds from the Host header."""
        base = self.config.next_url_base or f"http://{call.headers.get('host', 'localhost')}"
        parts = urlsplit(base)
        query = {name: value for name, value in call.query.items() if name not in ("limit", "offset")}
        query["limit"] = str(limit)
        if offset > 0:
            query["offset"] = str(offset)
        return f"{parts.scheme}://{parts.netloc}{call.path}?{urlencode(query)}"


def _recording_id(call: Call) -> str:
    if call.route is None or call.route.recording_id is None:
        raise errors.not_found()
    return call.route.recording_id


# -- actions ---------------------------------------------------------------------------


def list_recordings(api: Api, call: Call) -> Response:
    published = api.config.response_shape == "published"
    query = listing.parse(call.query, api.clock.now(), api.config.max_page_size)
    if published and query.offset is None:
        query = _with_offset(query, 0)
    now_us = api.now_us()
    with api.store.lock:
        page = listing.run(api.store, query, want_count=published)
        results = [api.summary(row, now_us) for row in page.rows]
    if published:
        return Response.json(200, _published_page(api, call, query, page, results))
    body: dict[str, Any] = {"results": results, "has_next": page.has_next, "version": 4}
    if page.has_next and query.offset is None:
        body["next_cursor"] = query.cursor_for(page.keys[-1], results[-1]["id"])
    return Response.json(200, body)


def _with_offset(query: listing.ListQuery, offset: int) -> listing.ListQuery:
    return replace(query, offset=offset)


def _published_page(
    api: Api, call: Call, query: listing.ListQuery, page: listing.Page, results: list[dict[str, Any]]
) -> dict[str, Any]:
    offset = query.offset or 0
    return {
        "count": page.count,
        "next": api.page_link(call, query.limit, offset + query.limit) if page.has_next else None,
        "previous": api.page_link(call, query.limit, max(0, offset - query.limit)) if offset > 0 else None,
        "results": results,
    }


def retrieve(api: Api, call: Call) -> Response:
    with api.store.lock:
        return Response.json(200, api.detail(api.live_row(call), api.now_us()))


def update(api: Api, call: Call) -> Response:
    payload = call.json_body()
    flags = {name: payload[name] for name in ("viewed", "analyzed") if name in payload}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise errors.invalid_input("Must be a valid boolean.", name)
    published = api.config.response_shape == "published"
    if not published and not any(flags.values()):
        raise errors.invalid_input("Must specify at least one of viewed or analyzed", None)
    with api.store.lock:
        row = api.live_row(call)
        for name, value in flags.items():
            if value or published:
                api.store.set_flag(row, VIEWED if name == "viewed" else ANALYZED, value)
        if published:
            return Response.json(200, api.detail(row, api.now_us()))
    return Response.json(200, {"success": True})


def delete(api: Api, call: Call) -> Response:
    recording_id = _recording_id(call)
    with api.store.lock:
        row = api.store.row_of(recording_id)
        if row is not None:
            api.delete_row(row, call)
        elif not api.store.ever_existed(recording_id) and api.config.delete_unknown == "500":
            raise errors.server_error(
                "recording_api_failure", f"Recording {recording_id} could not be deleted."
            )
    return Response(204)


def bulk_delete(api: Api, call: Call) -> Response:
    ids = call.json_body().get("session_recording_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise errors.invalid_input(
            "session_recording_ids must be a non-empty list of ids", "session_recording_ids"
        )
    limit = api.config.bulk_delete_max
    if len(ids) > limit:
        raise errors.invalid_input(
            f"Cannot delete more than {limit} recordings at once", "session_recording_ids"
        )
    deleted = 0
    with api.store.lock:
        for recording_id in dict.fromkeys(ids):
            row = api.store.row_of(recording_id)
            if row is not None:
                api.delete_row(row, call)
                deleted += 1
    body = {"success": True, "deleted_count": deleted, "total_requested": len(ids), "failed_ids": []}
    return Response.json(200, body)


# -- sharing ----------------------------------------------------------------------------


def sharing_get(api: Api, call: Call) -> Response:
    with api.store.lock:
        row = api.live_row(call)
        return Response.json(200, sharing.describe(api.store.sharing_state(row, create=False)))


def sharing_patch(api: Api, call: Call) -> Response:
    payload = call.json_body()
    if payload.get("password_required") and not api.config.advanced_permissions:
        return Response.json(
            403, {"error": "Sharing with password requires the Advanced Permissions feature"}
        )
    changes = {name: payload[name] for name in ("enabled", "password_required") if name in payload}
    for name, value in changes.items():
        if not isinstance(value, bool):
            raise errors.invalid_input("Must be a valid boolean.", name)
    with api.store.lock:
        state = _saved_sharing(api, call)
        if "enabled" in changes:
            state.enable(changes["enabled"], api.clock.now())
        if "password_required" in changes:
            state.password_required = changes["password_required"]
        return Response.json(200, sharing.describe(state))


def sharing_refresh(api: Api, call: Call) -> Response:
    with api.store.lock:
        state = _saved_sharing(api, call)
        state.rotate()
        return Response.json(200, sharing.describe(state))


def sharing_password_create(api: Api, call: Call) -> Response:
    """``POST sharing/passwords/``: 201 with the raw password, shown this once."""
    with api.store.lock:
        row = api.live_row(call)
        state = api.store.sharing_state(row, create=False)
        if state is None or not state.password_required:
            return Response.json(
                400, {"error": "Password protection must be enabled before creating passwords"}
            )
        if not api.config.advanced_permissions:
            return Response.json(
                403, {"error": "Password management requires the Advanced Permissions feature"}
            )
        raw, note = sharing.parse_password_request(call.json_body())
        email = call.key.email if call.key else DEFAULT_EMAIL
        entry, raw = state.add_password(next(api.store.password_ids), raw, note, email, api.clock.now())
        return Response.json(201, sharing.password_answer(entry, raw))


def sharing_password_delete(api: Api, call: Call) -> Response:
    """``DELETE sharing/passwords/<id>/``: 204; 404 "Password not found" when it is not
    an active password of this link."""
    with api.store.lock:
        row = api.live_row(call)
        if not api.config.advanced_permissions:
            return Response.json(
                403, {"error": "Password management requires the Advanced Permissions feature"}
            )
        password_id = (call.route.item_id if call.route else None) or ""
        if not password_id.strip().isdigit():
            raise errors.unhandled()  # Django cannot look up a non-numeric id: a 500
        state = api.store.sharing_state(row, create=False)
        if state is None or not state.deactivate_password(int(password_id)):
            raise errors.not_found("Password not found")
    return Response(204)


def _saved_sharing(api: Api, call: Call) -> sharing.SharingState:
    """The recording's configuration, stored from now on (PATCH and refresh save it)."""
    state = api.store.sharing_state(api.live_row(call), create=True)
    assert state is not None
    state.save(api.clock.now())
    return state


# -- persons ----------------------------------------------------------------------------


def persons_list(api: Api, call: Call) -> Response:
    distinct_id = call.query.get("distinct_id")
    found = api.persons.by_distinct_id(distinct_id) if distinct_id else []
    return Response.json(200, {"results": [p.body() for p in found], "next": None, "previous": None})


def person_retrieve(api: Api, call: Call) -> Response:
    return Response.json(200, api.persons.find(_recording_id(call)).body())


def person_destroy(api: Api, call: Call) -> Response:
    """``DELETE persons/<id>/``: 202; the flags are read by presence
    (``?delete_recordings=false`` deletes the recordings too)."""
    person = api.persons.find(_recording_id(call))
    _delete_persons(
        api,
        call,
        [person],
        delete_recordings="delete_recordings" in call.query,
        keep_person="keep_person" in call.query,
    )
    return Response(202)


def persons_bulk_delete(api: Api, call: Call) -> Response:
    """``POST persons/bulk_delete/``: persons by UUID or distinct id, deleted at once
    unless ``keep_person``; their recordings by a job that runs later."""
    request = persons_module.parse_bulk_delete(call.json_body())
    found = api.persons.resolve(request.ids, request.distinct_ids)
    deleted = _delete_persons(
        api, call, found, delete_recordings=request.delete_recordings, keep_person=request.keep_person
    )
    body = {
        "persons_found": len(found),
        "persons_deleted": deleted,
        "events_queued_for_deletion": request.delete_events and bool(found),
        "recordings_queued_for_deletion": request.delete_recordings and bool(found),
        "deletion_errors": [],
    }
    return Response.json(202, body)


def person_delete_recordings(api: Api, call: Call) -> Response:
    """Deprecated (left out of the schema, "use bulk_delete") but still answered: 202."""
    person = api.persons.find(_recording_id(call))
    api.queue_person_job([person], call)
    return Response(202)


def _delete_persons(
    api: Api, call: Call, persons: list[Person], *, delete_recordings: bool, keep_person: bool
) -> int:
    """The recordings job takes the distinct ids the persons have now, so it still runs
    after the profiles are gone."""
    if delete_recordings and persons:
        api.queue_person_job(persons, call)
    return 0 if keep_person else api.persons.delete(persons)


_HANDLERS: dict[str, Handler] = {
    "list": list_recordings,
    "retrieve": retrieve,
    "update": update,
    "delete": delete,
    "bulk_delete": bulk_delete,
    "snapshots": snapshot_requests.handle,
    "sharing_get": sharing_get,
    "sharing_patch": sharing_patch,
    "sharing_refresh": sharing_refresh,
    "sharing_password_create": sharing_password_create,
    "sharing_password_delete": sharing_password_delete,
    "persons_list": persons_list,
    "person_retrieve": person_retrieve,
    "person_destroy": person_destroy,
    "persons_bulk_delete": persons_bulk_delete,
    "person_delete_recordings": person_delete_recordings,
    "playlist_retrieve": playlists.retrieve,
    "playlist_recordings": playlists.recordings,
}
