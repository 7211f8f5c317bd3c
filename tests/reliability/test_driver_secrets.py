"""Each secret, through each driver: neither lets it reach a log.

The secrets are the personal API key, the shared rate store's password (in a Redis
connection named by ``rate_limit_redis_conn_id``: a password in ``rate_limit_storage``
is refused), and the access token of an enabled sharing link. The drivers are the
synchronous hook (``PostHogHook``, as operators use it) and the asynchronous client
(``AsyncPostHogClient.open``, as triggers open it). Each is driven through its normal
paths, errors included (401, a store that refuses the password or stops answering,
retries, a throttle longer than the task may wait).

Two things are checked for every secret:

* it is in nothing captured: the log (Python logging and structlog's output), the
  errors raised (message and repr), what ``test_connection`` answers;
* it is registered with Airflow's secret masker, so any later log line of the task
  that carries it is redacted.

Airflow's masker is process-wide and only grows, so every secret here is new to its
test: it can only be registered because the driver under test registered it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, redact

from airflow_provider_recordings import masking
from airflow_provider_recordings.core import endpoints
from airflow_provider_recordings.core.errors import PostHogError
from airflow_provider_recordings.core.retry import RetryPolicy
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient
from airflow_provider_recordings.masking import PostHogSecretMaskingError
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.testing import Fault, PostHogEmulator, RequestRecord
from tests.conftest import CONN_ID, RecordingSleep
from tests.operators.conftest import XComRecorder
from tests.services import RedisServer

STORE_CONN_ID = "posthog_rate_store"
DRIVERS = ("sync", "async")


def fresh(prefix: str) -> str:
    """A secret no earlier test registered with Airflow's masker."""
    return f"{prefix}{secrets.token_hex(16)}"


def registered(secret: str) -> bool:
    """Whether Airflow's masker redacts ``secret`` from what it is given to log."""
    return secret not in str(redact(f"a line with {secret} in it"))


class Texts:
    """Everything a secret could reach: errors raised, answers given, and the log."""

    def __init__(self, logs: Any) -> None:
        self.logs = logs
        self.items: list[str] = []

    def error(self, exc: BaseException) -> None:
        self.items += [str(exc), repr(exc)]
        cause = exc.__cause__ or exc.__context__
        if cause is not None:
            self.items += [str(cause), repr(cause)]

    def assert_absent(self, secret: str, what: str) -> None:
        assert secret not in self.logs.text, f"the {what} reached the log"
        for text in self.items:
            assert secret not in text, f"the {what} reached an error or answer: {text[:200]}"


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


def policy() -> RetryPolicy:
    import random

    return RetryPolicy(rng=random.Random(7))


def sync_hook(sleeps: RecordingSleep, **kwargs: Any) -> PostHogHook:
    kwargs.setdefault("page_size", 2)
    return PostHogHook(CONN_ID, sleep=sleeps, clock=sleeps.clock, retry_policy=policy(), **kwargs)


def async_run(sleeps: RecordingSleep, use: Callable[[AsyncPostHogClient], Any], **kwargs: Any) -> Any:
    """Open the client as a trigger does (connections read the async way) and use it."""
    from airflow.providers.common.compat.connection import get_async_connection

    from airflow_provider_recordings.hooks.connection import store_conn_id

    async def sleep(seconds: float) -> None:
        sleeps(seconds)

    async def main() -> Any:
        conn = await get_async_connection(CONN_ID)
        store = store_conn_id(CONN_ID, conn)
        store_conn = await get_async_connection(store) if store else None
        kwargs.setdefault("page_size", 2)
        client = await AsyncPostHogClient.open(
            CONN_ID,
            conn,
            store_conn=store_conn,
            sleep=sleep,
            clock=sleeps.clock,
            retry_policy=policy(),
            **kwargs,
        )
        async with client:
            return await use(client)

    return asyncio.run(main())


async def all_rows(client: AsyncPostHogClient) -> list[dict[str, Any]]:
    return [row async for row in client.iter_recordings(date_from="-30d")]


def list_with(driver: str, sleeps: RecordingSleep, texts: Texts) -> bool:
    """List the recordings through ``driver``; whether it worked (an error is kept)."""
    try:
        if driver == "sync":
            list(sync_hook(sleeps).iter_recordings(date_from="-30d"))
        else:
            async_run(sleeps, all_rows)
    except PostHogError as exc:
        texts.error(exc)
        return False
    return True


def seed(emulator: PostHogEmulator, count: int = 6) -> None:
    now = emulator.clock.now()
    for index in range(count):
        emulator.add_recording(start_time=now - timedelta(days=1 + index))


# -- the API key ------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["success", "401", "500s", "throttled"])
@pytest.mark.parametrize("driver", DRIVERS)
def test_the_api_key_reaches_no_log(make_emulator, connect, sleeps, logs, driver, scenario):
    key = fresh("phx_")
    emulator = make_emulator(api_key=key if scenario != "401" else fresh("phx_other_"))
    seed(emulator)
    connect(emulator.url, api_key=key, max_retry_wait=60)
    if scenario == "500s":
        emulator.inject(Fault.status(500), times=3)
    elif scenario == "throttled":
        emulator.inject(Fault.throttle(retry_after=3600), times=1)
    texts = Texts(logs)

    worked = list_with(driver, sleeps, texts)

    assert worked == (scenario in ("success", "500s")), texts.items
    if scenario == "500s":
        assert sleeps.calls, "the failures were retried"
    if driver == "sync":
        # The connection form's Test button goes through the hook too.
        texts.items.append(sync_hook(sleeps).test_connection()[1])
    assert emulator.requests, "the key was used"
    texts.assert_absent(key, "API key")
    assert registered(key), f"the {driver} driver did not register the API key with Airflow's masker"


# -- the shared store's password ----------------------------------------------------------------


def redis_connection(monkeypatch: pytest.MonkeyPatch, server: RedisServer, password: str | None) -> None:
    """The store, as a connection of the Redis provider's ``redis`` type."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{STORE_CONN_ID.upper()}",
        json.dumps(
            {
                "conn_type": "redis",
                "host": "127.0.0.1",
                "port": server.port,
                "password": password,
                "extra": {"db": 0},
            }
        ),
    )


@pytest.fixture
def store() -> Iterator[RedisServer]:
    """A Redis server of this test's own, with a password no other test used."""
    server = RedisServer(password=fresh("store-")).start()
    yield server
    server.stop()


@pytest.mark.parametrize("scenario", ["success", "wrong-password", "unreachable", "stops-mid-run"])
@pytest.mark.parametrize("driver", DRIVERS)
def test_the_store_password_reaches_no_log(
    emulator, connect, monkeypatch, sleeps, logs, store, driver, scenario
):
    seed(emulator)
    password = store.password if scenario != "wrong-password" else fresh("not-the-store-")
    assert password is not None
    redis_connection(monkeypatch, store, password)
    connect(emulator.url, rate_limit_redis_conn_id=STORE_CONN_ID, max_retry_wait=60)
    if scenario == "unreachable":
        store.stop()
    elif scenario == "stops-mid-run":

        @emulator.on_request
        def the_store_stops(emulator: PostHogEmulator, record: RequestRecord) -> None:
            if store.running:
                store.stop()

    texts = Texts(logs)

    worked = list_with(driver, sleeps, texts)

    assert worked == (scenario in ("success", "stops-mid-run")), texts.items
    if scenario == "stops-mid-run":
        assert "stopped answering" in logs.text, "the store's failure was logged (masked)"
        assert len(emulator.requests) > 1, "the run went on without the store"
    if scenario in ("wrong-password", "unreachable"):
        assert any("redis://:***@127.0.0.1" in text for text in texts.items), texts.items
        assert emulator.requests == [], "nothing is sent to PostHog before the store answers"
    texts.assert_absent(password, "store password")
    assert registered(password), f"the {driver} driver did not register the store's password"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_store_password_in_rate_limit_storage_is_refused_without_repeating_it(
    emulator, connect, sleeps, logs, store, driver
):
    assert store.password is not None
    connect(emulator.url, rate_limit_storage=store.url)
    texts = Texts(logs)

    assert not list_with(driver, sleeps, texts)

    assert any("rate_limit_redis_conn_id" in text for text in texts.items), texts.items
    texts.assert_absent(store.password, "store password")
    assert emulator.requests == []


# -- sharing tokens ----------------------------------------------------------------------------


def shared_recording(emulator: PostHogEmulator) -> tuple[str, str]:
    recording = emulator.add_recording(start_time=datetime.now(UTC) - timedelta(days=2), shared=True)
    # A live link's token is random: new to this test as well.
    return recording["id"], emulator.sharing_token(recording["id"])


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_sharing_token_reaches_no_log(emulator, posthog_conn, sleeps, logs, driver):
    recording_id, token = shared_recording(emulator)
    # A retry on the way, so the request is described in the log.
    emulator.inject(Fault.status(503), times=1, path_contains="/sharing")
    texts = Texts(logs)

    if driver == "sync":
        hook = sync_hook(sleeps)
        answer = hook.get_sharing(recording_id)
        hook.set_sharing(recording_id, False)
    else:

        async def read(client: AsyncPostHogClient) -> Any:
            return await client.send(endpoints.get_sharing(recording_id))

        answer = async_run(sleeps, read)
    answer = answer[0] if isinstance(answer, list) else answer

    assert answer["access_token"] == token, "the driver read the live token"
    assert sleeps.calls, "the 503 was retried"
    texts.assert_absent(token, "sharing token")
    assert registered(token), f"the {driver} driver did not register the live link's token"


# -- without a masker, nothing goes on -------------------------------------------------------------


@pytest.fixture
def no_masker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """None of the modules that define Airflow's ``mask_secret`` can be imported."""
    real_import = importlib.import_module
    blocked = {module for module, _ in masking._MASKERS}

    def import_module(name: str, package: str | None = None) -> Any:
        if name in blocked:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, package)

    monkeypatch.setattr(masking.importlib, "import_module", import_module)
    masking._masker.cache_clear()
    yield
    monkeypatch.undo()
    masking._masker.cache_clear()


def test_mask_raises_when_no_masker_can_be_imported(no_masker):
    with pytest.raises(PostHogSecretMaskingError, match="apache-airflow-providers-common-compat"):
        masking.mask(fresh("phx_"))
    masking.mask(None)  # nothing to mask: nothing to refuse
    masking.mask("")


@pytest.mark.parametrize("driver", DRIVERS)
def test_without_a_masker_the_drivers_refuse_to_go_on(
    make_emulator, connect, sleeps, logs, no_masker, driver
):
    key = fresh("phx_")
    emulator = make_emulator(api_key=key)
    seed(emulator)
    connect(emulator.url, api_key=key)
    texts = Texts(logs)

    def go() -> Any:
        if driver == "sync":
            return list(sync_hook(sleeps).iter_recordings(date_from="-30d"))
        return async_run(sleeps, all_rows)

    with pytest.raises(PostHogSecretMaskingError) as refused:
        go()

    texts.error(refused.value)
    assert emulator.requests == [], "no request went out with a key that could not be masked"
    texts.assert_absent(key, "API key")


def test_without_a_masker_a_task_fails_before_any_request_without_retries(
    make_emulator, connect, logs, no_masker
):
    key = fresh("phx_")
    emulator = make_emulator(api_key=key)
    seed(emulator)
    connect(emulator.url, api_key=key)
    task = PostHogRecordingRetentionOperator(task_id="retention", retention_days=1)

    with pytest.raises(AirflowFailException) as failed:
        task.execute({"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)})

    assert isinstance(failed.value.__cause__, PostHogSecretMaskingError)
    assert emulator.requests == []
    assert key not in logs.text and key not in str(failed.value)


def test_a_masker_that_refuses_a_token_stops_the_hook_before_it_hands_the_token_over(
    emulator, posthog_conn, sleeps, logs, monkeypatch
):
    recording_id, token = shared_recording(emulator)
    real = masking._masker()

    def refusing(secret: Any) -> None:
        if secret == token:
            raise RuntimeError("masker is full")
        real(secret)

    monkeypatch.setattr(masking, "_masker", lambda: refusing)

    with pytest.raises(PostHogSecretMaskingError, match="refused a secret") as refused:
        sync_hook(sleeps).get_sharing(recording_id)

    assert token not in str(refused.value) and token not in repr(refused.value)
    assert token not in logs.text


def test_the_connection_reader_is_the_one_both_drivers_use():
    """Both drivers read a connection (and register its secrets) through one function."""
    from airflow_provider_recordings.hooks import connection, posthog, posthog_async

    assert posthog.read_config is connection.read_config
    assert posthog_async.read_config is connection.read_config
