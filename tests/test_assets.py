"""The ``posthog`` asset URIs: one asset per project, the dataset lineage names.

The normaliser is checked on its own, then through the running Airflow: Airflow 3's
``Asset`` and 2.11's ``Dataset`` find it through the ProvidersManager, as in a DAG file.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from airflow import __version__ as airflow_version
from packaging.version import Version

from airflow_provider_recordings.assets import (
    asset_uri,
    config_asset_uri,
    convert_asset_to_openlineage,
    create_asset,
    posthog_asset,
    project_of,
    recordings_asset,
    sanitize_uri,
)
from airflow_provider_recordings.core.config import build_client_config

AIRFLOW_3 = Version(airflow_version) >= Version("3.0.0")

try:
    import airflow.providers.openlineage  # noqa: F401

    HAS_OPENLINEAGE = True
except ImportError:
    HAS_OPENLINEAGE = False

needs_openlineage = pytest.mark.skipif(
    not HAS_OPENLINEAGE, reason="the OpenLineage provider is installed in the Airflow 3.3 environment only"
)


def normalise(uri: str) -> str:
    return urlunsplit(sanitize_uri(urlsplit(uri)))


# -- the normaliser ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("posthog://us.posthog.com/projects/12345/session_recordings", None),
        (
            "POSTHOG://US.PostHog.com/Projects/12345/SESSION_RECORDINGS/",
            "posthog://us.posthog.com/projects/12345/session_recordings",
        ),
        (
            "posthog://us.posthog.com:443/projects/12345/session_recordings///",
            "posthog://us.posthog.com/projects/12345/session_recordings",
        ),
        (
            "posthog://eu.posthog.com/api/projects/7/session_recordings",
            "posthog://eu.posthog.com/projects/7/session_recordings",
        ),
        (
            "posthog://us.posthog.com/projects/12345/session_recordings#fragment",
            "posthog://us.posthog.com/projects/12345/session_recordings",
        ),
        ("posthog://posthog.example.com:8443/projects/2/session_recordings", None),
        ("posthog+http://127.0.0.1:8010/projects/1/session_recordings", None),
        (
            "posthog+http://LocalHost:80/projects/1/session_recordings/",
            "posthog+http://localhost/projects/1/session_recordings",
        ),
        ("posthog+http://[::1]:8010/projects/1/session_recordings", None),
    ],
)
def test_normaliser_gives_one_spelling(given: str, normal: str | None) -> None:
    expected = normal or given
    assert normalise(given) == expected
    assert normalise(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("posthog://us.posthog.com/projects/abc/session_recordings", "project id must be a number"),
        ("posthog://us.posthog.com/projects/-1/session_recordings", "project id must be a number"),
        ("posthog://us.posthog.com/projects/12a/session_recordings", "project id must be a number"),
        ("posthog://us.posthog.com/projects//session_recordings", "must name the project"),
        ("posthog://us.posthog.com/projects/session_recordings", "project id must be a number"),
        ("posthog://us.posthog.com", "must name the project"),
        ("posthog://us.posthog.com/session_recordings", "must name the project"),
        ("posthog://us.posthog.com/projects/1", "must end in /projects/1/session_recordings"),
        ("posthog://us.posthog.com/projects/1/events", "must end in"),
        ("posthog://us.posthog.com/projects/1/session_recordings/abc", "must end in"),
        ("posthog:///projects/1/session_recordings", "host is missing"),
        ("posthog://user@us.posthog.com/projects/1/session_recordings", "credentials"),
        ("posthog://:pw@us.posthog.com/projects/1/session_recordings", "credentials"),
        ("posthog://us.posthog.com/projects/1/session_recordings?b=2", "no query"),
        ("posthog://us.posthog.com:99999/projects/1/session_recordings", "port"),
        ("posthog://us_posthog!.com/projects/1/session_recordings", "not a host name"),
        ("https://us.posthog.com/projects/1/session_recordings", "scheme must be"),
    ],
)
def test_normaliser_refuses_what_names_no_project(uri: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        normalise(uri)


def test_the_0_2_0_example_uri_still_parses_with_a_warning_and_no_lineage() -> None:
    """DAGs written for 0.2.0 used ``posthog://session-recordings/retention``: they keep
    importing (and scheduling on each other), told that the asset names no project."""
    with pytest.warns(UserWarning, match="names no PostHog instance or project"):
        assert normalise("posthog://session-recordings/retention") == "posthog://session-recordings/retention"
    with pytest.raises(ValueError, match="names no PostHog instance"):
        project_of("posthog://session-recordings/retention")


# -- building the asset --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "uri"),
    [
        (None, "posthog://us.posthog.com/projects/12345/session_recordings"),
        ("", "posthog://us.posthog.com/projects/12345/session_recordings"),
        ("eu.posthog.com", "posthog://eu.posthog.com/projects/12345/session_recordings"),
        ("https://EU.posthog.com/", "posthog://eu.posthog.com/projects/12345/session_recordings"),
        ("https://example.com/posthog", "posthog://example.com/projects/12345/session_recordings"),
        ("https://example.com:8443", "posthog://example.com:8443/projects/12345/session_recordings"),
        ("http://127.0.0.1:8010", "posthog+http://127.0.0.1:8010/projects/12345/session_recordings"),
        ("http://posthog.internal", "posthog+http://posthog.internal/projects/12345/session_recordings"),
    ],
)
def test_asset_of_a_host_and_project(host: str | None, uri: str) -> None:
    assert asset_uri(host, 12345) == uri
    assert posthog_asset(host, "12345").uri == uri
    assert create_asset(host=host, project_id=12345, extra={"team": "a"}).extra == {"team": "a"}
    config = build_client_config(conn_id="c", host=host, password="phx_x", extra={"project_id": "12345"})
    assert config_asset_uri(config) == uri


def test_asset_of_a_bad_host_or_project_raises() -> None:
    with pytest.raises(ValueError):
        posthog_asset("ftp://example.com", 1)
    with pytest.raises(ValueError, match="project id must be a number"):
        posthog_asset("eu.posthog.com", "abc")


def test_asset_of_a_connection(connect) -> None:
    connect("http://127.0.0.1:8010", project_id="42")
    assert recordings_asset().uri == "posthog+http://127.0.0.1:8010/projects/42/session_recordings"
    connect("https://EU.posthog.com", conn_id="posthog_eu", project_id="7")
    assert recordings_asset("posthog_eu").uri == "posthog://eu.posthog.com/projects/7/session_recordings"
    connect("https://eu.posthog.com", conn_id="posthog_none", project_id=None)
    with pytest.raises(ValueError, match="'posthog_none': extra.project_id"):
        recordings_asset("posthog_none")


def test_importing_the_asset_module_imports_nothing_from_airflow() -> None:
    """Airflow imports the handler's module in every process that parses DAGs."""
    code = (
        "import sys\n"
        "import airflow_provider_recordings.assets\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow' or '.core.' in m))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


# -- lineage -----------------------------------------------------------------------------------


@needs_openlineage
@pytest.mark.parametrize(
    "host",
    [
        None,
        "https://eu.posthog.com",
        "https://example.com:8443/posthog",
        "http://127.0.0.1:8010",
        "http://x.org",
    ],
)
def test_converter_gives_the_dataset_the_operators_report(host: str | None) -> None:
    from airflow_provider_recordings.lineage import recordings_dataset

    config = build_client_config(conn_id="c", host=host, password="phx_x", extra={"project_id": "12345"})
    converted = convert_asset_to_openlineage(posthog_asset(host, 12345), None)
    assert converted == recordings_dataset(config)
    assert converted.name == "/api/projects/12345/session_recordings"


@needs_openlineage
def test_openlineage_translates_the_asset_through_the_provider() -> None:
    """Airflow's OpenLineage provider finds the converter by the normalised URI's scheme."""
    from airflow.providers.common.compat.sdk import Asset
    from airflow.providers.openlineage.utils.utils import translate_airflow_asset

    dataset = translate_airflow_asset(Asset("posthog://EU.posthog.com/projects/9/session_recordings/"), None)
    assert (dataset.namespace, dataset.name) == (
        "https://eu.posthog.com",
        "/api/projects/9/session_recordings",
    )
    dataset = translate_airflow_asset(
        Asset("posthog+http://127.0.0.1:8010/projects/9/session_recordings"), None
    )
    assert dataset.namespace == "http://127.0.0.1:8010"


# -- the running Airflow -------------------------------------------------------------------------


@pytest.mark.skipif(not AIRFLOW_3, reason="Airflow 3's assets")
def test_airflow_3_asset_is_normalised_through_the_providers_manager() -> None:
    from airflow.sdk import Asset
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    # The registry DAG parsing and tasks read on Airflow 3 (the core ProvidersManager's
    # copies are deprecated there).
    manager = ProvidersManagerTaskRuntime()
    assert manager.asset_uri_handlers["posthog"] is sanitize_uri
    assert manager.asset_uri_handlers["posthog+http"] is sanitize_uri
    assert manager.asset_factories["posthog"] is create_asset
    assert manager.asset_to_openlineage_converters["posthog"] is convert_asset_to_openlineage

    asset = Asset("POSTHOG://US.posthog.com:443/projects/12345/session_recordings/")
    assert asset.uri == asset.normalized_uri == "posthog://us.posthog.com/projects/12345/session_recordings"
    assert Asset("posthog://us.posthog.com/projects/12345/session_recordings").uri == asset.uri
    with pytest.raises(ValueError, match="project id must be a number"):
        Asset("posthog://us.posthog.com/projects/abc/session_recordings")


@pytest.mark.skipif(not AIRFLOW_3, reason="Airflow 3's hook-level lineage")
def test_airflow_3_hook_lineage_builds_the_asset_with_the_factory() -> None:
    from airflow.sdk.lineage import HookLineageCollector

    asset = HookLineageCollector().create_asset(
        scheme="posthog", asset_kwargs={"host": "https://eu.posthog.com", "project_id": "5"}
    )
    assert asset is not None and asset.uri == "posthog://eu.posthog.com/projects/5/session_recordings"


@pytest.mark.skipif(AIRFLOW_3, reason="Airflow 2.11's datasets")
def test_airflow_2_dataset_is_normalised_through_the_providers_manager(monkeypatch) -> None:
    from airflow.datasets import Dataset
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.dataset_uri_handlers["posthog"] is sanitize_uri
    assert manager.dataset_factories["posthog+http"] is create_asset
    assert manager.dataset_to_openlineage_converters["posthog"] is convert_asset_to_openlineage

    dataset: Any = Dataset("POSTHOG://US.posthog.com:443/projects/12345/session_recordings/")
    assert (
        dataset.uri == dataset.normalized_uri == "posthog://us.posthog.com/projects/12345/session_recordings"
    )
    # 2.11 turns a refused URI into a warning, unless told to be strict.
    with pytest.warns(UserWarning, match="project id must be a number"):
        Dataset("posthog://us.posthog.com/projects/abc/session_recordings")
    monkeypatch.setenv("AIRFLOW__CORE__STRICT_DATASET_URI_VALIDATION", "True")
    with pytest.raises(ValueError, match="project id must be a number"):
        Dataset("posthog://us.posthog.com/projects/abc/session_recordings")
