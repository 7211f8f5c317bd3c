"""A recording's content: rrweb-like events, generated on demand and never stored.

PostHog keeps a recording as blocks of JSON lines (``[windowId, event]``), each block
snappy-compressed; the snapshots endpoint lists the blocks and serves a range of them,
or the whole recording from long-term storage (LTS). Exports have to cope with
recordings of hundreds of megabytes, so the emulator derives every block from the
recording id and the block index with a seeded generator: the same bytes each time,
produced chunk by chunk, each block exactly ``block_bytes`` long so a response's
length is known before its first byte.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from airflow_provider_recordings.testing import snappy
from airflow_provider_recordings.testing.timefmt import iso_us

MIN_BLOCK_BYTES = 1024
#: Bytes a chunk of a streamed body holds (before compression framing).
CHUNK_BYTES = 64 * 1024
_AVERAGE_LINE = 150
_WORDS = (
    "account", "billing", "cancel", "checkout", "continue", "dashboard", "email", "export",
    "invoice", "learn", "more", "next", "order", "password", "plan", "pricing", "profile",
    "save", "search", "settings", "sign", "start", "submit", "team", "trial", "upgrade",
)  # fmt: skip
_FILLER = " ".join(_WORDS * 4)


@dataclass(frozen=True, slots=True)
class SnapshotSpec:
    """How a recording's content is laid out: ``blocks`` blocks of ``block_bytes``
    bytes (decompressed), kept as blob_v2 blocks or, with ``lts``, as one LTS file."""

    blocks: int
    block_bytes: int
    lts: bool = False

    def __post_init__(self) -> None:
        if self.blocks < 1:
            raise ValueError("a recording has at least one snapshot block")
        if self.block_bytes < MIN_BLOCK_BYTES:
            raise ValueError(f"block_bytes must be >= {MIN_BLOCK_BYTES}")

    @property
    def total_bytes(self) -> int:
        return self.blocks * self.block_bytes


def default_spec(salt: int) -> SnapshotSpec:
    """A few small blocks (2 to 5, 2 to 6 KB each), different per recording."""
    return SnapshotSpec(blocks=2 + (salt >> 20) % 4, block_bytes=2048 + ((salt >> 24) % 8) * 512)


@dataclass(frozen=True, slots=True)
class Layout:
    """Everything a snapshots answer depends on, copied from the store under its lock."""

    recording_id: str
    project_id: str
    start_us: int
    end_us: int
    start_url: str
    spec: SnapshotSpec

    @property
    def lts_key(self) -> str:
        """The storage path PostHog lists as the ``blob_v2_lts`` source's blob key."""
        return f"session_recordings_lts/team_id/{self.project_id}/session_id/{self.recording_id}/data"

    def block_span_us(self, index: int) -> tuple[int, int]:
        span = self.end_us - self.start_us
        count = self.spec.blocks
        return self.start_us + span * index // count, self.start_us + span * (index + 1) // count

    def sources(self) -> list[dict[str, str | None]]:
        if self.spec.lts:
            return [
                {
                    "source": "blob_v2_lts",
                    "start_timestamp": None,
                    "end_timestamp": None,
                    "blob_key": self.lts_key,
                }
            ]
        sources: list[dict[str, str | None]] = []
        for index in range(self.spec.blocks):
            start, end = self.block_span_us(index)
            sources.append(
                {
                    "source": "blob_v2",
                    "start_timestamp": iso_us(start),
                    "end_timestamp": iso_us(end),
                    "blob_key": str(index),
                }
            )
        return sources


# -- one block ------------------------------------------------------------------------------


def block_chunks(layout: Layout, index: int) -> Iterator[bytes]:
    """Block ``index``: JSON lines, each ending in a newline, ``block_bytes`` in all."""
    if not 0 <= index < layout.spec.blocks:
        raise IndexError(f"block {index} out of range")
    return _BlockWriter(layout, index).chunks()


class _BlockWriter:
    def __init__(self, layout: Layout, index: int) -> None:
        self.layout = layout
        self.index = index
        digest = hashlib.blake2b(f"{layout.recording_id}\x00{index}".encode(), digest_size=8).digest()
        self.rng = random.Random(int.from_bytes(digest, "big"))
        window = hashlib.blake2b(layout.recording_id.encode(), digest_size=16).hexdigest()
        self.prefix = f'["{window[:8]}-{window[8:12]}-{window[12:16]}-{window[16:20]}-{window[20:]}",'
        start_us, end_us = layout.block_span_us(index)
        self.start_ms, self.end_ms = start_us // 1000, max(start_us // 1000, end_us // 1000)
        lines = max(1, layout.spec.block_bytes // _AVERAGE_LINE)
        self.step = (self.end_ms - self.start_ms) / lines
        self.count = 0
        self.pad_base = len(self._pad_line(self.end_ms, 0))

    def chunks(self) -> Iterator[bytes]:
        remaining = self.layout.spec.block_bytes
        pending: list[str] = []
        size = 0
        for line in self._lines():
            if remaining - len(line) < self.pad_base:
                break
            pending.append(line)
            size += len(line)
            remaining -= len(line)
            if size >= CHUNK_BYTES:
                yield "".join(pending).encode("ascii")
                pending, size = [], 0
        pending.append(self._pad_line(self.end_ms, remaining - self.pad_base))
        yield "".join(pending).encode("ascii")

    def _lines(self) -> Iterator[str]:
        if self.index == 0:
            yield self._meta()
            yield self._full_snapshot()
        kinds = (self._mouse_move, self._mouse_move, self._mouse_move, self._click, self._scroll,
                 self._input, self._mutation, self._console)  # fmt: skip
        bits = self.rng.getrandbits
        while True:
            yield kinds[bits(3)]()

    def _now(self) -> int:
        """Roughly even steps across the block's time span, jittered, never past its end."""
        offset = self.count * self.step + self.rng.random() * self.step
        self.count += 1
        return min(self.end_ms, self.start_ms + int(offset))

    def _event(self, kind: int, data: str, timestamp: int | None = None) -> str:
        moment = self._now() if timestamp is None else timestamp
        return f'{self.prefix}{{"type":{kind},"timestamp":{moment},"data":{data}}}]\n'

    def _meta(self) -> str:
        url = json.dumps(self.layout.start_url)  # ASCII-escaped: lengths stay byte counts
        return self._event(4, f'{{"href":{url},"width":1440,"height":900}}', self.start_ms)

    def _full_snapshot(self) -> str:
        title = " ".join(self._words(3))
        node = (
            '{"type":0,"childNodes":[{"type":1,"name":"html","publicId":"","systemId":"","id":2},'
            '{"type":2,"tagName":"html","attributes":{"lang":"en"},"childNodes":['
            f'{{"type":2,"tagName":"head","attributes":{{}},"childNodes":[{{"type":2,"tagName":"title",'
            f'"attributes":{{}},"childNodes":[{{"type":3,"textContent":"{title}","id":6}}],"id":5}}],"id":4}},'
            '{"type":2,"tagName":"body","attributes":{"class":"app"},"childNodes":[{"type":2,"tagName":"main",'
            '"attributes":{"id":"root"},"childNodes":[],"id":8}],"id":7}],"id":3}],"id":1}'
        )
        return self._event(2, f'{{"node":{node},"initialOffset":{{"left":0,"top":0}}}}', self.start_ms)

    def _mouse_move(self) -> str:
        bits = self.rng.getrandbits
        positions = ",".join(
            f'{{"x":{bits(10)},"y":{bits(9)},"id":{8 + bits(6)},"timeOffset":-{bits(7) * (n + 1)}}}'
            for n in range(1 + bits(1) + bits(1))
        )
        return self._event(3, f'{{"source":1,"positions":[{positions}]}}')

    def _click(self) -> str:
        bits = self.rng.getrandbits
        return self._event(
            3, f'{{"source":2,"type":{bits(2) + 1},"id":{8 + bits(6)},"x":{bits(10)},"y":{bits(9)}}}'
        )

    def _scroll(self) -> str:
        return self._event(3, f'{{"source":3,"id":1,"x":0,"y":{self.rng.getrandbits(12)}}}')

    def _input(self) -> str:
        text = "*" * (1 + self.rng.getrandbits(4))
        return self._event(
            3, f'{{"source":5,"text":"{text}","isChecked":false,"id":{8 + self.rng.getrandbits(6)}}}'
        )

    def _mutation(self) -> str:
        value = " ".join(self._words(1 + self.rng.getrandbits(2)))
        texts = f'[{{"id":{8 + self.rng.getrandbits(6)},"value":"{value}"}}]'
        return self._event(3, f'{{"source":0,"texts":{texts},"attributes":[],"removes":[],"adds":[]}}')

    def _console(self) -> str:
        level = ("log", "log", "info", "warn")[self.rng.getrandbits(2)]
        message = " ".join(self._words(2 + self.rng.getrandbits(3)))
        return self._event(6, _console_data(level, message))

    def _pad_line(self, timestamp: int, filler: int) -> str:
        """A last console line, lengthened to end the block exactly at its size."""
        text = (_FILLER * (1 + filler // len(_FILLER)))[:filler]
        data = _console_data("debug", text)
        return f'{self.prefix}{{"type":6,"timestamp":{timestamp},"data":{data}}}]\n'

    def _words(self, n: int) -> list[str]:
        bits = self.rng.getrandbits
        return [_WORDS[bits(5) % len(_WORDS)] for _ in range(n)]


def _console_data(level: str, message: str) -> str:
    return (
        f'{{"plugin":"rrweb/console@1","payload":{{"level":"{level}","trace":[],"payload":["{message}"]}}}}'
    )


# -- ranges of blocks -----------------------------------------------------------------------


def jsonl_length(layout: Layout, start: int, end: int) -> int:
    """Length of :func:`jsonl_chunks`: the blocks minus the last line's newline."""
    count = end - start + 1
    return max(0, count * layout.spec.block_bytes - 1)


def jsonl_chunks(layout: Layout, start: int, end: int) -> Iterator[bytes]:
    """Blocks ``start``..``end`` as PostHog joins them (``decompress=true``): one newline
    between blocks and none after the last line."""
    held = b""
    for index in range(start, end + 1):
        for chunk in block_chunks(layout, index):
            if held:
                yield held
            held = chunk
    if held:
        yield held[:-1]


def framed_length(layout: Layout, count: int) -> int:
    """Length of ``count`` length-prefixed snappy blocks of this layout's size."""
    return count * (4 + snappy.compressed_length(layout.spec.block_bytes))


def framed_chunks(layout: Layout, start: int, end: int) -> Iterator[bytes]:
    """Blocks ``start``..``end`` as ``decompress=false`` sends them: each block
    snappy-compressed and prefixed by its length (4 bytes, big-endian)."""
    size = layout.spec.block_bytes
    for index in range(start, end + 1):
        yield snappy.compressed_length(size).to_bytes(4, "big")
        yield from snappy.compress_stream(block_chunks(layout, index), size)


def lts_chunks(layout: Layout) -> Iterator[bytes]:
    """The LTS file: every block, each line ending in a newline."""
    for index in range(layout.spec.blocks):
        yield from block_chunks(layout, index)


def lts_compressed_chunks(layout: Layout) -> Iterator[bytes]:
    """The LTS file as stored (``decompress=false``): one raw snappy block, without a
    length prefix."""
    return snappy.compress_stream(lts_chunks(layout), layout.spec.total_bytes)


def lts_compressed_length(layout: Layout) -> int:
    return snappy.compressed_length(layout.spec.total_bytes)


def collect(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)
