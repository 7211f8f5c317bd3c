"""PostHog's built-in ``synthetic-shared`` playlist: its count and its recordings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator, RateLimitConfig
from airflow_provider_recordings.testing.playlists import one_year_before
from tests.testing.conftest import KEY, NOW, Client

BASE = "/api/projects/1/session_recording_playlists/synthetic-shared/"


def playlist(
    emu: PostHogEmulator, path: str = "", key: str = KEY, base: str = BASE, **params: Any
) -> requests.Response:
    return requests.get(
        f"{emu.url}{base}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def shared(emu: PostHogEmulator, name: str, *, days: float = 1, **fields: Any) -> str:
    return emu.add_recording(name, start_time=NOW - timedelta(days=days), shared=True, **fields)["id"]


def ids_of(answer: requests.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [row["id"] for row in answer.json()["results"]]


def test_retrieve_carries_the_count(emu: PostHogEmulator) -> None:
    empty = playlist(emu).json()
    assert empty["recordings_counts"]["collection"]["count"] is None, "null when 0"
    for n in range(3):
        shared(emu, f"s{n}")
    emu.add_recording("private", start_time=NOW - timedelta(days=1))
    body = playlist(emu).json()
    assert {
        key: body[key] for key in ("id", "short_id", "name", "type", "is_synthetic", "pinned", "deleted")
    } == {
        "id": -3,
        "short_id": "synthetic-shared",
        "name": "Shared recordings",
        "type": "collection",
        "is_synthetic": True,
        "pinned": False,
        "deleted": False,
    }
    assert body["recordings_counts"] == {
        "saved_filters": {
            "count": None,
            "has_more": None,
            "watched_count": None,
            "increased": None,
            "last_refreshed_at": None,
        },
        "collection": {
            "count": 3,
            "has_more": False,
            "watched_count": 0,
            "increased": None,
            "last_refreshed_at": None,
        },
    }


def test_the_count_comes_from_the_sharing_table(emu: PostHogEmulator, client: Client) -> None:
    for n in range(4):
        shared(emu, f"s{n}", viewed=n == 0)
    emu.delete("s1")  # its sharing configuration stays behind
    emu.set_shared("s2", False)
    # A refresh leaves the old configuration enabled: still "shared" once disabled.
    client.post("s3/sharing/refresh/", {})
    client.patch("s3/sharing/", {"enabled": False})
    counts = playlist(emu).json()["recordings_counts"]["collection"]
    assert (counts["count"], counts["watched_count"]) == (3, 1)
    assert ids_of(playlist(emu, "recordings/")) == ["s0", "s3"], "the deleted one yields nothing"


def test_pages_are_taken_from_the_sharing_table_then_looked_up(emu: PostHogEmulator) -> None:
    order = [shared(emu, f"s{n}", days=n + 1) for n in range(6)]
    emu.delete("s2")
    assert ids_of(playlist(emu, "recordings/", limit=3)) == ["s0", "s1"], "a short page before the end"
    assert ids_of(playlist(emu, "recordings/", limit=3, offset=3)) == order[3:]
    assert ids_of(playlist(emu, "recordings/", limit=3, offset=6)) == []
    assert ids_of(playlist(emu, "recordings/", limit=0)) == []
    assert ids_of(playlist(emu, "recordings/")) == ["s0", "s1", "s3", "s4", "s5"]
    body = playlist(emu, "recordings/").json()
    assert set(body) == {"results", "has_next", "version"}
    assert (body["has_next"], body["version"]) == (False, 4)
    row = body["results"][0]
    assert row == client_row(emu, "s0")


def client_row(emu: PostHogEmulator, recording_id: str) -> dict[str, Any]:
    listed = requests.get(
        f"{emu.url}/api/projects/1/session_recordings/",
        params={"session_ids": f'["{recording_id}"]'},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    (row,) = listed.json()["results"]
    return row  # type: ignore[no-any-return]


def test_shared_recordings_older_than_a_year_drop_out_unless_persisted(emu: PostHogEmulator) -> None:
    cutoff = one_year_before(NOW)
    emu.add_recording("edge", start_time=cutoff, shared=True)
    emu.add_recording("older", start_time=cutoff - timedelta(seconds=1), shared=True)
    emu.add_recording("older-lts", start_time=cutoff - timedelta(days=30), shared=True, lts=True)
    emu.add_recording("recent", start_time=NOW - timedelta(days=3), shared=True)
    body = playlist(emu, "recordings/").json()
    assert [row["id"] for row in body["results"]] == ["edge", "older-lts", "recent"], "in the page's id order"
    assert playlist(emu).json()["recordings_counts"]["collection"]["count"] == 4
    persisted = next(row for row in body["results"] if row["id"] == "older-lts")
    assert (persisted["ongoing"], persisted["activity_score"]) == (False, None), "read from Postgres"


def test_one_year_before_a_leap_day() -> None:
    assert one_year_before(datetime(2028, 2, 29, 8, tzinfo=UTC)) == datetime(2027, 2, 28, 8, tzinfo=UTC)


def test_at_most_the_lists_default_page_whatever_the_limit(emu: PostHogEmulator) -> None:
    for n in range(70):
        shared(emu, f"s{n:02d}", days=1 + n / 100)
    body = playlist(emu, "recordings/", limit=80).json()
    assert len(body["results"]) == 50
    assert body["has_next"] is True, "has_next describes the lookup, not the playlist"
    assert "next_cursor" in body
    assert [row["id"] for row in body["results"]] == [f"s{n:02d}" for n in range(50)]
    assert len(playlist(emu, "recordings/", limit=20, offset=60).json()["results"]) == 10


@pytest.mark.parametrize(
    "params", [{"limit": "ten"}, {"offset": "x"}, {"limit": ""}, {"offset": "-1"}, {"limit": "-5"}]
)
def test_bad_limit_or_offset_is_a_server_error(emu: PostHogEmulator, params: dict[str, str]) -> None:
    answer = playlist(emu, "recordings/", **params)
    assert answer.status_code == 500
    assert answer.json() == {
        "type": "server_error",
        "code": "error",
        "detail": "A server error occurred.",
        "attr": None,
    }


def test_other_playlists_and_servers_without_synthetic_ones(make_emu: Callable[..., PostHogEmulator]) -> None:
    emu = make_emu()
    base = "/api/projects/1/session_recording_playlists/"
    for short_id in ("abc123", "synthetic-watch-history"):
        answer = playlist(emu, base=f"{base}{short_id}/")
        assert (answer.status_code, answer.json()["detail"]) == (404, "Not found.")
    older = make_emu(synthetic_playlists="absent")
    assert playlist(older).status_code == 404
    assert playlist(older, "recordings/").status_code == 404
    older.synthetic_playlists = "present"
    assert playlist(older).status_code == 200
    with pytest.raises(ValueError, match="synthetic_playlists"):
        make_emu(synthetic_playlists="missing")


def test_needs_the_playlist_scope(emu: PostHogEmulator) -> None:
    emu.add_key("phx_recordings_only", scopes=["session_recording:read"])
    answer = playlist(emu, key="phx_recordings_only")
    assert answer.status_code == 403
    assert answer.json()["detail"] == "API key missing required scope 'session_recording_playlist:read'"
    emu.add_key("phx_playlists", scopes=["session_recording_playlist:write"])
    assert playlist(emu, "recordings/", key="phx_playlists").status_code == 200, "write implies read"


def test_throttled_like_the_recordings_calls_but_not_the_list_budget(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(per_minute=3, list_per_minute=1, time_scale=100))
    api = make_client(emu)
    assert api.list().status_code == 200
    assert api.list().status_code == 429  # the list budget (a throttled call consumes nothing)
    assert playlist(emu).status_code == 200
    assert playlist(emu, "recordings/").status_code == 200
    assert playlist(emu, "recordings/").status_code == 429, "the general 240/minute window"
    assert {kind: emu.stats()[kind] for kind in ("playlist_retrieve", "playlist_recordings")} == {
        "playlist_retrieve": 1,
        "playlist_recordings": 2,
    }


def test_the_environments_alias(emu: PostHogEmulator) -> None:
    shared(emu, "s0")
    answer = playlist(emu, base="/api/environments/1/session_recording_playlists/synthetic-shared/")
    assert answer.json()["recordings_counts"]["collection"]["count"] == 1
    assert answer.headers["Deprecation"] == "true"


def test_a_frozen_clock_makes_the_cutoff_exact(make_emu: Callable[..., PostHogEmulator]) -> None:
    clock = EmulatorClock(datetime(2026, 3, 1, tzinfo=UTC), frozen=True)
    emu = make_emu(clock=clock)
    emu.add_recording("at-cutoff", start_time=datetime(2025, 3, 1, tzinfo=UTC), shared=True)
    assert ids_of(playlist(emu, "recordings/")) == ["at-cutoff"]
    clock.advance(1)
    assert ids_of(playlist(emu, "recordings/")) == []
