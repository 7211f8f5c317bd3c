"""Snappy's raw block format, as much of it as the snapshots endpoint needs.

PostHog stores each recording block snappy-compressed and, with ``decompress=false``,
hands the blocks over as they are. The emulator writes valid snappy without a
dependency: a stream made only of literal elements is legal (just not smaller), and its
size is known before a byte is generated, so multi-gigabyte bodies can be streamed with
an exact Content-Length. ``decompress`` reads any raw snappy block (copies included),
so tests can check the emulator's output and a client's decoder against each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

#: Literals are cut where the reference compressor cuts its fragments.
MAX_LITERAL = 65536


def varint(value: int) -> bytes:
    """The preamble: the uncompressed length as a little-endian base-128 varint."""
    if value < 0:
        raise ValueError("a length cannot be negative")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal_tag(length: int) -> bytes:
    """The tag of a literal element of ``length`` bytes (1 to 2**32)."""
    if not 1 <= length <= 1 << 32:
        raise ValueError(f"a literal holds 1 to 2**32 bytes, not {length}")
    n = length - 1
    if n < 60:
        return bytes([n << 2])
    size = (n.bit_length() + 7) // 8
    return bytes([(59 + size) << 2]) + n.to_bytes(size, "little")


def compressed_length(length: int) -> int:
    """How many bytes :func:`compress` writes for ``length`` bytes of input."""
    full, rest = divmod(length, MAX_LITERAL)
    total = len(varint(length)) + full * (len(literal_tag(MAX_LITERAL)) + MAX_LITERAL)
    if rest:
        total += len(literal_tag(rest)) + rest
    return total


def compress(data: bytes) -> bytes:
    return b"".join(compress_stream([data], len(data)))


def compress_stream(chunks: Iterable[bytes], length: int) -> Iterator[bytes]:
    """Compress ``length`` bytes arriving in chunks of any size, holding at most one
    literal (64 KiB) at a time; raises if the chunks do not add up to ``length``."""
    yield varint(length)
    pending = bytearray()
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        pending += chunk
        while len(pending) >= MAX_LITERAL:
            yield literal_tag(MAX_LITERAL) + bytes(pending[:MAX_LITERAL])
            del pending[:MAX_LITERAL]
    if pending:
        yield literal_tag(len(pending)) + bytes(pending)
    if seen != length:
        raise ValueError(f"expected {length} bytes to compress, got {seen}")


def decompress(block: bytes) -> bytes:
    """Decode one raw snappy block (literals and copies)."""
    length, pos = _read_varint(block, 0)
    out = bytearray()
    while pos < len(block):
        tag = block[pos]
        kind = tag & 3
        pos += 1
        if kind == 0:
            pos = _literal(block, pos, tag, out)
            continue
        if kind == 1:
            size, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | block[pos]
            pos += 1
        else:
            width = 2 if kind == 2 else 4
            size, offset = (tag >> 2) + 1, int.from_bytes(block[pos : pos + width], "little")
            pos += width
        if not 0 < offset <= len(out):
            raise ValueError("corrupt snappy block: bad copy offset")
        for _ in range(size):
            out.append(out[-offset])
    if len(out) != length:
        raise ValueError(f"corrupt snappy block: {len(out)} bytes decoded, {length} announced")
    return bytes(out)


def _literal(block: bytes, pos: int, tag: int, out: bytearray) -> int:
    n = tag >> 2
    if n >= 60:
        width = n - 59
        n = int.from_bytes(block[pos : pos + width], "little")
        pos += width
    end = pos + n + 1
    if end > len(block):
        raise ValueError("corrupt snappy block: literal runs past the end")
    out += block[pos:end]
    return end


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 35:
            raise ValueError("corrupt snappy block: bad length preamble")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
