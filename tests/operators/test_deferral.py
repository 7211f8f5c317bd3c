"""Backlogs bigger than the rate budget: defer while throttled, resume without repeats.

The emulator enforces a PostHog budget on a scaled clock (an "hour" lasts one second),
the connection's limiter uses the same scale, and the triggerer is played by the test:
it waits until the trigger's ``resume_at`` and calls ``execute_resume`` on a fresh
operator, as Airflow does after a deferral.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator
from airflow_provider_recordings.testing import RateLimitConfig
from airflow_provider_recordings.triggers.resume import PostHogBudgetTrigger
from tests.operators.conftest import XComRecorder

SCALE = 3600  # an hour of budget lasts one second
# Small enough that any machine spends an hour's budget before the hour frees it (50
# calls a second), so the budget binds and the operators defer, however slow the machine.
PER_HOUR = 50


def start_budget_emulator(make_emulator, connect, per_hour):
    limits = RateLimitConfig(
        per_minute=1000,
        per_hour=per_hour,
        list_per_minute=1000,
        list_per_hour=100,
        sharing_per_minute=1000,
        sharing_per_hour=per_hour,
        time_scale=SCALE,
    )
    emulator = make_emulator(rate_limits=limits, bulk_delete="forbidden")
    connect(
        emulator.url,
        rate_limit_per_minute=1000,
        rate_limit_per_hour=per_hour,
        list_rate_limit_per_minute=1000,
        list_rate_limit_per_hour=100,
        sharing_rate_limit_per_minute=1000,
        sharing_rate_limit_per_hour=per_hour,
        rate_limit_time_scale=SCALE,
        max_retry_wait=0.05,
    )
    return emulator


@pytest.fixture
def budget_emulator(make_emulator, connect):
    return start_budget_emulator(make_emulator, connect, PER_HOUR)


def expired(emulator, count):
    now = datetime.now(UTC)
    return {
        emulator.add_recording(
            start_time=now - timedelta(days=100 + i % 300), end_time=now - timedelta(days=99)
        )["id"]
        for i in range(count)
    }


async def next_event(trigger):
    async for event in trigger.run():
        return json.loads(json.dumps(event.payload))
    raise AssertionError("the trigger fired no event")


def run_with_deferrals(make_operator, *, limit=50):
    """Execute, then resume after every deferral; returns (result, deferrals, ti)."""
    ti = XComRecorder()
    context = {"ti": ti, "data_interval_end": datetime.now(UTC)}
    deferrals = 0
    operator = make_operator()
    call = lambda: operator.execute(context)  # noqa: E731
    for _ in range(limit):
        try:
            return call(), deferrals, ti
        except TaskDeferred as deferred:
            deferrals += 1
            trigger = deferred.trigger
            assert isinstance(trigger, PostHogBudgetTrigger)
            _, trigger_kwargs = trigger.serialize()
            assert json.loads(json.dumps(trigger_kwargs)) == trigger_kwargs
            state = json.loads(json.dumps(deferred.kwargs["state"]))  # what crosses the deferral
            assert len(json.dumps(state)) < 5000, "trigger kwargs must stay small"
            time.sleep(max(0.0, trigger.resume_at - time.time()))
            operator = make_operator()  # Airflow resumes on a fresh operator
            if deferrals % 2:
                # As the triggerer does: the deferral's kwargs plus the event.
                call = lambda op=operator, s=state: op.execute_resume(  # noqa: E731
                    context, {"status": "resume", "waited": 0}, state=s
                )
            else:
                # As `airflow dags test` does: only the trigger's event comes back.
                event = asyncio.run(next_event(trigger))
                call = lambda op=operator, e=event: op.execute_resume(context, e)  # noqa: E731
    raise AssertionError("did not finish")


def test_retention_backlog_five_times_the_budget_finishes_across_deferrals(budget_emulator, tmp_path):
    doomed = expired(budget_emulator, 5 * PER_HOUR)
    now = datetime.now(UTC)
    kept = budget_emulator.add_recording(start_time=now - timedelta(days=2))["id"]
    report = tmp_path / "retention.jsonl"

    result, deferrals, _ = run_with_deferrals(
        lambda: PostHogRecordingRetentionOperator(
            task_id="retention", retention_days=90, deferrable=True, max_workers=4, report_path=str(report)
        )
    )
    assert budget_emulator.recording_ids() == {kept}
    assert deferrals >= 4
    assert result["deleted"] == len(doomed)
    assert result["matched"] == len(doomed)
    assert result["remaining"] == 0
    assert result["deferrals"] == deferrals
    deletes = collections.Counter(
        r.path for r in budget_emulator.requests if r.method == "DELETE" and r.status == 204
    )
    assert len(deletes) == len(doomed)
    assert max(deletes.values()) == 1, "a recording was deleted twice"
    probes = [r for r in budget_emulator.requests if r.kind == "bulk_delete"]
    assert len(probes) == 1, "the bulk delete refusal was probed again after a deferral"
    throttled = [r for r in budget_emulator.requests if r.status == 429]
    assert throttled == [], "a resumed pass spent budget PostHog still counted as used"
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    outcomes = [line for line in lines if line["result"] != "requested"]
    assert {line["id"] for line in outcomes} == doomed
    assert len(outcomes) == len(doomed), "a recording's outcome was reported twice"
    assert {line["id"] for line in lines if line["result"] == "requested"} == doomed


def test_sharing_audit_resumes_without_auditing_twice(make_emulator, connect, tmp_path):
    # A budget below the audit's pace, so each hour's budget is spent in a burst.
    per_hour = 40
    budget_emulator = start_budget_emulator(make_emulator, connect, per_hour)
    budget_emulator.synthetic_playlists = "absent"  # the scan: one read per recording
    ids = sorted(budget_emulator.seed(3 * per_hour, days=300))
    shared = ids[::10]
    for recording_id in shared:
        budget_emulator.set_shared(recording_id, True)
    report = tmp_path / "sharing.jsonl"
    result, deferrals, _ = run_with_deferrals(
        lambda: PostHogSharingAuditOperator(
            task_id="audit", deferrable=True, max_workers=3, report_path=str(report)
        )
    )
    assert deferrals >= 2
    assert result["audited"] == len(ids)
    assert result["shared_recording_ids"] == shared
    gets = collections.Counter(
        r.path
        for r in budget_emulator.requests
        if r.method == "GET" and r.path.endswith("/sharing/") and r.status == 200
    )
    assert len(gets) == len(ids)
    assert max(gets.values()) == 1, "a recording was audited twice"
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == ids


def test_without_deferral_the_wait_is_a_clear_error(budget_emulator):
    expired(budget_emulator, PER_HOUR + 10)
    operator = PostHogRecordingRetentionOperator(task_id="retention", retention_days=90, deferrable=False)
    with pytest.raises(Exception, match="next call is possible in"):
        operator.execute({"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)})


def test_max_api_calls_stops_cleanly_and_the_next_run_continues(emulator, posthog_conn, run_operator):
    emulator.bulk_delete = "forbidden"
    doomed = expired(emulator, 30)
    first = run_operator(
        PostHogRecordingRetentionOperator(task_id="r", retention_days=90, max_api_calls=12, max_workers=1)
    )
    assert first["api_calls"] == 12
    assert first["deleted"] == 10  # one list call, one refused bulk probe, ten deletes
    assert first["remaining"] == 20
    assert first["matched"] == 30
    second = run_operator(PostHogRecordingRetentionOperator(task_id="r", retention_days=90))
    assert second["deleted"] == 20
    assert second["remaining"] == 0
    assert not emulator.recording_ids() & doomed


def test_max_api_calls_can_fail_the_task(emulator, posthog_conn, run_operator):
    emulator.bulk_delete = "forbidden"
    expired(emulator, 5)
    with pytest.raises(Exception, match="3 recording\\(s\\) remain"):
        run_operator(
            PostHogRecordingRetentionOperator(
                task_id="r", retention_days=90, max_api_calls=4, max_workers=1, fail_on_remaining=True
            )
        )
    assert run_operator.ti.pushed["return_value"]["remaining"] == 3


def test_deadline_stops_with_remaining_instead_of_deferring_past_it(budget_emulator):
    expired(budget_emulator, 2 * PER_HOUR)
    ti = XComRecorder()
    operator = PostHogRecordingRetentionOperator(
        task_id="r", retention_days=90, deferrable=True, max_runtime=timedelta(seconds=0.5)
    )
    result = operator.execute({"ti": ti, "data_interval_end": datetime.now(UTC)})
    assert result["remaining"] > 0
    assert result["deleted"] + result["remaining"] == 2 * PER_HOUR
    assert len(budget_emulator.recording_ids()) == result["remaining"]


def test_budget_trigger_fires_once_at_the_time():
    trigger = PostHogBudgetTrigger(resume_at=time.time() + 0.2, reason="test")

    async def first_event():
        events = [event async for event in trigger.run()]
        return events

    started = time.time()
    events = asyncio.run(first_event())
    assert len(events) == 1
    assert events[0].payload["status"] == "resume"
    assert time.time() - started >= 0.19


def test_resuming_on_the_same_operator_counts_each_call_once(budget_emulator):
    # Airflow 2's `airflow dags test` resumes a deferred task on the same operator object
    # (and so the same hook): the pass after the wait must still send, and the result
    # must count each call once.
    doomed = expired(budget_emulator, 2 * PER_HOUR)
    ti = XComRecorder()
    context = {"ti": ti, "data_interval_end": datetime.now(UTC)}
    operator = PostHogRecordingRetentionOperator(
        task_id="r", retention_days=90, deferrable=True, max_workers=2
    )
    call = lambda: operator.execute(context)  # noqa: E731
    for _ in range(50):
        try:
            result = call()
            break
        except TaskDeferred as deferred:
            event = asyncio.run(next_event(deferred.trigger))
            call = lambda e=event: operator.execute_resume(context, e)  # noqa: E731
    else:
        raise AssertionError("did not finish")
    assert not budget_emulator.recording_ids() & doomed
    accepted = [r for r in budget_emulator.requests if r.status != 429]
    assert result["api_calls"] == len(accepted), "each call counted once across passes"
    assert result["deferrals"] >= 1
