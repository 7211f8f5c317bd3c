"""Wait in the triggerer until recordings stop being ``ongoing``.

The trigger polls with the asynchronous client (no worker slot held, nothing blocking the
event loop) and yields exactly one event:

* ``{"status": "success", "finished": [...]}`` when none of the targets is ongoing;
* ``{"status": "error", "message": ...}`` with PostHog's detail when it cannot go on;
* ``{"status": "timeout", "message": ...}`` when the sensor's deadline has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_recordings.core.config import config_from_connection
from airflow_provider_recordings.core.errors import PostHogError, PostHogRateLimitError
from airflow_provider_recordings.core.ongoing import OngoingCheck, check_ongoing
from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient
from airflow_provider_recordings.operators.selection import Selection


async def poke_async(client: AsyncPostHogClient, selection: Selection, window: timedelta) -> OngoingCheck:
    """One poke: the same list calls as the sync sensor, driven asynchronously."""
    rows: list[dict[str, Any]] = []
    for params in selection.queries():
        rows.extend([row async for row in client.iter_recordings(**params) if selection.keep(row)])
    missing = selection.find_missing({row["id"] for row in rows})
    return check_ongoing(rows, missing_ids=missing, now=datetime.now(UTC), window=window)


class PostHogOngoingRecordingsTrigger(BaseTrigger):
    """Poll PostHog until none of the targeted recordings is ongoing.

    :param posthog_conn_id: the ``posthog`` connection.
    :param recording_ids: explicit ids to wait for (or ``filters``).
    :param filters: PostHog list filters selecting the recordings to wait for.
    :param missing: ``"fail"`` (an error event names unknown ids) or ``"ignore"``.
    :param ongoing_window_seconds: without an ``ongoing`` flag, how recent the last data
        may be for a recording to count as ongoing.
    :param poke_interval: seconds between polls.
    :param deadline: wall-clock UNIX time after which a timeout event is sent.
    """

    def __init__(
        self,
        posthog_conn_id: str,
        *,
        recording_ids: list[str] | None = None,
        filters: dict[str, Any] | None = None,
        missing: str = "fail",
        ongoing_window_seconds: float = 300.0,
        poke_interval: float = 60.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.posthog_conn_id = posthog_conn_id
        self.recording_ids = recording_ids
        self.filters = filters
        self.missing = missing
        self.ongoing_window_seconds = ongoing_window_seconds
        self.poke_interval = poke_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "posthog_conn_id": self.posthog_conn_id,
                "recording_ids": self.recording_ids,
                "filters": self.filters,
                "missing": self.missing,
                "ongoing_window_seconds": self.ongoing_window_seconds,
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
            },
        )

    async def _client(self) -> AsyncPostHogClient:
        from airflow.providers.common.compat.connection import get_async_connection

        conn = await get_async_connection(self.posthog_conn_id)
        return AsyncPostHogClient(config_from_connection(self.posthog_conn_id, conn), log=self.log)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            selection = Selection.build(self.recording_ids, self.filters)
            client = await self._client()
        except PostHogError as exc:
            yield TriggerEvent({"status": "error", "message": str(exc)})
            return
        window = timedelta(seconds=self.ongoing_window_seconds)
        async with client:
            while True:
                wait = self.poke_interval
                try:
                    check = await poke_async(client, selection, window)
                except PostHogRateLimitError as exc:
                    # Throttled beyond what a retry may wait: poll again once PostHog allows.
                    wait = max(wait, exc.retry_after or 0.0)
                    self.log.info("Throttled by PostHog; polling again in %.0f s", wait)
                except PostHogError as exc:
                    yield TriggerEvent({"status": "error", "message": str(exc)})
                    return
                else:
                    if check.missing_ids and self.missing == "fail":
                        yield TriggerEvent({"status": "error", "message": missing_message(check.missing_ids)})
                        return
                    if check.done:
                        yield TriggerEvent({"status": "success", "finished": check.finished})
                        return
                    self.log.info("%d recording(s) still ongoing", len(check.ongoing_ids))
                if self.deadline is not None:
                    left = self.deadline - time.time()
                    if left <= 0:
                        yield TriggerEvent(
                            {"status": "timeout", "message": "recordings were still ongoing at the deadline"}
                        )
                        return
                    wait = min(wait, left)
                await asyncio.sleep(wait)


def missing_message(missing_ids: list[str]) -> str:
    shown = ", ".join(missing_ids[:10]) + (" ..." if len(missing_ids) > 10 else "")
    return (
        f"{len(missing_ids)} recording id(s) do not exist in PostHog (deleted, expired or mistyped): {shown}"
    )
