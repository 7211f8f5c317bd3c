"""Bad parameters and bad connections fail clearly, naming what is wrong, before any request.

Template fields are set after construction, as a rendered template leaves them; values
that are literals in the DAG file fail when the DAG is parsed. Either way the emulator
must not have seen a single request.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.operators.update import PostHogBulkUpdateRecordingsOperator
from airflow_provider_recordings.sensors.ongoing import PostHogOngoingRecordingsSensor
from tests.conftest import API_KEY, CONN_ID
from tests.reliability.helpers import TARGETS, XComRecorder, make_target

FUTURE = "2999-01-01T00:00:00Z"
OPERATORS = ("retention", "update", "sharing")

#: (attribute, rendered value, what the message must name), for every operator.
COMMON = [
    ("recording_ids", "a, b", "recording_ids"),
    ("recording_ids", {"id": "a"}, "recording_ids"),
    ("recording_ids", ["fine", "a/b"], "'a/b'"),
    ("recording_ids", ["fine", ""], "recording id must be a non-empty string"),
    ("recording_ids", ["with space"], "'with space'"),
    ("filters", {"distinct_id": ["x"]}, "distinct_ids"),
    ("filters", {"limit": 5}, "'limit'"),
    ("filters", "not json", "filters must be a dict"),
    ("filters", '["a list"]', "filters must be a dict"),
    ("max_workers", 0, "max_workers"),
    ("max_workers", "many", "max_workers"),
    ("max_api_calls", 0, "max_api_calls"),
    ("max_api_calls", "-3", "max_api_calls"),
    ("max_runtime", -5, "max_runtime"),
    ("max_runtime", "soon", "max_runtime"),
    ("fail_on_remaining", "perhaps", "fail_on_remaining"),
    ("page_size", 0, "page_size"),
]
SPECIFIC = {
    "retention": [
        ("retention_days", "0", "retention_days"),
        ("retention_days", "-3", "retention_days"),
        ("retention_days", "ninety", "retention_days"),
        ("cutoff", "last tuesday", "cutoff"),
        ("cutoff", FUTURE, "in the future"),
        ("dry_run", "perhaps", "dry_run"),
        ("max_deletions", "-1", "max_deletions"),
        ("max_deletions", "lots", "max_deletions"),
    ],
    "update": [
        ("update", "not json", "update must be a dict"),
        ("update", '["viewed"]', "update must be a non-empty dict"),
        ("update", {}, "update must be a non-empty dict"),
        ("update", {"seen": True}, "unknown update field(s) ['seen']"),
        ("update", {"viewed": False}, "'viewed' or 'analyzed' to true"),
        ("update", {"viewed": "yes"}, "update field 'viewed' must be bool"),
    ],
    "sharing": [
        ("disable_shared", "maybe", "disable_shared"),
        ("fail_on_shared", "2", "fail_on_shared"),
    ],
    "sensor": [
        ("recording_ids", [], "recording_ids is empty"),
        ("recording_ids", "a, b", "recording_ids"),
        ("recording_ids", ["a/b"], "'a/b'"),
        ("filters", {"distinct_id": "x"}, "distinct_ids"),
        ("filters", {"offset": 5}, "'offset'"),
    ],
}

PARAMETER_CASES = [
    pytest.param(target, attr, value, message, id=f"{target}-{attr}={value!r}")
    for target in TARGETS
    for attr, value, message in (COMMON if target in OPERATORS else []) + SPECIFIC[target]
]


def execute(task):
    """Run the task with its own hook (nothing may be sent, so nothing is slept)."""
    if isinstance(task, PostHogOngoingRecordingsSensor):
        return task.poke({})
    return task.execute({"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)})


@pytest.mark.parametrize(("target", "attr", "value", "message"), PARAMETER_CASES)
def test_bad_parameter(emulator, posthog_conn, target, attr, value, message):
    emulator.seed(5, days=200)
    task = make_target(target, filters=None, recording_ids=None)
    setattr(task, attr, value)
    if attr == "cutoff":
        task.retention_days = None
    with pytest.raises((PostHogConfigError, ValueError)) as info:
        execute(task)
    assert message in str(info.value)
    assert emulator.requests == []
    if target in OPERATORS:
        # Bad input is final: Airflow does not retry it (a retry would fail the same way).
        assert isinstance(info.value, AirflowFailException)


@pytest.mark.parametrize("target", TARGETS)
def test_ids_and_filters_together(emulator, posthog_conn, target):
    task = make_target(target)
    task.recording_ids = ["a"]
    with pytest.raises(PostHogConfigError, match="either recording_ids or filters, not both"):
        execute(task)
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PostHogRecordingRetentionOperator(task_id="r"), "exactly one of retention_days and cutoff"),
        (lambda: PostHogRecordingRetentionOperator(task_id="r", retention_days=0), "retention_days"),
        (
            lambda: PostHogRecordingRetentionOperator(task_id="r", retention_days=9, cutoff="2024-01-01"),
            "exactly one",
        ),
        (lambda: PostHogBulkUpdateRecordingsOperator(task_id="u", update={"viewed": "yes"}), "'viewed'"),
        (lambda: PostHogBulkUpdateRecordingsOperator(task_id="u", update={"seen": 1}), "'seen'"),
    ],
    ids=["retention-neither", "retention-days-0", "retention-both", "update-type", "update-field"],
)
def test_bad_literal_template_field_fails_before_any_request_without_retries(
    emulator, posthog_conn, build, message
):
    # Template fields are assigned as given in __init__ (Airflow's rule: a template may
    # render them later) and checked in execute, before the first request.
    task = build()
    with pytest.raises(AirflowFailException, match=message):
        execute(task)
    assert emulator.requests == []


def test_bad_literal_that_is_no_template_field_fails_when_the_dag_is_parsed(emulator):
    with pytest.raises(ValueError, match="missing"):
        PostHogOngoingRecordingsSensor(task_id="s", recording_ids=["a"], missing="skip")
    assert emulator.requests == []


# -- The connection -------------------------------------------------------------------------

#: (what to change, the field the message must name). ``url`` replaces the host.
CONNECTION_CASES = [
    ({"project_id": None}, "extra.project_id"),
    ({"project_id": "my-project"}, "extra.project_id"),
    ({"api_key": ""}, "password"),
    ({"api_key": "phx_abc def"}, "password"),
    ({"url": "http://bad host:1"}, "host"),
    ({"url": "ftp://127.0.0.1:21"}, "host"),
    ({"url": "http://127.0.0.1:99999"}, "host"),
    ({"url": "http://user:pw@127.0.0.1:1"}, "host"),
    ({"rate_limit_per_minute": -5}, "extra.rate_limit_per_minute"),
    ({"rate_limit_per_hour": -1}, "extra.rate_limit_per_hour"),
    ({"rate_limit_time_scale": -2}, "extra.rate_limit_time_scale"),
    ({"list_rate_limit_per_hour": 0}, "extra.list_rate_limit_per_hour"),
    ({"list_rate_plan": "gold"}, "extra.list_rate_plan"),
    ({"max_retry_wait": "-1"}, "extra.max_retry_wait"),
    ({"read_timeout": 0}, "extra.read_timeout"),
    ({"max_attempts": "often"}, "extra.max_attempts"),
]


@pytest.mark.parametrize(
    ("change", "field"),
    CONNECTION_CASES,
    ids=[f"{next(iter(c))}={next(iter(c.values()))!r}" for c, _ in CONNECTION_CASES],
)
@pytest.mark.parametrize("target", TARGETS)
def test_bad_connection_field(emulator, connect, target, change, field):
    emulator.seed(5, days=200)
    change = dict(change)
    connect(change.pop("url", emulator.url), **change)
    with pytest.raises(PostHogConfigError) as info:
        execute(make_target(target))
    assert f"PostHog connection {CONN_ID!r}" in str(info.value)
    assert field in str(info.value)
    assert emulator.requests == []


def _raw_connection(monkeypatch, **fields) -> None:
    conn = {"conn_type": "posthog", "password": API_KEY, **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


@pytest.mark.parametrize("target", TARGETS)
def test_extra_that_is_not_json_is_named(emulator, monkeypatch, target):
    _raw_connection(monkeypatch, host=emulator.url, extra='{"project_id": "1",}')
    with pytest.raises(PostHogConfigError, match="extra.*not valid JSON"):
        execute(make_target(target))
    assert emulator.requests == []


@pytest.mark.parametrize("port", [-1, 70000])
@pytest.mark.parametrize("target", TARGETS)
def test_bad_port_field_is_named(emulator, monkeypatch, target, port):
    _raw_connection(monkeypatch, host="127.0.0.1", schema="http", port=port, extra={"project_id": "1"})
    with pytest.raises(PostHogConfigError) as info:
        execute(make_target(target))
    assert f"PostHog connection {CONN_ID!r}: port" in str(info.value)
    assert emulator.requests == []
