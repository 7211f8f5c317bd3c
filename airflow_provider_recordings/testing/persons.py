"""PostHog's persons, as far as an erasure request needs them.

A person owns one or more distinct ids. ``POST persons/<id>/delete_recordings/`` queues
PostHog's "delete-recordings-with-person" job and answers 202 at once; the job deletes
the recordings of every distinct id of the person some time later, which the emulator
plays on its clock: a queued job runs once ``person_job_delay`` seconds have passed,
checked before each API request.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_recordings.testing import errors
from airflow_provider_recordings.testing.store import RecordingStore
from airflow_provider_recordings.testing.timefmt import iso

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


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


class PersonStore:
    """Persons by id, UUID and distinct id, and the recordings jobs queued for them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._persons: list[Person] = []
        self._jobs: list[_Job] = []
        self.jobs_run = 0

    def add(self, distinct_ids: list[str], created_at: datetime, person_uuid: str | None = None) -> Person:
        with self.lock:
            person = Person(
                pk=len(self._persons) + 1,
                uuid=person_uuid or str(uuid.uuid4()),
                distinct_ids=list(distinct_ids),
                created_at=created_at,
            )
            self._persons.append(person)
            return person

    def by_distinct_id(self, distinct_id: str) -> list[Person]:
        with self.lock:
            return [p for p in self._persons if distinct_id in p.distinct_ids]

    def find(self, key: str) -> Person:
        """A person by numeric id or UUID, as PostHog's ``persons/<pk or uuid>/`` route reads it."""
        if not key.isdigit() and not _UUID.match(key):
            raise errors.invalid_input(
                f"The value {key!r} is not a valid person id or UUID. "
                "To find a person by distinct id, use ?distinct_id= instead.",
                "id",
            )
        with self.lock:
            for person in self._persons:
                if str(person.pk) == key or person.uuid.replace("-", "") == key.replace("-", "").lower():
                    return person
        raise errors.not_found("Person not found.")

    def queue_recordings_job(self, person: Person, due: float) -> None:
        with self.lock:
            self._jobs.append(_Job(due, frozenset(person.distinct_ids)))

    @property
    def pending(self) -> int:
        with self.lock:
            return len(self._jobs)

    def run_due_jobs(self, recordings: RecordingStore, now: float) -> int:
        """Delete the recordings of every job whose time has come; how many went."""
        with self.lock:
            due = [job for job in self._jobs if job.due <= now]
            self._jobs = [job for job in self._jobs if job.due > now]
        deleted = 0
        for job in due:
            with recordings.lock:
                rows = [
                    row for row in recordings.live_rows() if recordings.distinct.get(row) in job.distinct_ids
                ]
                for row in rows:
                    recordings.delete(row)
                deleted += len(rows)
            self.jobs_run += 1
        return deleted
