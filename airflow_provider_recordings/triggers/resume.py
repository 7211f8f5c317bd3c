"""Sleep in the triggerer until PostHog's rate budget is back, then resume the task.

An operator that runs out of budget (a long ``Retry-After``, or the client's hourly
budget spent) defers on this trigger instead of holding a worker slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class PostHogBudgetTrigger(BaseTrigger):
    """Fire once at ``resume_at`` (UNIX time); the event says how long it waited.

    :param resume_at: wall-clock time at which the rate budget allows calls again.
    :param reason: why the task waits (shown in the triggerer's log).
    :param state: the operator's small progress state, handed back in the event. The
        deferral's own kwargs carry it too, but not every runner keeps them (``airflow
        dags test`` replaces them with the event), so the event is the safe way back.
    """

    def __init__(self, resume_at: float, reason: str = "", state: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.resume_at = resume_at
        self.reason = reason
        self.state = state

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"resume_at": self.resume_at, "reason": self.reason, "state": self.state},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        wait = max(0.0, self.resume_at - time.time())
        self.log.info("Waiting %.0f s for PostHog's rate budget: %s", wait, self.reason)
        await asyncio.sleep(wait)
        yield TriggerEvent({"status": "resume", "waited": wait, "state": self.state})
