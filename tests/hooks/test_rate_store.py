"""The shared rate store over a real Redis server: one budget per PostHog key, whichever
process, hook or trigger spends it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_recordings.core.config import build_client_config
from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogRateLimitError
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient
from airflow_provider_recordings.hooks.rate_store import SharedRateLimiter, store_prefix
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.testing import Fault, RateLimitConfig
from tests.conftest import API_KEY, PROJECT_ID, conn_json
from tests.operators.conftest import XComRecorder
from tests.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]

#: Windows shrink this much: an hour of PostHog's budget lasts ten seconds.
SCALE = 360.0


def store_extras(redis_url: str, **extra: object) -> dict[str, object]:
    return {"rate_limit_storage": redis_url, "rate_limit_time_scale": SCALE, "max_retry_wait": 30, **extra}


def refusing_extras(redis_url: str, *, per_minute: int) -> dict[str, object]:
    """A small budget that refuses at once when spent. Real-time windows: a scaled minute
    could pass on a slow machine before the test looks."""
    return store_extras(
        redis_url, rate_limit_per_minute=per_minute, max_retry_wait=0.001, rate_limit_time_scale=1
    )


def config(url: str, redis_url: str, *, api_key: str = API_KEY, **extra: object):  # type: ignore[no-untyped-def]
    return build_client_config(
        conn_id="posthog_default",
        host=url,
        password=api_key,
        extra={"project_id": PROJECT_ID, **store_extras(redis_url, **extra)},
    )


def test_hooks_of_one_key_share_one_budget(emulator, connect, redis_server):
    connect(emulator.url, **refusing_extras(redis_server.url, per_minute=5))
    first, second = PostHogHook(), PostHogHook()
    for _ in range(5):
        next(first.iter_recordings(date_from="-1d"), None)
    with pytest.raises(PostHogRateLimitError, match="client-side rate budget"):
        next(second.iter_recordings(date_from="-1d"), None)
    assert len(emulator.requests) == 5


def test_two_keys_do_not_share_windows(emulator, connect, redis_server):
    emulator.add_key("phx_second_key_not_real")
    connect(emulator.url, **refusing_extras(redis_server.url, per_minute=3))
    connect(
        emulator.url,
        conn_id="posthog_other",
        api_key="phx_second_key_not_real",
        **refusing_extras(redis_server.url, per_minute=3),
    )
    spent, other = PostHogHook(), PostHogHook("posthog_other")
    for _ in range(3):
        next(spent.iter_recordings(date_from="-1d"), None)
    with pytest.raises(PostHogRateLimitError):
        next(spent.iter_recordings(date_from="-1d"), None)
    next(other.iter_recordings(date_from="-1d"), None)
    assert other.stats.requests == 1


def test_the_key_never_reaches_the_store(emulator, connect, redis_server):
    connect(emulator.url, **store_extras(redis_server.url))
    hook = PostHogHook()
    list(hook.iter_recordings(date_from="-1d"))
    hook.limiter.pause(0.01)
    keys = redis_server.keys()
    assert keys, "the store holds the windows"
    prefix = store_prefix(emulator.url, API_KEY)
    assert all(key.startswith(prefix) for key in keys)
    import redis

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    dumped = " ".join(keys) + " ".join(str(client.zrange(k, 0, -1)) for k in keys if client.type(k) == "zset")
    assert API_KEY not in dumped and API_KEY[4:] not in dumped
    client.close()


def test_a_throttle_seen_by_one_process_pauses_every_process(emulator, redis_server):
    first = SharedRateLimiter(config(emulator.url, redis_server.url))
    second = SharedRateLimiter(config(emulator.url, redis_server.url))
    first.pause(3.0)
    wait, call = second.begin("list")
    assert call is None
    assert 2.0 < wait <= 3.0


def test_a_call_counts_until_its_answer_arrives(emulator, redis_server):
    limiter = SharedRateLimiter(config(emulator.url, redis_server.url, rate_limit_per_minute=1))
    wait, call = limiter.begin("recording")
    assert call is not None
    # In flight: the slot is held however long the answer takes, and only polled.
    wait, none = limiter.begin("recording")
    assert none is None and 0 < wait < 0.01
    limiter.end(call)
    wait, none = limiter.begin("recording")
    assert none is None
    minute = 60 / SCALE
    assert minute * 0.9 < wait <= minute * 1.02


@pytest.mark.heavy  # three worker processes (each imports Airflow) on one Redis key, twice
def test_processes_on_one_key_stay_inside_its_budget(make_emulator, redis_server):
    """Three processes share the free plan's list budget (60 an hour) on one key: with
    the store none is throttled; each alone (the baseline) believes it has the whole
    budget and PostHog throttles them."""
    scale = 720.0  # an hour lasts five seconds
    emulator = make_emulator(rate_limits=RateLimitConfig.free(time_scale=scale))
    emulator.seed(5, days=3)

    def run_three(extras: dict[str, object]) -> list[dict[str, object]]:
        emulator.reset_rate_limits()
        env = dict(os.environ, AIRFLOW_CONN_POSTHOG_DEFAULT=conn_json(emulator.url, **extras))
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.hooks.rate_store_worker", "--calls", "25", "--barrier"],
                env=env,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        # Airflow's imports take each process seconds, longer than this scaled hour: the
        # three start calling together, or the baseline would not overlap at all.
        assert [worker.stdout.readline().strip() for worker in workers] == ["ready"] * 3
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=240)[0] for worker in workers]
        assert all(worker.returncode == 0 for worker in workers)
        return [json.loads(output.strip().splitlines()[-1]) for output in outputs]

    emulator.clear_requests()
    shared = run_three(store_extras(redis_server.url, rate_limit_time_scale=scale))
    assert [s["failed"] for s in shared] == [0, 0, 0]
    assert sum(1 for r in emulator.requests if r.status == 200) == 75
    assert sum(1 for r in emulator.requests if r.status == 429) == 0

    emulator.clear_requests()
    run_three({"rate_limit_time_scale": scale, "max_retry_wait": 30})
    assert sum(1 for r in emulator.requests if r.status == 429) > 0


def test_the_store_stopping_mid_run_loses_no_work(make_emulator, connect, redis_server, logs):
    emulator = make_emulator(bulk_delete="forbidden")
    expired = set()
    now = emulator.clock.now()
    for index in range(120):
        start = now - timedelta(days=200 + index)
        expired.add(emulator.add_recording(start_time=start, end_time=start + timedelta(minutes=1))["id"])
    kept = emulator.add_recording(start_time=now - timedelta(days=2))["id"]
    connect(emulator.url, **store_extras(redis_server.url))
    deletes = []
    lock = threading.Lock()

    @emulator.on_request
    def stop_the_store(emulator, record) -> None:
        if record.method == "DELETE":
            with lock:
                deletes.append(record)
                if len(deletes) == 30:
                    redis_server.stop()

    operator = PostHogRecordingRetentionOperator(task_id="retention", retention_days=90, max_workers=4)
    result = operator.execute({"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)})
    assert not redis_server.running
    assert result["deleted"] == len(expired)
    assert emulator.recording_ids() == {kept}
    assert "stopped answering" in logs.text


def test_an_unreachable_store_is_a_clear_error_before_any_call(emulator, connect, redis_server):
    port = redis_server.port
    redis_server.stop()
    connect(emulator.url, **store_extras(f"redis://127.0.0.1:{port}/0"))
    with pytest.raises(PostHogConfigError, match=r"'posthog_default': extra.rate_limit_storage: cannot use"):
        list(PostHogHook().iter_recordings(date_from="-1d"))
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:6379/0", "must be empty"),
        ("redis://127.0.0.1:notaport/0", "invalid port"),
        ("127.0.0.1:6379", "has no scheme"),
        ("localhost:6379", "has no scheme"),
        ("redis://:pw@127.0.0.1:6379/0", "create a connection of type redis"),
    ],
)
def test_a_malformed_store_url_names_the_field(emulator, connect, url, problem):
    connect(emulator.url, rate_limit_storage=url)
    with pytest.raises(PostHogConfigError, match=f"extra.rate_limit_storage.*{problem}"):
        PostHogHook().config  # noqa: B018
    assert emulator.requests == []


def redis_connection(connect_env, conn_id: str, server: RedisServer, password: str | None) -> None:
    """A connection of the Redis provider's ``redis`` type, as an environment variable."""
    connect_env.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "redis",
                "host": "127.0.0.1",
                "port": server.port,
                "password": password,
                "extra": {"db": 0},
            }
        ),
    )


def test_a_store_with_a_password_is_named_by_a_redis_connection(emulator, connect, monkeypatch, logs):
    server = RedisServer(password="s3cret-store-password").start()
    try:
        redis_connection(monkeypatch, "store", server, "s3cret-store-password")
        connect(emulator.url, rate_limit_redis_conn_id="store", rate_limit_time_scale=SCALE)
        list(PostHogHook().iter_recordings(date_from="-1d"))
        assert server.keys(), "the store behind the Redis connection is used"
        redis_connection(monkeypatch, "store", server, "not-the-s3cret-password")
        with pytest.raises(
            PostHogConfigError,
            match=r"extra.rate_limit_redis_conn_id: cannot use the rate store at redis://:\*\*\*@",
        ) as raised:
            PostHogHook().config  # noqa: B018
        assert "s3cret" not in str(raised.value)
        assert "s3cret" not in logs.text
    finally:
        server.stop()


def test_the_async_client_reads_the_same_redis_connection(emulator, connect, monkeypatch, logs):
    from airflow_provider_recordings.hooks.connection import store_conn_id
    from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient
    from airflow_provider_recordings.hooks.rate_store import AsyncSharedRateLimiter

    server = RedisServer(password="s3cret-store-password").start()
    try:
        redis_connection(monkeypatch, "store", server, "s3cret-store-password")
        conn_id = connect(emulator.url, rate_limit_redis_conn_id="store", rate_limit_time_scale=SCALE)
        hook = PostHogHook(conn_id)
        conn = hook.get_connection(conn_id)
        store = hook.get_connection(store_conn_id(conn_id, conn))

        async def listed() -> list[dict[str, object]]:
            client = await AsyncPostHogClient.open(conn_id, conn, store_conn=store)
            async with client:
                assert isinstance(client.core.limiter, AsyncSharedRateLimiter)
                return [row async for row in client.iter_recordings(date_from="-1d")]

        asyncio.run(listed())
        assert server.keys()
        assert "s3cret" not in logs.text
    finally:
        server.stop()


def test_a_missing_redis_connection_names_the_field(emulator, connect):
    connect(emulator.url, rate_limit_redis_conn_id="no_such_store")
    with pytest.raises(
        PostHogConfigError, match=r"extra.rate_limit_redis_conn_id: the Redis connection 'no_such_store'"
    ):
        PostHogHook().config  # noqa: B018
    assert emulator.requests == []


def test_a_store_named_twice_is_refused(emulator, connect, redis_server):
    connect(emulator.url, rate_limit_redis_conn_id="store", rate_limit_storage=redis_server.url)
    with pytest.raises(PostHogConfigError, match="both name a rate store"):
        PostHogHook().config  # noqa: B018


def test_without_the_redis_package_the_error_names_the_extra(emulator, connect, redis_server, monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    connect(emulator.url, **store_extras(redis_server.url))
    with pytest.raises(PostHogConfigError, match=r"airflow-provider-recordings\[redis\]"):
        PostHogHook().config  # noqa: B018
    assert emulator.requests == []


def test_async_clients_and_hooks_share_the_same_windows(emulator, connect, redis_server):
    connect(emulator.url, **refusing_extras(redis_server.url, per_minute=4))
    hook = PostHogHook()
    for _ in range(3):
        next(hook.iter_recordings(date_from="-1d"), None)

    async def one_more_then_refused() -> None:
        from airflow.providers.common.compat.connection import get_async_connection

        client = await AsyncPostHogClient.open(
            "posthog_default", await get_async_connection("posthog_default")
        )
        async with client:
            [row async for row in client.iter_recordings(date_from="-1d")]
            with pytest.raises(PostHogRateLimitError):
                [row async for row in client.iter_recordings(date_from="-1d")]

    asyncio.run(one_more_then_refused())
    assert len(emulator.requests) == 4


def test_a_deferral_carries_no_windows_when_the_store_keeps_them(emulator, connect, redis_server):
    connect(emulator.url, **store_extras(redis_server.url))
    hook = PostHogHook()
    next(hook.iter_recordings(date_from="-1d"), None)
    assert hook.carried_over()["rate_windows"] is None


def test_each_call_costs_two_store_round_trips(emulator, redis_server):
    """One script run admits a call, one ends it: the store adds two round trips per call."""
    import redis

    limiter = SharedRateLimiter(config(emulator.url, redis_server.url))
    monitor = redis.Redis.from_url(redis_server.url)

    def scripts_run() -> int:
        stats = monitor.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))

    _, call = limiter.begin("list")  # the first run of each script loads it into the store
    limiter.end(call)
    before = scripts_run()
    for _ in range(10):
        _, call = limiter.begin("list")
        limiter.end(call)
    assert scripts_run() - before == 20
    monitor.close()


def test_a_long_throttle_pauses_every_process_even_when_the_task_stops(emulator, connect, redis_server):
    """PostHog asks for a wait longer than the task may sleep: the task stops (or defers),
    and every other process sharing the key holds back for that long too."""
    connect(emulator.url, **store_extras(redis_server.url, max_retry_wait=1))
    emulator.inject(Fault.throttle(retry_after=120), method="GET")
    with pytest.raises(PostHogRateLimitError, match="longer than the longest wait"):
        next(PostHogHook().iter_recordings(date_from="-1d"), None)
    other = SharedRateLimiter(config(emulator.url, redis_server.url))
    wait, call = other.begin("recording")
    assert call is None
    assert 100 < wait <= 120


def test_the_sensor_counts_against_the_store(emulator, connect, redis_server):
    from airflow_provider_recordings.sensors.ongoing import PostHogOngoingRecordingsSensor

    connect(emulator.url, **refusing_extras(redis_server.url, per_minute=2))
    ids = emulator.seed(3, days=2)
    spender = PostHogHook()
    next(spender.iter_recordings(date_from="-1d"), None)
    next(spender.iter_recordings(date_from="-1d"), None)
    sensor = PostHogOngoingRecordingsSensor(task_id="wait", recording_ids=ids, poke_interval=1)
    # The key's two calls a minute are spent by another hook: the poke is "not yet".
    assert sensor.poke({}).is_done is False
    assert len(emulator.requests) == 2


def store_contents(server: RedisServer) -> dict[str, object]:
    import redis

    client = redis.Redis.from_url(server.url, decode_responses=True)
    names: list[str] = server.keys()
    try:
        return {
            name: client.zrange(name, 0, -1, withscores=True)
            if client.type(name) == "zset"
            else client.get(name)
            for name in names
        }
    finally:
        client.close()


def test_budget_left_counts_the_keys_calls_and_changes_nothing(emulator, redis_server):
    """What the metrics' gauge reads: every window of the key once, calls finished within
    it and calls in flight alike, read without recording, pruning or pausing anything."""
    settings = config(emulator.url, redis_server.url, rate_limit_time_scale=1, rate_limit_per_minute=10)
    store = SharedRateLimiter(settings)
    other = SharedRateLimiter(settings)  # another process using the key
    fresh = {(w["bucket"], w["window"]): w for w in store.budget_left()}
    assert fresh["clickhouse_burst", "minute"] == {
        "bucket": "clickhouse_burst",
        "window": "minute",
        "limit": 10,
        "used": 0,
        "left": 10,
    }
    # Each of PostHog's throttles, one window each.
    assert set(fresh) == {
        ("clickhouse_burst", "minute"),
        ("clickhouse_sustained", "hour"),
        ("listing_burst", "minute"),
        ("listing_sustained", "hour"),
        ("snapshots_burst", "minute"),
        ("snapshots_sustained", "hour"),
        ("burst", "minute"),
        ("sustained", "hour"),
        ("persons_delete_burst", "minute"),
        ("persons_delete_sustained", "hour"),
    }

    finished = [other.begin("list")[1] for _ in range(2)]
    for call in finished:
        assert call is not None
        other.end(call)
    _, in_flight = other.begin("recording")
    before = store_contents(redis_server)
    windows = {(w["bucket"], w["window"]): w for w in store.budget_left()}
    assert (windows["clickhouse_burst", "minute"]["used"], windows["clickhouse_burst", "minute"]["left"]) == (
        3,
        7,
    )
    assert (windows["listing_sustained", "hour"]["used"], windows["listing_sustained", "hour"]["left"]) == (
        2,
        58,
    )
    assert windows["persons_delete_burst", "minute"]["used"] == 0
    assert store_contents(redis_server) == before
    assert in_flight is not None
    other.end(in_flight)
    assert {(w["bucket"], w["window"]): w["used"] for w in store.budget_left()}[
        "clickhouse_burst", "minute"
    ] == 3

    store.failed = True  # the store stopped answering: this process counts alone
    assert store.budget_left() == []
