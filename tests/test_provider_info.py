"""Registration metadata and the connection form, as Airflow reads them."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import pytest

from airflow_provider_recordings import __version__
from airflow_provider_recordings.get_provider_info import get_provider_info
from airflow_provider_recordings.hooks.posthog import PostHogHook


def test_entry_point_is_registered():
    found = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider")
    ]
    assert [ep.load()()["package-name"] for ep in found] == ["airflow-provider-recordings"]


def test_every_listed_module_and_class_imports():
    info = get_provider_info()
    assert info["versions"] == [__version__]
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for dotted in [*info["extra-links"], info["connection-types"][0]["hook-class-name"]]:
        module, name = dotted.rsplit(".", 1)
        assert getattr(importlib.import_module(module), name)


def test_connection_type_and_declarative_fields():
    [conn] = get_provider_info()["connection-types"]
    assert conn["connection-type"] == PostHogHook.conn_type == "posthog"
    assert "project_id" in conn["conn-fields"]
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "Personal API key"


def test_legacy_form_methods_for_airflow_2():
    behaviour = PostHogHook.get_ui_field_behaviour()
    assert "login" in behaviour["hidden_fields"]
    pytest.importorskip("flask_appbuilder")
    widgets = PostHogHook.get_connection_form_widgets()
    assert set(widgets) == set(get_provider_info()["connection-types"][0]["conn-fields"])
