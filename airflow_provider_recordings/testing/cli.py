"""Command line for running the emulator as a separate process (demos, manual DAG runs).

It prints the Airflow connection as a line to paste into a shell, says what it seeded
(and which ids each example DAG can be pointed at), and can write a ready file, so
scripts can wait for the port without polling it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from airflow_provider_recordings.testing import records
from airflow_provider_recordings.testing.emulator import PostHogEmulator, require_loopback
from airflow_provider_recordings.testing.ratelimit import RateLimitConfig
from airflow_provider_recordings.testing.timefmt import SECOND_US, to_us

RATE_LIMIT_PRESETS = ("none", "posthog", "free", "enterprise")
#: What a seeded emulator holds unless told otherwise, so every example DAG finds
#: something: a few ongoing sessions, 1% public links, a few persons.
AUTO_ONGOING = 3
AUTO_SHARED_PERCENT = 1
AUTO_PERSONS = 5


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_recordings.testing",
        description="Serve a PostHog-compatible session recordings API on a loopback port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8010, help="port; 0 picks a free one (default 8010)")
    parser.add_argument("--project-id", default="1")
    parser.add_argument("--api-key", default="phx_emulator_key", help="personal API key with every scope")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="recordings to create at start")
    parser.add_argument("--days", type=float, default=30.0, help="spread seeded recordings over D days")
    parser.add_argument(
        "--ongoing", type=int, metavar="K", help=f"seeded recordings still ongoing (default {AUTO_ONGOING})"
    )
    parser.add_argument(
        "--shared",
        type=int,
        metavar="K",
        help=f"seeded recordings with a public link (default {AUTO_SHARED_PERCENT}%% of them, at least 1)",
    )
    parser.add_argument(
        "--persons",
        type=int,
        metavar="K",
        help=f"persons for the K seeded distinct ids with most recordings (default {AUTO_PERSONS})",
    )
    parser.add_argument("--random-seed", type=int, default=0, help="seed of the generator (default 0)")
    parser.add_argument("--shape", choices=("live", "published"), default="live")
    parser.add_argument(
        "--bulk-delete", choices=("allowed", "forbidden", "absent", "not_allowed"), default="allowed"
    )
    parser.add_argument(
        "--persons-bulk-delete",
        choices=("allowed", "absent", "not_allowed"),
        default="allowed",
        help="POST persons/bulk_delete/: there, or an older server's 404/405",
    )
    parser.add_argument(
        "--synthetic-playlists",
        choices=("present", "absent"),
        default="present",
        help="the built-in synthetic-shared playlist, or an older server without it",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument(
        "--max-page-size",
        type=int,
        default=None,
        metavar="N",
        help="clamp every list page to N rows, silently, as some servers do",
    )
    parser.add_argument(
        "--rate-limits",
        choices=RATE_LIMIT_PRESETS,
        default="none",
        help="posthog: the paid plan (list and snapshots 60/min, 300/h); free: 12/min, 60/h; "
        "enterprise: 100/min, 400/h; all with 240/min, 1200/h overall",
    )
    parser.add_argument("--time-scale", type=float, default=1.0, help="shrink rate-limit windows X times")
    parser.add_argument(
        "--ready-file", type=Path, help="write {url, project_id, api_key, pid} here when listening"
    )
    return parser


def rate_limits(preset: str, time_scale: float) -> RateLimitConfig | None:
    if preset == "posthog":
        return RateLimitConfig.paid(time_scale)
    if preset == "free":
        return RateLimitConfig.free(time_scale)
    if preset == "enterprise":
        return RateLimitConfig.enterprise(time_scale)
    return None


def seed_counts(n: int, ongoing: int | None, shared: int | None, persons: int | None) -> tuple[int, int, int]:
    """(ongoing, shared, persons) for ``n`` seeded recordings: the flags, or defaults
    that give each example DAG something to find."""
    auto_shared = max(1, n * AUTO_SHARED_PERCENT // 100) if n else 0
    return (
        min(n, AUTO_ONGOING) if ongoing is None else ongoing,
        min(n, auto_shared) if shared is None else shared,
        min(n, AUTO_PERSONS) if persons is None else persons,
    )


def connection_json(emulator: PostHogEmulator) -> str:
    """The AIRFLOW_CONN_POSTHOG_DEFAULT value pointing at this emulator."""
    return json.dumps(
        {
            "conn_type": "posthog",
            "host": emulator.url,
            "password": emulator.api_key,
            "extra": {"project_id": emulator.project_id},
        }
    )


def write_ready_file(path: Path, emulator: PostHogEmulator) -> None:
    """Written atomically so a poller never reads half a file."""
    info: dict[str, Any] = {
        "url": emulator.url,
        "project_id": emulator.project_id,
        "api_key": emulator.api_key,
        "pid": os.getpid(),
    }
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(info))
    os.replace(temporary, path)


def export_line(emulator: PostHogEmulator) -> str:
    """The connection as a shell line: paste it and Airflow finds the emulator."""
    return f"export AIRFLOW_CONN_POSTHOG_DEFAULT={shlex.quote(connection_json(emulator))}"


def describe_seed(emulator: PostHogEmulator, days: float) -> list[str]:
    """What the seed created, with ids to point each example DAG at (one pass over the
    store, so a million recordings take a second)."""
    now_us = to_us(emulator.clock.now())
    retention_cutoff = now_us - records.RETENTION_DAYS * 86_400 * SECOND_US
    people = [p["distinct_ids"][0] for p in emulator.list_persons() if p["distinct_ids"]]
    owned = dict.fromkeys(people, 0)
    ongoing: set[str] = set()
    total = old = 0
    store = emulator.store
    with store.lock:
        for row in store.live_rows():
            total += 1
            old += store.starts[row] < retention_cutoff
            if records.is_ongoing(store.ends[row], now_us) or owned:
                distinct_id = records.distinct_id_of(store.view(row))
                if records.is_ongoing(store.ends[row], now_us):
                    ongoing.add(distinct_id)
                if distinct_id in owned:
                    owned[distinct_id] += 1
        shared = store.shared_count()
    lines = [
        f"seeded {total} recordings over the last {days:g} days:",
        f"  {old} older than the {records.RETENTION_DAYS}-day retention answers show (posthog_retention)",
        f"  {shared} with a public link (posthog_sharing_audit, the synthetic-shared playlist)",
    ]
    if ongoing:
        users = ", ".join(sorted(ongoing))
        lines.append(
            f"  {len(ongoing)} user(s) with a session still ongoing (posthog_wait_for_ongoing): {users}"
        )
    if owned:
        listed = ", ".join(f"{d} ({n} recordings)" for d, n in owned.items())
        lines.append(f"  {len(owned)} person(s) to erase (posthog_erasure_request): {listed}")
    return lines


def _announce(emulator: PostHogEmulator, seeded: list[str]) -> None:
    print(f"PostHog emulator listening on {emulator.url}", flush=True)
    print(f"project id: {emulator.project_id}", flush=True)
    print(f"API key: {emulator.api_key}", flush=True)
    for line in seeded:
        print(line, flush=True)
    print("connection (paste into the shell that runs Airflow):", flush=True)
    print(export_line(emulator), flush=True)


def _wait_for_signal() -> None:
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not done.wait(0.5):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        require_loopback(args.host)
        emulator = PostHogEmulator(
            project_id=args.project_id,
            api_key=args.api_key,
            response_shape=args.shape,
            bulk_delete=args.bulk_delete,
            latency=args.latency_ms / 1000,
            rate_limits=rate_limits(args.rate_limits, args.time_scale),
            host=args.host,
            port=args.port,
            persons_bulk_delete=args.persons_bulk_delete,
            synthetic_playlists=args.synthetic_playlists,
            max_page_size=args.max_page_size,
        )
        seeded: list[str] = []
        if args.seed:
            ongoing, shared, persons = seed_counts(args.seed, args.ongoing, args.shared, args.persons)
            emulator.seed(
                args.seed,
                days=args.days,
                ongoing=ongoing,
                shared=shared,
                seed=args.random_seed,
                persons=persons,
            )
            seeded = describe_seed(emulator, args.days)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    emulator.start()
    try:
        _announce(emulator, seeded)
        if args.ready_file is not None:
            write_ready_file(args.ready_file, emulator)
        _wait_for_signal()
    finally:
        emulator.stop()
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
    return 0
