"""The emulator's persons endpoints, as PostHog answers them (posthog/api/person.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests

from airflow_provider_recordings.testing import PostHogEmulator, RateLimitConfig
from tests.testing.conftest import KEY, NOW


def persons(
    emu: PostHogEmulator, method: str = "GET", path: str = "", key: str = KEY, **kwargs: Any
) -> requests.Response:
    return requests.request(
        method,
        f"{emu.url}/api/projects/1/persons/{path}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
        **kwargs,
    )


def test_a_person_is_found_by_distinct_id_by_id_and_by_uuid(emu: PostHogEmulator) -> None:
    person = emu.add_person(["web-1", "mobile-1"])
    found = persons(emu, params={"distinct_id": "mobile-1"}).json()
    assert [p["uuid"] for p in found["results"]] == [person["uuid"]]
    assert found["next"] is None
    assert persons(emu, params={"distinct_id": "nobody"}).json()["results"] == []
    assert persons(emu, path=f"{person['uuid']}/").json()["distinct_ids"] == ["web-1", "mobile-1"]
    assert persons(emu, path=f"{person['id']}/").json()["uuid"] == person["uuid"]
    unknown = persons(emu, path="0192f3a1-7c2e-7d40-9a3b-5e8f6c1d2b4a/")
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "Person not found.")
    bad = persons(emu, path="web-1/")
    assert bad.status_code == 400 and "?distinct_id=" in bad.json()["detail"]


def test_deleting_a_persons_recordings_is_a_job_that_runs_later(emu: PostHogEmulator) -> None:
    person = emu.add_person(["web-1", "mobile-1"])
    theirs = {
        emu.add_recording(start_time=NOW - timedelta(days=d), distinct_id=u)["id"]
        for d, u in [(1, "web-1"), (300, "mobile-1")]
    }
    other = emu.add_recording(start_time=NOW - timedelta(days=1), distinct_id="someone")["id"]

    answer = persons(emu, "POST", f"{person['uuid']}/delete_recordings/")
    assert (answer.status_code, answer.content) == (202, b"")
    assert emu.recording_ids() == theirs | {other}, "the job has not run yet"
    emu.clock.advance(emu.person_job_delay)
    assert emu.run_person_jobs() == 2
    assert emu.recording_ids() == {other}
    assert persons(emu, params={"distinct_id": "web-1"}).json()["results"], "the person stays"


def test_the_route_needs_person_write_and_older_servers_lack_it(make_emu) -> None:
    emu = make_emu()
    emu.add_key("phx_read_only", scopes=["session_recording:read", "person:read"])
    person = emu.add_person(["web-1"])
    refused = persons(emu, "POST", f"{person['uuid']}/delete_recordings/", key="phx_read_only")
    assert refused.status_code == 403 and "person:write" in refused.json()["detail"]

    absent = make_emu(persons_route="absent")
    person = absent.add_person(["web-1"])
    assert persons(absent, "POST", f"{person['uuid']}/delete_recordings/").status_code == 404
    not_allowed = make_emu(persons_route="not_allowed")
    person = not_allowed.add_person(["web-1"])
    assert persons(not_allowed, "POST", f"{person['uuid']}/delete_recordings/").status_code == 405


def test_persons_reads_share_the_recordings_minute_window(make_emu) -> None:
    """A personal key's persons reads get only ``clickhouse_burst`` (240/minute): the
    same window as the recordings calls, and no hourly window."""
    limits = RateLimitConfig(per_minute=3, per_hour=2, time_scale=100)
    emu = make_emu(rate_limits=limits)
    assert persons(emu, params={"distinct_id": "x"}).status_code == 200
    assert persons(emu, params={"distinct_id": "x"}).status_code == 200
    assert persons(emu, params={"distinct_id": "x"}).status_code == 200, "no hour window for reads"
    listing = recordings_list(emu)
    assert listing.status_code == 429, "the minute window is shared with the recordings calls"
    assert persons(emu, params={"distinct_id": "x"}).status_code == 429


def test_persons_deletions_have_a_budget_of_their_own(make_emu) -> None:
    limits = RateLimitConfig(
        per_minute=1, persons_delete_per_minute=3, persons_delete_per_hour=100, time_scale=100
    )
    emu = make_emu(rate_limits=limits)
    people = [emu.add_person([f"web-{n}"]) for n in range(4)]
    assert recordings_list(emu).status_code == 200
    assert recordings_list(emu).status_code == 429, "the general window is full"
    statuses = [
        persons(emu, "POST", f"{people[0]['uuid']}/delete_recordings/").status_code,
        persons(emu, "POST", "bulk_delete/", json={"ids": [people[1]["uuid"]]}).status_code,
        persons(emu, "DELETE", f"{people[2]['uuid']}/").status_code,
        persons(emu, "DELETE", f"{people[3]['uuid']}/").status_code,
    ]
    assert statuses == [202, 202, 202, 429]
    emu.clock.advance(0.6)
    assert persons(emu, "DELETE", f"{people[3]['uuid']}/").status_code == 202


def recordings_list(emu: PostHogEmulator) -> requests.Response:
    return requests.get(
        f"{emu.url}/api/projects/1/session_recordings/",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )


# -- bulk_delete, destroy -------------------------------------------------------------------


def bulk_delete(emu: PostHogEmulator, key: str = KEY, **body: Any) -> requests.Response:
    return persons(emu, "POST", "bulk_delete/", key=key, json=body)


def test_bulk_delete_deletes_persons_now_and_recordings_later(emu: PostHogEmulator) -> None:
    person = emu.add_person(["web-1", "mobile-1"])
    theirs = {
        emu.add_recording(start_time=NOW - timedelta(days=d), distinct_id=u)["id"]
        for d, u in [(1, "web-1"), (400, "mobile-1")]
    }
    other = emu.add_recording(start_time=NOW - timedelta(days=1), distinct_id="someone")["id"]

    answer = bulk_delete(emu, ids=[person["uuid"]], delete_recordings=True)
    assert answer.status_code == 202
    assert answer.json() == {
        "persons_found": 1,
        "persons_deleted": 1,
        "events_queued_for_deletion": False,
        "recordings_queued_for_deletion": True,
        "deletion_errors": [],
    }
    assert persons(emu, path=f"{person['uuid']}/").status_code == 404, "the person goes at once"
    assert emu.recording_ids() == theirs | {other}, "the recordings job has not run yet"
    emu.clock.advance(emu.person_job_delay)
    assert emu.run_person_jobs() == 2, "every distinct id the person had"
    assert emu.recording_ids() == {other}


def test_bulk_delete_by_distinct_ids_and_keep_person(emu: PostHogEmulator) -> None:
    person = emu.add_person(["web-2", "mobile-2"])
    emu.add_recording("theirs", start_time=NOW - timedelta(days=1), distinct_id="mobile-2")
    emu.add_recording("orphan", start_time=NOW - timedelta(days=1), distinct_id="nobody-owns-me")
    answer = bulk_delete(
        emu,
        distinct_ids=["web-2", "nobody-owns-me"],
        delete_recordings=True,
        delete_events=True,
        keep_person=True,
    )
    assert answer.json() == {
        "persons_found": 1,
        "persons_deleted": 0,
        "events_queued_for_deletion": True,
        "recordings_queued_for_deletion": True,
        "deletion_errors": [],
    }
    assert persons(emu, path=f"{person['uuid']}/").status_code == 200, "kept"
    emu.clock.advance(emu.person_job_delay)
    emu.run_person_jobs()
    assert emu.recording_ids() == {"orphan"}, "a distinct id of no person is never found"

    nobody = bulk_delete(emu, distinct_ids=["nobody-owns-me"], delete_recordings=True)
    assert nobody.json()["persons_found"] == 0
    assert nobody.json()["recordings_queued_for_deletion"] is False
    emu.clock.advance(emu.person_job_delay)
    emu.run_person_jobs()
    assert emu.recording_ids() == {"orphan"}


def test_bulk_delete_without_delete_recordings_keeps_them(emu: PostHogEmulator) -> None:
    person = emu.add_person(["web-3"])
    emu.add_recording("kept", start_time=NOW - timedelta(days=1), distinct_id="web-3")
    body = bulk_delete(emu, ids=[person["uuid"]]).json()
    assert (body["persons_deleted"], body["recordings_queued_for_deletion"]) == (1, False)
    emu.clock.advance(emu.person_job_delay)
    emu.run_person_jobs()
    assert emu.recording_ids() == {"kept"}


def test_bulk_delete_reads_flags_by_truthiness(emu: PostHogEmulator) -> None:
    person = emu.add_person(["web-4"])
    emu.add_recording("gone", start_time=NOW - timedelta(days=1), distinct_id="web-4")
    body = bulk_delete(emu, ids=[person["uuid"]], delete_recordings="false", keep_person=0).json()
    assert (body["recordings_queued_for_deletion"], body["persons_deleted"]) == (True, 1)
    emu.clock.advance(emu.person_job_delay)
    emu.run_person_jobs()
    assert emu.recording_ids() == set()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"ids": ["a"], "distinct_ids": ["b"]}, "You must provide either distinct_ids or ids, not both"),
        ({"distinct_ids": [f"d{n}" for n in range(1001)]}, "You can only pass 1000 distinct_ids in one call"),
        ({"ids": [f"i{n}" for n in range(1001)]}, "You can only pass 1000 ids in one call"),
        ({}, "You need to specify either distinct_ids or ids"),
        ({"ids": []}, "You need to specify either distinct_ids or ids"),
    ],
)
def test_bulk_delete_refusals(emu: PostHogEmulator, body: dict[str, Any], detail: str) -> None:
    answer = bulk_delete(emu, **body)
    assert answer.status_code == 400
    assert answer.json() == {
        "type": "validation_error",
        "code": "invalid_input",
        "detail": detail,
        "attr": None,
    }


def test_bulk_delete_takes_a_thousand(emu: PostHogEmulator) -> None:
    emu.add_person(["d999"])
    answer = bulk_delete(emu, distinct_ids=[f"d{n}" for n in range(1000)])
    assert (answer.status_code, answer.json()["persons_found"]) == (202, 1)


def test_bulk_delete_scope_and_older_servers(make_emu) -> None:
    emu = make_emu()
    emu.add_key("phx_reader", scopes=["person:read"])
    refused = bulk_delete(emu, key="phx_reader", ids=["x"])
    assert refused.status_code == 403 and "person:write" in refused.json()["detail"]
    assert bulk_delete(make_emu(persons_bulk_delete="absent"), ids=["x"]).status_code == 404
    assert bulk_delete(make_emu(persons_bulk_delete="not_allowed"), ids=["x"]).status_code == 405
    with pytest.raises(ValueError, match="persons_bulk_delete"):
        make_emu(persons_bulk_delete="gone")


def test_destroy_reads_flags_by_presence(emu: PostHogEmulator) -> None:
    first = emu.add_person(["web-5"])
    second = emu.add_person(["web-6"])
    emu.add_recording("five", start_time=NOW - timedelta(days=1), distinct_id="web-5")
    emu.add_recording("six", start_time=NOW - timedelta(days=1), distinct_id="web-6")
    answer = persons(emu, "DELETE", f"{first['uuid']}/", params={"delete_recordings": "false"})
    assert (answer.status_code, answer.content) == (202, b"")
    assert persons(emu, "DELETE", f"{second['id']}/", params={"keep_person": ""}).status_code == 202
    assert persons(emu, path=f"{first['uuid']}/").status_code == 404
    assert persons(emu, path=f"{second['uuid']}/").status_code == 200, "kept"
    emu.clock.advance(emu.person_job_delay)
    emu.run_person_jobs()
    assert emu.recording_ids() == {"six"}, "?delete_recordings=false still deletes them"
    assert persons(emu, "DELETE", "web-6/").status_code == 400
    assert persons(emu, "DELETE", "0192f3a1-7c2e-7d40-9a3b-5e8f6c1d2b4a/").status_code == 404


def test_the_job_finds_seeded_recordings_by_their_derived_distinct_id(emu: PostHogEmulator) -> None:
    ids = emu.seed(200, days=10, persons=1, seed=3)
    (person,) = emu.list_persons()
    (distinct_id,) = person["distinct_ids"]
    theirs = {recording_id for recording_id in ids if emu.get(recording_id)["distinct_id"] == distinct_id}  # type: ignore[index]
    assert theirs
    bulk_delete(emu, distinct_ids=[distinct_id], delete_recordings=True)
    emu.clock.advance(emu.person_job_delay)
    assert emu.run_person_jobs() == len(theirs)
    assert emu.recording_ids() == set(ids) - theirs
