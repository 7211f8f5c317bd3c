"""The shared-links watcher against the emulator over real HTTP.

Most tests feed the trigger's filter one real poll at a time (:class:`Rounds`), so what
each poll fired is known exactly, without timing. The shared-stream test runs two
watchers through Airflow 3.3's own ``SharedStreamManager``; ``run()`` is driven end to
end with a short interval, waiting (bounded) for outcomes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import pytest

from airflow_provider_recordings.core.errors import (
    PostHogConfigError,
    PostHogNotFoundError,
    PostHogPermissionError,
)
from airflow_provider_recordings.testing import Fault, PostHogEmulator
from airflow_provider_recordings.testing.auth import ALL_SCOPES
from airflow_provider_recordings.triggers import shared_links
from airflow_provider_recordings.triggers.shared_links import (
    STATE_KEY,
    PostHogSharedLinksTrigger,
    SharedLinks,
    SharedLinksPoller,
    decode_state,
    digest,
    encode_state,
    open_client,
)
from tests.conftest import API_KEY

AIRFLOW = tuple(int(part) for part in version("apache-airflow").split(".")[:2])
needs_3_3 = pytest.mark.skipif(
    AIRFLOW < (3, 3), reason="shared streams and the asset state store arrived in Airflow 3.3"
)

#: Seconds between polls in the tests that let the trigger poll on its own.
FAST = 0.05

#: The longest any outcome is waited for.
PATIENCE = 20.0


class FakeStore:
    """The async part of Airflow's asset state store accessor, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.writes: list[Any] = []

    async def aget(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(self.values.get(key, default))

    async def aset(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        json.dumps(value)  # JSON only, as Airflow's store requires
        self.values[key] = copy.deepcopy(value)
        self.writes.append(copy.deepcopy(value))

    def holds(self, recording_id: str) -> bool:
        state = decode_state(self.values.get(STATE_KEY))
        return state is not None and digest(recording_id) in state[1]


def watcher(store: Any = None, *, poll_interval: float = 60.0, conn_id: str = "posthog_default") -> Any:
    trigger = PostHogSharedLinksTrigger(conn_id, poll_interval=poll_interval)
    trigger.asset_state_store = store
    return trigger


async def until(condition: Callable[[], Any], what: str, timeout: float = PATIENCE) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


class Rounds:
    """A watcher's filter fed one real poll at a time: a round's events are known once the
    filter asks for the next poll (as the triggerer's shared stream feeds it)."""

    def __init__(self, trigger: Any, poller: SharedLinksPoller) -> None:
        self.trigger = trigger
        self.poller = poller
        self.events: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[SharedLinks] = asyncio.Queue()
        self._waiting = asyncio.Event()
        self._task = asyncio.ensure_future(self._consume())

    async def _stream(self) -> AsyncIterator[SharedLinks]:
        while True:
            self._waiting.set()
            links = await self._queue.get()
            self._waiting.clear()
            yield links

    async def _consume(self) -> None:
        async for event in self.trigger.filter_shared_stream(self._stream()):
            self.events.append(event.payload)

    async def _idle(self) -> None:
        await until(lambda: self._task.done() or (self._waiting.is_set() and self._queue.empty()), "idle")
        if self._task.done():
            self._task.result()
            raise AssertionError("the filter stopped")

    async def feed(self, links: SharedLinks) -> list[dict[str, Any]]:
        await self._idle()
        before = len(self.events)
        self._waiting.clear()
        self._queue.put_nowait(links)
        await self._idle()
        return self.events[before:]

    async def round(self) -> list[dict[str, Any]]:
        """One poll of PostHog, through the filter: the events it fired."""
        return await self.feed(await self.poller.poll())

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def close(self) -> None:
        """Stop the filter and close the poller's client."""
        await self.stop()
        await self.poller.aclose()


async def new_poller(conn_id: str = "posthog_default") -> SharedLinksPoller:
    return SharedLinksPoller(await open_client(conn_id), conn_id)


def events_once_shared(emulator: PostHogEmulator, target: str, store: Any) -> list[dict[str, Any]]:
    """A watcher's baseline, then ``target`` shared on PostHog: the next poll's events."""

    async def main() -> list[dict[str, Any]]:
        rounds = Rounds(watcher(store), await new_poller())
        await rounds.round()
        emulator.set_shared(target, True)
        events = await rounds.round()
        await rounds.close()
        return events

    return asyncio.run(main())


def recording(emulator: PostHogEmulator, *, shared: bool = False, days: float = 1.0) -> str:
    start = emulator.clock.now() - timedelta(days=days)
    return str(emulator.add_recording(start_time=start, shared=shared)["id"])


def requests_of(emulator: PostHogEmulator, kind: str) -> list[Any]:
    return [r for r in emulator.requests if r.kind == kind]


def shared_at(emulator: PostHogEmulator, recording_id: str) -> str:
    return str(emulator.sharing_object(recording_id)["created_at"])


# -- the trigger's identity ------------------------------------------------------------------


def test_serialize_holds_only_the_connection_and_interval():
    trigger = PostHogSharedLinksTrigger("posthog_eu", poll_interval=30)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_recordings.triggers.shared_links.PostHogSharedLinksTrigger"
    assert kwargs == {"posthog_conn_id": "posthog_eu", "poll_interval": 30.0}
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert PostHogSharedLinksTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_the_trigger_identity_does_not_change_as_it_runs(emulator, posthog_conn):
    """Airflow identifies a watcher's trigger row by its classpath and kwargs: the
    watermark must never be among them."""
    first = recording(emulator, shared=True)
    second = recording(emulator)
    trigger = watcher(FakeStore())
    before = trigger.serialize()

    async def main() -> None:
        rounds = Rounds(trigger, await new_poller())
        await rounds.round()
        emulator.set_shared(second, True)
        assert [event["recording_id"] for event in await rounds.round()] == [second]
        await rounds.close()

    asyncio.run(main())
    assert trigger.serialize() == before
    assert first not in json.dumps(trigger.serialize())
    if AIRFLOW >= (3, 0):
        from airflow.triggers.base import BaseEventTrigger

        assert BaseEventTrigger.hash(*trigger.serialize()) == BaseEventTrigger.hash(*before)


@pytest.mark.parametrize("interval", [0, -5, "soon", None, True, float("inf"), float("nan")])
def test_bad_intervals_fail_when_the_dag_is_parsed(interval):
    with pytest.raises(PostHogConfigError, match="poll_interval must be a positive number"):
        PostHogSharedLinksTrigger("posthog_default", poll_interval=interval)


def test_a_connection_id_is_needed():
    with pytest.raises(PostHogConfigError, match="posthog_conn_id"):
        PostHogSharedLinksTrigger("  ")


def test_watchers_of_one_connection_and_interval_share_a_stream_key():
    key = watcher(poll_interval=30).shared_stream_key()
    assert watcher(poll_interval=30).shared_stream_key() == key
    assert watcher(poll_interval=31).shared_stream_key() != key
    assert watcher(poll_interval=30, conn_id="posthog_eu").shared_stream_key() != key
    hash(key)


# -- baseline, new links, links turned off ----------------------------------------------------


def test_the_first_poll_is_a_baseline_without_events(emulator, posthog_conn):
    already = {recording(emulator, shared=True) for _ in range(3)}
    recording(emulator)
    store = FakeStore()

    async def main() -> list[dict[str, Any]]:
        rounds = Rounds(watcher(store), await new_poller())
        events = await rounds.round()
        events += await rounds.round()  # nothing changed: still nothing
        await rounds.close()
        return events

    assert asyncio.run(main()) == []
    assert all(store.holds(recording_id) for recording_id in already)
    assert store.values[STATE_KEY]["count"] == 3
    assert requests_of(emulator, "sharing_get") == []  # a baseline reads no sharing


def test_one_event_per_new_link_and_none_for_old_or_turned_off_ones(emulator, posthog_conn):
    old = recording(emulator, shared=True)
    brief = recording(emulator)
    first, second, third = (recording(emulator) for _ in range(3))
    store = FakeStore()

    async def main() -> list[list[dict[str, Any]]]:
        rounds = Rounds(watcher(store), await new_poller())
        fired = [await rounds.round()]  # baseline: the old link
        emulator.set_shared(first, True)
        emulator.set_shared(second, True)
        fired.append(await rounds.round())
        fired.append(await rounds.round())  # the same links again: no event
        emulator.set_shared(brief, True)
        emulator.set_shared(brief, False)  # on and off between two polls: never seen
        emulator.set_shared(old, False)
        emulator.set_shared(third, True)
        fired.append(await rounds.round())
        emulator.set_shared(first, False)
        fired.append(await rounds.round())  # a link turned off fires nothing
        await rounds.close()
        return fired

    baseline, two, again, one, off = asyncio.run(main())
    assert baseline == again == off == []
    assert two == [
        {"recording_id": recording_id, "shared_at": shared_at(emulator, recording_id)}
        for recording_id in sorted([first, second])
    ]
    assert one == [{"recording_id": third, "shared_at": shared_at(emulator, third)}]
    # One sharing read per new link, none for links already known.
    assert sorted(r.path.split("/")[-3] for r in requests_of(emulator, "sharing_get")) == sorted(
        [first, second, third]
    )
    assert not store.holds(old) and not store.holds(first)


def test_a_link_turned_on_again_fires_again(emulator, posthog_conn):
    target = recording(emulator, shared=True)

    async def main() -> list[list[dict[str, Any]]]:
        rounds = Rounds(watcher(FakeStore()), await new_poller())
        fired = [await rounds.round()]
        emulator.set_shared(target, False)
        fired.append(await rounds.round())
        emulator.set_shared(target, True)
        fired.append(await rounds.round())
        await rounds.close()
        return fired

    baseline, off, on = asyncio.run(main())
    assert baseline == off == []
    assert [event["recording_id"] for event in on] == [target]


def test_no_event_for_a_recording_listed_as_shared_whose_link_is_off(emulator, posthog_conn):
    """PostHog keeps listing a recording whose token was refreshed and whose sharing was
    then turned off; its own sharing read says it is off."""
    stale = recording(emulator)

    async def main() -> list[list[dict[str, Any]]]:
        rounds = Rounds(watcher(FakeStore()), await new_poller())
        fired = [await rounds.round()]
        emulator.set_shared(stale, True)
        with emulator.store.lock:
            state = emulator.store.sharing_state(emulator.store.row_of(stale), create=False)
            state.rotate()
            state.enabled = False
        fired.append(await rounds.round())
        fired.append(await rounds.round())
        await rounds.close()
        return fired

    assert asyncio.run(main()) == [[], [], []]
    assert len(requests_of(emulator, "sharing_get")) == 1  # read once, then remembered


def test_new_links_among_many_pages_of_them(emulator, posthog_conn):
    """More links than a page, and pages PostHog returns short: recordings deleted while
    their link stays enabled are counted but never returned."""
    for _ in range(120):
        recording(emulator, shared=True)
    for _ in range(7):
        gone = recording(emulator, shared=True)
        emulator.delete(gone)
    fresh = [recording(emulator) for _ in range(3)]

    async def main() -> list[list[dict[str, Any]]]:
        rounds = Rounds(watcher(FakeStore()), await new_poller())
        fired = [await rounds.round()]
        for recording_id in fresh:
            emulator.set_shared(recording_id, True)
        fired.append(await rounds.round())
        fired.append(await rounds.round())
        await rounds.close()
        return fired

    baseline, new, again = asyncio.run(main())
    assert baseline == again == []
    assert sorted(event["recording_id"] for event in new) == sorted(fresh)
    offsets = {r.query["offset"] for r in requests_of(emulator, "playlist_recordings")}
    assert offsets == {"0", "50", "100"}
    assert {r.query["limit"] for r in requests_of(emulator, "playlist_recordings")} == {"50"}


def test_every_poll_is_the_count_then_its_pages(emulator, posthog_conn):
    async def main() -> None:
        poller = await new_poller()
        empty = await poller.poll()
        assert (empty.counted, empty.recording_ids) == (0, frozenset())
        assert [r.kind for r in emulator.requests] == ["playlist_retrieve"]  # no page of nothing
        emulator.clear_requests()
        shared = {recording(emulator, shared=True) for _ in range(51)}
        full = await poller.poll()
        assert (full.counted, full.recording_ids) == (51, frozenset(shared))
        assert [r.kind for r in emulator.requests] == ["playlist_retrieve", *["playlist_recordings"] * 2]
        await poller.aclose()

    asyncio.run(main())


# -- restarts ----------------------------------------------------------------------------------


def test_a_restart_with_a_saved_watermark_neither_repeats_nor_loses(emulator, posthog_conn):
    kept = recording(emulator, shared=True)
    before, during, later = (recording(emulator) for _ in range(3))
    store = FakeStore()

    async def first_life() -> list[dict[str, Any]]:
        rounds = Rounds(watcher(store), await new_poller())
        events = await rounds.round()
        emulator.set_shared(before, True)
        events += await rounds.round()
        await rounds.stop()  # the triggerer goes away
        await rounds.poller.aclose()
        return events

    async def second_life() -> list[list[dict[str, Any]]]:
        rounds = Rounds(watcher(store), await new_poller())  # a new triggerer, the same asset
        fired = [await rounds.round()]
        emulator.set_shared(later, True)
        fired.append(await rounds.round())
        await rounds.close()
        return fired

    assert [event["recording_id"] for event in asyncio.run(first_life())] == [before]
    emulator.set_shared(during, True)  # shared while no triggerer was running
    emulator.set_shared(kept, False)
    restarted, afterwards = asyncio.run(second_life())
    assert [event["recording_id"] for event in restarted] == [during]
    assert [event["recording_id"] for event in afterwards] == [later]


def test_the_watermark_is_saved_after_each_event_so_a_crash_mid_poll_repeats_nothing(emulator, posthog_conn):
    """Two new links in one poll; the triggerer dies while the second one's sharing is
    being read, after the first one's event. The next triggerer fires only the second."""
    first, second = sorted(recording(emulator) for _ in range(2))
    store = FakeStore()
    hold = threading.Event()
    reached = threading.Event()

    @emulator.on_request
    def hold_the_second(emulator: PostHogEmulator, record: Any) -> None:
        if record.kind == "sharing_get" and second in record.path and not hold.is_set():
            reached.set()
            hold.wait(PATIENCE)

    async def first_life() -> list[dict[str, Any]]:
        rounds = Rounds(watcher(store), await new_poller())
        await rounds.round()
        emulator.set_shared(first, True)
        emulator.set_shared(second, True)
        links = await rounds.poller.poll()
        rounds._queue.put_nowait(links)
        rounds._waiting.clear()
        await until(reached.is_set, "the second link's sharing is being read")
        await until(lambda: store.holds(first), "the first event's watermark is saved")
        events = list(rounds.events)
        await rounds.stop()  # the triggerer dies mid-poll
        hold.set()
        await rounds.poller.aclose()
        return events

    async def second_life() -> list[dict[str, Any]]:
        rounds = Rounds(watcher(store), await new_poller())
        events = await rounds.round()
        await rounds.close()
        return events

    assert [event["recording_id"] for event in asyncio.run(first_life())] == [first]
    assert not store.holds(second)
    assert [event["recording_id"] for event in asyncio.run(second_life())] == [second]


def test_without_a_state_store_a_restart_takes_a_new_baseline(emulator, posthog_conn):
    """Airflow 3.0 to 3.2 (and run() in tests): the watermark lives in memory."""
    old = recording(emulator, shared=True)
    during = recording(emulator)

    async def life(after_baseline: Callable[[], None] | None = None) -> list[dict[str, Any]]:
        rounds = Rounds(watcher(None), await new_poller())
        events = await rounds.round()
        if after_baseline is not None:
            after_baseline()
            events += await rounds.round()
        await rounds.close()
        return events

    assert asyncio.run(life()) == []
    emulator.set_shared(during, True)
    assert asyncio.run(life()) == []  # shared while it was down: part of the new baseline
    assert old


def test_a_watermark_saved_for_another_project_is_a_new_baseline(emulator, posthog_conn):
    store = FakeStore()
    store.values[STATE_KEY] = encode_state("https://eu.posthog.com/project/999", {digest("elsewhere")})
    recording(emulator, shared=True)

    async def main() -> list[dict[str, Any]]:
        rounds = Rounds(watcher(store), await new_poller())
        events = await rounds.round()
        await rounds.close()
        return events

    assert asyncio.run(main()) == []
    assert store.values[STATE_KEY]["project"] == f"{emulator.url}/project/{emulator.project_id}"


def test_a_store_that_fails_to_answer_delays_the_baseline_instead_of_guessing(emulator, posthog_conn):
    target = recording(emulator)
    store = FakeStore()
    failures = [RuntimeError("the metadata database is away")]

    async def aget(key: str, default: Any = None) -> Any:
        if failures:
            raise failures.pop()
        return await FakeStore.aget(store, key, default)

    store.aget = aget  # type: ignore[method-assign]

    async def main() -> list[list[dict[str, Any]]]:
        rounds = Rounds(watcher(store), await new_poller())
        fired = [await rounds.round()]  # no state read: no baseline yet
        assert STATE_KEY not in store.values
        fired.append(await rounds.round())  # the baseline
        emulator.set_shared(target, True)
        fired.append(await rounds.round())
        await rounds.close()
        return fired

    unread, baseline, new = asyncio.run(main())
    assert unread == baseline == []
    assert [event["recording_id"] for event in new] == [target]


def test_the_watermark_is_compact(emulator):
    project = "https://eu.posthog.com/project/123456"
    ids = [f"0190b7e2-{index:04x}-7c3e-9d1a-4b5c6d7e8f90" for index in range(6_000)]
    state = encode_state(project, {digest(recording_id) for recording_id in ids})
    assert len(json.dumps(state)) < shared_links.MAX_VALUE_BYTES
    decoded = decode_state(json.loads(json.dumps(state)))
    assert decoded is not None and decoded[0] == project
    assert decoded[1] == {digest(recording_id) for recording_id in ids}
    assert decode_state({"format": "other"}) is None
    assert decode_state({**state, "links": "not base64!"}) is None


# -- the payload -----------------------------------------------------------------------------


def test_the_event_names_the_recording_and_when_it_was_shared_never_the_token(emulator, posthog_conn, logs):
    target = recording(emulator)

    [event] = events_once_shared(emulator, target, FakeStore())
    token = emulator.sharing_token(target)
    assert event == {"recording_id": target, "shared_at": emulator.sharing_object(target)["created_at"]}
    assert event["shared_at"] is not None
    assert token not in json.dumps(event)
    assert token not in logs.text


def test_the_token_is_masked_off_the_event_loop(emulator, posthog_conn, monkeypatch):
    """Airflow's masker tells the supervisor of each secret, a round trip: never on the loop."""
    from airflow_provider_recordings.hooks import connection

    threads: list[int] = []
    original = connection.sharing_object

    def recording_thread(data: Any) -> dict[str, Any]:
        threads.append(threading.get_ident())
        return original(data)

    monkeypatch.setattr(connection, "sharing_object", recording_thread)
    target = recording(emulator)

    async def main() -> int:
        rounds = Rounds(watcher(), await new_poller())
        await rounds.round()
        emulator.set_shared(target, True)
        assert len(await rounds.round()) == 1
        await rounds.close()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads and loop_thread not in threads


def test_a_key_that_may_not_read_sharing_still_reports_the_link(make_emulator, connect):
    emulator = make_emulator()
    limited = "phx_no_sharing_read_key"
    emulator.add_key(
        limited, [scope for scope in ALL_SCOPES if not scope.startswith("sharing_configuration")]
    )
    connect(emulator.url, api_key=limited)
    target = recording(emulator)

    assert events_once_shared(emulator, target, FakeStore()) == [{"recording_id": target, "shared_at": None}]


def test_a_sharing_read_that_fails_is_tried_again_at_the_next_poll(make_emulator, connect):
    emulator = make_emulator()
    connect(emulator.url, max_attempts=1)
    target = recording(emulator)

    async def main() -> list[list[dict[str, Any]]]:
        rounds = Rounds(watcher(FakeStore()), await new_poller())
        fired = [await rounds.round()]
        emulator.set_shared(target, True)
        emulator.inject(Fault.status(503), times=1, path_contains="/sharing/")
        fired.append(await rounds.round())
        fired.append(await rounds.round())
        await rounds.close()
        return fired

    baseline, failed, retried = asyncio.run(main())
    assert baseline == failed == []
    assert [event["recording_id"] for event in retried] == [target]


# -- shared polls (Airflow 3.3) --------------------------------------------------------------


@needs_3_3
def test_two_watchers_of_one_connection_share_each_poll(emulator, posthog_conn):
    """Through Airflow's own SharedStreamManager: one poll per round, broadcast to both
    watchers; the new link's sharing is read once, and each watcher fires its event."""
    from airflow.triggers.shared_stream import SharedStreamManager

    recording(emulator, shared=True)
    target = recording(emulator)
    stores = {1: FakeStore(), 2: FakeStore()}
    seen: dict[int, list[Any]] = {1: [], 2: []}
    fired: dict[int, list[dict[str, Any]]] = {1: [], 2: []}

    async def main() -> None:
        manager = SharedStreamManager()
        triggers = {tid: watcher(stores[tid], poll_interval=0.2) for tid in stores}
        key = triggers[1].shared_stream_key()
        assert triggers[2].shared_stream_key() == key

        async def consume(tid: int) -> None:
            raw = manager.subscribe(trigger_id=tid, trigger=triggers[tid], key=key)

            async def counted() -> AsyncIterator[Any]:
                async for item in raw:
                    seen[tid].append(item)
                    yield item

            try:
                async for event in triggers[tid].filter_shared_stream(counted()):
                    fired[tid].append(event.payload)
            finally:
                await manager.unsubscribe(tid, key)

        tasks = [asyncio.ensure_future(consume(tid)) for tid in stores]
        await until(lambda: len(seen[1]) >= 2 and len(seen[2]) >= 2, "two polls reached both watchers")
        emulator.set_shared(target, True)
        await until(lambda: fired[1] and fired[2], "both watchers fired")
        await until(lambda: len(seen[1]) >= 5 and len(seen[2]) >= 5, "more polls")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await manager.stop_all()

    asyncio.run(main())
    expected = [{"recording_id": target, "shared_at": shared_at(emulator, target)}]
    assert fired[1] == fired[2] == expected
    # The same polls reached both: the very same objects, in the same order.
    both = min(len(seen[1]), len(seen[2]))
    assert all(a is b for a, b in zip(seen[1][:both], seen[2][:both], strict=True))
    polls = len(requests_of(emulator, "playlist_retrieve"))
    assert polls <= max(len(seen[1]), len(seen[2])) + 1, (polls, len(seen[1]), len(seen[2]))
    assert [r.path for r in requests_of(emulator, "sharing_get")] == [
        f"/api/projects/{emulator.project_id}/session_recordings/{target}/sharing/"
    ]
    assert stores[1].holds(target) and stores[2].holds(target)


@needs_3_3
def test_the_real_asset_state_store_keeps_the_watermark(emulator, posthog_conn, monkeypatch):
    """Airflow 3.3's AssetStateStoreAccessors, as the triggerer sets it, with the
    supervisor's side of its messages in memory."""
    from airflow.sdk import Asset
    from airflow.sdk.api.datamodels._generated import AssetStateStoreResponse
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time import comms, task_runner
    from airflow.sdk.execution_time.context import AssetStateStoreAccessors

    saved: dict[tuple[str, str], Any] = {}

    class Supervisor:
        async def asend(self, msg: Any) -> Any:
            if isinstance(msg, comms.GetAssetStateStoreByName):
                if (msg.name, msg.key) not in saved:
                    return comms.ErrorResponse(error=ErrorType.ASSET_STORE_NOT_FOUND)
                return comms.AssetStateStoreResult.from_asset_state_store_response(
                    AssetStateStoreResponse(value=saved[(msg.name, msg.key)])
                )
            if isinstance(msg, comms.SetAssetStateStoreByName):
                saved[(msg.name, msg.key)] = msg.value
                return comms.OKResponse(ok=True)
            raise AssertionError(f"unexpected message {msg!r}")

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", Supervisor(), raising=False)
    target = recording(emulator)

    def store() -> Any:
        return AssetStateStoreAccessors(inlets=[Asset(name="new_public_links")])

    async def life(share: str | None) -> list[dict[str, Any]]:
        rounds = Rounds(watcher(store()), await new_poller())
        events = await rounds.round()
        if share:
            emulator.set_shared(share, True)
            events += await rounds.round()
        await rounds.close()
        return events

    assert asyncio.run(life(None)) == []
    assert ("new_public_links", STATE_KEY) in saved
    assert [event["recording_id"] for event in asyncio.run(life(target))] == [target]
    assert asyncio.run(life(None)) == []  # restarted: no repeat


@needs_3_3
def test_a_trigger_watching_two_assets_keeps_both_watermarks(emulator, posthog_conn, monkeypatch):
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import AssetStateStoreAccessors

    accessors = AssetStateStoreAccessors(inlets=[Asset(name="links_a"), Asset(name="links_b")])
    fakes = {"links_a": FakeStore(), "links_b": FakeStore()}
    for name, fake in fakes.items():
        monkeypatch.setattr(accessors._by_name[name], "aget", fake.aget)
        monkeypatch.setattr(accessors._by_name[name], "aset", fake.aset)
    target = recording(emulator)

    events = events_once_shared(emulator, target, accessors)
    assert [event["recording_id"] for event in events] == [target]
    assert fakes["links_a"].holds(target) and fakes["links_b"].holds(target)


# -- run() on its own, and errors --------------------------------------------------------------


def test_run_polls_on_its_own_and_fires_for_a_new_link(emulator, posthog_conn):
    recording(emulator, shared=True)
    target = recording(emulator)
    store = FakeStore()

    async def main() -> Any:
        agen = watcher(store, poll_interval=FAST).run()
        first = asyncio.ensure_future(agen.__anext__())
        await until(lambda: STATE_KEY in store.values, "the baseline is saved")
        emulator.set_shared(target, True)
        event = await asyncio.wait_for(first, PATIENCE)
        await agen.aclose()
        return event

    event = asyncio.run(main())
    assert event.payload == {"recording_id": target, "shared_at": shared_at(emulator, target)}


def first_event(trigger: Any) -> Any:
    async def main() -> Any:
        agen = trigger.run()
        try:
            return await asyncio.wait_for(agen.__anext__(), PATIENCE)
        finally:
            await agen.aclose()

    return asyncio.run(main())


def test_a_key_without_the_playlist_scope_stops_the_watcher_naming_the_scope(make_emulator, connect):
    emulator = make_emulator()
    limited = "phx_no_playlist_key"
    emulator.add_key(
        limited, [scope for scope in ALL_SCOPES if not scope.startswith("session_recording_playlist")]
    )
    connect(emulator.url, api_key=limited)
    with pytest.raises(PostHogPermissionError, match=r"session_recording_playlist:read") as raised:
        first_event(watcher(poll_interval=FAST))
    assert raised.value.status == 403
    assert len(requests_of(emulator, "playlist_retrieve")) == 1  # no retries of a 403


def test_a_server_without_synthetic_playlists_stops_the_watcher_saying_so(make_emulator, connect):
    emulator = make_emulator(synthetic_playlists="absent")
    connect(emulator.url)
    with pytest.raises(PostHogNotFoundError, match=r"no synthetic playlists") as raised:
        first_event(watcher(poll_interval=FAST))
    assert raised.value.status == 404
    assert "PostHogSharingAuditOperator" in str(raised.value)


def test_a_fatal_error_is_raised_only_after_one_interval(make_emulator, connect, monkeypatch):
    """Airflow starts a failed watcher again at once: the pause keeps a misconfigured one
    at a call per interval, like a working one."""
    emulator = make_emulator(synthetic_playlists="absent")
    connect(emulator.url)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(shared_links, "_sleep", sleep)
    with pytest.raises(PostHogNotFoundError):
        first_event(watcher(poll_interval=45))
    assert sleeps == [45]
    assert len(requests_of(emulator, "playlist_retrieve")) == 1


def test_a_missing_connection_stops_the_watcher(emulator):
    with pytest.raises(Exception, match="posthog_nowhere"):
        first_event(watcher(poll_interval=FAST, conn_id="posthog_nowhere"))


def test_server_errors_and_throttles_wait_for_the_next_poll(make_emulator, connect):
    emulator = make_emulator()
    connect(emulator.url, max_attempts=1, max_retry_wait=0.1)
    recording(emulator, shared=True)
    target = recording(emulator)
    emulator.inject(Fault.status(503), times=1)  # the first poll fails
    emulator.inject(Fault.throttle(retry_after=0.5), times=1)  # the second is throttled
    store = FakeStore()

    async def main() -> Any:
        agen = watcher(store, poll_interval=FAST).run()
        first = asyncio.ensure_future(agen.__anext__())
        await until(lambda: STATE_KEY in store.values, "the baseline is saved")
        emulator.set_shared(target, True)
        event = await asyncio.wait_for(first, PATIENCE)
        await agen.aclose()
        return event

    assert asyncio.run(main()).payload["recording_id"] == target
    statuses = [r.status for r in requests_of(emulator, "playlist_retrieve")]
    assert statuses[:3] == [503, 429, 200]


def test_polls_count_against_the_shared_rate_store(make_emulator, connect, redis_server):
    """The watcher's calls go through the same client as every other: with the
    connection's Redis store, they are counted there."""
    emulator = make_emulator()
    connect(emulator.url, rate_limit_storage=redis_server.url)
    recording(emulator, shared=True)

    async def main() -> None:
        poller = await new_poller()
        await poller.poll()
        await poller.aclose()

    asyncio.run(main())
    assert len(emulator.requests) == 2
    assert redis_server.keys(), "nothing was counted in the shared store"
    assert API_KEY not in " ".join(redis_server.keys())


def test_a_long_throttle_waits_as_long_as_posthog_asks(make_emulator, connect, monkeypatch):
    emulator = make_emulator()
    connect(emulator.url, max_retry_wait=1)
    emulator.inject(Fault.throttle(retry_after=500), times=1)
    sleeps: list[float] = []

    class Stop(Exception):
        pass

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        raise Stop

    monkeypatch.setattr(shared_links, "_sleep", sleep)
    with pytest.raises(Stop):
        first_event(watcher(poll_interval=FAST))
    assert len(sleeps) == 1 and sleeps[0] >= 499
    assert [r.status for r in emulator.requests] == [429]
