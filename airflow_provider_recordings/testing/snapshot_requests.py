"""``GET session_recordings/<id>/snapshots``: the sources of a recording, and its content.

Without ``source`` the endpoint lists where the content lives: numbered ``blob_v2``
blocks, or one ``blob_v2_lts`` file for a recording moved to long-term storage. With
``source=blob_v2&start_blob_key=i&end_blob_key=j`` it serves blocks i..j (a personal API
key may ask for 21 at most), with ``source=blob_v2_lts&blob_key=<path>`` the LTS file.
Checks and messages follow ``SessionRecordingSnapshotsRequestSerializer`` and the view
(``posthog/session_recordings/session_recording_api.py``), typos included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_recordings.testing import errors, records, snapshots
from airflow_provider_recordings.testing.exchange import Call, Response
from airflow_provider_recordings.testing.store import RecordingStore

if TYPE_CHECKING:
    from airflow_provider_recordings.testing.api import Api

#: ``max_blobs_allowed`` for a personal API key (100 for logged-in users).
MAX_BLOB_SPAN = 20
SOURCES = ("blob_v2", "blob_v2_lts")
JSONL = "application/jsonl"
OCTETS = "application/octet-stream"
#: ``Cache-Control`` of block ranges and of LTS files.
BLOCKS_MAX_AGE = "max-age=3600"
LTS_MAX_AGE = "max-age=86400"
_TRUE = frozenset({"t", "T", "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "1"})
_FALSE = frozenset(
    {"f", "F", "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "0"}
)
_BOTH_KEYS = "Must provide both start blob key and end blob key"
DELETED_MESSAGE = "This recording has been permanently deleted"


@dataclass(frozen=True)
class SnapshotRequest:
    source: str | None
    start: int = 0
    end: int = 0
    blob_key: str = ""
    decompress: bool = True


# -- the endpoint ---------------------------------------------------------------------------


def handle(api: Api, call: Call) -> Response:
    recording_id = call.route.recording_id if call.route else None
    if recording_id is None:
        raise errors.not_found()
    with api.store.lock:
        row = api.store.row_of(recording_id)
        last = api.store.last_row_of(recording_id)
        if last is None:
            raise errors.recording_not_found()
        request = parse(call.query)
        if row is None:
            raise deleted_error(api.store, last)
        layout = layout_of(api.store, row, api.config.project_id)
    if request.source is None:
        return Response.json(200, {"sources": layout.sources()})
    chunks, length, content_type = content(layout, request)
    headers = {
        "Content-Type": content_type,
        "Cache-Control": LTS_MAX_AGE if request.source == "blob_v2_lts" else BLOCKS_MAX_AGE,
        "Content-Disposition": "inline",
    }
    return Response(200, headers=headers, stream=chunks, length=length)


def deleted_error(store: RecordingStore, row: int) -> errors.ApiError:
    """The 410 PostHog answers once a recording's key is destroyed."""
    deletion = store.deletions.get(row)
    return errors.plain(
        410,
        {
            "error": "recording_deleted",
            "message": DELETED_MESSAGE,
            "deleted_at": deletion.at if deletion else None,
            "deleted_by": deletion.by if deletion else None,
        },
    )


def layout_of(store: RecordingStore, row: int, project_id: str) -> snapshots.Layout:
    """What the content depends on, copied while the store lock is held."""
    view = store.view(row)
    spec = store.snapshots.get(row) or snapshots.default_spec(view.salt)
    return snapshots.Layout(view.id, project_id, view.start_us, view.end_us, records.start_url(view), spec)


# -- parameters -----------------------------------------------------------------------------


def parse(query: dict[str, str]) -> SnapshotRequest:
    """The serializer's checks; other parameters (the old ``blob_v2`` flags among them)
    are ignored."""
    decompress = _boolean("decompress", query["decompress"]) if "decompress" in query else True
    source = query.get("source")
    if source is None:
        return SnapshotRequest(None, decompress=decompress)
    if source not in SOURCES:
        raise errors.invalid_input("Invalid source must be one of [blob_v2, blob_v2_ts, None]")
    if source == "blob_v2_lts":
        blob_key = query.get("blob_key", "")
        if not blob_key:
            raise errors.invalid_input("Must provide a blob key")
        return SnapshotRequest(source, blob_key=blob_key, decompress=decompress)
    start, end = _block_range(query.get("start_blob_key", ""), query.get("end_blob_key", ""))
    return SnapshotRequest(source, start, end, decompress=decompress)


def _block_range(start_text: str, end_text: str) -> tuple[int, int]:
    """An inclusive range: a personal key may ask for 21 blocks (0..20)."""
    if not start_text or not end_text:
        raise errors.invalid_input(_BOTH_KEYS)
    try:
        start, end = int(start_text), int(end_text)
    except ValueError as exc:
        raise errors.invalid_input("Blob keys must be integers") from exc
    if end - start > MAX_BLOB_SPAN:
        raise errors.invalid_input(f"Cannot request more than {MAX_BLOB_SPAN} blob keys at once")
    return start, end


def _boolean(name: str, text: str) -> bool:
    """DRF's BooleanField."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise errors.invalid_input("Must be a valid boolean.", name)


# -- content --------------------------------------------------------------------------------


def content(layout: snapshots.Layout, request: SnapshotRequest) -> tuple[Iterator[bytes], int, str]:
    """(chunks, length, content type) of one request's body."""
    if request.source == "blob_v2_lts":
        if not layout.spec.lts or request.blob_key.lstrip("/") != layout.lts_key:
            raise errors.recording_not_found()
        if request.decompress:
            return snapshots.lts_chunks(layout), layout.spec.total_bytes, JSONL
        return snapshots.lts_compressed_chunks(layout), snapshots.lts_compressed_length(layout), OCTETS
    start, end = request.start, request.end
    if start < 0 or end >= layout.spec.blocks:
        raise errors.not_found("Block index out of range")  # range(start, end + 1) indexes blocks
    count = max(0, end - start + 1)
    if request.decompress:
        return snapshots.jsonl_chunks(layout, start, end), snapshots.jsonl_length(layout, start, end), JSONL
    return snapshots.framed_chunks(layout, start, end), snapshots.framed_length(layout, count), OCTETS
