"""What a run did, in counts: the one definition behind lineage, asset events and metrics.

Its fields are the custom OpenLineage run facet ``posthogRecordings`` (built from this
class in :mod:`airflow_provider_recordings.lineage`; the JSON schema
``docs/lineage/PostHogRecordingsRunFacet.json`` is generated from it by
:func:`json_schema`, and a test keeps the two equal) and the ``extra`` of every asset
event an operator emits. Counts and flags only: never a recording id, a distinct id, a
token or a key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _doc(text: str, default: Any = 0, **schema: Any) -> Any:
    return field(default=default, metadata={"doc": text, "schema": schema})


#: What every operation is called (the facet's ``operation``).
OPERATIONS = ("retention", "erasure", "bulk_update", "sharing_audit")

#: How an erasure deleted, or how an audit found the shared recordings (the facet's ``route``).
ROUTES = (
    "person",
    "recordings",
    "mixed",
    "none",
    "shared_playlist",
    "shared_playlist+older_scan",
    "scan",
    "ids",
)

FACET_DESCRIPTION = (
    "What an airflow-provider-recordings operator did to a PostHog project's session recordings in "
    "one run. Counts only: never a recording id, a distinct id, a sharing token or an API key."
)


@dataclass(frozen=True)
class RunSummary:
    """What one run of an operator did to the recordings."""

    operation: str = field(
        metadata={"doc": "The operator's kind of work.", "schema": {"enum": list(OPERATIONS)}}
    )
    selected: int = _doc("Recordings the run selected (listed, or given by id).")
    deleted: int = _doc("Recordings the run deleted.")
    already_gone: int = _doc("Selected recordings that were already gone when deleted.")
    updated: int = _doc("Recordings the run updated (bulk update).")
    shared: int = _doc("Publicly shared recordings found (sharing audit).")
    links_disabled: int = _doc("Public links the run turned off (sharing audit).")
    failed: int = _doc("Recordings whose operation failed.")
    remaining: int = _doc("Recordings left for the next run when the run stopped early.")
    dry_run: bool = _doc("True when the run changed nothing on purpose.", False)
    cutoff: str | None = _doc(
        "Retention: recordings that ended before this moment were selected.", None, format="date-time"
    )
    route: str | None = _doc(
        "Erasure: deleted by person (PostHog's job), recording by recording, or both. Sharing audit: "
        "found through PostHog's shared playlist (and a scan of what it does not cover), by reading "
        "every selected recording, or by the explicit ids.",
        None,
        enum=[*ROUTES, None],
    )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def changed(self) -> int:
        """How many recordings the run changed."""
        return self.deleted + self.updated + self.links_disabled


_JSON_TYPES = {int: "integer", bool: "boolean", str: "string"}


def json_schema(schema_url: str) -> dict[str, Any]:
    """The JSON schema of the ``posthogRecordings`` run facet, from :class:`RunSummary`."""
    properties: dict[str, Any] = {}
    hints = {"int": int, "bool": bool, "str": str, "str | None": str}
    for item in dataclasses.fields(RunSummary):
        kind = _JSON_TYPES[hints[str(item.type)]]
        optional = str(item.type).endswith("| None")
        if item.name == "operation":
            kind = "string"
        properties[item.name] = {
            "type": [kind, "null"] if optional else kind,
            **item.metadata["schema"],
            "description": item.metadata["doc"],
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_url,
        "$defs": {
            "PostHogRecordingsRunFacet": {
                "allOf": [
                    {"$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunFacet"},
                    {
                        "type": "object",
                        "description": FACET_DESCRIPTION,
                        "properties": properties,
                        "required": ["operation"],
                    },
                ]
            }
        },
        "type": "object",
        "properties": {"posthogRecordings": {"$ref": "#/$defs/PostHogRecordingsRunFacet"}},
    }
