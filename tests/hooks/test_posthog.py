"""PostHogHook over real HTTP against the emulator: pagination, faults, deletes, sharing."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_recordings.core.errors import (
    PostHogAuthError,
    PostHogConfigError,
    PostHogCrossOriginError,
    PostHogNotFoundError,
    PostHogPermissionError,
    PostHogRateLimitError,
)
from airflow_provider_recordings.core.protocol import ApiRequest
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.testing import Fault, RateLimitConfig
from tests.conftest import API_KEY

LIST_PATH = "/api/projects/1/session_recordings/"


def make_hook(sleeps, policy, **kwargs):
    return PostHogHook(sleep=sleeps, clock=sleeps.clock, retry_policy=policy, **kwargs)


@pytest.fixture
def hook(posthog_conn, sleeps, seeded_policy):
    return make_hook(sleeps, seeded_policy, page_size=1000)


def list_requests(emulator):
    return [r for r in emulator.requests if r.method == "GET" and r.path.rstrip("/") == LIST_PATH.rstrip("/")]


# -- Pagination -------------------------------------------------------------------------


def test_cursor_pagination_streams_every_recording_once(emulator, hook):
    ids = emulator.seed(2500, days=20)
    seen = [r["id"] for r in hook.iter_recordings(date_from="-30d")]
    assert sorted(seen) == sorted(ids)
    calls = list_requests(emulator)
    assert len(calls) == 3
    assert "after" not in calls[0].query
    assert all("after" in call.query and "offset" not in call.query for call in calls[1:])
    assert calls[0].query["limit"] == "1000"


def test_default_window_is_the_servers_three_days(emulator, hook):
    now = datetime.now(UTC)
    recent = emulator.add_recording(start_time=now - timedelta(days=1))["id"]
    emulator.add_recording(start_time=now - timedelta(days=10))
    assert [r["id"] for r in hook.iter_recordings()] == [recent]


def test_published_shape_follows_next_links(make_emulator, connect, sleeps, seeded_policy):
    emulator = make_emulator(response_shape="published")
    connect(emulator.url)
    ids = emulator.seed(250, days=2)
    hook = make_hook(sleeps, seeded_policy, page_size=100)
    assert sorted(r["id"] for r in hook.iter_recordings(date_from="-30d")) == sorted(ids)
    assert len(list_requests(emulator)) == 3


def test_offset_mode_when_caller_passes_offset(emulator, posthog_conn, sleeps, seeded_policy):
    ids = emulator.seed(250, days=2)
    hook = make_hook(sleeps, seeded_policy, page_size=100)
    seen = [r["id"] for r in hook.iter_recordings(date_from="-30d", offset=0)]
    assert sorted(seen) == sorted(ids)
    assert [c.query.get("offset") for c in list_requests(emulator)] == ["0", "100", "200"]


def test_silently_clamped_pages_do_not_end_the_list(make_emulator, connect, sleeps, seeded_policy):
    emulator = make_emulator(max_page_size=70)
    connect(emulator.url)
    ids = emulator.seed(300, days=2)
    hook = make_hook(sleeps, seeded_policy, page_size=1000)
    assert sorted(r["id"] for r in hook.iter_recordings(date_from="-30d")) == sorted(ids)
    assert len(list_requests(emulator)) == 5


def test_rows_deleted_and_inserted_between_pages(emulator, hook):
    ids = emulator.seed(3000, days=20)
    pages = {"n": 0}
    doomed = set(sorted(ids)[::7])
    inserted = []

    def churn(emu, request):
        if request.path.rstrip("/") == LIST_PATH.rstrip("/"):
            pages["n"] += 1
            if pages["n"] == 2:
                for recording_id in doomed:
                    emu.delete(recording_id)
                inserted.append(emu.add_recording(start_time=datetime.now(UTC) - timedelta(hours=1))["id"])

    emulator.on_request(churn)
    seen = [r["id"] for r in hook.iter_recordings(date_from="-30d")]
    assert len(seen) == len(set(seen)), "a recording was yielded twice"
    # Every recording that existed throughout was seen; nothing outside the project appears.
    assert set(ids) - doomed <= set(seen)
    assert set(seen) <= set(ids) | set(inserted)


def test_offset_pages_shifted_by_inserts_yield_no_duplicates(emulator, posthog_conn, sleeps, seeded_policy):
    ids = emulator.seed(300, days=20)
    hook = make_hook(sleeps, seeded_policy, page_size=100)
    calls = {"n": 0}

    def insert_newest(emu, request):
        if request.path.rstrip("/") == LIST_PATH.rstrip("/"):
            calls["n"] += 1
            if calls["n"] == 2:
                for _ in range(5):
                    emu.add_recording(start_time=datetime.now(UTC) - timedelta(minutes=30))

    emulator.on_request(insert_newest)
    seen = [r["id"] for r in hook.iter_recordings(date_from="-30d", offset=0)]
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)


def test_cross_origin_next_link_is_never_followed(make_emulator, connect, sleeps, seeded_policy):
    emulator = make_emulator(response_shape="published")
    other = make_emulator(response_shape="published")
    emulator.next_url_base = other.url
    other.seed(10, days=1)
    connect(emulator.url)
    emulator.seed(20, days=1)
    hook = make_hook(sleeps, seeded_policy, page_size=10)
    with pytest.raises(PostHogCrossOriginError) as info:
        list(hook.iter_recordings(date_from="-30d"))
    assert other.url.split("//")[1].split(":")[0] in str(info.value)
    assert other.requests == []
    assert API_KEY not in str(info.value)


def test_list_filters_go_as_json_arrays(emulator, hook):
    ids = emulator.seed(10, days=60)
    chosen = ids[:3]
    seen = {r["id"] for r in hook.iter_recordings(session_ids=chosen)}
    assert seen == set(chosen)
    assert json.loads(list_requests(emulator)[0].query["session_ids"]) == chosen


def test_unknown_filter_fails_before_any_request(emulator, hook):
    with pytest.raises(PostHogConfigError, match="distinct_ids"):
        list(hook.iter_recordings(distinct_id="user-1"))
    assert emulator.requests == []


def test_ten_thousand_recordings_as_a_new_user_would(emulator, hook):
    emulator.seed(10_000, days=300)
    count = sum(1 for _ in hook.iter_recordings(date_from="-400d"))
    assert count == 10_000
    assert hook.stats.requests == 10


# -- Faults and retries -------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.status(503), Fault.status(500), Fault.reset(), Fault.malformed(), Fault.truncated()],
    ids=["503", "500", "reset", "malformed", "truncated"],
)
def test_transient_faults_are_retried(emulator, hook, sleeps, fault):
    ids = emulator.seed(5, days=1)
    emulator.inject(fault, times=2)
    assert sorted(r["id"] for r in hook.iter_recordings(date_from="-2d")) == sorted(ids)
    assert len(sleeps.calls) == 2
    snapshot = hook.stats.snapshot()
    assert snapshot["requests"] == 3
    assert snapshot["retries"] == 2


def test_read_timeout_is_retried(make_emulator, connect, sleeps, seeded_policy):
    emulator = make_emulator()
    connect(emulator.url, read_timeout=0.3)
    emulator.seed(3, days=1)
    emulator.inject(Fault.latency(1.0), times=1)
    hook = make_hook(sleeps, seeded_policy)
    assert len(list(hook.iter_recordings(date_from="-2d"))) == 3
    assert hook.stats.snapshot()["retries"] == 1


def test_retry_after_is_honoured(emulator, hook, sleeps):
    emulator.seed(3, days=1)
    emulator.inject(Fault.throttle(retry_after=17), times=1)
    assert len(list(hook.iter_recordings(date_from="-2d"))) == 3
    assert 17 in sleeps.calls
    assert hook.stats.snapshot()["throttled"] == 1


def test_throttle_without_retry_after_backs_off(emulator, hook, sleeps):
    emulator.seed(3, days=1)
    emulator.inject(Fault.throttle(retry_after=None), times=3)
    assert len(list(hook.iter_recordings(date_from="-2d"))) == 3
    assert len(sleeps.calls) == 3
    assert all(0 < wait <= 60 for wait in sleeps.calls)


def test_retry_after_over_the_cap_is_not_slept(emulator, hook, sleeps):
    emulator.inject(Fault.throttle(retry_after=2202), times=1)
    with pytest.raises(PostHogRateLimitError) as info:
        hook.get_recording("anything")
    assert info.value.retry_after == 2202
    assert "2202" in str(info.value)
    assert "max_retry_wait=300" in str(info.value)
    assert sleeps.calls == []
    assert len(emulator.requests) == 1


def test_cap_is_configurable_per_connection(make_emulator, connect, sleeps, seeded_policy):
    emulator = make_emulator()
    connect(emulator.url, max_retry_wait=10)
    emulator.inject(Fault.throttle(retry_after=30), times=1)
    with pytest.raises(PostHogRateLimitError, match="max_retry_wait=10"):
        make_hook(sleeps, seeded_policy).get_recording("x")


def test_retries_give_up_after_max_attempts(emulator, hook, sleeps):
    emulator.inject(Fault.status(502), times=50)
    with pytest.raises(Exception, match="502"):
        hook.get_recording("x")
    assert len(emulator.requests) == 6


def test_unauthorised_fails_fast_with_posthogs_detail(emulator, connect, sleeps, seeded_policy):
    connect(emulator.url, api_key="phx_wrong_key")
    hook = make_hook(sleeps, seeded_policy)
    with pytest.raises(
        PostHogAuthError, match="Personal API key found in request Authorization header is invalid"
    ):
        list(hook.iter_recordings())
    assert len(emulator.requests) == 1
    assert sleeps.calls == []


def test_missing_scope_fails_fast(emulator, connect, sleeps, seeded_policy):
    emulator.add_key("phx_read_only_key", scopes=("session_recording:read",), projects=("1",))
    connect(emulator.url, api_key="phx_read_only_key")
    hook = make_hook(sleeps, seeded_policy)
    with pytest.raises(PostHogPermissionError, match="session_recording:write"):
        hook.delete_recording(emulator.seed(1)[0])
    assert len(emulator.requests) == 1


def test_key_never_reaches_logs_or_messages_even_when_everything_fails(emulator, hook, logs):
    emulator.inject(Fault.status(503), times=3)
    emulator.inject(Fault.throttle(retry_after=1), times=1)
    emulator.seed(2, days=1)
    list(hook.iter_recordings(date_from="-2d"))
    text = logs.text
    assert "retrying" in text
    assert "503" in text
    assert API_KEY not in text


# -- Connection validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("conn", "field"),
    [
        ({"project_id": None}, "extra.project_id"),
        ({"api_key": ""}, "password"),
        ({"url_override": "http://bad host:1"}, "host"),
    ],
)
def test_bad_connection_fails_before_any_request(emulator, connect, sleeps, seeded_policy, conn, field):
    url = conn.pop("url_override", emulator.url)
    connect(url, conn_id="broken_conn", **conn)
    hook = make_hook(sleeps, seeded_policy, posthog_conn_id="broken_conn")
    with pytest.raises(PostHogConfigError) as info:
        list(hook.iter_recordings())
    assert "'broken_conn'" in str(info.value)
    assert field in str(info.value)
    assert emulator.requests == []


def test_test_connection(emulator, hook, connect, sleeps, seeded_policy):
    ok, message = hook.test_connection()
    assert ok
    assert "project 1" in message
    connect(emulator.url, api_key="phx_revoked_key", conn_id="revoked")
    ok, message = make_hook(sleeps, seeded_policy, posthog_conn_id="revoked").test_connection()
    assert not ok
    assert "401" in message
    assert "invalid" in message


# -- Single recordings ----------------------------------------------------------------------


def test_get_update_and_delete_one(emulator, hook):
    recording_id = emulator.seed(1)[0]
    assert hook.get_recording(recording_id)["id"] == recording_id
    assert hook.update_recording(recording_id, viewed=True) == {"success": True}
    assert emulator.get(recording_id)["viewed"] is True
    hook.delete_recording(recording_id)
    hook.delete_recording(recording_id)  # idempotent
    assert recording_id not in emulator.recording_ids()
    with pytest.raises(PostHogNotFoundError, match="Recording not found"):
        hook.get_recording(recording_id)


def test_published_update_answers_with_the_recording(make_emulator, connect, sleeps, seeded_policy):
    emulator = make_emulator(response_shape="published")
    connect(emulator.url)
    recording_id = emulator.seed(1)[0]
    answer = make_hook(sleeps, seeded_policy).update_recording(recording_id, person={"name": "x"})
    assert answer["id"] == recording_id


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"viewd": True}, "unknown update field"),
        ({"viewed": "yes"}, "must be bool"),
        ({"player_metadata": {"a": 1}}, "'viewed' or 'analyzed' to true"),
        ({}, "non-empty"),
    ],
)
def test_update_fields_are_checked_before_any_request(emulator, hook, fields, message):
    with pytest.raises(PostHogConfigError, match=message):
        hook.update_recording("some-id", **fields)
    assert emulator.requests == []


# -- Bulk delete -----------------------------------------------------------------------------


def test_bulk_delete_in_chunks_of_100(emulator, hook):
    ids = emulator.seed(250, days=5)
    summary = hook.delete_recordings([*ids, "never-existed"])
    posts = [r for r in emulator.requests if r.method == "POST"]
    assert len(posts) == 3
    assert all(len(p.body["session_recording_ids"]) <= 100 for p in posts)
    assert summary.deleted == 250
    assert summary.already_gone == 1
    assert summary.failed == {}
    assert emulator.recording_ids() == set()


@pytest.mark.parametrize("mode", ["forbidden", "absent", "not_allowed"])
def test_bulk_delete_falls_back_to_single_deletes_and_remembers(
    make_emulator, connect, sleeps, seeded_policy, mode
):
    emulator = make_emulator(bulk_delete=mode)
    connect(emulator.url)
    ids = emulator.seed(30, days=5)
    hook = make_hook(sleeps, seeded_policy)
    results = []

    def on_part(part, chunk):
        results.extend(part.outcome(i)[0] for i in chunk)

    summary = hook.delete_recordings(ids[:20], max_workers=4, on_part=on_part)
    assert summary.deleted == 20
    assert results == ["deleted"] * 20
    hook.delete_recordings(ids[20:])
    posts = [r for r in emulator.requests if r.method == "POST"]
    deletes = [r for r in emulator.requests if r.method == "DELETE"]
    assert len(posts) == 1, "bulk was tried again after the server refused it"
    assert len(deletes) == 30
    assert emulator.recording_ids() == set()


def test_recording_api_failure_fails_one_id_not_the_batch(make_emulator, connect, sleeps, seeded_policy):
    emulator = make_emulator(bulk_delete="forbidden", delete_unknown="500")
    connect(emulator.url)
    ids = emulator.seed(5, days=5)
    summary = make_hook(sleeps, seeded_policy).delete_recordings([*ids, "ghost"], max_workers=3)
    assert summary.deleted == 5
    assert list(summary.failed) == ["ghost"]
    assert "recording_api_failure" in summary.failed["ghost"] or "500" in summary.failed["ghost"]
    assert sleeps.calls == [], "a deterministic 500 was retried"


def test_bad_ids_fail_before_any_request(emulator, hook):
    with pytest.raises(PostHogConfigError):
        hook.delete_recordings(["ok-id", "bad/id"])
    with pytest.raises(PostHogConfigError):
        hook.delete_recordings("a-single-string")
    assert emulator.requests == []


# -- Sharing --------------------------------------------------------------------------------


def test_sharing_get_and_disable(emulator, hook):
    recording_id = emulator.seed(1)[0]
    emulator.set_shared(recording_id, True)
    sharing = hook.get_sharing(recording_id)
    assert sharing["enabled"] is True
    assert sharing["access_token"] == emulator.sharing_token(recording_id)
    assert hook.set_sharing(recording_id, False)["enabled"] is False
    assert hook.get_sharing(recording_id)["enabled"] is False


# -- Rate limiting across threads ----------------------------------------------------------


def test_threads_share_one_budget_and_stay_under_it(make_emulator, connect, seeded_policy):
    # A minute lasts 1.2 s: the budget binds on any machine that sends 25 calls a second.
    limits = RateLimitConfig(per_minute=30, per_hour=1200, time_scale=50)
    emulator = make_emulator(rate_limits=limits, bulk_delete="forbidden")
    connect(emulator.url, rate_limit_per_minute=30, rate_limit_per_hour=1200, rate_limit_time_scale=50)
    ids = emulator.seed(90, days=5)
    hook = PostHogHook(retry_policy=seeded_policy)
    summary = hook.delete_recordings(ids, max_workers=8)
    assert summary.deleted == 90
    statuses = [r.status for r in emulator.requests]
    assert 429 not in statuses
    assert hook.stats.snapshot()["rate_limit_wait_seconds"] > 0


def test_one_throttle_pauses_every_thread(make_emulator, connect, seeded_policy):
    emulator = make_emulator(bulk_delete="forbidden", latency=0.01)
    connect(emulator.url)
    # Enough work that the other threads alone would keep calling for longer than the pause.
    ids = emulator.seed(200, days=5)  # under 240 calls: the minute budget stays out of it
    emulator.inject(Fault.throttle(retry_after=0.5), times=1, method="DELETE", after=8)
    hook = PostHogHook(retry_policy=seeded_policy)  # real sleep: the pause is real time
    assert hook.delete_recordings(ids, max_workers=4).deleted == 200
    deletes = [r for r in emulator.requests if r.method == "DELETE"]
    throttled_at = next(r.time for r in deletes if r.status == 429)
    later = [r.time for r in deletes if r.time > throttled_at]
    # Had only the throttled thread waited, the other three would have kept calling;
    # instead every thread stops for the pause, so the calls show one long gap.
    longest_gap = max(b - a for a, b in itertools.pairwise(later))
    assert longest_gap >= 0.4
    assert len(deletes) == 201


def test_a_failing_first_bulk_chunk_fails_that_chunk_only(emulator, hook):
    ids = emulator.seed(150, days=5)
    emulator.inject(Fault.status(500), times=6, method="POST")  # the first chunk outlives its retries
    summary = hook.delete_recordings(ids)
    assert len(summary.failed) == 100
    assert summary.deleted == 50
    assert len(emulator.recording_ids()) == 100
    assert hook.delete_recordings(sorted(summary.failed)).deleted == 100
    assert emulator.recording_ids() == set()


def test_a_deprecated_route_is_named_once_in_the_log(emulator, posthog_conn, logs):
    # PostHog answers /api/environments/... with Deprecation and Sunset headers (a next
    # link can lead there); the log says once where the same endpoint lives now.
    emulator.add_recording(start_time=datetime.now(UTC) - timedelta(days=1))
    hook = PostHogHook(posthog_conn)
    url = f"{emulator.url}/api/environments/1/session_recordings/?limit=1&date_from=-7d"
    for _ in range(3):
        hook.send(ApiRequest("GET", url=url, kind="list"))
    text = logs.text
    assert logs.count("as deprecated") == 1
    assert "Sunset: Fri, 31 Jul 2026 00:00:00 GMT" in text
    assert "/api/projects/1/session_recordings/" in text
