"""The run summary is defined once: lineage facet fields and the published JSON schema."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from airflow_provider_recordings.core.summary import RunSummary, json_schema

SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "lineage" / "PostHogRecordingsRunFacet.json"
SCHEMA_ID = (
    "https://github.com/airflow-provider-recordings/airflow-provider-recordings/blob/main/"
    "docs/lineage/PostHogRecordingsRunFacet.json"
)


def test_the_published_schema_is_the_one_generated_from_the_summary():
    # Regenerate with: python -c "...json_schema(...)" (see core/summary.py); a field added to
    # RunSummary without regenerating the schema fails here.
    assert json.loads(SCHEMA.read_text()) == json_schema(SCHEMA_ID)


def test_every_field_is_documented_and_counts_are_never_identifiers():
    for item in dataclasses.fields(RunSummary):
        assert item.metadata["doc"], item.name
        assert item.type in ("int", "bool", "str", "str | None"), item.name
    assert not {"recording_id", "distinct_id", "token", "api_key"} & {
        f.name for f in dataclasses.fields(RunSummary)
    }


def test_changed_counts_what_the_run_changed():
    assert RunSummary("retention", deleted=3, updated=2, links_disabled=1, archived=9).changed == 6
