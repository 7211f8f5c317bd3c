"""Sixteen threads on one hook stay inside PostHog's rate budget.

The emulator enforces a budget on a scaled clock (``time_scale`` shrinks a "minute" and
an "hour"), the connection tells the hook the same numbers, and sixteen threads delete
and update through one hook. The emulator's request log is the referee: counting every
request that reached it (throttled ones included), no sliding window ever holds more
than the budget, and nothing was throttled. Time is real here (the budget is about
time), but nothing asserts on speed.
"""

from __future__ import annotations

import gc
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.testing import Fault, RateLimitConfig

THREADS = 16


@dataclass(frozen=True)
class Budget:
    name: str
    per_minute: int
    per_hour: int
    time_scale: float
    operations: int

    @property
    def emulator_limits(self) -> RateLimitConfig:
        return RateLimitConfig(
            per_minute=self.per_minute,
            per_hour=self.per_hour,
            list_per_minute=1000,
            list_per_hour=1000,
            time_scale=self.time_scale,
        )

    @property
    def extras(self) -> dict[str, float]:
        return {
            "rate_limit_per_minute": self.per_minute,
            "rate_limit_per_hour": self.per_hour,
            "list_rate_limit_per_minute": 1000,
            "list_rate_limit_per_hour": 1000,
            "rate_limit_time_scale": self.time_scale,
        }

    def windows(self) -> list[tuple[int, float]]:
        return [(self.per_minute, 60 / self.time_scale), (self.per_hour, 3600 / self.time_scale)]


def busiest_window(times: list[float], span: float) -> int:
    """The most requests in any window of ``span`` seconds (the server's sliding window)."""
    times = sorted(times)
    start = best = 0
    for end, moment in enumerate(times):
        while times[start] <= moment - span:
            start += 1
        best = max(best, end - start + 1)
    return best


def work(hook: PostHogHook, ids: list[str]) -> None:
    """Half the ids deleted, half marked viewed, from sixteen threads at once."""

    def one(index: int) -> None:
        if index % 2:
            hook.delete_recording(ids[index])
        else:
            hook.update_recording(ids[index], viewed=True)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, range(len(ids))))


def warm_up(hook: PostHogHook, ids: list[str]) -> None:
    """Sixteen simultaneous reads: every thread's connection is open and the hook has
    seen how long a call takes under this load."""
    barrier = threading.Barrier(THREADS)

    def read(index: int) -> None:
        barrier.wait()
        hook.get_recording(ids[index])

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(read, range(THREADS)))


@contextmanager
def no_gc_pauses() -> Iterator[None]:
    """Keep the garbage collector from stopping every thread mid-call.

    Client and emulator share one process here, and a full collection over Airflow's
    heap stalls both for tens of milliseconds between a call's acquisition and its
    arrival; that is the late-arrival case the cold-start test below covers, so the
    steady-state test keeps it out.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def start(make_emulator, connect, budget: Budget):
    emulator = make_emulator(bulk_delete="forbidden")
    connect(emulator.url, **budget.extras)
    ids = emulator.seed(budget.operations, days=30)
    hook = PostHogHook(retry_policy=RetryPolicy(rng=random.Random(7)))  # real sleep: real budget
    return emulator, ids, hook


def check(emulator, ids: list[str], budget: Budget) -> None:
    requests = emulator.requests
    assert [r for r in requests if r.status == 429] == [], "the server had to throttle the hook"
    times = [r.time for r in requests]
    for limit, span in budget.windows():
        assert busiest_window(times, span) <= limit, f"more than {limit} calls in {span:g} s"
    left = emulator.recording_ids()
    for index, recording_id in enumerate(ids):
        if index % 2:
            assert recording_id not in left
        else:
            assert emulator.get(recording_id)["viewed"] is True


BUDGETS = [
    # The minute budget binds: 96 calls at 30 a (0.6 s) minute.
    Budget("per-minute", per_minute=30, per_hour=1200, time_scale=100, operations=96),
    # The hour budget binds: 64 calls at 40 a (1 s) hour.
    Budget("per-hour", per_minute=1000, per_hour=40, time_scale=3600, operations=64),
]


@pytest.mark.parametrize("budget", BUDGETS, ids=[b.name for b in BUDGETS])
def test_sixteen_threads_on_one_hook_stay_inside_the_budget(make_emulator, connect, budget):
    emulator, ids, hook = start(make_emulator, connect, budget)
    # Warm up without a server-side budget; the hook still counts those calls.
    warm_up(hook, ids)
    emulator.clear_requests()
    emulator.rate_limits = budget.emulator_limits
    with no_gc_pauses():
        work(hook, ids)
    check(emulator, ids, budget)
    assert hook.stats.snapshot()["rate_limit_wait_seconds"] > 0, "the budget never bound"


def test_sixteen_threads_stay_inside_the_budget_from_a_cold_start(make_emulator, connect):
    budget = Budget("cold", per_minute=10, per_hour=1200, time_scale=120, operations=30)
    emulator, ids, hook = start(make_emulator, connect, budget)
    emulator.rate_limits = budget.emulator_limits
    # The very first call reaches PostHog's limiter 0.1 s after it left (a slow TLS
    # handshake, a busy proxy): well inside a window, but later than every other call.
    emulator.inject(Fault.latency(0.1), times=1)
    work(hook, ids)
    check(emulator, ids, budget)


@pytest.mark.slow
@pytest.mark.parametrize("repeat", range(10))
@pytest.mark.parametrize("budget", BUDGETS, ids=[b.name for b in BUDGETS])
def test_sixteen_threads_stay_inside_the_budget_repeatedly(make_emulator, connect, budget, repeat):
    test_sixteen_threads_on_one_hook_stay_inside_the_budget(make_emulator, connect, budget)
