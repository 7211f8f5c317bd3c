"""URL routing for the session recordings endpoints and the scopes each action needs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PATH = re.compile(r"^/api/(?:projects|environments)/(?P<project>[^/]+)/session_recordings(?P<rest>/.*)?$")
_PERSONS = re.compile(r"^/api/(?:projects|environments)/(?P<project>[^/]+)/persons(?P<rest>/.*)?$")

SCOPES = {
    "list": "session_recording:read",
    "retrieve": "session_recording:read",
    "update": "session_recording:write",
    "delete": "session_recording:write",
    "bulk_delete": "session_recording:write",
    "sharing_get": "sharing_configuration:read",
    "sharing_patch": "sharing_configuration:write",
    "sharing_refresh": "sharing_configuration:write",
    "persons_list": "person:read",
    "person_retrieve": "person:read",
    "person_delete_recordings": "person:write",
}


@dataclass(frozen=True)
class Route:
    """A matched endpoint: the action per HTTP method, and a name for other methods."""

    project_id: str
    family: str
    actions: dict[str, str] = field(default_factory=dict)
    recording_id: str | None = None

    def kind(self, method: str) -> str:
        return self.actions.get(method, self.family)


def match(path: str, *, bulk_delete: str, persons_route: str = "allowed") -> Route | None:
    """The endpoint for ``path``; ``bulk_delete`` and ``persons_route`` are the emulator's
    modes for the endpoints that differ between deployments."""
    found = _PATH.match(path)
    if found is None:
        return _person(path, persons_route)
    project = found.group("project")
    parts = [part for part in (found.group("rest") or "").split("/") if part]
    if not parts:
        return Route(project, "list", {"GET": "list"})
    if parts == ["bulk_delete"]:
        if bulk_delete == "absent":
            return None
        return Route(project, "bulk_delete", {} if bulk_delete == "not_allowed" else {"POST": "bulk_delete"})
    recording_id, tail = parts[0], parts[1:]
    if not tail:
        actions = {"GET": "retrieve", "PATCH": "update", "DELETE": "delete"}
        return Route(project, "retrieve", actions, recording_id)
    if tail == ["sharing"]:
        return Route(project, "sharing_get", {"GET": "sharing_get", "PATCH": "sharing_patch"}, recording_id)
    if tail == ["sharing", "refresh"]:
        return Route(project, "sharing_refresh", {"POST": "sharing_refresh"}, recording_id)
    return None


def _person(path: str, persons_route: str) -> Route | None:
    """The persons endpoints an erasure uses: find, read, delete the person's recordings.

    A person is addressed by its numeric id or its UUID; ``recording_id`` holds it.
    """
    found = _PERSONS.match(path)
    if found is None:
        return None
    project = found.group("project")
    parts = [part for part in (found.group("rest") or "").split("/") if part]
    if not parts:
        return Route(project, "persons_list", {"GET": "persons_list"})
    if len(parts) == 1:
        return Route(project, "person_retrieve", {"GET": "person_retrieve"}, parts[0])
    if parts[1:] == ["delete_recordings"]:
        if persons_route == "absent":
            return None
        actions = {} if persons_route == "not_allowed" else {"POST": "person_delete_recordings"}
        return Route(project, "person_delete_recordings", actions, parts[0])
    return None
