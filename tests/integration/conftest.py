"""Real Airflow against the emulator: the example DAGs run with ``airflow dags test``.

The Airflow under test is the one of the running interpreter (scripts/test.sh runs the
suite once per supported version), driven through its command line in subprocesses,
exactly as a user would. The subprocesses get a fresh ``AIRFLOW_HOME`` with a SQLite
metadata database migrated once per session, the example DAGs as their DAGs folder, and
a ``posthog_default`` connection pointing at an emulator served from this process, so
each test can seed data before a run and inspect every request and recording after it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_recordings.testing import PostHogEmulator
from tests.conftest import API_KEY, conn_json

ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = ROOT / "example_dags"
AIRFLOW = Path(sys.executable).parent / "airflow"

#: Long enough for a slow CI machine, short enough that a hung run fails the suite.
RUN_TIMEOUT = 300


@dataclass
class AirflowRun:
    """One finished ``airflow`` command: exit code, what it printed, duration."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def check(self) -> AirflowRun:
        """Fail with the end of the output when the command failed."""
        assert self.returncode == 0, f"airflow {' '.join(self.args)} exited {self.returncode}:\n{self.tail()}"
        return self


class AirflowCli:
    """The Airflow command line in a throwaway home, plus a look into its metadata DB."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.database = home / "airflow.db"
        # Nothing from the developer's shell (another home, config overrides,
        # connections) may leak into the runs.
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and key != "AIRFLOW_HOME"
        }
        env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(DAGS_FOLDER),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{self.database}",
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
            PYTHONWARNINGS="ignore",
            # The emulator is on the loopback interface; a proxy from the environment
            # must not see (or break) that traffic.
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        self.env = env

    def __call__(
        self,
        *args: str,
        connection: str | None = None,
        timeout: float = RUN_TIMEOUT,
        extra_env: dict[str, str] | None = None,
    ) -> AirflowRun:
        env = {**self.env, **(extra_env or {})}
        if connection is not None:
            env["AIRFLOW_CONN_POSTHOG_DEFAULT"] = connection
        started = time.monotonic()
        completed = subprocess.run(
            [str(AIRFLOW), *args],
            env=env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return AirflowRun(
            args, completed.returncode, completed.stdout, completed.stderr, time.monotonic() - started
        )

    def dags_test(
        self,
        dag_id: str,
        conf: dict[str, Any],
        emulator: PostHogEmulator,
        *,
        extra_env: dict[str, str] | None = None,
    ) -> AirflowRun:
        """Run one DAG end to end against ``emulator`` with ``conf`` overriding its Params."""
        return self(
            "dags",
            "test",
            dag_id,
            "--conf",
            json.dumps(conf),
            connection=connection_for(emulator),
            extra_env=extra_env,
        )

    def xcoms(self, dag_id: str, task_id: str, key: str = "return_value") -> dict[int, Any]:
        """The task's XCom values of the DAG's latest run, by map index (-1: not mapped)."""
        with sqlite3.connect(self.database) as db:
            rows = db.execute(
                "SELECT map_index, value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = ? AND run_id = "
                "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
                (dag_id, task_id, key, dag_id),
            ).fetchall()
        return {map_index: _decode(value) for map_index, value in rows}

    def xcom(self, dag_id: str, task_id: str) -> Any:
        values = self.xcoms(dag_id, task_id)
        assert -1 in values, f"no XCom from {dag_id}.{task_id} in the latest run (found {values})"
        return values[-1]

    def task_states(self, dag_id: str) -> dict[str, str]:
        """Final state of each task (mapped tasks: one entry per map index) of the latest run."""
        with sqlite3.connect(self.database) as db:
            rows = db.execute(
                "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = "
                "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
                (dag_id, dag_id),
            ).fetchall()
        return {(task if index < 0 else f"{task}[{index}]"): state for task, index, state in rows}


def _decode(value: Any) -> Any:
    """Airflow 3 stores XComs as JSON text, Airflow 2 as JSON bytes; SQLite hands a bare
    number in a JSON column back as a number."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def connection_for(emulator: PostHogEmulator) -> str:
    """The connection a user would configure, with PostHog's default client budgets."""
    return conn_json(emulator.url)


@pytest.fixture(scope="session")
def airflow_cli(tmp_path_factory: pytest.TempPathFactory) -> AirflowCli:
    """A migrated metadata database in a fresh home, shared by the session's runs."""
    cli = AirflowCli(tmp_path_factory.mktemp("airflow-home"))
    cli("db", "migrate").check()
    return cli


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    """Where a run's audit reports go (the DAGs' ``report_dir`` Param)."""
    return tmp_path / "reports"


def assert_no_secrets(text: str, where: str, *extra: str) -> None:
    """The API key (and any other secret given) never reaches a log or a report."""
    for secret in (API_KEY, *extra):
        assert secret not in text, f"a secret ({secret[:6]}...) leaked into {where}"


def report_lines(folder: Path, pattern: str) -> list[dict[str, Any]]:
    """Every JSON line of the reports under ``folder`` whose file name matches ``pattern``."""
    files = sorted(folder.rglob(pattern))
    assert files, f"no report matching {pattern} under {folder}"
    return [json.loads(line) for path in files for line in path.read_text().splitlines() if line.strip()]
