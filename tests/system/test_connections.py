"""The provider as the deployment's UI and REST API show it: registration, the connection
form, and the connection test behind the form's "Test" button."""

from __future__ import annotations

import json

import pytest

from airflow_provider_recordings.testing import PostHogEmulator
from tests.conftest import API_KEY, PROJECT_ID
from tests.system.deployment import AIRFLOW_V3, Deployment

pytestmark = pytest.mark.system


def test_the_provider_is_registered(deployment: Deployment) -> None:
    providers = deployment.request("GET", "/providers", params={"limit": 200})["providers"]
    ours = [p for p in providers if p["package_name"] == "airflow-provider-recordings"]
    assert len(ours) == 1
    assert "PostHog" in ours[0]["description"] or "recordings" in ours[0]["description"]


@pytest.mark.skipif(
    not AIRFLOW_V3, reason="Airflow 2's connection form is rendered by the server, not a REST API"
)
def test_the_connection_form_shows_labels_placeholders_and_the_extra_fields(deployment: Deployment) -> None:
    hooks = deployment.request("GET", f"{deployment.base_url}/ui/connections/hook_meta")
    form = next(hook for hook in hooks if hook["connection_type"] == "posthog")
    assert form["hook_name"] == "PostHog"
    standard = form["standard_fields"]
    assert standard["host"]["title"] == "PostHog URL"
    assert standard["host"]["placeholder"].startswith("https://us.posthog.com")
    assert standard["password"]["title"] == "Personal API key"
    assert standard["password"]["placeholder"] == "phx_..."
    for hidden in ("login", "port", "url_schema"):
        assert standard[hidden]["hidden"] is True
    extra = form["extra_fields"]
    assert set(extra) >= {"project_id", "list_rate_plan", "rate_limit_storage"}
    project = extra["project_id"]
    assert project["schema"]["title"] == "Project ID"
    # Airflow 3 renders no custom placeholder for an extra field; the example value is
    # in the help text under it, and the field offers it as a suggestion.
    assert "12345" in project["description"]
    assert project["schema"]["examples"] == ["12345"]


def posthog_form(
    url: str, *, password: str = API_KEY, extra: dict[str, object] | None = None
) -> dict[str, object]:
    return {
        "conn_type": "posthog",
        "host": url,
        "password": password,
        "extra": json.dumps({"project_id": PROJECT_ID} if extra is None else extra),
    }


def test_the_connection_test_button(deployment: Deployment, emulator_for_run: PostHogEmulator) -> None:
    url = emulator_for_run.url

    good = deployment.test_connection(**posthog_form(url))
    assert good["status"] is True, good
    assert good["message"] == f"Connected to PostHog project {PROJECT_ID} at {url}"

    wrong_key = deployment.test_connection(**posthog_form(url, password="phx_not_the_right_key"))
    assert wrong_key["status"] is False
    assert "401" in wrong_key["message"]
    assert "phx_not_the_right_key" not in wrong_key["message"]

    no_project = deployment.test_connection(**posthog_form(url, extra={}))
    assert no_project["status"] is False
    # Airflow tests the form under a random connection id: the message names the field,
    # never that id.
    assert no_project["message"].startswith("extra.project_id: is required"), no_project["message"]
    assert "PostHog connection '" not in no_project["message"]
