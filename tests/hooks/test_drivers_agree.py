"""Drifts between the two drivers, and between a call and the budget it is told about.

The synchronous hook and the asynchronous client (opened as a trigger opens it) must
choose the same rate windows for the same connection: the key's shared windows when the
connection names a store (by URL or by a Redis connection), windows of their own
otherwise, always with the connection's limits. ``hooks/connection.choose_limiter`` is
the one chooser; these tests fail if either driver stops going through it the same way.

A call that must wait longer than allowed names the budget of its own kind: a persons
deletion names the persons budget, not the recordings one.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_recordings.core.config import KIND_BUCKETS, PERSONS_DELETE, RateLimits
from airflow_provider_recordings.core.errors import PostHogRateLimitError
from airflow_provider_recordings.core.ratelimit import BUCKET_NAMES, budget_exceeded_error, describe_budget
from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.hooks import connection, posthog, posthog_async
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient
from airflow_provider_recordings.triggers.ongoing import PostHogOngoingRecordingsTrigger
from tests.conftest import CONN_ID, RecordingSleep
from tests.services import RedisServer

STORE_CONN_ID = "posthog_rate_store"

#: Limits other than the defaults, so that taking them from anywhere else shows.
LIMITS = {
    "rate_limit_per_minute": 7,
    "rate_limit_per_hour": 70,
    "rate_plan": "paid",
    "sharing_rate_limit_per_minute": 11,
    "persons_delete_rate_limit_per_minute": 5,
    "rate_limit_time_scale": 60.0,
}


@pytest.fixture
def store_with_password() -> Iterator[RedisServer]:
    server = RedisServer(password="drivers-agree-store-password").start()
    yield server
    server.stop()


def async_client_of_a_trigger() -> AsyncPostHogClient:
    """The client exactly as the ongoing-recordings trigger opens it (connections read
    the async way, the Redis connection included); closed again before it is returned."""

    async def main() -> AsyncPostHogClient:
        client = await PostHogOngoingRecordingsTrigger(CONN_ID, recording_ids=["a"]).open_client()
        await client.aclose()
        return client

    return asyncio.run(main())


def signature(limiter: Any) -> dict[str, Any]:
    """What decides how a limiter admits calls: whose windows, where, and which limits."""
    windows = getattr(limiter, "_windows", None)
    return {
        "shared": bool(getattr(limiter, "shared", False)),
        "limits": limiter.limits,
        "store": getattr(getattr(limiter, "config", None), "rate_limit_storage", None),
        "prefix": getattr(windows, "prefix", None),
    }


@pytest.mark.parametrize("store", ["none", "url", "redis-connection"])
def test_both_drivers_choose_the_same_windows_for_a_connection(
    emulator, connect, monkeypatch, redis_server, store_with_password, store
):
    extras: dict[str, Any] = dict(LIMITS)
    if store == "url":
        extras["rate_limit_storage"] = redis_server.url
    elif store == "redis-connection":
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{STORE_CONN_ID.upper()}",
            json.dumps(
                {
                    "conn_type": "redis",
                    "host": "127.0.0.1",
                    "port": store_with_password.port,
                    "password": store_with_password.password,
                }
            ),
        )
        extras["rate_limit_redis_conn_id"] = STORE_CONN_ID
    connect(emulator.url, **extras)

    hook = PostHogHook(CONN_ID)
    sync_limiter = hook.limiter
    async_limiter = async_client_of_a_trigger().core.limiter

    assert signature(sync_limiter) == signature(async_limiter)
    config = hook.config
    assert sync_limiter.limits == config.rate_limits != RateLimits()
    # Each is what the one chooser gives its kind of driver for this connection.
    assert type(sync_limiter) is type(connection.choose_limiter(config, asynchronous=False))
    assert type(async_limiter) is type(connection.choose_limiter(config, asynchronous=True))
    assert signature(sync_limiter)["shared"] == (store != "none")
    assert emulator.requests == []


def test_both_drivers_go_through_the_one_chooser():
    assert posthog.choose_limiter is connection.choose_limiter
    assert posthog_async.choose_limiter is connection.choose_limiter


# -- the budget a waiting call is told about ----------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KIND_BUCKETS))
def test_a_budget_error_names_the_budgets_of_its_kind_and_no_other(kind):
    limits = RateLimits()
    message = str(budget_exceeded_error(90.0, kind, limits))
    own = {BUCKET_NAMES[bucket] for bucket in KIND_BUCKETS[kind]}
    others = set(BUCKET_NAMES.values()) - own
    assert all(f"for {name}" in message for name in own), message
    assert not [name for name in others if f"for {name}" in message], message
    assert describe_budget(kind, limits) in message
    assert "next call is possible in 90 s" in message


def test_a_persons_deletion_names_the_persons_budget_not_the_recordings_one():
    message = str(budget_exceeded_error(30.0, PERSONS_DELETE, RateLimits(persons_delete_per_minute=3)))
    assert "(3/min and 4800/h for persons deletions)" in message
    assert "recordings calls" not in message


def test_a_persons_deletion_that_must_wait_says_so_through_the_hook(emulator, connect):
    # One persons deletion a minute; the hook may wait a second at most.
    connect(emulator.url, persons_delete_rate_limit_per_minute=1, max_retry_wait=1)
    person = emulator.add_person(["someone"])
    sleeps = RecordingSleep()
    hook = PostHogHook(
        CONN_ID, sleep=sleeps, clock=sleeps.clock, retry_policy=RetryPolicy(rng=random.Random(7))
    )
    hook.bulk_delete_person_recordings([person["uuid"]])

    with pytest.raises(PostHogRateLimitError) as waited:
        hook.bulk_delete_person_recordings([person["uuid"]])

    message = str(waited.value)
    assert "for persons deletions" in message
    assert "recordings calls" not in message
    # Recordings calls are not held back by the spent persons budget.
    list(hook.iter_recordings(date_from="-1d"))


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_both_drivers_name_the_same_budget_for_the_same_wait(emulator, connect, driver):
    connect(emulator.url, list_rate_limit_per_minute=1, max_retry_wait=1)
    sleeps = RecordingSleep()
    policy = RetryPolicy(rng=random.Random(7))

    def listing() -> None:
        if driver == "sync":
            hook = PostHogHook(CONN_ID, sleep=sleeps, clock=sleeps.clock, retry_policy=policy)
            for _ in range(2):
                list(hook.iter_recordings(date_from="-1d"))
            return

        async def main() -> None:
            from airflow.providers.common.compat.connection import get_async_connection

            async def sleep(seconds: float) -> None:
                sleeps(seconds)

            conn = await get_async_connection(CONN_ID)
            async with await AsyncPostHogClient.open(
                CONN_ID, conn, sleep=sleep, clock=sleeps.clock, retry_policy=policy
            ) as client:
                for _ in range(2):
                    [row async for row in client.iter_recordings(date_from="-1d")]

        asyncio.run(main())

    with pytest.raises(PostHogRateLimitError) as waited:
        listing()
    assert f"({describe_budget('list', RateLimits(list_per_minute=1))}) is spent" in str(waited.value)
