"""The emulator's switches for behaviours that differ between PostHog deployments.

Each switch reproduces a variant a real client meets (older self-hosted versions, the
cloud service's restrictions on personal API keys), so they are validated eagerly: a
typo must not silently test the default behaviour instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from airflow_provider_recordings.testing.modes import (
    BulkDeleteMode,
    DeleteUnknownMode,
    OngoingMode,
    PersonsMode,
    Shape,
    SyntheticMode,
)


@dataclass
class EmulatorConfig:
    project_id: str = "1"
    response_shape: Shape = "live"
    bulk_delete: BulkDeleteMode = "allowed"
    bulk_delete_max: int = 100
    max_page_size: int | None = None
    ongoing_field: OngoingMode = "present"
    delete_unknown: DeleteUnknownMode = "204"
    latency: float = 0.0
    next_url_base: str | None = None
    #: The person route deleting a person's recordings: there, or an older server's
    #: 404 ("absent") or 405 ("not_allowed").
    persons_route: PersonsMode = "allowed"
    #: Seconds (of the emulator's clock) the queued deletion job takes to run.
    person_job_delay: float = 5.0
    #: ``POST persons/bulk_delete/``: there, or an older server's 404 ("absent") or
    #: 405 ("not_allowed").
    persons_bulk_delete: PersonsMode = "allowed"
    #: PostHog's built-in playlists (``synthetic-shared``): "present", or "absent" as on
    #: older and self-hosted servers (404 for the short id).
    synthetic_playlists: SyntheticMode = "present"
    #: The organisation has the "Advanced Permissions" feature that password-protected
    #: links need; without it PostHog refuses them with 403.
    advanced_permissions: bool = True

    def __post_init__(self) -> None:
        self.project_id = str(self.project_id)
        _check("response_shape", self.response_shape, Shape)
        _check("bulk_delete", self.bulk_delete, BulkDeleteMode)
        _check("ongoing_field", self.ongoing_field, OngoingMode)
        self.delete_unknown = str(self.delete_unknown)  # type: ignore[assignment]
        _check("delete_unknown", self.delete_unknown, DeleteUnknownMode)
        _check("persons_route", self.persons_route, PersonsMode)
        _check("persons_bulk_delete", self.persons_bulk_delete, PersonsMode)
        _check("synthetic_playlists", self.synthetic_playlists, SyntheticMode)
        if not isinstance(self.advanced_permissions, bool):
            raise ValueError(f"advanced_permissions must be a bool, not {self.advanced_permissions!r}")
        if self.person_job_delay < 0:
            raise ValueError("person_job_delay must be >= 0")
        if self.bulk_delete_max < 1:
            raise ValueError("bulk_delete_max must be >= 1")
        if self.max_page_size is not None and self.max_page_size < 1:
            raise ValueError("max_page_size must be >= 1 or None")
        if self.latency < 0:
            raise ValueError("latency must be >= 0")


def _check(name: str, value: object, allowed: object) -> None:
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")
