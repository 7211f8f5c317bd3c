"""What the three recordings operators share: connection, selection, reporting, results."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, BaseOperatorLink

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.operators.selection import Selection

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

#: XCom key under which operators leave the PostHog UI address for the extra link.
REPLAY_URL_XCOM_KEY = "posthog_replay_url"


class PostHogRecordingsLink(BaseOperatorLink):
    """Opens the project's recordings in the PostHog UI."""

    name = "PostHog recordings"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.providers.common.compat.sdk import XCom

        return XCom.get_value(key=REPLAY_URL_XCOM_KEY, ti_key=ti_key) or ""


def as_int(name: str, value: Any, *, minimum: int) -> int:
    """An integer parameter that may arrive as a rendered template string."""
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise PostHogConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


def as_bool(name: str, value: Any) -> bool:
    """A boolean parameter that may arrive as a rendered template string."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", "", "none"):
        return False
    raise PostHogConfigError(f"{name} must be true or false, got {value!r}")


class PostHogRecordingsBaseOperator(BaseOperator):
    """Base of the recordings operators; not meant to be used directly.

    :param recording_ids: explicit ids (templated; an XCom list works, so
        ``.partial(...).expand(recording_ids=...)`` fans out over workers).
    :param filters: PostHog list filters selecting recordings (templated), e.g.
        ``{"distinct_ids": ["user-1"], "date_from": "-90d"}``. Without ``date_from`` the
        selection covers all recordings, not PostHog's default last three days.
    :param max_workers: parallel requests (all share the hook's rate limiter).
    :param report_path: where to write the JSON Lines audit trail (templated).
    :param max_api_calls: stop after this many HTTP requests (leave budget for others).
    :param page_size: ``limit`` of each list call.
    :param posthog_conn_id: the ``posthog`` connection (templated).
    """

    template_fields: Sequence[str] = ("posthog_conn_id", "recording_ids", "filters", "report_path")
    template_fields_renderers = {"filters": "json", "recording_ids": "json"}
    operator_extra_links = (PostHogRecordingsLink(),)
    ui_color = "#f9bd2b"

    def __init__(
        self,
        *,
        recording_ids: list[str] | str | None = None,
        filters: dict[str, Any] | str | None = None,
        max_workers: int = 4,
        report_path: str | None = None,
        max_api_calls: int | None = None,
        page_size: int = 1000,
        posthog_conn_id: str = PostHogHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.recording_ids = recording_ids
        self.filters = filters
        self.max_workers = max_workers
        self.report_path = report_path
        self.max_api_calls = max_api_calls
        self.page_size = page_size
        self.posthog_conn_id = posthog_conn_id

    @cached_property
    def hook(self) -> PostHogHook:
        return PostHogHook(
            self.posthog_conn_id,
            page_size=self.page_size,
            max_api_calls=self.max_api_calls,
        )

    def build_selection(self) -> Selection:
        """Validate the selection arguments (before any request); errors fail the task."""
        as_int("max_workers", self.max_workers, minimum=1)
        if self.max_api_calls is not None:
            as_int("max_api_calls", self.max_api_calls, minimum=1)
        return Selection.build(self.recording_ids, self.filters)

    def share_replay_url(self, context: Context) -> None:
        config = self.hook.config
        url = f"{config.base_url}/project/{config.project_id}/replay/home"
        context["ti"].xcom_push(key=REPLAY_URL_XCOM_KEY, value=url)

    def finish(
        self, context: Context, result: dict[str, Any], failed: dict[str, str], noun: str
    ) -> dict[str, Any]:
        """Return the result, or push it and fail the task when some ids failed.

        Failures never stop the other ids; the task fails at the end, naming counts and
        the first ids, and a rerun finishes the job.
        """
        if not failed:
            return result
        context["ti"].xcom_push(key="return_value", value=result)
        first = sorted(failed)[:5]
        reasons = "; ".join(f"{i}: {failed[i]}" for i in first)
        raise AirflowException(
            f"{len(failed)} of {result.get('matched', result.get('audited', '?'))} {noun} failed "
            f"(first: {reasons}). The rest succeeded; rerunning the task retries the failures."
        )
