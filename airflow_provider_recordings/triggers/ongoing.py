"""Wait in the triggerer until recordings stop being ``ongoing``.

The trigger joins its connection's poll group
(:class:`~airflow_provider_recordings.triggers.poll_group.PollGroup`): every waiting
trigger of that connection in the triggerer shares one round of list calls, and each
gets its own answer. Nothing blocks the event loop: the client is built, and its imports
made, in a worker thread. The trigger yields exactly one event:

* ``{"status": "success", "finished": [...]}`` when none of the targets is ongoing;
* ``{"status": "error", "message": ...}`` with PostHog's detail when it cannot go on;
* ``{"status": "timeout", "message": ...}`` when the sensor's deadline has passed.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient


class PostHogOngoingRecordingsTrigger(BaseTrigger):
    """Poll PostHog until none of the targeted recordings is ongoing.

    :param posthog_conn_id: the ``posthog`` connection.
    :param recording_ids: explicit ids to wait for (or ``filters``).
    :param filters: PostHog list filters selecting the recordings to wait for.
    :param missing: ``"fail"`` (an error event names unknown ids) or ``"ignore"``.
    :param ongoing_window_seconds: without an ``ongoing`` flag, how recent the last data
        may be for a recording to count as ongoing.
    :param poke_interval: seconds between polls (at most; a shared round can come sooner).
        The first poll comes one interval after the trigger starts, since the sensor
        checked just before it deferred, or with the next round of the triggers it
        shares calls with.
    :param deadline: wall-clock UNIX time after which a timeout event is sent.
    :param state: handed back unchanged in the event (an operator's progress across the
        wait; the deferral's own kwargs are not kept by every runner).
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
        state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.posthog_conn_id = posthog_conn_id
        self.recording_ids = recording_ids
        self.filters = filters
        self.missing = missing
        self.ongoing_window_seconds = ongoing_window_seconds
        self.poke_interval = poke_interval
        self.deadline = deadline
        self.state = state

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
                "state": self.state,
            },
        )

    async def open_client(self) -> AsyncPostHogClient:
        """The group's client, for this trigger's connection, read without blocking the loop."""
        hooks, compat = await asyncio.to_thread(
            _load,
            "airflow_provider_recordings.hooks.posthog_async",
            "airflow.providers.common.compat.connection",
        )
        conn = await compat.get_async_connection(self.posthog_conn_id)
        store = hooks.store_conn_id(self.posthog_conn_id, conn)
        store_conn = await compat.get_async_connection(store) if store else None
        return await hooks.AsyncPostHogClient.open(  # type: ignore[no-any-return]
            self.posthog_conn_id, conn, store_conn=store_conn
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Airflow 3 starts triggers on the event loop every trigger shares: the first
        # imports of this provider's machinery happen in a worker thread instead.
        await asyncio.to_thread(_load, "airflow_provider_recordings.triggers.poll_group")
        from airflow_provider_recordings.core.errors import PostHogError
        from airflow_provider_recordings.core.selection import Selection
        from airflow_provider_recordings.triggers.poll_group import PollGroup, Throttled, Waiter

        try:
            selection = Selection.build(self.recording_ids, self.filters)
        except PostHogError as exc:
            yield self._event({"status": "error", "message": str(exc)})
            return
        waiter = Waiter(selection, self.poke_interval, timedelta(seconds=self.ongoing_window_seconds))
        group = PollGroup.join(self.posthog_conn_id, waiter, self.open_client)
        still_ongoing: list[str] = list(self.recording_ids or [])
        try:
            while True:
                left = None if self.deadline is None else self.deadline - time.time()
                outcome = None if left is not None and left <= 0 else await _next(waiter, left)
                if outcome is None:
                    shown = ", ".join(still_ongoing[:10]) + (" ..." if len(still_ongoing) > 10 else "")
                    yield self._event(
                        {
                            "status": "timeout",
                            "message": f"recordings were still ongoing at the deadline: {shown}".rstrip(": "),
                            "ongoing": still_ongoing,
                        }
                    )
                    return
                if isinstance(outcome, Throttled):
                    self.log.info("Throttled by PostHog; polling again in %.0f s", outcome.seconds)
                    continue
                if isinstance(outcome, PostHogError):
                    yield self._event({"status": "error", "message": str(outcome)})
                    return
                if outcome.missing_ids and self.missing == "fail":
                    yield self._event({"status": "error", "message": missing_message(outcome.missing_ids)})
                    return
                if outcome.done:
                    yield self._event({"status": "success", "finished": outcome.finished})
                    return
                still_ongoing = outcome.ongoing_ids
                self.log.info("%d recording(s) still ongoing", len(still_ongoing))
        finally:
            group.leave(waiter)

    def _event(self, payload: dict[str, Any]) -> TriggerEvent:
        if self.state is not None:
            payload["state"] = self.state
        return TriggerEvent(payload)


def _load(*modules: str) -> Any:
    """Import ``modules`` (meant for a worker thread): the module, or a tuple of them."""
    loaded = tuple(importlib.import_module(module) for module in modules)
    return loaded[0] if len(loaded) == 1 else loaded


async def _next(waiter: Any, timeout: float | None) -> Any:
    """The waiter's next outcome, or None when ``timeout`` passes first."""
    try:
        return await asyncio.wait_for(waiter.inbox.get(), timeout)
    except TimeoutError:
        return None


def missing_message(missing_ids: list[str]) -> str:
    shown = ", ".join(missing_ids[:10]) + (" ..." if len(missing_ids) > 10 else "")
    return (
        f"{len(missing_ids)} recording id(s) do not exist in PostHog (deleted, expired or mistyped): {shown}"
    )
