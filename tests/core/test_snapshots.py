"""The snapshot sources listing and the content requests, as data."""

from __future__ import annotations

import pytest

from airflow_provider_recordings.core.config import ClientConfig
from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogMalformedResponseError,
    PostHogServerError,
)
from airflow_provider_recordings.core.protocol import interpret
from airflow_provider_recordings.core.snapshots import (
    BLOB_V2,
    BLOB_V2_LTS,
    MAX_BLOB_KEY_SPAN,
    SNAPSHOTS,
    SnapshotSources,
    SnapshotSourcesError,
    block_ranges,
    is_blocks_unavailable,
    is_recording_deleted,
    minimum_calls,
    parse_sources,
    plan_content,
    sources_request,
)

CONFIG = ClientConfig(base_url="https://eu.posthog.com", project_id="12", api_key="phx_test_key_not_real")
REC = "0190a1b2-rec"


def blocks(n: int, *, start: int = 0) -> dict:
    return {
        "sources": [
            {
                "source": "blob_v2",
                "blob_key": str(key),
                "start_timestamp": f"2024-03-05T10:{key:02d}:00Z",
                "end_timestamp": f"2024-03-05T10:{key:02d}:59Z",
            }
            for key in range(start, start + n)
        ]
    }


LTS = {
    "sources": [
        {
            "source": "blob_v2_lts",
            "start_timestamp": None,
            "end_timestamp": None,
            "blob_key": "team/12/rec/abc",
        }
    ]
}


def test_the_sources_request_asks_for_blob_v2_and_lts():
    request = sources_request(REC)
    assert request.method == "GET"
    assert request.kind == SNAPSHOTS == "snapshots"
    assert request.target(CONFIG) == (
        f"https://eu.posthog.com/api/projects/12/session_recordings/{REC}/snapshots?blob_v2=true&blob_v2_lts=true"
    )
    with pytest.raises(Exception, match="contains '/'"):
        sources_request("a/b")


def test_blocks_are_parsed_in_key_order():
    body = blocks(3)
    body["sources"].reverse()
    sources = parse_sources(body, REC)
    assert sources.kind == BLOB_V2
    assert sources.block_keys == [0, 1, 2]
    assert sources.start_timestamp == "2024-03-05T10:00:00Z"
    assert sources.end_timestamp == "2024-03-05T10:02:59Z"
    assert sources.lts is None


def test_a_personal_key_reads_21_blocks_a_call_both_ends_inclusive():
    plan = plan_content(parse_sources(blocks(50), REC))
    assert [(call.start_blob_key, call.end_blob_key) for call in plan] == [(0, 20), (21, 41), (42, 49)]
    assert [call.blocks for call in plan] == [21, 21, 8]
    assert all(call.end_blob_key - call.start_blob_key <= MAX_BLOB_KEY_SPAN == 20 for call in plan)
    first = plan[0].request
    assert first.kind == SNAPSHOTS
    assert first.params == (("source", "blob_v2"), ("start_blob_key", "0"), ("end_blob_key", "20"))
    assert first.target(CONFIG) == (
        f"https://eu.posthog.com/api/projects/12/session_recordings/{REC}/snapshots"
        "?source=blob_v2&start_blob_key=0&end_blob_key=20"
    )
    assert plan[2].describe() == {"source": "blob_v2", "start_blob_key": 42, "end_blob_key": 49}


@pytest.mark.parametrize(("count", "calls"), [(1, 1), (20, 1), (21, 1), (22, 2), (42, 2), (43, 3), (210, 10)])
def test_the_fewest_calls(count, calls):
    sources = parse_sources(blocks(count), REC)
    assert len(plan_content(sources)) == calls
    assert minimum_calls(sources) == calls + 1


def test_an_lts_recording_is_one_content_call():
    sources = parse_sources(LTS, REC)
    assert sources.kind == BLOB_V2_LTS
    (call,) = plan_content(sources)
    assert call.source == BLOB_V2_LTS
    assert call.blob_key == "team/12/rec/abc"
    assert call.request.params == (("source", "blob_v2_lts"), ("blob_key", "team/12/rec/abc"))
    assert call.request.target(CONFIG).endswith(
        "/snapshots?source=blob_v2_lts&blob_key=team%2F12%2Frec%2Fabc"
    )
    assert call.describe() == {"source": "blob_v2_lts"}  # PostHog's storage path stays out of manifests
    assert minimum_calls(sources) == 2


def test_an_lts_copy_is_preferred_when_both_are_listed():
    body = {"sources": blocks(30)["sources"] + LTS["sources"]}
    (call,) = plan_content(parse_sources(body, REC))
    assert call.source == BLOB_V2_LTS


def test_gaps_in_the_keys_are_never_spanned():
    body = {"sources": [s for s in blocks(30)["sources"] if s["blob_key"] not in ("5", "6")]}
    plan = plan_content(parse_sources(body, REC))
    assert [(call.start_blob_key, call.end_blob_key) for call in plan] == [(0, 4), (7, 27), (28, 29)]


def test_block_ranges():
    assert block_ranges([]) == []
    assert block_ranges([3, 1, 2, 2]) == [(1, 3)]
    assert block_ranges(range(10), max_span=0) == [(k, k) for k in range(10)]
    assert block_ranges(range(250), max_span=100) == [(0, 100), (101, 201), (202, 249)]
    with pytest.raises(ValueError, match="max_span"):
        block_ranges([1], max_span=101)
    with pytest.raises(ValueError, match="negative"):
        block_ranges([-1])


def test_no_source_or_only_unknown_ones_cannot_be_read():
    with pytest.raises(SnapshotSourcesError, match="no snapshot source"):
        plan_content(parse_sources({"sources": []}, REC))
    realtime = {"sources": [{"source": "realtime", "blob_key": None}, {"source": "blob", "blob_key": "x"}]}
    sources = parse_sources(realtime, REC)
    assert sources.kind == "none"
    with pytest.raises(SnapshotSourcesError, match=r"kinds \['blob', 'realtime'\]"):
        plan_content(sources)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"results": []},
        {"sources": "x"},
        {"sources": [{"blob_key": "0"}]},
        {"sources": [{"source": "blob_v2", "blob_key": "a"}]},
        {"sources": [{"source": "blob_v2", "blob_key": True}]},
        {"sources": [{"source": "blob_v2", "blob_key": "0"}, {"source": "blob_v2", "blob_key": 0}]},
        {"sources": [{"source": "blob_v2_lts", "blob_key": ""}]},
        {"sources": [{"source": "blob_v2_lts", "blob_key": "a"}, {"source": "blob_v2_lts", "blob_key": "b"}]},
    ],
)
def test_a_listing_that_is_not_posthogs_is_malformed(body):
    with pytest.raises(PostHogMalformedResponseError, match=f"{REC}/snapshots"):
        parse_sources(body, REC)


def test_numeric_blob_keys_are_accepted():
    sources = parse_sources(
        {"sources": [{"source": "blob_v2", "blob_key": 0}, {"source": "blob_v2", "blob_key": 1}]}, REC
    )
    assert sources.block_keys == [0, 1]


def test_errors_of_the_content_calls_are_recognised():
    request = plan_content(parse_sources(blocks(1), REC))[0].request
    with pytest.raises(PostHogApiError) as deleted:
        interpret(
            request,
            CONFIG,
            410,
            {},
            b'{"error": "recording_deleted", "message": "This recording has been permanently deleted", '
            b'"deleted_at": "2024-03-05T10:00:00Z", "deleted_by": "user@example.com"}',
        )
    assert is_recording_deleted(deleted.value)
    assert not is_blocks_unavailable(deleted.value)
    with pytest.raises(PostHogServerError) as unavailable:
        interpret(
            request,
            CONFIG,
            502,
            {},
            b'{"type": "server_error", "code": "recording_blocks_unavailable", '
            b'"detail": "Couldn\'t load this recording\'s data. Try again, and if it keeps happening contact support."}',
        )
    assert is_blocks_unavailable(unavailable.value)
    assert not is_recording_deleted(unavailable.value)
    assert not is_blocks_unavailable(PostHogServerError("x", status=502))
    assert not is_recording_deleted(ValueError("410"))


def test_sources_is_plain_data():
    sources = SnapshotSources(REC)
    assert sources.kind == "none"
    assert sources.start_timestamp is None and sources.end_timestamp is None
