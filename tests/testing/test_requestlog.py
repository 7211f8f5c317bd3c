"""The request log, the stats counters and on_request hooks that change data mid-run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from airflow_provider_recordings.testing import Fault, PostHogEmulator, RateLimitConfig
from airflow_provider_recordings.testing.requestlog import RequestRecord
from tests.testing.conftest import KEY, NOW, Client


def test_every_request_is_logged_with_its_final_status(emu: PostHogEmulator, client: Client) -> None:
    emu.add_recording("rec", start_time=NOW - timedelta(hours=1))
    client.list(limit=5, session_ids='["rec"]')
    emu.clock.advance(2)
    client.patch("rec/", {"viewed": True})
    emu.inject(Fault.status(503))
    client.delete("rec/")
    client.get("missing/")

    first, update, faulted, missing = emu.requests
    assert first.method == "GET"
    assert first.path == "/api/projects/1/session_recordings/"
    assert first.query == {"limit": "5", "session_ids": '["rec"]'}
    assert first.status == 200
    assert first.authorization == f"Bearer {KEY}"
    assert first.kind == "list"
    assert first.body is None
    assert update.body == {"viewed": True}
    assert update.time - first.time == 2
    assert update.kind == "update"
    assert (faulted.method, faulted.status, faulted.kind) == ("DELETE", 503, "delete")
    assert (missing.status, missing.kind) == (404, "retrieve")


def test_throttled_requests_are_logged(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(rate_limits=RateLimitConfig(list_per_minute=1, time_scale=100))
    api = make_client(emu)
    api.list()
    api.list()
    assert [record.status for record in emu.requests] == [200, 429]


def test_clear_requests_resets_log_and_stats(emu: PostHogEmulator, client: Client) -> None:
    client.list()
    emu.clear_requests()
    assert emu.requests == []
    assert emu.stats()["total"] == 0
    client.list()
    assert len(emu.requests) == 1


def test_stats_count_by_kind_and_method(emu: PostHogEmulator, client: Client) -> None:
    ids = emu.seed(3, days=1)
    client.list()
    client.get(f"{ids[0]}/")
    client.patch(f"{ids[0]}/", {"viewed": True})
    client.delete(f"{ids[0]}/")
    client.post("bulk_delete/", {"session_recording_ids": ids[1:]})
    client.get(f"{ids[0]}/sharing/")
    emu.add_recording("rec", start_time=NOW - timedelta(hours=1))
    client.patch("rec/sharing/", {"enabled": True})
    client.post("rec/sharing/refresh/", {})
    stats = emu.stats()
    expected = {
        "list": 1,
        "retrieve": 1,
        "update": 1,
        "delete": 1,
        "bulk_delete": 1,
        "sharing_get": 1,
        "sharing_patch": 1,
        "sharing_refresh": 1,
    }
    assert {kind: stats[kind] for kind in expected} == expected
    assert stats["total"] == 8
    assert stats["requests"]["POST bulk_delete"] == 1
    assert stats["by_method"] == {"GET": 3, "PATCH": 2, "DELETE": 1, "POST": 2}
    assert stats["by_status"] == {"200": 6, "204": 1, "404": 1}


def test_on_request_can_delete_rows_between_pages(emu: PostHogEmulator, client: Client) -> None:
    emu.seed(20, days=1)
    everything = [item["id"] for item in client.list(limit=100).json()["results"]]
    seen: list[RequestRecord] = []

    def delete_ahead(emulator: PostHogEmulator, record: RequestRecord) -> None:
        seen.append(record)
        if record.kind == "list" and "after" in record.query:
            emulator.delete(everything[12])

    emu.on_request(delete_ahead)
    first = client.list(limit=10).json()
    second = client.list(limit=10, after=first["next_cursor"]).json()
    assert [item["id"] for item in second["results"]] == everything[10:12] + everything[13:]
    assert [record.status for record in seen] == [0, 0]
    emu.remove_on_request(delete_ahead)
    client.list()
    assert len(seen) == 2


def test_on_request_can_insert_rows(emu: PostHogEmulator, client: Client) -> None:
    @emu.on_request
    def insert(emulator: PostHogEmulator, record: RequestRecord) -> None:
        emulator.add_recording(start_time=NOW - timedelta(minutes=len(emulator.requests) + 1))

    assert len(client.list().json()["results"]) == 1
    assert len(client.list().json()["results"]) == 2


def test_failing_callback_answers_500(emu: PostHogEmulator, client: Client) -> None:
    def explode(emulator: PostHogEmulator, record: RequestRecord) -> None:
        raise RuntimeError("boom")

    emu.on_request(explode)
    response = client.list()
    assert response.status_code == 500
    assert "boom" in response.json()["detail"]
