"""OpenLineage facets: the recordings of one PostHog project as a dataset, and what a run
did to them.

Imported only when Airflow's OpenLineage provider asks an operator for its facets, so
neither DAG parsing nor a deployment without that provider ever loads it.

* The dataset follows OpenLineage's naming for a resource reached over a URL: the
  namespace is the PostHog instance (``https://us.posthog.com``; scheme, host, and port
  when not the default), the name the project's recordings resource
  (``/api/projects/12345/session_recordings``).
* Standard facets where one fits: ``documentation`` on the dataset, and
  ``outputStatistics.rowCount`` on the output: the recordings the run changed.
* What the run did, in a custom run facet ``posthogRecordings`` (schema in
  ``docs/lineage/PostHogRecordingsRunFacet.json``): counts, dry run, cutoff, route. Never
  a recording id, a distinct id, a token or a key.
"""

from __future__ import annotations

from typing import Any

import attr
from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    DocumentationDatasetFacet,
    OutputDataset,
    OutputStatisticsOutputDatasetFacet,
    RunFacet,
)
from airflow.providers.openlineage.extractors import OperatorLineage

from airflow_provider_recordings.core.config import ClientConfig

SCHEMA_URL = (
    "https://github.com/airflow-provider-recordings/airflow-provider-recordings/blob/main/"
    "docs/lineage/PostHogRecordingsRunFacet.json#/$defs/PostHogRecordingsRunFacet"
)

#: The summary keys the facet carries (all counts or flags; nothing that names a person).
FACET_FIELDS = (
    "selected",
    "deleted",
    "already_gone",
    "updated",
    "shared",
    "links_disabled",
    "failed",
    "remaining",
)


@attr.define
class PostHogRecordingsRunFacet(RunFacet):
    """What a PostHog recordings operator did in this run."""

    operation: str
    selected: int = 0
    deleted: int = 0
    already_gone: int = 0
    updated: int = 0
    shared: int = 0
    links_disabled: int = 0
    failed: int = 0
    remaining: int = 0
    dry_run: bool = False
    cutoff: str | None = None
    route: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL


def namespace(config: ClientConfig) -> str:
    scheme, host, port = config.origin
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def recordings_dataset(config: ClientConfig) -> Dataset:
    """The project's recordings, as the dataset a run reads."""
    return Dataset(
        namespace=namespace(config),
        name=config.project_path.rstrip("/"),
        facets={
            "documentation": DocumentationDatasetFacet(
                description=f"Session recordings of PostHog project {config.project_id}"
            )
        },
    )


def changed_recordings(config: ClientConfig, changed: int) -> OutputDataset:
    """The same recordings as the dataset a run wrote: ``changed`` of them deleted,
    updated or unshared."""
    read = recordings_dataset(config)
    return OutputDataset(
        namespace=read.namespace,
        name=read.name,
        facets=read.facets,
        outputFacets={"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=changed)},
    )


def operator_lineage(config: ClientConfig, operation: str, summary: dict[str, Any]) -> OperatorLineage:
    """The lineage of one run: the recordings read, and (unless nothing changed) written."""
    counts = {name: int(summary.get(name) or 0) for name in FACET_FIELDS}
    facet = PostHogRecordingsRunFacet(
        operation=operation,
        selected=counts["selected"],
        deleted=counts["deleted"],
        already_gone=counts["already_gone"],
        updated=counts["updated"],
        shared=counts["shared"],
        links_disabled=counts["links_disabled"],
        failed=counts["failed"],
        remaining=counts["remaining"],
        dry_run=bool(summary.get("dry_run")),
        cutoff=summary.get("cutoff"),
        route=summary.get("route"),
    )
    changed = facet.deleted + facet.updated + facet.links_disabled
    outputs = [] if facet.dry_run or not changed else [changed_recordings(config, changed)]
    return OperatorLineage(
        inputs=[recordings_dataset(config)],
        outputs=outputs,
        run_facets={"posthogRecordings": facet},
    )
