"""The streaming writer of PostHog's importable export format."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import pytest

from airflow_provider_recordings.archive import (
    FORMAT_VERSION,
    RecordingExportWriter,
    SnapshotFormatError,
    decompress_event,
)
from tests.archive.recordings import (
    START_MS,
    WINDOW_A,
    WINDOW_B,
    compress,
    content,
    expected_snapshots,
    full_snapshot,
    line,
    meta,
    mutation,
    packed,
    read_export,
)

PERSON = {
    "id": 7,
    "uuid": "0190-person",
    "distinct_ids": ["user-1"],
    "properties": {"email": "a@example.com"},
}


def export(raw_parts: list[bytes], *, recording_id: str = "rec-1", person=PERSON, chunk: int | None = None):
    """Write ``raw_parts`` (one per content answer) and return (bytes, result)."""
    sink = io.BytesIO()
    writer = RecordingExportWriter(sink, recording_id=recording_id, person=person)
    for raw in raw_parts:
        if chunk is None:
            writer.feed(raw)
        else:
            for start in range(0, len(raw), chunk):
                writer.feed(raw[start : start + chunk])
        writer.end_of_content()
    result = writer.close()
    return sink.getvalue(), result


def test_the_file_is_posthogs_export_format_gzipped():
    raw = content(10, windows=(WINDOW_A, WINDOW_B))
    data, result = export([raw])
    document = read_export(data)
    assert list(document) == ["version", "data"]
    assert document["version"] == FORMAT_VERSION == "2023-04-28"
    assert list(document["data"]) == ["id", "person", "snapshots"]
    assert document["data"]["id"] == "rec-1"
    assert document["data"]["person"] == PERSON
    assert document["data"]["snapshots"] == expected_snapshots(raw)
    # Each line [windowId, event] became {...event, "windowId": windowId}: a flat array.
    first = document["data"]["snapshots"][0]
    assert first == {**meta(START_MS), "windowId": WINDOW_A}
    assert result.events == 10
    assert result.windows == 2
    assert result.first_timestamp == START_MS
    assert result.last_timestamp == START_MS + 2 + 7
    assert result.lines == 10
    assert result.recording_id == "rec-1"


def test_size_and_sha256_are_those_of_the_bytes_written():
    data, result = export([content(50)])
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.digest.size == len(data)
    assert result.json_bytes == len(gzip.decompress(data))


def test_output_is_deterministic_and_independent_of_how_content_is_cut():
    raw = content(200, compressed=True, windows=(WINDOW_A, WINDOW_B))
    whole, _ = export([raw])
    again, _ = export([raw])
    assert whole == again  # no time or name in the gzip header
    for chunk in (1, 7, 4096):
        assert export([raw], chunk=chunk)[0] == whole
    by_line = io.BytesIO()
    writer = RecordingExportWriter(by_line, recording_id="rec-1", person=PERSON)
    for text in raw.split(b"\n"):
        writer.write_line(text)
    writer.close()
    assert by_line.getvalue() == whole


def test_several_content_answers_make_one_array_without_gluing_lines():
    # PostHog strips each answer's trailing newline: the writer must not glue two lines.
    first, second = content(5), content(4)
    data, result = export([first, second])
    assert read_export(data)["data"]["snapshots"] == expected_snapshots(first) + expected_snapshots(second)
    assert result.events == 9


def test_compressed_events_are_decompressed_as_posthogs_player_does():
    events = [
        meta(START_MS),
        compress(full_snapshot(START_MS + 1, "compressed page")),
        compress(mutation(START_MS + 2, 1)),
        compress(
            {
                "type": 3,
                "timestamp": START_MS + 3,
                "data": {"source": 8, "id": 5, "adds": [{"rule": "a{}"}], "removes": []},
            }
        ),
        {
            "type": 3,
            "timestamp": START_MS + 4,
            "cv": "2024-10",
            "data": {"source": 2, "type": 1, "id": 3, "x": 1, "y": 2},
        },
    ]
    raw = b"\n".join(line(WINDOW_A, event) for event in events)
    data, result = export([raw])
    snapshots = read_export(data)["data"]["snapshots"]
    assert snapshots[1]["data"] == full_snapshot(START_MS + 1, "compressed page")["data"]
    assert snapshots[2]["data"] == mutation(START_MS + 2, 1)["data"]
    assert snapshots[3]["data"] == {"source": 8, "id": 5, "adds": [{"rule": "a{}"}], "removes": []}
    # A compressed-version event whose kind carries nothing compressed is kept as it is.
    assert snapshots[4]["data"] == {"source": 2, "type": 1, "id": 3, "x": 1, "y": 2}
    assert all("cv" not in event for event in snapshots)
    assert result.decompressed_events == 4


def test_decompress_event_mirrors_the_players_rules():
    # Empty or missing compressed fields become "undefined": the field is dropped.
    event = {
        "type": 3,
        "timestamp": 1,
        "cv": "2024-10",
        "data": {"source": 0, "texts": packed([]), "adds": "", "removes": None},
    }
    assert decompress_event(event) == {"type": 3, "timestamp": 1, "data": {"source": 0, "texts": []}}
    # A mutation without "texts" is not touched by the player: its fields stay as they are.
    untouched = {"type": 3, "timestamp": 1, "cv": "2024-10", "data": {"source": 0, "adds": "x"}}
    assert decompress_event(untouched) == {"type": 3, "timestamp": 1, "data": {"source": 0, "adds": "x"}}
    # An already-decoded field is kept.
    decoded = {"type": 2, "timestamp": 1, "cv": "2024-10", "data": {"node": {}}}
    assert decompress_event(decoded) == {"type": 2, "timestamp": 1, "data": {"node": {}}}
    plain = {"type": 4, "timestamp": 1, "data": {}}
    assert decompress_event(plain) is plain


def test_an_unknown_compression_version_is_refused():
    raw = line(WINDOW_A, {"type": 2, "timestamp": 1, "cv": "2031-01", "data": "???"})
    with pytest.raises(SnapshotFormatError, match="unknown compressed event version '2031-01'"):
        export([raw])


def test_a_compressed_field_that_does_not_decompress_is_refused():
    raw = line(WINDOW_A, {"type": 2, "timestamp": 1, "cv": "2024-10", "data": "not gzip"})
    with pytest.raises(SnapshotFormatError, match="does not decompress"):
        export([raw])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"type": 2}', "not a \\[windowId, event\\] JSON line"),
        (b'["w", {"type": 2}', "not a \\[windowId, event\\] JSON line"),
        (b'["w", {"type": 2}] trailing', "not a \\[windowId, event\\] JSON line"),
        (b'["w", [1, 2]]', "an event is a JSON object"),
        (b'[{"w": 1}, {"type": 2}]', "a window id is a string or a number"),
        (b'["w", {"type": 2, "timestamp": NaN}]', "not a \\[windowId, event\\] JSON line"),
        (b'["w", {"type": 2, "x": "\xff"}]', "is not UTF-8"),
    ],
)
def test_content_that_is_not_json_lines_of_window_and_event_is_refused(raw, message):
    with pytest.raises(SnapshotFormatError, match=message):
        export([line(WINDOW_A, meta(START_MS)) + b"\n" + raw])


def test_the_error_names_the_recording_and_line():
    with pytest.raises(SnapshotFormatError, match="recording rec-9, line 2 "):
        export([line(WINDOW_A, meta(1)) + b"\nnonsense"], recording_id="rec-9")


def test_a_recording_without_events_is_refused():
    with pytest.raises(SnapshotFormatError, match="no snapshot event"):
        export([b"\n\n"])


def test_a_failed_writer_cannot_be_used_again():
    writer = RecordingExportWriter(io.BytesIO(), recording_id="rec-1")
    with pytest.raises(SnapshotFormatError):
        writer.write_line(b"nonsense")
    with pytest.raises(ValueError, match="failed"):
        writer.write_line(line(WINDOW_A, meta(1)))


def test_an_overlong_line_is_refused_before_it_fills_memory():
    writer = RecordingExportWriter(io.BytesIO(), recording_id="rec-1", max_line_bytes=1000)
    writer.feed(b"[" + b" " * 900)
    with pytest.raises(SnapshotFormatError, match="longer than 1000 bytes"):
        writer.feed(b" " * 200)


def test_window_ids_may_be_numbers_or_null_and_events_keep_their_own_text():
    events = [(0, meta(1)), (None, full_snapshot(2)), ("w", {})]
    raw = b"\n".join(line(window, event) for window, event in events)
    snapshots = read_export(export([raw])[0])["data"]["snapshots"]
    assert snapshots == [
        {**meta(1), "windowId": 0},
        {**full_snapshot(2), "windowId": None},
        {"windowId": "w"},
    ]


def test_an_event_with_its_own_window_id_takes_the_lines_one():
    raw = line("outer", {"type": 4, "timestamp": 1, "windowId": "inner"})
    assert read_export(export([raw])[0])["data"]["snapshots"] == [
        {"type": 4, "timestamp": 1, "windowId": "outer"}
    ]


def test_non_ascii_text_survives_and_the_file_parses_as_strict_json():
    raw = line(
        WINDOW_A, {"type": 3, "timestamp": 1, "data": {"source": 0, "texts": [{"value": "é✓ \u2028 😀"}]}}
    )
    data, _ = export([raw])
    text = gzip.decompress(data).decode("utf-8")
    document = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in output"))
    assert document["data"]["snapshots"][0]["data"]["texts"][0]["value"] == "é✓ \u2028 😀"


def test_write_event_takes_decoded_events():
    sink = io.BytesIO()
    writer = RecordingExportWriter(sink, recording_id="rec-1", person=None)
    writer.write_event(WINDOW_A, meta(1))
    writer.write_event(WINDOW_A, compress(full_snapshot(2)))
    writer.close()
    document = read_export(sink.getvalue())
    assert document["data"]["person"] is None
    assert document["data"]["snapshots"] == [
        {**meta(1), "windowId": WINDOW_A},
        {**full_snapshot(2), "windowId": WINDOW_A},
    ]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="recording_id"):
        RecordingExportWriter(io.BytesIO(), recording_id="")
    with pytest.raises(ValueError, match="person"):
        RecordingExportWriter(io.BytesIO(), recording_id="r", person=["not", "a", "mapping"])  # type: ignore[arg-type]
