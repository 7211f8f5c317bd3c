"""PostHog's "Export to JSON" file, written as a stream, gzip-compressed.

PostHog's player imports a file of this shape (its "Export to JSON" format, version
``2023-04-28``; ``parseExportedSessionRecording`` in PostHog's frontend)::

    {"version": "2023-04-28",
     "data": {"id": "<recording id>",
              "person": {...} | null,
              "snapshots": [{"windowId": "<window id>", "type": 2, "timestamp": ..., "data": ...},
                            ...]}}

``snapshots`` is one flat array of rrweb events, each with its ``windowId`` added. The
snapshot content endpoint answers JSON Lines, one ``[windowId, event]`` per line; each line
becomes ``{"windowId": windowId, ...event}``. The import path plays the events as they are
(it sorts and de-duplicates them, but decompresses nothing), so events that PostHog's SDK
compressed (``"cv": "2024-10"``: gzip data kept as latin-1 strings even after the server's
decompression) are decompressed here exactly as the player's ``decompressEvent`` does for
API data, and lose their ``cv`` tag: the file holds plain rrweb events. Events keep the order
PostHog serves them in (blocks in time order); the player sorts them on import.

:class:`RecordingExportWriter` never holds more than one line (one event) and a small
compression buffer: memory stays flat whatever the recording's size. It counts and hashes
the compressed bytes as they go to the sink, so the size and SHA-256 of the stored file are
known without reading it back.

The output is deterministic: the same id, person and lines give the same bytes (the gzip
header carries no time or name).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from json.decoder import WHITESPACE  # type: ignore[attr-defined]
from typing import Any, NoReturn

from airflow_provider_recordings.archive.digest import BinarySink, Digest, HashingWriter
from airflow_provider_recordings.archive.errors import SnapshotFormatError

#: The ``version`` of PostHog's importable export format.
FORMAT_VERSION = "2023-04-28"
#: The one compressed-event version PostHog's player knows (``decompressEvent``).
COMPRESSED_EVENT_VERSION = "2024-10"

#: rrweb's event types and incremental sources that ``decompressEvent`` touches.
FULL_SNAPSHOT = 2
INCREMENTAL_SNAPSHOT = 3
MUTATION = 0
STYLE_SHEET_RULE = 8

#: Uncompressed bytes gathered before a call to the compressor.
_BATCH = 256 * 1024


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (PostHog's player could not read it)")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _unzip(value: Any, where: str) -> Any:
    """``unzip`` of PostHog's ``decompress.ts``: a latin-1 string of gzip bytes holding JSON.

    Empty or missing gives ``None`` (the player's ``undefined``: the field is dropped); a
    value that is already decoded (not a string) is kept.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return value
    try:
        return json.loads(gzip.decompress(value.encode("latin-1")).decode("utf-8"))
    except (UnicodeError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise SnapshotFormatError(f"{where}: a compressed field does not decompress: {exc}") from None


def decompress_event(event: dict[str, Any], *, where: str = "event") -> dict[str, Any]:
    """The event as PostHog's player would play it: ``cv: "2024-10"`` fields decompressed.

    Mirrors ``decompressEvent`` of PostHog's frontend: a full snapshot's ``data`` string;
    a mutation's ``adds``, ``removes``, ``texts`` and ``attributes``; a style sheet rule's
    ``adds`` and ``removes``. The ``cv`` tag is removed from every event that had one. An
    unknown ``cv`` is refused (the player refuses it too): an archive that cannot be played
    must not replace the recording.
    """
    if "cv" not in event:
        return event
    version = event["cv"]
    if version != COMPRESSED_EVENT_VERSION:
        raise SnapshotFormatError(
            f"{where}: unknown compressed event version {version!r} (PostHog's player knows only "
            f"{COMPRESSED_EVENT_VERSION!r})"
        )
    plain = {key: value for key, value in event.items() if key != "cv"}
    kind, data = event.get("type"), event.get("data")
    if kind == FULL_SNAPSHOT and isinstance(data, str):
        plain["data"] = _unzip(data, where)
        if plain["data"] is None:
            del plain["data"]
        return plain
    if kind == INCREMENTAL_SNAPSHOT and isinstance(data, dict) and "source" in data:
        if data["source"] == STYLE_SHEET_RULE:
            fields: tuple[str, ...] = ("adds", "removes")
        elif data["source"] == MUTATION and "texts" in data:
            fields = ("adds", "removes", "texts", "attributes")
        else:
            return plain
        decoded = dict(data)
        for name in fields:
            value = _unzip(data.get(name), where)
            if value is None:
                decoded.pop(name, None)
            else:
                decoded[name] = value
        plain["data"] = decoded
    return plain


@dataclass(frozen=True)
class ExportResult:
    """What :meth:`RecordingExportWriter.close` wrote.

    ``size`` and ``sha256`` are those of the compressed bytes handed to the sink, which
    are the stored file's bytes. ``first_timestamp``/``last_timestamp`` are the smallest and
    largest event timestamps (epoch milliseconds), ``json_bytes`` the uncompressed size.
    """

    recording_id: str
    size: int
    sha256: str
    events: int
    windows: int
    first_timestamp: float | None
    last_timestamp: float | None
    json_bytes: int
    decompressed_events: int
    lines: int

    @property
    def digest(self) -> Digest:
        return Digest(self.size, self.sha256)


class RecordingExportWriter:
    """Write one recording in PostHog's importable format, gzip-compressed, to ``sink``.

    Feed it the snapshot content as it arrives, as raw chunks (:meth:`feed`, split into lines
    here) or as lines (:meth:`write_line`), from as many content requests as the recording
    needs, in order; then :meth:`close`. The sink is written to and never closed (the
    store commits or discards it). After an error the writer is unusable and what it wrote
    is not a valid file: the caller discards it.

    :param sink: a binary file-like object (``write``).
    :param recording_id: the recording's id (``data.id``).
    :param person: the recording's ``person`` as PostHog's API gives it, or ``None``.
    :param compresslevel: gzip level, 1 (fastest) to 9 (smallest); 6 by default.
    :param max_line_bytes: longest line accepted; a longer one is a :class:`SnapshotFormatError`
        (a guard against a body that is not JSON Lines at all). 512 MiB by default.
    """

    def __init__(
        self,
        sink: BinarySink,
        *,
        recording_id: str,
        person: Mapping[str, Any] | None = None,
        compresslevel: int = 6,
        max_line_bytes: int = 512 * 1024 * 1024,
    ) -> None:
        if not isinstance(recording_id, str) or not recording_id:
            raise ValueError(f"recording_id must be a non-empty string, got {recording_id!r}")
        if person is not None and not isinstance(person, Mapping):
            raise ValueError(f"person must be PostHog's person object or None, got {type(person).__name__}")
        self.recording_id = recording_id
        self._out = HashingWriter(sink)
        # wbits 31: a gzip stream; zlib writes a header without time or name.
        self._compressor = zlib.compressobj(compresslevel, zlib.DEFLATED, 31)
        self._batch: list[bytes] = []
        self._batched = 0
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._max_line = max_line_bytes
        self._closed = False
        self._failed = False
        self._events = 0
        self._windows: set[Any] = set()
        self._first: float | None = None
        self._last: float | None = None
        self._json_bytes = 0
        self._decompressed = 0
        self._lines = 0
        person_json = json.dumps(dict(person) if person is not None else None, separators=(",", ":"))
        self._emit(
            (
                f'{{"version":"{FORMAT_VERSION}","data":{{"id":{json.dumps(recording_id)},'
                f'"person":{person_json},"snapshots":['
            ).encode()
        )

    # -- input -------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """Raw content bytes, cut anywhere; complete lines are written at once."""
        self._check_open()
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            if self._partial:
                self._partial.append(chunk[start:end])
                line = b"".join(self._partial)
                self._partial, self._partial_size = [], 0
            else:
                line = chunk[start:end]
            self._line(line)
            start = end + 1
        if start < len(chunk):
            self._partial.append(chunk[start:])
            self._partial_size += len(chunk) - start
            if self._partial_size > self._max_line:
                self._fail(f"line {self._lines + 1} is longer than {self._max_line} bytes")

    def feed_all(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.feed(chunk)

    def end_of_content(self) -> None:
        """The current content answer is over: a last line without a newline is complete.

        PostHog strips the trailing newline of each answer; call this between two content
        requests (and :meth:`close` calls it), so two answers never glue their lines.
        """
        self._check_open()
        if self._partial:
            line = b"".join(self._partial)
            self._partial, self._partial_size = [], 0
            self._line(line)

    def write_line(self, line: bytes | str) -> None:
        """One JSON Lines line, ``[windowId, event]`` (with or without its newline)."""
        self._check_open()
        self._line(line.encode("utf-8") if isinstance(line, str) else line)

    def write_event(self, window_id: str | int | None, event: Mapping[str, Any]) -> None:
        """One event already decoded, with its window id."""
        self._check_open()
        self._lines += 1
        self._event(window_id, dict(event), None, where=f"event {self._events + 1}")

    # -- output ------------------------------------------------------------------------------

    def close(self) -> ExportResult:
        """Finish the file (closing brackets, gzip trailer) and say what was written.

        A recording without a single event is refused: PostHog's player cannot play it.
        """
        self.end_of_content()
        if self._events == 0:
            self._fail(
                f"recording {self.recording_id} has no snapshot event: PostHog's player cannot play "
                "an empty file, so there is nothing to archive"
            )
        self._emit(b"]}}")
        self._compress_batch()
        self._out.write(self._compressor.flush(zlib.Z_FINISH))
        self._out.flush()
        self._closed = True
        digest = self._out.digest
        assert digest.size is not None
        return ExportResult(
            recording_id=self.recording_id,
            size=digest.size,
            sha256=digest.sha256,
            events=self._events,
            windows=len(self._windows),
            first_timestamp=self._first,
            last_timestamp=self._last,
            json_bytes=self._json_bytes,
            decompressed_events=self._decompressed,
            lines=self._lines,
        )

    @property
    def digest(self) -> Digest:
        """Size and SHA-256 of the compressed bytes written so far."""
        return self._out.digest

    @property
    def events(self) -> int:
        return self._events

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"the export of recording {self.recording_id} is already closed")
        if self._failed:
            raise ValueError(f"the export of recording {self.recording_id} failed; start it again")

    def _fail(self, message: str) -> NoReturn:
        self._failed = True
        raise SnapshotFormatError(message)

    def _line(self, raw: bytes) -> None:
        self._lines += 1
        where = f"recording {self.recording_id}, line {self._lines}"
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw.strip():
            return
        if len(raw) > self._max_line:
            self._fail(f"{where} is longer than {self._max_line} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._fail(f"{where} is not UTF-8")
        try:
            window_id, event, event_text = _split_line(text)
        except ValueError as exc:
            self._failed = True
            raise SnapshotFormatError(f"{where} is not a [windowId, event] JSON line: {exc}") from None
        self._event(window_id, event, event_text, where=where)

    def _event(self, window_id: Any, event: Any, event_text: str | None, *, where: str) -> None:
        if not isinstance(event, dict):
            self._fail(f"{where}: an event is a JSON object, got {type(event).__name__}")
        if isinstance(window_id, bool) or not isinstance(window_id, str | int | None):
            self._fail(f"{where}: a window id is a string or a number, got {window_id!r}")
        if "cv" in event:
            try:
                event = decompress_event(event, where=where)
            except SnapshotFormatError:
                self._failed = True
                raise
            self._decompressed += 1
            event_text = None
        window_json = json.dumps(window_id)
        if event_text is not None and "windowId" not in event:
            # The event's own text, unchanged, with the window id put in front.
            body = event_text.strip()
            inner = body[1:].lstrip()
            encoded = (
                f'{{"windowId":{window_json}}}' if inner == "}" else f'{{"windowId":{window_json},{inner}'
            ).encode()
        else:
            encoded = json.dumps({**event, "windowId": window_id}, separators=(",", ":")).encode()
        self._emit(b"," + encoded if self._events else encoded)
        self._events += 1
        if len(self._windows) < 10_000:
            self._windows.add(window_id)
        timestamp = event.get("timestamp")
        if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
            self._first = timestamp if self._first is None else min(self._first, timestamp)
            self._last = timestamp if self._last is None else max(self._last, timestamp)

    def _emit(self, data: bytes) -> None:
        self._batch.append(data)
        self._batched += len(data)
        self._json_bytes += len(data)
        if self._batched >= _BATCH:
            self._compress_batch()

    def _compress_batch(self) -> None:
        if self._batch:
            data = b"".join(self._batch)
            self._batch.clear()
            self._batched = 0
            self._out.write(self._compressor.compress(data))


def _split_line(text: str) -> tuple[Any, Any, str]:
    """``[windowId, event]`` parsed: the window id, the event, and the event's own text."""
    position = WHITESPACE.match(text, 0).end()
    if text[position : position + 1] != "[":
        raise ValueError("it does not start with '['")
    position = WHITESPACE.match(text, position + 1).end()
    window_id, position = _DECODER.raw_decode(text, position)
    position = WHITESPACE.match(text, position).end()
    if text[position : position + 1] != ",":
        raise ValueError("expected ',' after the window id")
    start = WHITESPACE.match(text, position + 1).end()
    event, end = _DECODER.raw_decode(text, start)
    position = WHITESPACE.match(text, end).end()
    if text[position : position + 1] != "]" or text[position + 1 :].strip():
        raise ValueError("expected ']' after the event, and nothing else")
    return window_id, event, text[start:end]
