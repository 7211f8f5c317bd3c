"""``PostHogEmulator``: the object tests hold, tying data, API, faults and server together."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from http import HTTPStatus
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from airflow_provider_recordings.testing import (
    admin,
    errors,
    records,
    routes,
    seeding,
    sharing,
    snapshot_requests,
    snapshots,
)
from airflow_provider_recordings.testing.api import Api, Call, Response
from airflow_provider_recordings.testing.auth import ALL_SCOPES, DEFAULT_EMAIL, KeyRing
from airflow_provider_recordings.testing.clock import EmulatorClock, as_utc
from airflow_provider_recordings.testing.config import EmulatorConfig
from airflow_provider_recordings.testing.faults import Fault, FaultQueue, FaultRule, format_seconds
from airflow_provider_recordings.testing.modes import (
    BulkDeleteMode,
    DeleteUnknownMode,
    OngoingMode,
    PersonsMode,
    Shape,
    SyntheticMode,
)
from airflow_provider_recordings.testing.persons import PersonStore
from airflow_provider_recordings.testing.ratelimit import RateLimitConfig, RateLimiter
from airflow_provider_recordings.testing.requestlog import RequestLog, RequestRecord
from airflow_provider_recordings.testing.server import EmulatorHTTPServer
from airflow_provider_recordings.testing.snapshot_requests import SnapshotRequest
from airflow_provider_recordings.testing.store import ANALYZED, VIEWED, NewRow, RecordingStore
from airflow_provider_recordings.testing.timefmt import to_us

RequestCallback = Callable[["PostHogEmulator", RequestRecord], object]
T = TypeVar("T")

_DEFAULT_DURATION = timedelta(seconds=60)
_MALFORMED = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"


class _Setting(Generic[T]):
    """An emulator attribute stored in (and validated by) its EmulatorConfig."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, emulator: PostHogEmulator | None, owner: type) -> T:
        if emulator is None:
            return self  # type: ignore[return-value]
        return getattr(emulator.config, self.name)  # type: ignore[no-any-return]

    def __set__(self, emulator: PostHogEmulator, value: T) -> None:
        changes: dict[str, Any] = {self.name: value}
        emulator.config = replace(emulator.config, **changes)
        emulator._api.config = emulator.config


def require_loopback(host: str) -> None:
    """The admin endpoints have no authentication, so never listen beyond this machine."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"refusing to listen on non-loopback host {host!r}")


class PostHogEmulator:
    """A PostHog-compatible session recordings API on a local port, for tests and demos."""

    project_id: _Setting[str] = _Setting()
    response_shape: _Setting[Shape] = _Setting()
    bulk_delete: _Setting[BulkDeleteMode] = _Setting()
    bulk_delete_max: _Setting[int] = _Setting()
    max_page_size: _Setting[int | None] = _Setting()
    ongoing_field: _Setting[OngoingMode] = _Setting()
    delete_unknown: _Setting[DeleteUnknownMode] = _Setting()
    latency: _Setting[float] = _Setting()
    next_url_base: _Setting[str | None] = _Setting()
    persons_route: _Setting[PersonsMode] = _Setting()
    person_job_delay: _Setting[float] = _Setting()
    persons_bulk_delete: _Setting[PersonsMode] = _Setting()
    synthetic_playlists: _Setting[SyntheticMode] = _Setting()
    advanced_permissions: _Setting[bool] = _Setting()

    def __init__(
        self,
        project_id: str = "1",
        api_key: str = "phx_emulator_key",
        response_shape: Shape = "live",
        bulk_delete: BulkDeleteMode = "allowed",
        bulk_delete_max: int = 100,
        max_page_size: int | None = None,
        ongoing_field: OngoingMode = "present",
        delete_unknown: DeleteUnknownMode = "204",
        rate_limits: RateLimitConfig | None = None,
        latency: float = 0.0,
        clock: EmulatorClock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        persons_route: PersonsMode = "allowed",
        person_job_delay: float = 5.0,
        persons_bulk_delete: PersonsMode = "allowed",
        synthetic_playlists: SyntheticMode = "present",
        advanced_permissions: bool = True,
    ) -> None:
        require_loopback(host)
        self.config = EmulatorConfig(
            project_id=str(project_id),
            response_shape=response_shape,
            bulk_delete=bulk_delete,
            bulk_delete_max=bulk_delete_max,
            max_page_size=max_page_size,
            ongoing_field=ongoing_field,
            delete_unknown=delete_unknown,
            latency=latency,
            persons_route=persons_route,
            person_job_delay=person_job_delay,
            persons_bulk_delete=persons_bulk_delete,
            synthetic_playlists=synthetic_playlists,
            advanced_permissions=advanced_permissions,
        )
        self.api_key = api_key
        self.clock = clock or EmulatorClock()
        self.host, self._port = host, port
        self._keys = KeyRing()
        self._keys.add(api_key, ALL_SCOPES, (self.config.project_id,))
        self.store = RecordingStore()
        self.persons = PersonStore()
        limiter = RateLimiter(rate_limits) if rate_limits is not None else None
        self._api = Api(self.config, self.store, self.clock, self._keys, limiter, self.persons)
        self._faults = FaultQueue()
        self._log = RequestLog()
        self._callbacks: list[RequestCallback] = []
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._stopping.clear()
        self._server = EmulatorHTTPServer(self.host, self._port, self._process)
        # A short poll keeps stop() quick: shutdown waits for the loop's next wake-up.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="posthog-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections(timeout=5.0)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def rate_limits(self) -> RateLimitConfig | None:
        limiter = self._api.limiter
        return None if limiter is None else limiter.config

    @rate_limits.setter
    def rate_limits(self, config: RateLimitConfig | None) -> None:
        self._api.limiter = None if config is None else RateLimiter(config)

    # -- keys and data ---------------------------------------------------------------

    def add_key(
        self,
        key: str,
        scopes: Iterable[str] = ALL_SCOPES,
        projects: Iterable[str] | None = None,
        email: str = DEFAULT_EMAIL,
    ) -> None:
        """Another personal API key; ``email`` is its user's, which answers name
        (``created_by_email`` of share passwords, ``deleted_by`` of deletions)."""
        self._keys.add(key, scopes, projects if projects is not None else (self.config.project_id,), email)

    def add_recording(
        self,
        id: str | None = None,
        *,
        start_time: datetime,
        end_time: datetime | None = None,
        distinct_id: str | None = None,
        shared: bool = False,
        snapshot_blocks: int | None = None,
        block_bytes: int | None = None,
        lts: bool = False,
        **extra_fields: Any,
    ) -> dict[str, Any]:
        """Store one recording; ``end_time`` defaults to a minute after the start.

        ``viewed``/``analyzed`` set the flags; any other keyword overrides that field in
        API answers (and, for the order fields, in sorting). ``snapshot_blocks`` and
        ``block_bytes`` size its content (a few small blocks by default; hundreds of
        megabytes cost no memory, the content is generated as it is sent), and ``lts``
        keeps it as one long-term-storage file instead of blocks.
        """
        recording_id = id if id is not None else str(uuid.uuid4())
        start = as_utc(start_time)
        end = as_utc(end_time) if end_time is not None else start + _DEFAULT_DURATION
        flags = (VIEWED if extra_fields.pop("viewed", False) else 0) | (
            ANALYZED if extra_fields.pop("analyzed", False) else 0
        )
        salt = int.from_bytes(hashlib.blake2b(recording_id.encode(), digest_size=8).digest(), "big")
        spec = _snapshot_spec(salt, snapshot_blocks, block_bytes, lts)
        new = NewRow(
            recording_id, to_us(start), to_us(end), salt, distinct_id, extra_fields or None, flags, spec
        )
        with self.store.lock:
            self.store.add([new])
            if shared:
                self.set_shared(recording_id, True)
        found = self.get(recording_id)
        assert found is not None
        return found

    def seed(
        self,
        n: int,
        *,
        days: float = 30.0,
        ongoing: int = 0,
        shared: int = 0,
        seed: int = 0,
        persons: int = 0,
    ) -> list[str]:
        """Add ``n`` realistic recordings over the last ``days`` days of the clock;
        ``persons`` of their distinct ids (those with the most recordings) get a person."""
        if persons < 0:
            raise ValueError("persons must be >= 0")
        rows, shared_positions = seeding.generate(
            n,
            now_us=to_us(self.clock.now()),
            days=days,
            ongoing=ongoing,
            shared=shared,
            seed=seed,
            taken=self.store.ever_existed,
        )
        with self.store.lock:
            added = self.store.add(rows)
            now = self.clock.now()
            for position in shared_positions:
                state = self.store.sharing_state(added[position], create=True)
                assert state is not None
                state.enable(True, now)
            owners = seeding.busiest_distinct_ids((self._distinct_id(row) for row in added), persons)
            ids = [self.store.ids[row] for row in added]
        for distinct_id in owners:
            if not self.persons.by_distinct_id(distinct_id):
                self.persons.add([distinct_id], now, records.person_uuid(distinct_id))
        return ids

    def add_person(self, distinct_ids: Iterable[str], *, uuid: str | None = None) -> dict[str, Any]:
        """A person owning ``distinct_ids`` (what PostHog's persons API answers for it)."""
        return self.persons.add(list(distinct_ids), self.clock.now(), uuid).body()

    def list_persons(self) -> list[dict[str, Any]]:
        """Every person, as PostHog's persons API answers them."""
        return [person.body() for person in self.persons.all()]

    def run_person_jobs(self) -> int:
        """Run the queued recordings jobs whose time has come; how many recordings went."""
        return self._api.run_person_jobs()

    def recording_ids(self) -> set[str]:
        with self.store.lock:
            return {self.store.ids[row] for row in self.store.live_rows()}

    def get(self, recording_id: str) -> dict[str, Any] | None:
        """The retrieve answer (``ongoing`` always a bool here) plus the ``analyzed`` flag."""
        now_us = to_us(self.clock.now())
        with self.store.lock:
            row = self.store.row_of(recording_id)
            if row is None:
                return None
            view = self.store.view(row)
        body = records.detail(view, now_us)
        body["analyzed"] = view.analyzed
        return body

    def delete(self, recording_id: str, *, deleted_by: str | None = None) -> bool:
        """Delete as another user would (``deleted_by``, an email, is what the snapshots
        410 names); returns whether the recording existed."""
        with self.store.lock:
            row = self.store.row_of(recording_id)
            if row is not None:
                self.store.delete(row, at=self._api.now_seconds(), by=deleted_by)
            return row is not None

    def set_shared(self, recording_id: str, enabled: bool) -> None:
        with self.store.lock:
            state = self.store.sharing_state(self._row(recording_id), create=True)
            assert state is not None
            state.enable(enabled, self.clock.now())

    def is_shared(self, recording_id: str) -> bool:
        with self.store.lock:
            state = self.store.sharing_state(self._row(recording_id), create=False)
            return state is not None and state.enabled

    def sharing_token(self, recording_id: str) -> str:
        """The token a public link would use (created, unshared, if sharing never was)."""
        with self.store.lock:
            state = self.store.sharing_state(self._row(recording_id), create=True)
            assert state is not None
            return state.access_token

    def require_password(self, recording_id: str, required: bool = True) -> dict[str, Any]:
        """Protect the recording's public link with passwords (or stop), as a PATCH of
        ``password_required`` would; returns the sharing object."""
        with self.store.lock:
            state = self.store.sharing_state(self._row(recording_id), create=True)
            assert state is not None
            state.save(self.clock.now())
            state.password_required = required
            return sharing.describe(state)

    def add_share_password(
        self,
        recording_id: str,
        raw_password: str | None = None,
        *,
        note: str = "",
        email: str = DEFAULT_EMAIL,
    ) -> dict[str, Any]:
        """A password for the recording's link (requiring one if the link did not), as
        ``POST sharing/passwords/`` answers it: with the raw password."""
        raw, note = sharing.parse_password_request({"raw_password": raw_password or "", "note": note})
        with self.store.lock:
            state = self.store.sharing_state(self._row(recording_id), create=True)
            assert state is not None
            state.password_required = True
            entry, raw = state.add_password(next(self.store.password_ids), raw, note, email, self.clock.now())
            return sharing.password_answer(entry, raw)

    def sharing_object(self, recording_id: str) -> dict[str, Any]:
        """The sharing object the API answers (the real token, not a throwaway one)."""
        with self.store.lock:
            state = self.store.sharing_state(self._row(recording_id), create=False)
            return sharing.describe(state)

    def snapshot_sources(self, recording_id: str) -> list[dict[str, Any]]:
        """What ``GET snapshots`` lists for the recording."""
        return list(self._layout(recording_id).sources())

    def snapshot_chunks(
        self,
        recording_id: str,
        *,
        source: str = "blob_v2",
        start: int = 0,
        end: int | None = None,
        decompress: bool = True,
    ) -> Iterator[bytes]:
        """The body ``GET snapshots`` sends for ``source`` ("blob_v2": blocks
        ``start``..``end``, all of them by default; "blob_v2_lts": the LTS file), chunk
        by chunk, so even a huge recording can be compared without holding it."""
        layout = self._layout(recording_id)
        if source == "blob_v2_lts":
            request = SnapshotRequest(source, blob_key=layout.lts_key, decompress=decompress)
        elif source == "blob_v2":
            last = layout.spec.blocks - 1 if end is None else end
            request = SnapshotRequest(source, start, last, decompress=decompress)
        else:
            raise ValueError(f"source must be 'blob_v2' or 'blob_v2_lts', not {source!r}")
        try:
            chunks, _length, _type = snapshot_requests.content(layout, request)
        except errors.ApiError as exc:
            raise ValueError(exc.detail) from exc
        return chunks

    def snapshot_content(self, recording_id: str, **options: Any) -> bytes:
        """:meth:`snapshot_chunks` joined: for small recordings."""
        return b"".join(self.snapshot_chunks(recording_id, **options))

    def _layout(self, recording_id: str) -> snapshots.Layout:
        with self.store.lock:
            return snapshot_requests.layout_of(self.store, self._row(recording_id), self.config.project_id)

    def touch(self, recording_id: str, at: datetime | None = None) -> None:
        """The recording receives data now (or at ``at``): it becomes ongoing."""
        moment = to_us(as_utc(at) if at is not None else self.clock.now())
        with self.store.lock:
            self.store.set_end(self._row(recording_id), moment)

    def _distinct_id(self, row: int) -> str:
        stored = self.store.distinct.get(row)
        return stored if stored is not None else records.default_distinct_id(self.store.salts[row])

    def _row(self, recording_id: str) -> int:
        row = self.store.row_of(recording_id)
        if row is None:
            raise KeyError(f"no recording {recording_id!r}")
        return row

    # -- faults, log, hooks ------------------------------------------------------------

    def inject(
        self,
        fault: Fault,
        *,
        times: int = 1,
        method: str | None = None,
        path_contains: str | None = None,
        after: int = 0,
    ) -> None:
        self._faults.add(FaultRule(fault, times, method, path_contains, after))

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.snapshot()

    def clear_requests(self) -> None:
        self._log.clear()

    def on_request(self, callback: RequestCallback) -> RequestCallback:
        """Run ``callback(emulator, record)`` before each API request (usable as a decorator)."""
        self._callbacks.append(callback)
        return callback

    def remove_on_request(self, callback: RequestCallback) -> None:
        self._callbacks.remove(callback)

    def stats(self) -> dict[str, Any]:
        return self._log.stats()

    def reset_rate_limits(self) -> None:
        if self._api.limiter is not None:
            self._api.limiter.reset()

    # -- request processing ------------------------------------------------------------

    def _process(self, call: Call) -> Response:
        if call.path.startswith(admin.PREFIX):
            return admin.handle(self, call)
        self._api.route(call)
        pending = RequestRecord(
            method=call.method,
            path=call.path,
            query=dict(call.query),
            status=0,
            authorization=call.headers.get("authorization"),
            time=self.clock.monotonic(),
            body=_logged_body(call.body),
            kind=call.kind,
        )
        fault: Fault | None = None
        response = self._run_callbacks(pending)
        if response is None:
            fault = self._faults.take(call.method, call.path)
            response = self._respond(call, fault)
        if call.route is not None and not response.reset:
            response.headers.update(routes.deprecation_headers(call.path, call.raw_query))
        self._sleep(self.config.latency)
        final = replace(pending, status=0 if response.reset else response.status)
        self._log.append(final, throttled=response.throttled, faulted=fault is not None)
        return response

    def _run_callbacks(self, pending: RequestRecord) -> Response | None:
        for callback in list(self._callbacks):
            try:
                callback(self, pending)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                return Response.error(
                    errors.server_error("emulator_error", f"on_request callback failed: {exc!r}")
                )
        return None

    def _respond(self, call: Call, fault: Fault | None) -> Response:
        if fault is None:
            return self._api.handle(call)
        if fault.kind == "latency":
            self._sleep(fault.seconds)
            return self._api.handle(call)
        if fault.kind == "truncated":
            return _truncate(self._api.handle(call))
        if fault.kind == "reset":
            return Response(0, reset=True)
        if fault.kind == "malformed":
            return Response(200, _MALFORMED, {"Content-Type": "text/html; charset=utf-8"})
        if fault.kind == "throttle":
            wait = None if fault.retry_after is None else format_seconds(fault.retry_after)
            detail = fault.body if isinstance(fault.body, str) else None
            return Response.error(errors.throttled(wait, detail))
        return _status_response(fault)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _snapshot_spec(
    salt: int, blocks: int | None, block_bytes: int | None, lts: bool
) -> snapshots.SnapshotSpec | None:
    if blocks is None and block_bytes is None and not lts:
        return None
    default = snapshots.default_spec(salt)
    return snapshots.SnapshotSpec(
        blocks if blocks is not None else default.blocks,
        block_bytes if block_bytes is not None else default.block_bytes,
        lts,
    )


def _logged_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


def _truncate(response: Response) -> Response:
    if response.stream is not None and response.length is not None:
        half = response.length // 2
        return Response(
            200, headers=dict(response.headers), stream=_first_bytes(response.stream, half), length=half
        )
    body = response.body or b'{"success":true}'
    return Response(200, body[: len(body) // 2], {"Content-Type": "application/json"})


def _first_bytes(chunks: Iterable[bytes], count: int) -> Iterator[bytes]:
    for chunk in chunks:
        if count <= 0:
            return
        yield chunk[:count]
        count -= len(chunk)


def _status_response(fault: Fault) -> Response:
    code = fault.status_code
    if code in (204, 304) or (100 <= code < 200):
        return Response(code)
    if isinstance(fault.body, bytes):
        return Response(code, fault.body, {"Content-Type": "application/octet-stream"})
    if isinstance(fault.body, str):
        return Response(code, fault.body.encode(), {"Content-Type": "text/plain; charset=utf-8"})
    if fault.body is not None:
        return Response(code, json.dumps(fault.body).encode(), {"Content-Type": "application/json"})
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    if code >= 500:
        exc = errors.ApiError(code, "server_error", "error", "A server error occurred.")
    else:
        exc = errors.ApiError(code, "invalid_request", "error", phrase)
    return Response.error(exc)
