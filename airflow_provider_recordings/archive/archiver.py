"""Archive one recording: read its content from PostHog and write it, verified, to the store.

The one mechanism both the archive operator and the retention operator (with
``archive_to``) use. For each recording: if its archive is already there and verifies,
nothing is fetched; otherwise the snapshot sources are listed (one call), the content is
read in the largest ranges PostHog accepts (or the one long-term-storage object) and
streamed, through :class:`~airflow_provider_recordings.archive.export.RecordingExportWriter`,
into :meth:`~airflow_provider_recordings.archive.store.ArchiveStore.upload`, which counts
it as archived only once written completely and read back. Then the manifest gets its
line. Nothing of a recording is ever held in memory whole.

Outcomes that concern one recording are returned (``archived``, ``already_archived``,
``gone`` for a 410/404, ``unavailable`` for a 502 that outlived its retries,
``failed``); what concerns the run (a key without ``session_recording:read``, the rate
budget, a stop, a store that keeps refusing writes) is raised.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_recordings.archive.errors import ArchiveError, ArchiveStorageError
from airflow_provider_recordings.archive.export import RecordingExportWriter
from airflow_provider_recordings.archive.layout import archive_key
from airflow_provider_recordings.archive.manifest import ManifestEntry
from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogAuthError,
    PostHogNotFoundError,
    PostHogRateLimitError,
    PostHogStreamInterruptedError,
)
from airflow_provider_recordings.core.snapshots import (
    BLOB_V2,
    BLOB_V2_LTS,
    SERVER_MAX_BLOB_KEY_SPAN,
    SnapshotSource,
    SnapshotSources,
    SnapshotSourcesError,
    block_ranges,
    is_blocks_unavailable,
    parse_sources,
    plan_content,
    sources_request,
)

if TYPE_CHECKING:
    from airflow_provider_recordings.archive.manifest import ManifestWriter
    from airflow_provider_recordings.archive.store import ArchiveStore
    from airflow_provider_recordings.hooks.posthog import PostHogHook

ARCHIVED = "archived"
ALREADY_ARCHIVED = "already_archived"
GONE = "gone"
UNAVAILABLE = "unavailable"
FAILED = "failed"

#: Outcomes after which the recording is safely in the archive (and may be deleted).
SAFE = frozenset({ARCHIVED, ALREADY_ARCHIVED})

#: Store failures in a row after which the run stops: the store is down, and every further
#: recording would spend snapshot budget for nothing.
STORE_FAILURES_IN_A_ROW = 3

#: Times a recording whose content broke off mid-answer is read again from the start.
STREAM_ATTEMPTS = 2


@dataclass(frozen=True)
class ArchiveOutcome:
    """What became of one recording."""

    recording_id: str
    status: str
    key: str
    size: int | None = None
    sha256: str | None = None
    calls: int = 0
    reason: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return self.status in SAFE


@dataclass
class KnownSources:
    """A recording's sources listing in a few bytes, kept in a run's state when the snapshot
    budget ran out between its listing and its content, so that the call is not spent twice.

    ``ranges`` are inclusive ranges of the ``blob_v2`` keys; ``lts_key`` the ``blob_v2_lts``
    source's key; ``calls`` the snapshot calls already spent on the recording.
    """

    lts_key: str | None = None
    ranges: list[list[int]] = field(default_factory=list)
    calls: int = 1

    @classmethod
    def of(cls, sources: SnapshotSources, *, calls: int = 1) -> KnownSources:
        if sources.lts is not None:
            return cls(lts_key=sources.lts.blob_key, calls=calls)
        spans = block_ranges(sources.block_keys, SERVER_MAX_BLOB_KEY_SPAN)
        return cls(ranges=[[start, end] for start, end in spans], calls=calls)

    def sources(self, recording_id: str) -> SnapshotSources:
        if self.lts_key is not None:
            return SnapshotSources(recording_id, lts=SnapshotSource(BLOB_V2_LTS, self.lts_key))
        keys = [key for start, end in self.ranges for key in range(start, end + 1)]
        return SnapshotSources(recording_id, blocks=tuple(SnapshotSource(BLOB_V2, str(key)) for key in keys))


@dataclass
class _Spent:
    """Snapshot calls made for one recording so far (retries of one call not counted)."""

    calls: int = 0


class Archiver:
    """Archives recordings of one project into one store (thread-safe: one per run pass)."""

    def __init__(
        self,
        hook: PostHogHook,
        store: ArchiveStore,
        manifest: ManifestWriter,
        *,
        project_id: str,
        known_sources: dict[str, KnownSources] | None = None,
    ) -> None:
        self.hook = hook
        self.store = store
        self.manifest = manifest
        self.project_id = project_id
        self._lock = threading.Lock()
        self._store_failures = 0
        #: Set once the store failed STORE_FAILURES_IN_A_ROW recordings: nothing more starts.
        self.store_failed: str | None = None
        #: Listings read before the budget ran out, by recording (the run's state keeps this
        #: dict across its deferral: pass the same one to the archiver of the resumed pass).
        self.known_sources: dict[str, KnownSources] = {} if known_sources is None else known_sources

    def key(self, recording: dict[str, Any]) -> str:
        return archive_key(self.project_id, str(recording["id"]), recording.get("start_time") or "")

    def archive(self, recording: dict[str, Any]) -> ArchiveOutcome:
        self.check_store()
        outcome = self._archive(recording)
        # Whatever became of it, a listing kept across a deferral has served its purpose.
        with self._lock:
            self.known_sources.pop(outcome.recording_id, None)
        return outcome

    def _archive(self, recording: dict[str, Any]) -> ArchiveOutcome:
        recording_id = str(recording["id"])
        key = ""
        spent = _Spent()
        try:
            # Inside the try: an id that cannot name a file, or a store that cannot be read,
            # concerns this recording (and the store's count of failures), not the run.
            key = self.key(recording)
            if self.store.exists_and_verifies(key):
                return ArchiveOutcome(recording_id, ALREADY_ARCHIVED, key)
            for attempt in range(1, STREAM_ATTEMPTS + 1):
                try:
                    return self._fetch_and_store(recording, key, spent)
                except PostHogStreamInterruptedError:
                    if attempt == STREAM_ATTEMPTS:
                        raise
        except (PostHogAuthError, PostHogRateLimitError):
            # A key without session_recording:read fails every recording: stop the run. A
            # spent budget is the run's to wait for (it defers, and comes back to this one).
            raise
        except PostHogApiError as exc:
            if exc.status in (404, 410):
                return ArchiveOutcome(recording_id, GONE, key, calls=spent.calls, reason=str(exc))
            status = UNAVAILABLE if is_blocks_unavailable(exc) else FAILED
            return ArchiveOutcome(recording_id, status, key, calls=spent.calls, reason=str(exc))
        except ArchiveStorageError as exc:
            self._store_failed()
            return ArchiveOutcome(recording_id, FAILED, key, calls=spent.calls, reason=str(exc))
        except (ArchiveError, SnapshotSourcesError, PostHogStreamInterruptedError) as exc:
            return ArchiveOutcome(recording_id, FAILED, key, calls=spent.calls, reason=str(exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch_and_store(self, recording: dict[str, Any], key: str, spent: _Spent) -> ArchiveOutcome:
        recording_id = str(recording["id"])
        with self._lock:
            known = self.known_sources.get(recording_id)
        if known is not None:
            sources = known.sources(recording_id)
            spent.calls = max(spent.calls, known.calls)
        else:
            spent.calls += 1
            sources = parse_sources(self.hook.send(sources_request(recording_id)), recording_id)
        planned = plan_content(sources)
        try:
            with self.store.upload(key) as upload:
                writer = RecordingExportWriter(
                    upload, recording_id=recording_id, person=recording.get("person")
                )
                for content in planned:
                    spent.calls += 1
                    self.hook.stream(content.request, writer.feed)
                    writer.end_of_content()
                exported = writer.close()
        except PostHogRateLimitError:
            # The budget ran out after the listing was read: the run defers with it, and the
            # resumed run reads the content without listing the sources again.
            with self._lock:
                self.known_sources[recording_id] = KnownSources.of(sources, calls=spent.calls - 1)
            raise
        except PostHogNotFoundError:
            if known is None:
                raise
            # A listing kept across a deferral that no longer holds: list the sources again.
            with self._lock:
                self.known_sources.pop(recording_id, None)
            return self._fetch_and_store(recording, key, spent)
        archived = upload.result
        assert archived is not None
        described = [content.describe() for content in planned]
        self.manifest.add(
            ManifestEntry.for_archive(
                archived,
                recording_id=recording_id,
                project_id=self.project_id,
                start_time=recording.get("start_time"),
                end_time=recording.get("end_time"),
                distinct_id=recording.get("distinct_id"),
                events=exported.events,
                sources=described,
                api_calls=spent.calls,
            )
        )
        with self._lock:
            self._store_failures = 0
        return ArchiveOutcome(
            recording_id, ARCHIVED, key, archived.size, archived.sha256, spent.calls, sources=described
        )

    def check_store(self) -> None:
        """Raise :class:`ArchiveStorageError` once the store failed too many recordings in a
        row: every further recording would spend snapshot budget for nothing."""
        if self.store_failed is not None:
            raise ArchiveStorageError(self.store_failed)

    def _store_failed(self) -> None:
        """One more recording the store failed. The one that reaches the limit is still
        returned (and reported) as failed; the run stops before the next one."""
        with self._lock:
            self._store_failures += 1
            if self._store_failures >= STORE_FAILURES_IN_A_ROW and self.store_failed is None:
                self.store_failed = (
                    f"archive_to: the store failed {self._store_failures} recordings in a row; stopping "
                    "the run (the next run archives what is missing)"
                )
