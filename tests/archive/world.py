"""What the operator tests of archiving share: recordings with content in the emulator, and
how to check, from outside, what an archive run did (the files, the manifest, the calls).

Everything is checked against the emulator's own content (``snapshot_content``), the
store's files read behind the archive's back (``Destination``), and the emulator's request
log, never against what the operator says it did.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_recordings.archive import archive_key, hash_identifier, parse_manifest
from airflow_provider_recordings.testing import PostHogEmulator, RequestRecord
from tests.archive.conftest import Destination

#: The largest range of blocks PostHog serves a personal API key in one call.
BLOCKS_PER_CALL = 21
FORMAT_VERSION = "2023-04-28"


@dataclass
class Recording:
    """One recording the test added, and how many snapshot calls reading it takes."""

    id: str
    start_time: str
    distinct_id: str
    blocks: int
    lts: bool = False

    @property
    def minimum_calls(self) -> int:
        """The sources call plus one per largest accepted range (2 for an LTS copy)."""
        return 2 if self.lts else 1 + math.ceil(self.blocks / BLOCKS_PER_CALL)

    def key(self, project_id: str) -> str:
        return archive_key(project_id, self.id, self.start_time)


@dataclass
class World:
    """A project's recordings, by what should become of them."""

    archivable: dict[str, Recording] = field(default_factory=dict)
    ongoing: set[str] = field(default_factory=set)
    recent: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)

    @property
    def settled(self) -> set[str]:
        return set(self.archivable) | self.gone


def add(
    emulator: PostHogEmulator,
    world: World,
    *,
    days_ago: float,
    blocks: int,
    lts: bool = False,
    block_bytes: int = 1024,
    minutes: float = 20,
    name: str | None = None,
) -> Recording:
    """A finished recording of ``blocks`` content blocks, started ``days_ago`` days ago."""
    now = datetime.now(UTC)
    start = now - timedelta(days=days_ago)
    number = len(world.archivable) + len(world.gone)
    distinct_id = name or f"user-{number}@example.com"
    row = emulator.add_recording(
        start_time=start,
        end_time=start + timedelta(minutes=minutes),
        distinct_id=distinct_id,
        snapshot_blocks=blocks,
        block_bytes=block_bytes,
        lts=lts,
    )
    recording = Recording(row["id"], row["start_time"], distinct_id, blocks, lts)
    world.archivable[recording.id] = recording
    return recording


def mixed_world(emulator: PostHogEmulator) -> World:
    """blob_v2 recordings of one, several and a partial range of blocks, an LTS one, one
    still ongoing and one that ended an hour ago (both started more than a day ago, so
    the listing returns them and the operator must decide), and one that is deleted
    between the listing and the first snapshot call (see :func:`delete_when_fetched`)."""
    world = World()
    for days, blocks in ((3, 1), (4, 3), (5, BLOCKS_PER_CALL), (6, BLOCKS_PER_CALL + 1), (7, 45)):
        add(emulator, world, days_ago=days, blocks=blocks)
    add(emulator, world, days_ago=400, blocks=9, lts=True)
    now = datetime.now(UTC)
    world.ongoing.add(
        emulator.add_recording(
            start_time=now - timedelta(hours=30), end_time=now, distinct_id="live@example.com"
        )["id"]
    )
    world.recent.add(
        emulator.add_recording(
            start_time=now - timedelta(hours=26),
            end_time=now - timedelta(hours=1),
            distinct_id="recent@example.com",
        )["id"]
    )
    doomed = add(emulator, world, days_ago=2, blocks=2)
    del world.archivable[doomed.id]
    world.gone.add(doomed.id)
    return world


def delete_when_fetched(emulator: PostHogEmulator, recording_ids: set[str]) -> None:
    """Delete these recordings (as someone in PostHog's UI would) just before the first
    snapshot call for them is answered: they were listed, and are gone when fetched."""

    def deleting(emu: PostHogEmulator, record: RequestRecord) -> None:
        recording_id = recording_of(record)
        if record.kind == "snapshots" and recording_id in recording_ids:
            emu.delete(recording_id, deleted_by="someone.else@example.com")

    emulator.on_request(deleting)


def recording_of(record: RequestRecord) -> str | None:
    """The recording a ``…/session_recordings/<id>/…`` request is about."""
    parts = record.path.rstrip("/").split("/")
    if "session_recordings" not in parts:
        return None
    index = parts.index("session_recordings") + 1
    return parts[index] if index < len(parts) else None


def snapshot_calls(emulator: PostHogEmulator) -> Counter[str]:
    """Snapshot calls the emulator answered, by recording (throttled ones excluded)."""
    return Counter(
        recording_of(r) or "" for r in emulator.requests if r.kind == "snapshots" and r.status != 429
    )


def expected_document_chunks(emulator: PostHogEmulator, recording: Recording) -> Iterator[bytes]:
    """The archive's JSON, byte for byte, from the emulator's content re-assembled: each
    ``[windowId, event]`` line becomes ``{"windowId": windowId, ...event}`` with the event's
    own text unchanged, all in one flat array, in the order PostHog serves them. Made as
    the content streams, so a large recording is compared without holding it."""
    person = (emulator.get(recording.id) or {})["person"]
    yield (
        f'{{"version":"{FORMAT_VERSION}","data":{{"id":{json.dumps(recording.id)},'
        f'"person":{json.dumps(person, separators=(",", ":"))},"snapshots":['
    ).encode()
    source = "blob_v2_lts" if recording.lts else "blob_v2"
    first = True
    for line in _lines(emulator.snapshot_chunks(recording.id, source=source)):
        if not line.strip():
            continue
        assert line.startswith(b'["') and line.endswith(b"]"), line[:80]
        window, _, event = line[1:-1].partition(b",")
        assert event.startswith(b"{"), line[:80]
        yield (b"" if first else b",") + b'{"windowId":' + window + b"," + event[1:]
        first = False
    yield b"]}}"


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    held = b""
    for chunk in chunks:
        *complete, held = (held + chunk).split(b"\n")
        yield from complete
    yield held


def expected_document(emulator: PostHogEmulator, recording: Recording) -> bytes:
    return b"".join(expected_document_chunks(emulator, recording))


def document_digest(stored: bytes | Iterable[bytes]) -> str:
    """SHA-256 of a gzipped archive's document, decompressed as it streams."""
    import zlib

    chunks = [stored] if isinstance(stored, bytes) else stored
    sha = hashlib.sha256()
    inflate = zlib.decompressobj(31)
    for chunk in chunks:
        sha.update(inflate.decompress(chunk))
    sha.update(inflate.flush())
    return sha.hexdigest()


def expected_digest(emulator: PostHogEmulator, recording: Recording) -> str:
    sha = hashlib.sha256()
    for chunk in expected_document_chunks(emulator, recording):
        sha.update(chunk)
    return sha.hexdigest()


def check_archive(
    emulator: PostHogEmulator, destination: Destination, recording: Recording, project_id: str
) -> bytes:
    """The recording's archive is PostHog's importable format, with exactly the emulator's
    content, and its sidecar names its SHA-256; returns the stored (gzipped) bytes."""
    key = recording.key(project_id)
    stored = destination.read(key)
    document = gzip.decompress(stored)
    parsed = json.loads(document)
    assert parsed["version"] == FORMAT_VERSION
    assert set(parsed["data"]) == {"id", "person", "snapshots"}
    assert parsed["data"]["id"] == recording.id
    assert parsed["data"]["person"]["distinct_ids"] == [recording.distinct_id]
    snapshots = parsed["data"]["snapshots"]
    assert isinstance(snapshots, list) and snapshots
    assert all(isinstance(event, dict) and "windowId" in event and "type" in event for event in snapshots)
    assert document == expected_document(emulator, recording), f"{recording.id}: not the emulator's content"
    sha256 = hashlib.sha256(stored).hexdigest()
    assert destination.read(key + ".sha256") == f"{sha256}  {recording.id}.json.gz\n".encode()
    return stored


def manifest_lines(destination: Destination) -> list[dict[str, Any]]:
    """Every line of every manifest part under the destination."""
    lines: list[dict[str, Any]] = []
    for key in destination.list_keys():
        if key.startswith("manifests/") and key.endswith(".jsonl"):
            lines.extend(parse_manifest(destination.read(key).decode()))
    return lines


def check_manifest_line(
    line: dict[str, Any], destination: Destination, recording: Recording, *, identifiers: str = "hashed"
) -> None:
    """The manifest's line for an archive matches the file stored (size, SHA-256), names the
    recording and its person (hashed with the line's salt unless clear) and its cost."""
    stored = destination.read(line["path"])
    assert line["size"] == len(stored)
    assert line["sha256"] == hashlib.sha256(stored).hexdigest()
    assert line["recording_id"] == recording.id
    assert line["start_time"] == recording.start_time
    assert line["identifiers"] == identifiers
    if identifiers == "hashed":
        assert line["distinct_id"] == hash_identifier(recording.distinct_id, line["salt"])
        assert recording.distinct_id not in json.dumps(line)
    else:
        assert line["distinct_id"] == recording.distinct_id
        assert "salt" not in line
    assert line["api_calls"] == recording.minimum_calls
    assert line["verified_by"] == "read_back"
    assert line["format"] == f"posthog-export/{FORMAT_VERSION}+gzip"
    assert line["url"].endswith("/" + line["path"])
    if recording.lts:
        assert line["sources"] == [{"source": "blob_v2_lts"}]
    else:
        ranges = [(s["start_blob_key"], s["end_blob_key"]) for s in line["sources"]]
        assert ranges == [
            (start, min(start + BLOCKS_PER_CALL, recording.blocks) - 1)
            for start in range(0, recording.blocks, BLOCKS_PER_CALL)
        ]


def report_lines(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
