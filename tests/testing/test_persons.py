"""The emulator's persons endpoints, as PostHog answers them (posthog/api/person.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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


def test_persons_have_a_budget_of_their_own(make_emu) -> None:
    limits = RateLimitConfig(per_minute=2, per_hour=100, persons_per_minute=3, persons_per_hour=100)
    emu = make_emu(rate_limits=limits)
    for _ in range(3):
        assert persons(emu, params={"distinct_id": "x"}).status_code == 200
    assert persons(emu, params={"distinct_id": "x"}).status_code == 429
    # The recordings budget is untouched by the persons calls.
    listing = requests.get(
        f"{emu.url}/api/projects/1/session_recordings/",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert listing.status_code == 200
