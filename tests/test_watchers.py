"""``shared_links_asset`` for DAG authors, and the example DAG built on it, on each Airflow."""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.triggers.shared_links import PostHogSharedLinksTrigger
from airflow_provider_recordings.watchers import (
    AIRFLOW_VERSION,
    ASSET_STATE_STORE_AVAILABLE,
    ASSET_WATCHERS_AVAILABLE,
    shared_links_asset,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "example_dags" / "example_posthog_public_link_watch.py"
AIRFLOW_3 = version("apache-airflow").startswith("3.")
needs_3 = pytest.mark.skipif(not AIRFLOW_3, reason="asset watchers arrived in Airflow 3.0")
only_2 = pytest.mark.skipif(AIRFLOW_3, reason="what Airflow 2 users get")


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("example_posthog_public_link_watch_under_test", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_the_running_airflow_is_detected():
    assert AIRFLOW_VERSION[0] == int(version("apache-airflow").split(".")[0])
    assert ASSET_WATCHERS_AVAILABLE is AIRFLOW_3
    assert ASSET_STATE_STORE_AVAILABLE is (AIRFLOW_VERSION >= (3, 3))


@needs_3
def test_the_asset_carries_one_watcher_of_the_connection():
    asset = shared_links_asset("posthog_eu", poll_interval=30)
    assert asset.name == "posthog_shared_links__posthog_eu"
    [watcher] = asset.watchers
    assert watcher.name == "posthog_shared_links__posthog_eu__watcher"
    assert isinstance(watcher.trigger, PostHogSharedLinksTrigger)
    assert watcher.trigger.serialize()[1] == {"posthog_conn_id": "posthog_eu", "poll_interval": 30.0}


@needs_3
def test_names_and_extra_can_be_chosen():
    asset = shared_links_asset(name="public_links", watcher_name="poll_posthog", extra={"team": "privacy"})
    assert (asset.name, asset.watchers[0].name, asset.extra) == (
        "public_links",
        "poll_posthog",
        {"team": "privacy"},
    )
    assert asset.watchers[0].trigger.posthog_conn_id == "posthog_default"
    assert asset.watchers[0].trigger.poll_interval == 60.0


@needs_3
def test_a_bad_interval_fails_when_the_dag_is_parsed():
    with pytest.raises(PostHogConfigError, match="poll_interval"):
        shared_links_asset(poll_interval=0)


@only_2
def test_airflow_2_gets_a_clear_error_naming_the_version_needed():
    with pytest.raises(
        PostHogConfigError, match=r"needs Airflow 3\.0 or later.*Airflow 3\.3 or later"
    ) as raised:
        shared_links_asset("posthog_default")
    assert version("apache-airflow") in str(raised.value)
    assert "PostHogSharingAuditOperator" in str(raised.value)


# -- the example DAG ----------------------------------------------------------------------------


@needs_3
def test_the_example_is_scheduled_on_the_watched_asset():
    module = load_example()
    dag = module.dag
    assert dag.dag_id == "posthog_public_link_watch"
    assert {"posthog", "example"} <= set(dag.tags)
    assert [task.task_id for task in dag.tasks] == ["new_public_links", "disable_new_links"]
    assert list(dag.timetable.asset_condition.objects) == [module.NEW_PUBLIC_LINKS]
    [watcher] = module.NEW_PUBLIC_LINKS.watchers
    assert watcher.trigger.serialize()[1] == {"posthog_conn_id": "posthog_default", "poll_interval": 60.0}
    audit = dag.get_task("disable_new_links")
    assert audit.disable_shared is True
    # Asset-triggered runs have no logical date: the report path must not need one.
    assert "run_id" in audit.report_path
    assert not re.search(
        r"\b(ds|ds_nodash|ts|logical_date|execution_date|data_interval_\w+)\b", audit.report_path
    )


@only_2
def test_on_airflow_2_the_example_imports_and_defines_no_dag():
    module = load_example()
    assert not hasattr(module, "dag")
    assert not [value for value in vars(module).values() if type(value).__name__ == "DAG"]
    assert module.recording_ids_of({}) == []


def event(extra: dict[str, Any] | None) -> Any:
    return SimpleNamespace(extra=extra)


def test_the_example_reads_the_recording_ids_from_the_asset_events():
    module = load_example()
    asset_events = {
        "posthog_shared_links__posthog_default": [
            event(
                {"from_trigger": True, "payload": {"recording_id": "r1", "shared_at": "2026-05-04T09:12:44Z"}}
            ),
            event({"from_trigger": True, "payload": {"recording_id": "r2", "shared_at": None}}),
            event(
                {"from_trigger": True, "payload": {"recording_id": "r1", "shared_at": "2026-05-04T09:12:44Z"}}
            ),
            event({"note": "an event someone posted by hand"}),
            event(None),
        ]
    }
    assert module.recording_ids_of(asset_events) == ["r1", "r2"]
    assert module.recording_ids_of(None) == []
