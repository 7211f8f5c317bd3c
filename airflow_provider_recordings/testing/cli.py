"""Command line for running the emulator as a separate process (demos, manual DAG runs).

It prints a ready-to-use Airflow connection and can write a ready file, so scripts can
wait for the port without polling it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from airflow_provider_recordings.testing.emulator import PostHogEmulator, require_loopback
from airflow_provider_recordings.testing.ratelimit import RateLimitConfig

RATE_LIMIT_PRESETS = ("none", "posthog", "free")


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
    parser.add_argument("--ongoing", type=int, default=0, metavar="K", help="seeded recordings still ongoing")
    parser.add_argument(
        "--shared", type=int, default=0, metavar="K", help="seeded recordings with sharing on"
    )
    parser.add_argument("--random-seed", type=int, default=0, help="seed of the generator (default 0)")
    parser.add_argument("--shape", choices=("live", "published"), default="live")
    parser.add_argument(
        "--bulk-delete", choices=("allowed", "forbidden", "absent", "not_allowed"), default="allowed"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument(
        "--rate-limits",
        choices=RATE_LIMIT_PRESETS,
        default="none",
        help="posthog: paid plan (list 60/min, 300/h); free: list 12/min, 60/h; both 240/min, 1200/h overall",
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
    return None


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


def _announce(emulator: PostHogEmulator) -> None:
    print(f"PostHog emulator listening on {emulator.url}", flush=True)
    print(f"project id: {emulator.project_id}", flush=True)
    print(f"API key: {emulator.api_key}", flush=True)
    print(f"AIRFLOW_CONN_POSTHOG_DEFAULT={connection_json(emulator)}", flush=True)


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
        )
        if args.seed:
            emulator.seed(
                args.seed, days=args.days, ongoing=args.ongoing, shared=args.shared, seed=args.random_seed
            )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    emulator.start()
    try:
        _announce(emulator)
        if args.ready_file is not None:
            write_ready_file(args.ready_file, emulator)
        _wait_for_signal()
    finally:
        emulator.stop()
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
    return 0
