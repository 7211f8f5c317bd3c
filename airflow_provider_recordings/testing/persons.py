"""PostHog's persons, as far as an erasure request needs them.

A person owns one or more distinct ids. Deleting a person's recordings
(``POST persons/bulk_delete/`` with ``delete_recordings``, ``DELETE persons/<id>/
?delete_recordings``, or the deprecated ``POST persons/<id>/delete_recordings/``) queues
PostHog's "delete-recordings-with-person" workflow and answers 202 at once; the
workflow deletes the recordings of the distinct ids the persons had when it was queued,
some time later. The emulator plays it on its clock: a queued job runs once
``person_job_delay`` seconds have passed, checked before each API request. A person
profile itself is deleted at once (``posthog/models/person/bulk_delete.py``).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_recordings.testing import errors
from airflow_provider_recordings.testing.records import default_distinct_id
from airflow_provider_recordings.testing.store import RecordingStore
from airflow_provider_recordings.testing.timefmt import iso

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
#: ``bulk_delete`` takes at most this many ids or distinct ids per call.
BULK_DELETE_MAX = 1000


@dataclass
class Person:
    pk: int
    uuid: str
    distinct_ids: list[str]
    created_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "uuid": self.uuid,
            "name": self.distinct_ids[0] if self.distinct_ids else str(self.pk),
            "distinct_ids": list(self.distinct_ids),
            "properties": dict(self.properties),
            "created_at": iso(self.created_at),
        }


@dataclass
class _Job:
    due: float
    distinct_ids: frozenset[str]
    deleted_by: str | None = None


def _normal_uuid(value: str) -> str:
    return value.replace("-", "").lower()


class PersonStore:
    """Persons by id, UUID and distinct id, and the recordings jobs queued for them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._persons: list[Person] = []
        self._jobs: list[_Job] = []
        self._next_pk = 1
        self.jobs_run = 0

    def add(self, distinct_ids: list[str], created_at: datetime, person_uuid: str | None = None) -> Person:
        with self.lock:
            person = Person(
                pk=self._next_pk,
                uuid=person_uuid or str(uuid.uuid4()),
                distinct_ids=list(distinct_ids),
                created_at=created_at,
            )
            self._next_pk += 1
            self._persons.append(person)
            return person

    def all(self) -> list[Person]:
        with self.lock:
            return list(self._persons)

    def by_distinct_id(self, distinct_id: str) -> list[Person]:
        with self.lock:
            return [p for p in self._persons if distinct_id in p.distinct_ids]

    def find(self, key: str) -> Person:
        """A person by numeric id or UUID, as PostHog's ``persons/<pk or uuid>/`` route reads it."""
        if not key.isdigit() and not _UUID.match(key):
            raise errors.invalid_input(
                "The ID provided does not look like a personID. If you are using a distinctId, "
                f"please use /persons?distinct_id={key} instead.",
            )
        with self.lock:
            for person in self._persons:
                if str(person.pk) == key or _normal_uuid(person.uuid) == _normal_uuid(key):
                    return person
        raise errors.not_found("Person not found.")

    def resolve(self, uuids: Iterable[str] = (), distinct_ids: Iterable[str] = ()) -> list[Person]:
        """The persons matching any of ``uuids`` or owning any of ``distinct_ids``, each
        once; values that match nobody are skipped."""
        wanted_uuids = {_normal_uuid(value) for value in uuids}
        wanted_ids = set(distinct_ids)
        with self.lock:
            return [
                person
                for person in self._persons
                if _normal_uuid(person.uuid) in wanted_uuids or wanted_ids.intersection(person.distinct_ids)
            ]

    def delete(self, persons: Iterable[Person]) -> int:
        """Delete person profiles (their distinct ids become free); how many there were."""
        doomed = {id(person) for person in persons}
        with self.lock:
            before = len(self._persons)
            self._persons = [p for p in self._persons if id(p) not in doomed]
            return before - len(self._persons)

    def queue_recordings_job(
        self, persons: Iterable[Person], due: float, deleted_by: str | None = None
    ) -> None:
        """Queue one job for the distinct ids these persons have now."""
        distinct_ids = frozenset(d for person in persons for d in person.distinct_ids)
        with self.lock:
            self._jobs.append(_Job(due, distinct_ids, deleted_by))

    @property
    def pending(self) -> int:
        with self.lock:
            return len(self._jobs)

    def run_due_jobs(self, recordings: RecordingStore, now: float, wall_seconds: int = 0) -> int:
        """Delete the recordings of every job whose time has come; how many went.
        ``wall_seconds`` is the deletion time snapshots report (epoch seconds)."""
        with self.lock:
            due = [job for job in self._jobs if job.due <= now]
            self._jobs = [job for job in self._jobs if job.due > now]
        deleted = 0
        for job in due:
            with recordings.lock:
                rows = [
                    row for row in recordings.live_rows() if _distinct_id(recordings, row) in job.distinct_ids
                ]
                for row in rows:
                    recordings.delete(row, at=wall_seconds, by=job.deleted_by)
                deleted += len(rows)
            self.jobs_run += 1
        return deleted


def _distinct_id(recordings: RecordingStore, row: int) -> str:
    """The distinct id a recording answers with, stored or derived (seeded recordings)."""
    stored = recordings.distinct.get(row)
    return stored if stored is not None else default_distinct_id(recordings.salts[row])


@dataclass(frozen=True)
class BulkDelete:
    """A parsed ``persons/bulk_delete/`` body."""

    ids: list[str]
    distinct_ids: list[str]
    delete_recordings: bool
    delete_events: bool
    keep_person: bool


def parse_bulk_delete(payload: dict[str, Any]) -> BulkDelete:
    """PostHog's checks, in its order; flags are read by truthiness (``bool(value)``)."""
    distinct_ids = payload.get("distinct_ids")
    ids = payload.get("ids")
    if distinct_ids and ids:
        raise errors.invalid_input("You must provide either distinct_ids or ids, not both")
    for name, values in (("distinct_ids", distinct_ids), ("ids", ids)):
        if values and not isinstance(values, list):
            raise errors.invalid_input(
                f'Expected a list of items but got type "{type(values).__name__}".', name
            )
        if values and len(values) > BULK_DELETE_MAX:
            raise errors.invalid_input(f"You can only pass {BULK_DELETE_MAX} {name} in one call")
    if not distinct_ids and not ids:
        raise errors.invalid_input("You need to specify either distinct_ids or ids")
    return BulkDelete(
        ids=[str(value) for value in ids or []],
        distinct_ids=[str(value) for value in distinct_ids or []],
        delete_recordings=bool(payload.get("delete_recordings")),
        delete_events=bool(payload.get("delete_events")),
        keep_person=bool(payload.get("keep_person")),
    )
