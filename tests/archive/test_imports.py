"""Importing the archive package (and the snapshots planner) is cheap: no Airflow, no
storage library, no network; the store imports ObjectStoragePath on first use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("network at import")
socket.socket.connect = refuse
socket.create_connection = refuse
import airflow_provider_recordings.archive
import airflow_provider_recordings.core.snapshots
from airflow_provider_recordings.archive import ArchiveStore
ArchiveStore("s3://bucket/prefix")  # constructing a store touches nothing either
heavy = ("airflow", "fsspec", "s3fs", "boto3", "botocore", "aiobotocore")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_importing_the_archive_package_imports_neither_airflow_nor_storage_libraries():
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
