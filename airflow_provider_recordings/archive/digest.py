"""Size and SHA-256 of the bytes that go to storage, computed while they pass."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class BinarySink(Protocol):
    """What a writer needs from a file: ``write`` (and optionally ``flush``)."""

    def write(self, data: bytes, /) -> Any: ...


@dataclass(frozen=True)
class Digest:
    """How big a stored file is and its SHA-256 (lower-case hex).

    ``size`` is ``None`` when only the checksum is known (a ``.sha256`` sidecar carries no
    size; matching SHA-256s imply matching sizes).
    """

    size: int | None
    sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _HEX64.match(self.sha256):
            raise ValueError(f"a SHA-256 is 64 lower-case hex digits, got {self.sha256!r}")
        if self.size is not None and (not isinstance(self.size, int) or self.size < 0):
            raise ValueError(f"a size is a number of bytes, got {self.size!r}")

    def matches(self, other: Digest) -> bool:
        """Same SHA-256, and the same size where both sizes are known."""
        if self.sha256 != other.sha256:
            return False
        return self.size is None or other.size is None or self.size == other.size


class HashingWriter:
    """Passes bytes on to ``target`` and keeps their count and SHA-256."""

    def __init__(self, target: BinarySink | BinaryIO) -> None:
        self._target = target
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        if data:
            self._target.write(data)
            self._hash.update(data)
            self.size += len(data)
        return len(data)

    def flush(self) -> None:
        flush = getattr(self._target, "flush", None)
        if callable(flush):
            flush()

    @property
    def digest(self) -> Digest:
        return Digest(self.size, self._hash.hexdigest())


def digest_of_stream(read: Any, *, chunk_size: int = 1 << 20) -> Digest:
    """Size and SHA-256 of everything ``read(chunk_size)`` returns until it returns nothing."""
    sha = hashlib.sha256()
    size = 0
    while True:
        chunk = read(chunk_size)
        if not chunk:
            break
        sha.update(chunk)
        size += len(chunk)
    return Digest(size, sha.hexdigest())
