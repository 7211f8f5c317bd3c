"""The manifest: one line per archived recording, appended locally, in parts on object stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_recordings.archive import (
    ArchiveStorageError,
    ArchiveStore,
    ManifestEntry,
    ManifestWriter,
    hash_identifier,
    identifier_matches,
    parse_manifest,
    read_manifest,
)
from airflow_provider_recordings.archive.store import ArchivedFile

NOW = datetime(2024, 4, 5, 1, 2, 3, tzinfo=UTC)


def entry(n: int, distinct_id: str = "user@example.com") -> ManifestEntry:
    archived = ArchivedFile(
        key=f"project=12/2024/03/05/rec-{n}.json.gz", url=f"x/rec-{n}", size=100 + n, sha256=f"{n:064x}"
    )
    return ManifestEntry.for_archive(
        archived,
        recording_id=f"rec-{n}",
        project_id=12,
        start_time="2024-03-05T10:00:00Z",
        end_time="2024-03-05T10:30:00Z",
        distinct_id=distinct_id,
        events=1000 + n,
        sources=[{"source": "blob_v2", "start_blob_key": 0, "end_blob_key": 20}],
        api_calls=2,
    )


def writer_for(destination, **kwargs) -> ManifestWriter:
    store = ArchiveStore(destination.archive_to, conn_id=destination.conn_id)
    return ManifestWriter(
        store, project_id=12, run_id="manual__2024-04-05T01:00:00+00:00", clock=lambda: NOW, **kwargs
    )


def lines_of(destination, writer: ManifestWriter) -> list[dict]:
    found = []
    for key in writer.parts:
        found.extend(parse_manifest(destination.read(key).decode()))
    return found


def test_a_line_per_archived_recording_with_what_a_reader_needs(destination):
    with writer_for(destination, lines_per_part=10) as writer:
        writer.add(entry(1))
    (line,) = lines_of(destination, writer)
    assert line == {
        "recording_id": "rec-1",
        "project_id": "12",
        "start_time": "2024-03-05T10:00:00Z",
        "end_time": "2024-03-05T10:30:00Z",
        "distinct_id": hash_identifier("user@example.com", writer.salt),
        "identifiers": "hashed",
        "salt": writer.salt,
        "path": "project=12/2024/03/05/rec-1.json.gz",
        "url": "x/rec-1",
        "size": 101,
        "sha256": f"{1:064x}",
        "verified_by": "read_back",
        "events": 1001,
        "sources": [{"source": "blob_v2", "start_blob_key": 0, "end_blob_key": 20}],
        "api_calls": 2,
        "archived_at": "2024-04-05T01:02:03Z",
        "format": "posthog-export/2023-04-28+gzip",
    }
    assert "user@example.com" not in destination.read(writer.parts[0]).decode()
    (key,) = writer.parts
    assert (
        key
        == f"manifests/project=12/2024/04/05/manual__2024-04-05T01_00_00+00_00.{writer.writer}.part-00000.jsonl"
    )


def test_hashed_distinct_ids_are_found_by_whoever_knows_them():
    salt = "00" * 16
    line = {"distinct_id": hash_identifier("alice", salt), "identifiers": "hashed", "salt": salt}
    assert identifier_matches(line, "alice")
    assert not identifier_matches(line, "bob")
    assert identifier_matches({"distinct_id": "alice", "identifiers": "clear"}, "alice")
    assert not identifier_matches({"distinct_id": None, "identifiers": "clear"}, "alice")
    assert not identifier_matches({"distinct_id": "x", "identifiers": "hashed"}, "alice")


def test_clear_identifiers_and_a_fixed_salt(tmp_path):
    store = ArchiveStore(str(tmp_path))
    clear = ManifestWriter(store, project_id=1, run_id="r", identifiers="clear", clock=lambda: NOW)
    clear.add(entry(1, "alice"))
    (line,) = read_manifest(store, clear.parts[0])
    assert line["distinct_id"] == "alice"
    assert "salt" not in line
    assert line["identifiers"] == "clear"
    first = ManifestWriter(store, project_id=1, run_id="r", salt="ab" * 16)
    second = ManifestWriter(store, project_id=1, run_id="r", salt="ab" * 16)
    assert first.line(entry(1))["distinct_id"] == second.line(entry(1))["distinct_id"]
    assert (
        ManifestWriter(store, project_id=1, run_id="r").salt
        != ManifestWriter(store, project_id=1, run_id="r").salt
    )
    with pytest.raises(ValueError, match="identifiers"):
        ManifestWriter(store, project_id=1, run_id="r", identifiers="plain")
    with pytest.raises(ValueError):
        ManifestWriter(store, project_id=1, run_id="r", salt="not hex")


def test_local_lines_are_on_disk_as_soon_as_they_are_added(tmp_path):
    store = ArchiveStore(str(tmp_path))
    writer = ManifestWriter(store, project_id=12, run_id="r", clock=lambda: NOW)
    writer.add(entry(1))
    writer.add(entry(2))
    # Not closed, not flushed: a run killed now keeps both lines.
    assert writer.pending == 0
    assert [line["recording_id"] for line in read_manifest(store, writer.parts[0])] == ["rec-1", "rec-2"]
    assert len(writer.parts) == 1


def test_object_store_lines_go_in_parts_that_never_overwrite_each_other(s3_server, s3_bucket, s3_conn):
    store = ArchiveStore(f"s3://{s3_bucket}/archive", conn_id=s3_conn)
    writer = ManifestWriter(store, project_id=12, run_id="r", lines_per_part=2, clock=lambda: NOW)
    for n in range(5):
        writer.add(entry(n))
    assert writer.pending == 1  # 2 parts of 2 lines written, one line gathered
    assert len(writer.parts) == 2
    assert writer.flush() == writer.parts[-1]
    assert writer.flush() is None
    # A second writer of the same run (a retry, a resumed deferral) writes parts of its own.
    other = ManifestWriter(store, project_id=12, run_id="r", lines_per_part=2, clock=lambda: NOW)
    other.add(entry(9))
    other.close()
    keys = s3_server.keys(s3_bucket, "archive/manifests/")
    assert len(keys) == 4
    ids = [line["recording_id"] for key in writer.parts + other.parts for line in read_manifest(store, key)]
    assert ids == ["rec-0", "rec-1", "rec-2", "rec-3", "rec-4", "rec-9"]
    assert [key.rsplit(".part-", 1)[1] for key in writer.parts] == [
        "00000.jsonl",
        "00001.jsonl",
        "00002.jsonl",
    ]


def test_object_store_lines_wait_at_most_flush_every_seconds(s3_server, s3_bucket, s3_conn):
    # A task killed without warning (SIGKILL, a lost machine) loses only the lines gathered
    # since the last part: at most flush_every seconds of them.
    store = ArchiveStore(f"s3://{s3_bucket}/archive", conn_id=s3_conn)
    now = [NOW]
    writer = ManifestWriter(store, project_id=12, run_id="r", flush_every=60, clock=lambda: now[0])
    writer.add(entry(1))
    now[0] = NOW + timedelta(seconds=59)
    writer.add(entry(2))
    assert (writer.pending, writer.parts) == (2, [])
    now[0] = NOW + timedelta(seconds=60)
    writer.add(entry(3))
    assert writer.pending == 0
    (part,) = writer.parts
    assert [line["recording_id"] for line in read_manifest(store, part)] == ["rec-1", "rec-2", "rec-3"]
    # The next part's clock starts with its own first line.
    now[0] = NOW + timedelta(seconds=200)
    writer.add(entry(4))
    now[0] = NOW + timedelta(seconds=259)
    writer.add(entry(5))
    assert writer.pending == 2


def test_a_failed_part_write_keeps_its_lines_for_the_next_flush(s3_server, s3_bucket, s3_conn):
    store = ArchiveStore(f"s3://{s3_bucket}/archive", conn_id=s3_conn)
    writer = ManifestWriter(store, project_id=12, run_id="r", clock=lambda: NOW)
    writer.add(entry(1))
    s3_server.stop()
    with pytest.raises(ArchiveStorageError):
        writer.flush()
    assert writer.pending == 1
    s3_server.start()
    key = writer.flush()
    assert [line["recording_id"] for line in read_manifest(store, key)] == ["rec-1"]


def test_a_last_line_cut_short_by_a_crash_is_skipped():
    text = json.dumps({"recording_id": "a"}) + "\n" + '{"recording_id": "b", "si'
    assert [line["recording_id"] for line in parse_manifest(text)] == ["a"]
    with pytest.raises(ValueError, match="line 1"):
        list(parse_manifest('{"broken\n{"recording_id": "a"}\n'))


def test_a_missing_part_reads_as_empty(tmp_path):
    assert read_manifest(ArchiveStore(str(tmp_path)), "manifests/none.jsonl") == []
