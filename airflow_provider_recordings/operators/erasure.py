"""Erase every session recording of one person, and keep a receipt that shows it was done.

A person may ask for their data to be deleted (GDPR art. 17, CCPA), usually within a
month, and the team must be able to show it was done. Session recordings show what the
person did on screen. One task per request, in four phases:

1. **Find** the person (``persons/?distinct_id=``, or by UUID) and every recording of all
   their distinct ids, across all time (not PostHog's default three days).
2. **Wait** for recordings still being recorded to end, in the triggerer (no worker slot
   held), up to ``wait_for_ongoing``; past it the request fails, naming them.
3. **Delete**: where the key may (``person:write``), PostHog's ``persons/bulk_delete/``
   deletes the persons' recordings in a background job (one call for up to 1,000
   persons, the persons kept); on a server without it, the deprecated
   ``persons/<id>/delete_recordings/``; otherwise (403, or distinct ids that belong to no
   person) recording by recording, in bulk where PostHog allows it.
4. **Verify**: list again until none remain, waiting in the triggerer between checks for
   PostHog's job, up to ``verify_timeout``; then whatever is left is deleted one by one
   and checked once more.

The JSON receipt is written first (proving the path writable before anything is
deleted), kept current at every wait, and completed at the end: the request, what was
found, deleted or already gone, the route taken, the verification and the API calls
spent. Rerunning a request is safe: what is gone is not listed, and when an earlier
attempt left a receipt (or may have run without one) the new receipt says so.

Example::

    PostHogRecordingErasureOperator(
        task_id="erase_recordings",
        request_id="{{ params.request_id }}",
        distinct_ids="{{ params.distinct_ids | tojson }}",
        receipt_path="s3://privacy/erasure/{{ params.request_id }}/{{ run_id }}.json",
    )
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowFailException, conf

from airflow_provider_recordings.core.endpoints import DeleteSummary, person_route_unavailable
from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogConfigError,
    PostHogNotFoundError,
    PostHogOutputError,
)
from airflow_provider_recordings.core.limits import (
    DISTINCT_IDS_PER_LIST_CALL,
    PERSONS_BULK_DELETE_MAX,
    chunks,
)
from airflow_provider_recordings.core.recordings import is_ongoing, isoformat
from airflow_provider_recordings.core.selection import ALL_TIME, Selection, from_json_text
from airflow_provider_recordings.core.summary import RunSummary
from airflow_provider_recordings.operators.base import (
    PostHogRecordingsBaseOperator,
    RunParams,
    as_bool,
    as_seconds,
)
from airflow_provider_recordings.run import driver
from airflow_provider_recordings.run.machine import PhaseMachine
from airflow_provider_recordings.run.report import read_json, write_json

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_recordings.run.driver import Run

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

RECEIPT_IDENTIFIERS = ("hashed", "clear")

#: How the receipt names each way recordings were deleted.
ROUTE_BULK = "bulk_delete"
ROUTE_PERSON = "delete_recordings"
ROUTE_RECORDINGS = "recordings"


def parse_distinct_ids(value: Any) -> list[str]:
    """The request's distinct ids: a list, or a JSON list from a rendered template."""
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            raise PostHogConfigError(
                f"distinct_ids must be a list of distinct ids, got the single string {text[:60]!r}; "
                f"for one person write [{text[:60]!r}]"
            )
        value = from_json_text("distinct_ids", text, "a list (or a JSON list)")
    if not isinstance(value, list | tuple):
        raise PostHogConfigError(f"distinct_ids must be a list of distinct ids, got {type(value).__name__}")
    ids = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise PostHogConfigError(f"every distinct id must be a non-empty string, got {item!r}")
        ids.append(item.strip())
    return list(dict.fromkeys(ids))


def parse_person_uuid(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _UUID.match(value.strip()):
        raise PostHogConfigError(
            f"person_uuid must be a person's UUID (8-4-4-4-12 hexadecimal digits), got {str(value)[:60]!r}"
        )
    return value.strip().lower()


def _verify_trigger(trigger: Any, resume_at: float, carried: dict[str, Any]) -> Any:
    """The wait for PostHog's deletion job between two verification checks."""
    return trigger(resume_at=resume_at, reason="waiting for PostHog to delete recordings", state=carried)


class Phase(enum.Enum):
    FIND = "find"
    WAIT = "wait"
    DELETE = "delete"
    VERIFY = "verify"
    DONE = "done"


MACHINE = PhaseMachine(
    start=Phase.FIND,
    moves={
        Phase.FIND: frozenset({Phase.WAIT}),
        Phase.WAIT: frozenset({Phase.DELETE}),
        Phase.DELETE: frozenset({Phase.VERIFY}),
        Phase.VERIFY: frozenset({Phase.DONE}),
    },
)


@dataclass
class Person:
    uuid: str
    distinct_ids: list[str] = field(default_factory=list)


@dataclass
class EarlierAttempt:
    """What an earlier attempt of the same request left behind (its receipt, or nothing)."""

    #: The earlier receipt's status, or ``no_receipt`` when an earlier try left none.
    status: str
    #: Recordings the earlier attempt meant to delete (from its receipt).
    candidates: list[str] = field(default_factory=list)


@dataclass
class Job:
    """Everything an erasure request carries across its waits (it all ends in the receipt)."""

    started_at: str = ""
    salt: str = ""
    persons: list[Person] = field(default_factory=list)
    distinct_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    found_at_start: list[str] | None = None
    waited_for: list[str] = field(default_factory=list)
    wait_deadline: float | None = None
    #: Recording id -> its distinct id, fixed once nothing is ongoing.
    to_delete: dict[str, str | None] = field(default_factory=dict)
    #: Person UUID -> how its recordings were deleted.
    routes: dict[str, str] = field(default_factory=dict)
    one_by_one: bool = False
    deleted: list[str] = field(default_factory=list)
    already_gone: list[str] = field(default_factory=list)
    checks: int = 0
    verify_deadline: float | None = None
    verified_at: str | None = None
    last_resort: bool = False
    left_after_verify: list[str] = field(default_factory=list)
    status: str = "in_progress"
    earlier: EarlierAttempt | None = None


@dataclass(frozen=True)
class Params(RunParams):
    request_id: str
    distinct_ids: list[str]
    person_uuid: str | None
    receipt_path: str | None
    receipt_identifiers: str
    use_person_route: bool
    wait_for_ongoing: float
    poke_interval: float
    verify_timeout: float
    verify_interval: float


class PostHogRecordingErasureOperator(PostHogRecordingsBaseOperator):
    """Erase every recording of a person across all time, verify, and write a receipt.

    :param request_id: the erasure request's id (templated): letters, digits and
        ``._:-``, up to 128 characters; it names the request in the receipt and logs.
    :param distinct_ids: the person's distinct ids (templated; a list or a JSON list).
    :param person_uuid: the person's UUID (templated); its distinct ids are added to the
        request's. Give either or both.
    :param receipt_path: where to write the JSON receipt (templated): a local path or any
        URL Airflow's ``ObjectStoragePath`` understands. It is written before anything is
        deleted, so an unwritable path fails the request with nothing erased. One receipt
        per run is safest, e.g. ``.../{{ params.request_id }}/{{ run_id }}.json``; a retry
        of the same run finds the earlier attempt's receipt there and says so.
    :param receipt_identifiers: ``"hashed"`` (default): the receipt holds each distinct id
        and person UUID as an HMAC-SHA256 with a random salt kept in the receipt, so it
        shows which identifiers were erased to whoever already knows them, and to nobody
        else; ``"clear"``: as given.
    :param use_person_route: ask PostHog to delete by person where the key may (default);
        ``False`` deletes recording by recording.
    :param wait_for_ongoing: longest wait for recordings still being recorded to end.
    :param poke_interval: seconds between checks while waiting for them.
    :param verify_timeout: longest wait for PostHog's deletion job to finish.
    :param verify_interval: seconds between verification checks.
    :param deferrable: wait in the triggerer (recommended: the waits can be long). Defaults
        to ``[operators] default_deferrable``; without it, a request that must wait fails
        with a message saying so.

    Plus ``max_workers`` and the connection parameters of
    :class:`~airflow_provider_recordings.operators.base.PostHogRecordingsBaseOperator`.

    Returns (XCom) a summary without identifiers: ``request_id``, ``status``, ``route``,
    ``found``, ``deleted``, ``already_gone``, ``failed``, ``waited_for_ongoing``,
    ``verified``, ``nothing_to_erase``, ``earlier_attempt``, ``receipt_path``, ``api_calls``.
    """

    template_fields: Sequence[str] = (
        "posthog_conn_id",
        "request_id",
        "distinct_ids",
        "person_uuid",
        "receipt_path",
    )
    template_fields_renderers = {"distinct_ids": "json"}
    noun = "deletions"
    operation = "erasure"
    machine = MACHINE
    job_type = Job

    def __init__(
        self,
        *,
        request_id: str,
        distinct_ids: list[str] | str | None = None,
        person_uuid: str | None = None,
        receipt_path: str | None = None,
        receipt_identifiers: str = "hashed",
        use_person_route: bool | str = True,
        wait_for_ongoing: timedelta | float = timedelta(hours=2),
        poke_interval: float = 60.0,
        verify_timeout: timedelta | float = timedelta(hours=1),
        verify_interval: float = 30.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        fail_on_remaining: bool = True,
        **kwargs: Any,
    ) -> None:
        for name in ("recording_ids", "filters", "report_path"):
            if name in kwargs:
                raise ValueError(
                    f"{kwargs.get('task_id')}: an erasure selects by distinct_ids and person_uuid, not {name}"
                )
        super().__init__(deferrable=deferrable, fail_on_remaining=fail_on_remaining, **kwargs)
        self.request_id = request_id
        self.distinct_ids = distinct_ids
        self.person_uuid = person_uuid
        self.receipt_path = receipt_path
        self.receipt_identifiers = receipt_identifiers
        self.use_person_route = use_person_route
        self.wait_for_ongoing = wait_for_ongoing
        self.poke_interval = poke_interval
        self.verify_timeout = verify_timeout
        self.verify_interval = verify_interval

    # -- parameters and state (before any request) --------------------------------------------

    def prepare(self, context: Context) -> Params:
        if not isinstance(self.request_id, str) or not _REQUEST_ID.match(self.request_id.strip()):
            raise PostHogConfigError(
                f"request_id must be 1-128 letters, digits or '._:-' (it names the receipt), got {self.request_id!r}"
            )
        users = parse_distinct_ids(self.distinct_ids)
        person_uuid = parse_person_uuid(self.person_uuid)
        if not users and person_uuid is None:
            raise PostHogConfigError(
                "give the person's distinct_ids, their person_uuid, or both: both are empty"
            )
        if self.receipt_identifiers not in RECEIPT_IDENTIFIERS:
            raise PostHogConfigError(
                f"receipt_identifiers must be 'hashed' or 'clear', got {self.receipt_identifiers!r}"
            )
        durations = {
            name: as_seconds(name, getattr(self, name))
            for name in ("wait_for_ongoing", "poke_interval", "verify_timeout", "verify_interval")
        }
        for name, seconds in durations.items():
            if seconds is None:
                raise PostHogConfigError(f"{name} must be a positive duration")
        common = self.run_params(context)
        return Params(
            **common.shared(),
            request_id=self.request_id.strip(),
            distinct_ids=users,
            person_uuid=person_uuid,
            receipt_path=str(self.receipt_path) if self.receipt_path not in (None, "") else None,
            receipt_identifiers=self.receipt_identifiers,
            use_person_route=as_bool("use_person_route", self.use_person_route),
            wait_for_ongoing=durations["wait_for_ongoing"] or 0.0,
            poke_interval=durations["poke_interval"] or 0.0,
            verify_timeout=durations["verify_timeout"] or 0.0,
            verify_interval=durations["verify_interval"] or 0.0,
        )

    def build_selection(self) -> Selection:
        """The request's own distinct ids (persons add theirs once found)."""
        users = parse_distinct_ids(self.distinct_ids)
        return (
            Selection.build(filters={"distinct_ids": users, "date_from": ALL_TIME}) if users else Selection()
        )

    def new_job(self, context: Context, params: Params) -> Job:
        job = Job(started_at=isoformat(datetime.now(UTC)), salt=secrets.token_hex(16))
        job.earlier = self._earlier_attempt(context, params)
        # The receipt is written before the first request: an unwritable path fails the
        # request now, with nothing erased, instead of after the deletes.
        self._write_receipt(params, job, state_calls=(0, {}), deferrals=0, failed={})
        return job

    def _earlier_attempt(self, context: Context, params: Params) -> EarlierAttempt | None:
        earlier = read_json(params.receipt_path) if params.receipt_path else None
        if earlier is not None and earlier.get("request_id") == params.request_id:
            if earlier.get("status") == "completed":
                return None
            recordings = earlier.get("recordings") or {}
            candidates = sorted(set(recordings.get("to_delete") or []) | set(recordings.get("deleted") or []))
            return EarlierAttempt(status=str(earlier.get("status")), candidates=candidates)
        try_number = getattr(context.get("ti"), "try_number", 1) or 1
        if int(try_number) > 1:
            return EarlierAttempt(status="no_receipt")
        return None

    def upgrade_v1(self, extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        persons = [
            {"uuid": str(p.get("uuid")), "distinct_ids": [str(i) for i in p.get("distinct_ids") or []]}
            for p in extra.get("persons") or []
        ]
        # 0.2.0 named the person route "person".
        routes = {
            str(k): (ROUTE_PERSON if v == "person" else str(v))
            for k, v in (extra.get("routes") or {}).items()
        }
        job = {
            "started_at": extra.get("started_at") or "",
            "salt": extra.get("salt") or secrets.token_hex(16),
            "persons": persons,
            "distinct_ids": list(extra.get("distinct_ids") or []),
            "notes": list(extra.get("notes") or []),
            "found_at_start": extra.get("found_at_start"),
            "waited_for": list(extra.get("waited_for") or []),
            "wait_deadline": extra.get("wait_deadline"),
            "to_delete": dict(extra.get("to_delete") or {}),
            "routes": routes,
            "one_by_one": bool(extra.get("one_by_one")),
            "deleted": list(extra.get("deleted") or []),
            "already_gone": list(extra.get("already_gone") or []),
            "checks": int(extra.get("checks") or 0),
            "verify_deadline": extra.get("verify_deadline"),
            "verified_at": extra.get("verified_at"),
            "last_resort": bool(extra.get("last_resort")),
            "left_after_verify": list(extra.get("remaining") or []),
            "status": str(extra.get("status") or "in_progress"),
        }
        return str(extra.get("phase") or Phase.FIND.value), job, {}

    # -- the phases ------------------------------------------------------------------------------

    def step(self, run: Run, phase: Phase) -> Phase:
        if phase is Phase.FIND:
            self._find(run)
            return Phase.WAIT
        if phase is Phase.WAIT:
            self._wait_until_none_is_ongoing(run)
            return Phase.DELETE
        if phase is Phase.DELETE:
            self._delete(run)
            run.job.verify_deadline = time.time() + run.params.verify_timeout
            return Phase.VERIFY
        self._verify(run)
        return Phase.DONE

    def _find(self, run: Run) -> None:
        """The persons behind the request, and every distinct id to erase."""
        params: Params = run.params
        job: Job = run.job
        persons: dict[str, list[str]] = {}
        if params.person_uuid:
            try:
                found = run.hook.get_person(params.person_uuid)
                persons[str(found.get("uuid") or params.person_uuid)] = [
                    str(i) for i in found.get("distinct_ids") or ()
                ]
            except PostHogNotFoundError:
                job.notes.append("the person UUID matches no person")
        for user in params.distinct_ids:
            try:
                for person in run.hook.find_persons(user):
                    persons.setdefault(
                        str(person.get("uuid")), [str(i) for i in person.get("distinct_ids") or ()]
                    )
            except PostHogApiError as exc:
                if not person_route_unavailable(exc):
                    raise
                job.notes.append(f"persons could not be looked up ({exc.status}); recordings go one by one")
                break
        everyone = set(params.distinct_ids)
        for ids in persons.values():
            everyone.update(ids)
        job.persons = [Person(uuid=uuid, distinct_ids=sorted(ids)) for uuid, ids in sorted(persons.items())]
        job.distinct_ids = sorted(everyone)
        run.log.info(
            "Erasure request %s: %d person(s), %d distinct id(s)",
            params.request_id,
            len(persons),
            len(everyone),
        )

    def _recordings(self, run: Run) -> list[dict[str, Any]]:
        """Every recording of the request's distinct ids, across all time.

        A row whose ``distinct_id`` is not one of them is never kept, whatever the server
        answered for the filter.
        """
        users = run.job.distinct_ids
        wanted = set(users)
        rows: dict[str, dict[str, Any]] = {}
        for chunk in chunks(users, DISTINCT_IDS_PER_LIST_CALL):
            for row in run.hook.iter_recordings(distinct_ids=chunk, date_from=ALL_TIME):
                if row.get("distinct_id") in wanted:
                    rows[row["id"]] = row
        return list(rows.values())

    def _wait_until_none_is_ongoing(self, run: Run) -> None:
        params: Params = run.params
        job: Job = run.job
        event = run.state.event
        if event is not None and event.status == "error":
            self._fail(run, "failed", f"waiting for the person's sessions to end failed: {event.message}")
        found = self._recordings(run)
        if job.found_at_start is None:
            job.found_at_start = sorted(row["id"] for row in found)
        now = datetime.now(UTC)
        ongoing = sorted(row["id"] for row in found if is_ongoing(row, now, timedelta(minutes=5)))
        if not ongoing:
            job.to_delete = {
                row["id"]: row.get("distinct_id") for row in sorted(found, key=lambda r: r["id"])
            }
            return
        if job.wait_deadline is None:
            job.wait_deadline = time.time() + params.wait_for_ongoing
        job.waited_for = sorted(set(job.waited_for) | set(ongoing))
        if time.time() >= job.wait_deadline or (event is not None and event.status == "timeout"):
            self._fail(
                run,
                "timed_out",
                f"{len(ongoing)} recording(s) were still being recorded when wait_for_ongoing ran out: "
                + ", ".join(ongoing[:10]),
            )
        if not params.deferrable:
            self._fail(
                run,
                "failed",
                f"{len(ongoing)} recording(s) are still being recorded ({', '.join(ongoing[:10])}); waiting for "
                "them needs deferrable=True (and a triggerer)",
            )
        run.log.info("%d recording(s) still being recorded; waiting for them to end", len(ongoing))
        from airflow_provider_recordings.triggers.ongoing import PostHogOngoingRecordingsTrigger

        deadline = job.wait_deadline
        run.wait(
            lambda carried: PostHogOngoingRecordingsTrigger(
                self.posthog_conn_id,
                recording_ids=ongoing,
                missing="ignore",
                poke_interval=params.poke_interval,
                deadline=deadline,
                state=carried,
            ),
            timeout=deadline - time.time(),
            reason=f"{len(ongoing)} recording(s) of the person are still being recorded",
        )

    def _delete(self, run: Run) -> None:
        params: Params = run.params
        job: Job = run.job
        if not job.to_delete:
            job.routes = {person.uuid: "none" for person in job.persons}
            run.log.info("Erasure request %s: no recording to delete", params.request_id)
            return
        # The receipt names what is about to go before the first delete does: should a
        # later write fail, a rerun can still say which recordings may have been erased.
        self._write_receipt(
            params,
            job,
            state_calls=(run.state.api_calls, run.state.calls_by_kind),
            deferrals=run.state.deferrals,
            failed=run.state.failed,
        )
        by_person = self._delete_by_person(run) if params.use_person_route else set()
        for person in job.persons:
            job.routes.setdefault(person.uuid, ROUTE_RECORDINGS)
        # Recordings of distinct ids that no person route covers go one by one (in bulk
        # where PostHog allows it).
        one_by_one = sorted(rid for rid, user in job.to_delete.items() if user not in by_person)
        run.log.info(
            "Erasure request %s: %d recording(s) to delete, %d by person, %d one by one",
            params.request_id,
            len(job.to_delete),
            len(job.to_delete) - len(one_by_one),
            len(one_by_one),
        )
        if one_by_one:
            self._delete_each(run, one_by_one)

    def _delete_by_person(self, run: Run) -> set[str]:
        """Ask PostHog to delete by person: ``persons/bulk_delete/`` first, the deprecated
        per-person route on servers without it. Returns the distinct ids covered."""
        job: Job = run.job
        covered: set[str] = set()
        persons = [person for person in job.persons if person.distinct_ids]
        if not persons:
            return covered
        try:
            for part in chunks([p.uuid for p in persons], PERSONS_BULK_DELETE_MAX):
                answer = run.hook.bulk_delete_person_recordings(part)
                found = answer.get("persons_found")
                if isinstance(found, int) and found < len(part):
                    job.notes.append(f"persons/bulk_delete found {found} of {len(part)} person(s)")
                for uuid in part:
                    job.routes[uuid] = ROUTE_BULK
            return {i for p in persons for i in p.distinct_ids}
        except PostHogApiError as exc:
            if isinstance(exc, PostHogNotFoundError) or exc.status == 405:
                job.notes.append(
                    f"persons/bulk_delete is not available here ({exc.status}); used the person route"
                )
            elif person_route_unavailable(exc):
                job.notes.append(
                    f"PostHog refused deleting recordings by person ({exc.status}); deleted one by one"
                )
                return covered
            else:
                raise
        for person in persons:
            if job.routes.get(person.uuid) == ROUTE_BULK:
                covered.update(person.distinct_ids)
                continue
            try:
                run.hook.delete_person_recordings(person.uuid)
            except PostHogApiError as exc:
                if not (person_route_unavailable(exc) or isinstance(exc, PostHogNotFoundError)):
                    raise
                job.notes.append(
                    f"PostHog refused deleting recordings by person ({exc.status}); deleted one by one"
                )
                break
            job.routes[person.uuid] = ROUTE_PERSON
            covered.update(person.distinct_ids)
        return covered

    def _delete_each(self, run: Run, ids: list[str]) -> None:
        job: Job = run.job
        job.one_by_one = True

        def finished(part: DeleteSummary, chunk: list[str]) -> None:
            for recording_id in chunk:
                outcome, reason = part.outcome(recording_id)
                if outcome == "deleted":
                    job.deleted.append(recording_id)
                elif outcome == "already_gone":
                    job.already_gone.append(recording_id)
                else:
                    run.state.fail(recording_id, reason or "failed")

        run.hook.delete_recordings(ids, max_workers=run.params.max_workers, on_part=finished)

    def _verify(self, run: Run) -> None:
        params: Params = run.params
        job: Job = run.job
        while True:
            remaining = sorted(row["id"] for row in self._recordings(run))
            job.checks += 1
            if not remaining:
                job.verified_at = isoformat(datetime.now(UTC))
                # What PostHog's job deleted is confirmed gone now.
                gone = set(job.to_delete) - set(job.already_gone) - set(run.state.failed)
                job.deleted = sorted(set(job.deleted) | gone)
                job.status = "completed"
                return
            if job.verify_deadline is None or time.time() >= job.verify_deadline:
                break
            run.log.info(
                "%d recording(s) not gone yet; checking again in %.0f s",
                len(remaining),
                params.verify_interval,
            )
            if not params.deferrable:
                # Without a triggerer the worker waits (its stop still ends the wait at once).
                run.hook.stop_event.wait(params.verify_interval)
                continue
            from airflow_provider_recordings.triggers.resume import PostHogBudgetTrigger

            run.wait(
                partial(
                    _verify_trigger,
                    PostHogBudgetTrigger,
                    time.time() + params.verify_interval,
                ),
                timeout=params.verify_interval,
                reason=f"{len(remaining)} recording(s) not gone yet",
            )
        if not job.last_resort:
            # PostHog's job did not finish in time: delete what is left one by one.
            job.last_resort = True
            self._delete_each(run, remaining)
            job.verify_deadline = time.time()
            self._verify(run)
            return
        job.left_after_verify = remaining
        self._fail(
            run,
            "incomplete",
            f"{len(remaining)} recording(s) remain after verification: {', '.join(remaining[:10])}",
        )

    # -- results and the receipt ----------------------------------------------------------------

    def _fail(self, run: Run, status: str, message: str) -> NoReturn:
        """End the request as failed: the receipt says why, then the task fails (no retry)."""
        run.job.status = status
        run.close_pass()
        result = self.result(run)
        self.lineage = self.summary(run, result).as_dict()
        self.checkpoint(run, result, status)
        raise AirflowFailException(
            f"Erasure request {run.params.request_id} {status.replace('_', ' ')}: {message}"
        )

    def _found(self, job: Job) -> list[str]:
        """Every recording the request found: at the first listing, and after the wait
        (a session may have started in between)."""
        return sorted(set(job.found_at_start or []) | set(job.to_delete))

    def _route(self, job: Job) -> str:
        routes = {"person" for route in job.routes.values() if route in (ROUTE_BULK, ROUTE_PERSON)}
        routes |= {"recordings"} if job.one_by_one else set()
        return "mixed" if len(routes) > 1 else (routes.pop() if routes else "none")

    def result(self, run: Run) -> dict[str, Any]:
        job: Job = run.job
        found = self._found(job)
        return {
            "request_id": run.params.request_id,
            "status": job.status if job.status != "in_progress" else "stopped",
            "route": self._route(job),
            "found": len(found),
            "deleted": len(set(job.deleted)),
            "already_gone": len(set(job.already_gone)),
            "failed": run.state.failed_count,
            "waited_for_ongoing": len(job.waited_for),
            "verified": job.verified_at is not None,
            "nothing_to_erase": not found,
            "earlier_attempt": None if job.earlier is None else job.earlier.status,
            "receipt_path": run.params.receipt_path,
        }

    def summary(self, run: Run, result: dict[str, Any]) -> RunSummary:
        return RunSummary(
            operation=self.operation,
            selected=result["found"],
            deleted=result["deleted"],
            already_gone=result["already_gone"],
            failed=result["failed"],
            remaining=len(run.job.left_after_verify),
            route=result["route"],
        )

    def checkpoint(self, run: Run, result: dict[str, Any] | None, status: str) -> None:
        """Write the receipt as it stands (at every wait, at the end, on failure)."""
        if status == "stopped" and run.job.status == "in_progress":
            run.job.status = "stopped"
        try:
            self._write_receipt(
                run.params,
                run.job,
                state_calls=(run.state.api_calls, run.state.calls_by_kind),
                deferrals=run.state.deferrals,
                failed=run.state.failed,
            )
        except (PostHogOutputError, PostHogConfigError) as exc:
            # The recordings are gone but the proof is not written: say which, then fail.
            run.unreported.extend(sorted(set(run.job.deleted) | set(run.job.to_delete)))
            error = (
                exc
                if isinstance(exc, PostHogOutputError)
                else PostHogOutputError(str(exc), parameter="receipt_path")
            )
            driver.fail_unreported(run, error)

    def _identifier(self, params: Params, job: Job) -> Callable[[str], str]:
        if params.receipt_identifiers == "clear":
            return lambda value: value
        key = bytes.fromhex(job.salt)
        return lambda value: hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    def receipt(
        self,
        params: Params,
        job: Job,
        *,
        state_calls: tuple[int, dict[str, int]],
        deferrals: int,
        failed: dict[str, str],
    ) -> dict[str, Any]:
        """The receipt: what was asked, found and done. Never a key, token or (by default) an
        identifier in clear."""
        name = self._identifier(params, job)
        found = self._found(job)
        earlier = None
        if job.earlier is not None:
            now_listed = set(found)
            earlier = {
                "status": job.earlier.status,
                "note": "an earlier attempt of this request may have erased recordings"
                + (" (it left no receipt)" if job.earlier.status == "no_receipt" else ""),
                "may_have_erased": job.earlier.candidates,
                "confirmed_gone": sorted(set(job.earlier.candidates) - now_listed)
                if job.found_at_start is not None
                else [],
            }
        total, by_kind = state_calls
        return {
            "request_id": params.request_id,
            "status": job.status,
            "started_at": job.started_at,
            "finished_at": isoformat(datetime.now(UTC)),
            "identifiers": {"form": params.receipt_identifiers}
            | ({"hash": "hmac-sha256", "salt": job.salt} if params.receipt_identifiers == "hashed" else {}),
            "selectors": {
                "distinct_ids": [name(i) for i in params.distinct_ids],
                "person_uuid": name(params.person_uuid) if params.person_uuid else None,
            },
            "persons": [
                {
                    "person": name(person.uuid),
                    "distinct_ids": [name(i) for i in person.distinct_ids],
                    "route": job.routes.get(person.uuid, "none"),
                }
                for person in job.persons
            ],
            "route": self._route(job),
            "recordings": {
                "found": found,
                "to_delete": sorted(job.to_delete),
                "waited_for_ongoing": sorted(job.waited_for),
                "deleted": sorted(set(job.deleted)),
                "already_gone": sorted(set(job.already_gone)),
                "failed": dict(sorted(failed.items())),
                "remaining": sorted(job.left_after_verify),
            },
            "nothing_to_erase": job.found_at_start is not None and not found,
            "earlier_attempt": earlier,
            "verification": {
                "verified": job.verified_at is not None,
                "checks": job.checks,
                "verified_at": job.verified_at,
            },
            "notes": list(dict.fromkeys(job.notes)),
            "api_calls": {"total": total, "by_kind": dict(sorted(by_kind.items()))},
            "deferrals": deferrals,
        }

    def _write_receipt(
        self,
        params: Params,
        job: Job,
        *,
        state_calls: tuple[int, dict[str, int]],
        deferrals: int,
        failed: dict[str, str],
    ) -> None:
        if not params.receipt_path:
            return
        document = self.receipt(params, job, state_calls=state_calls, deferrals=deferrals, failed=failed)
        write_json("receipt_path", params.receipt_path, document)
        self.log.info(
            "Receipt of erasure request %s (%s) written to %s",
            params.request_id,
            job.status,
            params.receipt_path,
        )
