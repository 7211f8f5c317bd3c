"""Archiving recordings into storage the user owns, in PostHog's importable format.

* :mod:`.layout`: where each recording's file lives under ``archive_to``.
* :mod:`.export`: the streaming writer of PostHog's "Export to JSON" format, gzipped.
* :mod:`.store`: writing so that nothing incomplete counts, verification, ``check_writable``.
* :mod:`.manifest`: one JSON line per archived recording.

Importing this package imports neither Airflow nor any storage library, and opens no
connection: the store imports ``ObjectStoragePath`` when it first touches an object store.
"""

from __future__ import annotations

from airflow_provider_recordings.archive.digest import Digest, HashingWriter
from airflow_provider_recordings.archive.errors import (
    ArchiveDestinationError,
    ArchiveError,
    ArchiveKeyError,
    ArchiveStorageError,
    ArchiveVerificationError,
    SnapshotFormatError,
)
from airflow_provider_recordings.archive.export import (
    FORMAT_VERSION,
    ExportResult,
    RecordingExportWriter,
    decompress_event,
)
from airflow_provider_recordings.archive.layout import (
    ArchiveKey,
    archive_key,
    manifest_key,
    parse_archive_key,
    sidecar_key,
    validate_recording_id,
)
from airflow_provider_recordings.archive.manifest import (
    ManifestEntry,
    ManifestWriter,
    hash_identifier,
    identifier_matches,
    parse_manifest,
    read_manifest,
)
from airflow_provider_recordings.archive.store import (
    ArchivedFile,
    ArchiveStore,
    ArchiveUpload,
    Verification,
    check_writable,
)

__all__ = [
    "FORMAT_VERSION",
    "ArchiveDestinationError",
    "ArchiveError",
    "ArchiveKey",
    "ArchiveKeyError",
    "ArchiveStorageError",
    "ArchiveStore",
    "ArchiveUpload",
    "ArchiveVerificationError",
    "ArchivedFile",
    "Digest",
    "ExportResult",
    "HashingWriter",
    "ManifestEntry",
    "ManifestWriter",
    "RecordingExportWriter",
    "SnapshotFormatError",
    "Verification",
    "archive_key",
    "check_writable",
    "decompress_event",
    "hash_identifier",
    "identifier_matches",
    "manifest_key",
    "parse_archive_key",
    "parse_manifest",
    "read_manifest",
    "sidecar_key",
    "validate_recording_id",
]
