"""ClientCore on its own: budgets, admission, the meaning of answers, retry bookkeeping.

No HTTP here: the core is driven the way both drivers drive it, with a fake clock and a
real :class:`RateLimiter`, and tenacity's own retry state where a retry is involved.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import tenacity

from airflow_provider_recordings.core.client import LOGGED_WAIT, ClientCore
from airflow_provider_recordings.core.config import LIST, RateLimits, build_client_config
from airflow_provider_recordings.core.errors import (
    PostHogBudgetExhaustedError,
    PostHogRateLimitError,
    PostHogServerError,
    PostHogStoppedError,
    PostHogTransportError,
)
from airflow_provider_recordings.core.protocol import ApiRequest
from airflow_provider_recordings.core.ratelimit import WINDOW_MARGIN, RateLimiter
from airflow_provider_recordings.core.retry import RetryPolicy
from tests.conftest import API_KEY

CONFIG = build_client_config(
    conn_id="posthog_default", host="http://127.0.0.1:1", password=API_KEY, extra={"project_id": "1"}
)

LIST_REQUEST = ApiRequest("GET", kind=LIST)
DELETE_REQUEST = ApiRequest("DELETE", "rec-1/")
PERSONS_REQUEST = ApiRequest("GET", kind="persons", resource="persons")
PERSONS_DELETE_REQUEST = ApiRequest("POST", path="bulk_delete/", kind="persons_delete", resource="persons")


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class Log:
    """Stands in for a logger: keeps each line, formatted, with its level."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(("info", message % args))

    def warning(self, message: str, *args: Any) -> None:
        self.lines.append(("warning", message % args))

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def make_core(
    limits: RateLimits | None = None, *, max_wait: float = 300.0, clock: Clock | None = None
) -> ClientCore:
    clock = clock or Clock()
    limiter = RateLimiter(limits or RateLimits(), clock=clock)
    return ClientCore(CONFIG, RetryPolicy(max_wait=max_wait), limiter, clock=clock)


def admit(core: ClientCore, request: ApiRequest = DELETE_REQUEST) -> Any:
    """Admit one call and end it at once; fails the test if it had to wait."""
    wait, call = core.wait_before(request)
    assert (wait, call is not None) == (0.0, True)
    core.answered(call)
    return call


def retry_state(exc: BaseException, *, sleep: float, attempt: int = 1) -> tenacity.RetryCallState:
    """tenacity's state as ``before_sleep`` sees it after attempt ``attempt`` failed with ``exc``."""
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    state.next_action = tenacity.RetryAction(sleep)
    return state


def throttled(retry_after: float | None) -> PostHogRateLimitError:
    return PostHogRateLimitError("GET /x -> 429", retry_after=retry_after, status=429)


# -- run budgets ------------------------------------------------------------------------


def test_the_call_budget_refuses_the_call_after_the_last_one_allowed():
    core = make_core()
    core.max_api_calls = 2
    admit(core)
    admit(core)
    with pytest.raises(PostHogBudgetExhaustedError, match=r"call budget \(max_api_calls=2\) is spent"):
        core.wait_before(DELETE_REQUEST)
    assert core.stats.requests == 2


def test_a_call_budget_of_zero_refuses_the_first_call():
    core = make_core()
    core.max_api_calls = 0
    with pytest.raises(PostHogBudgetExhaustedError, match="max_api_calls=0"):
        core.wait_before(LIST_REQUEST)
    assert core.stats.snapshot()["requests"] == 0


def test_the_time_budget_refuses_calls_once_its_moment_has_come():
    clock = Clock()
    core = make_core(clock=clock)
    core.stop_at = clock.now + 10
    clock.now += 9.999
    admit(core)
    clock.now += 0.001
    with pytest.raises(PostHogBudgetExhaustedError, match=r"time budget \(max_runtime\) is spent"):
        core.wait_before(DELETE_REQUEST)
    assert core.stats.requests == 1


def test_a_refused_call_takes_no_slot_in_the_rate_windows():
    """A budget error comes before admission: the call spends none of PostHog's budget."""
    core = make_core(RateLimits(per_minute=1))
    core.max_api_calls = 0
    with pytest.raises(PostHogBudgetExhaustedError):
        core.wait_before(DELETE_REQUEST)
    core.max_api_calls = None
    admit(core)  # the minute's only slot was still free


def test_a_stopped_core_refuses_before_any_admission():
    core = make_core(RateLimits(per_minute=1))
    core.max_api_calls = 0  # a spent budget too: being stopped is what the caller hears
    core.stopped.set()
    with pytest.raises(PostHogStoppedError, match="stopped; no new request was sent"):
        core.wait_before(DELETE_REQUEST)
    with pytest.raises(PostHogStoppedError):
        asyncio.run(core.await_before(DELETE_REQUEST))
    assert core.stats.snapshot()["requests"] == 0
    core.stopped.clear()
    core.max_api_calls = None
    admit(core)  # nothing was counted in the windows while stopped


def test_the_async_admission_keeps_the_same_budgets():
    clock = Clock()
    core = make_core(clock=clock)
    core.max_api_calls = 1

    async def main() -> None:
        wait, call = await core.await_before(LIST_REQUEST)
        assert wait == 0 and call is not None
        await core.aanswered(call)
        with pytest.raises(PostHogBudgetExhaustedError, match="max_api_calls=1"):
            await core.await_before(LIST_REQUEST)
        core.max_api_calls = None
        core.stop_at = clock.now
        with pytest.raises(PostHogBudgetExhaustedError, match="max_runtime"):
            await core.await_before(LIST_REQUEST)

    asyncio.run(main())
    assert core.stats.snapshot()["by_kind"] == {"GET list": 1}


# -- waits -------------------------------------------------------------------------------


def test_a_short_wait_is_returned_and_counted_not_raised():
    core = make_core(RateLimits(per_minute=1), max_wait=300)
    admit(core)
    wait, call = core.wait_before(DELETE_REQUEST)
    assert call is None
    assert wait == pytest.approx(60 * (1 + WINDOW_MARGIN))
    snapshot = core.stats.snapshot()
    assert snapshot["requests"] == 1
    assert snapshot["rate_limit_wait_seconds"] == pytest.approx(wait, abs=0.001)


@pytest.mark.parametrize(
    ("request_", "limits", "named", "not_named"),
    [
        pytest.param(
            DELETE_REQUEST,
            RateLimits(per_minute=1),
            "1/min and 1200/h for recordings calls",
            ["list calls", "persons deletions", "sharing calls"],
            id="recording",
        ),
        pytest.param(
            LIST_REQUEST,
            RateLimits(list_per_minute=1),
            "240/min and 1200/h for recordings calls, 1/min and 60/h for list calls",
            ["persons deletions", "sharing calls"],
            id="list",
        ),
        pytest.param(
            PERSONS_DELETE_REQUEST,
            RateLimits(persons_delete_per_minute=1),
            "1/min and 4800/h for persons deletions",
            ["recordings calls", "list calls"],
            id="persons-delete",
        ),
        pytest.param(
            PERSONS_REQUEST,
            RateLimits(per_minute=1),
            "1/min for recordings calls",
            ["1200/h", "list calls", "persons deletions"],
            id="persons-read",
        ),
    ],
)
def test_a_wait_longer_than_allowed_raises_naming_the_budget_of_its_kind(request_, limits, named, not_named):
    core = make_core(limits, max_wait=30)
    admit(core, request_)
    with pytest.raises(PostHogRateLimitError) as raised:
        core.wait_before(request_)
    message = str(raised.value)
    assert f"client-side rate budget ({named}) is spent" in message
    assert all(other not in message for other in not_named)
    assert raised.value.retry_after == pytest.approx(60 * (1 + WINDOW_MARGIN))
    assert "next call is possible in 61 s" in message
    assert core.stats.snapshot()["rate_limit_wait_seconds"] == 0


def test_a_wait_of_exactly_max_wait_is_allowed():
    core = make_core(RateLimits(per_minute=1), max_wait=3600)
    admit(core)
    wait, _ = core.wait_before(DELETE_REQUEST)
    core.policy.max_wait = wait
    assert core.wait_before(DELETE_REQUEST) == (wait, None)
    core.policy.max_wait = wait - 0.001
    with pytest.raises(PostHogRateLimitError):
        core.wait_before(DELETE_REQUEST)


def test_other_kinds_are_not_held_back_by_a_spent_list_budget():
    core = make_core(RateLimits(list_per_minute=1), max_wait=1)
    admit(core, LIST_REQUEST)
    with pytest.raises(PostHogRateLimitError, match="list calls"):
        core.wait_before(LIST_REQUEST)
    admit(core, DELETE_REQUEST)
    admit(core, PERSONS_REQUEST)


def test_say_wait_logs_only_waits_long_enough_to_notice():
    core = make_core(RateLimits(list_per_minute=3))
    log = Log()
    assert core.say_wait(LIST_REQUEST, LOGGED_WAIT - 0.01, log) is False
    assert core.say_wait(LIST_REQUEST, 0.0, log) is False
    assert log.lines == []
    assert core.say_wait(LIST_REQUEST, LOGGED_WAIT, log) is True
    assert core.say_wait(LIST_REQUEST, 42.4, None) is False
    assert log.lines == [
        (
            "info",
            "Waiting 5 s before GET /api/projects/1/session_recordings/: the rate budget "
            "(240/min and 1200/h for recordings calls, 3/min and 60/h for list calls) is spent for now",
        )
    ]


# -- answers -----------------------------------------------------------------------------


def test_a_429_is_counted_as_throttled_and_raised_with_its_wait():
    core = make_core()
    with pytest.raises(PostHogRateLimitError) as raised:
        core.answer(LIST_REQUEST, 429, {"Retry-After": "7"}, b'{"detail": "slow down"}')
    assert raised.value.retry_after == 7
    with pytest.raises(PostHogRateLimitError) as raised:
        core.answer(LIST_REQUEST, 429, {}, b"")
    assert raised.value.retry_after is None
    assert core.stats.snapshot()["throttled"] == 2


def test_other_answers_are_not_throttles():
    core = make_core()
    assert core.answer(DELETE_REQUEST, 200, {}, b'{"ok": true}') == {"ok": True}
    assert core.answer(DELETE_REQUEST, 204, {}, b"") is None
    with pytest.raises(PostHogServerError):
        core.answer(DELETE_REQUEST, 503, {}, b"")
    assert core.stats.snapshot()["throttled"] == 0


def test_a_transport_error_names_the_request_and_the_failure_only():
    core = make_core()
    error = core.transport_error(ApiRequest("GET", "rec-1/", params=(("q", "x"),)), ConnectionResetError())
    assert isinstance(error, PostHogTransportError) and error.retryable
    assert str(error) == "GET /api/projects/1/session_recordings/rec-1/: no answer (ConnectionResetError)"


def test_answered_starts_the_calls_slot_ageing_from_the_answer():
    clock = Clock()
    core = make_core(RateLimits(per_minute=1), max_wait=3600, clock=clock)
    _, call = core.wait_before(DELETE_REQUEST)
    clock.now += 120  # a slow answer: the slot is held all along
    assert core.wait_before(DELETE_REQUEST)[1] is None
    core.answered(call)
    clock.now += 60 * (1 + WINDOW_MARGIN) - 0.01
    assert core.wait_before(DELETE_REQUEST)[1] is None
    clock.now += 0.02
    assert core.wait_before(DELETE_REQUEST)[1] is not None


# -- counters ----------------------------------------------------------------------------


def test_counters_by_kind_count_admitted_calls_only():
    core = make_core(RateLimits(list_per_minute=2))
    admit(core, LIST_REQUEST)
    admit(core, LIST_REQUEST)
    admit(core, DELETE_REQUEST)
    admit(core, ApiRequest("PATCH", "rec-1/", json_body={"viewed": True}))
    admit(core, PERSONS_REQUEST)
    assert core.wait_before(LIST_REQUEST)[1] is None  # waiting is not sending
    snapshot = core.stats.snapshot()
    assert snapshot["requests"] == 5
    assert snapshot["by_kind"] == {
        "DELETE recording": 1,
        "GET list": 2,
        "GET persons": 1,
        "PATCH recording": 1,
    }


# -- retries -----------------------------------------------------------------------------


def test_before_retry_counts_and_logs_without_the_key(caplog):
    core = make_core()
    log = logging.getLogger("tests.core.client")
    caplog.set_level(logging.INFO, logger="tests.core.client")
    request = ApiRequest("GET", url=f"{CONFIG.base_url}/api/projects/1/session_recordings/?after=abc")
    error = core.answer  # the error as the driver meets it: from PostHog's answer
    with pytest.raises(PostHogServerError) as raised:
        error(request, 502, {}, ('{"detail": "proxy echoed Bearer ' + API_KEY + '"}').encode())
    core.before_retry(request, retry_state(raised.value, sleep=1.25, attempt=2), log)
    assert core.stats.snapshot()["retries"] == 1
    [record] = [r for r in caplog.records if r.name == "tests.core.client"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith(
        f"GET {CONFIG.base_url}/api/projects/1/session_recordings/ failed (attempt 2 of 6); retrying in 1.2 s:"
    )
    assert "502" in message and "proxy echoed Bearer ***" in message
    assert API_KEY not in caplog.text and "after=abc" not in message


def test_before_retry_without_a_log_still_counts():
    core = make_core()
    core.before_retry(DELETE_REQUEST, retry_state(PostHogServerError("boom"), sleep=1), None)
    core.before_retry(DELETE_REQUEST, retry_state(PostHogServerError("boom"), sleep=1, attempt=2), None)
    assert core.stats.snapshot()["retries"] == 2


@pytest.mark.parametrize(
    ("error", "paused"),
    [
        pytest.param(throttled(None), True, id="429-without-retry-after"),
        pytest.param(throttled(7), False, id="429-with-retry-after"),
        pytest.param(PostHogServerError("GET /x -> 503", status=503), False, id="503"),
        pytest.param(PostHogTransportError("GET /x: no answer"), False, id="no-answer"),
    ],
)
def test_before_retry_pauses_everyone_only_for_a_throttle_without_retry_after(error, paused):
    """A 429 with Retry-After paused the limiter when it arrived (the driver does that);
    without one, the back-off is the pause; other failures pause nobody."""
    clock = Clock()
    core = make_core(clock=clock)
    log = Log()
    core.before_retry(LIST_REQUEST, retry_state(error, sleep=3.5), log)
    wait, call = core.limiter.begin("recording")
    if paused:
        assert call is None and wait == pytest.approx(3.5)
        clock.now += 3.5
        assert core.limiter.begin("recording")[1] is not None
    else:
        assert (wait, call is not None) == (0.0, True)
    assert core.stats.snapshot()["retries"] == 1
    assert len(log.lines) == 1 and log.lines[0][0] == "warning"


def test_abefore_retry_counts_logs_and_pauses_like_before_retry():
    clock = Clock()
    core = make_core(clock=clock)
    log = Log()

    async def main() -> None:
        await core.abefore_retry(LIST_REQUEST, retry_state(throttled(None), sleep=2.0, attempt=3), log)
        await core.abefore_retry(LIST_REQUEST, retry_state(throttled(30), sleep=30.0, attempt=4), log)

    asyncio.run(main())
    assert core.stats.snapshot()["retries"] == 2
    first, second = (line for _, line in log.lines)
    assert "(attempt 4 of 6); retrying in 30.0 s" in second
    assert first.startswith(
        "GET /api/projects/1/session_recordings/ failed (attempt 3 of 6); retrying in 2.0 s: GET /x -> 429"
    )
    wait, call = core.limiter.begin("recording")
    assert call is None and wait == pytest.approx(2.0)  # the Retry-After of 30 paused nobody here


def test_a_tenacity_loop_built_from_the_policy_drives_before_retry():
    """The way both drivers wire it: every failed attempt but the last is a retry."""
    clock = Clock()
    core = make_core(clock=clock)
    core.policy.max_attempts = 3
    slept: list[float] = []
    attempts = iter([throttled(4), PostHogServerError("GET /x -> 502", status=502), {"results": []}])

    def attempt() -> Any:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    retrying = tenacity.Retrying(
        sleep=slept.append,
        before_sleep=lambda state: core.before_retry(LIST_REQUEST, state, None),
        **core.policy.tenacity_kwargs(),
    )
    assert retrying(attempt) == {"results": []}
    assert slept[0] == 4  # Retry-After, exactly
    assert core.stats.snapshot()["retries"] == 2
