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
    return {"type": [type_name, "null"], "default": default, **schema}


CONN_FIELDS: dict[str, dict[str, Any]] = {
    "project_id": {
        "label": "Project ID",
        # Airflow 3's form shows no placeholder for an extra field: the example goes in
        # the help text, and ``examples`` makes the field suggest it.
        "description": "Numeric id of the PostHog project, for example 12345 "
        "(Project settings, or GET /api/projects/).",
        "schema": {"type": ["string", "null"], "examples": ["12345"]},
    },
    "list_rate_plan": {
        "label": "Rate plan",
        "description": "PostHog plan whose list and snapshot budgets apply: free (12/min, 60/h), "
        "paid (60/min, 300/h) or enterprise (100/min, 400/h).",
        "schema": _optional("string", "free", enum=["free", "paid", "enterprise"]),
    },
    "rate_limit_per_minute": {
        "label": "Calls per minute",
        "description": "Client-side budget for all recordings calls (PostHog: 240).",
        "schema": _optional("integer", 240),
    },
    "rate_limit_per_hour": {
        "label": "Calls per hour",
        "description": "Client-side budget for all recordings calls (PostHog: 1200). "
        "Lower it to leave headroom for other jobs sharing the key.",
        "schema": _optional("integer", 1200),
    },
    "rate_limit_storage": {
        "label": "Shared rate store",
        "description": "Empty: each process keeps its own rate windows. A Redis URL "
        "(redis://host:6379/0, rediss:// for TLS) makes every task, worker and trigger that uses "
        "this PostHog host and key count against one budget. Needs airflow-provider-recordings[redis].",
        "schema": _optional("string", None),
    },
    "max_retry_wait": {
        "label": "Longest wait (seconds)",
        "description": "A Retry-After longer than this is not slept: the task fails (or defers) instead.",
        "schema": _optional("number", 300),
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow's ProvidersManager expects."""
    return {
        "package-name": "airflow-provider-recordings",
        "name": "PostHog session recordings",
        "description": "Retention deletes, bulk updates, sharing audits and ongoing-recording "
        "sensors for PostHog session replays.",
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
                "python-modules": [f"{PACKAGE}.triggers.ongoing", f"{PACKAGE}.triggers.resume"],
            }
        ],
        "extra-links": [f"{PACKAGE}.operators.base.PostHogRecordingsLink"],
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
                    },
                },
            }
        ],
    }
