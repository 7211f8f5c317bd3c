"""Retrieve, update, delete, bulk delete and sharing, in each emulated variant."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest

from airflow_provider_recordings.testing import PostHogEmulator
from tests.testing.conftest import NOW, Client

SEED_FIELDS = {
    "id",
    "distinct_id",
    "viewed",
    "recording_duration",
    "active_seconds",
    "inactive_seconds",
    "start_time",
    "end_time",
    "click_count",
    "keypress_count",
    "mouse_activity_count",
    "console_log_count",
    "console_warn_count",
    "console_error_count",
    "start_url",
    "person",
    "storage",
    "snapshot_source",
    "ongoing",
    "activity_score",
}
RETRIEVE_ONLY = {"retention_period_days", "expiry_time", "recording_ttl", "viewers"}
NOT_FOUND = {"type": "invalid_request", "code": "not_found", "detail": "Recording not found", "attr": None}
TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,}$")


@pytest.fixture
def rec(emu: PostHogEmulator) -> str:
    start = NOW - timedelta(days=3, hours=2)
    return emu.add_recording("rec-1", start_time=start, end_time=start + timedelta(minutes=7))["id"]


# -- retrieve --------------------------------------------------------------------------


def test_retrieve_has_the_seed_fields_and_retention(client: Client, rec: str) -> None:
    body = client.get(f"{rec}/").json()
    assert set(body) == SEED_FIELDS | RETRIEVE_ONLY
    assert body["start_time"] == "2026-05-29T10:00:00Z"
    assert body["end_time"] == "2026-05-29T10:07:00Z"
    assert body["recording_duration"] == 420
    assert body["active_seconds"] + body["inactive_seconds"] == 420
    assert body["retention_period_days"] == 30
    assert body["expiry_time"] == "2026-06-28T00:00:00Z"
    assert body["recording_ttl"] == 26
    assert body["ongoing"] is False
    listed = client.list(date_from="-7d").json()["results"][0]
    assert set(listed) == SEED_FIELDS
    assert {name: body[name] for name in SEED_FIELDS} == listed


@pytest.mark.parametrize("recording_id", ["nope", "rec-1"])
def test_retrieve_unknown_or_deleted_is_404(
    emu: PostHogEmulator, client: Client, rec: str, recording_id: str
) -> None:
    emu.delete(rec)
    response = client.get(f"{recording_id}/")
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


# -- update ----------------------------------------------------------------------------


def test_live_update_marks_viewed_and_analyzed(emu: PostHogEmulator, client: Client, rec: str) -> None:
    response = client.patch(f"{rec}/", {"viewed": True, "player_metadata": {"x": 1}})
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert client.patch(f"{rec}/", {"analyzed": True}).json() == {"success": True}
    stored = emu.get(rec)
    assert stored is not None
    assert stored["viewed"] is True
    assert stored["analyzed"] is True
    assert client.get(f"{rec}/").json()["viewed"] is True


@pytest.mark.parametrize("body", [{}, {"viewed": False}, {"person": {"name": "x"}}, {"analyzed": False}])
def test_live_update_needs_viewed_or_analyzed(client: Client, rec: str, body: dict[str, object]) -> None:
    response = client.patch(f"{rec}/", body)
    assert response.status_code == 400
    assert response.json()["type"] == "validation_error"


def test_update_rejects_bad_json_and_unknown_ids(client: Client, rec: str) -> None:
    bad = client.request("PATCH", f"{rec}/", data=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "parse_error"
    assert client.patch("nope/", {"viewed": True}).status_code == 404


def test_published_update_answers_with_the_recording(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(response_shape="published")
    emu.add_recording("rec-1", start_time=NOW - timedelta(hours=1))
    response = make_client(emu).patch("rec-1/", {"person": {"name": "someone"}, "viewed": True})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "rec-1"
    assert body["viewed"] is True
    assert set(body) >= SEED_FIELDS


# -- delete ----------------------------------------------------------------------------


def test_delete_is_204_then_204_again(emu: PostHogEmulator, client: Client, rec: str) -> None:
    first = client.delete(f"{rec}/")
    assert first.status_code == 204
    assert first.content == b""
    assert emu.get(rec) is None
    assert rec not in emu.recording_ids()
    assert client.delete(f"{rec}/").status_code == 204
    assert client.delete("never-existed/").status_code == 204


def test_delete_of_unknown_id_can_be_500(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(delete_unknown="500")
    emu.add_recording("rec-1", start_time=NOW - timedelta(hours=1))
    api = make_client(emu)
    assert api.delete("rec-1/").status_code == 204
    assert api.delete("rec-1/").status_code == 204
    response = api.delete("never-existed/")
    assert response.status_code == 500
    body = response.json()
    assert body["type"] == "server_error"
    assert body["code"] == "recording_api_failure"
    assert body["detail"]


def test_delete_does_not_spare_ongoing_recordings(emu: PostHogEmulator, client: Client) -> None:
    emu.add_recording("live", start_time=NOW - timedelta(minutes=3), end_time=NOW)
    assert client.get("live/").json()["ongoing"] is True
    assert client.delete("live/").status_code == 204
    assert emu.get("live") is None


def test_readding_a_deleted_id_starts_fresh(emu: PostHogEmulator, client: Client, rec: str) -> None:
    emu.set_shared(rec, True)
    client.delete(f"{rec}/")
    emu.add_recording(rec, start_time=NOW - timedelta(hours=2))
    assert client.get(f"{rec}/").json()["start_time"] == "2026-06-01T10:00:00Z"
    assert client.get(f"{rec}/sharing/").json()["enabled"] is False


# -- bulk delete -----------------------------------------------------------------------


def test_bulk_delete_skips_unknown_ids(emu: PostHogEmulator, client: Client) -> None:
    ids = emu.seed(5, days=1)
    response = client.post("bulk_delete/", {"session_recording_ids": [*ids[:3], "missing"]})
    assert response.status_code == 200
    assert response.json() == {"success": True, "deleted_count": 3, "total_requested": 4, "failed_ids": []}
    assert emu.recording_ids() == set(ids[3:])


@pytest.mark.parametrize("limit", [100, 20])
def test_bulk_delete_limit(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client], limit: int
) -> None:
    emu = make_emu(bulk_delete_max=limit)
    ids = emu.seed(limit + 1, days=1)
    api = make_client(emu)
    response = api.post("bulk_delete/", {"session_recording_ids": ids})
    assert response.status_code == 400
    assert str(limit) in response.json()["detail"]
    assert len(emu.recording_ids()) == limit + 1
    assert api.post("bulk_delete/", {"session_recording_ids": ids[:limit]}).json()["deleted_count"] == limit


@pytest.mark.parametrize("body", [{}, {"session_recording_ids": []}, {"session_recording_ids": "abc"}])
def test_bulk_delete_needs_a_list(client: Client, body: dict[str, object]) -> None:
    assert client.post("bulk_delete/", body).status_code == 400


def test_bulk_delete_forbidden_for_personal_keys(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(bulk_delete="forbidden")
    ids = emu.seed(3, days=1)
    response = make_client(emu).post("bulk_delete/", {"session_recording_ids": ids})
    assert response.status_code == 403
    assert response.json() == {
        "type": "authentication_error",
        "code": "permission_denied",
        "detail": "This action does not support personal API key access",
        "attr": None,
    }
    assert emu.recording_ids() == set(ids)


@pytest.mark.parametrize(("mode", "status"), [("absent", 404), ("not_allowed", 405)])
def test_bulk_delete_missing_on_older_servers(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client], mode: str, status: int
) -> None:
    emu = make_emu(bulk_delete=mode)
    ids = emu.seed(3, days=1)
    assert make_client(emu).post("bulk_delete/", {"session_recording_ids": ids}).status_code == status
    assert emu.recording_ids() == set(ids)


# -- sharing ---------------------------------------------------------------------------


def test_sharing_before_it_was_ever_enabled(emu: PostHogEmulator, client: Client, rec: str) -> None:
    first = client.get(f"{rec}/sharing/").json()
    second = client.get(f"{rec}/sharing/").json()
    assert first == {
        "created_at": None,
        "enabled": False,
        "access_token": first["access_token"],
        "settings": {},
        "password_required": False,
        "share_passwords": [],
    }
    assert TOKEN.match(first["access_token"])
    assert first["access_token"] != second["access_token"]
    assert emu.sharing_token(rec) not in (first["access_token"], second["access_token"])


def test_enable_disable_and_refresh(emu: PostHogEmulator, client: Client, rec: str) -> None:
    enabled = client.patch(f"{rec}/sharing/", {"enabled": True})
    assert enabled.status_code == 200
    body = enabled.json()
    assert body["enabled"] is True
    assert body["created_at"] == "2026-06-01T12:00:00Z"
    assert body["access_token"] == emu.sharing_token(rec)
    assert client.get(f"{rec}/sharing/").json() == body
    assert emu.is_shared(rec)

    emu.clock.advance(60)
    disabled = client.patch(f"{rec}/sharing/", {"enabled": False}).json()
    assert disabled["enabled"] is False
    assert disabled["created_at"] == "2026-06-01T12:00:00Z"
    assert not emu.is_shared(rec)

    old = emu.sharing_token(rec)
    refreshed = client.post(f"{rec}/sharing/refresh/", {})
    assert refreshed.status_code == 200
    assert refreshed.json()["access_token"] == emu.sharing_token(rec) != old
    assert TOKEN.match(emu.sharing_token(rec))


def test_set_shared_and_add_recording_shared(emu: PostHogEmulator, client: Client, rec: str) -> None:
    emu.add_recording("public", start_time=NOW - timedelta(hours=1), shared=True)
    assert client.get("public/sharing/").json()["enabled"] is True
    emu.set_shared(rec, True)
    assert client.get(f"{rec}/sharing/").json()["access_token"] == emu.sharing_token(rec)


def test_sharing_of_unknown_recording_is_404(client: Client) -> None:
    assert client.get("nope/sharing/").status_code == 404
    assert client.patch("nope/sharing/", {"enabled": True}).status_code == 404
    assert client.post("nope/sharing/refresh/", {}).status_code == 404


def test_sharing_patch_validates_enabled(client: Client, rec: str) -> None:
    assert client.patch(f"{rec}/sharing/", {"enabled": "yes"}).status_code == 400
