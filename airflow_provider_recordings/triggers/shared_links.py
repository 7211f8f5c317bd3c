"""React to a new public link: an asset watcher over PostHog's ``synthetic-shared`` playlist.

:class:`PostHogSharedLinksTrigger` is an event trigger (Airflow 3's ``BaseEventTrigger``)
for an :class:`~airflow.sdk.AssetWatcher`. It polls a connection's ``synthetic-shared``
playlist, PostHog's built-in list of every recording with an enabled public link, and
yields one event per newly shared recording::

    {"recording_id": "0190b7e2-...", "shared_at": "2026-05-04T09:12:44.120000Z"}

``shared_at`` is the sharing configuration's ``created_at`` (when sharing was first set
up for the recording), read with one ``GET …/sharing/`` per new link. The link's token
is never read into an event or a log line: :func:`~airflow_provider_recordings.hooks.connection.sharing_object`
masks it as soon as the answer arrives.

Each poll costs the playlist's count, then its pages of 50 (as many as the count says:
a page can come back short before the end), so ``1 + ceil(links / 50)`` calls, plus one
sharing read per new link. Every call goes through
:class:`~airflow_provider_recordings.hooks.posthog_async.AsyncPostHogClient`, so it
counts against the key's budget (and the connection's shared Redis store) like any other.

**The watermark.** The first poll of a watcher without saved state records the links
already there as its baseline and fires nothing. After that, a watcher remembers the
set of recordings currently shared (8-byte digests, about 11 bytes a link once encoded,
so about 6,000 links fit in Airflow's default ``[state_store] max_value_storage_bytes`` of
65,535 bytes), and fires for each one that is not in it. A link turned off leaves the set,
so turning it on again fires again. On Airflow 3.3+ the set lives in the watched asset's
state store and is written right after each event, so a restarted triggerer neither
repeats nor skips an event, except in one window: an event yielded in the second
before the triggerer dies (the runner hands events to its supervisor about once a
second) is lost, because the state already counts it. Before 3.3 the set lives in
memory and a restart takes a new baseline.

**Shared polls.** On Airflow 3.3+, the watchers of one connection and interval in a
triggerer share one poll (``shared_stream_key``): one round of calls, broadcast to
every watcher, each comparing it with its own watermark; a new link is read once for
all of them. :meth:`~PostHogSharedLinksTrigger.run` pipes the trigger's own stream
through its own filter, so the trigger also works alone (Airflow 3.0 to 3.2, tests).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import importlib
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Hashable, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.triggers import BaseEventTrigger
from airflow.triggers.base import TriggerEvent

from airflow_provider_recordings.core.errors import (
    PostHogConfigError,
    PostHogError,
    PostHogNotFoundError,
    PostHogPermissionError,
    PostHogRateLimitError,
)

if TYPE_CHECKING:
    from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "posthog_default"

#: Seconds between polls: 1 + ceil(links / 50) calls each (60 to 120 calls an hour
#: for up to 50 links, 5 to 10 % of a key's 1,200).
DEFAULT_POLL_INTERVAL = 60.0

#: Key of the watermark in the watched asset's state store (Airflow 3.3+).
STATE_KEY = "posthog_shared_links"

#: Bytes of each recording id's digest in the watermark (blake2b).
DIGEST_BYTES = 8

#: How the watermark's digests are written (a changed format starts a new baseline).
STATE_FORMAT = "blake2b-8/base64"

#: Airflow's default ``[state_store] max_value_storage_bytes``: larger values are still
#: stored, with a warning in the log, on each write.
MAX_VALUE_BYTES = 65_535

#: What the shared stream of one connection and interval is called in the triggerer.
STREAM = "posthog-shared-links"

#: How the poll loop waits (tests replace it to see the waits without waiting).
_sleep = asyncio.sleep


@dataclass(frozen=True)
class Sharing:
    """What an event may say of a link: whether it is on (None: unknown), and since when."""

    enabled: bool | None
    created_at: str | None


@dataclass(frozen=True)
class SharedLinks:
    """One poll of a connection's ``synthetic-shared``, broadcast to each of its watchers.

    ``recording_ids`` are the recordings PostHog returned (``counted`` is what it
    counted, which can be more: deleted recordings whose link stays enabled, and ones it
    cannot look up). ``sharing`` reads a recording's sharing configuration once for
    every watcher of the poll (None when the recording is gone).
    """

    project: str
    recording_ids: frozenset[str]
    counted: int
    sharing: Callable[[str], Awaitable[Sharing | None]]


def digest(recording_id: str) -> bytes:
    return hashlib.blake2b(recording_id.encode(), digest_size=DIGEST_BYTES).digest()


def encode_state(project: str, digests: Iterable[bytes]) -> dict[str, Any]:
    ordered = sorted(digests)
    return {
        "format": STATE_FORMAT,
        "project": project,
        "count": len(ordered),
        "links": base64.b64encode(b"".join(ordered)).decode("ascii"),
    }


def decode_state(value: Any) -> tuple[str, set[bytes]] | None:
    """``(project, digests)`` of a saved watermark; None for nothing usable."""
    if not isinstance(value, dict) or value.get("format") != STATE_FORMAT:
        return None
    project, links = value.get("project"), value.get("links")
    if not isinstance(project, str) or not isinstance(links, str):
        return None
    try:
        raw = base64.b64decode(links.encode("ascii"), validate=True)
    except ValueError:
        return None
    if len(raw) % DIGEST_BYTES:
        return None
    return project, {raw[start : start + DIGEST_BYTES] for start in range(0, len(raw), DIGEST_BYTES)}


class Watermark:
    """The links a watcher has reported or found at its baseline, as digests.

    Kept in the watched asset's state store when the triggerer provides one (Airflow
    3.3+), otherwise in memory only. A trigger serving several assets (the same trigger
    in the watchers of each) writes each asset's state and reads the union.
    """

    def __init__(self, store: Any, log: Any) -> None:
        self._accessors = _accessors(store) if store is not None else []
        self._log = log
        self.loaded = False
        #: None until a baseline is taken (or a saved one read).
        self.digests: set[bytes] | None = None
        self._warned_size = False

    @property
    def persistent(self) -> bool:
        return bool(self._accessors)

    async def load(self, project: str) -> None:
        """Read the saved watermark of ``project`` (once; raises if the store fails)."""
        if self.loaded:
            return
        saved = [decode_state(await accessor.aget(STATE_KEY)) for accessor in self._accessors]
        found = [state[1] for state in saved if state is not None and state[0] == project]
        if any(state is not None for state in saved) and not found:
            self._log.warning(
                "The saved watermark of the shared-links watcher is for another PostHog project; "
                "taking a new baseline of %s",
                project,
            )
        self.digests = set().union(*found) if found else None
        self.loaded = True

    async def save(self, project: str, digests: set[bytes]) -> None:
        """Remember ``digests``; written to the state store at once, when there is one."""
        self.digests = set(digests)
        if not self._accessors:
            return
        value = encode_state(project, digests)
        size = len(json.dumps(value))
        if size > MAX_VALUE_BYTES and not self._warned_size:
            self._warned_size = True
            self._log.warning(
                "The shared-links watermark (%d links) is %d bytes, over Airflow's default "
                "[state_store] max_value_storage_bytes of %d: it is still stored, with a warning on each write",
                len(digests),
                size,
                MAX_VALUE_BYTES,
            )
        for accessor in self._accessors:
            try:
                await accessor.aset(STATE_KEY, value)
            except Exception as exc:
                # The watermark in memory is still right; only a restart before the next
                # successful write would repeat what it holds.
                self._log.warning(
                    "Could not save the shared-links watermark: %s: %s", type(exc).__name__, exc
                )


def _accessors(store: Any) -> list[Any]:
    """The per-asset accessors of Airflow's ``AssetStateStoreAccessors`` (the store itself
    when it serves a single asset, or is something else with ``aget``/``aset``)."""
    by_name, by_uri = getattr(store, "_by_name", None), getattr(store, "_by_uri", None)
    if isinstance(by_name, dict) and isinstance(by_uri, dict) and len(by_name) + len(by_uri) > 1:
        return [*by_name.values(), *by_uri.values()]
    return [store]


class SharedLinksPoller:
    """The polls of one connection's ``synthetic-shared``, and the sharing reads they need."""

    def __init__(self, client: AsyncPostHogClient, conn_id: str) -> None:
        self.client = client
        self.conn_id = conn_id
        self.project = f"{client.config.base_url}/project/{client.config.project_id}"
        self._previous: frozenset[str] | None = None
        self._known: dict[str, Sharing | None] = {}
        self._reading: dict[str, asyncio.Task[Sharing | None]] = {}

    async def poll(self) -> SharedLinks:
        """The playlist's count, then its pages (as many as the count says)."""
        from airflow_provider_recordings.core import endpoints  # loaded with the client, off the loop

        counted = endpoints.playlist_count(
            await self.client.send(endpoints.playlist(endpoints.SHARED_PLAYLIST))
        )
        found = await self._pages(counted)
        if (
            len(found) < counted
            and counted > endpoints.PLAYLIST_PAGE
            and (self._previous is None or self._previous - found)
        ):
            # Offset pages of an unordered set can skip a recording when the set changes
            # between two pages; before reporting one gone, page once more.
            found |= await self._pages(counted)
        ids = frozenset(found)
        self._previous = ids
        for recording_id in set(self._known) - ids:
            del self._known[recording_id]  # turned off: read it again if it comes back
        return SharedLinks(self.project, ids, counted, self.sharing)

    async def _pages(self, counted: int) -> set[str]:
        from airflow_provider_recordings.core import endpoints

        found: set[str] = set()
        for offset in range(0, counted, endpoints.PLAYLIST_PAGE):
            data = await self.client.send(
                endpoints.playlist_recordings(endpoints.SHARED_PLAYLIST, offset=offset)
            )
            rows = data.get("results") if isinstance(data, dict) else None
            found.update(str(row["id"]) for row in rows or [] if isinstance(row, dict) and row.get("id"))
        return found

    async def sharing(self, recording_id: str) -> Sharing | None:
        """The recording's sharing, read once however many watchers ask (None: gone)."""
        if recording_id in self._known:
            return self._known[recording_id]
        task = self._reading.get(recording_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._read(recording_id), name=f"posthog-sharing-{recording_id}"
            )
            self._reading[recording_id] = task
            task.add_done_callback(functools.partial(self._settle, recording_id))
        return await asyncio.shield(task)

    def _settle(self, recording_id: str, task: asyncio.Task[Sharing | None]) -> None:
        self._reading.pop(recording_id, None)
        if task.cancelled() or task.exception() is not None:
            return  # nothing learnt: the next watcher to ask reads it again
        if self._previous is not None and recording_id in self._previous:
            self._known[recording_id] = task.result()

    async def _read(self, recording_id: str) -> Sharing | None:
        from airflow_provider_recordings.core import endpoints

        try:
            data = await self.client.send(endpoints.get_sharing(recording_id))
        except PostHogNotFoundError:
            return None
        except PostHogPermissionError as exc:
            # Better an event without its date than a public link nobody hears of.
            log.warning(
                "Cannot read when recording %s was shared (%s); the key of connection %r needs the scope "
                "sharing_configuration:read. Reporting the link without shared_at.",
                recording_id,
                exc.detail or exc,
                self.conn_id,
            )
            return Sharing(enabled=None, created_at=None)
        # sharing_object masks a live link's token; in a thread, since Airflow's masker
        # tells the supervisor (a round trip) and must not hold up the event loop.
        config = await asyncio.to_thread(_sharing_object, data)
        created_at = config.get("created_at")
        return Sharing(
            enabled=bool(config.get("enabled")),
            created_at=created_at if isinstance(created_at, str) else None,
        )

    async def aclose(self) -> None:
        for task in list(self._reading.values()):
            task.cancel()
        await self.client.aclose()


class PostHogSharedLinksTrigger(BaseEventTrigger):
    """Fire one event per recording newly shared by a public link in PostHog.

    For an asset watcher (Airflow 3.0+; a restart-safe watermark needs 3.3+, shared
    polls too): see :func:`~airflow_provider_recordings.watchers.shared_links_asset`.
    Each event's payload is ``{"recording_id": ..., "shared_at": ...}``, and a DAG
    scheduled on the asset finds it in ``triggering_asset_events[asset][i].extra["payload"]``.

    :param posthog_conn_id: the ``posthog`` connection. Its key needs the scopes
        ``session_recording_playlist:read`` (the playlist) and
        ``sharing_configuration:read`` (when each link was shared).
    :param poll_interval: seconds between polls (default 60). Each poll costs
        ``1 + ceil(links / 50)`` calls of the key's 1,200 an hour, plus one sharing read
        per new link: at 60 s, 60 calls an hour with no link shared, 120 with up to 50.

    Only these two parameters make up the trigger (its identity in Airflow, and the
    shared poll's key, with the interval); the watermark is state, kept in the asset's
    state store.
    """

    def __init__(
        self, posthog_conn_id: str = DEFAULT_CONN_ID, *, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        super().__init__()
        if not isinstance(posthog_conn_id, str) or not posthog_conn_id.strip():
            raise PostHogConfigError(f"posthog_conn_id must be a connection id, got {posthog_conn_id!r}")
        self.posthog_conn_id = posthog_conn_id
        self.poll_interval = _interval(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"posthog_conn_id": self.posthog_conn_id, "poll_interval": self.poll_interval},
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.posthog_conn_id!r} every {self.poll_interval:g} s>"

    # -- the shared poll (Airflow 3.3's shared streams) -----------------------------------

    def shared_stream_key(self) -> Hashable | None:
        """Watchers of one connection and interval share their polls."""
        return (STREAM, self.posthog_conn_id, self.poll_interval)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncGenerator[SharedLinks, None]:
        """Poll ``synthetic-shared`` every interval, forever; yield each poll's links.

        A throttle, a server error or a dropped connection waits for the next poll. An
        error that polling again cannot mend (no playlist scope, a server without
        synthetic playlists, a bad key or connection) is logged at once and raised one
        interval later: Airflow starts a failed watcher again straight away, and the
        pause keeps it at one call per interval.
        """
        conn_id = str(kwargs.get("posthog_conn_id") or DEFAULT_CONN_ID)
        interval = _interval(kwargs.get("poll_interval", DEFAULT_POLL_INTERVAL))
        loop = asyncio.get_running_loop()
        poller: SharedLinksPoller | None = None
        try:
            while True:
                started = loop.time()
                wait = interval
                try:
                    if poller is None:
                        poller = SharedLinksPoller(await open_client(conn_id), conn_id)
                    links = await poller.poll()
                except PostHogRateLimitError as exc:
                    wait = max(interval, exc.retry_after or 0.0)
                    log.warning(
                        "Shared links of %r not polled: %s; polling again in %.0f s", conn_id, exc, wait
                    )
                except Exception as exc:
                    if not _passing(exc):
                        error = explain(exc, conn_id)
                        log.error("The shared-links watcher of %r stops: %s", conn_id, error)
                        await _sleep(interval)
                        raise error from exc
                    log.warning(
                        "Shared links of %r not polled: %s; polling again in %.0f s", conn_id, exc, wait
                    )
                else:
                    yield links
                await _sleep(max(0.0, started + wait - loop.time()))
        finally:
            if poller is not None:
                await poller.aclose()

    async def filter_shared_stream(
        self, shared_stream: AsyncIterator[Any]
    ) -> AsyncGenerator[TriggerEvent, None]:
        """This watcher's events: the links of each poll that its watermark does not hold."""
        watermark = Watermark(getattr(self, "asset_state_store", None), self.log)
        async for links in shared_stream:
            if not isinstance(links, SharedLinks):
                continue
            try:
                await watermark.load(links.project)
            except Exception as exc:
                self.log.warning(
                    "Could not read the saved shared-links watermark (%s: %s); trying again at the next poll",
                    type(exc).__name__,
                    exc,
                )
                continue
            current = {recording_id: digest(recording_id) for recording_id in links.recording_ids}
            known = watermark.digests
            if known is None:
                await watermark.save(links.project, set(current.values()))
                self.log.info(
                    "Baseline of %s: %d recording(s) already have a public link; watching for new ones%s",
                    links.project,
                    len(current),
                    ""
                    if watermark.persistent
                    else " (no asset state store: the watermark is kept in memory only)",
                )
                continue
            seen = {value for value in current.values() if value in known}
            changed = seen != known
            for recording_id in sorted(r for r, value in current.items() if value not in known):
                try:
                    sharing = await links.sharing(recording_id)
                except PostHogRateLimitError as exc:
                    self.log.warning(
                        "New public links not read yet (%s); they are read at the next poll", exc
                    )
                    break
                except PostHogError as exc:
                    self.log.warning(
                        "The sharing of recording %s could not be read (%s); trying again at the next poll",
                        recording_id,
                        exc,
                    )
                    continue
                seen.add(current[recording_id])
                changed = True
                if sharing is None or sharing.enabled is False:
                    self.log.info(
                        "Recording %s is listed as shared but %s; no event",
                        recording_id,
                        "is gone" if sharing is None else "its link is off",
                    )
                    continue
                self.log.info(
                    "New public link: recording %s (shared at %s)", recording_id, sharing.created_at
                )
                yield TriggerEvent({"recording_id": recording_id, "shared_at": sharing.created_at})
                await watermark.save(links.project, seen)
                changed = False
            if changed:
                await watermark.save(links.project, seen)

    # -- on its own (Airflow 3.0 to 3.2, tests) -------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Its own polls through its own filter, as in a shared stream of one."""
        _, kwargs = self.serialize()
        stream = self.open_shared_stream(kwargs)
        async with aclosing(stream), aclosing(self.filter_shared_stream(stream)) as events:
            async for event in events:
                yield event


async def open_client(conn_id: str) -> AsyncPostHogClient:
    """The connection's client, read and built without blocking the event loop."""
    hooks, compat = await asyncio.to_thread(
        _load, "airflow_provider_recordings.hooks.posthog_async", "airflow.providers.common.compat.connection"
    )
    conn = await compat.get_async_connection(conn_id)
    store = hooks.store_conn_id(conn_id, conn)
    store_conn = await compat.get_async_connection(store) if store else None
    return await hooks.AsyncPostHogClient.open(conn_id, conn, store_conn=store_conn)  # type: ignore[no-any-return]


def _passing(exc: BaseException) -> bool:
    """Whether the next poll may well succeed (a server error, a dropped connection, an
    unreachable shared store) rather than fail the same way."""
    if isinstance(exc, PostHogConfigError):
        return not exc.final
    return isinstance(exc, PostHogError) and bool(getattr(exc, "retryable", False))


def explain(exc: BaseException, conn_id: str) -> BaseException:
    """The error a watcher stops with, saying what to change."""
    if not isinstance(exc, PostHogPermissionError | PostHogNotFoundError):
        return exc
    from airflow_provider_recordings.core.endpoints import SHARED_PLAYLIST

    detail = f" ({exc.detail})" if exc.detail else ""
    if isinstance(exc, PostHogPermissionError):
        message = (
            f"PostHog refused the shared-links watcher of connection {conn_id!r} (403{detail}): it reads the "
            f"built-in playlist {SHARED_PLAYLIST}, which needs the personal API key scope "
            "session_recording_playlist:read. Add that scope to the key."
        )
    else:
        message = (
            f"This PostHog server has no synthetic playlists (404{detail} on session_recording_playlists/"
            f"{SHARED_PLAYLIST}/ for connection {conn_id!r}): older and self-hosted servers lack "
            "them, and the shared-links watcher needs one. Schedule PostHogSharingAuditOperator instead."
        )
    return type(exc)(
        message, method=exc.method, path=exc.path, status=exc.status, detail=exc.detail, code=exc.code
    )


def _interval(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if isinstance(value, bool) or not (seconds > 0 and math.isfinite(seconds)):
        raise PostHogConfigError(f"poll_interval must be a positive number of seconds, got {value!r}")
    return seconds


def _sharing_object(data: Any) -> dict[str, Any]:
    from airflow_provider_recordings.hooks.connection import sharing_object

    return sharing_object(data)


def _load(*modules: str) -> Any:
    """Import ``modules`` (meant for a worker thread): the module, or a tuple of them."""
    loaded = tuple(importlib.import_module(module) for module in modules)
    return loaded[0] if len(loaded) == 1 else loaded
