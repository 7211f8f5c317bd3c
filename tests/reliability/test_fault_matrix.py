"""Every operator and the sensor against every way PostHog (or a proxy) misbehaves.

Each case ends correct (the final server state exactly as a fault-free run leaves it)
or fails clearly, having deleted or changed nothing outside its selection. Faults hit
the first list call and, mid-run, the call that changes things (the sensor only lists:
there the second fault hits a later page).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_recordings.core.errors import PostHogCrossOriginError, PostHogRateLimitError
from airflow_provider_recordings.testing import Fault
from tests.reliability.helpers import (
    SEL,
    TARGETS,
    assert_complete,
    assert_only_allowed_changes,
    build_world,
    make_target,
    run,
    snapshot,
)

#: The request that changes things, per target (retention: single deletes, as PostHog
#: refuses bulk deletes to personal API keys).
MUTATION = {"retention": "DELETE", "update": "PATCH", "sharing": "PATCH", "sensor": "GET"}
ITEM = re.compile(r"/session_recordings/([^/]+)/")
PAGE_SIZE = 4  # the 11 selected recordings take three list pages


@dataclass(frozen=True)
class Case:
    name: str
    on_list: tuple[Fault, int] | None = None  # (fault, times) on the first list call
    mid_run: tuple[Fault, int] | None = None  # (fault, times) on a later change (or page)
    expect: str = "exact"  # "exact", "over_cap" or "cross_origin"
    emulator: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    slept: float | None = None  # a wait that must have been honoured


CASES = [
    Case("5xx-burst", (Fault.status(503), 3), (Fault.status(502), 3)),
    Case("429-retry-after", (Fault.throttle(7), 2), (Fault.throttle(11), 2), slept=11),
    Case("429-no-retry-after", (Fault.throttle(None), 2), (Fault.throttle(None), 2)),
    Case("retry-after-over-cap", None, (Fault.throttle(5000), 1), expect="over_cap"),
    Case("read-timeout", (Fault.latency(0.6), 1), (Fault.latency(0.6), 1), extra={"read_timeout": 0.2}),
    Case("connection-reset", (Fault.reset(), 2), (Fault.reset(), 2)),
    Case("malformed-json", (Fault.malformed(), 2), (Fault.malformed(), 2)),
    Case("truncated-json", (Fault.truncated(), 2), (Fault.truncated(), 2)),
    Case("published-shape", emulator={"response_shape": "published"}),
    Case("cross-origin-next", expect="cross_origin", emulator={"response_shape": "published"}),
]


def inject(emulator, target: str, case: Case, *, bulk: str) -> None:
    first_times = 0
    if case.on_list is not None:
        fault, first_times = case.on_list
        emulator.inject(fault, times=first_times, method="GET")
    if case.mid_run is not None:
        fault, times = case.mid_run
        method = "POST" if target == "retention" and bulk == "allowed" else MUTATION[target]
        # Rules count the requests they skip, including ones another rule answered; for
        # the sensor (GETs only) skip the faulted attempts and the first page.
        after = first_times + 1 if method == "GET" else 1 if method == "POST" else 2
        emulator.inject(fault, times=times, method=method, after=after)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.parametrize("target", TARGETS)
def test_fault(make_emulator, connect, frozen_clock, sleeps, logs, target, case):
    check_fault(make_emulator, connect, frozen_clock, sleeps, logs, target, case)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 8])
@pytest.mark.parametrize("bulk", ["allowed", "forbidden"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.parametrize("target", TARGETS)
def test_fault_exhaustive(make_emulator, connect, frozen_clock, sleeps, logs, target, case, bulk, workers):
    check_fault(make_emulator, connect, frozen_clock, sleeps, logs, target, case, bulk=bulk, workers=workers)


def check_fault(
    make_emulator, connect, frozen_clock, sleeps, logs, target, case, *, bulk="forbidden", workers=3
):
    """Run ``target`` under ``case``'s faults and check how it ended."""
    emulator = make_emulator(clock=frozen_clock, bulk_delete=bulk, **case.emulator)
    other = None
    if case.expect == "cross_origin" and target == "sharing":
        # Links are followed only when listing: make the audit scan (no shared playlist).
        emulator.synthetic_playlists = "absent"
    if case.expect == "cross_origin":
        other = make_emulator(clock=frozen_clock, response_shape="published")
        other.seed(5, days=1)
        emulator.next_url_base = other.url
    connect(emulator.url, bulk_delete_chunk_size=2, **case.extra)
    world = build_world(emulator)
    before = snapshot(emulator)
    inject(emulator, target, case, bulk=bulk)

    if case.expect == "over_cap":
        workers = 1  # in flight on other workers is allowed; see the parallel test below
    outcome = run(make_target(target, max_workers=workers), sleeps=sleeps, now=world.now, page_size=PAGE_SIZE)
    injected = sum(rule[1] for rule in (case.on_list, case.mid_run) if rule)
    # A delayed answer is logged when it is sent, after the client gave up on it.
    deadline = time.monotonic() + 10
    while emulator.stats()["faults"] < injected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emulator.stats()["faults"] == injected, "a fault meant for this run never fired"
    after = snapshot(emulator)
    assert_only_allowed_changes(target, world, before, after)

    if case.expect == "exact":
        assert outcome.error is None, f"{target} failed under {case.name}: {outcome.error!r}"
        assert_complete(target, world, before, after)
        if target == "sensor":
            assert outcome.value.is_done is True
            assert {row["id"] for row in outcome.value.xcom_value} == world.sel
        else:
            assert outcome.value["failed"] == 0
        if case.slept is not None:
            assert case.slept in sleeps.calls
    elif case.expect == "over_cap":
        requests = emulator.requests
        throttled = [i for i, request in enumerate(requests) if request.status == 429]
        assert len(throttled) == 1
        assert throttled[0] == len(requests) - 1, "requests were sent after an over-cap Retry-After"
        assert 5000 not in sleeps.calls
        if target == "sensor":
            # A throttled poke is "not yet", never a failure; the log says why.
            assert outcome.error is None
            assert outcome.value.is_done is False
            assert "5000" in logs.text
        else:
            assert isinstance(outcome.error, PostHogRateLimitError)
            assert "5000" in str(outcome.error)
            assert "max_retry_wait=300" in str(outcome.error)
    else:
        assert isinstance(outcome.error, PostHogCrossOriginError)
        assert other.url.split("//")[1].split(":")[0] in str(outcome.error)
        assert other.requests == [], "the API key went to another host"
        assert after == before


@pytest.mark.parametrize("target", ["retention", "update", "sharing"])
def test_over_cap_wait_stops_parallel_work_at_once(make_emulator, connect, frozen_clock, sleeps, target):
    # Each answer takes 50 ms, so no worker can get through more than one further item
    # in the moment between the 429 and the client acting on it.
    emulator = make_emulator(clock=frozen_clock, bulk_delete="forbidden", latency=0.05)
    connect(emulator.url)
    world = build_world(emulator)
    for index in range(30):  # enough selected work to keep four workers busy
        emulator.add_recording(
            start_time=world.now - timedelta(days=365),
            distinct_id=SEL,
            shared=True,
            id=f"extra-{index:02d}",
        )
    emulator.inject(Fault.throttle(5000), times=1, method=MUTATION[target], after=3)
    started: dict[str, bool] = {}  # recording id -> its first request arrived after the 429

    @emulator.on_request
    def arrivals(emu, request):
        found = ITEM.search(request.path)
        if found and found.group(1) != "bulk_delete":
            started.setdefault(found.group(1), "429" in emu.stats()["by_status"])

    workers = 4
    outcome = run(make_target(target, max_workers=workers), sleeps=sleeps, now=world.now)
    assert isinstance(outcome.error, PostHogRateLimitError)
    # Items already running on the other workers may finish. While the 429 travels back
    # to the client each other worker may still pick up one more item; after the client
    # has seen it, nothing new starts (queued items are dropped, not run).
    started_after = sorted(i for i, late in started.items() if late)
    assert len(started_after) <= workers - 1, f"{len(started_after)} recording(s) were started after the 429"
