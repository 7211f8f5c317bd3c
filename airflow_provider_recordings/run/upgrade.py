"""Reading what 0.2.0 carried across a deferral, for the operators that walked by key.

0.2.0 listed the whole selection, sorted it by ``"<start_time>|<id>"`` (explicit ids by
``"<index:010d>"``), and carried the key of the last finished item (``position``) and
the keys finished after it (``done_beyond``). That maps onto a walk oldest first.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_recordings.core.recordings import parse_time
from airflow_provider_recordings.core.selection import Selection
from airflow_provider_recordings.run.codec import encode
from airflow_provider_recordings.run.state import WalkPosition


def walk_from_v1(extra: dict[str, Any], selection: Selection) -> tuple[dict[str, Any], bool]:
    """The walk position of a 0.2.0 run, and the direction to walk it (by start time)."""
    position = (extra.get("position") or [None])[0]
    done_keys = [str(key) for key in extra.get("done_beyond") or []]
    if selection.recording_ids is not None:
        ids = selection.recording_ids
        index = int(position) + 1 if position is not None else 0
        beyond = [ids[int(key)] for key in done_keys if int(key) < len(ids)]
        return encode(WalkPosition(index=index, done_beyond=beyond)), False
    through = _walk_key(position) if position is not None else None
    beyond = [key.rsplit("|", 1)[-1] for key in done_keys]
    return encode(WalkPosition(done_through=through, done_beyond=beyond)), False


def _walk_key(key: str) -> list[str]:
    """0.2.0's ``"<start_time>|<id>"`` as the walk's ``[start_time, id]``."""
    start, _, recording_id = key.rpartition("|")
    started = parse_time(start)
    return [started.isoformat() if started else "", recording_id]
