"""Audit which recordings are publicly shared, and optionally turn the links off.

A shared link lets anyone holding it watch a user's session, so the audit reports each
one (with the token masked) and can disable them or fail the run as a gate.

PostHog knows which recordings are shared: its built-in playlist ``synthetic-shared``
lists every recording with an enabled sharing configuration, and costs no list budget.
The audit asks it first, then reads (and, when asked, disables and reads back) only the
shared recordings of its selection: tens of calls where reading every recording's
sharing would cost one call each. Where the key may not read playlists (403) or the
server has none (404: older and self-hosted servers), it reads every selected
recording's sharing instead, and says so.

Example::

    PostHogSharingAuditOperator(task_id="sharing_audit", disable_shared=True, fail_on_shared=True)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_recordings.core.endpoints import PLAYLIST_PAGE, SHARED_PLAYLIST
from airflow_provider_recordings.core.errors import (
    PostHogConfigError,
    PostHogNotFoundError,
    PostHogPermissionError,
)
from airflow_provider_recordings.core.limits import IDS_PER_LIST_CALL
from airflow_provider_recordings.core.recordings import isoformat, parse_time
from airflow_provider_recordings.core.summary import RunSummary
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, RunParams, as_bool
from airflow_provider_recordings.operators.update import selected_pages
from airflow_provider_recordings.run.machine import PhaseMachine
from airflow_provider_recordings.run.progress import Progress
from airflow_provider_recordings.run.upgrade import walk_from_v1

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_provider_recordings.run.driver import Run
    from airflow_provider_recordings.run.walk import Page

#: Characters of an access token that may appear in a report (never more).
TOKEN_TAIL = 4

#: How far back PostHog's shared playlist looks up recordings it has not persisted.
PLAYLIST_DAYS = 365

#: Times the shared playlist is paged when it returns fewer recordings than it counts
#: (its pages are slices of an unordered set, and may miss one the first time).
PLAYLIST_PASSES = 2

OLDER_CHOICES = ("auto", "scan", "skip")


def one_year_before(moment: datetime) -> datetime:
    """``-1y`` as PostHog reads it (a 29 February goes back to the 28th)."""
    try:
        return moment.replace(year=moment.year - 1)
    except ValueError:
        return moment.replace(year=moment.year - 1, day=28)


def masked_link(base_url: str, token: Any) -> str | None:
    """The public link with all but the last few characters of its token hidden."""
    if not isinstance(token, str) or not token:
        return None
    tail = token[-TOKEN_TAIL:] if len(token) >= 3 * TOKEN_TAIL else ""
    return f"{base_url}/shared/****{tail}"


class Phase(enum.Enum):
    #: Ask PostHog's shared playlist which recordings of the selection are shared.
    FIND = "find"
    #: Read (and disable) the shared recordings found.
    AUDIT = "audit"
    #: Read the sharing of every selected recording older than the playlist's year.
    OLDER = "older"
    #: Read the sharing of every selected recording (no playlist to ask).
    SCAN = "scan"
    DONE = "done"


MACHINE = PhaseMachine(
    start=Phase.FIND,
    moves={
        Phase.FIND: frozenset({Phase.AUDIT, Phase.SCAN}),
        Phase.AUDIT: frozenset({Phase.OLDER, Phase.DONE}),
        Phase.OLDER: frozenset({Phase.DONE}),
        Phase.SCAN: frozenset({Phase.DONE}),
    },
)


@dataclass
class Job:
    """What an audit carries across deferrals: the route, the shared recordings found
    (few, and each reported by id), and how far the playlist was read."""

    shared_ids: list[str] = field(default_factory=list)
    disabled_ids: list[str] = field(default_factory=list)
    password_protected: list[str] = field(default_factory=list)
    descending: bool = True
    #: ``shared_playlist`` (plus ``+older_scan``), ``scan`` or ``ids``.
    route: str = ""
    #: The playlist: its count, the pages read, the recordings of the selection it named.
    playlist_count: int = 0
    playlist_offset: int = 0
    playlist_pass: int = 0
    playlist_seen: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    #: ``start_time`` before which recordings were not covered by the playlist (ISO).
    older_than: str | None = None


@dataclass(frozen=True)
class Params(RunParams):
    disable_shared: bool
    fail_on_shared: bool
    older_recordings: str


@dataclass(frozen=True)
class SharingState:
    """The facts about one recording's sharing that may be reported (no token)."""

    enabled: bool
    created_at: str | None
    link: str | None
    password_required: bool = False
    passwords: int = 0
    disabled: bool = False


class PostHogSharingAuditOperator(PostHogRecordingsBaseOperator):
    """Report the selected recordings that have a public sharing link, and turn them off.

    :param disable_shared: turn sharing off for each shared recording, then read it back
        to verify (templated).
    :param fail_on_shared: fail the task when any public link remains at the end
        (templated): an audit gate for a DAG.
    :param older_recordings: PostHog's shared playlist returns every shared recording it
        has persisted, whatever its age, but not one it has not persisted that started
        more than a year ago. ``"auto"`` (default): when the playlist returns fewer
        recordings than it counts, read the sharing of every selected recording older
        than a year, to miss none; ``"scan"``: always do so; ``"skip"``: never (cheapest;
        the result says how many links the playlist counted but did not return).

    Plus the selection, reporting and connection parameters of
    :class:`~airflow_provider_recordings.operators.base.PostHogRecordingsBaseOperator`;
    the default selection is every recording the key can see. A selection by explicit
    ids, or by ``date_from``/``date_to`` (absolute) and ``distinct_ids``, is applied to
    the playlist's recordings exactly; other filters (properties, events, relative
    dates) need PostHog to decide, so those audits read every selected recording.

    Returns (XCom): ``route``, ``audited``, ``matched``, ``shared``, ``disabled``,
    ``still_shared``, ``password_protected``, ``missing``, ``failed``, ``failed_ids``,
    ``shared_recording_ids``, ``playlist_count``, ``playlist_unreturned``, ``api_calls``,
    ``remaining``, ``deferrals``, ``report_path``. Access tokens never appear in logs,
    XCom or the report; the report's ``link`` keeps at most the token's last four
    characters.
    """

    template_fields: Sequence[str] = (
        *PostHogRecordingsBaseOperator.template_fields,
        "disable_shared",
        "fail_on_shared",
    )

    noun = "sharing checks"
    operation = "sharing_audit"
    counters = ("audited", "missing")
    machine = MACHINE
    job_type = Job

    def __init__(
        self,
        *,
        disable_shared: bool | str = False,
        fail_on_shared: bool | str = False,
        older_recordings: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.disable_shared = disable_shared
        self.fail_on_shared = fail_on_shared
        self.older_recordings = older_recordings

    def prepare(self, context: Context) -> Params:
        if self.older_recordings not in OLDER_CHOICES:
            raise PostHogConfigError(
                f"older_recordings must be one of {', '.join(OLDER_CHOICES)}, got {self.older_recordings!r}"
            )
        return Params(
            **self.run_params(context).shared(),
            disable_shared=as_bool("disable_shared", self.disable_shared),
            fail_on_shared=as_bool("fail_on_shared", self.fail_on_shared),
            older_recordings=self.older_recordings,
        )

    def upgrade_v1(self, extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        # 0.2.0 scanned every recording; its scan goes on where it stopped.
        walk, descending = walk_from_v1(extra, self.build_selection())
        job = {
            "shared_ids": list(extra.get("shared_ids") or []),
            "disabled_ids": list(extra.get("disabled_ids") or []),
            "descending": descending,
            "route": "scan",
        }
        return Phase.SCAN.value, job, walk

    # -- the phases ---------------------------------------------------------------------------

    def step(self, run: Run, phase: Phase) -> Phase:
        if phase is Phase.FIND:
            return self._find(run)
        if phase is Phase.AUDIT:
            self._audit_candidates(run)
            return self._after_playlist(run)
        if phase is Phase.OLDER:
            self._scan(run, older=True)
            return Phase.DONE
        self._scan(run, older=False)
        return Phase.DONE

    def _find(self, run: Run) -> Phase:
        """The selection's shared recordings, from PostHog's shared playlist."""
        params: Params = run.params
        job: Job = run.job
        selection = params.selection
        if selection.recording_ids is not None and len(selection.recording_ids) <= PLAYLIST_PAGE:
            # A few explicit ids: reading each is as cheap, and reports every one of them.
            job.route = "ids"
            return Phase.SCAN
        in_selection = selection.local_check()
        if in_selection is None:
            run.log.info(
                "The selection's filters (%s) need PostHog to decide them, so the audit reads every "
                "selected recording's sharing instead of PostHog's shared list",
                ", ".join(sorted(selection.filters)),
            )
            job.route = "scan"
            return Phase.SCAN
        try:
            if not job.route:
                job.playlist_count = run.hook.playlist_size(SHARED_PLAYLIST)
                job.route = "shared_playlist"
            self._read_playlist(run, in_selection)
        except (PostHogPermissionError, PostHogNotFoundError) as exc:
            reason = (
                "the key may not read playlists"
                if exc.status == 403
                else "this server has no synthetic playlists"
            )
            run.log.warning(
                "PostHog's shared list cannot be used (%s: %s); reading every selected recording's sharing instead",
                reason,
                exc,
            )
            job.route = "scan"
            return Phase.SCAN
        run.log.info(
            "PostHog counts %d recording(s) with a public link; %d of them are in the selection",
            job.playlist_count,
            len(job.candidates),
        )
        run.restart_walk()
        return Phase.AUDIT

    def _read_playlist(self, run: Run, in_selection: Any) -> None:
        """Page the playlist (again, if it returned fewer than it counts), keeping the
        recordings of the selection. Its place and findings cross deferrals."""
        job: Job = run.job
        seen = set(job.playlist_seen)
        candidates = set(job.candidates)
        while job.playlist_pass < PLAYLIST_PASSES:
            while job.playlist_offset < job.playlist_count:
                for row in run.hook.playlist_page(SHARED_PLAYLIST, job.playlist_offset):
                    recording_id = str(row["id"])
                    if recording_id not in seen:
                        seen.add(recording_id)
                        job.playlist_seen.append(recording_id)
                        if in_selection(row):
                            candidates.add(recording_id)
                            job.candidates.append(recording_id)
                job.playlist_offset += PLAYLIST_PAGE
            job.playlist_pass += 1
            job.playlist_offset = 0
            if len(seen) >= job.playlist_count:
                break

    def _after_playlist(self, run: Run) -> Phase:
        """Whether the recordings older than the playlist's year must be read too."""
        params: Params = run.params
        job: Job = run.job
        unreturned = max(0, job.playlist_count - len(job.playlist_seen))
        if params.older_recordings == "skip" or (params.older_recordings == "auto" and not unreturned):
            if unreturned:
                run.log.warning(
                    "PostHog counts %d public link(s) it did not return (deleted recordings, or ones older than "
                    "a year it has not persisted); older_recordings='skip' leaves them unchecked",
                    unreturned,
                )
            return Phase.DONE
        older_than = one_year_before(datetime.now(UTC))
        job.older_than = isoformat(older_than)
        run.log.info(
            "PostHog counts %d public link(s) it did not return; reading the sharing of every selected "
            "recording older than %s, which its shared list does not cover",
            unreturned,
            job.older_than,
        )
        job.route = "shared_playlist+older_scan"
        run.restart_walk()
        return Phase.OLDER

    def _audit_candidates(self, run: Run) -> None:
        job: Job = run.job
        progress = Progress(run.log, "Audited", len(job.candidates))
        for page in run.walk_ids(job.candidates, IDS_PER_LIST_CALL):
            self._audit_page(run, page)
            progress.advance(len(page.rows))
        progress.finish()

    def _scan(self, run: Run, *, older: bool) -> None:
        params: Params = run.params
        job: Job = run.job
        run.log.info(
            "Auditing the sharing of %s%s%s",
            params.selection.describe(),
            f" that started before {job.older_than}" if older else "",
            " (disabling public links)" if params.disable_shared else "",
        )
        progress = Progress(run.log, "Audited", None)
        if older:
            date_to = params.selection.filters.get("date_to")
            bound = (
                job.older_than
                if date_to is None
                else min(str(job.older_than), isoformat(parse_time(date_to) or datetime.now(UTC)))
            )
            queries = [{**query, "date_to": bound} for query in params.selection.queries()]
            pages = run.walk(queries, descending=job.descending)
            done = set(job.candidates)
        else:
            pages = selected_pages(run, job.descending)
            done = set()
        for page in pages:
            for row in [row for row in page.rows if row["id"] in done]:
                page.done(row["id"])
            page.rows = [row for row in page.rows if row["id"] not in done]
            self._audit_page(run, page)
            progress.advance(len(page.rows))
        progress.finish()

    # -- one page of recordings ------------------------------------------------------------------

    def _read(self, run: Run, recording_id: str) -> SharingState:
        base_url = run.hook.config.base_url
        config = run.hook.get_sharing(recording_id)
        found = SharingState(
            enabled=bool(config.get("enabled")),
            created_at=config.get("created_at"),
            link=masked_link(base_url, config.get("access_token")),
            password_required=bool(config.get("password_required")),
            passwords=len(config.get("share_passwords") or []),
        )
        if not (found.enabled and run.params.disable_shared):
            return found
        run.hook.set_sharing(
            recording_id,
            False,
            before_send=lambda: run.record(id=recording_id, action="disable", result="requested"),
        )
        after = run.hook.get_sharing(recording_id)
        return SharingState(
            True,
            found.created_at,
            found.link,
            found.password_required,
            found.passwords,
            disabled=not after.get("enabled"),
        )

    def _audit_page(self, run: Run, page: Page) -> None:
        job: Job = run.job
        disable = run.params.disable_shared

        def finished(recording_id: str, found: SharingState | None, exc: BaseException | None) -> None:
            page.done(recording_id)
            if isinstance(exc, PostHogNotFoundError):
                run.count("missing")
                run.record(id=recording_id, action="audit", result="missing")
                return
            if exc is not None or found is None:
                run.state.fail(recording_id, str(exc))
                run.record(id=recording_id, action="audit", result="failed", reason=str(exc))
                return
            run.count("audited")
            result = "disabled" if found.disabled else ("shared" if found.enabled else "private")
            if found.enabled:
                job.shared_ids.append(recording_id)
                if found.password_required:
                    job.password_protected.append(recording_id)
                run.log.warning(
                    "Recording %s is publicly shared (link %s%s)",
                    recording_id,
                    found.link,
                    f", password-protected, {found.passwords} password(s)" if found.password_required else "",
                )
            if found.disabled:
                job.disabled_ids.append(recording_id)
            elif found.enabled and disable:
                run.state.fail(recording_id, "sharing was still enabled after disabling it")
                result = "failed"
            run.record(
                id=recording_id,
                enabled=found.enabled,
                created_at=found.created_at,
                link=found.link if found.enabled else None,
                password_required=found.password_required if found.enabled else None,
                passwords=found.passwords if found.enabled else None,
                action="disable" if found.enabled and disable else "audit",
                result=result,
                changed=found.disabled,
            )

        run.each(
            [row["id"] for row in page.rows],
            lambda recording_id: self._read(run, recording_id),
            finished,
            action="audit",
        )

    # -- the result ---------------------------------------------------------------------------

    def result(self, run: Run) -> dict[str, Any]:
        state, job = run.state, run.job
        shared = sorted(set(job.shared_ids))
        disabled = set(job.disabled_ids)
        playlist = job.route.startswith("shared_playlist")
        return {
            "route": job.route,
            "audited": state.count("audited"),
            "matched": state.count("audited")
            + state.count("missing")
            + state.failed_count
            + (state.remaining or 0),
            "shared": len(shared),
            "disabled": len(disabled),
            "still_shared": len(set(shared) - disabled),
            "password_protected": len(set(job.password_protected)),
            "missing": state.count("missing"),
            "failed": state.failed_count,
            "failed_ids": sorted(state.failed),
            "shared_recording_ids": shared,
            "playlist_count": job.playlist_count if playlist else None,
            "playlist_unreturned": max(0, job.playlist_count - len(job.playlist_seen)) if playlist else None,
        }

    def summary(self, run: Run, result: dict[str, Any]) -> RunSummary:
        return RunSummary(
            operation=self.operation,
            selected=result["matched"],
            shared=result["shared"],
            links_disabled=result["disabled"],
            failed=result["failed"],
            remaining=int(result.get("remaining") or 0),
            route=result["route"],
        )

    def gates(self, run: Run, result: dict[str, Any]) -> None:
        if not (run.params.fail_on_shared and result["still_shared"]):
            return
        still = sorted(set(result["shared_recording_ids"]) - set(run.job.disabled_ids))
        run.context["ti"].xcom_push(key="return_value", value=result)
        # A gate, not an accident: retrying the task would only audit again.
        raise AirflowFailException(
            f"{len(still)} recording(s) remain publicly shared: {', '.join(still[:10])}"
            + (" ..." if len(still) > 10 else "")
        )
