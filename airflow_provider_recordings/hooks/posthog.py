"""The PostHog hook: connection, authentication, pagination, retries and rate limiting.

The hook is a thin synchronous driver (``requests``) of the sans-I/O core in
:mod:`airflow_provider_recordings.core`: the core builds each request and says what
each answer means; the hook sends bytes, sleeps when told to, and counts what it spent.

Example::

    hook = PostHogHook(posthog_conn_id="posthog_default")
    for recording in hook.iter_recordings(date_from="-30d", distinct_ids=["user-1"]):
        print(recording["id"], recording["end_time"])
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_recordings.core import endpoints
from airflow_provider_recordings.core.client import ClientCore
from airflow_provider_recordings.core.config import LIST, ClientConfig
from airflow_provider_recordings.core.endpoints import DeleteSummary
from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogBadRequestError,
    PostHogConfigError,
    PostHogError,
    PostHogNotFoundError,
    PostHogRateLimitError,
    PostHogRecordingApiFailure,
    PostHogStoppedError,
    PostHogStreamInterruptedError,
)
from airflow_provider_recordings.core.limits import OLD_BULK_DELETE_MAX, chunks
from airflow_provider_recordings.core.pagination import DEFAULT_PAGE_SIZE, RecordingPager
from airflow_provider_recordings.core.parallel import run_each
from airflow_provider_recordings.core.protocol import ApiRequest, request_headers
from airflow_provider_recordings.core.ratelimit import RateLimiter, SyncRateWindows
from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.core.stats import CallStats
from airflow_provider_recordings.hooks.connection import (
    choose_limiter,
    mask_answer,
    read_config,
    sharing_object,
    store_conn_id,
)

if TYPE_CHECKING:
    import requests

#: Called once per finished part (a bulk chunk or one id) with what it achieved.
DeleteCallback = Callable[[DeleteSummary, list[str]], None]


def _nothing(ids: list[str]) -> None:
    """The default ``before_part``: nobody needs to know before a call is made."""


class _BulkRefusedError(Exception):
    """The server refused bulk deletes (to personal API keys, or has no such route)."""


@dataclass
class _Parts:
    """The callbacks of one :meth:`PostHogHook.delete_recordings`: what each part achieved,
    which ids a call is about to ask for, and which calls were abandoned in flight."""

    record: Callable[[DeleteSummary, list[str]], None]
    announce: Callable[[list[str]], None]
    unknown: Callable[[list[str]], None]
    max_workers: int


@dataclass
class _Client:
    """Everything built from the connection, created once per hook on first use."""

    core: ClientCore
    session: requests.Session


class PostHogHook(BaseHook):
    """Talk to PostHog's session recordings API for one project.

    :param posthog_conn_id: Airflow connection of type ``posthog``: host = base URL
        (empty for ``https://us.posthog.com``), password = personal API key, extra
        ``project_id`` (required) and optional rate-limit settings.
    :param page_size: ``limit`` asked for on list calls. List calls have the scarcest
        budget (60 an hour on PostHog's free plan), so pages are large; servers that
        clamp it silently are handled.
    :param max_retry_wait: longest wait (seconds) the hook sleeps for a retry or the
        rate limiter; a longer one raises :class:`PostHogRateLimitError` with the wait.
        Defaults to the connection's ``max_retry_wait`` extra, else 300.
    :param max_api_calls: stop with :class:`PostHogBudgetExhaustedError` once this many
        HTTP requests were sent by this hook (a per-run budget).
    :param retry_policy: override the retry policy (tests inject a seeded one).
    :param sleep: function used to wait (tests inject one that records instead). By
        default a wait ends early when the hook is stopped.
    :param clock: monotonic clock used by the rate limiter.
    :param rate_limiter: share one limiter between several hooks of one process. By
        default the connection's ``rate_limit_storage`` decides: a Redis URL shares the
        windows with every process using the same key, else they are this hook's own.

    The hook is safe to share between the threads of one task: one ``requests.Session``
    (connection pool sized for parallel work), one rate limiter and one set of counters.
    """

    conn_name_attr = "posthog_conn_id"
    default_conn_name = "posthog_default"
    conn_type = "posthog"
    hook_name = "PostHog"

    def __init__(
        self,
        posthog_conn_id: str = default_conn_name,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_retry_wait: float | None = None,
        max_api_calls: int | None = None,
        retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rate_limiter: SyncRateWindows | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        self.posthog_conn_id = posthog_conn_id
        self.page_size = page_size
        self._max_api_calls = max_api_calls
        self.stats = CallStats()
        self._max_retry_wait = max_retry_wait
        self._retry_policy = retry_policy
        self._rate_limiter = rate_limiter
        #: Set by :meth:`stop`: from then on no request starts and no wait goes on.
        self.stop_event = threading.Event()
        self._sleep = sleep or self._wait
        self._clock = clock
        self._lock = threading.Lock()
        self._client_state: _Client | None = None
        self._bulk_delete_supported: bool | None = None
        self._bulk_answered = False
        self._bulk_chunk_size: int | None = None

    @property
    def max_api_calls(self) -> int | None:
        """Requests this hook may still send in total (None: no limit)."""
        return self._max_api_calls

    @max_api_calls.setter
    def max_api_calls(self, value: int | None) -> None:
        self._max_api_calls = value
        if self._client_state is not None:
            self._client_state.core.max_api_calls = value

    def carried_over(self) -> dict[str, Any]:
        """What this hook learned that the pass after a deferral needs (JSON-serialisable).

        The next pass runs on a new hook, often in another process. Without this it
        would start with an empty rate budget that PostHog still counts as spent (and
        be throttled), and pay again to learn that bulk delete is refused.
        """
        windows = self.limiter.snapshot() if isinstance(self.limiter, RateLimiter) else None
        return {"rate_windows": windows, "bulk_delete": self._bulk_delete_supported}

    def take_over(self, carried: dict[str, Any]) -> None:
        """Start from what an earlier hook's :meth:`carried_over` returned."""
        if carried.get("rate_windows") and isinstance(self.limiter, RateLimiter):
            self.limiter.restore(carried["rate_windows"])
        if carried.get("bulk_delete") is not None:
            self._bulk_delete_supported = bool(carried["bulk_delete"])

    def stop_after(self, seconds: float | None) -> None:
        """Refuse to start any call once ``seconds`` have passed (a run's time budget).

        Calls past it raise :class:`PostHogBudgetExhaustedError`, which operators turn
        into a clean stop that reports what remains.
        """
        self._client().core.stop_at = None if seconds is None else self._clock() + seconds

    def _wait(self, seconds: float) -> None:
        """Sleep, unless the hook is stopped meanwhile."""
        self.stop_event.wait(seconds)

    def stop(self) -> None:
        """Stop the run: no request starts after this (a request in flight may still end).

        Safe from any thread and from a signal handler (Airflow's ``on_kill``).
        """
        self.stop_event.set()

    # -- Connection --------------------------------------------------------------------

    def get_conn(self) -> requests.Session:
        """The HTTP session this hook sends with (pooled, no retries of its own).

        Requests made on it directly bypass the hook's rate limits, retries and counters;
        prefer :meth:`send` and the methods below.
        """
        return self._client().session

    @property
    def config(self) -> ClientConfig:
        """The validated connection settings (read once; raises before any request)."""
        return self._client().core.config

    def _client(self) -> _Client:
        with self._lock:
            if self._client_state is None:
                self._client_state = self._build_client()
            return self._client_state

    def _build_client(self) -> _Client:
        import requests
        from requests.adapters import HTTPAdapter

        conn = self.get_connection(self.posthog_conn_id)
        store = store_conn_id(self.posthog_conn_id, conn)
        config = read_config(self.posthog_conn_id, conn, self._store_connection(store) if store else None)
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=32, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        policy = self._retry_policy or RetryPolicy(max_attempts=config.max_attempts)
        policy.max_wait = self.max_retry_wait(config)
        limiter = self._rate_limiter or choose_limiter(
            config, asynchronous=False, clock=self._clock, log=self.log
        )
        core = ClientCore(config, policy, limiter, stats=self.stats, clock=self._clock)
        core.stopped = self.stop_event
        core.max_api_calls = self._max_api_calls
        return _Client(core=core, session=session)

    def _store_connection(self, store_conn_id: str) -> Any:
        """The Redis connection holding the shared rate store's credentials."""
        try:
            return self.get_connection(store_conn_id)
        except Exception as exc:
            problem = f"the Redis connection {store_conn_id!r} cannot be read ({type(exc).__name__})"
            raise PostHogConfigError(
                f"PostHog connection {self.posthog_conn_id!r}: extra.rate_limit_redis_conn_id: {problem}",
                field="extra.rate_limit_redis_conn_id",
                problem=problem,
            ) from None

    def max_retry_wait(self, config: ClientConfig | None = None) -> float:
        """Longest single wait this hook sleeps (argument, else the connection's extra)."""
        if self._max_retry_wait is not None:
            return float(self._max_retry_wait)
        return (config or self.config).max_retry_wait

    @property
    def limiter(self) -> SyncRateWindows:
        return self._client().core.limiter  # type: ignore[no-any-return]

    # -- Transport ---------------------------------------------------------------------

    def send(self, request: ApiRequest, *, before_send: Callable[[], None] | None = None) -> Any:
        """Send one request with retries, rate limiting and counting; return the decoded body.

        ``before_send`` runs once, when the rate budget first lets the request go and
        just before its bytes do (an audit trail's "requested" line).
        """
        from tenacity import Retrying

        client = self._client()
        retrying = Retrying(
            sleep=self._sleep,
            before_sleep=lambda state: client.core.before_retry(request, state, self.log),
            **client.core.policy.tenacity_kwargs(),
        )
        announce = [before_send] if before_send is not None else []
        return retrying(self._attempt, client, request, announce)

    def stream(
        self, request: ApiRequest, consume: Callable[[bytes], None], *, chunk_size: int = 1 << 20
    ) -> None:
        """Send ``request`` and hand its answer's body to ``consume`` as it arrives, a chunk at
        a time (a recording's content can be gigabytes; it never sits in memory whole).

        Retried, rate-limited and counted like :meth:`send` until the first chunk reaches
        ``consume``; an answer that breaks off after that raises
        :class:`PostHogStreamInterruptedError`, since ``consume`` already holds part of it.
        """
        from tenacity import Retrying

        client = self._client()
        retrying = Retrying(
            sleep=self._sleep,
            before_sleep=lambda state: client.core.before_retry(request, state, self.log),
            **client.core.policy.tenacity_kwargs(),
        )
        retrying(self._attempt, client, request, [], consume, chunk_size)

    def _attempt(
        self,
        client: _Client,
        request: ApiRequest,
        announce: list[Callable[[], None]] | None = None,
        consume: Callable[[bytes], None] | None = None,
        chunk_size: int = 1 << 20,
    ) -> Any:
        import requests

        core = client.core
        wait, call = core.wait_before(request)
        while call is None:
            # Every long wait is said, a second one too (another caller took the slot).
            core.say_wait(request, wait, self.log)
            self._sleep(wait)
            wait, call = core.wait_before(request)
        while announce:
            announce.pop()()
        if core.stopped.is_set():
            # Announcing it stopped the run (its report line could not be written), or a
            # stop came meanwhile: the request does not go out.
            core.answered(call)
            raise PostHogStoppedError("the run was stopped; no new request was sent")
        config = core.config
        broken = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
        try:
            response = client.session.request(
                request.method,
                request.target(config),
                json=request.json_body,
                headers=request_headers(config, request.json_body is not None),
                timeout=(config.connect_timeout, config.read_timeout),
                allow_redirects=False,
                stream=consume is not None,
            )
            if consume is not None and 200 <= response.status_code < 300:
                return self._consume(request, response, consume, chunk_size, broken)
            body = response.content
        except broken as exc:
            raise core.transport_error(request, exc) from None
        finally:
            core.answered(call)
        try:
            return mask_answer(
                request.kind, core.answer(request, response.status_code, response.headers, body, self.log)
            )
        except PostHogRateLimitError as exc:
            # Everyone sharing the windows waits as long as PostHog asked, at once, even
            # when the wait is too long for this task to sleep and it stops or defers.
            if exc.retry_after:
                core.limiter.pause(exc.retry_after)
            raise

    def _consume(
        self,
        request: ApiRequest,
        response: requests.Response,
        consume: Callable[[bytes], None],
        chunk_size: int,
        broken: tuple[type[BaseException], ...],
    ) -> None:
        """Stream a successful answer's body into ``consume``."""
        chunks = response.iter_content(chunk_size)
        try:
            try:
                first = next(chunks, b"")
            except broken as exc:  # nothing used yet: the request may be retried
                raise self._client().core.transport_error(request, exc) from None
            try:
                if first:
                    consume(first)
                for chunk in chunks:
                    if self.stop_event.is_set():
                        raise PostHogStoppedError("the run was stopped while an answer was streaming")
                    consume(chunk)
            except broken as exc:
                raise PostHogStreamInterruptedError(
                    f"{request.describe(self.config)}: the answer broke off ({type(exc).__name__}); "
                    "what was read so far is discarded"
                ) from None
        finally:
            response.close()

    # -- Recordings --------------------------------------------------------------------

    def iter_recordings(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield every recording matching the list parameters, page by page, each once.

        Parameters are PostHog's list filters (``date_from``, ``date_to``,
        ``distinct_ids``, ``session_ids``, ``person_uuid``, ``order``, ...); lists are
        sent as JSON arrays. Note PostHog's default window: without ``date_from`` the
        server only returns recordings that started in the last three days
        (``date_from=-3d``); explicit ``session_ids`` bypass the window.
        Passing ``offset`` selects offset pagination; otherwise the server's cursor is
        used, which stays correct while recordings are deleted between pages.
        """
        endpoints.validate_list_params(params)
        pager = RecordingPager(self.config, params, page_size=self.page_size)
        request: ApiRequest | None = pager.first_request()
        while request is not None:
            rows, request = pager.feed(self.send(request))
            yield from rows

    def get_recording(self, recording_id: str) -> dict[str, Any]:
        """Retrieve one recording (raises :class:`PostHogNotFoundError` when it is gone)."""
        return self.send(endpoints.retrieve(recording_id))

    def update_recording(
        self, recording_id: str, *, before_send: Callable[[], None] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """PATCH a recording. Fields are checked before the request.

        The live service reads ``viewed``, ``analyzed`` and ``player_metadata`` and needs
        ``viewed`` or ``analyzed`` to be true; the published document's ``person`` is
        accepted too. Returns PostHog's answer (``{"success": true}`` on the live
        service, the recording on servers that follow the published document).
        """
        return self.send(endpoints.update(recording_id, fields), before_send=before_send) or {}

    def delete_recording(self, recording_id: str) -> None:
        """Delete one recording permanently. Idempotent: 204 and 404 both mean gone."""
        try:
            self.send(endpoints.delete(recording_id))
        except PostHogNotFoundError:
            pass

    def delete_recordings(
        self,
        recording_ids: Iterable[str],
        *,
        max_workers: int = 1,
        on_part: DeleteCallback | None = None,
        before_part: Callable[[list[str]], None] | None = None,
        on_unknown: Callable[[list[str]], None] | None = None,
    ) -> DeleteSummary:
        """Delete many recordings: bulk (100 per call) where allowed, one by one otherwise.

        PostHog refuses ``bulk_delete`` to personal API keys (403) and older servers lack
        it (404/405); the first such answer switches this hook to single deletes for the
        rest of its life. A failure that concerns one id (a 500 ``recording_api_failure``,
        an error that outlived its retries) fails that id only. Errors that concern the
        whole run (authentication, a rate-limit wait over the cap, a spent call budget)
        stop it and are raised; ``on_part`` has then seen every part that finished.
        ``before_part`` sees each part's ids just before its call is made (from the
        worker thread that makes it), so an audit trail can record what was asked even
        when the process dies before the answer arrives. ``on_unknown`` sees the ids of
        each call abandoned in flight when the run is stopped (its outcome is unknown).
        """
        ids = endpoints.validate_recording_ids(recording_ids)
        summary = DeleteSummary()

        def record(part: DeleteSummary, chunk: list[str]) -> None:
            summary.add(part)
            if on_part is not None:
                on_part(part, chunk)

        parts = _Parts(record, before_part or _nothing, on_unknown or _nothing, max_workers)
        remaining = self._bulk_delete(ids, parts) if self._bulk_delete_supported is not False else ids
        if remaining:
            self._single_deletes(remaining, parts)
        return summary

    def each(
        self,
        items: Iterable[Any],
        work: Callable[[Any], Any],
        on_result: Callable[[Any, Any, BaseException | None], None],
        *,
        max_workers: int = 1,
        on_abandoned: Callable[[Any], None] = _nothing,
    ) -> None:
        """:func:`~airflow_provider_recordings.core.parallel.run_each` under this hook's stop:
        after :meth:`stop`, no item starts and items in flight are reported abandoned."""
        run_each(
            items, work, on_result, max_workers=max_workers, stop=self.stop_event, on_abandoned=on_abandoned
        )

    def _bulk_delete(self, ids: list[str], parts: _Parts) -> list[str]:
        """Delete in chunks; return the ids left for single deletes if bulk is refused."""
        chunk_size = self._bulk_chunk_size or self.config.bulk_delete_chunk_size
        todo = chunks(ids, chunk_size)

        def finished(chunk: list[str], part: DeleteSummary | None, exc: BaseException | None) -> None:
            if exc is not None:
                part = DeleteSummary(requested=len(chunk), failed=dict.fromkeys(chunk, str(exc)))
            assert part is not None
            parts.record(part, chunk)

        def delete_chunk(chunk: list[str]) -> DeleteSummary:
            return self._bulk_chunk(chunk, parts.announce)

        def probe(chunk: list[str]) -> DeleteSummary:
            try:
                return delete_chunk(chunk)
            except PostHogApiError as exc:
                if endpoints.bulk_delete_unsupported(exc):
                    raise _BulkRefusedError(str(exc)) from exc
                raise

        # Probe one chunk at a time until the server says whether it allows bulk
        # deletes, so a refusal costs one call, not max_workers.
        while self._bulk_delete_supported is None and todo:
            first = todo.pop(0)
            try:
                self.each([first], probe, finished, on_abandoned=parts.unknown)
            except _BulkRefusedError as exc:
                self._bulk_delete_supported = False
                self.log.info("Bulk delete is not available here (%s); deleting one by one.", exc)
                return [i for chunk in [first, *todo] for i in chunk]
            # A chunk that failed alone (a 5xx that outlived its retries) says nothing yet.
            if self._bulk_delete_supported is None and self._bulk_answered:
                self._bulk_delete_supported = True
        self.each(todo, delete_chunk, finished, max_workers=parts.max_workers, on_abandoned=parts.unknown)
        return []

    def _bulk_chunk(
        self, chunk: list[str], announce: Callable[[list[str]], None] = _nothing
    ) -> DeleteSummary:
        try:
            data = self.send(endpoints.bulk_delete(chunk), before_send=lambda: announce(chunk))
            self._bulk_answered = True
        except PostHogBadRequestError:
            if len(chunk) <= OLD_BULK_DELETE_MAX:
                raise
            # Older servers take at most 20 ids per call.
            self._bulk_chunk_size = OLD_BULK_DELETE_MAX
            summary = DeleteSummary()
            for part in chunks(chunk, OLD_BULK_DELETE_MAX):
                summary.add(self._bulk_chunk(part, announce))
            return summary
        return endpoints.reconcile_bulk_delete(chunk, data)

    def _single_deletes(self, ids: list[str], parts: _Parts) -> None:
        def delete_one(recording_id: str) -> DeleteSummary:
            try:
                self.send(endpoints.delete(recording_id), before_send=lambda: parts.announce([recording_id]))
            except PostHogNotFoundError:
                return DeleteSummary(requested=1, gone=[recording_id], already_gone=1)
            except PostHogRecordingApiFailure as exc:
                return DeleteSummary(requested=1, failed={recording_id: str(exc)})
            return DeleteSummary(requested=1, gone=[recording_id], deleted=1)

        def finished(recording_id: str, part: DeleteSummary | None, exc: BaseException | None) -> None:
            if exc is not None:
                part = DeleteSummary(requested=1, failed={recording_id: str(exc)})
            assert part is not None
            parts.record(part, [recording_id])

        self.each(
            ids,
            delete_one,
            finished,
            max_workers=parts.max_workers,
            on_abandoned=lambda recording_id: parts.unknown([recording_id]),
        )

    # -- Sharing -----------------------------------------------------------------------

    def get_sharing(self, recording_id: str) -> dict[str, Any]:
        """The recording's sharing configuration (one object: enabled, access_token, ...).

        The access token of an enabled link is registered with Airflow's secret masker
        as soon as it is read: anyone holding it can watch the recording.
        """
        return sharing_object(self.send(endpoints.get_sharing(recording_id)))

    def set_sharing(
        self, recording_id: str, enabled: bool, *, before_send: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Turn the public link on or off; returns the new sharing configuration."""
        return sharing_object(
            self.send(endpoints.set_sharing(recording_id, enabled), before_send=before_send)
        )

    # -- Playlists -----------------------------------------------------------------------

    def playlist_size(self, short_id: str) -> int:
        """How many recordings a playlist holds (``synthetic-shared``: the enabled links).

        Needs ``session_recording_playlist:read`` (403 without it); servers without
        synthetic playlists answer 404.
        """
        return endpoints.playlist_count(self.send(endpoints.playlist(short_id)))

    def playlist_page(self, short_id: str, offset: int) -> list[dict[str, Any]]:
        """One page of a playlist's recordings, from ``offset``; short pages do not mean the end."""
        data = self.send(endpoints.playlist_recordings(short_id, offset=offset))
        results = data.get("results") if isinstance(data, dict) else None
        return [row for row in results or [] if isinstance(row, dict) and "id" in row]

    # -- Persons (erasure requests) ------------------------------------------------------

    def find_persons(self, distinct_id: str) -> list[dict[str, Any]]:
        """The persons owning ``distinct_id`` (none, or one): ``id``, ``uuid``, ``distinct_ids``..."""
        data = self.send(endpoints.find_persons(distinct_id))
        results = data.get("results") if isinstance(data, dict) else data
        return [person for person in results or [] if isinstance(person, dict)]

    def get_person(self, person: str) -> dict[str, Any]:
        """One person, by numeric id or UUID (:class:`PostHogNotFoundError` when unknown)."""
        data = self.send(endpoints.retrieve_person(person))
        return data if isinstance(data, dict) else {}

    def bulk_delete_person_recordings(self, person_uuids: list[str]) -> dict[str, Any]:
        """Ask PostHog to delete every recording of these persons (at most 1,000), keeping
        the persons themselves: ``POST persons/bulk_delete/``, PostHog's current route.

        PostHog answers 202 and deletes them in a background job later; the answer says how
        many persons it found. Needs ``person:write``; older servers lack the route (404/405).
        """
        data = self.send(endpoints.bulk_delete_person_recordings(person_uuids))
        return data if isinstance(data, dict) else {}

    def delete_person_recordings(self, person: str) -> None:
        """Ask PostHog to delete every recording of a person's distinct ids (the deprecated
        ``persons/<id>/delete_recordings/``, for servers without ``persons/bulk_delete/``).

        PostHog answers 202 and deletes them in a background job some time later, one call
        whatever their number, counted in the persons budget rather than the recordings
        one. Needs the ``person:write`` scope; older servers lack the route (404/405).
        """
        self.send(endpoints.delete_person_recordings(person))

    # -- Airflow integration -----------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """One list call (limit 1, no retries): proves host, key, scope and project together.

        It backs the UI's Test button, so it answers at once rather than after retries.
        """
        try:
            client = self._client()
            config = client.core.config
            self._attempt(client, ApiRequest("GET", params=(("limit", "1"), ("date_from", "-1d")), kind=LIST))
        except PostHogApiError as exc:
            return False, f"PostHog answered {exc.status}: {exc.detail or exc}"
        except PostHogConfigError as exc:
            # Airflow tests a form under a random connection id: name the field only.
            return False, f"{exc.field}: {exc.problem}" if exc.field else str(exc)
        except PostHogError as exc:
            return False, str(exc)
        return True, f"Connected to PostHog project {config.project_id} at {config.base_url}"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout for Airflow 2.x (3.2+ reads provider metadata instead)."""
        from airflow_provider_recordings.get_provider_info import get_provider_info

        behaviour = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
        return {
            "hidden_fields": behaviour["hidden-fields"],
            "relabeling": behaviour["relabeling"],
            "placeholders": behaviour["placeholders"],
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra connection fields for Airflow 2.x's form (3.2+ reads ``conn-fields``),
        with the same constraints as their schemas there."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import (
            AnyOf,
            InputRequired,
            Length,
            NumberRange,
            Optional,
            Regexp,
            ValidationError,
        )

        from airflow_provider_recordings.get_provider_info import CONN_FIELDS

        def at_least(minimum: float) -> Any:
            # Airflow 2 takes no FloatField: a number is a text field, checked here.
            def check(form: Any, field: Any) -> None:
                try:
                    number = float(field.data)
                except (TypeError, ValueError):
                    number = minimum - 1
                if not number >= minimum:
                    raise ValidationError(f"must be a number of at least {minimum:g}")

            return check

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec["schema"]
            kind = schema["type"][0] if isinstance(schema["type"], list) else schema["type"]
            # Only the project id must be given: every other field has a default (2.x's
            # form offers no default, so an empty field means the default here too).
            validators: list[Any] = [InputRequired() if name == "project_id" else Optional()]
            if "pattern" in schema:
                validators.append(Regexp(schema["pattern"], message=f"must match {schema['pattern']}"))
            if "minimum" in schema:
                validators.append(
                    NumberRange(min=schema["minimum"]) if kind == "integer" else at_least(schema["minimum"])
                )
            if "maxLength" in schema:
                validators.append(Length(min=schema.get("minLength", -1), max=schema["maxLength"]))
            if "enum" in schema:
                validators.append(AnyOf([value for value in schema["enum"] if value is not None]))
            widgets[name] = (IntegerField if kind == "integer" else StringField)(
                lazy_gettext(spec["label"]),
                widget=BS3TextFieldWidget(),
                description=spec.get("description"),
                validators=validators,
            )
        return widgets
