"""Password-protected public links: ``password_required`` and ``sharing/passwords/``."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest

from airflow_provider_recordings.testing import PostHogEmulator
from airflow_provider_recordings.testing.auth import DEFAULT_EMAIL
from tests.testing.conftest import NOW, Client

GENERATED = re.compile(r"^[A-Za-z0-9_-]{22}$")


@pytest.fixture
def rec(emu: PostHogEmulator) -> str:
    return emu.add_recording("rec", start_time=NOW - timedelta(hours=1), shared=True)["id"]


def test_a_password_is_shown_once(emu: PostHogEmulator, client: Client, rec: str) -> None:
    required = client.patch(f"{rec}/sharing/", {"password_required": True})
    assert required.status_code == 200
    assert (required.json()["password_required"], required.json()["share_passwords"]) == (True, [])

    created = client.post(f"{rec}/sharing/passwords/", {"raw_password": "correct horse", "note": "auditors"})
    assert created.status_code == 201
    assert created.json() == {
        "id": created.json()["id"],
        "password": "correct horse",
        "note": "auditors",
        "created_at": "2026-06-01T12:00:00Z",
        "created_by_email": DEFAULT_EMAIL,
    }
    emu.clock.advance(60)
    generated = client.post(f"{rec}/sharing/passwords/", {}).json()
    assert GENERATED.match(generated["password"]), "secrets.token_urlsafe(16) when none is given"
    assert generated["note"] == ""

    listed = client.get(f"{rec}/sharing/").json()
    assert [entry["id"] for entry in listed["share_passwords"]] == [generated["id"], created.json()["id"]]
    assert listed["share_passwords"][1] == {
        "id": created.json()["id"],
        "created_at": "2026-06-01T12:00:00Z",
        "note": "auditors",
        "created_by_email": DEFAULT_EMAIL,
        "is_active": True,
    }
    assert "correct horse" not in str(listed) and generated["password"] not in str(listed)


def test_deleting_a_password(emu: PostHogEmulator, client: Client, rec: str) -> None:
    emu.require_password(rec)
    first = emu.add_share_password(rec, "first-password")
    second = emu.add_share_password(rec, note="second")
    assert client.delete(f"{rec}/sharing/passwords/{first['id']}/").status_code == 204
    again = client.delete(f"{rec}/sharing/passwords/{first['id']}/")
    assert (again.status_code, again.json()["detail"]) == (404, "Password not found")
    assert client.delete(f"{rec}/sharing/passwords/999/").status_code == 404
    assert client.delete(f"{rec}/sharing/passwords/abc/").status_code == 500, "Django cannot look it up"
    remaining = client.get(f"{rec}/sharing/").json()["share_passwords"]
    assert [entry["id"] for entry in remaining] == [second["id"]]


def test_passwords_belong_to_their_link(emu: PostHogEmulator, client: Client, rec: str) -> None:
    other = emu.add_recording("other", start_time=NOW - timedelta(hours=2), shared=True)["id"]
    emu.require_password(other)
    theirs = emu.add_share_password(other, "other-password")
    emu.require_password(rec)
    mine = emu.add_share_password(rec, "mine-password")
    assert mine["id"] == theirs["id"] + 1, "numbered across the project"
    assert client.delete(f"{rec}/sharing/passwords/{theirs['id']}/").status_code == 404


def test_passwords_need_password_protection_first(client: Client, rec: str) -> None:
    answer = client.post(f"{rec}/sharing/passwords/", {"raw_password": "long enough"})
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": "Password protection must be enabled before creating passwords"},
    )


@pytest.mark.parametrize(
    ("body", "attr", "detail"),
    [
        ({"raw_password": "short"}, "raw_password", "Password must be at least 8 characters long."),
        ({"note": "n" * 101}, "note", "Ensure this field has no more than 100 characters."),
        ({"raw_password": None}, "raw_password", "This field may not be null."),
        ({"note": ["x"]}, "note", "Not a valid string."),
    ],
)
def test_password_validation(
    client: Client, rec: str, body: dict[str, object], attr: str, detail: str
) -> None:
    client.patch(f"{rec}/sharing/", {"password_required": True})
    answer = client.post(f"{rec}/sharing/passwords/", body)
    assert answer.status_code == 400
    assert answer.json() == {
        "type": "validation_error",
        "code": "invalid_input",
        "detail": detail,
        "attr": attr,
    }


def test_without_advanced_permissions(
    make_emu: Callable[..., PostHogEmulator], make_client: Callable[..., Client]
) -> None:
    emu = make_emu(advanced_permissions=False)
    rec = emu.add_recording("rec", start_time=NOW - timedelta(hours=1), shared=True)["id"]
    api = make_client(emu)
    refused = api.patch(f"{rec}/sharing/", {"password_required": True})
    assert (refused.status_code, refused.json()) == (
        403,
        {"error": "Sharing with password requires the Advanced Permissions feature"},
    )
    assert api.patch(f"{rec}/sharing/", {"password_required": False}).status_code == 200
    emu.require_password(rec)  # set before the plan changed
    feature = {"error": "Password management requires the Advanced Permissions feature"}
    created = api.post(f"{rec}/sharing/passwords/", {"raw_password": "long enough"})
    assert (created.status_code, created.json()) == (403, feature)
    deleted = api.request("DELETE", f"{rec}/sharing/passwords/1/")
    assert (deleted.status_code, deleted.json()) == (403, feature)


def test_password_changes_need_sharing_write(
    emu: PostHogEmulator, make_client: Callable[..., Client], rec: str
) -> None:
    emu.add_key("phx_reader", scopes=["sharing_configuration:read"])
    emu.require_password(rec)
    reader = make_client(emu, "phx_reader")
    answer = reader.post(f"{rec}/sharing/passwords/", {})
    assert answer.status_code == 403
    assert answer.json()["detail"] == "API key missing required scope 'sharing_configuration:write'"
    assert reader.request("DELETE", f"{rec}/sharing/passwords/1/").status_code == 403


def test_created_by_is_the_keys_user(
    emu: PostHogEmulator, make_client: Callable[..., Client], rec: str
) -> None:
    emu.add_key("phx_ops", email="ops@example.com")
    emu.require_password(rec)
    answer = make_client(emu, "phx_ops").post(f"{rec}/sharing/passwords/", {"raw_password": "ops-password"})
    assert answer.json()["created_by_email"] == "ops@example.com"


def test_password_required_is_validated(client: Client, rec: str) -> None:
    answer = client.patch(f"{rec}/sharing/", {"password_required": "yes"})
    assert (answer.status_code, answer.json()["attr"]) == (400, "password_required")


def test_a_patch_saves_the_configuration(emu: PostHogEmulator, client: Client) -> None:
    emu.add_recording("fresh", start_time=NOW - timedelta(hours=1))
    saved = client.patch("fresh/sharing/", {"password_required": True}).json()
    assert saved["created_at"] == "2026-06-01T12:00:00Z"
    assert (saved["enabled"], saved["password_required"]) == (False, True)
    assert saved["access_token"] == emu.sharing_token("fresh"), "no throwaway token once saved"
    assert emu.sharing_object("fresh") == saved
