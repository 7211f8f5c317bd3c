"""URL routing for the emulated endpoints and the scopes each action needs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PREFIX = r"^/api/(?:projects|environments)/(?P<project>[^/]+)/"
_PATH = re.compile(_PREFIX + r"session_recordings(?P<rest>/.*)?$")
_PERSONS = re.compile(_PREFIX + r"persons(?P<rest>/.*)?$")
_PLAYLISTS = re.compile(_PREFIX + r"session_recording_playlists(?P<rest>/.*)?$")
_ENVIRONMENTS = re.compile(r"^/api/environments/")
#: What PostHog's ``EnvironmentsRewriteMiddleware`` adds to every answer of an
#: ``/api/environments/`` path it rewrites (``API_ENVIRONMENTS_SUNSET_DATE`` 2026-07-31).
DEPRECATION = "true"
SUNSET = "Fri, 31 Jul 2026 00:00:00 GMT"

SCOPES = {
    "list": "session_recording:read",
    "retrieve": "session_recording:read",
    "update": "session_recording:write",
    "delete": "session_recording:write",
    "bulk_delete": "session_recording:write",
    "snapshots": "session_recording:read",
    "sharing_get": "sharing_configuration:read",
    "sharing_patch": "sharing_configuration:write",
    "sharing_refresh": "sharing_configuration:write",
    "sharing_password_create": "sharing_configuration:write",
    "sharing_password_delete": "sharing_configuration:write",
    "persons_list": "person:read",
    "person_retrieve": "person:read",
    "person_destroy": "person:write",
    "person_delete_recordings": "person:write",
    "persons_bulk_delete": "person:write",
    "playlist_retrieve": "session_recording_playlist:read",
    "playlist_recordings": "session_recording_playlist:read",
}

#: Which rate-limit budget an action draws on (``RateLimitConfig.windows``).
LIMIT_KINDS = {
    "list": "list",
    "snapshots": "snapshots",
    "persons_list": "persons_read",
    "person_retrieve": "persons_read",
    "person_destroy": "persons_delete",
    "person_delete_recordings": "persons_delete",
    "persons_bulk_delete": "persons_delete",
    "sharing_get": "sharing",
    "sharing_patch": "sharing",
    "sharing_refresh": "sharing",
    "sharing_password_create": "sharing",
    "sharing_password_delete": "sharing",
}


def limit_kind(action: str) -> str:
    return LIMIT_KINDS.get(action, "other")


@dataclass(frozen=True)
class Route:
    """A matched endpoint: the action per HTTP method, and a name for other methods.

    ``recording_id`` holds the addressed object (a recording, a person's id or UUID,
    a playlist's short id); ``item_id`` a sub-object (a share password's id).
    """

    project_id: str
    family: str
    actions: dict[str, str] = field(default_factory=dict)
    recording_id: str | None = None
    item_id: str | None = None

    def kind(self, method: str) -> str:
        return self.actions.get(method, self.family)


def match(
    path: str, *, bulk_delete: str, persons_route: str = "allowed", persons_bulk_delete: str = "allowed"
) -> Route | None:
    """The endpoint for ``path``; the keywords are the emulator's modes for the endpoints
    that differ between deployments."""
    found = _PATH.match(path)
    if found is None:
        return _person(path, persons_route, persons_bulk_delete) or _playlist(path)
    project = found.group("project")
    parts = _parts(found.group("rest"))
    if not parts:
        return Route(project, "list", {"GET": "list"})
    if parts == ["bulk_delete"]:
        if bulk_delete == "absent":
            return None
        return Route(project, "bulk_delete", {} if bulk_delete == "not_allowed" else {"POST": "bulk_delete"})
    return _recording(project, parts[0], parts[1:])


def deprecation_headers(path: str, raw_query: str) -> dict[str, str]:
    """The deprecated alias's headers, pointing at the ``/api/projects/`` path."""
    if not _ENVIRONMENTS.match(path):
        return {}
    successor = "/api/projects/" + path[len("/api/environments/") :] + (f"?{raw_query}" if raw_query else "")
    return {"Deprecation": DEPRECATION, "Sunset": SUNSET, "Link": f'<{successor}>; rel="successor-version"'}


def _recording(project: str, recording_id: str, tail: list[str]) -> Route | None:
    if not tail:
        actions = {"GET": "retrieve", "PATCH": "update", "DELETE": "delete"}
        return Route(project, "retrieve", actions, recording_id)
    if tail == ["snapshots"]:
        return Route(project, "snapshots", {"GET": "snapshots"}, recording_id)
    if tail == ["sharing"]:
        return Route(project, "sharing_get", {"GET": "sharing_get", "PATCH": "sharing_patch"}, recording_id)
    if tail == ["sharing", "refresh"]:
        return Route(project, "sharing_refresh", {"POST": "sharing_refresh"}, recording_id)
    if tail == ["sharing", "passwords"]:
        return Route(project, "sharing_password_create", {"POST": "sharing_password_create"}, recording_id)
    if len(tail) == 3 and tail[:2] == ["sharing", "passwords"]:
        actions = {"DELETE": "sharing_password_delete"}
        return Route(project, "sharing_password_delete", actions, recording_id, tail[2])
    return None


def _person(path: str, persons_route: str, persons_bulk_delete: str) -> Route | None:
    """The persons endpoints an erasure uses: find, read, delete persons and recordings.

    A person is addressed by its numeric id or its UUID; ``recording_id`` holds it.
    """
    found = _PERSONS.match(path)
    if found is None:
        return None
    project = found.group("project")
    parts = _parts(found.group("rest"))
    if not parts:
        return Route(project, "persons_list", {"GET": "persons_list"})
    if parts == ["bulk_delete"]:
        return _optional(project, "persons_bulk_delete", "POST", persons_bulk_delete, None)
    if len(parts) == 1:
        actions = {"GET": "person_retrieve", "DELETE": "person_destroy"}
        return Route(project, "person_retrieve", actions, parts[0])
    if parts[1:] == ["delete_recordings"]:
        return _optional(project, "person_delete_recordings", "POST", persons_route, parts[0])
    return None


def _optional(project: str, action: str, method: str, mode: str, object_id: str | None) -> Route | None:
    """An endpoint older servers lack: 404 ("absent") or 405 ("not_allowed")."""
    if mode == "absent":
        return None
    return Route(project, action, {} if mode == "not_allowed" else {method: action}, object_id)


def _playlist(path: str) -> Route | None:
    """A playlist by short id, and its recordings."""
    found = _PLAYLISTS.match(path)
    if found is None:
        return None
    project = found.group("project")
    parts = _parts(found.group("rest"))
    if len(parts) == 1:
        return Route(project, "playlist_retrieve", {"GET": "playlist_retrieve"}, parts[0])
    if len(parts) == 2 and parts[1] == "recordings":
        return Route(project, "playlist_recordings", {"GET": "playlist_recordings"}, parts[0])
    return None


def _parts(rest: str | None) -> list[str]:
    return [part for part in (rest or "").split("/") if part]
