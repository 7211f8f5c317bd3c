"""Snapshots: a recording's sources and content, generated deterministically and streamed."""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests

from airflow_provider_recordings.testing import Fault, PostHogEmulator, RateLimitConfig, snappy
from airflow_provider_recordings.testing.auth import DEFAULT_EMAIL
from airflow_provider_recordings.testing.exchange import Call, Response
from airflow_provider_recordings.testing.server import EmulatorHTTPServer
from tests.testing.conftest import KEY, NOW, Client


@pytest.fixture
def rec(emu: PostHogEmulator) -> str:
    return emu.add_recording("rec", start_time=NOW - timedelta(hours=2), end_time=NOW - timedelta(hours=1))[
        "id"
    ]


def snapshots(client: Client, recording_id: str, **params: Any) -> requests.Response:
    return client.get(f"{recording_id}/snapshots", params=params)


def frames(body: bytes) -> list[bytes]:
    """Split a ``decompress=false`` body into its snappy blocks."""
    blocks, offset = [], 0
    while offset < len(body):
        (length,) = struct.unpack(">I", body[offset : offset + 4])
        blocks.append(body[offset + 4 : offset + 4 + length])
        offset += 4 + length
    assert offset == len(body)
    return blocks


# -- sources --------------------------------------------------------------------------------


def test_sources_are_numbered_blocks_over_the_recording(
    emu: PostHogEmulator, client: Client, rec: str
) -> None:
    answer = snapshots(client, rec, blob_v2="true", blob_v2_lts="true")
    assert answer.status_code == 200
    sources = answer.json()["sources"]
    assert 2 <= len(sources) <= 5, "a few blocks by default"
    assert [source["blob_key"] for source in sources] == [str(n) for n in range(len(sources))]
    assert {source["source"] for source in sources} == {"blob_v2"}
    assert sources[0]["start_timestamp"] == "2026-06-01T10:00:00Z"
    assert sources[-1]["end_timestamp"] == "2026-06-01T11:00:00Z"
    assert all(a["end_timestamp"] == b["start_timestamp"] for a, b in itertools.pairwise(sources))
    assert emu.snapshot_sources(rec) == sources


def test_an_lts_recording_is_one_file(emu: PostHogEmulator, client: Client) -> None:
    emu.add_recording(
        "old", start_time=NOW - timedelta(days=200), lts=True, snapshot_blocks=3, block_bytes=4096
    )
    (source,) = snapshots(client, "old").json()["sources"]
    assert source == {
        "source": "blob_v2_lts",
        "start_timestamp": None,
        "end_timestamp": None,
        "blob_key": "session_recordings_lts/team_id/1/session_id/old/data",
    }
    for key in (source["blob_key"], "/" + source["blob_key"]):
        answer = snapshots(client, "old", source="blob_v2_lts", blob_key=key)
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "application/jsonl"
        assert answer.headers["Cache-Control"] == "max-age=86400"
        assert answer.content == emu.snapshot_content("old", source="blob_v2_lts")
    assert len(answer.content) == 3 * 4096
    assert answer.content.endswith(b"\n"), "the stored file, every line ending in a newline"
    # The file holds the same content as the blocks would, joined.
    assert answer.content[:-1] == emu.snapshot_content("old", source="blob_v2", start=0, end=2)

    raw = snapshots(client, "old", source="blob_v2_lts", blob_key=source["blob_key"], decompress="false")
    assert raw.headers["Content-Type"] == "application/octet-stream"
    assert snappy.decompress(raw.content) == answer.content, "the stored object: raw snappy, no length prefix"

    other = emu.add_recording("other", start_time=NOW - timedelta(days=1), lts=True)["id"]
    wrong = snapshots(client, other, source="blob_v2_lts", blob_key=source["blob_key"])
    assert (wrong.status_code, wrong.json()["detail"]) == (404, "Recording not found")
    missing = snapshots(client, "old", source="blob_v2_lts")
    assert (missing.status_code, missing.json()["detail"]) == (400, "Must provide a blob key")
    plain = emu.add_recording("plain", start_time=NOW - timedelta(days=1))["id"]
    lts_path = source["blob_key"].replace("/old/", f"/{plain}/")
    not_lts = snapshots(client, plain, source="blob_v2_lts", blob_key=lts_path)
    assert not_lts.status_code == 404


# -- content --------------------------------------------------------------------------------


def test_content_is_jsonl_of_window_and_rrweb_event(emu: PostHogEmulator, client: Client, rec: str) -> None:
    count = len(emu.snapshot_sources(rec))
    answer = snapshots(client, rec, source="blob_v2", start_blob_key=0, end_blob_key=count - 1)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/jsonl"
    assert answer.headers["Cache-Control"] == "max-age=3600"
    assert int(answer.headers["Content-Length"]) == len(answer.content)
    assert not answer.content.endswith(b"\n"), "blocks joined with their last newline stripped"
    lines = [json.loads(line) for line in answer.content.split(b"\n")]
    windows = {window for window, _ in lines}
    assert len(windows) == 1
    events = [event for _, event in lines]
    assert [event["type"] for event in events[:2]] == [4, 2], "a meta event, then a full snapshot"
    assert events[0]["data"]["href"].startswith("https://")
    assert all(set(event) == {"type", "timestamp", "data"} for event in events)
    assert {event["type"] for event in events} <= {2, 3, 4, 6}
    stamps = [event["timestamp"] for event in events]
    assert stamps == sorted(stamps)
    start_ms = int((NOW - timedelta(hours=2)).timestamp() * 1000)
    assert start_ms <= stamps[0] and stamps[-1] <= start_ms + 3_600_000


def test_content_is_deterministic_and_matches_the_helper(
    emu: PostHogEmulator, make_emu: Callable[..., PostHogEmulator], client: Client, rec: str
) -> None:
    first = snapshots(client, rec, source="blob_v2", start_blob_key=0, end_blob_key=1).content
    again = snapshots(client, rec, source="blob_v2", start_blob_key=0, end_blob_key=1).content
    assert first == again == emu.snapshot_content(rec, start=0, end=1)
    elsewhere = make_emu(port=0)
    elsewhere.add_recording("rec", start_time=NOW - timedelta(hours=2), end_time=NOW - timedelta(hours=1))
    assert elsewhere.snapshot_content("rec", start=0, end=1) == first, "derived from the id, not from chance"
    other = emu.add_recording("rec-2", start_time=NOW - timedelta(hours=2), end_time=NOW - timedelta(hours=1))
    assert emu.snapshot_content(other["id"], start=0, end=1) != first
    # One block at a time joins into the same bytes.
    parts = [emu.snapshot_content(rec, start=n, end=n) for n in (0, 1)]
    assert b"\n".join(parts) == first


def test_compressed_blocks_are_length_prefixed_snappy(emu: PostHogEmulator, client: Client) -> None:
    emu.add_recording("big", start_time=NOW - timedelta(hours=1), snapshot_blocks=3, block_bytes=150_000)
    answer = snapshots(client, "big", source="blob_v2", start_blob_key=0, end_blob_key=2, decompress="false")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/octet-stream"
    blocks = [snappy.decompress(block) for block in frames(answer.content)]
    assert [len(block) for block in blocks] == [150_000] * 3
    assert all(block.endswith(b"\n") for block in blocks)
    joined = emu.snapshot_content("big", start=0, end=2)
    assert b"".join(blocks)[:-1] == joined
    assert answer.content == emu.snapshot_content("big", start=0, end=2, decompress=False)


def test_snappy_encoder_and_decoder() -> None:
    assert snappy.decompress(b"\x0a\x00a\x15\x01") == b"a" * 10, "a copy element, as real snappy writes"
    for size in (0, 1, 59, 60, 61, 255, 256, 65_535, 65_536, 65_537, 200_000):
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        packed = snappy.compress(data)
        assert len(packed) == snappy.compressed_length(size)
        assert snappy.decompress(packed) == data
    assert snappy.compress(b"x" * 100)[:3] == b"\x64\xf0\x63", "varint 100, a 1-byte-length literal of 100"
    with pytest.raises(ValueError, match="corrupt"):
        snappy.decompress(b"\x0a\x00a")


# -- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"source": "blob_v2"}, "Must provide both start blob key and end blob key"),
        ({"source": "blob_v2", "start_blob_key": "0"}, "Must provide both start blob key and end blob key"),
        ({"source": "blob_v2", "end_blob_key": "1"}, "Must provide both start blob key and end blob key"),
        ({"source": "blob_v2", "blob_key": "0"}, "Must provide both start blob key and end blob key"),
        ({"source": "blob_v2", "start_blob_key": "0", "end_blob_key": "a"}, "Blob keys must be integers"),
        ({"source": "blob_v2", "start_blob_key": "0", "end_blob_key": "21"}, "Cannot request more than 20 blob keys at once"),
        ({"source": "blob"}, "Invalid source must be one of [blob_v2, blob_v2_ts, None]"),
        ({"source": ""}, "Invalid source must be one of [blob_v2, blob_v2_ts, None]"),
        ({"source": "BLOB_V2"}, "Invalid source must be one of [blob_v2, blob_v2_ts, None]"),
    ],
)  # fmt: skip
def test_bad_parameters_are_400(client: Client, rec: str, params: dict[str, str], detail: str) -> None:
    answer = snapshots(client, rec, **params)
    assert answer.status_code == 400
    assert answer.json() == {
        "type": "validation_error",
        "code": "invalid_input",
        "detail": detail,
        "attr": None,
    }


def test_a_personal_key_gets_21_blocks_at_most(emu: PostHogEmulator, client: Client) -> None:
    emu.add_recording("long", start_time=NOW - timedelta(hours=3), snapshot_blocks=30, block_bytes=1024)
    assert snapshots(client, "long", source="blob_v2", start_blob_key=0, end_blob_key=20).status_code == 200
    assert snapshots(client, "long", source="blob_v2", start_blob_key=5, end_blob_key=26).status_code == 400
    out_of_range = snapshots(client, "long", source="blob_v2", start_blob_key=25, end_blob_key=30)
    assert (out_of_range.status_code, out_of_range.json()["detail"]) == (404, "Block index out of range")
    negative = snapshots(client, "long", source="blob_v2", start_blob_key=-1, end_blob_key=2)
    assert negative.status_code == 404
    bad_flag = snapshots(
        client, "long", source="blob_v2", start_blob_key=0, end_blob_key=0, decompress="maybe"
    )
    assert (bad_flag.status_code, bad_flag.json()["attr"]) == (400, "decompress")


def test_unknown_recording_is_404(client: Client) -> None:
    answer = snapshots(client, "nope")
    assert (answer.status_code, answer.json()["detail"]) == (404, "Recording not found")
    assert snapshots(client, "nope", source="blob_v2", start_blob_key=0, end_blob_key=0).status_code == 404


# -- deleted recordings ---------------------------------------------------------------------


def test_a_deleted_recording_is_410_with_who_and_when(
    emu: PostHogEmulator, client: Client, make_client: Callable[..., Client]
) -> None:
    emu.add_key("phx_auditor", email="auditor@example.com")
    auditor = make_client(emu, "phx_auditor")
    ids = [emu.add_recording(f"r{n}", start_time=NOW - timedelta(hours=n + 1))["id"] for n in range(3)]
    emu.clock.advance(30)
    assert auditor.delete(f"{ids[0]}/").status_code == 204
    assert client.post("bulk_delete/", {"session_recording_ids": [ids[1]]}).status_code == 200
    emu.delete(ids[2], deleted_by="someone@example.com")
    deleted_at = int(NOW.timestamp()) + 30
    expected_by = {ids[0]: "auditor@example.com", ids[1]: DEFAULT_EMAIL, ids[2]: "someone@example.com"}
    for recording_id, by in expected_by.items():
        for params in ({}, {"source": "blob_v2", "start_blob_key": "0", "end_blob_key": "0"}):
            answer = snapshots(client, recording_id, **params)
            assert answer.status_code == 410
            assert answer.json() == {
                "error": "recording_deleted",
                "message": "This recording has been permanently deleted",
                "deleted_at": deleted_at,
                "deleted_by": by,
            }
    assert client.get(f"{ids[0]}/").status_code == 404, "retrieve still says 404"


def test_a_person_job_deletion_is_410_too(emu: PostHogEmulator, client: Client) -> None:
    emu.add_recording("theirs", start_time=NOW - timedelta(days=2), distinct_id="web-9")
    person = emu.add_person(["web-9"])
    persons_url = f"{emu.url}/api/projects/1/persons/bulk_delete/"
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"ids": [person["uuid"]], "delete_recordings": True}
    assert requests.post(persons_url, json=body, headers=headers, timeout=10).status_code == 202
    assert snapshots(client, "theirs").status_code == 200, "the job has not run yet"
    emu.clock.advance(emu.person_job_delay)
    answer = snapshots(client, "theirs")
    assert answer.status_code == 410
    assert answer.json()["deleted_by"] == DEFAULT_EMAIL
    assert answer.json()["deleted_at"] == int(NOW.timestamp() + emu.person_job_delay)


# -- streaming, faults, limits ----------------------------------------------------------------


def test_a_large_recording_is_streamed_without_being_held(emu: PostHogEmulator, client: Client) -> None:
    block = 4_000_000
    emu.add_recording("huge", start_time=NOW - timedelta(hours=5), snapshot_blocks=4, block_bytes=block)
    expected = hashlib.sha256()
    for chunk in emu.snapshot_chunks("huge"):
        expected.update(chunk)

    tracemalloc.start()
    try:
        with client.session.get(
            f"{client.base}huge/snapshots",
            params={"source": "blob_v2", "start_blob_key": 0, "end_blob_key": 3},
            stream=True,
            timeout=60,
        ) as answer:
            assert answer.headers["Content-Length"] == str(4 * block - 1)
            received = hashlib.sha256()
            size = 0
            for chunk in answer.iter_content(chunk_size=256 * 1024):
                received.update(chunk)
                size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 4 * block - 1
    assert received.hexdigest() == expected.hexdigest()
    assert peak < 4 * 1024 * 1024, f"{peak} bytes at peak for a 16 MB body"


def test_a_body_of_unknown_length_goes_chunked() -> None:
    def process(call: Call) -> Response:
        parts: Iterator[bytes] = (f"part {n}\n".encode() for n in range(1000))
        return Response(200, headers={"Content-Type": "text/plain"}, stream=parts)

    server = EmulatorHTTPServer("127.0.0.1", 0, process)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        answer = requests.get(f"http://127.0.0.1:{server.server_address[1]}/x", timeout=10)
        assert answer.headers["Transfer-Encoding"] == "chunked"
        assert answer.text == "".join(f"part {n}\n" for n in range(1000))
    finally:
        server.shutdown()
        server.close_connections(timeout=5)
        server.server_close()


def test_blocks_unavailable_fault(emu: PostHogEmulator, client: Client, rec: str) -> None:
    emu.inject(Fault.blocks_unavailable(), path_contains="/snapshots")
    emu.inject(Fault.blocks_unavailable(503), path_contains="/snapshots")
    first = snapshots(client, rec, source="blob_v2", start_blob_key=0, end_blob_key=0)
    assert first.status_code == 502
    assert first.json() == {
        "type": "server_error",
        "code": "recording_blocks_unavailable",
        "detail": "Couldn't load this recording's data. Try again, and if it keeps happening contact support.",
        "attr": None,
    }
    second = snapshots(client, rec, source="blob_v2", start_blob_key=0, end_blob_key=0)
    assert (second.status_code, second.json()) == (
        503,
        {"error": "Failed to load recording block. Please try again later."},
    )
    assert snapshots(client, rec, source="blob_v2", start_blob_key=0, end_blob_key=0).status_code == 200


def test_a_truncated_stream_is_half_of_it(emu: PostHogEmulator, client: Client, rec: str) -> None:
    whole = emu.snapshot_content(rec, start=0, end=1)
    emu.inject(Fault.truncated(), path_contains="/snapshots")
    answer = snapshots(client, rec, source="blob_v2", start_blob_key=0, end_blob_key=1)
    assert answer.content == whole[: len(whole) // 2]


def test_snapshots_have_a_plan_budget_naming_the_limit(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    limits = RateLimitConfig(
        snapshots_per_minute=2, snapshots_per_hour=3, list_per_minute=1, time_scale=100, plan="paid"
    )
    emu = make_emu(rate_limits=limits)
    emu.add_recording("rec", start_time=NOW - timedelta(hours=1))
    api = make_client(emu)
    assert [api.get("rec/snapshots").status_code for _ in range(2)] == [200, 200]
    throttled = api.get("rec/snapshots")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "0.6"
    assert throttled.json()["detail"] == (
        "Rate limit exceeded. Recording snapshot requests are limited to 2 per minute on the paid plan. "
        "Expected available in 0.6 seconds."
    )
    assert api.list().status_code == 200, "the list budget is separate"
    emu.clock.advance(0.6)
    assert api.get("rec/snapshots").status_code == 200
    hourly = api.get("rec/snapshots")
    assert hourly.json()["detail"].startswith(
        "Rate limit exceeded. Recording snapshot requests are limited to 3 per hour on the paid plan."
    )


def test_snapshots_also_count_against_the_general_window(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(per_minute=2, time_scale=100))
    emu.add_recording("rec", start_time=NOW - timedelta(hours=1))
    api = make_client(emu)
    assert api.get("rec/snapshots").status_code == 200
    assert api.get("rec/").status_code == 200
    throttled = api.get("rec/snapshots")
    assert throttled.status_code == 429
    assert throttled.json()["detail"] == "Request was throttled. Expected available in 0.6 seconds."


def test_snapshots_need_session_recording_read(
    emu: PostHogEmulator, make_client: Callable[..., Client], rec: str
) -> None:
    emu.add_key("phx_people", scopes=["person:read"])
    answer = make_client(emu, "phx_people").get(f"{rec}/snapshots")
    assert answer.status_code == 403
    assert answer.json()["detail"] == "API key missing required scope 'session_recording:read'"
    assert emu.stats()["snapshots"] == 1
