"""A recording's content: the snapshot sources listing, and the content requests, as data.

Reading one recording takes a sources call and then content calls
(``posthog/session_recordings/session_recording_api.py``, ``snapshots`` action):

1. ``GET …/session_recordings/<id>/snapshots?blob_v2=true&blob_v2_lts=true`` lists the
   sources: either ``blob_v2`` blocks (``blob_key`` "0", "1", … in time order) or one
   ``blob_v2_lts`` source whose ``blob_key`` is the storage path of the whole recording
   (a recording copied to long-term storage).
2. For blocks, ``?source=blob_v2&start_blob_key=i&end_blob_key=j``: both keys are
   inclusive (the server reads ``range(i, j + 1)``) and a personal API key is refused a
   range with ``j - i > 20`` (400 "Cannot request more than 20 blob keys at once"), so one
   request reads at most 21 blocks. For LTS, ``?source=blob_v2_lts&blob_key=<path>``, one
   request for the whole recording.

Each content answer is JSON Lines (``application/jsonl``), one ``[windowId, event]`` per line,
to be streamed, not decoded whole (:func:`~airflow_provider_recordings.core.protocol.interpret`
suits the sources listing only). ``decompress`` is left at PostHog's default (true).

Every call here counts in the ``snapshots`` rate-limit kind: PostHog gives snapshots a plan
budget of their own on top of 240 a minute and 1,200 an hour.

Pure functions and data: no I/O, no Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The rate-limit kind of every snapshots call (sources and content).
from airflow_provider_recordings.core.config import SNAPSHOTS
from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogError,
    PostHogMalformedResponseError,
)
from airflow_provider_recordings.core.protocol import ApiRequest, recording_path

BLOB_V2 = "blob_v2"
BLOB_V2_LTS = "blob_v2_lts"

#: The largest ``end_blob_key - start_blob_key`` PostHog accepts from a personal API key
#: (both ends inclusive: 21 blocks). Other credentials may ask for 100.
MAX_BLOB_KEY_SPAN = 20
#: What PostHog accepts from any credential.
SERVER_MAX_BLOB_KEY_SPAN = 100


class SnapshotSourcesError(PostHogError):
    """The sources listing names nothing this client can read: no source at all (a
    recording without content), or only kinds it does not know (older or newer servers)."""


@dataclass(frozen=True)
class SnapshotSource:
    """One entry of the sources listing."""

    source: str
    blob_key: str
    start_timestamp: str | None = None
    end_timestamp: str | None = None


@dataclass(frozen=True)
class SnapshotSources:
    """A recording's sources: its ``blob_v2`` blocks (by key) or its ``blob_v2_lts`` copy.

    ``other`` keeps entries of kinds this client does not read, for messages.
    """

    recording_id: str
    blocks: tuple[SnapshotSource, ...] = ()
    lts: SnapshotSource | None = None
    other: tuple[SnapshotSource, ...] = ()

    @property
    def kind(self) -> str:
        """``"blob_v2_lts"`` when an LTS copy exists (one request reads it all),
        ``"blob_v2"`` for blocks, ``"none"`` otherwise."""
        if self.lts is not None:
            return BLOB_V2_LTS
        return BLOB_V2 if self.blocks else "none"

    @property
    def block_keys(self) -> list[int]:
        return [int(block.blob_key) for block in self.blocks]

    @property
    def start_timestamp(self) -> str | None:
        stamps = [block.start_timestamp for block in self.blocks if block.start_timestamp]
        return min(stamps) if stamps else None

    @property
    def end_timestamp(self) -> str | None:
        stamps = [block.end_timestamp for block in self.blocks if block.end_timestamp]
        return max(stamps) if stamps else None


@dataclass(frozen=True)
class ContentRequest:
    """One content call and what it reads: blocks ``start_blob_key``..``end_blob_key``
    (inclusive) or the LTS object ``blob_key``."""

    request: ApiRequest
    source: str
    start_blob_key: int | None = None
    end_blob_key: int | None = None
    blob_key: str | None = None

    @property
    def blocks(self) -> int:
        """Blocks this call reads (1 for an LTS object)."""
        if self.start_blob_key is None or self.end_blob_key is None:
            return 1
        return self.end_blob_key - self.start_blob_key + 1

    def describe(self) -> dict[str, Any]:
        """The call as a manifest's ``sources`` entry (no LTS storage path: it is PostHog's
        internal bucket layout, and says nothing to the archive's reader)."""
        if self.source == BLOB_V2:
            return {
                "source": BLOB_V2,
                "start_blob_key": self.start_blob_key,
                "end_blob_key": self.end_blob_key,
            }
        return {"source": self.source}


def sources_request(recording_id: str) -> ApiRequest:
    """``GET …/<id>/snapshots?blob_v2=true&blob_v2_lts=true``: the sources listing."""
    return ApiRequest(
        "GET",
        recording_path(recording_id, "snapshots"),
        params=(("blob_v2", "true"), ("blob_v2_lts", "true")),
        kind=SNAPSHOTS,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _malformed(recording_id: str, problem: str) -> PostHogMalformedResponseError:
    return PostHogMalformedResponseError(
        f"GET …/session_recordings/{recording_id}/snapshots: the sources listing is not PostHog's: {problem}",
        method="GET",
        path=f"{recording_id}/snapshots",
        status=200,
    )


def parse_sources(body: Any, recording_id: str) -> SnapshotSources:
    """The sources listing ``{"sources": [...]}`` as :class:`SnapshotSources`.

    Blocks must have distinct whole-number keys; they are returned in key order. A shape
    that is not PostHog's raises :class:`PostHogMalformedResponseError`.
    """
    if not isinstance(body, Mapping) or not isinstance(body.get("sources"), list):
        raise _malformed(recording_id, "expected an object with a 'sources' list")
    blocks: dict[int, SnapshotSource] = {}
    lts: SnapshotSource | None = None
    other: list[SnapshotSource] = []
    for number, entry in enumerate(body["sources"], start=1):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("source"), str):
            raise _malformed(recording_id, f"source {number} has no 'source' name")
        raw_key = entry.get("blob_key")
        key = str(raw_key) if isinstance(raw_key, str | int) and not isinstance(raw_key, bool) else ""
        source = SnapshotSource(
            entry["source"], key, _text(entry.get("start_timestamp")), _text(entry.get("end_timestamp"))
        )
        if source.source == BLOB_V2:
            if not key.isdigit():
                raise _malformed(
                    recording_id, f"blob_v2 source {number} has blob_key {raw_key!r}, not a number"
                )
            if int(key) in blocks:
                raise _malformed(recording_id, f"blob_v2 blob_key {key} is listed twice")
            blocks[int(key)] = source
        elif source.source == BLOB_V2_LTS:
            if not key:
                raise _malformed(recording_id, f"blob_v2_lts source {number} has no blob_key")
            if lts is not None and lts.blob_key != key:
                raise _malformed(recording_id, "two different blob_v2_lts sources")
            lts = source
        else:
            other.append(source)
    return SnapshotSources(recording_id, tuple(blocks[key] for key in sorted(blocks)), lts, tuple(other))


def block_ranges(keys: Sequence[int], max_span: int = MAX_BLOB_KEY_SPAN) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` ranges covering ``keys`` in as few requests as PostHog
    allows: ``end - start <= max_span``, and never across a gap in the keys."""
    if (
        not isinstance(max_span, int)
        or isinstance(max_span, bool)
        or not 0 <= max_span <= SERVER_MAX_BLOB_KEY_SPAN
    ):
        raise ValueError(
            f"max_span must be a whole number from 0 to {SERVER_MAX_BLOB_KEY_SPAN}, got {max_span!r}"
        )
    ranges: list[tuple[int, int]] = []
    for key in sorted(set(keys)):
        if key < 0:
            raise ValueError(f"blob keys are not negative, got {key}")
        if ranges:
            start, end = ranges[-1]
            if key == end + 1 and key - start <= max_span:
                ranges[-1] = (start, key)
                continue
        ranges.append((key, key))
    return ranges


def plan_content(sources: SnapshotSources, *, max_span: int = MAX_BLOB_KEY_SPAN) -> list[ContentRequest]:
    """The content calls that read the whole recording, in order.

    One call for an LTS copy (preferred when listed: it is the whole recording); otherwise
    one call per largest accepted range of blocks. No readable source raises
    :class:`SnapshotSourcesError`.
    """
    recording_id = sources.recording_id
    path = recording_path(recording_id, "snapshots")
    params: tuple[tuple[str, str], ...]
    if sources.lts is not None:
        params = (("source", BLOB_V2_LTS), ("blob_key", sources.lts.blob_key))
        return [
            ContentRequest(
                ApiRequest("GET", path, params=params, kind=SNAPSHOTS),
                BLOB_V2_LTS,
                blob_key=sources.lts.blob_key,
            )
        ]
    if not sources.blocks:
        if sources.other:
            kinds = sorted({source.source for source in sources.other})
            raise SnapshotSourcesError(
                f"recording {recording_id} has only snapshot sources of kinds {kinds}, which this "
                f"provider does not read (it reads {BLOB_V2} and {BLOB_V2_LTS})"
            )
        raise SnapshotSourcesError(
            f"recording {recording_id} has no snapshot source: it has no content to read"
        )
    planned = []
    for start, end in block_ranges(sources.block_keys, max_span):
        params = (("source", BLOB_V2), ("start_blob_key", str(start)), ("end_blob_key", str(end)))
        planned.append(
            ContentRequest(
                ApiRequest("GET", path, params=params, kind=SNAPSHOTS),
                BLOB_V2,
                start_blob_key=start,
                end_blob_key=end,
            )
        )
    return planned


def minimum_calls(sources: SnapshotSources, *, max_span: int = MAX_BLOB_KEY_SPAN) -> int:
    """The fewest snapshots calls that read the recording: the listing plus its content calls
    (2 for an LTS copy; 1 + ceil(blocks / 21) for contiguous blocks)."""
    return 1 + len(plan_content(sources, max_span=max_span))


def is_recording_deleted(exc: BaseException) -> bool:
    """410 ``recording_deleted``: the recording was deleted after it was listed."""
    return isinstance(exc, PostHogApiError) and exc.status == 410


def is_blocks_unavailable(exc: BaseException) -> bool:
    """502 ``recording_blocks_unavailable``: none of the requested blocks could be read."""
    if not isinstance(exc, PostHogApiError) or exc.status != 502:
        return False
    return exc.code == "recording_blocks_unavailable" or "recording_blocks_unavailable" in (exc.detail or "")
