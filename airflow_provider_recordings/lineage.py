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
* What the run did, in a custom run facet ``posthogRecordings``: the fields of
  :class:`~airflow_provider_recordings.core.summary.RunSummary` (its JSON schema,
  ``docs/lineage/PostHogRecordingsRunFacet.json``, is generated from the same class).
  Never a recording id, a distinct id, a token or a key.
"""

from __future__ import annotations

import dataclasses
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
from airflow_provider_recordings.core.summary import RunSummary

SCHEMA_URL = (
    "https://github.com/airflow-provider-recordings/airflow-provider-recordings/blob/main/"
    "docs/lineage/PostHogRecordingsRunFacet.json#/$defs/PostHogRecordingsRunFacet"
)


def _schema_url() -> str:
    return SCHEMA_URL


#: What a PostHog recordings operator did in this run: the fields of
#: :class:`~airflow_provider_recordings.core.summary.RunSummary`, as an OpenLineage run facet.
PostHogRecordingsRunFacet = attr.make_class(
    "PostHogRecordingsRunFacet",
    {
        item.name: attr.ib(default=item.default, type=item.type)
        if item.default is not dataclasses.MISSING
        else attr.ib(type=item.type)
        for item in dataclasses.fields(RunSummary)
    },
    bases=(RunFacet,),
)
PostHogRecordingsRunFacet._get_schema = staticmethod(_schema_url)  # type: ignore[attr-defined]


def namespace_of(scheme: str, host: str, port: int) -> str:
    """The dataset namespace of a PostHog instance: its origin, the port only when not the
    scheme's default (``https://us.posthog.com``, ``http://127.0.0.1:8010``)."""
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def namespace(config: ClientConfig) -> str:
    return namespace_of(*config.origin)


def project_dataset(instance: str, project_id: str) -> Dataset:
    """The recordings of project ``project_id`` on the instance whose namespace is
    ``instance`` (:func:`namespace_of`); also what the ``posthog`` asset converter returns
    (:mod:`airflow_provider_recordings.assets`)."""
    return Dataset(
        namespace=instance,
        name=f"/api/projects/{project_id}/session_recordings",
        facets={
            "documentation": DocumentationDatasetFacet(
                description=f"Session recordings of PostHog project {project_id}"
            )
        },
    )


def recordings_dataset(config: ClientConfig) -> Dataset:
    """The project's recordings, as the dataset a run reads."""
    return project_dataset(namespace(config), config.project_id)


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


def operator_lineage(config: ClientConfig, summary: dict[str, Any]) -> OperatorLineage:
    """The lineage of one run: the recordings read, and (unless nothing changed) written."""
    known = RunSummary(
        **{item.name: summary[item.name] for item in dataclasses.fields(RunSummary) if item.name in summary}
    )
    facet = PostHogRecordingsRunFacet(**known.as_dict())
    outputs = [] if known.dry_run or not known.changed else [changed_recordings(config, known.changed)]
    return OperatorLineage(
        inputs=[recordings_dataset(config)],
        outputs=outputs,
        run_facets={"posthogRecordings": facet},
    )
