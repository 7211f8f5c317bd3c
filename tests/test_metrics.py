"""Metrics through Airflow's own ``Stats``, caught by a real StatsD listener.

Each emission test runs a subprocess configured as a deployment would be (``[metrics]``
through ``AIRFLOW__METRICS__*``), with ``Stats`` initialised the way Airflow's task
runner does it, so the packets are the ones a worker sends. The listener is a UDP socket
this test opens on the loopback interface.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_recordings import metrics
from airflow_provider_recordings.testing import PostHogEmulator
from airflow_provider_recordings.testing.faults import Fault
from tests.conftest import API_KEY, PROJECT_ID, conn_json
from tests.services import StatsdListener

ROOT = Path(__file__).resolve().parents[1]

#: What the task runner does before a task runs (Airflow 3); Airflow 2 configures
#: ``Stats`` from ``[metrics]`` on first use by itself.
INIT_STATS = """
try:
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils
except ImportError:
    pass
else:
    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
"""

# -- names, tags and wrapping ------------------------------------------------------------------


def test_names_are_short_and_plain() -> None:
    """OpenTelemetry on Airflow 2.11 raises for a name over 63 characters, prefix included;
    Airflow's StatsD loggers drop a name with other characters than these."""
    assert len(set(metrics.NAMES)) == len(metrics.NAMES)
    for name in metrics.NAMES:
        assert re.fullmatch(r"posthog\.[a-z_]+", name), name
        assert len(name) <= metrics.MAX_NAME_LENGTH
        assert len(f"airflow.{name}") <= 63


def test_the_metrics_page_documents_every_name_and_nothing_else() -> None:
    page = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(posthog\.[a-z_]+)` \|", page, flags=re.MULTILINE))
    assert documented == set(metrics.NAMES)
    assert "metrics.md" in (ROOT / "mkdocs.yml").read_text()


@pytest.mark.parametrize(
    ("kind", "tag"),
    [
        ("GET list", "get_list"),
        ("DELETE recording", "delete_recording"),
        ("POST persons", "post_persons"),
        ("PATCH recording", "patch_recording"),
        ("GET 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "other"),
        ("GET sharing_token_abcdef123456", "other"),
        ("phx_secret_key", "other"),
        ("", "other"),
    ],
)
def test_call_kind_tags_are_known_words_only(kind: str, tag: str) -> None:
    assert metrics.call_kind(kind) == tag


def test_stats_since_is_what_a_pass_spent() -> None:
    before = {
        "requests": 3,
        "retries": 1,
        "throttled": 0,
        "rate_limit_wait_seconds": 1.5,
        "by_kind": {"GET list": 3},
    }
    after = {
        "requests": 8,
        "retries": 2,
        "throttled": 1,
        "rate_limit_wait_seconds": 4.0,
        "by_kind": {"GET list": 4, "DELETE recording": 4},
    }
    assert metrics.stats_since(before, after) == {
        "requests": 5,
        "retries": 1,
        "throttled": 1,
        "rate_limit_wait_seconds": 2.5,
        "by_kind": {"GET list": 1, "DELETE recording": 4},
    }
    assert metrics.stats_since(None, after)["requests"] == 8


class Recorder:
    """A stand-in for ``Stats``: what was emitted, with which tags."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, str, float, dict[str, str]]] = []

    def incr(self, name: str, count: int = 1, rate: float = 1, *, tags: dict[str, str]) -> None:
        if self.fail:
            raise RuntimeError("the backend is down: phx_secret_in_message")
        self.calls.append(("incr", name, count, tags))

    def gauge(
        self, name: str, value: float, rate: float = 1, delta: bool = False, *, tags: dict[str, str]
    ) -> None:
        if self.fail:
            raise RuntimeError("the backend is down")
        self.calls.append(("gauge", name, value, tags))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    found = Recorder()
    monkeypatch.setattr(metrics, "_stats", lambda: found)
    monkeypatch.setattr(metrics, "_warned", False)
    return found


def test_a_pass_emits_every_counter_with_its_tags(recorder: Recorder) -> None:
    metrics.emit_pass(
        "erasure",
        "posthog eu,prod=1",
        {
            "requests": 7,
            "retries": 2,
            "throttled": 1,
            "rate_limit_wait_seconds": 0.25,
            "by_kind": {"GET persons": 2, "DELETE recording": 4},
        },
        {"deleted": 4, "already_gone": 1, "failed": 0, "dry_run": True, "selected": 9, "route": "mixed"},
        deferred=True,
    )
    base = {"operation": "erasure", "conn_id": "posthog_eu_prod_1"}
    assert recorder.calls == [
        ("incr", "posthog.requests", 4, {**base, "call_kind": "delete_recording", "outcome": "deferred"}),
        ("incr", "posthog.requests", 2, {**base, "call_kind": "get_persons", "outcome": "deferred"}),
        ("incr", "posthog.requests", 1, {**base, "call_kind": "other", "outcome": "deferred"}),
        ("incr", "posthog.retries", 2, base),
        ("incr", "posthog.throttled", 1, base),
        ("incr", "posthog.rate_limit_wait_ms", 250, base),
        ("incr", "posthog.passes", 1, {**base, "outcome": "deferred"}),
        ("incr", "posthog.deferrals", 1, base),
        # An erasure's deletions are erasures; zeros, flags and other fields are not sent.
        ("incr", "posthog.erased", 4, base),
        ("incr", "posthog.already_gone", 1, base),
    ]


def test_recordings_counters_by_operation(recorder: Recorder) -> None:
    empty: dict[str, Any] = {"requests": 0, "by_kind": {}}
    metrics.emit_pass("retention", "c", empty, {"deleted": 3}, outcome="stopped")
    metrics.emit_pass("bulk_update", "c", empty, {"updated": 2})
    metrics.emit_pass("sharing_audit", "c", empty, {"links_disabled": 1})
    metrics.emit_pass("sharing_audit", "c", empty, {"disabled": 1})
    metrics.emit_pass("archive", "c", empty, {"archived": 5})
    sent = [(name, value, tags.get("outcome")) for _, name, value, tags in recorder.calls]
    assert sent == [
        ("posthog.passes", 1, "stopped"),
        ("posthog.deleted", 3, None),
        ("posthog.passes", 1, "completed"),
        ("posthog.updated", 2, None),
        ("posthog.passes", 1, "completed"),
        ("posthog.links_disabled", 1, None),
        ("posthog.passes", 1, "completed"),
        ("posthog.links_disabled", 1, None),
        ("posthog.passes", 1, "completed"),
        ("posthog.archived", 5, None),
    ]


def test_budget_gauges(recorder: Recorder) -> None:
    metrics.emit_budget(
        "posthog_default",
        [
            {"bucket": "all", "window": "minute", "limit": 240, "used": 10, "left": 230},
            {"bucket": "list", "window": "hour", "limit": 60, "used": 60, "left": 0},
        ],
    )
    metrics.emit_budget("posthog_default", None)
    assert recorder.calls == [
        (
            "gauge",
            "posthog.budget_left",
            230,
            {"conn_id": "posthog_default", "bucket": "all", "window": "minute"},
        ),
        (
            "gauge",
            "posthog.budget_left",
            0,
            {"conn_id": "posthog_default", "bucket": "list", "window": "hour"},
        ),
    ]


def test_a_failing_backend_never_fails_the_task(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(metrics, "_stats", lambda: Recorder(fail=True))
    monkeypatch.setattr(metrics, "_warned", False)
    with caplog.at_level(logging.DEBUG, logger=metrics.__name__):
        metrics.emit_pass("retention", "c", {"requests": 1, "by_kind": {"GET list": 1}}, {}, False)
        metrics.emit_budget("c", [{"bucket": "all", "window": "minute", "left": 1}])
        metrics.emit_pass("retention", "c", {"requests": "garbage", "by_kind": None}, None)
    records = [r for r in caplog.records if r.name == metrics.__name__]
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "RuntimeError" in records[0].getMessage()
    assert "phx_secret" not in caplog.text  # only the exception's type is logged


def test_shared_budget_is_empty_for_a_process_own_windows() -> None:
    from airflow_provider_recordings.core.config import RateLimits
    from airflow_provider_recordings.core.ratelimit import RateLimiter

    assert metrics.shared_budget(RateLimiter(RateLimits())) == []
    assert metrics.shared_budget(None) == []

    class Broken:
        shared = True

        def budget_left(self) -> list[dict[str, Any]]:
            raise OSError("the store is gone")

    assert metrics.shared_budget(Broken()) == []

    class Unusable:  # a hook whose connection cannot be read
        @property
        def limiter(self) -> Any:
            raise ValueError("extra.project_id: is required")

    assert metrics.shared_budget(Unusable()) == []


# -- through Airflow's Stats, to a real StatsD listener ------------------------------------------


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()


def metric_env(tmp_path: Path, listener: StatsdListener, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_HOME=str(tmp_path / "airflow-home"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__METRICS__STATSD_ON="True",
        AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
        AIRFLOW__METRICS__STATSD_PORT=str(listener.port),
        AIRFLOW__METRICS__STATSD_PREFIX="airflow",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        PYTHONWARNINGS="ignore",
    )
    env.update({f"AIRFLOW__METRICS__{key.upper()}": value for key, value in settings.items()})
    return env


def run_task_code(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-c", INIT_STATS + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def parse(packets: list[str]) -> list[tuple[str, dict[str, str], float, str]]:
    """``name,k=v,...:value|type`` (InfluxDB-style tags, as Airflow sends them) -> parts."""
    found = []
    for packet in packets:
        for line in packet.splitlines():
            head, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            name, *pairs = head.split(",")
            found.append((name, dict(pair.split("=", 1) for pair in pairs), float(value), kind))
    return found


def total(found: list[tuple[str, dict[str, str], float, str]], name: str, **tags: str) -> float:
    return sum(
        value
        for metric, metric_tags, value, _ in found
        if metric == name and all(metric_tags.get(k) == v for k, v in tags.items())
    )


@pytest.fixture
def shared_project(make_emulator: Any, redis_server: Any) -> dict[str, Any]:
    """An emulated project with old recordings (some shared) and a shared rate store."""
    emulator: PostHogEmulator = make_emulator()
    now = datetime.now(UTC)
    ids = [
        emulator.add_recording(
            start_time=now - timedelta(days=200 + i), distinct_id=f"person-{i}@example.com"
        )["id"]
        for i in range(6)
    ]
    for recording_id in ids[:2]:
        emulator.set_shared(recording_id, True)
    tokens = [emulator.sharing_token(recording_id) for recording_id in ids[:2]]
    return {
        "emulator": emulator,
        "ids": ids,
        "tokens": tokens,
        "distinct_ids": [f"person-{i}@example.com" for i in range(6)],
        "conn": conn_json(emulator.url, rate_limit_storage=redis_server.url),
    }


#: A pass as the run driver makes it: a hook on the connection, real calls (a list, the
#: sharing of each recording, a delete per recording, a throttle on the way), then the
#: pass's counts and the shared store's budget, sent through ``Stats``.
A_PASS = """
import json, os
from airflow_provider_recordings import metrics
from airflow_provider_recordings.hooks.posthog import PostHogHook

hook = PostHogHook("posthog_default")
before = hook.stats.snapshot()
ids = [r["id"] for r in hook.iter_recordings(date_from="-365d")]
shared = [i for i in ids if hook.get_sharing(i).get("enabled")]
deleted = 0
for recording_id in ids:
    hook.delete_recording(recording_id)
    deleted += 1
spent = metrics.stats_since(before, hook.stats.snapshot())
metrics.emit_pass("retention", "posthog_default", spent, {"deleted": deleted, "failed": 0}, deferred=False)
metrics.emit_budget("posthog_default", metrics.shared_budget(hook))
print(json.dumps(spent))
"""


@pytest.mark.heavy  # a task process emitting to a StatsD listener
def test_a_pass_reaches_a_statsd_listener_with_tags_and_no_secret(
    statsd: StatsdListener, shared_project: dict[str, Any], tmp_path: Path
) -> None:
    emulator: PostHogEmulator = shared_project["emulator"]
    emulator.inject(Fault.throttle(retry_after=1), method="DELETE", times=1)
    env = metric_env(tmp_path, statsd, statsd_influxdb_enabled="True")
    env["AIRFLOW_CONN_POSTHOG_DEFAULT"] = shared_project["conn"]
    completed = run_task_code(A_PASS, env)
    spent = json.loads(completed.stdout.strip().splitlines()[-1])
    packets = statsd.packets()
    found = parse(packets)
    ours = [item for item in found if item[0].startswith("airflow.posthog.")]
    assert ours, packets

    sent = len(emulator.requests)
    assert spent["requests"] == sent
    assert total(found, "airflow.posthog.requests", operation="retention", conn_id="posthog_default") == sent
    assert total(found, "airflow.posthog.requests", call_kind="get_list", outcome="completed") == 1
    assert total(found, "airflow.posthog.requests", call_kind="delete_recording") == 7  # 6 and a retry
    assert total(found, "airflow.posthog.throttled") == 1
    assert total(found, "airflow.posthog.retries") == 1
    assert total(found, "airflow.posthog.passes", outcome="completed") == 1
    assert total(found, "airflow.posthog.deferrals") == 0
    assert total(found, "airflow.posthog.deleted") == 6
    assert {kind for name, _, _, kind in ours if name != "airflow.posthog.budget_left"} == {"c"}

    # The shared store's budget: every window of the key, each once, as gauges.
    budget = {
        (tags["bucket"], tags["window"]): value
        for name, tags, value, kind in ours
        if name == "airflow.posthog.budget_left" and kind == "g"
    }
    assert set(budget) == {
        ("clickhouse_burst", "minute"),
        ("clickhouse_sustained", "hour"),
        ("listing_burst", "minute"),
        ("listing_sustained", "hour"),
        ("snapshots_burst", "minute"),
        ("snapshots_sustained", "hour"),
        ("burst", "minute"),
        ("sustained", "hour"),
        ("persons_delete_burst", "minute"),
        ("persons_delete_sustained", "hour"),
    }
    # The sharing reads count in PostHog's default throttles, not in the ClickHouse window.
    sharing = len([r for r in emulator.requests if r.path.endswith("/sharing/")])
    assert budget["clickhouse_burst", "minute"] == 240 - (sent - sharing)
    assert budget["burst", "minute"] == 480 - sharing
    assert budget["listing_sustained", "hour"] == 60 - 1
    assert budget["persons_delete_sustained", "hour"] == 4800

    # Only the tags this module names, and never anything a recording or a person owns.
    for _, tags, _, _ in ours:
        assert set(tags) <= {"operation", "conn_id", "call_kind", "outcome", "bucket", "window"}
    wire = "\n".join(packets)
    secrets = [API_KEY, *shared_project["ids"], *shared_project["tokens"], *shared_project["distinct_ids"]]
    assert [secret for secret in secrets if secret in wire] == []
    assert f"projects/{PROJECT_ID}" not in wire


@pytest.mark.heavy  # a task process emitting to a StatsD listener
def test_plain_statsd_gets_the_names_without_tags(statsd: StatsdListener, tmp_path: Path) -> None:
    """Airflow's plain StatsD logger drops tags: every name still means something alone."""
    code = """
    from airflow_provider_recordings import metrics
    metrics.emit_pass("bulk_update", "posthog_default", {"requests": 3, "by_kind": {"PATCH recording": 3}},
                      {"updated": 3}, deferred=True)
    metrics.emit_budget("posthog_default", [{"bucket": "all", "window": "hour", "left": 1197}])
    """
    run_task_code(code, metric_env(tmp_path, statsd))
    lines = sorted(line for packet in statsd.packets() for line in packet.splitlines() if "posthog" in line)
    assert lines == [
        "airflow.posthog.budget_left:1197|g",
        "airflow.posthog.deferrals:1|c",
        "airflow.posthog.passes:1|c",
        "airflow.posthog.requests:3|c",
        "airflow.posthog.updated:3|c",
    ]


@pytest.mark.heavy  # a task process emitting to a StatsD listener
def test_opentelemetry_accepts_every_name(statsd: StatsdListener, tmp_path: Path) -> None:
    """With OpenTelemetry (Airflow 2.11 raises for a name it refuses) nothing fails or warns."""
    code = """
    import logging
    logging.basicConfig(level=logging.WARNING)
    from airflow_provider_recordings import metrics
    everything = {key: 1 for key in metrics.RECORDING_COUNTERS}
    stats = {"requests": 2, "retries": 1, "throttled": 1, "rate_limit_wait_seconds": 1.5,
             "by_kind": {"GET list": 1, "DELETE recording": 1}}
    metrics.emit_pass("retention", "posthog_default", stats, everything, deferred=True)
    metrics.emit_budget("posthog_default", [{"bucket": "all", "window": "minute", "left": 3}])
    try:  # a name OpenTelemetry refuses, to see that it would tell
        metrics._stats().incr("posthog.not a name!")
    except Exception as exc:
        print("REFUSED", type(exc).__name__)
    # Leave without the exporter's flush at exit (nothing listens for OTLP here).
    import os, sys
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)
    """
    env = metric_env(
        tmp_path,
        statsd,
        statsd_on="False",
        otel_on="True",
        otel_host="127.0.0.1",
        otel_port=str(statsd.port),
        otel_interval_milliseconds="600000",
    )
    completed = subprocess.run(
        [sys.executable, "-c", INIT_STATS + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert "PostHog metrics" not in output
    # The deliberate bad name shows the backend checks names here (2.11 raises, 3.3 logs).
    assert "REFUSED InvalidStatsNameException" in output or "Invalid stat name" in output, output[-2000:]
