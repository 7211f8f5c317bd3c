"""Assets that PostHog events update, for DAGs scheduled on them (Airflow 3).

An asset watcher runs a trigger in Airflow's triggerer and records an asset event for
each event the trigger yields; a DAG scheduled on the asset runs on it. Asset watchers
exist from Airflow 3.0 on; the watermark that lets a restarted triggerer neither lose
nor repeat an event (the asset state store) and shared polls from 3.3 on. On Airflow 2
this module imports, and :func:`shared_links_asset` raises a clear error instead.

Example::

    from airflow.sdk import DAG

    from airflow_provider_recordings.watchers import shared_links_asset

    with DAG(dag_id="react_to_public_links", schedule=[shared_links_asset("posthog_default")]):
        ...
"""

from __future__ import annotations

import re
from typing import Any

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.triggers.shared_links import (
    DEFAULT_CONN_ID,
    DEFAULT_POLL_INTERVAL,
    PostHogSharedLinksTrigger,
)

__all__ = [
    "AIRFLOW_VERSION",
    "ASSET_STATE_STORE_AVAILABLE",
    "ASSET_WATCHERS_AVAILABLE",
    "shared_links_asset",
]


def _airflow_version() -> tuple[int, int]:
    from airflow import __version__

    major, minor = [*(int(part) for part in re.findall(r"\d+", __version__)[:2]), 0, 0][:2]
    return major, minor


#: The running Airflow's ``(major, minor)``.
AIRFLOW_VERSION = _airflow_version()

#: Asset watchers (DAGs scheduled on a trigger's events): Airflow 3.0+.
ASSET_WATCHERS_AVAILABLE = AIRFLOW_VERSION >= (3, 0)

#: The asset state store (a watermark that survives a triggerer restart) and shared
#: polls: Airflow 3.3+.
ASSET_STATE_STORE_AVAILABLE = AIRFLOW_VERSION >= (3, 3)


def shared_links_asset(
    posthog_conn_id: str = DEFAULT_CONN_ID,
    *,
    poll_interval: float = DEFAULT_POLL_INTERVAL,
    name: str | None = None,
    watcher_name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """An asset updated once per recording newly shared by a public link in PostHog.

    Its watcher runs :class:`~airflow_provider_recordings.triggers.shared_links.PostHogSharedLinksTrigger`
    on the connection; each asset event's ``extra`` is ``{"from_trigger": True,
    "payload": {"recording_id": ..., "shared_at": ...}}``. The first poll records the
    links already shared as the baseline and updates nothing.

    :param posthog_conn_id: the ``posthog`` connection (fixed when the DAG is parsed;
        the key needs ``session_recording_playlist:read`` and ``sharing_configuration:read``).
    :param poll_interval: seconds between polls (default 60). Each poll costs
        ``1 + ceil(links / 50)`` calls of the key's 1,200 an hour: 60 an hour with no
        link shared, 120 with up to 50, at the default.
    :param name: the asset's name (default ``posthog_shared_links__<conn id>``).
    :param watcher_name: the watcher's name (default: the asset's name plus ``__watcher``).
    :param extra: the asset's own ``extra``.
    :raises PostHogConfigError: on Airflow 2, which has no asset watchers (Airflow 3.0 or
        later is needed; 3.3 or later to keep the watermark across triggerer restarts).
    """
    if not ASSET_WATCHERS_AVAILABLE:
        from airflow import __version__

        raise PostHogConfigError(
            f"shared_links_asset needs Airflow 3.0 or later (asset watchers), and Airflow 3.3 or later "
            f"to keep its watermark across triggerer restarts; this is Airflow {__version__}. On Airflow 2, "
            "schedule PostHogSharingAuditOperator (example DAG posthog_sharing_audit) instead."
        )
    from airflow.sdk import Asset, AssetWatcher

    trigger = PostHogSharedLinksTrigger(posthog_conn_id, poll_interval=poll_interval)
    asset_name = name or f"posthog_shared_links__{posthog_conn_id}"
    return Asset(
        name=asset_name,
        extra=extra,
        watchers=[AssetWatcher(name=watcher_name or f"{asset_name}__watcher", trigger=trigger)],
    )
