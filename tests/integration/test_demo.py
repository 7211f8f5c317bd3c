"""The README's first command, ``make demo``, as a new user runs it: every step succeeds
and the summary says what each did."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.airflow_run,
    pytest.mark.skipif(
        os.environ.get("PROVIDER_TEST_ENV", "airflow-3.3") != "airflow-3.3",
        reason="the demo runs on Airflow 3.3 (its own environment); once is enough",
    ),
]


def test_make_demo_runs_every_step_and_prints_what_it_did(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "POSTHOG_"))}
    env["DEMO_DIR"] = str(tmp_path / "demo")
    completed = subprocess.run(
        ["scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert "Policy: keep recordings for 90 days" in output
    for step in (
        "Retention: dry run only",
        "Retention: delete, after the dry-run gate",
        "Sharing audit: disable public links",
        "Erasure request: ",
        "Wait for ongoing: ",
    ):
        assert f"{step}" in output and "FAILED" not in output, output[-4000:]
    table = output[output.index("Step ") :]
    assert "started before " in table  # the retention runs name their cutoff
    assert "verified: yes" in table  # the erasure was verified
    assert "0 still shared" in table
    assert "0 request(s) answered 429" in table
    receipts = list((tmp_path / "demo" / "reports" / "erasure").rglob("*.json"))
    assert len(receipts) == 1
