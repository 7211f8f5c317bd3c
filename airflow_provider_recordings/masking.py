"""Secrets reach Airflow's log masker, or the task fails saying why.

Three kinds of secret pass through this provider: the personal API key, the password of
a shared rate store, and the access tokens of public sharing links. Each is registered
with Airflow's secret masker as soon as the provider reads it, so no log line, rendered
field or error message that Airflow shows can carry it. A provider that cannot register
a secret must not go on quietly (its next log line might print it): :func:`mask` raises.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

from airflow_provider_recordings.core.errors import PostHogConfigError

#: Where Airflow's masker lives: common-compat 1.22+ re-exports it; Airflow 3's Task SDK
#: and Airflow 2's log utilities define it.
_MASKERS = (
    ("airflow.providers.common.compat.sdk", "mask_secret"),
    ("airflow.sdk.log", "mask_secret"),
    ("airflow.utils.log.secrets_masker", "mask_secret"),
)


class PostHogSecretMaskingError(PostHogConfigError):
    """No secret masker could be found: going on could print a secret in clear."""


@cache
def _masker() -> Callable[[Any], None]:
    for module_name, name in _MASKERS:
        try:
            found = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
        if callable(found):
            return found  # type: ignore[no-any-return]
    raise PostHogSecretMaskingError(
        "cannot register secrets with Airflow's log masker (no mask_secret in "
        "apache-airflow-providers-common-compat, airflow.sdk or airflow.utils.log); refusing to go on "
        "because a secret could reach the logs. Install apache-airflow-providers-common-compat>=1.22.0."
    )


def mask(secret: str | None) -> None:
    """Register ``secret`` with Airflow's masker (nothing to do for an empty one).

    Raises :class:`PostHogSecretMaskingError` when no masker is available, and re-raises
    (wrapped) when the masker itself fails: a secret is never left unmasked silently.
    """
    if not secret:
        return
    masker = _masker()
    try:
        masker(secret)
    except Exception as exc:
        raise PostHogSecretMaskingError(
            f"Airflow's log masker refused a secret ({type(exc).__name__}: {exc}); refusing to go on"
        ) from None
