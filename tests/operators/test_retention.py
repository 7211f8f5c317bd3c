"""The retention operator over real HTTP: exact, safe on bad input, frugal with calls."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_recordings.core.errors import (
    PostHogConfigError,
    PostHogItemsFailedError,
    PostHogRateLimitError,
)
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.testing import Fault
from tests.conftest import API_KEY

NOW = datetime.now(UTC)


def retention(**kwargs):
    kwargs.setdefault("task_id", "retention")
    return PostHogRecordingRetentionOperator(**kwargs)


def populate(emulator, *, expired=0, fresh=0, ongoing=0):
    """Recordings that ended long ago, recently, and some still being recorded."""
    ids = {"expired": set(), "fresh": set(), "ongoing": set()}
    for index in range(expired):
        start = NOW - timedelta(days=91 + index % 600, minutes=index % 50)
        ids["expired"].add(
            emulator.add_recording(start_time=start, end_time=start + timedelta(minutes=5))["id"]
        )
    for index in range(fresh):
        start = NOW - timedelta(days=index % 89, hours=2, minutes=index % 50)
        ids["fresh"].add(
            emulator.add_recording(start_time=start, end_time=start + timedelta(minutes=5))["id"]
        )
    for _ in range(ongoing):
        ids["ongoing"].add(emulator.add_recording(start_time=NOW - timedelta(hours=1), end_time=NOW)["id"])
    return ids


def mutating_requests(emulator):
    return [r for r in emulator.requests if r.method in ("POST", "DELETE", "PATCH")]


def test_deletes_exactly_the_expired_in_close_to_minimal_calls(emulator, posthog_conn, run_operator):
    ids = populate(emulator, expired=6000, fresh=3000, ongoing=1000)
    result = run_operator(retention(retention_days=90, max_workers=4))
    assert emulator.recording_ids() == ids["fresh"] | ids["ongoing"]
    assert result["matched"] == result["deleted"] == 6000
    assert result["failed"] == 0
    list_pages = math.ceil(6000 / 1000) + 0  # only recordings started before the cutoff are listed
    assert result["api_calls"] <= list_pages + 1 + math.ceil(6000 / 100)
    lists = [r for r in emulator.requests if r.method == "GET"]
    assert all("date_from" in r.query and "date_to" in r.query for r in lists)


def test_never_deletes_ongoing_recordings(emulator, posthog_conn, run_operator):
    now = datetime.now(UTC)  # fresh: the ongoing window is five minutes
    # With a cutoff one minute ago, recordings whose last data came two minutes ago
    # are past the cutoff but still ongoing (PostHog's five-minute rule).
    ended = emulator.add_recording(start_time=now - timedelta(hours=1), end_time=now - timedelta(hours=1))[
        "id"
    ]
    still = emulator.add_recording(start_time=now - timedelta(hours=1), end_time=now - timedelta(minutes=2))[
        "id"
    ]
    result = run_operator(retention(cutoff=(now - timedelta(minutes=1)).isoformat()))
    assert result["deleted"] == 1
    assert result["skipped_ongoing"] == 1
    assert emulator.recording_ids() == {still}
    assert ended not in emulator.recording_ids()


@pytest.mark.parametrize("ongoing_field", ["missing", "null"])
def test_missing_ongoing_flag_falls_back_to_end_time(make_emulator, connect, run_operator, ongoing_field):
    now = datetime.now(UTC)  # fresh: the ongoing window is five minutes
    emulator = make_emulator(ongoing_field=ongoing_field)
    connect(emulator.url)
    old = emulator.add_recording(start_time=now - timedelta(hours=2), end_time=now - timedelta(hours=2))["id"]
    recent = emulator.add_recording(start_time=now - timedelta(hours=1), end_time=now - timedelta(minutes=3))[
        "id"
    ]
    result = run_operator(retention(cutoff=now - timedelta(minutes=1)))
    assert emulator.recording_ids() == {recent}
    assert old not in emulator.recording_ids()
    assert result["skipped_ongoing"] == 1


def test_bulk_forbidden_falls_back_to_single_deletes(make_emulator, connect, run_operator):
    emulator = make_emulator(bulk_delete="forbidden")
    connect(emulator.url)
    ids = populate(emulator, expired=300, fresh=100)
    result = run_operator(retention(retention_days=90, max_workers=4))
    assert emulator.recording_ids() == ids["fresh"]
    assert result["deleted"] == 300
    assert result["api_calls"] == 1 + 1 + 300  # one list page, the refused bulk probe, one per id


def test_dry_run_deletes_nothing_and_reports_everything(emulator, posthog_conn, run_operator, tmp_path):
    ids = populate(emulator, expired=120, fresh=30)
    report = tmp_path / "audit" / "dry.jsonl"
    result = run_operator(retention(retention_days=90, dry_run=True, report_path=str(report)))
    assert result["dry_run"] is True
    assert result["matched"] == 120
    assert result["deleted"] == 0
    assert mutating_requests(emulator) == []
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert {line["id"] for line in lines} == ids["expired"]
    assert {line["result"] for line in lines} == {"dry_run"}


def test_max_deletions_stops_before_the_first_delete(emulator, posthog_conn, run_operator):
    populate(emulator, expired=50)
    with pytest.raises(AirflowException, match="max_deletions=49"):
        run_operator(retention(retention_days=90, max_deletions=49))
    assert mutating_requests(emulator) == []
    assert len(emulator.recording_ids()) == 50


def test_report_is_an_audit_trail(emulator, posthog_conn, run_operator, tmp_path):
    ids = populate(emulator, expired=10, fresh=5)
    report = tmp_path / "run.jsonl"
    run_operator(retention(retention_days=90, report_path=str(report)))
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert {line["id"] for line in lines} == ids["expired"]
    for line in lines:
        assert line["action"] == "delete"
        assert line["start_time"] and line["end_time"]
    # Each recording: "requested" before its call, then the outcome.
    for recording_id in ids["expired"]:
        results = [line["result"] for line in lines if line["id"] == recording_id]
        assert results == ["requested", "deleted"]
    assert API_KEY not in report.read_text()


def test_explicit_ids_still_obey_the_policy(emulator, posthog_conn, run_operator):
    ids = populate(emulator, expired=3, fresh=2, ongoing=1)
    chosen = [*sorted(ids["expired"])[:2], *ids["fresh"], *ids["ongoing"], "does-not-exist"]
    result = run_operator(retention(retention_days=90, recording_ids=chosen))
    assert result["deleted"] == 2
    assert result["missing"] == 1
    assert (
        emulator.recording_ids()
        == (ids["expired"] - set(sorted(ids["expired"])[:2])) | ids["fresh"] | ids["ongoing"]
    )


def test_others_deleting_and_adding_mid_run(emulator, posthog_conn, run_operator, tmp_path):
    ids = populate(emulator, expired=2500, fresh=500)
    expired_sorted = sorted(ids["expired"])
    gone_during_listing = set(expired_sorted[:100])
    gone_during_deleting = set(expired_sorted[100:150])
    added = set()
    state = {"lists": 0, "posts": 0}

    def others(emu, request):
        if request.method == "GET":
            state["lists"] += 1
            if state["lists"] == 2:
                for recording_id in gone_during_listing:
                    emu.delete(recording_id)
                for _ in range(20):  # new expired-looking rows arrive (e.g. an import)
                    added.add(emu.add_recording(start_time=NOW - timedelta(days=200))["id"])
                added.add(emu.add_recording(start_time=NOW - timedelta(minutes=30))["id"])
        if request.method == "POST":
            state["posts"] += 1
            if state["posts"] == 3:
                for recording_id in gone_during_deleting:
                    emu.delete(recording_id)

    emulator.on_request(others)
    report = tmp_path / "run.jsonl"
    result = run_operator(retention(retention_days=90, report_path=str(report)))
    selected = {json.loads(line)["id"] for line in report.read_text().splitlines()}
    assert selected <= ids["expired"] | added
    touched = {i for r in mutating_requests(emulator) for i in r.body["session_recording_ids"]}
    assert touched <= selected, "a recording outside the selection was sent for deletion"
    assert ids["fresh"] <= emulator.recording_ids()
    assert not emulator.recording_ids() & (ids["expired"] - gone_during_listing)
    assert result["failed"] == 0
    assert result["deleted"] + result["already_gone"] == result["matched"]


def test_faults_mid_run_end_exact(emulator, posthog_conn, run_operator):
    ids = populate(emulator, expired=1200, fresh=100)
    emulator.inject(Fault.status(503), times=3, method="POST", after=2)
    emulator.inject(Fault.throttle(retry_after=1), times=4, method="POST", after=5)
    emulator.inject(Fault.reset(), times=2, method="GET", after=0)
    emulator.inject(Fault.truncated(), times=1, method="GET", after=1)
    result = run_operator(retention(retention_days=90, max_workers=3))
    assert emulator.recording_ids() == ids["fresh"]
    assert result["deleted"] == 1200
    assert result["failed"] == 0


def test_interrupted_run_then_rerun_finishes_the_job(make_emulator, connect, run_operator):
    emulator = make_emulator(bulk_delete="forbidden")
    connect(emulator.url)
    ids = populate(emulator, expired=200, fresh=20)
    emulator.inject(Fault.throttle(retry_after=5000), times=1, method="DELETE", after=80)
    with pytest.raises(PostHogRateLimitError, match="5000"):
        run_operator(retention(retention_days=90, max_workers=2))
    left = emulator.recording_ids()
    assert ids["fresh"] < left < ids["fresh"] | ids["expired"]
    result = run_operator(retention(retention_days=90, max_workers=2))
    assert emulator.recording_ids() == ids["fresh"]
    assert result["deleted"] == len(left) - len(ids["fresh"])


def test_failed_ids_fail_the_task_at_the_end_after_the_others(make_emulator, connect, run_operator):
    emulator = make_emulator(bulk_delete="forbidden")
    connect(emulator.url)
    ids = populate(emulator, expired=30)
    emulator.inject(Fault.status(500), times=6, method="DELETE", after=10)
    with pytest.raises(PostHogItemsFailedError, match="1 of 30 deletions failed"):
        run_operator(retention(retention_days=90, max_workers=1))
    assert run_operator.ti.pushed["return_value"]["failed"] == 1
    assert len(emulator.recording_ids()) == 1
    run_operator(retention(retention_days=90))
    assert emulator.recording_ids() == set()
    assert ids["expired"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retention_days": "0"}, "retention_days must be an integer >= 1"),
        ({"retention_days": "ninety"}, "retention_days must be an integer"),
        ({"cutoff": (NOW + timedelta(days=1)).isoformat()}, "in the future"),
        ({"cutoff": "last tuesday"}, "ISO 8601"),
        ({"retention_days": 90, "filters": {"distinct_id": ["x"]}}, "distinct_ids"),
        ({"retention_days": 90, "filters": {"limit": 5}}, "unknown filter"),
        ({"retention_days": 90, "recording_ids": ["a/b"]}, "contains '/'"),
        ({"retention_days": 90, "recording_ids": ["a"], "filters": {"date_from": "-9d"}}, "not both"),
        ({"retention_days": 90, "max_deletions": "-1"}, "max_deletions"),
        ({"retention_days": 90, "dry_run": "perhaps"}, "dry_run must be true or false"),
        ({"retention_days": 90, "max_workers": 0}, "max_workers"),
    ],
)
def test_bad_input_fails_with_zero_http_calls(emulator, posthog_conn, run_operator, kwargs, message):
    populate(emulator, expired=3)
    with pytest.raises(PostHogConfigError, match=message):
        run_operator(retention(**kwargs))
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of retention_days and cutoff"),
        ({"retention_days": 5, "cutoff": "2024-01-01"}, "exactly one of retention_days and cutoff"),
        ({"retention_days": 0}, "retention_days must be an integer >= 1"),
    ],
)
def test_bad_literal_arguments_fail_at_once_without_retries(
    emulator, posthog_conn, run_operator, kwargs, message
):
    # Template fields are kept as given in __init__ (Airflow's rule) and checked before
    # the first request; the failure is final, since a retry would fail the same way.
    operator = retention(**kwargs)
    with pytest.raises(AirflowFailException, match=message):
        run_operator(operator)
    assert emulator.requests == []


def test_bad_connection_fails_with_zero_http_calls(emulator, connect, run_operator):
    connect(emulator.url, project_id=None)
    with pytest.raises(PostHogConfigError, match="extra.project_id"):
        run_operator(retention(retention_days=90))
    assert emulator.requests == []


def test_cutoff_follows_the_data_interval(emulator, posthog_conn, run_operator):
    result = run_operator(retention(retention_days=10), data_interval_end=datetime(2026, 3, 11, tzinfo=UTC))
    assert result["cutoff"] == "2026-03-01T00:00:00Z"
