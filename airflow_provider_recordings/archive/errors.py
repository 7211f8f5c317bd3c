"""What can go wrong while archiving, as types a caller can tell apart.

* :class:`ArchiveDestinationError`: ``archive_to`` cannot be used at all (a typo, a
  missing extra, no permission): a configuration error, raised before the first request.
* :class:`ArchiveStorageError`: the store failed while a recording was being written or
  read back (the server went away, refused a write, ran out of space). The recording is
  not archived; a later run tries again.
* :class:`ArchiveVerificationError`: the bytes read back are not the bytes written.
* :class:`SnapshotFormatError`: PostHog's snapshot content is not what the archive format
  can hold (a broken line, an unknown compression, no event at all).

None of them ever counts a recording as archived.
"""

from __future__ import annotations

from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogError


class ArchiveError(PostHogError):
    """Base class of the archive's errors."""


class ArchiveKeyError(ArchiveError, ValueError):
    """An id or time cannot name an archive file."""


class ArchiveDestinationError(ArchiveError, PostHogConfigError):
    """``archive_to`` is unusable; the message starts with ``archive_to:``."""

    def __init__(self, message: str, *, field: str = "archive_to", problem: str | None = None) -> None:
        super().__init__(message, field=field, problem=problem)


class ArchiveStorageError(ArchiveError):
    """The store failed during a write or a read; nothing written by that call counts."""


class ArchiveVerificationError(ArchiveStorageError):
    """The archive read back differs from what was written (size or SHA-256)."""


class SnapshotFormatError(ArchiveError, ValueError):
    """Snapshot content that cannot be archived in PostHog's import format."""
