from __future__ import annotations

import pytest

from airflow_provider_recordings.core.client import ClientCore
from airflow_provider_recordings.core.config import RateLimits, build_client_config
from airflow_provider_recordings.core.errors import PostHogRateLimitError
from airflow_provider_recordings.core.protocol import ApiRequest
from airflow_provider_recordings.core.ratelimit import WINDOW_MARGIN, RateLimiter
from airflow_provider_recordings.core.retry import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_minute_budget_blocks_until_the_oldest_call_leaves_the_window():
    clock = Clock()
    limiter = RateLimiter(RateLimits(per_minute=3, per_hour=100), clock=clock)
    assert [limiter.try_acquire("recording") for _ in range(3)] == [0, 0, 0]
    wait = limiter.try_acquire("recording")
    assert wait == pytest.approx(60 * (1 + WINDOW_MARGIN))
    clock.sleep(wait)
    assert limiter.try_acquire("recording") == 0


def test_list_calls_also_spend_the_shared_budget():
    clock = Clock()
    limiter = RateLimiter(
        RateLimits(per_minute=2, per_hour=100, list_per_minute=5, list_per_hour=50), clock=clock
    )
    assert limiter.try_acquire("list") == 0
    assert limiter.try_acquire("recording") == 0
    assert limiter.try_acquire("list") > 0


def test_list_budget_is_separate_and_smaller():
    clock = Clock()
    limiter = RateLimiter(RateLimits(list_per_minute=1, list_per_hour=10), clock=clock)
    assert limiter.try_acquire("list") == 0
    assert limiter.try_acquire("list") > 0
    assert limiter.try_acquire("recording") == 0


def test_pause_holds_everyone_back():
    clock = Clock()
    limiter = RateLimiter(RateLimits(), clock=clock)
    limiter.pause(30)
    assert limiter.try_acquire("recording") == pytest.approx(30)


CONFIG = build_client_config(conn_id="c", host="http://h", password="k", extra={"project_id": "1"})


def acquire(limiter, kind, *, sleep, max_wait):
    """Drive the client core as the sync hook does; returns the seconds slept."""
    core = ClientCore(CONFIG, RetryPolicy(max_wait=max_wait), limiter, clock=limiter._clock)
    slept = 0.0
    wait, call = core.wait_before(ApiRequest("GET", kind=kind))
    while call is None:
        sleep(wait)
        slept += wait
        wait, call = core.wait_before(ApiRequest("GET", kind=kind))
    core.answered(call)
    return slept


def test_acquire_sleeps_short_waits_and_refuses_long_ones():
    clock = Clock()
    limiter = RateLimiter(RateLimits(per_minute=1, per_hour=2), clock=clock)
    assert acquire(limiter, "recording", sleep=clock.sleep, max_wait=300) == 0
    assert acquire(limiter, "recording", sleep=clock.sleep, max_wait=300) == pytest.approx(60.6)
    with pytest.raises(PostHogRateLimitError) as info:
        acquire(limiter, "recording", sleep=clock.sleep, max_wait=300)
    assert info.value.retry_after > 3000
    assert "client-side rate budget" in str(info.value)


def test_hour_budget_never_exceeded_over_a_long_run():
    clock = Clock()
    limits = RateLimits(per_minute=240, per_hour=1200)
    limiter = RateLimiter(limits, clock=clock)
    stamps = []
    for _ in range(3000):
        acquire(limiter, "recording", sleep=clock.sleep, max_wait=4000)
        stamps.append(clock.now)
    for index in range(len(stamps) - 1200):
        assert stamps[index + 1200] - stamps[index] >= 3600
    for index in range(len(stamps) - 240):
        assert stamps[index + 240] - stamps[index] >= 60
    # And it runs close to the budget: the third 1200 starts right after two hour windows
    # (plus the safety margin), the last 600 at 240 a minute take two and a half minutes.
    floor = 2 * 3600 + 600 / 240 * 60
    assert floor <= stamps[-1] - stamps[0] < floor * (1 + 2 * WINDOW_MARGIN)


def test_a_call_in_flight_holds_its_slot_until_answered():
    clock = Clock()
    limiter = RateLimiter(RateLimits(per_minute=1, per_hour=100), clock=clock)
    wait, call = limiter.begin("recording")
    assert wait == 0
    clock.sleep(120)  # a slow answer: the server may have counted it late
    assert limiter.begin("recording")[1] is None
    limiter.end(call)
    assert limiter.begin("recording")[1] is None  # the window runs from the answer
    clock.sleep(61)
    assert limiter.begin("recording")[1] is not None


def greedy_call_times(limiter: RateLimiter, clock: Clock, calls: int) -> list[float]:
    """When each of ``calls`` calls goes out if every one leaves as soon as allowed."""
    times = []
    while len(times) < calls:
        wait = limiter.try_acquire("recording")
        if wait:
            clock.sleep(wait)
        else:
            times.append(clock.now)
    return times


def test_a_restored_limiter_never_spends_budget_the_server_still_counts():
    limits = RateLimits(per_minute=1000, per_hour=120)
    before, clock = RateLimiter(limits, clock=(clock := Clock())), clock
    # 120 calls in bursts over half an hour: the hour's budget is spent.
    for step in range(120):
        clock.sleep(30 if step % 10 == 0 else 0.5)
        assert before.try_acquire("recording") == 0
    snapshot = before.snapshot(wall_now=5000.0)
    assert sum(len(groups) for groups in snapshot["windows"].values()) <= 2 * 16

    # Ten seconds later, in another process with its own monotonic clock.
    clock.sleep(10)
    later = Clock()
    later.now = 42.0
    after = RateLimiter(limits, clock=later)
    after.restore(snapshot, wall_now=5010.0)
    empty = RateLimiter(limits, clock=(empty_clock := Clock()))

    def offsets(limiter: RateLimiter, its_clock: Clock) -> list[float]:
        start = its_clock.now
        return [t - start for t in greedy_call_times(limiter, its_clock, 60)]

    expected, restored, unaware = offsets(before, clock), offsets(after, later), offsets(empty, empty_clock)
    assert all(r >= e for r, e in zip(restored, expected, strict=True)), "a slot was used before it freed"
    # Late by at most one group's spread: 8 calls, one 30 s gap and seven 0.5 s steps.
    assert max(r - e for r, e in zip(restored, expected, strict=True)) <= 33.5
    assert unaware[-1] == 0, "without the snapshot the new limiter would spend the budget at once"
    assert expected[0] > 0


def test_snapshot_counts_calls_in_flight_as_just_made():
    clock = Clock()
    limiter = RateLimiter(RateLimits(per_minute=2, per_hour=100), clock=clock)
    _, in_flight = limiter.begin("recording")
    assert in_flight is not None
    clock.sleep(5)
    snapshot = limiter.snapshot(wall_now=0.0)
    assert snapshot["windows"]["clickhouse_burst:0"] == [[0.0, 1]]
    restored = RateLimiter(RateLimits(per_minute=1, per_hour=100), clock=Clock())
    restored.restore(snapshot, wall_now=0.0)
    assert restored.try_acquire("recording") == pytest.approx(60 * (1 + WINDOW_MARGIN))


def test_a_restored_limiter_can_be_snapshot_again_before_its_next_call():
    # A pass that resumes and is throttled again before its first call defers at once.
    limits = RateLimits(per_minute=5, per_hour=10, list_per_minute=2, list_per_hour=4)
    first = RateLimiter(limits, clock=Clock())
    assert first.try_acquire("list") == 0
    snapshot = first.snapshot(wall_now=0.0)
    second = RateLimiter(limits, clock=Clock())
    second.restore(snapshot, wall_now=0.0)
    assert second.snapshot(wall_now=0.0)["windows"] == snapshot["windows"]


def test_a_snapshot_taken_by_0_2_0_restores_under_todays_bucket_names():
    # 0.2.0 named PostHog's 240/min and 1,200/h windows "all:0" and "all:1", the plan's
    # list windows "list:0" and "list:1"; a task deferred then resumes with them.
    snapshot = {
        "taken_at": 0.0,
        "windows": {"all:0": [[0.0, 2]], "list:1": [[0.0, 1]], "persons:0": [[0.0, 9]]},
    }
    restored = RateLimiter(RateLimits(per_minute=2, per_hour=100, list_per_hour=1), clock=Clock())
    restored.restore(snapshot, wall_now=0.0)
    assert restored.try_acquire("recording") == pytest.approx(60 * (1 + WINDOW_MARGIN))
    assert restored.try_acquire("list") == pytest.approx(3600 * (1 + WINDOW_MARGIN))
