"""The sharing audit over real HTTP: finds public links, disables them, never leaks tokens."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator, masked_link
from airflow_provider_recordings.testing import Fault
from tests.conftest import API_KEY


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


def test_the_scan_finds_every_public_link_across_all_time(
    emulator, posthog_conn, run_operator, tmp_path, logs
):
    # A server without PostHog's shared playlist: every recording's sharing is read.
    emulator.synthetic_playlists = "absent"
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
    emulator.synthetic_playlists = "absent"
    _, shared_ids = shared_setup(emulator)
    result = run_operator(audit(disable_shared=True))
    assert result["disabled"] == 7
    assert result["still_shared"] == 0
    assert not any(emulator.is_shared(i) for i in shared_ids)
    patches = [r for r in emulator.requests if r.method == "PATCH"]
    assert len(patches) == 7
    # The 404 for the missing playlist, one list page, one read each, a PATCH and a re-read per link.
    assert result["api_calls"] == 1 + 1 + 60 + 7 * 2
    assert result["route"] == "scan"
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


# -- PostHog's shared playlist -------------------------------------------------------------


def recent_with_links(emulator, *, total=200, shared=7):
    """Recordings of the last 300 days, a few of them with a public link."""
    ids = emulator.seed(total, days=300, ongoing=0, shared=0)
    shared_ids = sorted(ids)[:shared]
    for recording_id in shared_ids:
        emulator.set_shared(recording_id, True)
    return ids, shared_ids


def sharing_reads(emulator):
    return [
        r.path.split("/")[-3] for r in emulator.requests if r.method == "GET" and r.path.endswith("/sharing/")
    ]


def test_the_audit_reads_only_what_posthog_says_is_shared(emulator, posthog_conn, run_operator, tmp_path):
    _ids, shared_ids = recent_with_links(emulator)
    report = tmp_path / "sharing.jsonl"
    result = run_operator(audit(report_path=str(report)))
    assert result["route"] == "shared_playlist"
    assert result["shared_recording_ids"] == shared_ids
    assert sorted(sharing_reads(emulator)) == shared_ids, "only the shared recordings are read"
    assert not [r for r in emulator.requests if r.kind == "list"], "no list call: no list budget spent"
    # The playlist's size, one page of it, one read per link.
    assert result["api_calls"] == 1 + 1 + len(shared_ids)
    assert result["playlist_count"] == len(shared_ids) and result["playlist_unreturned"] == 0


def test_disabling_through_the_shared_list(emulator, posthog_conn, run_operator):
    _ids, shared_ids = recent_with_links(emulator)
    result = run_operator(audit(disable_shared=True))
    assert result["disabled"] == len(shared_ids) and result["still_shared"] == 0
    assert not any(emulator.is_shared(i) for i in shared_ids)
    assert result["api_calls"] == 1 + 1 + 3 * len(shared_ids)


def test_a_shared_recording_persisted_years_ago_is_found_without_a_scan(emulator, posthog_conn, run_operator):
    _ids, shared_ids = recent_with_links(emulator)
    now = datetime.now(UTC)
    old = emulator.add_recording(start_time=now - timedelta(days=3 * 365), shared=True, lts=True)["id"]
    result = run_operator(audit())
    assert result["shared_recording_ids"] == sorted([*shared_ids, old])
    assert result["route"] == "shared_playlist"
    assert not [r for r in emulator.requests if r.kind == "list"]


@pytest.mark.parametrize("older", ["auto", "scan"])
def test_an_old_shared_recording_the_list_does_not_return_is_found_by_reading_the_old_ones(
    emulator, posthog_conn, run_operator, older
):
    _ids, shared_ids = recent_with_links(emulator)
    now = datetime.now(UTC)
    old = [emulator.add_recording(start_time=now - timedelta(days=500 + i))["id"] for i in range(12)]
    emulator.set_shared(old[3], True)  # never persisted: PostHog's list drops it (older than a year)
    result = run_operator(audit(older_recordings=older))
    assert result["shared_recording_ids"] == sorted([*shared_ids, old[3]])
    assert result["route"] == "shared_playlist+older_scan"
    assert result["playlist_unreturned"] == 1
    assert sorted(sharing_reads(emulator)) == sorted([*shared_ids, *old]), "only the old part is scanned"


def test_skipping_the_old_part_says_what_it_left_unchecked(emulator, posthog_conn, run_operator, logs):
    _ids, shared_ids = recent_with_links(emulator)
    old = emulator.add_recording(start_time=datetime.now(UTC) - timedelta(days=600))["id"]
    emulator.set_shared(old, True)
    result = run_operator(audit(older_recordings="skip"))
    assert result["shared_recording_ids"] == shared_ids
    assert result["playlist_unreturned"] == 1
    assert "did not return" in logs.text


def test_the_selection_applies_exactly_to_the_shared_list(emulator, posthog_conn, run_operator):
    now = datetime.now(UTC)
    mine = [
        emulator.add_recording(start_time=now - timedelta(days=d), distinct_id="user-1", shared=True)["id"]
        for d in (5, 40)
    ]
    emulator.add_recording(start_time=now - timedelta(days=5), distinct_id="user-2", shared=True)
    emulator.add_recording(start_time=now - timedelta(days=200), distinct_id="user-1", shared=True)
    since = (now - timedelta(days=100)).date().isoformat()
    result = run_operator(
        audit(filters={"distinct_ids": ["user-1"], "date_from": since}, disable_shared=True)
    )
    assert result["route"] == "shared_playlist"
    assert result["shared_recording_ids"] == sorted(mine)
    assert sorted(sharing_reads(emulator)) == sorted([*mine, *mine]), "read, then read back after disabling"
    assert len([i for i in emulator.recording_ids() if emulator.is_shared(i)]) == 2, (
        "the others are untouched"
    )


def test_filters_posthog_must_decide_use_the_scan(emulator, posthog_conn, run_operator, logs):
    _ids, shared_ids = recent_with_links(emulator, total=30, shared=2)
    result = run_operator(audit(filters={"date_from": "-400d"}))
    assert result["route"] == "scan"
    assert result["shared_recording_ids"] == shared_ids
    assert "need PostHog to decide them" in logs.text


@pytest.mark.parametrize("refusal", ["scope", "absent"])
def test_without_the_shared_list_the_audit_scans_and_says_so_once(
    make_emulator, connect, run_operator, logs, refusal
):
    if refusal == "scope":
        emulator = make_emulator(api_key="phx_admin_key_not_real")
        emulator.add_key(
            API_KEY,
            scopes=["session_recording:read", "sharing_configuration:read", "sharing_configuration:write"],
        )
    else:
        emulator = make_emulator(synthetic_playlists="absent")
    connect(emulator.url)
    _ids, shared_ids = recent_with_links(emulator, total=40, shared=3)
    result = run_operator(audit())
    assert result["route"] == "scan"
    assert result["shared_recording_ids"] == shared_ids
    assert len(sharing_reads(emulator)) == 40
    assert logs.count("cannot be used") == 1


def test_password_protected_links_are_reported_as_such(emulator, posthog_conn, run_operator, tmp_path):
    emulator.advanced_permissions = True
    _ids, shared_ids = recent_with_links(emulator, total=20, shared=3)
    emulator.require_password(shared_ids[0])
    emulator.add_share_password(shared_ids[0], "correct horse battery staple")
    emulator.add_share_password(shared_ids[0], "another one")
    report = tmp_path / "sharing.jsonl"
    result = run_operator(audit(report_path=str(report)))
    assert result["password_protected"] == 1
    lines = {json.loads(line)["id"]: json.loads(line) for line in report.read_text().splitlines()}
    assert lines[shared_ids[0]]["password_required"] is True and lines[shared_ids[0]]["passwords"] == 2
    assert lines[shared_ids[1]]["password_required"] is False
    assert "correct horse" not in report.read_text()
