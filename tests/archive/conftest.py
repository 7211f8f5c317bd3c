"""Fixtures of the archive tests: the S3 server running, a fresh bucket, an ``aws``
connection to it, and ``archive_to`` destinations of both kinds (a local folder and a
bucket prefix)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.operators.conftest import run_operator
from tests.services import S3Server

__all__ = ["run_operator"]  # the operators' fixture, for the archive operator's tests

#: The connection id the tests' ``aws`` connection is registered under.
S3_CONN_ID = "archive_s3"
S3_READONLY_CONN_ID = "archive_s3_readonly"


@pytest.fixture
def s3_server(s3_session: S3Server) -> Iterator[S3Server]:
    """The session's S3 server, running (again, if a test stopped it) before and after the test."""
    if not s3_session.running:
        s3_session.start()
    yield s3_session
    if not s3_session.running:
        s3_session.start()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket for this test."""
    return s3_server.create_bucket()


@pytest.fixture
def s3_conn(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow ``aws`` connection to the server (AIRFLOW_CONN_ARCHIVE_S3, endpoint_url in
    its extra); a read-only one as AIRFLOW_CONN_ARCHIVE_S3_READONLY. Returns the first id."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN_ID.upper()}", json.dumps(s3_server.connection()))
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{S3_READONLY_CONN_ID.upper()}", json.dumps(s3_server.connection(readonly=True))
    )
    return S3_CONN_ID


@dataclass
class Destination:
    """An ``archive_to`` under test, and how to reach its files behind the store's back."""

    kind: str
    archive_to: str
    conn_id: str | None
    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]
    list_keys: Callable[[], list[str]]
    server: S3Server | None = None
    bucket: str | None = None


def local_destination(root: Path) -> Destination:
    def read(key: str) -> bytes:
        return root.joinpath(key).read_bytes()

    def write(key: str, data: bytes) -> None:
        root.joinpath(key).write_bytes(data)

    def keys() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    return Destination("local", str(root), None, read, write, keys)


def s3_destination(server: S3Server, bucket: str, conn_id: str, prefix: str = "archive") -> Destination:
    def read(key: str) -> bytes:
        return server.get(bucket, f"{prefix}/{key}")

    def write(key: str, data: bytes) -> None:
        server.put(bucket, f"{prefix}/{key}", data)

    def keys() -> list[str]:
        return [key[len(prefix) + 1 :] for key in server.keys(bucket, prefix + "/")]

    return Destination("s3", f"s3://{bucket}/{prefix}", conn_id, read, write, keys, server, bucket)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.heavy)])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Destination:
    """Each test twice: archiving into a local folder, and into a bucket of the S3 server."""
    if request.param == "local":
        return local_destination(tmp_path / "archive")
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    conn_id = request.getfixturevalue("s3_conn")
    return s3_destination(server, bucket, conn_id)
