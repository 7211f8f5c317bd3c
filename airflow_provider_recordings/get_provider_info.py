"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point.

Airflow 3.2+ builds the connection form from ``conn-fields`` and ``ui-field-behaviour``
without importing the hook; Airflow 2.x asks the hook's own methods instead, so
:class:`~airflow_provider_recordings.hooks.posthog.PostHogHook` ships both.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_recordings import __version__

PACKAGE = "airflow_provider_recordings"


def _optional(type_name: str, default: Any = None, **schema: Any) -> dict[str, Any]:
    """A field the connection may leave out: its type admits null, so Airflow 3's form
    does not mark it required (the form requires every field whose type has no null)."""
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return {"type": [type_name, "null"], "default": default, **schema}


#: PostHog's plans, whose list and snapshot budgets differ (see ``core.config.LIST_PLANS``).
PLANS = ["free", "paid", "enterprise"]

CONN_FIELDS: dict[str, dict[str, Any]] = {
    "project_id": {
        "label": "Project ID",
        # Airflow 3's form shows no placeholder for an extra field: the example goes in
        # the help text, and ``examples`` makes the field suggest it.
        "description": "Numeric id of the PostHog project, for example 12345 "
        "(Project settings, or GET /api/projects/).",
        # No null in the type: Airflow 3's form marks the field required.
        "schema": {"type": "string", "pattern": "^[0-9]+$", "minLength": 1, "examples": ["12345"]},
    },
    "rate_plan": {
        "label": "PostHog plan",
        "description": "Your PostHog plan: its list and snapshot budgets apply to this key. "
        "free (12/min, 60/h each), paid (60/min, 300/h) or enterprise (100/min, 400/h).",
        "schema": {"type": "string", "enum": PLANS, "default": "free"},
    },
    "list_rate_plan": {
        "label": "List budget plan (override)",
        "description": "Only to give list calls another plan's budget than the PostHog plan above "
        "(older connections set only this). Empty: the PostHog plan's.",
        "schema": _optional("string", None, enum=PLANS),
    },
    "rate_limit_per_minute": {
        "label": "Calls per minute",
        "description": "Client-side budget for all recordings calls (PostHog: 240).",
        "schema": _optional("integer", 240, minimum=1),
    },
    "rate_limit_per_hour": {
        "label": "Calls per hour",
        "description": "Client-side budget for all recordings calls (PostHog: 1200). "
        "Lower it to leave headroom for other jobs sharing the key.",
        "schema": _optional("integer", 1200, minimum=1),
    },
    "rate_limit_redis_conn_id": {
        "label": "Shared rate store (Redis connection)",
        "description": "Id of an Airflow connection of type redis (host, port, password, extra db "
        "and ssl): every task, worker and trigger that uses this PostHog host and key counts "
        "against one budget kept there, and Airflow masks its password everywhere. "
        "Needs airflow-provider-recordings[redis].",
        "schema": _optional("string", None, minLength=1, maxLength=250, examples=["redis_default"]),
    },
    "rate_limit_storage": {
        "label": "Shared rate store (URL without password)",
        "description": "Instead of a Redis connection: a Redis URL without a password "
        "(redis://host:6379/0, rediss:// for TLS). A store that needs a password takes a Redis "
        "connection above, whose password Airflow masks. Empty (and no Redis connection): each "
        "process keeps its own rate windows.",
        # A Redis URL with no password in it (none before an @, none as a query parameter).
        "schema": _optional("string", None, pattern="^(?!.*password=)(redis|rediss|unix)://[^@]*$"),
    },
    "max_retry_wait": {
        "label": "Longest wait (seconds)",
        "description": "A Retry-After longer than this is not slept: the task fails (or defers) instead.",
        "schema": _optional("number", 300, minimum=1),
    },
}


#: The ``posthog`` asset URIs: one asset per project (:mod:`airflow_provider_recordings.assets`).
ASSET_URIS: dict[str, Any] = {
    "schemes": ["posthog", "posthog+http"],
    "handler": f"{PACKAGE}.assets.sanitize_uri",
    "factory": f"{PACKAGE}.assets.create_asset",
    "to_openlineage_converter": f"{PACKAGE}.assets.convert_asset_to_openlineage",
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow's ProvidersManager expects."""
    return {
        "package-name": "airflow-provider-recordings",
        "name": "PostHog session recordings",
        "description": "Retention deletes, archiving, erasure requests, bulk updates, sharing audits "
        "and ongoing-recording sensors for PostHog session replays.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "PostHog",
                "external-doc-url": "https://posthog.com/docs/api/session-recordings",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": "PostHog", "python-modules": [f"{PACKAGE}.hooks.posthog"]}],
        "operators": [
            {
                "integration-name": "PostHog",
                "python-modules": [
                    f"{PACKAGE}.operators.retention",
                    f"{PACKAGE}.operators.update",
                    f"{PACKAGE}.operators.sharing",
                    f"{PACKAGE}.operators.erasure",
                    f"{PACKAGE}.operators.archive",
                ],
            }
        ],
        "sensors": [{"integration-name": "PostHog", "python-modules": [f"{PACKAGE}.sensors.ongoing"]}],
        "triggers": [
            {
                "integration-name": "PostHog",
                "python-modules": [
                    f"{PACKAGE}.triggers.ongoing",
                    f"{PACKAGE}.triggers.resume",
                    f"{PACKAGE}.triggers.shared_links",
                ],
            }
        ],
        "extra-links": [f"{PACKAGE}.operators.base.PostHogRecordingsLink"],
        # The same entry under both keys: Airflow 3 reads only asset-uris, 2.11 only dataset-uris.
        "asset-uris": [ASSET_URIS],
        "dataset-uris": [ASSET_URIS],
        "connection-types": [
            {
                "hook-class-name": f"{PACKAGE}.hooks.posthog.PostHogHook",
                "hook-name": "PostHog",
                "connection-type": "posthog",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "PostHog URL", "password": "Personal API key"},
                    "placeholders": {
                        "host": "https://us.posthog.com (or https://eu.posthog.com, or your own)",
                        "password": "phx_...",
                        "project_id": "12345",
                        "rate_limit_redis_conn_id": "redis_default",
                        "rate_limit_storage": "redis://redis-host:6379/0",
                    },
                },
            }
        ],
    }
