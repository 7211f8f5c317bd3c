"""Snapshot content as PostHog serves it, made up for the tests: JSON Lines of
``[windowId, event]`` with rrweb events, some compressed the way PostHog's SDK compresses
them (``cv: "2024-10"``: gzip bytes of JSON, as a latin-1 string)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

WINDOW_A = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
WINDOW_B = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"
START_MS = 1_709_600_000_000


def packed(value: Any) -> str:
    """What PostHog's SDK stores in a compressed field: gzip of the JSON, as latin-1 text."""
    return gzip.compress(json.dumps(value).encode()).decode("latin-1")


def meta(ts: int) -> dict[str, Any]:
    return {
        "type": 4,
        "timestamp": ts,
        "data": {"href": "https://example.com/", "width": 1280, "height": 720},
    }


def full_snapshot(ts: int, text: str = "hello") -> dict[str, Any]:
    return {
        "type": 2,
        "timestamp": ts,
        "data": {
            "node": {"type": 0, "id": 1, "childNodes": [{"type": 3, "id": 2, "textContent": text}]},
            "initialOffset": {"top": 0, "left": 0},
        },
    }


def mutation(ts: int, n: int) -> dict[str, Any]:
    return {
        "type": 3,
        "timestamp": ts,
        "data": {
            "source": 0,
            "adds": [
                {"parentId": 1, "nextId": None, "node": {"type": 3, "id": 100 + n, "textContent": f"n{n}"}}
            ],
            "removes": [],
            "texts": [{"id": 2, "value": f"text {n} é✓"}],
            "attributes": [],
        },
    }


def compress(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the SDK sends it compressed (the inverse of the player's decompressEvent)."""
    out = dict(event, cv="2024-10")
    if event["type"] == 2:
        out["data"] = packed(event["data"])
    elif event["type"] == 3 and event["data"]["source"] == 0:
        data = dict(event["data"])
        for name in ("adds", "removes", "texts", "attributes"):
            data[name] = packed(data[name])
        out["data"] = data
    elif event["type"] == 3 and event["data"]["source"] == 8:
        data = dict(event["data"])
        for name in ("adds", "removes"):
            data[name] = packed(data[name])
        out["data"] = data
    return out


def line(window: str | int | None, event: dict[str, Any]) -> bytes:
    return json.dumps([window, event]).encode()


def content(events: int = 20, *, compressed: bool = False, windows: tuple[str, ...] = (WINDOW_A,)) -> bytes:
    """A content answer: meta, full snapshot, then mutations; no trailing newline (PostHog
    strips it)."""
    lines = [line(windows[0], meta(START_MS)), line(windows[0], full_snapshot(START_MS + 1))]
    for n in range(max(0, events - 2)):
        event = mutation(START_MS + 2 + n, n)
        lines.append(line(windows[n % len(windows)], compress(event) if compressed else event))
    return b"\n".join(lines)


def expected_snapshots(raw: bytes) -> list[dict[str, Any]]:
    """What the export's ``snapshots`` must hold for ``raw`` content: each line's event,
    decompressed, ``cv`` removed, with its window id."""
    found = []
    for text in raw.decode().splitlines():
        if not text.strip():
            continue
        window, event = json.loads(text)
        event = dict(event)
        if event.pop("cv", None):
            if event["type"] == 2:
                event["data"] = json.loads(gzip.decompress(event["data"].encode("latin-1")))
            else:
                data = dict(event["data"])
                for name in ("adds", "removes", "texts", "attributes"):
                    if isinstance(data.get(name), str):
                        data[name] = json.loads(gzip.decompress(data[name].encode("latin-1")))
                event["data"] = data
        found.append({**event, "windowId": window})
    return found


def read_export(data: bytes) -> dict[str, Any]:
    """An archive's document (gunzipped, parsed)."""
    return json.loads(gzip.decompress(data))


def big_content_chunks(total_bytes: int, *, chunk_size: int = 64 * 1024, seed: int = 7) -> Iterator[bytes]:
    """About ``total_bytes`` of content, made on the fly and cut into chunks anywhere (lines
    straddle chunks): the whole never exists in memory. Texts are drawn from a pool of
    random sentences larger than gzip's window, so the compressor has real work to do."""
    import random

    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(300)]
    pool = [" ".join(rng.choices(words, k=40)) for _ in range(2000)]
    pending = bytearray()
    for item in (line(WINDOW_A, meta(START_MS)), line(WINDOW_A, full_snapshot(START_MS + 1))):
        pending += item + b"\n"
    produced = 0
    n = 0
    while produced < total_bytes:
        while len(pending) < chunk_size:
            window = WINDOW_B if n % 3 == 0 else WINDOW_A
            pending += (
                f'["{window}",{{"type":3,"timestamp":{START_MS + 2 + n},"data":{{"source":0,"adds":[],'
                f'"removes":[],"texts":[{{"id":{n},"value":"{pool[n % len(pool)]}"}}],"attributes":[]}}}}]\n'
            ).encode()
            n += 1
        chunk, pending = bytes(pending[:chunk_size]), pending[chunk_size:]
        produced += len(chunk)
        yield chunk
    if pending:
        yield bytes(pending)
