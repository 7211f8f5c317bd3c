"""``python -m airflow_provider_recordings.testing`` as a separate process."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

CLI_KEY = "phx_cli_emulator_key"


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 15.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        if process.poll() is not None:
            pytest.fail(f"emulator exited early: {process.communicate()}")
        time.sleep(0.05)
    pytest.fail("emulator did not write its ready file")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, object], Path]]:
    ready = tmp_path / "ready.json"
    command = [
        sys.executable,
        "-m",
        "airflow_provider_recordings.testing",
        "--port",
        "0",
        "--api-key",
        CLI_KEY,
        "--project-id",
        "7",
        "--seed",
        "30",
        "--days",
        "2",
        "--ongoing",
        "2",
        "--shared",
        "3",
        "--rate-limits",
        "free",
        "--time-scale",
        "10",
        "--ready-file",
        str(ready),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process, wait_for(ready, process), ready
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serves_until_sigterm(served: tuple[subprocess.Popen[str], dict[str, object], Path]) -> None:
    process, info, ready = served
    assert info["api_key"] == CLI_KEY
    assert info["project_id"] == "7"
    assert info["pid"] == process.pid
    url = str(info["url"])
    assert url.startswith("http://127.0.0.1:")

    headers = {"Authorization": f"Bearer {CLI_KEY}"}
    listed = requests.get(f"{url}/api/projects/7/session_recordings/", headers=headers, timeout=5)
    assert listed.status_code == 200
    assert len(listed.json()["results"]) == 30
    stats = requests.get(f"{url}/_emulator/stats", timeout=5).json()
    assert (stats["recordings"], stats["ongoing"], stats["shared"]) == (30, 2, 3)
    statuses = [
        requests.get(f"{url}/api/projects/7/session_recordings/", headers=headers, timeout=5).status_code
        for _ in range(12)
    ]
    assert statuses[-1] == 429  # the free plan allows 12 lists a (scaled) minute

    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert not ready.exists()
    assert url in out
    conn_line = next(
        line for line in out.splitlines() if line.startswith("export AIRFLOW_CONN_POSTHOG_DEFAULT=")
    )
    conn = json.loads(shlex.split(conn_line)[1].split("=", 1)[1])
    assert conn == {"conn_type": "posthog", "host": url, "password": CLI_KEY, "extra": {"project_id": "7"}}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_emulator/stats", timeout=2)


def test_sigint_also_stops(served: tuple[subprocess.Popen[str], dict[str, object], Path]) -> None:
    process, _, _ = served
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=10)
    assert process.returncode == 0


def test_refuses_a_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_recordings.testing", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 2
    assert "non-loopback" in result.stderr


def run_cli(*args: str) -> str:
    """Start the command line with ``args``, read its announcement, stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_recordings.testing", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("export "):
                break
        return "\n".join(lines)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)


def test_the_connection_line_pastes_into_a_shell() -> None:
    awkward_key = 'phx_it\'s "quoted" $HOME `x`'
    out = run_cli("--api-key", awkward_key)
    line = out.splitlines()[-1]
    assert line.startswith("export AIRFLOW_CONN_POSTHOG_DEFAULT=")
    echoed = subprocess.run(
        ["bash", "-c", f'{line}\nprintf %s "$AIRFLOW_CONN_POSTHOG_DEFAULT"'],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    assert json.loads(echoed)["password"] == awkward_key


def test_a_plain_seed_gives_every_example_dag_something_to_find() -> None:
    out = run_cli("--seed", "500", "--days", "400")
    assert "seeded 500 recordings over the last 400 days:" in out
    assert "5 with a public link" in out, "1% of them"
    assert "3 user(s) with a session still ongoing" in out
    assert "5 person(s) to erase" in out
    assert "older than the 30-day retention" in out


def test_seed_extras_can_be_turned_off() -> None:
    out = run_cli("--seed", "50", "--shared", "0", "--ongoing", "0", "--persons", "0")
    assert "0 with a public link" in out
    assert "ongoing" not in out and "person(s)" not in out
