"""Airflow's ``ObjectStoragePath`` reaches the tests' S3 server through an ``aws`` connection
given as an AIRFLOW_CONN_ variable (``endpoint_url`` in its extra): the ``s3`` extra
(the Amazon provider and s3fs) is all it takes, on Airflow 3 and on Airflow 2."""

from __future__ import annotations

import json
import os

from tests.archive.conftest import S3_CONN_ID


def test_the_connection_is_an_aws_connection_with_the_servers_endpoint(s3_server, s3_conn):
    value = json.loads(os.environ[f"AIRFLOW_CONN_{S3_CONN_ID.upper()}"])
    assert value["conn_type"] == "aws"
    assert value["extra"]["endpoint_url"] == s3_server.endpoint_url


def test_object_storage_path_writes_and_reads_s3(s3_server, s3_bucket, s3_conn):
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path = ObjectStoragePath(f"s3://{s3_bucket}/folder/key.bin", conn_id=s3_conn)
    with path.open("wb") as handle:
        handle.write(b"written through ObjectStoragePath")
    # The server holds it (read behind Airflow's back) ...
    assert s3_server.get(s3_bucket, "folder/key.bin") == b"written through ObjectStoragePath"
    # ... and Airflow reads back what the server holds.
    s3_server.put(s3_bucket, "folder/other.bin", b"put with boto3")
    other = ObjectStoragePath(f"s3://{s3_bucket}/folder/other.bin", conn_id=s3_conn)
    assert other.read_bytes() == b"put with boto3"
    assert path.exists()
    assert path.stat()["size"] == len(b"written through ObjectStoragePath")
    assert sorted(
        p.name for p in ObjectStoragePath(f"s3://{s3_bucket}/folder/", conn_id=s3_conn).iterdir()
    ) == [
        "key.bin",
        "other.bin",
    ]
