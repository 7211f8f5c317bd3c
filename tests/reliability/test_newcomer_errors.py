"""The errors a newcomer meets first say what to fix, before any request where they can.

- ``distinct_ids`` (or ``session_ids``) given as one plain string, not a list: refused
  by every operator and the sensor (their ``filters``), the erasure operator, and the
  hooks' own list calls, naming the parameter;
- a 401 or a 403 about the key names the Airflow connection to fix;
- ``rate_limit_storage: "localhost:6379"`` says the URL has no scheme;
- ``retention_days`` is worded the same given literally and rendered from a template.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airflow_provider_recordings.core.errors import (
    PostHogAuthError,
    PostHogConfigError,
    PostHogPermissionError,
)
from airflow_provider_recordings.hooks.posthog import PostHogHook
from airflow_provider_recordings.hooks.posthog_async import AsyncPostHogClient
from airflow_provider_recordings.operators.archive import PostHogRecordingArchiveOperator
from airflow_provider_recordings.operators.erasure import PostHogRecordingErasureOperator
from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.sensors.ongoing import PostHogOngoingRecordingsSensor
from tests.conftest import CONN_ID
from tests.reliability.helpers import TARGETS, XComRecorder, make_target


def execute(task):
    if isinstance(task, PostHogOngoingRecordingsSensor):
        return task.poke({})
    return task.execute({"ti": XComRecorder(), "data_interval_end": datetime.now(UTC)})


# -- distinct_ids as one plain string --------------------------------------------------------


@pytest.mark.parametrize("name", ["distinct_ids", "session_ids"])
@pytest.mark.parametrize("target", TARGETS)
def test_a_plain_string_list_filter_is_refused_before_any_request(emulator, posthog_conn, target, name):
    task = make_target(target, filters={name: "user-42", "date_from": "-7d"})
    with pytest.raises(PostHogConfigError, match=rf"filters\.{name} must be a list, got the single string"):
        execute(task)
    assert emulator.requests == []


def test_a_plain_string_filter_is_refused_by_the_archive_operator(emulator, posthog_conn, tmp_path: Path):
    task = PostHogRecordingArchiveOperator(
        task_id="archive", archive_to=str(tmp_path / "archive"), filters={"distinct_ids": "user-42"}
    )
    with pytest.raises(PostHogConfigError, match=r"filters\.distinct_ids must be a list"):
        execute(task)
    assert emulator.requests == []


@pytest.mark.parametrize("value", ["user-42", "  user-42 "])
def test_the_erasure_refuses_a_plain_string_before_any_request(emulator, posthog_conn, tmp_path, value):
    task = PostHogRecordingErasureOperator(
        task_id="erase",
        request_id="DSR-1",
        distinct_ids=value,
        receipt_path=str(tmp_path / "receipt.json"),
        deferrable=True,
    )
    with pytest.raises(
        PostHogConfigError,
        match=r"distinct_ids must be a list of distinct ids, got the single string 'user-42'; for one person write \['user-42'\]",
    ):
        execute(task)
    assert emulator.requests == []


@pytest.mark.parametrize("name", ["distinct_ids", "session_ids"])
def test_the_sync_hook_refuses_a_plain_string_before_any_request(emulator, posthog_conn, name):
    with pytest.raises(PostHogConfigError, match=rf"{name} must be a list, got the single string 'user-42'"):
        list(PostHogHook().iter_recordings(**{name: "user-42", "date_from": "-7d"}))
    assert emulator.requests == []


def test_the_sync_hook_still_takes_a_json_list_as_text(emulator, posthog_conn):
    emulator.add_recording("r1", start_time=datetime.now(UTC), distinct_id="user-42")
    assert [r["id"] for r in PostHogHook().iter_recordings(distinct_ids='["user-42"]', date_from="-1d")] == [
        "r1"
    ]


def test_the_async_client_refuses_a_plain_string_before_any_request(emulator, posthog_conn):
    from airflow.providers.common.compat.connection import get_async_connection

    async def main() -> None:
        client = await AsyncPostHogClient.open(CONN_ID, await get_async_connection(CONN_ID))
        async with client:
            with pytest.raises(
                PostHogConfigError, match="distinct_ids must be a list, got the single string"
            ):
                [row async for row in client.iter_recordings(distinct_ids="user-42")]

    asyncio.run(main())
    assert emulator.requests == []


# -- 401 and 403 name the connection ---------------------------------------------------------


def test_a_401_names_the_connection(emulator, connect):
    connect(emulator.url, api_key="phx_wrong_key")
    with pytest.raises(PostHogAuthError) as raised:
        list(PostHogHook().iter_recordings(date_from="-1d"))
    assert f"PostHog connection {CONN_ID!r}: check the personal API key" in str(raised.value)


def test_a_403_for_a_missing_scope_names_the_connection(emulator, connect):
    emulator.add_key("phx_read_only_key", scopes=("session_recording:read",), projects=("1",))
    connect(emulator.url, api_key="phx_read_only_key")
    recording_id = emulator.seed(1)[0]
    with pytest.raises(PostHogPermissionError) as raised:
        PostHogHook().delete_recording(recording_id)
    assert "session_recording:write" in str(raised.value)
    assert f"PostHog connection {CONN_ID!r}: give its personal API key the scope" in str(raised.value)


def test_a_401_through_an_operator_names_the_connection(emulator, connect):
    connect(emulator.url, api_key="phx_wrong_key")
    task = make_target("retention")
    with pytest.raises(PostHogAuthError, match=f"PostHog connection {CONN_ID!r}"):
        execute(task)


# -- rate_limit_storage without a scheme -----------------------------------------------------


def test_a_store_url_without_a_scheme_says_so(emulator, connect):
    connect(emulator.url, rate_limit_storage="localhost:6379")
    with pytest.raises(PostHogConfigError) as raised:
        list(PostHogHook().iter_recordings(date_from="-1d"))
    message = str(raised.value)
    assert (
        f"PostHog connection {CONN_ID!r}: extra.rate_limit_storage: has no scheme ('localhost:6379')"
        in message
    )
    assert "redis://" in message
    assert emulator.requests == []


# -- retention_days, literal and rendered ----------------------------------------------------


@pytest.mark.parametrize("value", [0, -3, "ninety"])
def test_retention_days_is_worded_the_same_literal_and_rendered(emulator, posthog_conn, value):
    """The literal reaches ``execute`` as written (Airflow's rule for template fields); a
    template renders it to text first. Both fail with the same sentence."""
    messages = []
    for given in (value, str(value)):
        with pytest.raises(PostHogConfigError) as raised:
            execute(PostHogRecordingRetentionOperator(task_id="r", retention_days=given))
        messages.append(str(raised.value))
    prefix = "PostHogRecordingRetentionOperator: retention_days must be an integer >= 1, got "
    assert messages == [f"{prefix}{value!r}", f"{prefix}{str(value)!r}"]
    assert emulator.requests == []
