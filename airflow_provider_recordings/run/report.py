"""Where a run writes its proof: the JSON Lines audit report and JSON receipts.

Writing is part of the run, not an afterthought. The destination (a local path or any
URL Airflow's ``ObjectStoragePath`` understands: ``s3://…``, ``gs://…``, ``file://…``) is
opened before the first request that changes anything, so a path that cannot be written
fails the task at once, naming the parameter, with nothing changed in PostHog. Lines are
written and flushed as results arrive (and a ``requested`` line before each change goes
out), so a run killed halfway still leaves a record of every request it sent.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from airflow_provider_recordings.core.errors import PostHogConfigError, PostHogOutputError

#: Ending of the file a local JSON document is written to before it replaces the old one.
PARTIAL = ".partial"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return "a file is in the way of a folder on that path"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"{type(exc).__name__}: {exc}"


def open_for_writing(parameter: str, target: str, mode: str, *, suffix: str = "") -> IO[str]:
    """A text file to write: a local path (folders made as needed) or an object-storage URL.

    Any failure is a :class:`PostHogConfigError` naming ``parameter``: this is called
    before the run changes anything, so the task fails at once and is not retried.
    ``suffix`` opens a local file of that name beside ``target`` instead (messages still
    name ``target``).
    """
    try:
        if "://" not in target:
            path = Path(target + suffix).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            return path.open(mode, encoding="utf-8")
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        storage_path = ObjectStoragePath(target)
        storage_path.parent.mkdir(parents=True, exist_ok=True)
        return storage_path.open(mode, encoding="utf-8")  # type: ignore[no-any-return]
    except Exception as exc:
        raise PostHogConfigError(
            f"{parameter}: cannot write {target!r} ({_describe(exc)}); choose a path whose folder "
            "exists or can be created, and that this worker may write"
        ) from exc


class AuditReport:
    """JSON Lines writer; a no-op when no path was configured.

    ``append`` continues the same report after a deferral. :meth:`open` proves the target
    writable; a write that fails later raises :class:`PostHogOutputError`.
    """

    def __init__(self, target: str | None, *, parameter: str = "report_path", append: bool = False) -> None:
        self.target = target or None
        self.parameter = parameter
        self._mode = "a" if append else "w"
        self.lines = 0
        self._handle: IO[str] | None = None
        self._lock = threading.Lock()
        #: A write failed (and said so): its line is stuck in the handle's buffer.
        self._failed = False

    def open(self) -> AuditReport:
        if self.target and self._handle is None:
            self._handle = open_for_writing(self.parameter, self.target, self._mode)
        return self

    def __enter__(self) -> AuditReport:
        return self.open()

    def write(self, **record: Any) -> None:
        if self._handle is None:
            return
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            try:
                self._handle.write(line + "\n")
                # Flushed line by line: a killed run still leaves every action it took.
                self._handle.flush()
            except Exception as exc:
                self._failed = True
                raise PostHogOutputError(
                    f"{self.parameter}: writing {self.target!r} failed ({_describe(exc)})",
                    parameter=self.parameter,
                ) from exc
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.close()
            except Exception as exc:
                if self._failed:
                    # Flushing the failed line again failed again: already reported by write().
                    return
                raise PostHogOutputError(
                    f"{self.parameter}: closing {self.target!r} failed ({_describe(exc)})",
                    parameter=self.parameter,
                ) from exc

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _replaceable(target: str) -> bool:
    """Whether ``target`` is a local path that a new file may be renamed over: nothing is
    there yet, or a plain file (not a symlink, a device such as ``/dev/full``, a pipe)."""
    if "://" in target:
        return False
    try:
        return stat.S_ISREG(os.lstat(Path(target).expanduser()).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False  # e.g. a file where a folder should be: opening it says so


def write_json(parameter: str, target: str, document: dict[str, Any]) -> None:
    """Write one JSON document (a receipt) whole; failures name ``parameter``.

    A local file is written beside ``target`` and then renamed over it, so a write that
    fails (a full disk) leaves the earlier document there as it was: an erasure's rerun
    reads it to say what an earlier attempt may have erased. (Object storage replaces
    an object only once the new one is uploaded whole.)
    """
    suffix = PARTIAL if _replaceable(target) else ""
    handle = open_for_writing(parameter, target, "w", suffix=suffix)
    try:
        with handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.write("\n")
        if suffix:
            os.replace(Path(target + suffix).expanduser(), Path(target).expanduser())
    except Exception as exc:
        if suffix:
            Path(target + suffix).expanduser().unlink(missing_ok=True)
        raise PostHogOutputError(
            f"{parameter}: writing {target!r} failed ({_describe(exc)})", parameter=parameter
        ) from exc


def read_json(target: str) -> dict[str, Any] | None:
    """An earlier JSON document at ``target``, or None when there is none (or it is unreadable)."""
    try:
        if "://" not in target:
            path = Path(target).expanduser()
            if not path.is_file():
                return None
            text = path.read_text(encoding="utf-8")
        else:
            from airflow.providers.common.compat.sdk import ObjectStoragePath

            storage_path = ObjectStoragePath(target)
            if not storage_path.exists():
                return None
            text = storage_path.read_text(encoding="utf-8")
        data = json.loads(text)
    except Exception:
        return None
    return data if isinstance(data, dict) else None
