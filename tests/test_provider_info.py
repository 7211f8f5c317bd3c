"""Registration metadata and the connection form, as Airflow reads them.

Checked against the running Airflow itself (its ``provider_info.schema.json``, its
``ProvidersManager``), so the suite on each supported version checks that version.
"""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from packaging.utils import canonicalize_name

from airflow_provider_recordings import __version__
from airflow_provider_recordings.core.config import LIST_PLANS, build_client_config
from airflow_provider_recordings.get_provider_info import CONN_FIELDS, get_provider_info
from airflow_provider_recordings.hooks.posthog import PostHogHook


def airflow_schema(name: str) -> dict[str, Any]:
    return json.loads(files("airflow").joinpath(name).read_text())


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(instance)]


def field_errors(name: str, value: Any) -> list[str]:
    return schema_errors(CONN_FIELDS[name]["schema"], value)


# -- registration ----------------------------------------------------------------------------


def test_entry_point_is_registered():
    found = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider")
    ]
    assert [ep.load()()["package-name"] for ep in found] == ["airflow-provider-recordings"]


def test_package_name_is_the_distribution_name():
    """Airflow's discovery raises unless ``package-name`` is the canonical distribution name."""
    [found] = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_provider")
    ]
    assert get_provider_info()["package-name"] == "airflow-provider-recordings"
    assert canonicalize_name(found.dist.name) == get_provider_info()["package-name"]


def test_validates_against_the_installed_airflows_provider_info_schema():
    """The schema Airflow validates every provider's info with, at every discovery."""
    assert schema_errors(airflow_schema("provider_info.schema.json"), get_provider_info()) == []


def test_connection_type_and_asset_uris_validate_against_airflows_provider_yaml_schema():
    """The stricter schema Airflow's own providers are held to (provider.yaml): every key of
    it this provider ships, whole (the rest of that schema is about Airflow's repository)."""
    schema = airflow_schema("provider.yaml.schema.json")
    info = get_provider_info()
    for key in ("connection-types", "asset-uris", "dataset-uris", "integrations", "hooks", "triggers"):
        if key in schema["properties"] and key in info:
            assert schema_errors(schema["properties"][key], info[key]) == [], key


def test_every_listed_module_and_class_imports():
    info = get_provider_info()
    assert info["versions"] == [__version__]
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    dotted = [*info["extra-links"], info["connection-types"][0]["hook-class-name"]]
    for entry in info["asset-uris"]:
        dotted += [entry["handler"], entry["factory"], entry["to_openlineage_converter"]]
    for path in dotted:
        module, name = path.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name)), path


def test_every_operator_sensor_and_trigger_module_is_listed():
    """Airflow's check for its own providers: a module of one of these kinds that the
    provider info leaves out is missing from Airflow's registry and docs."""
    import airflow_provider_recordings as package

    info = get_provider_info()
    root = files(package)
    for section in ("operators", "sensors", "triggers"):
        listed = {module for entry in info[section] for module in entry["python-modules"]}
        on_disk = set()
        for item in root.joinpath(section).iterdir():
            if not item.name.endswith(".py") or item.name == "__init__.py":
                continue
            module = importlib.import_module(f"{package.__name__}.{section}.{item.name[:-3]}")
            base_names = {"BaseOperator", "BaseSensorOperator", "BaseTrigger", "BaseEventTrigger"}
            declares = [
                value
                for value in vars(module).values()
                if isinstance(value, type)
                and value.__module__ == module.__name__
                and "Base" not in value.__name__  # a base class to build on, not one to use
                and base_names & {base.__name__ for base in value.__mro__[1:]}
            ]
            if declares:
                on_disk.add(module.__name__)
        assert on_disk - listed == set(), section


def test_asset_uris_are_registered_for_airflow_3_and_2():
    """Airflow 3 reads only ``asset-uris``, 2.11 only ``dataset-uris``; both need
    ``schemes`` and ``handler`` or the entry is skipped without a word."""
    info = get_provider_info()
    assert info["asset-uris"] == info["dataset-uris"]
    [entry] = info["asset-uris"]
    assert entry["schemes"] == ["posthog", "posthog+http"]
    assert {"schemes", "handler", "factory", "to_openlineage_converter"} <= set(entry)


# -- the connection form -----------------------------------------------------------------------


def test_connection_type_and_declarative_fields():
    [conn] = get_provider_info()["connection-types"]
    assert conn["connection-type"] == PostHogHook.conn_type == "posthog"
    assert conn["conn-fields"] is CONN_FIELDS
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "Personal API key"
    placeholders = set(conn["ui-field-behaviour"]["placeholders"])
    assert placeholders - {"host", "password", "login", "schema", "port"} <= set(CONN_FIELDS)


def test_providers_manager_shows_every_field_and_the_layout():
    """What the running Airflow's form gets: from ``conn-fields`` on Airflow 3.2+, from the
    hook's ``get_connection_form_widgets()`` on 2.x; the same fields either way."""
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    widgets = {
        name.removeprefix("extra__posthog__")
        for name, info in manager.connection_form_widgets.items()
        if name.startswith("extra__posthog__")
    }
    assert widgets == set(CONN_FIELDS)
    behaviour = manager.field_behaviours["posthog"]
    assert behaviour["hidden_fields"] == PostHogHook.get_ui_field_behaviour()["hidden_fields"]
    assert behaviour["relabeling"] == PostHogHook.get_ui_field_behaviour()["relabeling"]


def test_legacy_form_methods_for_airflow_2():
    behaviour = PostHogHook.get_ui_field_behaviour()
    [conn] = get_provider_info()["connection-types"]
    assert behaviour == {
        "hidden_fields": conn["ui-field-behaviour"]["hidden-fields"],
        "relabeling": conn["ui-field-behaviour"]["relabeling"],
        "placeholders": conn["ui-field-behaviour"]["placeholders"],
    }
    pytest.importorskip("flask_appbuilder")
    widgets = PostHogHook.get_connection_form_widgets()
    assert list(widgets) == list(CONN_FIELDS)


def test_every_field_schema_is_valid_json_schema_with_valid_defaults_and_examples():
    for name, spec in CONN_FIELDS.items():
        assert {"label", "schema"} <= set(spec) <= {"label", "description", "schema"}, name
        schema = spec["schema"]
        jsonschema.validators.validator_for(schema).check_schema(schema)
        if "default" in schema:
            assert field_errors(name, schema["default"]) == [], name
        for example in schema.get("examples", []):
            assert field_errors(name, example) == [], name
        if "enum" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            # An enum and its type agree: null is allowed by both or by neither.
            assert ("null" in types) == (None in schema["enum"]), name


def test_required_fields_are_the_project_and_the_plan():
    """Airflow 3's form marks a field required when its type admits no null."""

    def required(schema: dict[str, Any]) -> bool:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return "null" not in types

    assert {name for name, spec in CONN_FIELDS.items() if required(spec["schema"])} == {
        "project_id",
        "rate_plan",
    }


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("project_id", ["1", "12345", "007"], [None, "", "abc", "12a", " 12", "12 ", -1, 12]),
        ("rate_plan", ["free", "paid", "enterprise"], [None, "", "gold", "Paid"]),
        ("list_rate_plan", [None, "free", "paid", "enterprise"], ["", "gold"]),
        ("rate_limit_per_minute", [None, 1, 240], [0, -5, 1.5, "240"]),
        ("rate_limit_per_hour", [None, 1, 1200], [0, -1, "1200"]),
        ("max_retry_wait", [None, 1, 2.5, 300], [0, 0.5, -1, "300"]),
        ("rate_limit_redis_conn_id", [None, "redis_default", "shared-store"], ["", "x" * 251, 5]),
        (
            "rate_limit_storage",
            [
                None,
                "redis://redis-host:6379/0",
                "rediss://redis.example.com:6380/1",
                "unix:///run/redis.sock",
            ],
            [
                "redis://:s3cret@redis-host:6379/0",
                "redis://user:s3cret@redis-host:6379/0",
                "redis://redis-host:6379/0?password=s3cret",
                "localhost:6379",
                "http://redis-host",
            ],
        ),
    ],
)
def test_field_constraints(name: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        assert field_errors(name, value) == [], (name, value)
    for value in bad:
        assert field_errors(name, value), (name, value)


def test_plans_are_the_clients_plans():
    assert CONN_FIELDS["rate_plan"]["schema"]["enum"] == list(LIST_PLANS)
    assert [p for p in CONN_FIELDS["list_rate_plan"]["schema"]["enum"] if p] == list(LIST_PLANS)


def test_a_connection_made_from_the_forms_defaults_is_valid():
    """What Airflow 3's form stores for a new connection, with only the project id typed in,
    is a connection the client accepts."""
    extra = {name: spec["schema"].get("default") for name, spec in CONN_FIELDS.items()}
    extra["project_id"] = "12345"
    config = build_client_config(conn_id="c", host=None, password="phx_x", extra=extra)
    assert config.project_id == "12345"
    assert config.rate_limits.per_minute == 240 and config.max_retry_wait == 300


def test_airflow_2_form_applies_the_same_constraints():
    """Airflow 2's form (Flask-AppBuilder) validates what the schemas of Airflow 3 say."""
    pytest.importorskip("flask_appbuilder")
    from flask import Flask
    from werkzeug.datastructures import MultiDict
    from wtforms import Form

    form_class = type("PostHogForm", (Form,), PostHogHook.get_connection_form_widgets())

    def errors(**data: str) -> set[str]:
        form = form_class(MultiDict({"project_id": "12345", **data}))
        form.validate()
        return set(form.errors)

    with Flask(__name__).test_request_context():
        assert errors() == set()
        assert errors(project_id="") == {"project_id"}
        assert errors(project_id="abc") == {"project_id"}
        assert errors(rate_plan="paid", list_rate_plan="enterprise") == set()
        assert errors(rate_plan="gold", list_rate_plan="gold") == {"rate_plan", "list_rate_plan"}
        assert errors(rate_limit_per_minute="0", rate_limit_per_hour="-1") == {
            "rate_limit_per_minute",
            "rate_limit_per_hour",
        }
        assert errors(max_retry_wait="0.5") == {"max_retry_wait"}
        assert errors(rate_limit_storage="redis://:s3cret@h:6379/0") == {"rate_limit_storage"}
        assert (
            errors(rate_limit_storage="redis://h:6379/0", rate_limit_redis_conn_id="redis_default") == set()
        )
        assert errors(rate_limit_redis_conn_id="x" * 251) == {"rate_limit_redis_conn_id"}
