"""Fixtures for the emulator's own tests: a frozen clock and a small HTTP client.

The clock is frozen so "ongoing", date windows and rate-limit windows are exact; the
client speaks plain HTTP through ``requests``, as any PostHog client would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from airflow_provider_recordings.testing import EmulatorClock, PostHogEmulator

KEY = "phx_emulator_test_key"
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


class Client:
    """Requests against one emulator's session recordings endpoints."""

    def __init__(self, emulator: PostHogEmulator, key: str | None = KEY, project: str = "1") -> None:
        self.emulator = emulator
        self.session = requests.Session()
        if key is not None:
            self.session.headers["Authorization"] = f"Bearer {key}"
        self.base = f"{emulator.url}/api/projects/{project}/session_recordings/"

    def request(self, method: str, path: str = "", **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.session.request(method, self.base + path, **kwargs)

    def list(self, **params: Any) -> requests.Response:
        return self.request("GET", params=params)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def patch(self, path: str, body: Any) -> requests.Response:
        return self.request("PATCH", path, json=body)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> requests.Response:
        return self.request("DELETE", path)

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def clock() -> EmulatorClock:
    return EmulatorClock(NOW, frozen=True)


@pytest.fixture
def make_emu(
    clock: EmulatorClock, make_emulator: Callable[..., PostHogEmulator]
) -> Callable[..., PostHogEmulator]:
    """The shared ``make_emulator``, with a frozen clock and this folder's test key."""

    def start(**kwargs: Any) -> PostHogEmulator:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("api_key", KEY)
        return make_emulator(**kwargs)

    return start


@pytest.fixture
def emu(make_emu: Callable[..., PostHogEmulator]) -> PostHogEmulator:
    return make_emu()


@pytest.fixture
def client(emu: PostHogEmulator) -> Iterator[Client]:
    api = Client(emu)
    yield api
    api.close()


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    """Clients for other emulators or keys, closed afterwards."""
    made: list[Client] = []

    def make(emulator: PostHogEmulator, key: str | None = KEY, project: str = "1") -> Client:
        api = Client(emulator, key, project)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()
