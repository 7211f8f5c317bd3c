"""An Airflow deployment as users run one, started and driven by the system tests.

PostgreSQL as the metadata database, the LocalExecutor, and every Airflow component in a
process of its own: on Airflow 3 the scheduler, the dag-processor, the triggerer and the
api-server; on Airflow 2.11 the scheduler (which parses DAGs itself), the triggerer and
the webserver. The tests talk to it as the UI does, through the REST API, and look at
what a user would look at: run and task states, the event log, task logs, extra links.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import requests

from tests.services import PostgresServer, free_port

AIRFLOW_VERSION = version("apache-airflow")
AIRFLOW_V3 = AIRFLOW_VERSION.startswith("3.")
AIRFLOW = Path(sys.executable).parent / "airflow"

#: A run that takes longer than this has hung (the slowest, a backlog across deferrals,
#: takes about a minute).
RUN_TIMEOUT = 240.0

FINISHED_RUN_STATES = {"success", "failed"}


def fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Component:
    """One Airflow process (scheduler, triggerer, ...), its command and its log."""

    name: str
    args: tuple[str, ...]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Deployment:
    """Airflow in a folder of its own, with PostgreSQL and one process per component."""

    def __init__(self, home: Path, dags_folder: Path, postgres: PostgresServer, env: dict[str, str]) -> None:
        self.home = home
        self.dags_folder = dags_folder
        self.postgres = postgres
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.logs = home / "component-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = self._environment(env)
        self.components: dict[str, Component] = {}
        self.http = requests.Session()
        self.http.trust_env = False  # no proxy between the tests and the loopback

    # -- set-up -------------------------------------------------------------------------

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and key != "AIRFLOW_HOME"
        }
        settings = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": fernet_key(),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            # Retries come quickly here; the examples leave the delay to the deployment.
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # A killed triggerer's triggers move to a new one after this long.
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONWARNINGS": "ignore",
        }
        if AIRFLOW_V3:
            settings.update(
                {
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                    "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
                    "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                    "AIRFLOW__API__BASE_URL": self.base_url,
                    "AIRFLOW__API__PORT": str(self.port),
                    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                }
            )
        else:
            settings.update(
                {
                    # The REST API with a user name and password (an admin made at start).
                    "AIRFLOW__API__AUTH_BACKENDS": "airflow.providers.fab.auth_manager.api.auth.backend.basic_auth",
                    "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",
                    "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_hex(16),
                    "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
                    "AIRFLOW__WEBSERVER__WORKERS": "1",
                    "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "2",
                    "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
                }
            )
        env.update(settings)
        env.update(extra)
        return env

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [str(AIRFLOW), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}"
            )
        return completed

    def start(self) -> Deployment:
        self.airflow("db", "migrate")
        if not AIRFLOW_V3:
            self.airflow(
                "users", "create", "--username", "admin", "--password", "admin", "--role", "Admin",
                "--firstname", "A", "--lastname", "Admin", "--email", "admin@example.com",
            )  # fmt: skip
            self.http.auth = ("admin", "admin")
        names = ("api-server", "scheduler", "dag-processor", "triggerer") if AIRFLOW_V3 else (
            "webserver", "scheduler", "triggerer",
        )  # fmt: skip
        for name in names:
            self.start_component(name)
        self._wait_for_api()
        return self

    def start_component(self, name: str) -> Component:
        args: tuple[str, ...] = (name,)
        if name == "api-server":
            args = (name, "--port", str(self.port), "--host", "127.0.0.1")
        elif name == "webserver":
            args = (name, "--port", str(self.port), "--hostname", "127.0.0.1")
        component = self.components.get(name) or Component(name, args, self.logs / f"{name}.log")
        handle = component.log.open("ab")
        component.process = subprocess.Popen(
            [str(AIRFLOW), *component.args],
            env=self.env,
            cwd=self.home,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so it can be killed whole
        )
        handle.close()
        self.components[name] = component
        return component

    def kill_component(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a component and every process it started (as a crash or OOM kill would)."""
        component = self.components[name]
        if component.process is None:
            return
        try:
            os.killpg(component.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            component.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # A component that does not stop on SIGTERM in time (a busy dag-processor on a
            # loaded machine) is killed: the tests' teardown never hangs or fails on it.
            try:
                os.killpg(component.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            component.process.wait(timeout=30)
        component.process = None

    def stop(self) -> None:
        for name in reversed(list(self.components)):
            if self.components[name].running:
                self.kill_component(name, signal.SIGTERM)
        self.http.close()

    def _wait_for_api(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        path = "/api/v2/monitor/health" if AIRFLOW_V3 else "/health"
        while time.monotonic() < deadline:
            for component in self.components.values():
                if component.process is not None and component.process.poll() is not None:
                    raise RuntimeError(f"{component.name} exited:\n{self.log_tail(component.name)}")
            try:
                if self.http.get(self.base_url + path, timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"the API did not answer within {timeout:.0f} s:\n{self.log_tail(next(iter(self.components)))}"
        )

    def log_text(self, name: str) -> str:
        return self.components[name].log.read_text(errors="replace")

    def log_tail(self, name: str, lines: int = 40) -> str:
        return "\n".join(self.log_text(name).splitlines()[-lines:])

    def component_logs(self) -> str:
        return "".join(self.log_text(name) for name in self.components)

    # -- REST API -----------------------------------------------------------------------

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v2" if AIRFLOW_V3 else f"{self.base_url}/api/v1"

    def request(self, method: str, path: str, *, expect: Iterable[int] = (200, 201), **kwargs: Any) -> Any:
        url = path if path.startswith("http") else f"{self.api}{path}"
        response = self.http.request(method, url, timeout=30, **kwargs)
        if response.status_code not in set(expect):
            raise AssertionError(f"{method} {url} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120) -> None:
        """Until the dag-processor (or scheduler) has parsed and serialized every DAG."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        found: set[str] = set()
        while time.monotonic() < deadline:
            dags = self.request("GET", "/dags", params={"limit": 100})["dags"]
            found = {dag["dag_id"] for dag in dags}
            if wanted <= found:
                return
            time.sleep(1)
        errors = self.request("GET", "/importErrors")
        raise AssertionError(
            f"DAGs not parsed in {timeout:.0f} s: missing {wanted - found}; import errors: {errors}"
        )

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.request(
            "PATCH", f"/dags/{dag_id}", params={"update_mask": "is_paused"}, json={"is_paused": paused}
        )

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, *, logical_date: str | None = None
    ) -> str:
        """Trigger a run as the UI's "Trigger" button does; returns its run id.

        Airflow 3's default is a run without a logical date (``logical_date: null``);
        Airflow 2 always gives a run one.
        """
        body: dict[str, Any] = {"conf": conf or {}}
        if AIRFLOW_V3 or logical_date is not None:
            body["logical_date"] = logical_date
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)
        return str(run["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")  # type: ignore[no-any-return]

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]  # type: ignore[no-any-return]

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float = RUN_TIMEOUT,
        *,
        while_waiting: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in FINISHED_RUN_STATES:
                return run
            if while_waiting is not None:
                while_waiting()
            time.sleep(1)
        states = self.task_states(dag_id, run_id)
        raise AssertionError(
            f"{dag_id} run {run_id} did not finish in {timeout:.0f} s (tasks: {states});\n"
            f"scheduler:\n{self.log_tail('scheduler')}\ntriggerer:\n{self.log_tail('triggerer')}"
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})[  # type: ignore[no-any-return]
            "task_instances"
        ]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        states = {}
        for ti in self.task_instances(dag_id, run_id):
            index = ti.get("map_index", -1)
            states[ti["task_id"] if index in (-1, None) else f"{ti['task_id']}[{index}]"] = ti["state"]
        return states

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")  # type: ignore[no-any-return]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.request(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"deserialize": "true"} if AIRFLOW_V3 else {"deserialize": "true", "stringify": "false"},
        )  # fmt: skip
        return entry["value"]

    def links(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        found = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links")
        return found.get("extra_links", found) if AIRFLOW_V3 else found  # type: ignore[no-any-return]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The task's log as the UI shows it."""
        if AIRFLOW_V3:
            found = self.request(
                "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
                params={"full_content": "true"}, headers={"Accept": "application/json"},
            )  # fmt: skip
            content = found["content"]
            if isinstance(content, list):
                # Structured lines: the event and every field (an exception's detail too).
                return "\n".join(
                    json.dumps(line, default=str) if isinstance(line, dict) else str(line) for line in content
                )
            return str(content)
        response = self.http.get(
            f"{self.api}/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"}, headers={"Accept": "text/plain"}, timeout=30,
        )  # fmt: skip
        return response.text

    def was_deferred(self, dag_id: str, run_id: str, task_id: str) -> bool:
        """Whether the task went through ``deferred`` in the real triggerer.

        Airflow 3 writes an event-log row for every state a task reports, deferrals
        included; Airflow 2 logs it in the task log only.
        """
        if AIRFLOW_V3:
            events = self.request(
                "GET", "/eventLogs",
                params={"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "event": "deferred", "limit": 100},
            )  # fmt: skip
            return bool(events["event_logs"])
        ti = self.task_instance(dag_id, run_id, task_id)
        return any(
            "Pausing task as DEFERRED" in self.task_log(dag_id, run_id, task_id, attempt)
            for attempt in range(1, int(ti["try_number"]) + 1)
        )

    def create_connection(self, conn_id: str, **fields: Any) -> None:
        self.request("POST", "/connections", json={"connection_id": conn_id, **fields})

    def test_connection(self, **fields: Any) -> dict[str, Any]:
        return self.request("POST", "/connections/test", json={"connection_id": "posthog_form", **fields})  # type: ignore[no-any-return]
