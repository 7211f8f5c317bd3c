"""The session recordings API: authentication, rate limiting and the actions.

Checks run in the order Django REST framework runs them on PostHog (routing, then
authentication and permissions, then throttling, then the action), because clients see
different answers depending on which check fails first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from airflow_provider_recordings.testing import errors, listing, records, routes, sharing
from airflow_provider_recordings.testing.auth import ApiKey, KeyRing, require_project, require_scope
from airflow_provider_recordings.testing.clock import EmulatorClock
from airflow_provider_recordings.testing.config import EmulatorConfig
from airflow_provider_recordings.testing.persons import PersonStore
from airflow_provider_recordings.testing.ratelimit import RateLimiter
from airflow_provider_recordings.testing.store import ANALYZED, VIEWED, RecordingStore
from airflow_provider_recordings.testing.timefmt import to_us


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False
    throttled: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        data = json.dumps(payload, separators=(",", ":")).encode()
        return cls(status, data, {"Content-Type": "application/json", **(headers or {})})

    @classmethod
    def error(cls, exc: errors.ApiError) -> Response:
        return cls.json(exc.status, exc.body(), exc.headers)


@dataclass
class Call:
    """A parsed API request, as handed over by the HTTP layer."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    route: routes.Route | None = None
    key: ApiKey | None = None

    @property
    def kind(self) -> str:
        return "other" if self.route is None else self.route.kind(self.method)

    def json_body(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise errors.parse_error(f"JSON parse error - {exc}") from exc
        if not isinstance(data, dict):
            raise errors.parse_error("JSON parse error - expected an object")
        return data


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
            call.path, bulk_delete=self.config.bulk_delete, persons_route=self.config.persons_route
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
        self.persons.run_due_jobs(self.store, self.clock.monotonic())
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
        kind = "list" if action == "list" else "persons" if action.startswith("person") else "other"
        wait = self.limiter.acquire(key.value, kind, self.clock.monotonic())
        if wait is not None:
            raise errors.throttled(self.limiter.config.format_wait(wait))

    # -- helpers ---------------------------------------------------------------------

    def now_us(self) -> int:
        return to_us(self.clock.now())

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
            api.store.delete(row)
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
                api.store.delete(row)
                deleted += 1
    body = {"success": True, "deleted_count": deleted, "total_requested": len(ids), "failed_ids": []}
    return Response.json(200, body)


def sharing_get(api: Api, call: Call) -> Response:
    with api.store.lock:
        row = api.live_row(call)
        return Response.json(200, sharing.describe(api.store.sharing_state(row, create=False)))


def sharing_patch(api: Api, call: Call) -> Response:
    payload = call.json_body()
    enabled = payload.get("enabled")
    if "enabled" in payload and not isinstance(enabled, bool):
        raise errors.invalid_input("Must be a valid boolean.", "enabled")
    with api.store.lock:
        row = api.live_row(call)
        state = api.store.sharing_state(row, create=True)
        assert state is not None
        if isinstance(enabled, bool):
            state.enable(enabled, api.clock.now())
        return Response.json(200, sharing.describe(state))


def sharing_refresh(api: Api, call: Call) -> Response:
    with api.store.lock:
        row = api.live_row(call)
        state = api.store.sharing_state(row, create=True)
        assert state is not None
        state.rotate()
        return Response.json(200, sharing.describe(state))


def persons_list(api: Api, call: Call) -> Response:
    distinct_id = call.query.get("distinct_id")
    found = api.persons.by_distinct_id(distinct_id) if distinct_id else []
    return Response.json(200, {"results": [p.body() for p in found], "next": None, "previous": None})


def person_retrieve(api: Api, call: Call) -> Response:
    return Response.json(200, api.persons.find(_recording_id(call)).body())


def person_delete_recordings(api: Api, call: Call) -> Response:
    person = api.persons.find(_recording_id(call))
    api.persons.queue_recordings_job(person, api.clock.monotonic() + api.config.person_job_delay)
    return Response(202)


_HANDLERS: dict[str, Handler] = {
    "list": list_recordings,
    "retrieve": retrieve,
    "update": update,
    "delete": delete,
    "bulk_delete": bulk_delete,
    "sharing_get": sharing_get,
    "sharing_patch": sharing_patch,
    "sharing_refresh": sharing_refresh,
    "persons_list": persons_list,
    "person_retrieve": person_retrieve,
    "person_delete_recordings": person_delete_recordings,
}
