"""The unauthenticated /_emulator/ endpoints a demo in another process relies on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import requests

from airflow_provider_recordings.testing import PostHogEmulator
from tests.testing.conftest import NOW, Client


def admin(emu: PostHogEmulator, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{emu.url}/_emulator/{path}", json=body, timeout=10)


def test_stats_count_recordings_shared_and_ongoing(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(10, days=2, ongoing=2, shared=3)
    client.list()
    stats = admin(emu, "GET", "stats").json()
    assert stats["recordings"] == 10
    assert stats["shared"] == 3
    assert stats["ongoing"] == 2
    assert stats["list"] == 1
    assert stats["now"] == "2026-06-01T12:00:00Z"


def test_admin_requests_are_not_api_traffic(emu: PostHogEmulator) -> None:
    admin(emu, "GET", "stats")
    admin(emu, "GET", "recordings")
    assert emu.requests == []
    assert emu.stats()["total"] == 0


def test_recordings_listing(emu: PostHogEmulator) -> None:
    emu.add_recording("old", start_time=NOW - timedelta(days=40), shared=True)
    emu.add_recording("live", start_time=NOW - timedelta(minutes=2), end_time=NOW, distinct_id="user-1")
    emu.add_recording("gone", start_time=NOW - timedelta(days=1))
    emu.delete("gone")
    body = admin(emu, "GET", "recordings").json()
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
            "distinct_id": None,
        },
    ]


def test_recordings_added_field_by_field(emu: PostHogEmulator) -> None:
    body = admin(
        emu,
        "POST",
        "recordings",
        {"recordings": [{"start_time": "2026-05-30T10:00:00+00:00", "end_time": "2026-05-30T10:05:00+00:00",
                         "distinct_id": "user-7"}, {"start_time": "2026-05-31T10:00:00+00:00", "id": "chosen"}]},
    ).json()  # fmt: skip
    assert body["count"] == 2 and body["ids"][1] == "chosen"
    first = emu.get(body["ids"][0])
    assert first is not None and first["distinct_id"] == "user-7"
    assert first["recording_duration"] == 300
    assert emu.requests == []


def test_seed_and_clock(emu: PostHogEmulator) -> None:
    seeded = admin(emu, "POST", "seed", {"n": 8, "days": 3, "ongoing": 2, "shared": 1, "seed": 4}).json()
    assert seeded["count"] == 8
    assert set(seeded["ids"]) == emu.recording_ids()
    assert admin(emu, "GET", "stats").json()["ongoing"] == 2
    moved = admin(emu, "POST", "clock", {"advance": 600}).json()
    assert moved["now"] == "2026-06-01T12:10:00Z"
    assert emu.clock.now() == NOW + timedelta(minutes=10)
    assert admin(emu, "GET", "stats").json()["ongoing"] == 0


def test_bad_admin_requests(emu: PostHogEmulator) -> None:
    assert admin(emu, "GET", "nothing").status_code == 404
    assert admin(emu, "POST", "seed", {"n": 2, "ongoing": 5}).status_code == 400
    assert admin(emu, "POST", "clock", {"advance": -1}).status_code == 400
