"""Authentication, scopes and project access, with PostHog's exact error bodies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import requests

from airflow_provider_recordings.testing import PostHogEmulator
from tests.testing.conftest import NOW, Client

INVALID_KEY = {
    "type": "authentication_error",
    "code": "authentication_failed",
    "detail": "Personal API key found in request Authorization header is invalid.",
    "attr": None,
}


@pytest.fixture
def recording_id(emu: PostHogEmulator) -> str:
    return emu.add_recording("rec-1", start_time=NOW - timedelta(hours=1))["id"]


@pytest.mark.parametrize("key", [None, "phx_unknown"])
def test_missing_or_unknown_key_is_401(
    emu: PostHogEmulator, make_client: Callable[..., Client], key: str | None
) -> None:
    response = make_client(emu, key).list()
    assert response.status_code == 401
    assert response.json() == INVALID_KEY


def test_non_bearer_scheme_is_401(emu: PostHogEmulator, make_client: Callable[..., Client]) -> None:
    response = make_client(emu, None).request("GET", headers={"Authorization": "Basic phx_emulator_test_key"})
    assert response.status_code == 401
    assert response.json() == INVALID_KEY


def test_missing_write_scope_is_403_naming_the_scope(
    emu: PostHogEmulator, make_client: Callable[..., Client], recording_id: str
) -> None:
    emu.add_key("phx_reader", scopes=("session_recording:read",))
    reader = make_client(emu, "phx_reader")
    assert reader.list().status_code == 200
    response = reader.delete(f"{recording_id}/")
    assert response.status_code == 403
    assert response.json() == {
        "type": "authentication_error",
        "code": "permission_denied",
        "detail": "API key missing required scope 'session_recording:write'",
        "attr": None,
    }
    assert emu.get(recording_id) is not None


def test_write_scope_implies_read(
    emu: PostHogEmulator, make_client: Callable[..., Client], recording_id: str
) -> None:
    emu.add_key("phx_writer", scopes=("session_recording:write",))
    writer = make_client(emu, "phx_writer")
    assert writer.get(f"{recording_id}/").status_code == 200
    assert writer.delete(f"{recording_id}/").status_code == 204


def test_sharing_needs_sharing_scopes(
    emu: PostHogEmulator, make_client: Callable[..., Client], recording_id: str
) -> None:
    emu.add_key("phx_recordings", scopes=("session_recording:write",))
    emu.add_key("phx_share_reader", scopes=("sharing_configuration:read",))
    recordings_only = make_client(emu, "phx_recordings")
    share_reader = make_client(emu, "phx_share_reader")

    denied = recordings_only.get(f"{recording_id}/sharing/")
    assert denied.status_code == 403
    assert denied.json()["detail"] == "API key missing required scope 'sharing_configuration:read'"
    assert share_reader.get(f"{recording_id}/sharing/").status_code == 200
    patched = share_reader.patch(f"{recording_id}/sharing/", {"enabled": True})
    assert patched.json()["detail"] == "API key missing required scope 'sharing_configuration:write'"
    assert share_reader.list().json()["detail"] == "API key missing required scope 'session_recording:read'"


def test_key_for_another_project_is_403(emu: PostHogEmulator, make_client: Callable[..., Client]) -> None:
    emu.add_key("phx_elsewhere", projects=("2",))
    response = make_client(emu, "phx_elsewhere").list()
    assert response.status_code == 403
    assert response.json() == {
        "type": "authentication_error",
        "code": "permission_denied",
        "detail": "API key does not have access to the requested project: ID 1.",
        "attr": None,
    }


def test_default_key_cannot_reach_another_project(
    emu: PostHogEmulator, make_client: Callable[..., Client]
) -> None:
    response = make_client(emu, project="2").list()
    assert response.status_code == 403
    assert response.json()["detail"] == "API key does not have access to the requested project: ID 2."


def test_environments_alias_and_optional_trailing_slash(emu: PostHogEmulator, recording_id: str) -> None:
    headers = {"Authorization": "Bearer phx_emulator_test_key"}
    for path in (
        "/api/environments/1/session_recordings/",
        "/api/environments/1/session_recordings",
        f"/api/projects/1/session_recordings/{recording_id}",
        f"/api/environments/1/session_recordings/{recording_id}/",
    ):
        assert requests.get(emu.url + path, headers=headers, timeout=5).status_code == 200, path


def test_environments_answers_carry_deprecation_headers(emu: PostHogEmulator, recording_id: str) -> None:
    headers = {"Authorization": "Bearer phx_emulator_test_key"}
    listed = requests.get(
        f"{emu.url}/api/environments/1/session_recordings/?limit=1&date_from=-7d", headers=headers, timeout=5
    )
    assert listed.headers["Deprecation"] == "true"
    assert listed.headers["Sunset"] == "Fri, 31 Jul 2026 00:00:00 GMT"
    assert (
        listed.headers["Link"]
        == '</api/projects/1/session_recordings/?limit=1&date_from=-7d>; rel="successor-version"'
    )
    for path in (
        f"/api/environments/1/session_recordings/{recording_id}/snapshots",
        "/api/environments/1/persons/",
    ):
        assert requests.get(emu.url + path, headers=headers, timeout=5).headers["Deprecation"] == "true", path
    refused = requests.get(f"{emu.url}/api/environments/1/session_recordings/", timeout=5)
    assert (refused.status_code, refused.headers["Deprecation"]) == (401, "true"), "errors too"
    projects = requests.get(f"{emu.url}/api/projects/1/session_recordings/", headers=headers, timeout=5)
    assert "Deprecation" not in projects.headers and "Sunset" not in projects.headers
    unknown = requests.get(f"{emu.url}/api/environments/1/dashboards/", headers=headers, timeout=5)
    assert unknown.status_code == 404 and "Deprecation" not in unknown.headers, "not rewritten: no headers"


def test_unknown_path_is_404(client: Client, recording_id: str) -> None:
    response = client.get(f"{recording_id}/comments/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_unsupported_method_is_405(client: Client, recording_id: str) -> None:
    response = client.request("PUT", f"{recording_id}/", json={})
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
