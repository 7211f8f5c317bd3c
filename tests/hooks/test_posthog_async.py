"""AsyncPostHogClient over real HTTP against the emulator: opening, paging in every
style, retries and throttles with an injected sleep, the shared rate store, closing."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from airflow_provider_recordings.core import endpoints
from airflow_provider_recordings.core.errors import (
    PostHogConfigError,
    PostHogNotFoundError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogStoreUnavailableError,
)
from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient
from airflow_provider_recordings.hooks.rate_store import AsyncSharedRateLimiter, store_prefix
from airflow_provider_recordings.testing import Fault
from tests.conftest import API_KEY, CONN_ID, RecordingSleep
from tests.services import RedisServer, free_port

LIST_PATH = "/api/projects/1/session_recordings/"
STORE_PASSWORD = "s3cret-store-password"


def async_sleep(sleeps: RecordingSleep, then: Callable[[float], None] | None = None) -> Any:
    """An ``asyncio.sleep`` stand-in: records the wait, moves the fake clock, never waits."""

    async def sleep(seconds: float) -> None:
        if then is not None:
            then(seconds)
        sleeps(seconds)

    return sleep


async def open_client(
    sleeps: RecordingSleep,
    policy: RetryPolicy,
    *,
    cls: type[AsyncPostHogClient] = AsyncPostHogClient,
    **kwargs: Any,
) -> AsyncPostHogClient:
    """The client as a trigger opens it: the connection read without blocking the loop."""
    from airflow.providers.common.compat.connection import get_async_connection

    kwargs.setdefault("sleep", async_sleep(sleeps))
    return await cls.open(
        CONN_ID, await get_async_connection(CONN_ID), clock=sleeps.clock, retry_policy=policy, **kwargs
    )


def list_calls(emulator: Any) -> list[Any]:
    return [r for r in emulator.requests if r.method == "GET" and r.path == LIST_PATH]


async def all_rows(client: AsyncPostHogClient, **params: Any) -> list[dict[str, Any]]:
    return [row async for row in client.iter_recordings(**params)]


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())


# -- opening ---------------------------------------------------------------------------


class BuiltWhere(AsyncPostHogClient):
    """Remembers the thread it was built in, and whether it was closed."""

    threads: list[threading.Thread] = []
    closed: list[bool] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        BuiltWhere.threads.append(threading.current_thread())
        super().__init__(*args, **kwargs)

    async def aclose(self) -> None:
        BuiltWhere.closed.append(True)
        await super().aclose()


@pytest.fixture
def built_where():
    BuiltWhere.threads, BuiltWhere.closed = [], []
    return BuiltWhere


def test_open_builds_the_client_off_the_event_loop(
    emulator, posthog_conn, sleeps, seeded_policy, built_where
):
    emulator.seed(3, days=1)

    async def main() -> tuple[threading.Thread, list[dict[str, Any]]]:
        client = await open_client(sleeps, seeded_policy, cls=built_where, page_size=50)
        async with client:
            return threading.current_thread(), await all_rows(client, date_from="-7d")

    loop_thread, rows = run(main)
    [built_in] = built_where.threads
    assert built_in is not loop_thread
    assert len(rows) == 3
    assert built_where.closed == [True]


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"project_id": None}, "extra.project_id"), ({"project_id": "one"}, "extra.project_id")],
)
def test_open_refuses_a_bad_connection_before_any_request(
    emulator, connect, sleeps, seeded_policy, extra, field
):
    connect(emulator.url, **extra)
    with pytest.raises(PostHogConfigError) as raised:
        run(lambda: open_client(sleeps, seeded_policy))
    assert raised.value.field == field
    assert f"PostHog connection '{CONN_ID}': {field}:" in str(raised.value)
    assert emulator.requests == []


def test_open_refuses_an_unreachable_store_and_closes_what_it_built(
    emulator, connect, sleeps, seeded_policy, built_where
):
    connect(emulator.url, rate_limit_storage=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(
        PostHogStoreUnavailableError, match="extra.rate_limit_storage: cannot use the rate store"
    ):
        run(lambda: open_client(sleeps, seeded_policy, cls=built_where))
    assert built_where.closed == [True]
    assert emulator.requests == []


# -- pages -----------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["cursor", "offset", "published"])
def test_iter_recordings_yields_every_recording_once_in_each_style(
    make_emulator, connect, sleeps, seeded_policy, style
):
    emulator = make_emulator(max_page_size=10, response_shape="published" if style == "published" else "live")
    connect(emulator.url)
    ids = emulator.seed(25, days=2)
    params: dict[str, Any] = {"date_from": "-30d", **({"offset": 0} if style == "offset" else {})}

    async def main() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with await open_client(sleeps, seeded_policy, page_size=100) as client:
            return await all_rows(client, **params), client.stats.snapshot()

    rows, stats = run(main)
    assert sorted(row["id"] for row in rows) == sorted(ids)
    assert len(rows) == len(ids)
    calls = list_calls(emulator)
    assert len(calls) == 3
    assert calls[0].query["limit"] == "100"
    if style == "cursor":
        assert all("after" in call.query and "offset" not in call.query for call in calls[1:])
    else:
        assert [call.query.get("offset") for call in calls[1:]] == ["10", "20"]
    assert stats["by_kind"] == {"GET list": 3} and stats["requests"] == 3


def test_list_filters_are_checked_before_any_request(emulator, posthog_conn, sleeps, seeded_policy):
    async def main() -> None:
        async with await open_client(sleeps, seeded_policy) as client:
            await all_rows(client, distinct_id="user-1")

    with pytest.raises(PostHogConfigError, match="use 'distinct_ids'"):
        run(main)
    assert emulator.requests == []


def test_send_gets_updates_and_deletes_one_recording(emulator, posthog_conn, sleeps, seeded_policy):
    [recording_id] = emulator.seed(1, days=1)

    async def main() -> dict[str, Any]:
        async with await open_client(sleeps, seeded_policy) as client:
            found = await client.send(endpoints.retrieve(recording_id))
            assert found["id"] == recording_id
            await client.send(endpoints.update(recording_id, {"analyzed": True}))
            assert await client.send(endpoints.delete(recording_id)) is None
            with pytest.raises(PostHogNotFoundError):
                await client.send(endpoints.retrieve(recording_id))
            return client.stats.snapshot()

    stats = run(main)
    assert emulator.get(recording_id) is None
    assert stats["retries"] == 0  # a 404 is an answer, not a failure to retry
    assert stats["by_kind"] == {"DELETE recording": 1, "GET recording": 2, "PATCH recording": 1}
    assert all(r.authorization == f"Bearer {API_KEY}" for r in emulator.requests)


# -- retries and throttles ---------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [Fault.status(503), Fault.reset(), Fault.malformed()], ids=["503", "reset", "html"]
)
def test_transient_failures_are_retried_with_the_injected_sleep(
    emulator, posthog_conn, sleeps, seeded_policy, fault
):
    ids = emulator.seed(3, days=1)
    emulator.inject(fault, times=2, method="GET")

    async def main() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with await open_client(sleeps, seeded_policy) as client:
            return await all_rows(client, date_from="-7d"), client.stats.snapshot()

    rows, stats = run(main)
    assert sorted(row["id"] for row in rows) == sorted(ids)
    assert len(sleeps.calls) == 2
    assert 0.5 <= sleeps.calls[0] <= 1.5 and 0.5 <= sleeps.calls[1] <= 2.5  # full jitter, seeded
    assert (stats["requests"], stats["retries"]) == (3, 2)
    assert len(list_calls(emulator)) == 3


def test_retries_stop_after_max_attempts(emulator, posthog_conn, sleeps):
    emulator.inject(Fault.status(502), times=10, method="GET")

    async def main() -> None:
        async with await open_client(sleeps, RetryPolicy(max_attempts=3)) as client:
            await all_rows(client, date_from="-7d")

    with pytest.raises(PostHogServerError, match="-> 502"):
        run(main)
    assert len(sleeps.calls) == 2 and len(list_calls(emulator)) == 3


def test_a_429_with_retry_after_pauses_every_caller_for_that_long(
    emulator, posthog_conn, sleeps, seeded_policy
):
    emulator.seed(2, days=1)
    emulator.inject(Fault.throttle(retry_after=7), times=1, method="GET")
    seen_while_sleeping: list[tuple[float, Any]] = []

    async def main() -> dict[str, Any]:
        client: AsyncPostHogClient

        def look(_: float) -> None:
            # Another caller sharing the limiter, asking while this one sleeps.
            seen_while_sleeping.append(client.core.limiter.begin("recording"))

        client = await open_client(sleeps, seeded_policy, sleep=async_sleep(sleeps, look))
        async with client:
            assert len(await all_rows(client, date_from="-7d")) == 2
            return client.stats.snapshot()

    stats = run(main)
    assert sleeps.calls == [7.0]  # Retry-After, exactly
    [(wait, call)] = seen_while_sleeping
    assert call is None and wait == pytest.approx(7.0)
    assert (stats["throttled"], stats["retries"], stats["requests"]) == (1, 1, 2)


def test_a_429_without_retry_after_pauses_every_caller_for_the_back_off(
    emulator, posthog_conn, sleeps, seeded_policy
):
    emulator.seed(2, days=1)
    emulator.inject(Fault.throttle(retry_after=None), times=1, method="GET")
    seen_while_sleeping: list[tuple[float, Any]] = []

    async def main() -> None:
        client: AsyncPostHogClient

        def look(_: float) -> None:
            seen_while_sleeping.append(client.core.limiter.begin("recording"))

        client = await open_client(sleeps, seeded_policy, sleep=async_sleep(sleeps, look))
        async with client:
            assert len(await all_rows(client, date_from="-7d")) == 2

    run(main)
    [back_off] = sleeps.calls
    [(wait, call)] = seen_while_sleeping
    assert call is None and wait == pytest.approx(back_off)


def test_a_retry_after_longer_than_allowed_stops_but_still_pauses_everyone(
    emulator, connect, sleeps, seeded_policy
):
    connect(emulator.url, max_retry_wait=30)
    emulator.inject(Fault.throttle(retry_after=120), times=1, method="GET")

    async def main() -> tuple[float, Any]:
        async with await open_client(sleeps, seeded_policy) as client:
            with pytest.raises(PostHogRateLimitError, match="longer than the longest wait") as raised:
                await all_rows(client, date_from="-7d")
            assert raised.value.retry_after == 120
            return await client.core.limiter.abegin("list")

    wait, call = run(main)
    assert sleeps.calls == []
    assert call is None and wait == pytest.approx(120)
    assert len(list_calls(emulator)) == 1


# -- the shared rate store ---------------------------------------------------------------


def test_a_connection_naming_a_store_shares_its_windows_there(
    emulator, connect, sleeps, seeded_policy, redis_server
):
    import redis

    connect(emulator.url, rate_limit_storage=redis_server.url)
    emulator.seed(2, days=1)
    monitor = redis.Redis.from_url(redis_server.url)

    def clients() -> int:
        return int(monitor.info("clients")["connected_clients"])

    alone = clients()

    async def main() -> int:
        client = await open_client(sleeps, seeded_policy)
        async with client:
            assert isinstance(client.core.limiter, AsyncSharedRateLimiter)
            assert len(await all_rows(client, date_from="-7d")) == 2
            return clients()

    try:
        while_open = run(main)
        keys = redis_server.keys()
        prefix = store_prefix(emulator.url, API_KEY)
        assert keys and all(key.startswith(prefix) for key in keys)
        assert any(key.endswith(":listing_burst") for key in keys)
        assert while_open > alone
        # aclose let go of the store's connections too (the server notices at once).
        for _ in range(200):
            if clients() == alone:
                break
            threading.Event().wait(0.01)
        assert clients() == alone
    finally:
        monitor.close()


@pytest.fixture
def store_with_password():
    server = RedisServer(password=STORE_PASSWORD).start()
    yield server
    server.stop()


def store_connection(monkeypatch, server, password):
    """The store's credentials in a connection of the Redis provider's type (read as a trigger does)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_RATE_STORE",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "port": server.port, "password": password}),
    )


async def open_with_store(sleeps, seeded_policy):
    from airflow.providers.common.compat.connection import get_async_connection

    return await open_client(sleeps, seeded_policy, store_conn=await get_async_connection("rate_store"))


def test_the_stores_password_is_never_logged(
    emulator, connect, sleeps, seeded_policy, store_with_password, logs, caplog, monkeypatch
):
    caplog.set_level(logging.INFO, logger="airflow_provider_recordings")
    store_connection(monkeypatch, store_with_password, STORE_PASSWORD)
    connect(emulator.url, rate_limit_redis_conn_id="rate_store")

    async def main() -> None:
        async with await open_with_store(sleeps, seeded_policy) as client:
            await all_rows(client, date_from="-7d")

    run(main)
    assert "Rate windows shared through redis://:***@127.0.0.1" in logs.text
    assert store_with_password.keys(), "the store with a password is used"

    store_connection(monkeypatch, store_with_password, "not-the-password")
    with pytest.raises(PostHogConfigError, match=r"redis://:\*\*\*@127\.0\.0\.1") as raised:
        run(lambda: open_with_store(sleeps, seeded_policy))
    assert STORE_PASSWORD not in str(raised.value)
    assert STORE_PASSWORD not in logs.text


# -- closing -----------------------------------------------------------------------------


def test_a_closed_client_sends_nothing_more(emulator, posthog_conn, sleeps, seeded_policy):
    async def main() -> None:
        client = await open_client(sleeps, seeded_policy)
        async with client:
            await all_rows(client, date_from="-7d")
        with pytest.raises(RuntimeError, match="closed"):
            await all_rows(client, date_from="-7d")

    run(main)
    assert len(list_calls(emulator)) == 1
