"""The audit trail: one JSON line per selected recording, written as results arrive.

Lines are written while the run goes, so a run killed halfway still leaves a record of
every action it took. The target is a local path or any URL Airflow's
``ObjectStoragePath`` understands (``s3://…``, ``gs://…``, ``file://…``).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any


def open_for_writing(target: str, mode: str) -> IO[str]:
    """A text file to write: a local path (folders made as needed) or an object-storage URL."""
    if "://" not in target:
        path = Path(target).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open(mode, encoding="utf-8")
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    storage_path = ObjectStoragePath(target)
    storage_path.parent.mkdir(parents=True, exist_ok=True)
    return storage_path.open(mode, encoding="utf-8")  # type: ignore[no-any-return]


class AuditReport:
    """JSON Lines writer; a no-op when no ``report_path`` was configured.

    ``append`` continues the same report after a deferral.
    """

    def __init__(self, target: str | None, *, append: bool = False) -> None:
        self.target = target or None
        self._mode = "a" if append else "w"
        self.lines = 0
        self._handle: IO[str] | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> AuditReport:
        if self.target:
            self._handle = open_for_writing(self.target, self._mode)
        return self

    def write(self, **record: Any) -> None:
        if self._handle is None:
            return
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self._handle.write(line + "\n")
            # Flushed line by line: a killed run still leaves every action it took.
            self._handle.flush()
            self.lines += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
