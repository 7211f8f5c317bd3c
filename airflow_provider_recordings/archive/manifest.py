"""The manifest: one JSON line per archived recording.

Each line says which recording was archived, where, how big, with which SHA-256, from which
snapshot sources, at what cost in API calls, and when::

    {"recording_id": "0190…", "project_id": "12", "start_time": "…", "end_time": "…",
     "distinct_id": "<HMAC-SHA256>", "identifiers": "hashed", "salt": "<hex>",
     "path": "project=12/2024/03/05/0190….json.gz", "url": "s3://bucket/archive/project=12/…",
     "size": 48213, "sha256": "…", "verified_by": "read_back", "events": 5120,
     "sources": [{"source": "blob_v2", "start_blob_key": 0, "end_blob_key": 20}],
     "api_calls": 2, "archived_at": "2024-04-05T01:02:03Z", "format": "posthog-export/2023-04-28+gzip"}

A line is written only after its archive verified, so the manifest never lists a recording
that is not archived (the archive's sidecar stays the authority; the manifest is the
record a person reads and a tool indexes).

**Distinct ids** are kept as the erasure receipt keeps identifiers: by default an
HMAC-SHA256 with a salt written on every line (``identifiers: "hashed"``), so the manifest
tells whoever already knows a distinct id which archives are that person's
(:func:`identifier_matches`, for an erasure request that must reach the archive too), and
tells nobody else who they are; ``"clear"`` keeps them as given. Give the writer a fixed
``salt`` to make hashes comparable across runs; by default each writer draws its own.

**Layout.** Manifests live under ``<archive_to>/manifests/project=<id>/<YYYY>/<MM>/<DD>/``
(the day the writer started), one file per writer and part:
``<run id>.<writer>.part-<NNNNN>.jsonl``; ``<writer>`` is random, so a retry, a resumed
deferral or a second task never writes over another's lines. In a **local folder** each
line is appended to the writer's part file and ``fsync``-ed before :meth:`ManifestWriter.add`
returns. **Object stores** cannot append: lines are gathered and each
:meth:`~ManifestWriter.flush` writes them as a new part object (complete or absent, like any
upload). A writer flushes by itself every ``lines_per_part`` lines, once its oldest line has
waited ``flush_every`` seconds (so a task killed without warning loses at most that much
of its manifest; its archives, committed by their sidecars, are not lost), and when
closed; a caller about to act on the lines (delete recordings from PostHog) flushes first. A reader takes all
parts (:func:`read_manifest` reads one), and skips a last line cut short by a crash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from airflow_provider_recordings.archive.export import FORMAT_VERSION
from airflow_provider_recordings.archive.layout import manifest_key, validate_project_id
from airflow_provider_recordings.archive.store import VERIFIED_BY, ArchivedFile, ArchiveStore

#: How distinct ids are written: as an HMAC-SHA256 with the line's salt, or as given.
IDENTIFIERS = ("hashed", "clear")
#: The ``format`` of every archive this package writes.
ARCHIVE_FORMAT = f"posthog-export/{FORMAT_VERSION}+gzip"


def hash_identifier(value: str, salt: str) -> str:
    """HMAC-SHA256 of an identifier with a hex salt (as the erasure receipt computes it)."""
    return hmac.new(bytes.fromhex(salt), value.encode("utf-8"), hashlib.sha256).hexdigest()


def identifier_matches(line: Mapping[str, Any], distinct_id: str) -> bool:
    """Whether a manifest line belongs to ``distinct_id`` (hashed or clear)."""
    recorded = line.get("distinct_id")
    if recorded is None:
        return False
    if line.get("identifiers") == "clear":
        return bool(recorded == distinct_id)
    salt = line.get("salt")
    if not isinstance(salt, str):
        return False
    return hmac.compare_digest(str(recorded), hash_identifier(distinct_id, salt))


def isoformat(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ManifestEntry:
    """One archived recording, as a manifest line (before identifiers are hashed)."""

    recording_id: str
    project_id: str
    path: str
    url: str
    size: int
    sha256: str
    start_time: str | None = None
    end_time: str | None = None
    distinct_id: str | None = None
    events: int | None = None
    sources: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    api_calls: int | None = None
    archived_at: str | None = None
    verified_by: str = VERIFIED_BY
    format: str = ARCHIVE_FORMAT

    @classmethod
    def for_archive(
        cls, archived: ArchivedFile, *, recording_id: str, project_id: int | str, **fields: Any
    ) -> ManifestEntry:
        """An entry for a verified archive (``path``, ``url``, ``size``, ``sha256`` from it)."""
        return cls(
            recording_id=recording_id,
            project_id=validate_project_id(project_id),
            path=archived.key,
            url=archived.url,
            size=archived.size,
            sha256=archived.sha256,
            verified_by=archived.verified_by,
            **fields,
        )


class ManifestWriter:
    """Writes a run's manifest lines under ``store`` (see the module's documentation).

    :param store: the archive's store.
    :param project_id: PostHog's project id (the manifests' folder).
    :param run_id: the Airflow run (or any name of the run), part of the file names.
    :param identifiers: ``"hashed"`` (default) or ``"clear"``.
    :param salt: hex salt of the hashes; random per writer by default.
    :param lines_per_part: lines per part object on an object store.
    :param flush_every: on an object store, write a part once its oldest line has waited
        this many seconds (checked when a line is added).
    :param clock: the time, for ``archived_at`` and the folder's day (tests).
    """

    def __init__(
        self,
        store: ArchiveStore,
        *,
        project_id: int | str,
        run_id: str,
        identifiers: str = "hashed",
        salt: str | None = None,
        lines_per_part: int = 1000,
        flush_every: float = 60.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if identifiers not in IDENTIFIERS:
            raise ValueError(f"identifiers must be 'hashed' or 'clear', got {identifiers!r}")
        if salt is not None:
            bytes.fromhex(salt)
        if lines_per_part < 1:
            raise ValueError(f"lines_per_part must be at least 1, got {lines_per_part!r}")
        self.store = store
        self.project_id = validate_project_id(project_id)
        self.run_id = run_id
        self.identifiers = identifiers
        self.salt = salt or secrets.token_hex(16)
        self.writer = secrets.token_hex(4)
        self.lines_per_part = lines_per_part
        self._clock = clock or (lambda: datetime.now(UTC))
        self._started = self._clock()
        self._part = 0
        self._pending: list[bytes] = []
        self._pending_since: datetime | None = None
        self.flush_every = flush_every
        self.parts: list[str] = []
        self.lines = 0

    def _key(self) -> str:
        return manifest_key(self.project_id, self._started, f"{self.run_id}.{self.writer}", self._part)

    def line(self, entry: ManifestEntry) -> dict[str, Any]:
        """The JSON object written for ``entry`` (its distinct id hashed unless clear)."""
        record = asdict(entry)
        record["sources"] = [dict(source) for source in entry.sources]
        record["identifiers"] = self.identifiers
        if self.identifiers == "hashed":
            record["salt"] = self.salt
            if entry.distinct_id is not None:
                record["distinct_id"] = hash_identifier(entry.distinct_id, self.salt)
        if record.get("archived_at") is None:
            record["archived_at"] = isoformat(self._clock())
        return record

    def add(self, entry: ManifestEntry) -> None:
        """Record one verified archive. Durable at once in a local folder; on an object store
        at the next :meth:`flush` (every ``lines_per_part`` lines or ``flush_every`` seconds,
        and on close)."""
        data = (json.dumps(self.line(entry), sort_keys=True, separators=(",", ":")) + "\n").encode()
        if self.store.local:
            key = self._key()
            self.store.append(key, data)
            if key not in self.parts:
                self.parts.append(key)
        else:
            now = self._clock()
            if not self._pending:
                self._pending_since = now
            self._pending.append(data)
            waited = (now - (self._pending_since or now)).total_seconds()
            if len(self._pending) >= self.lines_per_part or waited >= self.flush_every:
                self.flush()
        self.lines += 1

    def flush(self) -> str | None:
        """Write the gathered lines as a new part (object stores); returns its key, if any."""
        if not self._pending:
            return None
        key = self._key()
        self.store.write_small(key, b"".join(self._pending))
        self._pending.clear()
        self.parts.append(key)
        self._part += 1
        return key

    @property
    def pending(self) -> int:
        """Lines not yet written to the store."""
        return len(self._pending)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Lines are only ever added for verified archives: keep them even when the run fails.
        self.close()


def parse_manifest(text: str) -> Iterator[dict[str, Any]]:
    """The lines of a manifest part; a last line cut short by a crash is skipped."""
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                return
            raise ValueError(f"manifest line {number} is not JSON") from None
        if isinstance(record, dict):
            yield record


def read_manifest(store: ArchiveStore, key: str) -> list[dict[str, Any]]:
    """Every line of one manifest part (none if the part does not exist)."""
    data = store.read_small(key)
    return [] if data is None else list(parse_manifest(data.decode("utf-8")))
