"""OpenLineage events of a real DAG run: the retention example under ``airflow dags test``
with Airflow's OpenLineage provider writing its events to a file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import API_KEY
from tests.integration.conftest import AirflowCli

try:
    import airflow.providers.openlineage  # noqa: F401
except ImportError:
    pytest.skip(
        "the OpenLineage provider is installed in the Airflow 3.3 environment only", allow_module_level=True
    )

pytestmark = pytest.mark.airflow_run


def test_the_retention_example_emits_lineage_of_the_recordings(
    airflow_cli: AirflowCli, make_emulator, tmp_path: Path
):
    emulator = make_emulator()
    now = datetime.now(UTC)
    expired = {
        emulator.add_recording(start_time=now - timedelta(days=120 + i), distinct_id=f"u{i}")["id"]
        for i in range(7)
    }
    emulator.add_recording(start_time=now - timedelta(days=3))
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "provider-tests",
    }
    airflow_cli.dags_test(
        "posthog_retention", {"report_dir": str(tmp_path / "reports")}, emulator, extra_env=env
    ).check()

    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    complete = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    deleted = complete["posthog_retention.delete_expired"]
    planned = complete["posthog_retention.plan_deletions"]
    recordings = {"namespace": emulator.url, "name": "/api/projects/1/session_recordings"}
    assert {k: deleted["inputs"][0][k] for k in recordings} == recordings
    assert {k: deleted["outputs"][0][k] for k in recordings} == recordings
    assert deleted["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == len(expired)
    facet = deleted["run"]["facets"]["posthogRecordings"]
    assert (facet["operation"], facet["deleted"], facet["dry_run"]) == ("retention", len(expired), False)
    assert planned["outputs"] == []
    assert planned["run"]["facets"]["posthogRecordings"]["dry_run"] is True
    text = events_file.read_text()
    assert API_KEY not in text
    assert not any(recording_id in text for recording_id in expired)
