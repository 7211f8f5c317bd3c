"""A first run on a large project: the listing needs more than an hour of the list budget.

PostHog's list endpoint has a budget of its own (12 a minute and 60 an hour on the free
plan). Here the emulator plays the free plan in fast motion (an hour lasts ten seconds),
refuses bulk deletes, and clamps pages to 10 rows, so 900 expired recordings need 90
list pages against 60 an hour: the proportions of 100,000 expired recordings at pages of
1,000 on the free plan. A run that listed everything before acting would defer in the
middle of its listing and start it again from the top, forever. A run that walks the
listing once, acting on each page before the next, finishes; every recording is acted on
once; and the list calls stay within a few of the pages the listing has.
"""

from __future__ import annotations

import collections
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_recordings.testing import RateLimitConfig
from tests.conftest import conn_json

pytestmark = pytest.mark.airflow_run

SCALE = 360  # an hour of budget lasts ten seconds
PAGE = 10
BACKLOG = 900


def world(make_emulator):
    emulator = make_emulator(
        rate_limits=RateLimitConfig.free(time_scale=SCALE),
        bulk_delete="forbidden",
        max_page_size=PAGE,
        synthetic_playlists="absent",
    )
    now = datetime.now(UTC)
    selected = {
        emulator.add_recording(
            start_time=now - timedelta(days=100 + i % 300, minutes=i), end_time=now - timedelta(days=99)
        )["id"]
        for i in range(BACKLOG)
    }
    kept = {emulator.add_recording(start_time=now - timedelta(days=3, minutes=i))["id"] for i in range(15)}
    return emulator, selected, kept


def run_dag(airflow_cli, operation: str, emulator, report: Path):
    dags = Path(__file__).parent / "dags"
    original = airflow_cli.env["AIRFLOW__CORE__DAGS_FOLDER"]
    airflow_cli.env["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    try:
        return airflow_cli(
            "dags",
            "test",
            f"posthog_list_budget_{operation}",
            "--conf",
            json.dumps({"report_path": str(report)}),
            connection=conn_json(emulator.url, rate_limit_time_scale=SCALE, max_retry_wait=0.5),
        ).check()
    finally:
        airflow_cli.env["AIRFLOW__CORE__DAGS_FOLDER"] = original


def list_calls(emulator) -> list:
    return [r for r in emulator.requests if r.kind == "list" and r.status == 200]


def assert_walked_once(emulator, result) -> None:
    pages = math.ceil(BACKLOG / PAGE)
    lists = list_calls(emulator)
    # One extra list call at most per deferral (the page being worked is listed again),
    # and the empty page that ends the listing.
    assert len(lists) <= pages + result["deferrals"] + 2, (
        f"{len(lists)} list calls for {pages} pages and {result['deferrals']} deferrals"
    )
    assert [r for r in emulator.requests if r.status == 429] == [], "the client ran into PostHog's limits"
    assert result["deferrals"] >= 1, "the list budget never bound: the test proves nothing"


def test_retention_deletes_from_the_first_hour_and_lists_once(airflow_cli, make_emulator, tmp_path):
    emulator, doomed, kept = world(make_emulator)
    report = tmp_path / "retention.jsonl"
    run_dag(airflow_cli, "retention", emulator, report)

    assert emulator.recording_ids() == kept
    deletes = collections.Counter(
        r.path for r in emulator.requests if r.method == "DELETE" and r.status == 204
    )
    assert len(deletes) == BACKLOG and max(deletes.values()) == 1, "each expired recording deleted once"
    result = airflow_cli.xcom("posthog_list_budget_retention", "walk")
    assert result["deleted"] == BACKLOG and result["remaining"] == 0
    assert_walked_once(emulator, result)
    # Deleting started in the first budget hour, not after the whole listing.
    first_delete = next(i for i, r in enumerate(emulator.requests) if r.method == "DELETE")
    assert len([r for r in emulator.requests[:first_delete] if r.kind == "list"]) <= 2
    outcomes = [json.loads(line) for line in report.read_text().splitlines()]
    assert {line["id"] for line in outcomes if line["result"] == "deleted"} == doomed


def test_bulk_update_patches_each_recording_once(airflow_cli, make_emulator, tmp_path):
    emulator, selected, kept = world(make_emulator)
    run_dag(airflow_cli, "update", emulator, tmp_path / "update.jsonl")

    patches = collections.Counter(
        r.path for r in emulator.requests if r.method == "PATCH" and r.status == 200
    )
    assert {path.split("/")[-2] for path in patches} == selected
    assert max(patches.values()) == 1, "a recording was patched twice"
    result = airflow_cli.xcom("posthog_list_budget_update", "walk")
    assert result["updated"] == BACKLOG
    assert_walked_once(emulator, result)
    assert not any(emulator.get(i)["viewed"] for i in kept)


def test_the_sharing_scan_reads_each_recording_once(airflow_cli, make_emulator, tmp_path):
    emulator, selected, _ = world(make_emulator)
    shared = sorted(selected)[::97]
    for recording_id in shared:
        emulator.set_shared(recording_id, True)
    run_dag(airflow_cli, "audit", emulator, tmp_path / "audit.jsonl")

    reads = collections.Counter(
        r.path
        for r in emulator.requests
        if r.method == "GET" and r.path.endswith("/sharing/") and r.status == 200
    )
    assert len(reads) == BACKLOG and max(reads.values()) == 1, "each recording audited once"
    result = airflow_cli.xcom("posthog_list_budget_audit", "walk")
    assert result["shared_recording_ids"] == shared
    assert_walked_once(emulator, result)
