"""Where archives and manifests live under ``archive_to``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from airflow_provider_recordings.archive import (
    ArchiveKeyError,
    archive_key,
    manifest_key,
    parse_archive_key,
    sidecar_key,
    validate_recording_id,
)
from airflow_provider_recordings.archive.layout import run_key


def test_an_archive_lives_under_its_project_and_the_utc_day_it_started():
    key = archive_key(12, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "2024-03-05T23:59:59.999Z")
    assert key == "project=12/2024/03/05/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.json.gz"
    assert sidecar_key(key) == key + ".sha256"


@pytest.mark.parametrize(
    ("start", "day"),
    [
        ("2024-03-05T23:30:00-02:00", "2024/03/06"),  # an offset moves it to the next UTC day
        ("2024-03-06T00:30:00+01:00", "2024/03/05"),
        (datetime(2024, 3, 5, 12), "2024/03/05"),  # naive: UTC, as PostHog's times are
        (datetime(2024, 3, 5, 23, tzinfo=timezone(timedelta(hours=-5))), "2024/03/06"),
        ("2024-03-05 10:00:00", "2024/03/05"),
        ("2024-03-05T10:00:00.123456+00:00", "2024/03/05"),
    ],
)
def test_the_day_is_the_utc_day(start, day):
    assert archive_key("1", "r", start) == f"project=1/{day}/r.json.gz"


@pytest.mark.parametrize(
    "recording_id",
    [
        "",
        "a/b",
        "../x",
        "a..b",
        "..",
        ".hidden",
        "with space",
        "q?x",
        "h#x",
        "p%2Fx",
        "back\\slash",
        "x" * 201,
        7,
        None,
    ],
)
def test_ids_that_could_escape_or_mangle_a_path_are_refused(recording_id):
    with pytest.raises(ArchiveKeyError):
        archive_key(1, recording_id, "2024-03-05T00:00:00Z")


@pytest.mark.parametrize(
    "recording_id", ["0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "abc_DEF.1", "x:y@z+w=v~u", "x" * 200]
)
def test_posthog_and_custom_session_ids_are_accepted(recording_id):
    assert validate_recording_id(recording_id) == recording_id


@pytest.mark.parametrize("project_id", ["", "abc", "1/2", "-1", True, 1.5, None])
def test_a_project_id_is_numeric(project_id):
    with pytest.raises(ArchiveKeyError, match="project id"):
        archive_key(project_id, "r", "2024-03-05T00:00:00Z")


@pytest.mark.parametrize("start", ["yesterday", "", 1709600000, None])
def test_a_start_time_must_be_a_time(start):
    with pytest.raises(ArchiveKeyError):
        archive_key(1, "r", start)


def test_archive_keys_parse_back():
    key = archive_key(12, "rec-1", "2024-03-05T10:00:00Z")
    parsed = parse_archive_key(key)
    assert (parsed.project_id, parsed.day, parsed.recording_id) == ("12", date(2024, 3, 5), "rec-1")
    for other in ("project=12/2024/03/05/rec-1.json", "manifests/x.jsonl", "project=1/2024/13/01/r.json.gz"):
        with pytest.raises(ArchiveKeyError):
            parse_archive_key(other)


def test_manifest_parts_have_a_folder_of_their_own_by_day():
    key = manifest_key(
        12, datetime(2024, 4, 5, 1, 2, 3, tzinfo=UTC), "scheduled__2024-04-05T00:00:00+00:00.ab12", 3
    )
    assert key == "manifests/project=12/2024/04/05/scheduled__2024-04-05T00_00_00+00_00.ab12.part-00003.jsonl"


def test_run_keys_are_safe_file_names():
    assert run_key("manual__2024-01-02T03:04:05.678+00:00") == "manual__2024-01-02T03_04_05.678+00_00"
    assert run_key("../../etc") == "etc"
    assert "/" not in run_key("a/b/c")
    with pytest.raises(ArchiveKeyError):
        run_key("  ")
    with pytest.raises(ArchiveKeyError):
        manifest_key(1, datetime(2024, 1, 1, tzinfo=UTC), "run", -1)
