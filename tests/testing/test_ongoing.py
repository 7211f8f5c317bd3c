"""``ongoing`` follows the emulator clock, and older deployments' variants of the field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from airflow_provider_recordings.testing import PostHogEmulator
from tests.testing.conftest import NOW, Client


def ongoing_ids(client: Client) -> set[str]:
    return {item["id"] for item in client.list(limit=1000).json()["results"] if item["ongoing"]}


def test_seeded_ongoing_recordings_stop_being_ongoing(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(20, days=2, ongoing=3)
    assert len(ongoing_ids(client)) == 3
    emu.clock.advance(4 * 60)
    assert len(ongoing_ids(client)) == 3
    emu.clock.advance(2 * 60)
    assert ongoing_ids(client) == set()


def test_five_minute_threshold(emu: PostHogEmulator, client: Client) -> None:
    start = NOW - timedelta(hours=1)
    emu.add_recording("fresh", start_time=start, end_time=NOW - timedelta(seconds=299))
    emu.add_recording("stale", start_time=start, end_time=NOW - timedelta(seconds=300))
    assert ongoing_ids(client) == {"fresh"}


def test_touch_makes_a_recording_ongoing(emu: PostHogEmulator, client: Client) -> None:
    start = NOW - timedelta(hours=2)
    emu.add_recording("rec", start_time=start, end_time=start + timedelta(minutes=10))
    assert client.get("rec/").json()["ongoing"] is False
    emu.clock.advance(30)
    emu.touch("rec")
    body = client.get("rec/").json()
    assert body["ongoing"] is True
    assert body["end_time"] == "2026-06-01T12:00:30Z"
    assert body["recording_duration"] == 2 * 3600 + 30
    emu.touch("rec", at=NOW - timedelta(hours=1))
    assert client.get("rec/").json()["ongoing"] is False


def test_touch_of_unknown_recording_raises(emu: PostHogEmulator) -> None:
    with pytest.raises(KeyError):
        emu.touch("nope")


@pytest.mark.parametrize(("mode", "present", "value"), [("missing", False, None), ("null", True, None)])
def test_ongoing_field_variants(
    make_emu: Callable[..., PostHogEmulator],
    make_client: Callable[..., Client],
    mode: str,
    present: bool,
    value: None,
) -> None:
    emu = make_emu(ongoing_field=mode)
    emu.add_recording("rec", start_time=NOW - timedelta(minutes=2), end_time=NOW)
    api = make_client(emu)
    for body in (api.get("rec/").json(), api.list().json()["results"][0]):
        assert ("ongoing" in body) is present
        assert body.get("ongoing", "absent") == (value if present else "absent")
    stored = emu.get("rec")
    assert stored is not None
    assert stored["ongoing"] is True
