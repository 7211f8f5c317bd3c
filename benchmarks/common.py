"""What every benchmark needs: an emulator in its own process, a connection, a task stand-in.

The emulator runs as a separate process (its command line, on a free loopback port) so
its CPU time and memory never mix with the client's measurements.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_provider_recordings.testing.client import EmulatorAdmin

#: Connection id every operator and hook of the benchmarks uses.
CONN_ID = "posthog_default"
CONN_ENV = f"AIRFLOW_CONN_{CONN_ID.upper()}"

#: Client-side budgets high enough that the limiter never decides a wall-time figure.
UNLIMITED_EXTRAS: dict[str, Any] = {
    "rate_limit_per_minute": 1_000_000,
    "rate_limit_per_hour": 1_000_000,
    "sharing_rate_limit_per_minute": 1_000_000,
    "sharing_rate_limit_per_hour": 1_000_000,
    "persons_delete_rate_limit_per_minute": 1_000_000,
    "persons_delete_rate_limit_per_hour": 1_000_000,
    "rate_plan": "enterprise",
}


@dataclass
class Emulator:
    """A running emulator process and the admin calls the benchmarks make to it."""

    url: str
    project_id: str
    api_key: str
    process: subprocess.Popen[bytes]
    admin: EmulatorAdmin = field(init=False)

    def __post_init__(self) -> None:
        # Seeding a million recordings takes a while: allow ten minutes per call.
        self.admin = EmulatorAdmin(self.url, timeout=600)

    def stats(self) -> dict[str, Any]:
        return self.admin.stats()

    def recordings(self) -> list[dict[str, Any]]:
        return self.admin.recordings()

    def seed(self, n: int, *, days: float, seed: int, ongoing: int = 0, shared: int = 0) -> list[str]:
        return self.admin.seed(n, days=days, seed=seed, ongoing=ongoing, shared=shared)

    def add(self, recordings: list[dict[str, Any]]) -> list[str]:
        """Add recordings field by field (start_time, end_time, distinct_id as in the API)."""
        return self.admin.add(recordings)

    def set_clock(self, moment: datetime) -> None:
        self.admin.set_clock(moment)

    def advance_clock(self, seconds: float) -> None:
        self.admin.advance_clock(seconds)

    def connection(self, **extra: Any) -> str:
        """An ``AIRFLOW_CONN_*`` value pointing at this emulator."""
        extras = {"project_id": self.project_id, **extra}
        return json.dumps(
            {"conn_type": "posthog", "host": self.url, "password": self.api_key, "extra": extras}
        )


@contextmanager
def emulator_process(*args: str, ready_timeout: float = 300.0) -> Iterator[Emulator]:
    """Start ``python -m airflow_provider_recordings.testing`` with ``args``; stop it after.

    The port is picked by the operating system (``--port 0``) and read back from the
    ready file, so parallel runs never collide and nothing polls the port.
    """
    with tempfile.TemporaryDirectory(prefix="posthog-bench-") as scratch:
        ready = Path(scratch) / "ready.json"
        errors = Path(scratch) / "stderr.txt"
        command = [
            sys.executable,
            "-m",
            "airflow_provider_recordings.testing",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            *args,
        ]
        with errors.open("wb") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + ready_timeout
            while not ready.exists():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"the emulator exited with {process.returncode}: {errors.read_text()[-2000:]}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the emulator was not ready after {ready_timeout:.0f} s")
                time.sleep(0.05)
            info = json.loads(ready.read_text())
            yield Emulator(info["url"], str(info["project_id"]), info["api_key"], process)
        finally:
            stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop one process we started: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@contextmanager
def connection(value: str) -> Iterator[None]:
    """Point the benchmarks' connection id at an emulator for the duration of a block."""
    previous = os.environ.get(CONN_ENV)
    os.environ[CONN_ENV] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CONN_ENV, None)
        else:
            os.environ[CONN_ENV] = previous


class XComRecorder:
    """Stands in for the task instance when an operator's ``execute`` is called directly."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def run_python(
    code_or_module: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 1800
) -> str:
    """Run this interpreter on ``code_or_module`` (``["-c", code]`` or ``["-m", name, ...]``).

    Returns stdout; a failure raises with the end of stderr attached.
    """
    completed = subprocess.run(
        [sys.executable, *code_or_module],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(code_or_module[:2])} exited with {completed.returncode}: {completed.stderr[-3000:]}"
        )
    return completed.stdout


def last_json_line(output: str) -> Any:
    """The JSON object a probe subprocess prints as its last line of output."""
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON result in the output: {output[-2000:]!r}")
