"""Audit which recordings are publicly shared, and optionally turn the links off.

A shared link lets anyone holding it watch a user's session, so the audit reports each
one (with the token masked) and can disable them or fail the run as a gate.

Example::

    PostHogSharingAuditOperator(task_id="sharing_audit", disable_shared=True, fail_on_shared=True)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_recordings.core.errors import PostHogNotFoundError
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


def masked_link(base_url: str, token: Any) -> str | None:
    """The public link with all but the last few characters of its token hidden."""
    if not isinstance(token, str) or not token:
        return None
    tail = token[-TOKEN_TAIL:] if len(token) >= 3 * TOKEN_TAIL else ""
    return f"{base_url}/shared/****{tail}"


class Phase(enum.Enum):
    #: Read every selected recording's sharing (and disable the public ones, if asked).
    AUDIT = "audit"
    DONE = "done"


MACHINE = PhaseMachine(start=Phase.AUDIT, moves={Phase.AUDIT: frozenset({Phase.DONE})})


@dataclass
class Job:
    """What an audit carries across deferrals: the shared links found (few, and each one
    is reported by id) and the walk's direction."""

    shared_ids: list[str] = field(default_factory=list)
    disabled_ids: list[str] = field(default_factory=list)
    descending: bool = True


@dataclass(frozen=True)
class Params(RunParams):
    disable_shared: bool
    fail_on_shared: bool


@dataclass(frozen=True)
class SharingState:
    """The facts about one recording's sharing that may be reported (no token)."""

    enabled: bool
    created_at: str | None
    link: str | None
    disabled: bool = False


class PostHogSharingAuditOperator(PostHogRecordingsBaseOperator):
    """Read every selected recording's sharing configuration and report public links.

    :param disable_shared: turn sharing off for each shared recording, then read it back
        to verify (templated).
    :param fail_on_shared: fail the task when any public link remains at the end
        (templated): an audit gate for a DAG.

    Plus the selection, reporting and connection parameters of
    :class:`~airflow_provider_recordings.operators.base.PostHogRecordingsBaseOperator`;
    the default selection is every recording the key can see.

    Returns (XCom): ``audited``, ``matched``, ``shared``, ``disabled``, ``still_shared``,
    ``missing``, ``failed``, ``failed_ids``, ``shared_recording_ids``, ``api_calls``,
    ``remaining``, ``deferrals``, ``report_path``.
    Access tokens never appear in logs, XCom or the report; the report's ``link`` keeps
    at most the token's last four characters.
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
        self, *, disable_shared: bool | str = False, fail_on_shared: bool | str = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.disable_shared = disable_shared
        self.fail_on_shared = fail_on_shared

    def prepare(self, context: Context) -> Params:
        return Params(
            **self.run_params(context).shared(),
            disable_shared=as_bool("disable_shared", self.disable_shared),
            fail_on_shared=as_bool("fail_on_shared", self.fail_on_shared),
        )

    def upgrade_v1(self, extra: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        walk, descending = walk_from_v1(extra, self.build_selection())
        job = {
            "shared_ids": list(extra.get("shared_ids") or []),
            "disabled_ids": list(extra.get("disabled_ids") or []),
            "descending": descending,
        }
        return Phase.AUDIT.value, job, walk

    # -- the audit ----------------------------------------------------------------------------

    def step(self, run: Run, phase: Phase) -> Phase:
        params: Params = run.params
        run.log.info(
            "Auditing sharing of %s%s",
            params.selection.describe(),
            " (disabling public links)" if params.disable_shared else "",
        )
        progress = Progress(run.log, "Audited", None)
        for page in selected_pages(run, run.job.descending):
            self._audit_page(run, page)
            progress.advance(len(page.rows))
        progress.finish()
        return Phase.DONE

    def _read(self, run: Run, recording_id: str) -> SharingState:
        base_url = run.hook.config.base_url
        config = run.hook.get_sharing(recording_id)
        found = SharingState(
            enabled=bool(config.get("enabled")),
            created_at=config.get("created_at"),
            link=masked_link(base_url, config.get("access_token")),
        )
        if not (found.enabled and run.params.disable_shared):
            return found
        run.hook.set_sharing(
            recording_id,
            False,
            before_send=lambda: run.record(id=recording_id, action="disable", result="requested"),
        )
        after = run.hook.get_sharing(recording_id)
        return SharingState(True, found.created_at, found.link, disabled=not after.get("enabled"))

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
                run.log.warning("Recording %s is publicly shared (link %s)", recording_id, found.link)
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
        return {
            "audited": state.count("audited"),
            "matched": state.count("audited")
            + state.count("missing")
            + state.failed_count
            + (state.remaining or 0),
            "shared": len(shared),
            "disabled": len(disabled),
            "still_shared": len(set(shared) - disabled),
            "missing": state.count("missing"),
            "failed": state.failed_count,
            "failed_ids": sorted(state.failed),
            "shared_recording_ids": shared,
        }

    def summary(self, run: Run, result: dict[str, Any]) -> RunSummary:
        return RunSummary(
            operation=self.operation,
            selected=result["matched"],
            shared=result["shared"],
            links_disabled=result["disabled"],
            failed=result["failed"],
            remaining=int(result.get("remaining") or 0),
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
