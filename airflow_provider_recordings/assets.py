"""The recordings of a PostHog project as an Airflow asset (a dataset on Airflow 2.11).

One asset per project, named by the PostHog instance and the project id::

    posthog://us.posthog.com/projects/12345/session_recordings
    posthog://posthog.example.com:8443/projects/2/session_recordings
    posthog+http://127.0.0.1:8010/projects/1/session_recordings

* ``posthog://`` is an instance served over HTTPS, ``posthog+http://`` one served over
  plain HTTP (a self-hosted PostHog without TLS, the bundled emulator).
* The authority is the instance's host, lower-cased, with its port unless it is the
  scheme's default (443, or 80 for ``posthog+http``). A self-hosted PostHog served under a
  path prefix is named by its host alone, as its lineage dataset is.
* The path is ``/projects/<id>/session_recordings``, the id digits only.

The provider registers the ``posthog`` and ``posthog+http`` schemes with Airflow
(``asset-uris`` on Airflow 3, ``dataset-uris`` on 2.11): :func:`sanitize_uri` normalises
a URI (``POSTHOG://US.PostHog.com/projects/12345/session_recordings/`` is the same asset
as the first one above) and refuses one that names no project; :func:`create_asset` is
the factory hook-level lineage uses; :func:`convert_asset_to_openlineage` turns the asset
into exactly the OpenLineage dataset the operators report (namespace
``https://us.posthog.com``, name ``/api/projects/12345/session_recordings``; see
:mod:`airflow_provider_recordings.lineage`), so an asset and the lineage of a run name
the same thing.

DAG authors build the asset with :func:`posthog_asset` (from a host and a project id, no
I/O) or :func:`recordings_asset` (from a connection).

Airflow imports this module in every process that parses DAGs, so it imports nothing
from Airflow or the rest of the provider until a function is called.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

if TYPE_CHECKING:
    from airflow_provider_recordings.core.config import ClientConfig

#: The schemes this module handles: HTTPS instances, and plain-HTTP ones.
SCHEME = "posthog"
HTTP_SCHEME = "posthog+http"
SCHEMES = (SCHEME, HTTP_SCHEME)

#: The resource of a project the asset stands for.
RESOURCE = "session_recordings"

#: Host of the URI that 0.2.0's retention example used (it names no instance or project).
LEGACY_HOST = "session-recordings"

_WEB_SCHEME = {SCHEME: "https", HTTP_SCHEME: "http"}
_DEFAULT_PORT = {"https": 443, "http": 80}
_DIGITS = re.compile(r"^[0-9]+$")
_HOST = re.compile(r"^[a-z0-9.\-]+$|^\[[0-9a-f:.]+\]$")


def _fail(uri: SplitResult, problem: str) -> ValueError:
    example = f"{SCHEME}://us.posthog.com/projects/12345/{RESOURCE}"
    return ValueError(f"PostHog asset URI {urlunsplit(uri)!r}: {problem} (expected e.g. {example!r})")


def _is_legacy(uri: SplitResult) -> bool:
    return uri.scheme.lower() == SCHEME and uri.netloc.lower() == LEGACY_HOST


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's normaliser for ``posthog`` URIs: the one spelling of the project's asset.

    Lower-cases the host and the path's fixed words, drops the default port, trailing
    slashes and any fragment, and accepts ``/api/projects/...`` (the lineage name) for
    ``/projects/...``. Raises :class:`ValueError` for a URI without a host, with
    credentials or a query, or whose path does not name a project by its numeric id.

    ``posthog://session-recordings/...`` (0.2.0's example) is kept as it is, with a
    warning: DAGs written for 0.2.0 still parse, and still schedule on each other, but the
    asset names no project and so has no lineage dataset.
    """
    scheme = uri.scheme.lower()
    if scheme not in _WEB_SCHEME:
        raise _fail(uri, f"the scheme must be {SCHEME} (HTTPS) or {HTTP_SCHEME}")
    if _is_legacy(uri):
        warnings.warn(
            f"The asset {urlunsplit(uri)!r} names no PostHog instance or project, so it has no "
            "lineage dataset; use airflow_provider_recordings.assets.posthog_asset(host, project_id) "
            f"({SCHEME}://<host>/projects/<id>/{RESOURCE}).",
            UserWarning,
            stacklevel=2,
        )
        return uri
    web_scheme = _WEB_SCHEME[scheme]
    if "@" in uri.netloc:
        raise _fail(uri, "credentials do not belong in an asset URI")
    host = (uri.hostname or "").lower()
    if not host:
        raise _fail(uri, "the PostHog host is missing")
    try:
        port = uri.port
    except ValueError:
        raise _fail(uri, "the port is not a number between 0 and 65535") from None
    authority = f"[{host}]" if ":" in host else host
    if not _HOST.match(authority):
        raise _fail(uri, f"{host!r} is not a host name")
    if port is not None and port != _DEFAULT_PORT[web_scheme]:
        authority = f"{authority}:{port}"
    if uri.query:
        raise _fail(uri, "an asset URI takes no query")
    parts = uri.path.strip("/").split("/")
    if parts and parts[0].lower() == "api":
        parts = parts[1:]
    if len(parts) < 2 or parts[0].lower() != "projects" or not parts[1]:
        raise _fail(uri, "the path must name the project: /projects/<id>/" + RESOURCE)
    project_id = parts[1]
    if not _DIGITS.match(project_id):
        raise _fail(uri, f"the project id must be a number, got {project_id!r}")
    if len(parts) != 3 or parts[2].lower() != RESOURCE:
        raise _fail(uri, f"the path must end in /projects/{project_id}/{RESOURCE}")
    scheme = SCHEME if web_scheme == "https" else HTTP_SCHEME
    return SplitResult(scheme, authority, f"/projects/{project_id}/{RESOURCE}", "", "")


def _origin(uri: SplitResult) -> tuple[str, str, int]:
    """(web scheme, host, port) of a normalised URI, as ``ClientConfig.origin`` gives them."""
    web_scheme = _WEB_SCHEME[uri.scheme]
    return web_scheme, uri.hostname or "", uri.port or _DEFAULT_PORT[web_scheme]


def project_of(uri: str) -> tuple[tuple[str, str, int], str]:
    """The instance's origin ``(scheme, host, port)`` and the project id an asset URI names."""
    parsed = urlsplit(uri)
    if _is_legacy(parsed):
        raise _fail(parsed, "the URI names no PostHog instance or project")
    normal = sanitize_uri(parsed)
    return _origin(normal), normal.path.split("/")[2]


def asset_uri(host: str | None, project_id: str | int) -> str:
    """The asset URI of a project, from the connection's host field (empty: PostHog US cloud;
    a bare host name: HTTPS; ``http://...``: a plain-HTTP instance) and its project id."""
    from airflow_provider_recordings.core.config import normalize_base_url, origin_of

    web_scheme, hostname, port = origin_of(normalize_base_url(host))
    authority = f"[{hostname}]" if ":" in hostname else hostname
    if port != _DEFAULT_PORT[web_scheme]:
        authority = f"{authority}:{port}"
    scheme = SCHEME if web_scheme == "https" else HTTP_SCHEME
    return urlunsplit(
        sanitize_uri(SplitResult(scheme, authority, f"/projects/{project_id}/{RESOURCE}", "", ""))
    )


def config_asset_uri(config: ClientConfig) -> str:
    """The asset URI of the project a validated connection configuration works on."""
    return asset_uri(config.base_url, config.project_id)


def create_asset(
    *, host: str | None = None, project_id: str | int, extra: dict[str, Any] | None = None
) -> Any:
    """Airflow's asset factory for the ``posthog`` schemes (hook-level lineage calls it with
    ``asset_kwargs``): the project's asset (an ``Asset`` on Airflow 3, a ``Dataset`` on 2.11)."""
    from airflow.providers.common.compat.sdk import Asset

    return Asset(uri=asset_uri(host, project_id), extra=extra or {})


def posthog_asset(host: str | None, project_id: str | int, *, extra: dict[str, Any] | None = None) -> Any:
    """The asset of a project's recordings, for a DAG's ``outlets`` or ``schedule``.

    No I/O, so it is safe at the top of a DAG file::

        RECORDINGS = posthog_asset("https://eu.posthog.com", 12345)
        # posthog://eu.posthog.com/projects/12345/session_recordings
    """
    return create_asset(host=host, project_id=project_id, extra=extra)


def recordings_asset(posthog_conn_id: str = "posthog_default", *, extra: dict[str, Any] | None = None) -> Any:
    """The asset of the project a ``posthog`` connection works on.

    It reads the connection (its host, schema, port and ``project_id``; never the key), so
    at the top of a DAG file it costs a connection lookup at every parse; where that is
    unwelcome, use :func:`posthog_asset` with the host and the project id.
    """
    from airflow.providers.common.compat.sdk import BaseHook

    from airflow_provider_recordings.core.config import normalize_base_url

    conn = BaseHook.get_connection(posthog_conn_id)
    extras = conn.extra_dejson or {}
    project_id = str(extras.get("project_id") or extras.get("extra__posthog__project_id") or "").strip()
    if not _DIGITS.match(project_id):
        raise ValueError(
            f"PostHog connection {posthog_conn_id!r}: extra.project_id must be a number, got {project_id!r}"
        )
    try:
        base_url = normalize_base_url(conn.host, schema=conn.schema, port=conn.port)
    except ValueError as exc:
        raise ValueError(f"PostHog connection {posthog_conn_id!r}: host: {exc}") from None
    return posthog_asset(base_url, project_id, extra=extra)


def convert_asset_to_openlineage(asset: Any, lineage_context: Any) -> Any:
    """Airflow's OpenLineage converter for the ``posthog`` schemes: the project's recordings
    dataset, equal to the one the operators' lineage reports."""
    from airflow_provider_recordings.lineage import namespace_of, project_dataset

    origin, project_id = project_of(asset.uri)
    return project_dataset(namespace_of(*origin), project_id)
