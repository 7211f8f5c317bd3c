"""Airflow finds the provider, its connection type and the example DAGs as users would."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest

from tests.integration.conftest import DAGS_FOLDER, AirflowCli

pytestmark = pytest.mark.airflow_run

EXAMPLE_DAG_IDS = {
    "posthog_retention",
    "posthog_retention_gated",
    "posthog_sharing_audit",
    "posthog_mark_viewed",
    "posthog_wait_for_ongoing",
    "posthog_erasure_request",
    "posthog_archive_then_delete",
    # An asset watcher's DAG: Airflow 3 only (its file defines no DAG on Airflow 2).
    *(["posthog_public_link_watch"] if version("apache-airflow").startswith("3.") else []),
}


def test_providers_list_shows_the_provider(airflow_cli: AirflowCli) -> None:
    run = airflow_cli("providers", "list", "--output", "json").check()
    providers = {p["package_name"]: p for p in json.loads(run.stdout)}
    assert "airflow-provider-recordings" in providers, sorted(providers)


def test_providers_hooks_shows_the_posthog_connection_type(airflow_cli: AirflowCli) -> None:
    run = airflow_cli("providers", "hooks", "--output", "json").check()
    hooks = {h["connection_type"]: h for h in json.loads(run.stdout)}
    assert hooks["posthog"]["class"] == "airflow_provider_recordings.hooks.posthog.PostHogHook"
    assert hooks["posthog"]["package_name"] == "airflow-provider-recordings"


def test_example_dags_import_without_errors_or_requests(emulator, posthog_conn) -> None:
    """Parsing happens often, so a DAG file must not call PostHog at import time."""
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXAMPLE_DAG_IDS
    assert emulator.requests == []
    for dag_id in EXAMPLE_DAG_IDS:
        dag = bag.dags[dag_id]
        assert {"example", "posthog"} <= set(dag.tags)
        assert dag.params, f"{dag_id} has no Params"
