"""Archiving a recording of a few hundred MB holds no more of it in memory than a line and
a buffer: peak memory, measured in a process of its own, stays flat.

Peak RSS (Linux's VmHWM of the worker process) is read at rest (imports done, the store reached), after a warm-up
archive (so that every buffer and connection the run needs exists), and after archiving
300 MB of generated content, cut into chunks anywhere, through the export writer and the
store (commit, read-back, sidecar). Nothing here depends on time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.archive.conftest import Destination

pytestmark = pytest.mark.heavy  # 300 MB archived in a worker process, for each destination

ROOT = Path(__file__).resolve().parents[2]
CONTENT_BYTES = 300 * 1000 * 1000
MIB = 1024


def measure(destination: Destination, key: str) -> dict[str, int]:
    command = [
        sys.executable,
        "-m",
        "tests.archive.worker",
        "measure",
        destination.archive_to,
        key,
        str(CONTENT_BYTES),
    ]
    if destination.conn_id:
        command.append(destination.conn_id)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_archiving_300_mb_keeps_memory_flat(destination):
    found = measure(destination, "big/big.json.gz")
    assert found["fed"] >= CONTENT_BYTES
    assert found["json_bytes"] > CONTENT_BYTES  # the window ids added to every event
    # The archive is there and verified, with the size and checksum the run reported.
    assert {"big/big.json.gz", "big/big.json.gz.sha256"} <= set(destination.list_keys())
    assert len(destination.read("big/big.json.gz")) == found["size"]
    growth = found["after_kib"] - found["before_kib"]
    above_rest = found["after_kib"] - found["rest_kib"]
    print(
        f"{destination.kind}: peak RSS +{growth} KiB over the warm-up, +{above_rest} KiB over rest: {found}"
    )
    # 300 MB went through; the process grew by a few MiB at most.
    assert growth < 16 * MIB, found
    # The target for one 300 MB recording: under 50 MB above the process at rest.
    assert above_rest < 50 * MIB, found
