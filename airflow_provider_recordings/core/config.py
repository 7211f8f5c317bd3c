"""Turn an Airflow connection's fields into a validated client configuration.

Validation happens here, before the first request, so a typo in a connection fails with
an error that names the connection and the field instead of a 404 from a wrong URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_recordings.core.errors import PostHogConfigError
from airflow_provider_recordings.core.limits import BULK_DELETE_MAX

DEFAULT_HOST = "https://us.posthog.com"

#: PostHog's plan budgets of the list and snapshot actions: (per minute, per hour).
LIST_PLANS: dict[str, tuple[int, int]] = {
    "free": (12, 60),
    "paid": (60, 300),
    "enterprise": (100, 400),
}

_PROJECT_ID = re.compile(r"^[0-9]+$")
_HOST_CHARS = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")


#: Rate-limit kinds of requests: which of PostHog's throttles a call counts against.
LIST = "list"
RECORDING = "recording"
SNAPSHOTS = "snapshots"
PLAYLIST = "playlist"
SHARING = "sharing"
PERSONS = "persons"
PERSONS_DELETE = "persons_delete"

#: The buckets (PostHog's throttle classes, one window each) each kind counts in.
KIND_BUCKETS: dict[str, tuple[str, ...]] = {
    LIST: ("clickhouse_burst", "clickhouse_sustained", "listing_burst", "listing_sustained"),
    RECORDING: ("clickhouse_burst", "clickhouse_sustained"),
    SNAPSHOTS: ("clickhouse_burst", "clickhouse_sustained", "snapshots_burst", "snapshots_sustained"),
    PLAYLIST: ("clickhouse_burst", "clickhouse_sustained"),
    SHARING: ("burst", "sustained"),
    # Persons reads share only the ClickHouse burst window; deletes have their own pair.
    PERSONS: ("clickhouse_burst",),
    PERSONS_DELETE: ("persons_delete_burst", "persons_delete_sustained"),
}


@dataclass(frozen=True)
class RateLimits:
    """Client-side budgets, mirroring PostHog's per-key throttles for personal API keys.

    Every bucket is one of PostHog's throttles, one window each
    (``posthog/rate_limit.py`` and the viewsets' ``get_throttles``):

    * ``clickhouse_burst``/``_sustained`` (240 a minute, 1,200 an hour): every
      recordings call, the playlists, snapshots; persons reads count in the minute only;
    * ``listing_*`` and ``snapshots_*``: the plan's budgets of the list and snapshot
      actions (free 12/min and 60/h, paid 60 and 300, enterprise 100 and 400);
    * ``burst``/``sustained`` (480 a minute, 4,800 an hour): DRF's defaults, which the
      sharing endpoints use;
    * ``persons_delete_*`` (480 a minute, 4,800 an hour): persons deletions.

    ``time_scale`` shrinks every window (a "minute" lasts ``60 / time_scale`` seconds);
    it exists so tests and demos can run an hour of budget in seconds against the
    emulator, and is 1 for a real PostHog.
    """

    per_minute: int = 240
    per_hour: int = 1200
    list_per_minute: int = 12
    list_per_hour: int = 60
    time_scale: float = 1.0
    snapshots_per_minute: int = 12
    snapshots_per_hour: int = 60
    sharing_per_minute: int = 480
    sharing_per_hour: int = 4800
    persons_delete_per_minute: int = 480
    persons_delete_per_hour: int = 4800

    def bucket_limits(self) -> dict[str, tuple[int, float]]:
        """Every bucket's (limit, window seconds)."""
        minute, hour = 60.0 / self.time_scale, 3600.0 / self.time_scale
        return {
            "clickhouse_burst": (self.per_minute, minute),
            "clickhouse_sustained": (self.per_hour, hour),
            "listing_burst": (self.list_per_minute, minute),
            "listing_sustained": (self.list_per_hour, hour),
            "snapshots_burst": (self.snapshots_per_minute, minute),
            "snapshots_sustained": (self.snapshots_per_hour, hour),
            "burst": (self.sharing_per_minute, minute),
            "sustained": (self.sharing_per_hour, hour),
            "persons_delete_burst": (self.persons_delete_per_minute, minute),
            "persons_delete_sustained": (self.persons_delete_per_hour, hour),
        }

    def buckets_by_name(self) -> list[tuple[str, list[tuple[int, float]]]]:
        """Every bucket with its (limit, window seconds) pairs."""
        return [(name, [window]) for name, window in self.bucket_limits().items()]

    def windows(self, kind: str) -> list[tuple[int, float]]:
        """The (limit, window seconds) pairs a call of ``kind`` must fit."""
        return [window for _, windows in self.buckets(kind) for window in windows]

    def buckets(self, kind: str) -> list[tuple[str, list[tuple[int, float]]]]:
        """The buckets a call of ``kind`` counts in, each with its (limit, window seconds)."""
        limits = self.bucket_limits()
        return [(name, [limits[name]]) for name in KIND_BUCKETS.get(kind, KIND_BUCKETS[RECORDING])]


@dataclass(frozen=True)
class ClientConfig:
    """Everything the client needs to talk to one PostHog project."""

    base_url: str
    project_id: str
    api_key: str = field(repr=False)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    max_retry_wait: float = 300.0
    max_attempts: int = 6
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    bulk_delete_chunk_size: int = BULK_DELETE_MAX
    conn_id: str = "posthog_default"
    #: Where the rate windows live: None keeps them in the process; a Redis URL shares
    #: them with every process using the same host and key.
    rate_limit_storage: str | None = field(default=None, repr=False)
    #: A Redis connection holding the store's address and credentials (instead of a URL).
    rate_limit_redis_conn_id: str | None = None

    @property
    def project_path(self) -> str:
        """Path prefix of every recordings endpoint for this project."""
        return self.resource_path("session_recordings")

    def resource_path(self, resource: str) -> str:
        """Path prefix of one of the project's resources (``session_recordings``, ``persons``)."""
        return f"/api/projects/{self.project_id}/{resource}/"

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port) that every URL the client follows must share."""
        return origin_of(self.base_url)


def origin_of(url: str) -> tuple[str, str, int]:
    """Scheme, lower-cased host and explicit-or-default port of a URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


def normalize_base_url(host: str | None, *, schema: str | None = None, port: int | str | None = None) -> str:
    """Build the base URL from the connection's host field.

    Empty means PostHog US cloud; a bare host name gets ``https://`` (or the connection's
    schema). A path is kept for self-hosted installs served under a prefix.
    """
    raw = (host or "").strip()
    if not raw:
        return DEFAULT_HOST
    if "://" not in raw:
        raw = f"{(schema or 'https').strip().lower()}://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https, got {parts.scheme!r}")
    if not parts.hostname or not _HOST_CHARS.match(parts.netloc.rsplit("@", 1)[-1]):
        raise ValueError(f"{host!r} is not a valid host name or URL")
    if parts.username or parts.password:
        raise ValueError("credentials do not belong in the host; put the API key in the password field")
    if parts.query or parts.fragment:
        raise ValueError("the host must not carry a query string or fragment")
    try:
        explicit_port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {host!r}") from exc
    netloc = parts.netloc
    if port not in (None, "") and explicit_port is None:
        try:
            number = int(port)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = 0
        if not 1 <= number <= 65535:
            raise ValueError(f"port must be between 1 and 65535, got {port!r}")
        netloc = f"{netloc}:{number}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def _extra_dict(extra: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if not extra:
        return {}
    if isinstance(extra, Mapping):
        return dict(extra)
    try:
        loaded = json.loads(extra)
    except ValueError as exc:
        raise ValueError("extra is not valid JSON") from exc
    if not isinstance(loaded, dict):
        raise ValueError("extra must be a JSON object")
    return loaded


def _get_extra(extra: Mapping[str, Any], name: str) -> Any:
    """Read an extra, accepting the ``extra__posthog__<name>`` form older UIs store."""
    for key in (name, f"extra__posthog__{name}"):
        value = extra.get(key)
        if value not in (None, ""):
            return value
    return None


def _positive_number(extra: Mapping[str, Any], name: str, default: float, *, integer: bool) -> Any:
    value = _get_extra(extra, name)
    if value is None:
        return default
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"extra.{name} must be a positive number, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"extra.{name} must be a positive number, got {value!r}")
    return number


def build_client_config(
    *,
    conn_id: str,
    host: str | None,
    password: str | None,
    extra: str | Mapping[str, Any] | None,
    schema: str | None = None,
    port: int | str | None = None,
) -> ClientConfig:
    """Validate a connection's fields and return the client configuration.

    Every problem becomes a :class:`PostHogConfigError` naming the connection id and the
    field, raised before any request is made.
    """

    def fail(field_name: str, problem: str) -> PostHogConfigError:
        return PostHogConfigError(
            f"PostHog connection {conn_id!r}: {field_name}: {problem}", field=field_name, problem=problem
        )

    try:
        base_url = normalize_base_url(host, schema=schema, port=port)
    except ValueError as exc:
        raise fail("port" if str(exc).startswith("port ") else "host", str(exc)) from None

    api_key = (password or "").strip()
    if not api_key:
        raise fail(
            "password", "the personal API key is empty (create one in PostHog: Settings > Personal API keys)"
        )
    if any(ch.isspace() for ch in api_key):
        raise fail("password", "the personal API key contains white space")

    try:
        extras = _extra_dict(extra)
    except ValueError as exc:
        raise fail("extra", str(exc)) from None

    project_id = str(_get_extra(extras, "project_id") or "").strip()
    if not project_id:
        raise fail("extra.project_id", "is required (the numeric id of the PostHog project)")
    if not _PROJECT_ID.match(project_id):
        raise fail("extra.project_id", f"must be a number, got {project_id!r}")

    try:
        rate_limits = _rate_limits(extras)
        config = ClientConfig(
            base_url=base_url,
            project_id=project_id,
            api_key=api_key,
            rate_limits=rate_limits,
            max_retry_wait=_positive_number(extras, "max_retry_wait", 300.0, integer=False),
            max_attempts=_positive_number(extras, "max_attempts", 6, integer=True),
            connect_timeout=_positive_number(extras, "connect_timeout", 10.0, integer=False),
            read_timeout=_positive_number(extras, "read_timeout", 60.0, integer=False),
            bulk_delete_chunk_size=min(
                BULK_DELETE_MAX,
                _positive_number(extras, "bulk_delete_chunk_size", BULK_DELETE_MAX, integer=True),
            ),
            conn_id=conn_id,
            rate_limit_storage=_storage_url(extras),
            rate_limit_redis_conn_id=_store_conn_id(extras),
        )
    except ValueError as exc:
        message = str(exc)
        field_name = message.split(" ", 1)[0] if message.startswith("extra.") else "extra"
        raise fail(field_name, message.split(" ", 1)[1] if field_name != "extra" else message) from None
    return config


#: Schemes of ``rate_limit_storage``: Redis, with TLS, or over a Unix socket.
STORAGE_SCHEMES = ("redis", "rediss", "unix")


def _storage_url(extras: Mapping[str, Any]) -> str | None:
    """The shared rate store's URL, checked for shape here (reaching it is the hook's job).

    A password in it is refused: an extra is shown in clear on Airflow's connections page
    and by its REST API. A store that needs one is named by a Redis connection instead
    (``rate_limit_redis_conn_id``), whose password Airflow masks everywhere.
    """
    value = _get_extra(extras, "rate_limit_storage")
    if value is None:
        return None
    url = str(value).strip()
    example = "redis://host:6379/0 (rediss:// for TLS, unix:///path/to/redis.sock)"
    if "://" not in url:
        raise ValueError(
            f"extra.rate_limit_storage has no scheme ({url[:60]!r}); write it as a URL such as {example}"
        )
    parts = urlsplit(url)
    if parts.scheme not in STORAGE_SCHEMES or not (parts.hostname or parts.path):
        raise ValueError(
            "extra.rate_limit_storage must be empty (each process keeps its own rate windows) or a Redis "
            f"URL such as {example}; got a {parts.scheme!r} URL"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError("extra.rate_limit_storage has an invalid port") from None
    if parts.password:
        raise ValueError(
            "extra.rate_limit_storage holds a password, which Airflow would show in clear on the connections "
            "page and in its REST API; create a connection of type redis for the store (its password is "
            "masked) and set extra.rate_limit_redis_conn_id to its id instead"
        )
    return url


def _store_conn_id(extras: Mapping[str, Any]) -> str | None:
    value = _get_extra(extras, "rate_limit_redis_conn_id")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or any(ch.isspace() for ch in value.strip()):
        raise ValueError(f"extra.rate_limit_redis_conn_id must be a connection id, got {value!r}")
    if _get_extra(extras, "rate_limit_storage") is not None:
        raise ValueError(
            "extra.rate_limit_redis_conn_id and extra.rate_limit_storage both name a rate store; give one"
        )
    return value.strip()


def _rate_limits(extras: Mapping[str, Any]) -> RateLimits:
    plan = _plan(extras)
    plan_minute, plan_hour = LIST_PLANS[plan]
    numbers = {
        "per_minute": ("rate_limit_per_minute", 240),
        "per_hour": ("rate_limit_per_hour", 1200),
        "list_per_minute": ("list_rate_limit_per_minute", plan_minute),
        "list_per_hour": ("list_rate_limit_per_hour", plan_hour),
        "snapshots_per_minute": ("snapshot_rate_limit_per_minute", plan_minute),
        "snapshots_per_hour": ("snapshot_rate_limit_per_hour", plan_hour),
        "sharing_per_minute": ("sharing_rate_limit_per_minute", 480),
        "sharing_per_hour": ("sharing_rate_limit_per_hour", 4800),
        "persons_delete_per_minute": ("persons_delete_rate_limit_per_minute", 480),
        "persons_delete_per_hour": ("persons_delete_rate_limit_per_hour", 4800),
    }
    return RateLimits(
        **{
            field_name: _positive_number(extras, extra, default, integer=True)
            for field_name, (extra, default) in numbers.items()
        },
        time_scale=_positive_number(extras, "rate_limit_time_scale", 1.0, integer=False),
    )


def _plan(extras: Mapping[str, Any]) -> str:
    """The plan whose list and snapshot budgets apply (``rate_plan``; ``list_rate_plan``,
    its older name, still works)."""
    plans = {name: _get_extra(extras, name) for name in ("rate_plan", "list_rate_plan")}
    given = {name: str(value).strip().lower() for name, value in plans.items() if value is not None}
    for name, value in given.items():
        if value not in LIST_PLANS:
            raise ValueError(f"extra.{name} must be one of {sorted(LIST_PLANS)}, got {value!r}")
    if len(set(given.values())) > 1:
        raise ValueError(
            f"extra.rate_plan is {given['rate_plan']!r} but extra.list_rate_plan is {given['list_rate_plan']!r}; "
            "give one plan (rate_plan)"
        )
    return next(iter(given.values()), "free")


def config_from_connection(conn_id: str, conn: Any) -> ClientConfig:
    """:func:`build_client_config` from an Airflow ``Connection`` object."""
    return build_client_config(
        conn_id=conn_id,
        host=conn.host,
        password=conn.password,
        # The raw text, not ``extra_dejson``: Airflow turns broken JSON into ``{}``,
        # which would hide the real problem behind "project_id is required".
        extra=conn.extra if isinstance(conn.extra, str) else conn.extra_dejson,
        schema=conn.schema,
        port=conn.port,
    )
