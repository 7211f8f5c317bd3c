"""Erase every session recording of one person, and keep a receipt that shows it was done.

A person may ask for their data to be deleted (GDPR art. 17, CCPA), usually within a
month, and the team must be able to show it was done. Session recordings show what the
person did on screen. One task per request:

1. **Find** the person (``persons/?distinct_id=``, or by UUID) and every recording of all
   their distinct ids, across all time (not PostHog's default three days).
2. **Wait** for recordings still being recorded to end, in the triggerer (no worker slot
   held), up to ``wait_for_ongoing``; past it the request fails, naming them.
3. **Delete**: where the key may (``person:write``), one call per person asks PostHog to
   delete all the person's recordings in a background job, outside the recordings
   budget; otherwise (403, or an older server's 404/405, or distinct ids that belong to
   no person) recording by recording, in bulk where PostHog allows it.
4. **Verify**: list again until none remain, waiting in the triggerer between checks for
   PostHog's job, up to ``verify_timeout``; then whatever is left is deleted one by one
   and checked once more.

A JSON receipt records the request, what was found, deleted or already gone, the route
taken, the verification and the API calls spent. Rerunning a request is safe: what is
gone is not listed, and the receipt says there was nothing left to erase.

Example::

    PostHogRecordingErasureOperator(
        task_id="erase_recordings",
        request_id="{{ params.request_id }}",
        distinct_ids="{{ params.distinct_ids | tojson }}",
        receipt_path="s3://privacy/erasure/{{ params.request_id }}/{{ run_id }}.json",
    )
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_recordings.core.endpoints import DeleteSummary, person_route_unavailable
from airflow_provider_recordings.core.errors import PostHogApiError, PostHogConfigError, PostHogNotFoundError
from airflow_provider_recordings.core.recordings import is_ongoing, isoformat
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, as_bool, as_seconds
from airflow_provider_recordings.operators.report import open_for_writing
from airflow_provider_recordings.operators.resume import RunState
from airflow_provider_recordings.operators.selection import ALL_TIME, Selection, from_json_text

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

#: Users per list call (the ``distinct_ids`` filter; keeps the URL well under 8 KB).
USERS_PER_CALL = 100

RECEIPT_IDENTIFIERS = ("hashed", "clear")


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
        value = from_json_text("distinct_ids", text)
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


class PostHogRecordingErasureOperator(PostHogRecordingsBaseOperator):
    """Erase every recording of a person across all time, verify, and write a receipt.

    :param request_id: the erasure request's id (templated): letters, digits and
        ``._:-``, up to 128 characters; it names the request in the receipt and logs.
    :param distinct_ids: the person's distinct ids (templated; a list or a JSON list).
    :param person_uuid: the person's UUID (templated); its distinct ids are added to the
        request's. Give either or both.
    :param receipt_path: where to write the JSON receipt (templated): a local path or any
        URL Airflow's ``ObjectStoragePath`` understands. One receipt per run and attempt
        is safest, e.g. ``.../{{ params.request_id }}/{{ run_id }}.try{{ ti.try_number }}.json``.
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

    Plus ``max_workers``, ``deferrable`` (default ``True``: the waits happen in the
    triggerer) and the connection parameters of
    :class:`~airflow_provider_recordings.operators.base.PostHogRecordingsBaseOperator`.

    Returns (XCom) a summary without identifiers: ``request_id``, ``status``, ``route``,
    ``found``, ``deleted``, ``already_gone``, ``failed``, ``waited_for_ongoing``,
    ``verified``, ``nothing_to_erase``, ``receipt_path``, ``api_calls``.
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
    lineage_operation = "erasure"

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
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        for name in ("recording_ids", "filters", "report_path"):
            if name in kwargs:
                raise ValueError(
                    f"{kwargs.get('task_id')}: an erasure selects by distinct_ids and person_uuid, not {name}"
                )
        kwargs.setdefault("fail_on_remaining", True)
        super().__init__(deferrable=deferrable, **kwargs)
        if receipt_identifiers not in RECEIPT_IDENTIFIERS:
            raise ValueError(f"{self.task_id}: receipt_identifiers must be 'hashed' or 'clear'")
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

    # -- validation (before any request) -------------------------------------------------

    def validate(self, context: Context) -> None:
        if not isinstance(self.request_id, str) or not _REQUEST_ID.match(self.request_id.strip()):
            raise PostHogConfigError(
                f"request_id must be 1-128 letters, digits or '._:-' (it names the receipt), got {self.request_id!r}"
            )
        if not parse_distinct_ids(self.distinct_ids) and parse_person_uuid(self.person_uuid) is None:
            raise PostHogConfigError(
                "give the person's distinct_ids, their person_uuid, or both: both are empty"
            )
        as_bool("use_person_route", self.use_person_route)
        for name in ("wait_for_ongoing", "verify_timeout", "poke_interval", "verify_interval"):
            if as_seconds(name, getattr(self, name)) is None:
                raise PostHogConfigError(f"{name} must be a positive duration")

    def build_selection(self) -> Selection:
        """The request's own distinct ids, as a list selection (persons add theirs later)."""
        users = parse_distinct_ids(self.distinct_ids)
        parse_person_uuid(self.person_uuid)
        return (
            Selection.build(filters={"distinct_ids": users, "date_from": ALL_TIME}) if users else Selection()
        )

    # -- the run ---------------------------------------------------------------------------

    def start(self, context: Context, state: RunState) -> None:
        state.extra.update(
            phase="find",
            started_at=isoformat(datetime.now(UTC)),
            salt=secrets.token_hex(16),
            deleted=[],
            already_gone=[],
            checks=0,
            calls_by_kind={},
        )

    def run(self, context: Context, state: RunState) -> None:
        extra = state.extra
        if extra["phase"] == "find":
            self._find(extra)
            extra["phase"] = "wait"
        if extra["phase"] == "wait":
            self._wait_until_none_is_ongoing(state)
            extra["phase"] = "delete"
        if extra["phase"] == "delete":
            self._delete(state)
            extra["phase"] = "verify"
            extra["verify_deadline"] = time.time() + float(
                as_seconds("verify_timeout", self.verify_timeout) or 0
            )
        if extra["phase"] == "verify":
            self._verify(state)
            extra["phase"] = "done"

    def _find(self, extra: dict[str, Any]) -> None:
        """The persons behind the request, and every distinct id to erase."""
        users = parse_distinct_ids(self.distinct_ids)
        person_uuid = parse_person_uuid(self.person_uuid)
        persons: dict[str, dict[str, Any]] = {}
        notes: list[str] = []
        if person_uuid:
            try:
                found = self.hook.get_person(person_uuid)
                persons[str(found.get("uuid") or person_uuid)] = found
            except PostHogNotFoundError:
                notes.append("the person UUID matches no person")
        for user in users:
            try:
                for person in self.hook.find_persons(user):
                    persons.setdefault(str(person.get("uuid")), person)
            except PostHogApiError as exc:
                if not person_route_unavailable(exc):
                    raise
                notes.append(f"persons could not be looked up ({exc.status}); recordings go one by one")
                break
        everyone = set(users)
        for person in persons.values():
            everyone.update(str(i) for i in person.get("distinct_ids") or ())
        extra["persons"] = [
            {"uuid": uuid, "distinct_ids": sorted(str(i) for i in person.get("distinct_ids") or ())}
            for uuid, person in sorted(persons.items())
        ]
        extra["distinct_ids"] = sorted(everyone)
        extra["notes"] = notes
        self.log.info(
            "Erasure request %s: %d person(s), %d distinct id(s)",
            self.request_id,
            len(persons),
            len(everyone),
        )

    def _recordings(self, extra: dict[str, Any]) -> list[dict[str, Any]]:
        """Every recording of the request's distinct ids, across all time.

        A row whose ``distinct_id`` is not one of them is never kept, whatever the server
        answered for the filter.
        """
        users = extra["distinct_ids"]
        wanted = set(users)
        rows: dict[str, dict[str, Any]] = {}
        for start in range(0, len(users), USERS_PER_CALL):
            chunk = users[start : start + USERS_PER_CALL]
            for row in self.hook.iter_recordings(distinct_ids=chunk, date_from=ALL_TIME):
                if row.get("distinct_id") in wanted:
                    rows[row["id"]] = row
        return list(rows.values())

    def _wait_until_none_is_ongoing(self, state: RunState) -> None:
        extra = state.extra
        event = extra.pop("event", None)
        if event and event.get("status") == "error":
            raise AirflowException(
                f"Erasure request {self.request_id}: waiting failed: {event.get('message')}"
            )
        found = self._recordings(extra)
        extra.setdefault("found_at_start", sorted(row["id"] for row in found))
        now = datetime.now(UTC)
        ongoing = sorted(row["id"] for row in found if is_ongoing(row, now, timedelta(minutes=5)))
        if not ongoing:
            extra["to_delete"] = {
                row["id"]: row.get("distinct_id") for row in sorted(found, key=lambda r: r["id"])
            }
            return
        deadline = extra.setdefault(
            "wait_deadline", time.time() + float(as_seconds("wait_for_ongoing", self.wait_for_ongoing) or 0)
        )
        extra["waited_for"] = sorted(set(extra.get("waited_for", [])) | set(ongoing))
        if time.time() >= deadline or (event and event.get("status") == "timeout"):
            self._fail(
                state,
                "timed_out",
                f"{len(ongoing)} recording(s) were still being recorded when wait_for_ongoing ran out: "
                + ", ".join(ongoing[:10]),
            )
        self.log.info("%d recording(s) still being recorded; waiting for them to end", len(ongoing))
        from airflow_provider_recordings.triggers.ongoing import PostHogOngoingRecordingsTrigger

        self._defer(
            state,
            lambda carried: PostHogOngoingRecordingsTrigger(
                self.posthog_conn_id,
                recording_ids=ongoing,
                missing="ignore",
                poke_interval=float(as_seconds("poke_interval", self.poke_interval) or 60),
                deadline=deadline,
                state=carried,
            ),
            timeout=deadline - time.time() + 300,
        )

    def _delete(self, state: RunState) -> None:
        extra = state.extra
        to_delete: dict[str, str | None] = extra.get("to_delete", {})
        if not to_delete:
            extra["routes"] = {person["uuid"]: "none" for person in extra.get("persons", [])}
            self.log.info("Erasure request %s: no recording to delete", self.request_id)
            return
        routes: dict[str, str] = {}
        by_person: set[str] = set()
        person_route = as_bool("use_person_route", self.use_person_route)
        for person in extra.get("persons", []):
            if person_route:
                try:
                    self.hook.delete_person_recordings(person["uuid"])
                except PostHogApiError as exc:
                    if not (person_route_unavailable(exc) or isinstance(exc, PostHogNotFoundError)):
                        raise
                    person_route = False
                    extra["notes"].append(
                        f"PostHog refused deleting recordings by person ({exc.status}); deleted one by one"
                    )
                else:
                    routes[person["uuid"]] = "person"
                    by_person.update(person["distinct_ids"])
                    continue
            routes[person["uuid"]] = "recordings"
        extra["routes"] = routes
        # Recordings of distinct ids that no person route covers go one by one (in bulk
        # where PostHog allows it).
        one_by_one = sorted(rid for rid, user in to_delete.items() if user not in by_person)
        self.log.info(
            "Erasure request %s: %d recording(s) to delete, %d by person, %d one by one",
            self.request_id,
            len(to_delete),
            len(to_delete) - len(one_by_one),
            len(one_by_one),
        )
        if one_by_one:
            self._delete_each(state, one_by_one)

    def _delete_each(self, state: RunState, ids: list[str]) -> None:
        state.extra["one_by_one"] = True

        def record(part: DeleteSummary, chunk: list[str]) -> None:
            for recording_id in chunk:
                outcome, reason = part.outcome(recording_id)
                if outcome == "deleted":
                    state.extra["deleted"].append(recording_id)
                elif outcome == "already_gone":
                    state.extra["already_gone"].append(recording_id)
                else:
                    state.fail(recording_id, reason or "failed")

        self.hook.delete_recordings(ids, max_workers=int(self.max_workers), on_part=record)

    def _verify(self, state: RunState) -> None:
        extra = state.extra
        extra.pop("event", None)
        remaining = sorted(row["id"] for row in self._recordings(extra))
        extra["checks"] += 1
        if not remaining:
            extra["verified_at"] = isoformat(datetime.now(UTC))
            # What PostHog's job deleted is confirmed gone now.
            gone = set(extra.get("to_delete", {})) - set(extra["already_gone"]) - set(state.failed)
            extra["deleted"] = sorted(set(extra["deleted"]) | gone)
            return
        if time.time() < extra["verify_deadline"]:
            self.log.info("%d recording(s) not gone yet; checking again shortly", len(remaining))
            from airflow_provider_recordings.triggers.resume import PostHogBudgetTrigger

            wait = float(as_seconds("verify_interval", self.verify_interval) or 30)
            self._defer(
                state,
                lambda carried: PostHogBudgetTrigger(
                    resume_at=time.time() + wait,
                    reason="waiting for PostHog to delete recordings",
                    state=carried,
                ),
                timeout=wait + 300,
            )
        if not extra.get("last_resort"):
            # PostHog's job did not finish in time: delete what is left one by one.
            extra["last_resort"] = True
            self._delete_each(state, remaining)
            extra["verify_deadline"] = time.time()
            self._verify(state)
            return
        extra["remaining"] = remaining
        self._fail(
            state,
            "incomplete",
            f"{len(remaining)} recording(s) remain after verification: {', '.join(remaining[:10])}",
        )

    # -- deferral ----------------------------------------------------------------------------

    def _defer(
        self, state: RunState, make_trigger: Callable[[dict[str, Any]], Any], *, timeout: float
    ) -> None:
        """Wait in the triggerer and come back to :meth:`execute_after_wait` with the state
        (carried by the trigger's event too: not every runner keeps a deferral's kwargs)."""
        state.api_calls += self.hook.stats.requests
        self._tally_calls(state)
        state.deferrals += 1
        carried = state.to_dict()
        self.defer(
            trigger=make_trigger(carried),
            method_name="execute_after_wait",
            kwargs={"state": carried},
            timeout=timedelta(seconds=max(timeout, 60)),
        )

    def execute_after_wait(
        self, context: Context, event: dict[str, Any] | None = None, state: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Back from a wait in the triggerer (ongoing recordings, or PostHog's job)."""
        event = event or {}
        carried = dict(state or event.get("state") or {})
        carried.setdefault("extra", {})["event"] = {
            key: event.get(key) for key in ("status", "message", "ongoing") if key in event
        }
        self.log.info("Resuming erasure request %s after a wait (%s)", self.request_id, event.get("status"))
        return self._drive(context, carried)

    # -- results and the receipt ------------------------------------------------------------

    def _tally_calls(self, state: RunState) -> None:
        tally = state.extra.setdefault("calls_by_kind", {})
        for kind, count in self.hook.stats.snapshot()["by_kind"].items():
            tally[kind] = tally.get(kind, 0) + count

    def result(self, state: RunState) -> dict[str, Any]:
        extra = state.extra
        routes = {route for route in extra.get("routes", {}).values() if route == "person"}
        routes |= {"recordings"} if extra.get("one_by_one") else set()
        return {
            "request_id": self.request_id,
            "status": extra.get("status", "completed"),
            "route": "mixed" if len(routes) > 1 else (routes.pop() if routes else "none"),
            "found": len(self._found(extra)),
            "deleted": len(extra.get("deleted", [])),
            "already_gone": len(extra.get("already_gone", [])),
            "failed": state.failed_count,
            "waited_for_ongoing": len(extra.get("waited_for", [])),
            "verified": "verified_at" in extra,
            "nothing_to_erase": not self._found(extra),
            "receipt_path": self.receipt_path,
        }

    @staticmethod
    def _found(extra: dict[str, Any]) -> list[str]:
        """Every recording the request found: at the first listing, and after the wait
        (a session may have started in between)."""
        return sorted(set(extra.get("found_at_start", [])) | set(extra.get("to_delete", {})))

    def lineage_summary(self, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "operation": self.lineage_operation,
            "selected": result["found"],
            "deleted": result["deleted"],
            "already_gone": result["already_gone"],
            "failed": result["failed"],
            "remaining": int(result.get("remaining") or 0),
            "route": result["route"],
        }

    def _complete(self, context: Context, state: RunState, stopped: str | None) -> dict[str, Any]:
        if stopped:
            state.extra["status"] = "stopped"
        self._tally_calls(state)
        self.write_receipt(state)
        return super()._complete(context, state, stopped)

    def _fail(self, state: RunState, status: str, message: str) -> None:
        """End the request as failed: the receipt says why, then the task fails (no retry)."""
        state.extra["status"] = status
        state.api_calls += self.hook.stats.requests
        self._tally_calls(state)
        self.lineage = self.lineage_summary(self.result(state))
        self.write_receipt(state)
        raise AirflowFailException(f"Erasure request {self.request_id} {status.replace('_', ' ')}: {message}")

    def _identifier(self, state: RunState, value: str) -> str:
        if self.receipt_identifiers == "clear":
            return value
        return hmac.new(bytes.fromhex(state.extra["salt"]), value.encode(), hashlib.sha256).hexdigest()

    def receipt(self, state: RunState) -> dict[str, Any]:
        """The receipt: what was asked, found and done. Never a key, token or (by default) an
        identifier in clear."""
        extra = state.extra
        result = self.result(state)
        return {
            "request_id": self.request_id,
            "status": result["status"],
            "started_at": extra.get("started_at"),
            "finished_at": isoformat(datetime.now(UTC)),
            "identifiers": {"form": self.receipt_identifiers}
            | (
                {"hash": "hmac-sha256", "salt": extra.get("salt")}
                if self.receipt_identifiers == "hashed"
                else {}
            ),
            "selectors": {
                "distinct_ids": [self._identifier(state, i) for i in parse_distinct_ids(self.distinct_ids)],
                "person_uuid": (
                    self._identifier(state, uuid) if (uuid := parse_person_uuid(self.person_uuid)) else None
                ),
            },
            "persons": [
                {
                    "person": self._identifier(state, person["uuid"]),
                    "distinct_ids": [self._identifier(state, i) for i in person["distinct_ids"]],
                    "route": extra.get("routes", {}).get(person["uuid"], "none"),
                }
                for person in extra.get("persons", [])
            ],
            "route": result["route"],
            "recordings": {
                "found": self._found(extra),
                "waited_for_ongoing": sorted(extra.get("waited_for", [])),
                "deleted": sorted(set(extra.get("deleted", []))),
                "already_gone": sorted(set(extra.get("already_gone", []))),
                "failed": dict(sorted(state.failed.items())),
                "remaining": sorted(extra.get("remaining", [])),
            },
            "nothing_to_erase": result["nothing_to_erase"],
            "verification": {
                "verified": result["verified"],
                "checks": extra.get("checks", 0),
                "verified_at": extra.get("verified_at"),
            },
            "notes": list(dict.fromkeys(extra.get("notes", []))),
            "api_calls": {
                "total": state.api_calls,
                "by_kind": dict(sorted(extra.get("calls_by_kind", {}).items())),
            },
            "deferrals": state.deferrals,
        }

    def write_receipt(self, state: RunState) -> None:
        if not self.receipt_path:
            return
        receipt = self.receipt(state)
        with open_for_writing(self.receipt_path, "w") as handle:
            json.dump(receipt, handle, indent=2, sort_keys=True)
            handle.write("\n")
        self.log.info("Receipt of erasure request %s written to %s", self.request_id, self.receipt_path)
