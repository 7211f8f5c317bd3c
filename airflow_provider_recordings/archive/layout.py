"""Where each archived recording lives under ``archive_to``.

One gzip file per recording, by project and by the day the recording started (UTC)::

    <archive_to>/project=<project id>/<YYYY>/<MM>/<DD>/<recording id>.json.gz
    <archive_to>/project=<project id>/<YYYY>/<MM>/<DD>/<recording id>.json.gz.sha256

A day's folder holds that day's recordings only, so a project with a million recordings
a month has about 33,000 files a day: every console, ``aws s3 ls`` and file manager lists
a folder like that, and a date range is a prefix to copy, sync or expire
(``project=12/2024/03/`` is March 2024). The ``.sha256`` sidecar is the archive's
"verified" mark (see :mod:`~airflow_provider_recordings.archive.store`). Manifests have a
folder of their own (:func:`manifest_key`), beside the projects, never mixed into them.

Keys are built from validated parts only: a recording id cannot climb out of its folder
(``/``, ``\\``, ``..``) or turn a URL into something else (``?``, ``#``, ``%``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from airflow_provider_recordings.archive.errors import ArchiveKeyError

#: Suffix of an archived recording, and of its checksum sidecar.
ARCHIVE_SUFFIX = ".json.gz"
SIDECAR_SUFFIX = ".sha256"
#: Folder of the manifests, directly under ``archive_to``.
MANIFESTS = "manifests"

#: What a recording id may contain: PostHog's session ids are UUIDs; custom ones are
#: accepted as long as they stay one path segment that needs no escaping in a URL.
_RECORDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~:@+=-]{0,199}$")
_PROJECT_ID = re.compile(r"^[0-9]{1,20}$")
_RUN_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
_ARCHIVE_KEY = re.compile(
    r"^project=(?P<project>[0-9]+)/(?P<y>[0-9]{4})/(?P<m>[0-9]{2})/(?P<d>[0-9]{2})/"
    r"(?P<id>[^/]+)\.json\.gz$"
)


def validate_recording_id(recording_id: object) -> str:
    """The id, if it is safe as one file name; :class:`ArchiveKeyError` otherwise."""
    if not isinstance(recording_id, str) or not recording_id:
        raise ArchiveKeyError(f"a recording id must be a non-empty string, got {recording_id!r}")
    if ".." in recording_id or not _RECORDING_ID.match(recording_id):
        raise ArchiveKeyError(
            f"recording id {recording_id!r} cannot name an archive file: it must be 1-200 letters, "
            "digits or '._~:@+=-', start with a letter or digit and contain no '..'"
        )
    return recording_id


def validate_project_id(project_id: object) -> str:
    text = str(project_id).strip() if isinstance(project_id, int | str) else ""
    if isinstance(project_id, bool) or not _PROJECT_ID.match(text):
        raise ArchiveKeyError(f"a project id is PostHog's numeric id, got {project_id!r}")
    return text


def as_utc(moment: datetime | str) -> datetime:
    """A recording's time as an aware UTC datetime: PostHog's ISO strings (``Z`` or an
    offset) or a datetime; a naive one is taken as UTC, as PostHog's times are."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ArchiveKeyError(f"not an ISO 8601 time: {moment!r}") from None
    if not isinstance(moment, datetime):
        raise ArchiveKeyError(f"a recording's start time must be a datetime or ISO string, got {moment!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def archive_key(project_id: int | str, recording_id: str, start_time: datetime | str) -> str:
    """The archive's key relative to ``archive_to``:
    ``project=<id>/<YYYY>/<MM>/<DD>/<recording id>.json.gz`` (the start's UTC day)."""
    project = validate_project_id(project_id)
    recording = validate_recording_id(recording_id)
    day = as_utc(start_time)
    return f"project={project}/{day:%Y}/{day:%m}/{day:%d}/{recording}{ARCHIVE_SUFFIX}"


def sidecar_key(key: str) -> str:
    """The checksum sidecar of an archive key (``….json.gz.sha256``)."""
    return key + SIDECAR_SUFFIX


@dataclass(frozen=True)
class ArchiveKey:
    """An archive key taken apart."""

    project_id: str
    day: date
    recording_id: str


def parse_archive_key(key: str) -> ArchiveKey:
    """Take an archive key apart; :class:`ArchiveKeyError` for anything else."""
    found = _ARCHIVE_KEY.match(key)
    if not found:
        raise ArchiveKeyError(f"not an archive key (project=<id>/<YYYY>/<MM>/<DD>/<id>.json.gz): {key!r}")
    try:
        day = date(int(found["y"]), int(found["m"]), int(found["d"]))
    except ValueError:
        raise ArchiveKeyError(f"not a date in archive key {key!r}") from None
    return ArchiveKey(found["project"], day, validate_recording_id(found["id"]))


def run_key(run_id: str) -> str:
    """An Airflow run id made safe as a file name (``manual__2024-01-02T03:04:05+00:00``
    keeps its letters, digits and ``._=+-``; anything else becomes ``_``)."""
    if not isinstance(run_id, str) or not run_id.strip():
        raise ArchiveKeyError(f"a run id must be a non-empty string, got {run_id!r}")
    safe = _RUN_KEY_UNSAFE.sub("_", run_id.strip()).strip("._") or "run"
    return safe[:150]


def manifest_key(project_id: int | str, written_at: datetime, run: str, part: int) -> str:
    """A manifest part's key relative to ``archive_to``:
    ``manifests/project=<id>/<YYYY>/<MM>/<DD>/<run>.part-<NNNNN>.jsonl``, by the UTC day the
    part was started. ``run`` goes through :func:`run_key`."""
    project = validate_project_id(project_id)
    if not isinstance(part, int) or part < 0:
        raise ArchiveKeyError(f"a manifest part is a number from 0, got {part!r}")
    day = as_utc(written_at)
    return f"{MANIFESTS}/project={project}/{day:%Y}/{day:%m}/{day:%d}/{run_key(run)}.part-{part:05d}.jsonl"
