"""Archiving recordings into storage the user owns, in PostHog's importable format.

* :mod:`.layout`: where each recording's file lives under ``archive_to``.
* :mod:`.export`: the streaming writer of PostHog's "Export to JSON" format, gzipped.

Importing this package imports neither Airflow nor any storage library, and opens no
connection.
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

__all__ = [
    "FORMAT_VERSION",
    "ArchiveDestinationError",
    "ArchiveError",
    "ArchiveKey",
    "ArchiveKeyError",
    "ArchiveStorageError",
    "ArchiveVerificationError",
    "Digest",
    "ExportResult",
    "HashingWriter",
    "RecordingExportWriter",
    "SnapshotFormatError",
    "archive_key",
    "decompress_event",
    "manifest_key",
    "parse_archive_key",
    "sidecar_key",
    "validate_recording_id",
]
