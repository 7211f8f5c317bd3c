"""The bulk update operator over real HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogItemsFailedError
from airflow_provider_recordings.operators.update import PostHogBulkUpdateRecordingsOperator
from airflow_provider_recordings.testing import Fault


def bulk_update(**kwargs):
    kwargs.setdefault("task_id", "mark_viewed")
    kwargs.setdefault("update", {"viewed": True})
    return PostHogBulkUpdateRecordingsOperator(**kwargs)


def test_explicit_ids_with_a_missing_one(emulator, posthog_conn, run_operator, tmp_path):
    ids = emulator.seed(25, days=3)
    report = tmp_path / "update.jsonl"
    result = run_operator(
        bulk_update(recording_ids=[*ids, "gone-already"], max_workers=4, report_path=str(report))
    )
    assert result == {
        "matched": 26,
        "updated": 25,
        "missing": 1,
        "failed": 0,
        "failed_ids": [],
        "api_calls": 26,
        "remaining": 0,
        "deferrals": 0,
        "report_path": str(report),
    }
    assert all(emulator.get(i)["viewed"] for i in ids)
    outcomes = {
        json.loads(line)["id"]: json.loads(line)["result"] for line in report.read_text().splitlines()
    }
    assert outcomes["gone-already"] == "missing"
    assert list(outcomes.values()).count("updated") == 25


def test_query_selection_never_inherits_the_three_day_window(emulator, posthog_conn, run_operator):
    now = datetime.now(UTC)
    old = emulator.add_recording(start_time=now - timedelta(days=40), distinct_id="qa-bot")["id"]
    new = emulator.add_recording(start_time=now - timedelta(days=1), distinct_id="qa-bot")["id"]
    other = emulator.add_recording(start_time=now - timedelta(days=1), distinct_id="customer")["id"]
    result = run_operator(bulk_update(filters={"distinct_ids": ["qa-bot"]}))
    assert result["updated"] == 2
    assert emulator.get(old)["viewed"] and emulator.get(new)["viewed"]
    assert not emulator.get(other)["viewed"]


def test_xcom_list_from_an_upstream_task_as_json_text(emulator, posthog_conn, run_operator):
    ids = emulator.seed(3, days=3)
    result = run_operator(bulk_update(recording_ids=json.dumps(ids), update='{"analyzed": true}'))
    assert result["updated"] == 3


def test_faults_are_retried_and_failures_reported_at_the_end(emulator, posthog_conn, run_operator):
    ids = emulator.seed(10, days=3)
    emulator.inject(Fault.status(503), times=2, method="PATCH")
    emulator.inject(Fault.status(500), times=6, method="PATCH", after=5)
    with pytest.raises(PostHogItemsFailedError, match="1 of 10 updates failed"):
        run_operator(bulk_update(recording_ids=ids, max_workers=1))
    pushed = run_operator.ti.pushed["return_value"]
    assert pushed["updated"] == 9
    assert pushed["failed"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"update": {"seen": True}}, "unknown update field"),
        ({"update": {"viewed": False}}, "'viewed' or 'analyzed' to true"),
        ({"update": "not json"}, "JSON object"),
        ({"filters": {"order": "start_time", "page": 2}}, "unknown filter"),
        ({"recording_ids": "a, b"}, "JSON list"),
    ],
)
def test_bad_input_fails_with_zero_http_calls(emulator, posthog_conn, run_operator, kwargs, message):
    operator = bulk_update(update="{{ params.update }}")
    # As a rendered template would leave them:
    operator.update = kwargs.pop("update", {"viewed": True})
    for name, value in kwargs.items():
        setattr(operator, name, value)
    with pytest.raises(PostHogConfigError, match=message):
        run_operator(operator)
    assert emulator.requests == []


def test_a_literal_bad_update_fails_before_any_request_without_retries(emulator, posthog_conn, run_operator):
    # The update is a template field: kept as given in __init__, checked in execute.
    operator = bulk_update(update={"viewed": "yes"})
    with pytest.raises(AirflowFailException, match="update field 'viewed' must be bool"):
        run_operator(operator)
    assert emulator.requests == []
