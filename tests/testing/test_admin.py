"""The unauthenticated /_emulator/ endpoints a demo in another process relies on, through
the admin client that demos and benchmarks use."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_recordings.testing import EmulatorAdmin, EmulatorAdminError, PostHogEmulator, records
from tests.testing.conftest import NOW, Client


@pytest.fixture
def admin(emu: PostHogEmulator) -> EmulatorAdmin:
    return EmulatorAdmin(emu.url, timeout=10)


def test_stats_count_recordings_shared_and_ongoing(
    emu: PostHogEmulator, admin: EmulatorAdmin, client: Client
) -> None:
    emu.seed(10, days=2, ongoing=2, shared=3)
    client.list()
    stats = admin.stats()
    assert stats["recordings"] == 10
    assert stats["shared"] == 3
    assert stats["ongoing"] == 2
    assert stats["list"] == 1
    assert stats["now"] == "2026-06-01T12:00:00Z"


def test_admin_requests_are_not_api_traffic(emu: PostHogEmulator, admin: EmulatorAdmin) -> None:
    admin.stats()
    admin.recordings()
    admin.persons()
    assert emu.requests == []
    assert emu.stats()["total"] == 0


def test_recordings_listing(emu: PostHogEmulator, admin: EmulatorAdmin) -> None:
    emu.add_recording("old", start_time=NOW - timedelta(days=40), shared=True)
    emu.add_recording("live", start_time=NOW - timedelta(minutes=2), end_time=NOW, distinct_id="user-1")
    emu.add_recording("gone", start_time=NOW - timedelta(days=1))
    emu.delete("gone")
    body = admin.recordings()
    old = emu.get("old")
    assert old is not None
    assert body == [
        {
            "id": "live",
            "start_time": "2026-06-01T11:58:00Z",
            "end_time": "2026-06-01T12:00:00Z",
            "ongoing": True,
            "shared": False,
            "distinct_id": "user-1",
        },
        {
            "id": "old",
            "start_time": "2026-04-22T12:00:00Z",
            "end_time": "2026-04-22T12:01:00Z",
            "ongoing": False,
            "shared": True,
            "distinct_id": old["distinct_id"],
        },
    ]
    assert old["distinct_id"].startswith("user-"), "the derived id the API answers, never null"


def test_recordings_added_field_by_field(emu: PostHogEmulator, admin: EmulatorAdmin) -> None:
    ids = admin.add(
        [{"start_time": "2026-05-30T10:00:00+00:00", "end_time": "2026-05-30T10:05:00+00:00", "distinct_id": "user-7"},
         {"start_time": "2026-05-31T10:00:00+00:00", "id": "chosen", "shared": True, "lts": True,
          "snapshot_blocks": 3, "block_bytes": 2048}]
    )  # fmt: skip
    assert len(ids) == 2 and ids[1] == "chosen"
    assert emu.is_shared("chosen")
    assert [source["source"] for source in emu.snapshot_sources("chosen")] == ["blob_v2_lts"]
    assert len(emu.snapshot_content("chosen", source="blob_v2_lts")) == 3 * 2048
    first = emu.get(ids[0])
    assert first is not None and first["distinct_id"] == "user-7"
    assert first["recording_duration"] == 300
    assert emu.requests == []


def test_seed_and_clock(emu: PostHogEmulator, admin: EmulatorAdmin) -> None:
    seeded = admin.seed(8, days=3, ongoing=2, shared=1, seed=4, persons=2)
    assert len(seeded) == 8
    assert set(seeded) == emu.recording_ids()
    assert admin.stats()["ongoing"] == 2
    assert len(admin.persons()) == 2
    assert admin.advance_clock(600) == "2026-06-01T12:10:00Z"
    assert emu.clock.now() == NOW + timedelta(minutes=10)
    assert admin.now() == "2026-06-01T12:10:00Z"
    assert admin.stats()["ongoing"] == 0
    assert admin.set_clock(NOW) == "2026-06-01T12:00:00Z"


def test_seeded_persons_own_the_busiest_distinct_ids(emu: PostHogEmulator, admin: EmulatorAdmin) -> None:
    emu.seed(300, days=30, persons=3, seed=7)
    counts: dict[str, int] = {}
    for recording in admin.recordings():
        counts[recording["distinct_id"]] = counts.get(recording["distinct_id"], 0) + 1
    people = admin.persons()
    owned = [person["distinct_ids"][0] for person in people]
    assert sorted((-counts[d], d) for d in owned) == sorted((-n, d) for d, n in counts.items())[:3]
    # The same UUID the list endpoint shows in a recording's ``person``, so person_uuid filters match.
    assert [person["uuid"] for person in people] == [records.person_uuid(d) for d in owned]


def test_sharing_passwords_and_persons(emu: PostHogEmulator, admin: EmulatorAdmin) -> None:
    emu.add_recording("rec", start_time=NOW - timedelta(hours=1), distinct_id="erase-me")
    shared = admin.set_sharing("rec", enabled=True, password_required=True)
    assert (shared["enabled"], shared["password_required"]) == (True, True)
    created = admin.add_share_password("rec", "correct horse", note="for the auditor")
    assert created["password"] == "correct horse"
    listed = emu.sharing_object("rec")["share_passwords"]
    assert [(p["id"], p["note"], p["is_active"]) for p in listed] == [
        (created["id"], "for the auditor", True)
    ]
    assert "correct horse" not in str(listed)

    person = admin.add_person(["erase-me", "erase-me-mobile"], uuid="0192f3a1-7c2e-7d40-9a3b-5e8f6c1d2b4a")
    assert person["uuid"] == "0192f3a1-7c2e-7d40-9a3b-5e8f6c1d2b4a"
    assert admin.persons() == [person]
    assert admin.run_person_jobs() == 0
    assert emu.requests == []


def test_bad_admin_requests(emu: PostHogEmulator, admin: EmulatorAdmin) -> None:
    statuses = []
    for call in (
        lambda: admin.request("GET", "/_emulator/nothing"),
        lambda: admin.seed(2, ongoing=5),
        lambda: admin.advance_clock(-1),
        lambda: admin.set_sharing("nope", enabled=True),
        lambda: admin.add_share_password("nope"),
        lambda: admin.request("POST", "/_emulator/persons", {"persons": [{"distinct_ids": "x"}]}),
    ):
        with pytest.raises(EmulatorAdminError) as caught:
            call()
        statuses.append(caught.value.status)
    assert statuses == [404, 400, 400, 400, 400, 400]


def test_api_calls_through_the_client(emu: PostHogEmulator, admin: EmulatorAdmin) -> None:
    emu.seed(3, days=1)
    page = admin.api("/api/projects/1/session_recordings/?limit=2", key=emu.api_key)
    assert len(page["results"]) == 2
    with pytest.raises(EmulatorAdminError) as caught:
        admin.api("/api/projects/1/session_recordings/", key="phx_wrong")
    assert caught.value.status == 401
    assert caught.value.body["code"] == "authentication_failed"


def test_every_seeded_recording_shows_the_distinct_id_the_api_answers(
    emu: PostHogEmulator, admin: EmulatorAdmin, client: Client
) -> None:
    # As `python -m airflow_provider_recordings.testing --seed N` creates them: ongoing,
    # shared and persons' recordings among them.
    emu.seed(40, days=400, ongoing=3, shared=4, persons=2, seed=5)
    listed = admin.recordings()
    assert len(listed) == 40
    for recording in listed:
        answered = client.get(f"{recording['id']}/").json()
        assert recording["distinct_id"] is not None
        assert recording["distinct_id"] == answered["distinct_id"], recording["id"]
