"""Shared fixtures: a throwaway Airflow home, the emulator, a connection pointing at it.

Every behaviour a user relies on is tested over real HTTP against the bundled emulator
on 127.0.0.1; sleeping is injected so retry and back-off tests never wait.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Airflow reads its home at import time; give each test session its own.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.testing import PostHogEmulator
from tests.services import RedisServer, S3Server

#: Airflow's deprecation classes that exist on Airflow 3 only (pyproject.toml names those
#: of both versions): each one found is turned into an error, as Airflow's own tests do.
#: Named here rather than in pyproject.toml because pytest cannot resolve a filter's class
#: on a version that lacks it.
AIRFLOW_3_DEPRECATIONS = (
    "airflow.exceptions.RemovedInAirflow4Warning",
    "airflow.sdk.exceptions.RemovedInAirflow4Warning",
    "airflow.utils.deprecation_tools.DeprecatedImportWarning",
)


def airflow_deprecation_classes() -> dict[str, type[Warning]]:
    """Every Airflow deprecation class the running Airflow has, by the path it is named by."""
    import importlib

    found = {}
    for dotted in ("airflow.exceptions.AirflowProviderDeprecationWarning", *AIRFLOW_3_DEPRECATIONS):
        module, name = dotted.rsplit(".", 1)
        try:
            found[dotted] = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return found


def pytest_configure(config: pytest.Config) -> None:
    for dotted in airflow_deprecation_classes():
        if dotted in AIRFLOW_3_DEPRECATIONS:
            config.addinivalue_line("filterwarnings", f"error::{dotted}")


#: Fixtures that make a test ``heavy`` (pyproject.toml): the S3 server is a separate
#: process (SeaweedFS) that takes seconds to start. Tests that reach it through a fixture
#: argument are marked here, at collection; archive tests that pick it by parameter carry
#: the mark on that parameter (``destination``'s "s3").
HEAVY_FIXTURES = frozenset({"s3_session"})


@pytest.hookimpl(tryfirst=True)  # before -m deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.heavy)


#: Obviously fake credentials; tests search every log and report for them.
API_KEY = "phx_test_key_not_real"
PROJECT_ID = "1"
CONN_ID = "posthog_default"


def conn_json(url: str, *, api_key: str = API_KEY, project_id: str | None = PROJECT_ID, **extra: Any) -> str:
    """The AIRFLOW_CONN_* value of a posthog connection."""
    extras = dict(extra)
    if project_id is not None:
        extras["project_id"] = project_id
    return json.dumps({"conn_type": "posthog", "host": url, "password": api_key, "extra": extras})


class RecordingSleep:
    """A sleep function that records the waits instead of waiting.

    It also drives a fake monotonic clock (:meth:`clock`), so a rate limiter that is
    told to wait sees the time pass.
    """

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 1_000_000.0

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., PostHogEmulator]]:
    """Start emulators with custom settings; all are stopped after the test."""
    started: list[PostHogEmulator] = []

    def start(**kwargs: Any) -> PostHogEmulator:
        kwargs.setdefault("project_id", PROJECT_ID)
        kwargs.setdefault("api_key", API_KEY)
        emulator = PostHogEmulator(**kwargs)
        emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., PostHogEmulator]) -> PostHogEmulator:
    return make_emulator()


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Point a connection id at a URL via AIRFLOW_CONN_<ID>; returns the conn id."""

    def point(url: str, conn_id: str = CONN_ID, **kwargs: Any) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", conn_json(url, **kwargs))
        return conn_id

    return point


@pytest.fixture
def posthog_conn(emulator: PostHogEmulator, connect: Callable[..., str]) -> str:
    return connect(emulator.url)


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """A real Redis server for the shared rate store, started once per test session."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> Iterator[RedisServer]:
    """The session's Redis server, empty for each test (and running again if a test stopped it)."""
    if not redis_session.running:
        redis_session.start()
    redis_session.flush()
    yield redis_session
    if not redis_session.running:
        redis_session.start()


@pytest.fixture(scope="session")
def s3_session() -> Iterator[S3Server]:
    """A real S3-compatible server (SeaweedFS), started once per test session on first use;
    tests/archive/conftest.py hands each test a running server and a fresh bucket."""
    server = S3Server().start()
    yield server
    server.remove()


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def seeded_policy() -> RetryPolicy:
    return RetryPolicy(rng=random.Random(7))


class CapturedLogs:
    """Everything a test logged: Python logging (Airflow 2) and structlog's output
    to stdout/stderr (Airflow 3), accumulated so repeated reads lose nothing."""

    def __init__(self, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
        self._capfd = capfd
        self._caplog = caplog
        self._seen: list[str] = []

    @property
    def text(self) -> str:
        out, err = self._capfd.readouterr()
        self._seen += [out, err]
        return "".join(self._seen) + self._caplog.text

    def count(self, fragment: str) -> int:
        """How many times ``fragment`` was logged. Airflow 2 writes each line both to the
        captured output and to logging's records, Airflow 3 to the output only; each is
        counted once."""
        self.text  # noqa: B018 - read what is pending
        printed = "".join(self._seen).count(fragment)
        recorded = sum(fragment in record.getMessage() for record in self._caplog.records)
        return max(printed, recorded)


@pytest.fixture(autouse=True)
def logs(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[CapturedLogs]:
    """Every test doubles as a leak check: the API key never reaches a log line."""
    captured = CapturedLogs(capfd, caplog)
    yield captured
    assert API_KEY not in captured.text
