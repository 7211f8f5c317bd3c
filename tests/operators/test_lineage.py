"""OpenLineage facets and asset events of the operators' runs.

The facets need Airflow's OpenLineage provider, installed in the Airflow 3.3 test
environment; the Airflow 2.11 environment runs without it, where nothing may change.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_recordings.operators.retention import PostHogRecordingRetentionOperator
from airflow_provider_recordings.operators.sharing import PostHogSharingAuditOperator
from airflow_provider_recordings.operators.update import PostHogBulkUpdateRecordingsOperator
from tests.conftest import API_KEY
from tests.operators.conftest import XComRecorder

try:
    import airflow.providers.openlineage  # noqa: F401

    HAS_OPENLINEAGE = True
except ImportError:
    HAS_OPENLINEAGE = False

needs_openlineage = pytest.mark.skipif(
    not HAS_OPENLINEAGE, reason="the OpenLineage provider is installed in the Airflow 3.3 environment only"
)


def seed(emulator: Any, expired: int = 5, fresh: int = 3) -> set[str]:
    now = datetime.now(UTC)
    old = {
        emulator.add_recording(start_time=now - timedelta(days=200 + i), distinct_id=f"u{i}")["id"]
        for i in range(expired)
    }
    for i in range(fresh):
        emulator.add_recording(start_time=now - timedelta(days=1 + i), distinct_id=f"f{i}")
    return old


def execute(operator: Any, **context: Any) -> dict[str, Any]:
    return operator.execute({"ti": XComRecorder(), "data_interval_end": datetime.now(UTC), **context})


def as_json(lineage: Any) -> dict[str, Any]:
    from openlineage.client.serde import Serde

    return {
        "inputs": [json.loads(Serde.to_json(d)) for d in lineage.inputs],
        "outputs": [json.loads(Serde.to_json(d)) for d in lineage.outputs],
        "run_facets": {k: json.loads(Serde.to_json(v)) for k, v in lineage.run_facets.items()},
    }


@pytest.mark.heavy  # a fresh interpreter imports Airflow
def test_importing_the_operators_never_imports_openlineage():
    """DAG files import the operators at every parse: lineage must cost nothing there."""
    code = (
        "import sys\n"
        "import airflow.providers.common.compat.sdk\n"
        "before = set(sys.modules)\n"
        "import airflow_provider_recordings.operators.retention, airflow_provider_recordings.operators.erasure\n"
        "import airflow_provider_recordings.operators.update, airflow_provider_recordings.operators.sharing\n"
        "import airflow_provider_recordings.sensors.ongoing\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if 'openlineage' in m or m == 'airflow_provider_recordings.lineage'))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip().splitlines()[-1] == "[]"


@needs_openlineage
def test_a_retention_run_reports_the_recordings_it_read_and_deleted(emulator, posthog_conn):
    expired = seed(emulator)
    operator = PostHogRecordingRetentionOperator(task_id="retention", retention_days=90)
    result = execute(operator)

    lineage = as_json(operator.get_openlineage_facets_on_complete(None))
    expected = {"namespace": emulator.url, "name": "/api/projects/1/session_recordings"}
    assert {k: lineage["inputs"][0][k] for k in ("namespace", "name")} == expected
    [output] = lineage["outputs"]
    assert {k: output[k] for k in ("namespace", "name")} == expected
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == len(expired)
    assert output["facets"]["documentation"]["description"] == "Session recordings of PostHog project 1"
    facet = lineage["run_facets"]["posthogRecordings"]
    assert facet["operation"] == "retention"
    assert facet["selected"] == facet["deleted"] == result["deleted"] == len(expired)
    assert facet["cutoff"] == result["cutoff"] and facet["dry_run"] is False
    assert facet["_schemaURL"].endswith("PostHogRecordingsRunFacet.json#/$defs/PostHogRecordingsRunFacet")
    text = json.dumps(lineage)
    assert API_KEY not in text
    assert not any(recording_id in text for recording_id in expired)


@needs_openlineage
def test_a_dry_run_writes_nothing(emulator, posthog_conn):
    seed(emulator)
    operator = PostHogRecordingRetentionOperator(task_id="plan", retention_days=90, dry_run=True)
    execute(operator)
    lineage = as_json(operator.get_openlineage_facets_on_complete(None))
    assert lineage["outputs"] == []
    assert lineage["run_facets"]["posthogRecordings"]["dry_run"] is True


@needs_openlineage
def test_updates_and_sharing_audits(emulator, posthog_conn):
    ids = sorted(seed(emulator, expired=4, fresh=0))
    emulator.set_shared(ids[0], True)
    update = PostHogBulkUpdateRecordingsOperator(task_id="update", recording_ids=ids, update={"viewed": True})
    execute(update)
    facet = as_json(update.get_openlineage_facets_on_complete(None))["run_facets"]["posthogRecordings"]
    assert (facet["operation"], facet["updated"]) == ("bulk_update", 4)
    audit = PostHogSharingAuditOperator(task_id="audit", recording_ids=ids, disable_shared=True)
    execute(audit)
    lineage = as_json(audit.get_openlineage_facets_on_complete(None))
    facet = lineage["run_facets"]["posthogRecordings"]
    assert (facet["operation"], facet["shared"], facet["links_disabled"]) == ("sharing_audit", 1, 1)
    assert lineage["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 1


@needs_openlineage
def test_a_failed_run_reports_what_it_did(emulator, posthog_conn):
    seed(emulator, expired=3)
    operator = PostHogRecordingRetentionOperator(task_id="retention", retention_days=90, max_deletions=1)
    with pytest.raises(Exception, match="max_deletions"):
        execute(operator)
    lineage = operator.get_openlineage_facets_on_failure(None)
    assert as_json(lineage)["outputs"] == []


def test_outlets_carry_the_runs_counts(emulator, posthog_conn):
    from airflow.providers.common.compat.assets import Asset

    expired = seed(emulator)
    done = Asset("posthog://session-recordings/retention")
    events: dict[Any, Any] = {}

    class OutletEvents(dict):  # the part of Airflow's accessors an operator touches
        def __missing__(self, key: Any) -> Any:
            self[key] = SimpleNamespace(extra={})
            return self[key]

    events = OutletEvents()
    operator = PostHogRecordingRetentionOperator(task_id="retention", retention_days=90, outlets=[done])
    execute(operator, outlet_events=events)
    extra = events[done].extra
    assert extra["operation"] == "retention" and extra["deleted"] == len(expired)
    assert not any(recording_id in json.dumps(extra) for recording_id in expired)
