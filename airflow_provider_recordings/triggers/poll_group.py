"""Waiting sensors of one connection share their polls in the triggerer.

Airflow's triggerer runs every deferred trigger of a process in one event loop. Each
:class:`~airflow_provider_recordings.triggers.ongoing.PostHogOngoingRecordingsTrigger`
joins the :class:`PollGroup` of its connection there, and the group makes one round of
merged list calls for all of them (see :mod:`~airflow_provider_recordings.triggers.poll_merge`):
forty sensors waiting for forty users cost one call per round, not forty.

* A round starts when the first member is due. It polls every member whose calls merge
  with a due member's, so nobody waits longer than its own poke interval, and members
  that joined at different times line up after their first round.
* Each member gets exactly its own answer, or its own error: a merged call that fails
  for another reason than the rate limit is retried member by member in the same round.
* A throttle pauses the whole group once, until PostHog's budget is back.
* A member leaves when its trigger ends or is cancelled; the last one out closes the
  group's client.

Airflow 3.3's shared streams (``BaseEventTrigger.shared_stream_key``) do the same for
asset watchers only; a deferral's trigger never goes through them, and Airflow 2.11 has
none, so the group lives here, once per event loop and connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogError, PostHogRateLimitError
from airflow_provider_recordings.core.ongoing import OngoingCheck, check_ongoing
from airflow_provider_recordings.triggers.poll_merge import (
    Answers,
    UnattributableRowError,
    distribute,
    merge_key,
    plan_calls,
)

if TYPE_CHECKING:
    from airflow_provider_recordings.core.selection import Selection
    from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient

log = logging.getLogger(__name__)

#: Seconds a new group waits after its first member joined before its first round, so
#: sensors that deferred together are asked together.
GATHER_SECONDS = 0.2

#: The first round waits at least this long (or the member's interval, if shorter). The
#: task checked just before it deferred, so an earlier answer is rarely different; and a
#: trigger that fires within a second of the deferral can resume the task before the
#: scheduler has processed the deferring attempt's end, which Airflow 3's scheduler then
#: takes for a task whose state changed externally, and retries.
FIRST_ROUND_DELAY = 5.0


@dataclass(frozen=True)
class Throttled:
    """Sent to every member when PostHog's budget pauses the group."""

    seconds: float
    reason: str


#: What a member receives after a round: its verdict, its own error, or a pause notice.
Outcome = OngoingCheck | PostHogError | Throttled


@dataclass(eq=False)
class Waiter:
    """One waiting trigger in a group."""

    selection: Selection
    interval: float
    window: timedelta
    due: float = 0.0
    inbox: asyncio.Queue[Outcome] = field(default_factory=asyncio.Queue)


_groups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, PollGroup]] = (
    weakref.WeakKeyDictionary()
)


class PollGroup:
    """The waiters of one connection in one event loop, and the loop that polls for them."""

    def __init__(self, conn_id: str, open_client: Callable[[], Any], clock: Callable[[], float]) -> None:
        self.conn_id = conn_id
        self._open_client = open_client
        self._clock = clock
        self.waiters: list[Waiter] = []
        self.rounds = 0
        self._first_round_at = 0.0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- membership -----------------------------------------------------------------------

    @classmethod
    def join(
        cls,
        conn_id: str,
        waiter: Waiter,
        open_client: Callable[[], Any],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> PollGroup:
        """Add ``waiter`` to its connection's group in the running loop (made on first use)."""
        loop = asyncio.get_running_loop()
        groups = _groups.setdefault(loop, {})
        group = groups.get(conn_id)
        if group is None:
            group = groups[conn_id] = cls(conn_id, open_client, clock)
        group._add(waiter)
        return group

    def _add(self, waiter: Waiter) -> None:
        now = self._clock()
        if not self.waiters:
            self._first_round_at = now + max(GATHER_SECONDS, min(waiter.interval, FIRST_ROUND_DELAY))
        # Until the first round, everyone who joins is asked in it. Later, a newcomer
        # joins the next round of the members it merges with, or waits one interval
        # (the sensor checked just before it deferred).
        waiter.due = self._first_round_at if self.rounds == 0 else now + waiter.interval
        self.waiters.append(waiter)
        self._changed.set()
        if self._task is None:
            # A context of its own: the group's logs must not land in one trigger's log.
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"posthog-poll-group-{self.conn_id}", context=contextvars.Context()
            )

    def leave(self, waiter: Waiter) -> None:
        if waiter in self.waiters:
            self.waiters.remove(waiter)
            self._changed.set()

    def _retire(self) -> None:
        """Called with no await before it once the last member left: later joiners make a new group."""
        groups = _groups.get(asyncio.get_running_loop(), {})
        if groups.get(self.conn_id) is self:
            del groups[self.conn_id]

    # -- the polling loop ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            client = await self._open_client()
        except Exception as exc:
            # A connection that is missing or unusable: every member fails with it.
            self._end_all(exc if isinstance(exc, PostHogError) else PostHogConfigError(
                f"PostHog connection {self.conn_id!r}: {type(exc).__name__}: {exc}"
            ))  # fmt: skip
            return
        try:
            async with client:
                while self.waiters:
                    wait = min(waiter.due for waiter in self.waiters) - self._clock()
                    if wait > 0:
                        self._changed.clear()
                        try:
                            await asyncio.wait_for(self._changed.wait(), timeout=wait)
                        except TimeoutError:
                            pass
                        continue
                    await self._round(client)
        except Exception as exc:
            # Never leave a member waiting on a loop that died: each gets the error.
            log.exception("The poll group of %s stopped", self.conn_id)
            self._end_all(PostHogError(f"polling PostHog failed: {type(exc).__name__}: {exc}"))
        finally:
            self._retire()

    def _end_all(self, error: PostHogError) -> None:
        self._retire()
        for waiter in list(self.waiters):
            waiter.inbox.put_nowait(error)

    async def _round(self, client: AsyncPostHogClient) -> None:
        now = self._clock()
        due_keys = {merge_key(waiter.selection) for waiter in self.waiters if waiter.due <= now}
        polled = [waiter for waiter in self.waiters if merge_key(waiter.selection) in due_keys]
        selections = [waiter.selection for waiter in polled]
        answers = Answers()
        failed: dict[int, PostHogError] = {}
        self.rounds += 1
        try:
            for call in plan_calls(selections):
                try:
                    rows = [row async for row in client.iter_recordings(**call.params)]
                    distribute(call, rows, selections, answers)
                except PostHogRateLimitError:
                    raise
                except (PostHogError, UnattributableRowError) as exc:
                    if len(call.waiters) == 1 and isinstance(exc, PostHogError):
                        failed[call.waiters[0]] = exc
                    else:
                        await self._one_by_one(client, call.waiters, selections, answers, failed)
        except PostHogRateLimitError as exc:
            self._pause(exc)
            return
        at = datetime.now(UTC)
        for index, waiter in enumerate(polled):
            waiter.due = self._clock() + waiter.interval
            if index in failed:
                waiter.inbox.put_nowait(failed[index])
                continue
            rows = answers.of(index)
            missing = waiter.selection.find_missing({row["id"] for row in rows})
            waiter.inbox.put_nowait(check_ongoing(rows, missing_ids=missing, now=at, window=waiter.window))

    async def _one_by_one(
        self,
        client: AsyncPostHogClient,
        members: list[int],
        selections: list[Selection],
        answers: Answers,
        failed: dict[int, PostHogError],
    ) -> None:
        """A merged call failed: ask for each member alone, so one member's error stays its own."""
        for index in members:
            if index in failed:
                continue
            try:
                for params in selections[index].queries():
                    async for row in client.iter_recordings(**params):
                        if selections[index].keep(row):
                            answers.add(index, row)
            except PostHogRateLimitError:
                raise
            except PostHogError as exc:
                failed[index] = exc

    def _pause(self, exc: PostHogRateLimitError) -> None:
        """One throttle pauses every member once, until PostHog's budget is back."""
        wait = max(exc.retry_after or 0.0, min(waiter.interval for waiter in self.waiters))
        resume = self._clock() + wait
        log.info("PostHog throttled the waiting sensors of %s; polling again in %.0f s", self.conn_id, wait)
        for waiter in self.waiters:
            waiter.due = max(waiter.due, resume)
            waiter.inbox.put_nowait(Throttled(wait, str(exc)))
