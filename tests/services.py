"""Real servers for the tests: Redis (the shared rate store) and PostgreSQL (Airflow's
metadata database in the system tests).

Each server is a throwaway child process on a free loopback port with its data in a
temporary folder, started and stopped by the tests themselves. ``scripts/services.sh``
installs the binaries on a fresh machine (``make test`` runs it); ``REDIS_SERVER`` and
``PG_BINDIR`` point at other builds.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: How long a server may take to answer after it was started.
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {START_TIMEOUT:.0f} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def redis_server_binary() -> str:
    found = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise RuntimeError("redis-server is not installed; run scripts/services.sh (make test does)")
    return found


class RedisServer:
    """A Redis server of the tests' own, which a test may stop and start again."""

    def __init__(self, folder: Path | None = None, *, password: str | None = None) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="redis-"))
        self.password = password
        self.port = free_port()
        self.log = self.folder / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--logfile", str(self.log),
            *(["--requirepass", self.password] if self.password else []),
        ]  # fmt: skip
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        _wait_for_port(self.port, self._process, "redis-server", self.log)
        return self

    def stop(self) -> None:
        """Stop the server at once (as a crashed or unreachable store looks to clients)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def keys(self) -> list[str]:
        """Every key the store holds (through the server's own command line protocol)."""
        import redis

        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            return sorted(client.keys("*"))
        finally:
            client.close()

    def flush(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()


def postgres_bindir() -> Path:
    configured = os.environ.get("PG_BINDIR")
    if configured and Path(configured, "initdb").exists():
        return Path(configured)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if versions and Path(versions[-1], "initdb").exists():
        return Path(versions[-1])
    raise RuntimeError("PostgreSQL is not installed; run scripts/services.sh (make test does)")


class PostgresServer:
    """A PostgreSQL cluster of the tests' own, with one database for Airflow.

    PostgreSQL refuses to run as root, so as root the cluster belongs to ``nobody`` and
    its commands run through ``setpriv``; its folder lives outside pytest's private
    temporary tree, which ``nobody`` cannot enter.
    """

    DATABASE = "airflow"
    USER = "airflow"

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.folder = Path(tempfile.mkdtemp(prefix="provider-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            os.chmod(self.folder, 0o755)
            shutil.chown(self.folder, "nobody")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.USER}@127.0.0.1:{self.port}/{self.DATABASE}"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            nobody = 65534
            command = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", *command]
        completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=self.folder)
        if completed.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}"
            )

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", self.USER, "--auth=trust", "-E", "UTF8", "--no-sync"
            )
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"
        )
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, self.DATABASE)
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except RuntimeError:
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)
