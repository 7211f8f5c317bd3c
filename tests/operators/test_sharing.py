"""The sharing audit over real HTTP: finds public links, disables them, never leaks tokens."""

from __future__ import annotations

import json

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator, masked_link
from airflow_provider_recordings.testing import Fault


def audit(**kwargs):
    kwargs.setdefault("task_id", "sharing_audit")
    return PostHogSharingAuditOperator(**kwargs)


def shared_setup(emulator, *, total=60, shared=7):
    ids = emulator.seed(total, days=400)
    shared_ids = sorted(ids)[:shared]
    for recording_id in shared_ids:
        emulator.set_shared(recording_id, True)
    return ids, shared_ids


def assert_no_token_anywhere(emulator, shared_ids, *texts):
    for recording_id in shared_ids:
        token = emulator.sharing_token(recording_id)
        for text in texts:
            assert token not in text


def test_finds_every_public_link_across_all_time(emulator, posthog_conn, run_operator, tmp_path, logs):
    _ids, shared_ids = shared_setup(emulator)
    report = tmp_path / "sharing.jsonl"
    result = run_operator(audit(report_path=str(report), max_workers=4))
    assert result["audited"] == 60
    assert result["shared"] == 7
    assert result["shared_recording_ids"] == shared_ids
    assert result["disabled"] == 0
    assert result["still_shared"] == 7
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    shared_lines = [line for line in lines if line["enabled"]]
    assert {line["id"] for line in shared_lines} == set(shared_ids)
    for line in shared_lines:
        assert line["link"].startswith(emulator.url + "/shared/****")
        assert len(line["link"].rsplit("*", 1)[1]) <= 4
        assert line["created_at"]
    assert_no_token_anywhere(emulator, shared_ids, report.read_text(), json.dumps(result), logs.text)


def test_disable_shared_turns_links_off_and_verifies(emulator, posthog_conn, run_operator, logs):
    _, shared_ids = shared_setup(emulator)
    result = run_operator(audit(disable_shared=True))
    assert result["disabled"] == 7
    assert result["still_shared"] == 0
    assert not any(emulator.is_shared(i) for i in shared_ids)
    patches = [r for r in emulator.requests if r.method == "PATCH"]
    assert len(patches) == 7
    assert result["api_calls"] == 1 + 60 + 7 * 2
    again = run_operator(audit())
    assert again["shared"] == 0
    assert_no_token_anywhere(emulator, shared_ids, logs.text, json.dumps(result))


def test_fail_on_shared_is_a_gate(emulator, posthog_conn, run_operator):
    _, shared_ids = shared_setup(emulator, total=10, shared=2)
    with pytest.raises(AirflowException, match="2 recording\\(s\\) remain publicly shared"):
        run_operator(audit(fail_on_shared=True))
    assert run_operator.ti.pushed["return_value"]["shared_recording_ids"] == shared_ids
    # Disabling first makes the same gate pass.
    assert run_operator(audit(fail_on_shared=True, disable_shared=True))["still_shared"] == 0


def test_explicit_ids_and_faults(emulator, posthog_conn, run_operator):
    ids, _shared_ids = shared_setup(emulator, total=12, shared=3)
    emulator.inject(Fault.status(502), times=2, method="GET")
    emulator.inject(Fault.throttle(retry_after=2), times=1, method="GET", after=4)
    result = run_operator(audit(recording_ids=[*ids, "unknown-id"], max_workers=3))
    assert result["shared"] == 3
    assert result["missing"] == 1
    assert result["audited"] == 12


def test_masked_link_never_shows_more_than_four_characters():
    assert (
        masked_link("https://us.posthog.com", "abcdefghijklmnopqrstuv")
        == "https://us.posthog.com/shared/****stuv"
    )
    assert masked_link("https://us.posthog.com", "short") == "https://us.posthog.com/shared/****"
    assert masked_link("https://us.posthog.com", None) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"disable_shared": "maybe"}, "disable_shared"),
        ({"fail_on_shared": "2"}, "fail_on_shared"),
        ({"filters": {"distinct_id": "x"}}, "distinct_ids"),
        ({"recording_ids": [""]}, "non-empty"),
    ],
)
def test_bad_input_fails_with_zero_http_calls(emulator, posthog_conn, run_operator, kwargs, message):
    with pytest.raises(PostHogConfigError, match=message):
        run_operator(audit(**kwargs))
    assert emulator.requests == []
