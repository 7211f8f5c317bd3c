"""Airflow metrics for what the recordings operators spend and do.

Every PostHog personal API key has one budget, shared by every DAG that uses it. The
operators count what each run spends (:class:`~airflow_provider_recordings.core.stats.CallStats`)
and what it changes; this module sends both through Airflow's own metrics, ``Stats`` from
``airflow.providers.common.compat.sdk``, so they go wherever the deployment's ``[metrics]``
section sends Airflow's (StatsD, Datadog's DogStatsD, OpenTelemetry), with Airflow's
prefix, allow and block lists. Every name and tag is listed in ``docs/metrics.md``.

Rules every emit keeps:

* **Short names**, ``posthog.<what>``, at most :data:`MAX_NAME_LENGTH` characters: OpenTelemetry
  on Airflow 2.11 refuses (raises for) a name over 63 characters, prefix included.
* **Low-cardinality tags only**: ``operation``, ``conn_id``, ``call_kind``, ``outcome``,
  ``bucket`` and ``window``, each value reduced to ``[A-Za-z0-9_.-]``; a call kind outside
  the known shape becomes ``other``. Never a recording id, a distinct id, a token or a key.
  Plain StatsD drops tags (Airflow's ``statsd_influxdb_enabled`` appends them to the name);
  every name means something without them.
* **A metric never fails a task**: each emit is wrapped, and a failure is logged once per
  process and otherwise ignored.

Nothing from Airflow is imported until the first emit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

#: Every name starts with this.
PREFIX = "posthog"

#: Longest name this module emits; leaves room for a 22-character ``[metrics]`` prefix
#: under OpenTelemetry's 63 on Airflow 2.11.
MAX_NAME_LENGTH = 40

# -- the names -----------------------------------------------------------------------

#: Counter: HTTP requests sent (every attempt, retries included, as PostHog counts them).
REQUESTS = f"{PREFIX}.requests"
#: Counter: attempts that failed and were tried again.
RETRIES = f"{PREFIX}.retries"
#: Counter: answers 429 (PostHog throttled the key).
THROTTLED = f"{PREFIX}.throttled"
#: Counter: milliseconds spent waiting for the rate budget before requests.
RATE_LIMIT_WAIT = f"{PREFIX}.rate_limit_wait_ms"
#: Counter: run passes (from ``execute`` or a resume to the end of the task or the next deferral).
PASSES = f"{PREFIX}.passes"
#: Counter: deferrals (a pass that handed the wait to the triggerer).
DEFERRALS = f"{PREFIX}.deferrals"
#: Gauge: calls a window of the shared store still admits.
BUDGET_LEFT = f"{PREFIX}.budget_left"

#: Counters of recordings, by what a run's counts call them.
RECORDING_COUNTERS: dict[str, str] = {
    "deleted": f"{PREFIX}.deleted",
    "already_gone": f"{PREFIX}.already_gone",
    "updated": f"{PREFIX}.updated",
    "links_disabled": f"{PREFIX}.links_disabled",
    "disabled": f"{PREFIX}.links_disabled",
    "erased": f"{PREFIX}.erased",
    "archived": f"{PREFIX}.archived",
    "failed": f"{PREFIX}.failed",
}

#: Every name, for the docs and the tests.
NAMES: tuple[str, ...] = (
    REQUESTS,
    RETRIES,
    THROTTLED,
    RATE_LIMIT_WAIT,
    PASSES,
    DEFERRALS,
    BUDGET_LEFT,
    *sorted(set(RECORDING_COUNTERS.values())),
)

#: How a pass ended.
OUTCOMES = ("completed", "stopped", "deferred", "failed")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: A call kind as ``CallStats`` names it: an HTTP method and a word (``GET list``).
_CALL_KIND = re.compile(r"^(GET|POST|PATCH|PUT|DELETE|HEAD) ([a-z][a-z_]{0,31})$")
_warned = False


def _tag(value: Any, *, limit: int = 100) -> str:
    """A tag value Airflow's name check (``[A-Za-z0-9_.-]``) and InfluxDB's line format
    accept; empty becomes ``unknown``."""
    return _UNSAFE.sub("_", str(value)).strip("_")[:limit] or "unknown"


def call_kind(kind: str) -> str:
    """The ``call_kind`` tag of one of ``CallStats``'s kinds: ``GET list`` -> ``get_list``.

    Anything else (which no client names today) becomes ``other``, so a tag can never
    carry an id that slipped into a kind.
    """
    found = _CALL_KIND.match(str(kind))
    return f"{found.group(1).lower()}_{found.group(2)}" if found else "other"


def _stats() -> Any:
    from airflow.providers.common.compat.sdk import Stats

    return Stats


def _safely(what: str, emit: Callable[[], None]) -> None:
    """Run ``emit``; a failure is logged (at warning once per process, then at debug) and
    swallowed. Only the exception's type is logged: its text might quote a value."""
    global _warned
    try:
        emit()
    except Exception as exc:
        level = logging.DEBUG if _warned else logging.WARNING
        _warned = True
        log.log(level, "PostHog metrics: %s failed (%s); the task goes on", what, type(exc).__name__)


def _count(value: Any) -> int:
    """A non-negative whole count from a counter's value (bools and the rest: 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))


def stats_since(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> dict[str, Any]:
    """What a client spent between two ``CallStats.snapshot()`` results (``before`` None:
    everything in ``after``), in the same shape."""
    before = before or {}
    kinds_before = before.get("by_kind") or {}
    return {
        "requests": _count(after.get("requests")) - _count(before.get("requests")),
        "retries": _count(after.get("retries")) - _count(before.get("retries")),
        "throttled": _count(after.get("throttled")) - _count(before.get("throttled")),
        "rate_limit_wait_seconds": max(
            0.0,
            float(after.get("rate_limit_wait_seconds") or 0)
            - float(before.get("rate_limit_wait_seconds") or 0),
        ),
        "by_kind": {
            kind: _count(total) - _count(kinds_before.get(kind))
            for kind, total in (after.get("by_kind") or {}).items()
            if _count(total) > _count(kinds_before.get(kind))
        },
    }


def emit_pass(
    operation: str,
    conn_id: str,
    stats: Mapping[str, Any],
    counts: Mapping[str, Any] | None = None,
    deferred: bool = False,
    *,
    outcome: str | None = None,
) -> None:
    """Send what one pass of a run spent and did. Never raises.

    :param operation: the operator's ``operation`` (``retention``, ``erasure``, ...).
    :param conn_id: the ``posthog`` connection's id.
    :param stats: what the pass spent, in the shape of ``CallStats.snapshot()`` (use
        :func:`stats_since` when the hook's counters began before the pass).
    :param counts: recordings the pass (or, on its last pass, the run) changed, by the
        names of the run summary: ``deleted``, ``already_gone``, ``updated``,
        ``links_disabled`` (or ``disabled``), ``erased``, ``archived``, ``failed``. Other
        keys are ignored. An erasure's ``deleted`` are counted as ``erased``.
    :param deferred: the pass ended by deferring to the triggerer.
    :param outcome: how the pass ended (``completed``, ``stopped``, ``failed``); defaults to
        ``deferred`` or ``completed``.
    """
    tags = {"operation": _tag(operation), "conn_id": _tag(conn_id)}
    ended = _tag(outcome or ("deferred" if deferred else "completed"))

    def send() -> None:
        sink = _stats()
        requests = _count(stats.get("requests"))
        by_kind: dict[str, int] = {}
        for kind, number in (stats.get("by_kind") or {}).items():
            tag = call_kind(kind)
            by_kind[tag] = by_kind.get(tag, 0) + _count(number)
        unnamed = requests - sum(by_kind.values())
        if unnamed > 0:
            by_kind["other"] = by_kind.get("other", 0) + unnamed
        for kind, number in sorted(by_kind.items()):
            if number:
                sink.incr(REQUESTS, number, tags={**tags, "call_kind": kind, "outcome": ended})
        for name, key in ((RETRIES, "retries"), (THROTTLED, "throttled")):
            if number := _count(stats.get(key)):
                sink.incr(name, number, tags=tags)
        waited = round(float(stats.get("rate_limit_wait_seconds") or 0) * 1000)
        if waited > 0:
            sink.incr(RATE_LIMIT_WAIT, waited, tags=tags)
        sink.incr(PASSES, 1, tags={**tags, "outcome": ended})
        if deferred:
            sink.incr(DEFERRALS, 1, tags=tags)
        for key, value in (counts or {}).items():
            if key not in RECORDING_COUNTERS or not (number := _count(value)):
                continue
            erased = operation == "erasure" and key == "deleted"
            sink.incr(RECORDING_COUNTERS["erased" if erased else key], number, tags=tags)

    _safely("sending the pass's counts", send)


def emit_budget(conn_id: str, windows: Iterable[Mapping[str, Any]] | None) -> None:
    """Send the calls each window of the shared rate store still admits (a gauge per
    ``bucket`` and ``window``), as ``SharedRateLimiter.budget_left()`` returns them. Never
    raises; nothing is sent without windows."""

    def send() -> None:
        sink = _stats()
        for window in windows or ():
            tags = {
                "conn_id": _tag(conn_id),
                "bucket": _tag(window.get("bucket"), limit=32),
                "window": _tag(window.get("window"), limit=32),
            }
            sink.gauge(BUDGET_LEFT, _count(window.get("left")), tags=tags)

    _safely("sending the rate budget", send)


def shared_budget(source: Any) -> list[dict[str, Any]]:
    """The windows of a shared rate store, for :func:`emit_budget`, from a hook (after its
    pass: its client is built) or its limiter. Empty for windows of the process's own (they
    say nothing about the key's budget) or when the store does not answer. Never raises."""
    found: list[dict[str, Any]] = []

    def collect() -> None:
        limiter = getattr(source, "limiter", source)
        if getattr(limiter, "shared", False) and hasattr(limiter, "budget_left"):
            found.extend(limiter.budget_left())

    _safely("reading the shared rate budget", collect)
    return found
