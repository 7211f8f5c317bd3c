"""Audit which recordings are publicly shared, and optionally turn the links off.

A shared link lets anyone holding it watch a user's session, so the audit reports each
one (with the token masked) and can disable them or fail the run as a gate.

Example::

    PostHogSharingAuditOperator(task_id="sharing_audit", disable_shared=True, fail_on_shared=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_recordings.core.errors import PostHogNotFoundError
from airflow_provider_recordings.core.parallel import run_each
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, as_bool, as_int
from airflow_provider_recordings.operators.progress import Progress
from airflow_provider_recordings.operators.report import AuditReport
from airflow_provider_recordings.operators.resume import Checkpoint, RunState
from airflow_provider_recordings.operators.selection import keyed_targets

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: Characters of an access token that may appear in a report (never more).
TOKEN_TAIL = 4


def masked_link(base_url: str, token: Any) -> str | None:
    """The public link with all but the last few characters of its token hidden."""
    if not isinstance(token, str) or not token:
        return None
    tail = token[-TOKEN_TAIL:] if len(token) >= 3 * TOKEN_TAIL else ""
    return f"{base_url}/shared/****{tail}"


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

    def __init__(
        self, *, disable_shared: bool | str = False, fail_on_shared: bool | str = False, **kwargs: Any
    ):
        super().__init__(**kwargs)
        self.disable_shared = disable_shared
        self.fail_on_shared = fail_on_shared

    noun = "sharing checks"
    lineage_operation = "sharing_audit"

    def lineage_summary(self, result: dict[str, Any]) -> dict[str, Any]:
        return {
            **super().lineage_summary(result),
            "shared": result["shared"],
            "links_disabled": result["disabled"],
        }

    def validate(self, context: Context) -> None:
        as_bool("disable_shared", self.disable_shared)
        as_bool("fail_on_shared", self.fail_on_shared)

    def run(self, context: Context, state: RunState) -> None:
        disable = as_bool("disable_shared", self.disable_shared)
        base_url = self.hook.config.base_url
        checkpoint = Checkpoint(state)
        todo = checkpoint.todo(keyed_targets(self.build_selection(), self.hook))
        state.remaining = len(todo)
        keys = {recording_id: key for key, (recording_id, _) in todo}
        shared: list[str] = state.extra.setdefault("shared_ids", [])
        disabled: list[str] = state.extra.setdefault("disabled_ids", [])
        self.log.info(
            "Auditing sharing of %d recording(s)%s", len(todo), " (disabling public links)" if disable else ""
        )
        progress = Progress(self.log, "Audited", len(todo))

        def audit(recording_id: str) -> SharingState:
            config = self.hook.get_sharing(recording_id)
            state_now = SharingState(
                enabled=bool(config.get("enabled")),
                created_at=config.get("created_at"),
                link=masked_link(base_url, config.get("access_token")),
            )
            if state_now.enabled and disable:
                self.hook.set_sharing(recording_id, False)
                after = self.hook.get_sharing(recording_id)
                state_now = SharingState(
                    True, state_now.created_at, state_now.link, disabled=not after.get("enabled")
                )
            return state_now

        with AuditReport(self.report_path, append=state.deferrals > 0) as report:

            def record(recording_id: str, found: SharingState | None, exc: BaseException | None) -> None:
                state.remaining = (state.remaining or 0) - 1
                checkpoint.done(keys[recording_id])
                progress.advance()
                if isinstance(exc, PostHogNotFoundError):
                    state.add("missing")
                    report.write(id=recording_id, action="audit", result="missing")
                    return
                if exc is not None or found is None:
                    state.fail(recording_id, str(exc))
                    report.write(id=recording_id, action="audit", result="failed", reason=str(exc))
                    return
                state.add("audited")
                result = "disabled" if found.disabled else ("shared" if found.enabled else "private")
                if found.enabled:
                    shared.append(recording_id)
                    self.log.warning("Recording %s is publicly shared (link %s)", recording_id, found.link)
                if found.disabled:
                    disabled.append(recording_id)
                elif found.enabled and disable:
                    state.fail(recording_id, "sharing was still enabled after disabling it")
                    result = "failed"
                report.write(
                    id=recording_id,
                    enabled=found.enabled,
                    created_at=found.created_at,
                    link=found.link if found.enabled else None,
                    action="disable" if found.enabled and disable else "audit",
                    result=result,
                )

            run_each(
                list(keys), audit, record, max_workers=as_int("max_workers", self.max_workers, minimum=1)
            )
        progress.finish()

    def result(self, state: RunState) -> dict[str, Any]:
        shared = sorted(set(state.extra.get("shared_ids", [])))
        disabled = set(state.extra.get("disabled_ids", []))
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

    def _complete(self, context: Context, state: RunState, stopped: str | None) -> dict[str, Any]:
        result = super()._complete(context, state, stopped)
        if as_bool("fail_on_shared", self.fail_on_shared) and result["still_shared"]:
            still = sorted(set(result["shared_recording_ids"]) - set(state.extra.get("disabled_ids", [])))
            context["ti"].xcom_push(key="return_value", value=result)
            # A gate, not an accident: retrying the task would only audit again.
            raise AirflowFailException(
                f"{len(still)} recording(s) remain publicly shared: {', '.join(still[:10])}"
                + (" ..." if len(still) > 10 else "")
            )
        return result
