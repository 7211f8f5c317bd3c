"""PostHog's limits on one call, each written once.

Rate budgets (calls per minute and hour) live in :mod:`~airflow_provider_recordings.core.config`;
these are the limits on what one request may carry.
"""

from __future__ import annotations

#: Recording ids per list call (the ``session_ids`` filter): keeps the URL well under 8 KB.
IDS_PER_LIST_CALL = 100

#: Distinct ids per list call (the ``distinct_ids`` filter), for the same reason.
DISTINCT_IDS_PER_LIST_CALL = 100

#: Recording ids per ``session_recordings/bulk_delete/`` call.
BULK_DELETE_MAX = 100

#: The same on older servers, which answer 400 to more.
OLD_BULK_DELETE_MAX = 20

#: Ids (or distinct ids) per ``persons/bulk_delete/`` call.
PERSONS_BULK_DELETE_MAX = 1000


def chunks(items: list[str], size: int) -> list[list[str]]:
    """``items`` in consecutive slices of at most ``size``."""
    return [items[start : start + size] for start in range(0, len(items), size)]
