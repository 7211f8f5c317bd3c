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

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_recordings.core.errors import PostHogNotFoundError
from airflow_provider_recordings.core.parallel import run_each
from airflow_provider_recordings.operators.base import PostHogRecordingsBaseOperator, as_bool, as_int
from airflow_provider_recordings.operators.progress import Progress
from airflow_provider_recordings.operators.report import AuditReport

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

    Returns (XCom): ``audited``, ``shared``, ``disabled``, ``still_shared``, ``missing``,
    ``failed``, ``failed_ids``, ``shared_recording_ids``, ``api_calls``, ``report_path``.
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

    def execute(self, context: Context) -> dict[str, Any]:
        disable = as_bool("disable_shared", self.disable_shared)
        gate = as_bool("fail_on_shared", self.fail_on_shared)
        selection = self.build_selection()
        max_workers = as_int("max_workers", self.max_workers, minimum=1)
        base_url = self.hook.config.base_url
        self.share_replay_url(context)

        if selection.recording_ids is not None:
            ids = list(selection.recording_ids)
        else:
            ids = [r["id"] for r in selection.iter_recordings(self.hook)]
        self.log.info(
            "Auditing sharing of %d recording(s)%s", len(ids), " (disabling public links)" if disable else ""
        )
        progress = Progress(self.log, "Audited", len(ids))
        shared: list[str] = []
        disabled: list[str] = []
        missing: list[str] = []
        failed: dict[str, str] = {}

        def audit(recording_id: str) -> SharingState:
            config = self.hook.get_sharing(recording_id)
            state = SharingState(
                enabled=bool(config.get("enabled")),
                created_at=config.get("created_at"),
                link=masked_link(base_url, config.get("access_token")),
            )
            if state.enabled and disable:
                self.hook.set_sharing(recording_id, False)
                after = self.hook.get_sharing(recording_id)
                state = SharingState(True, state.created_at, state.link, disabled=not after.get("enabled"))
            return state

        with AuditReport(self.report_path) as report:

            def record(recording_id: str, state: SharingState | None, exc: BaseException | None) -> None:
                progress.advance()
                if isinstance(exc, PostHogNotFoundError):
                    missing.append(recording_id)
                    report.write(id=recording_id, action="audit", result="missing")
                    return
                if exc is not None or state is None:
                    failed[recording_id] = str(exc)
                    report.write(id=recording_id, action="audit", result="failed", reason=str(exc))
                    return
                if state.enabled:
                    shared.append(recording_id)
                    self.log.warning("Recording %s is publicly shared (link %s)", recording_id, state.link)
                if state.disabled:
                    disabled.append(recording_id)
                result = "disabled" if state.disabled else ("shared" if state.enabled else "private")
                if state.enabled and disable and not state.disabled:
                    failed[recording_id] = "sharing was still enabled after disabling it"
                    result = "failed"
                report.write(
                    id=recording_id,
                    enabled=state.enabled,
                    created_at=state.created_at,
                    link=state.link if state.enabled else None,
                    action="disable" if state.enabled and disable else "audit",
                    result=result,
                )

            run_each(ids, audit, record, max_workers=max_workers)
        progress.finish()
        still_shared = sorted(set(shared) - set(disabled))
        result = {
            "audited": len(ids) - len(missing) - len(failed),
            "shared": len(shared),
            "disabled": len(disabled),
            "still_shared": len(still_shared),
            "missing": len(missing),
            "failed": len(failed),
            "failed_ids": sorted(failed)[:100],
            "shared_recording_ids": sorted(shared),
            "api_calls": self.hook.stats.requests,
            "report_path": self.report_path,
        }
        self.log.info(
            "Sharing audit: %d audited, %d shared, %d disabled, %d still shared, %d failed",
            result["audited"],
            result["shared"],
            result["disabled"],
            result["still_shared"],
            result["failed"],
        )
        if gate and still_shared:
            context["ti"].xcom_push(key="return_value", value=result)
            raise AirflowException(
                f"{len(still_shared)} recording(s) remain publicly shared: {', '.join(still_shared[:10])}"
                + (" ..." if len(still_shared) > 10 else "")
            )
        return self.finish(context, result, failed, "sharing checks")
