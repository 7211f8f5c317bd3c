"""``EmulatorAdmin``: the emulator's ``/_emulator/`` control endpoints from another process.

Demos and benchmarks run the emulator as a separate process; this client seeds it,
moves its clock and reads what a DAG did, with the standard library only (no
``requests``, no Airflow), so any script can use it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from airflow_provider_recordings.testing.admin import PREFIX


class EmulatorAdminError(RuntimeError):
    """The emulator answered with an error status (``status``, and its JSON ``body``)."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error") if isinstance(body, dict) else body
        super().__init__(f"emulator answered {status}: {message}")
        self.status = status
        self.body = body


class EmulatorAdmin:
    """Calls to one running emulator at ``url`` (as printed, or from its ready file)."""

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        # The emulator is on loopback: a proxy from the environment must not be used.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- reading ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Request counts by kind, method and status, plus ``recordings``, ``shared``,
        ``ongoing`` and the clock's ``now``."""
        return self._admin("GET", "stats")  # type: ignore[no-any-return]

    def recordings(self) -> list[dict[str, Any]]:
        """Every live recording: id, times, ongoing, shared, distinct_id (newest first)."""
        return self._admin("GET", "recordings")  # type: ignore[no-any-return]

    def persons(self) -> list[dict[str, Any]]:
        return self._admin("GET", "persons")  # type: ignore[no-any-return]

    def now(self) -> str:
        return str(self._admin("GET", "clock")["now"])

    # -- changing data ---------------------------------------------------------------

    def seed(
        self,
        n: int,
        *,
        days: float = 30.0,
        ongoing: int = 0,
        shared: int = 0,
        seed: int = 0,
        persons: int = 0,
    ) -> list[str]:
        """Add ``n`` realistic recordings, as ``PostHogEmulator.seed``; their ids."""
        body = {"n": n, "days": days, "ongoing": ongoing, "shared": shared, "seed": seed, "persons": persons}
        return list(self._admin("POST", "seed", body)["ids"])

    def add(self, recordings: Iterable[dict[str, Any]]) -> list[str]:
        """Add recordings field by field (``start_time`` required; ``end_time``,
        ``distinct_id``, ``id``, ``shared``, ``snapshot_blocks``, ``block_bytes``, ``lts``)."""
        return list(self._admin("POST", "recordings", {"recordings": list(recordings)})["ids"])

    def set_sharing(
        self, recording_id: str, *, enabled: bool | None = None, password_required: bool | None = None
    ) -> dict[str, Any]:
        """Turn a recording's public link on or off, or make it need a password; the
        sharing object."""
        body: dict[str, Any] = {"id": recording_id}
        if enabled is not None:
            body["enabled"] = enabled
        if password_required is not None:
            body["password_required"] = password_required
        return self._admin("POST", "sharing", body)  # type: ignore[no-any-return]

    def add_share_password(
        self, recording_id: str, raw_password: str | None = None, *, note: str = ""
    ) -> dict[str, Any]:
        """A password for the recording's link, with the raw ``password`` (shown once)."""
        body = {"id": recording_id, "raw_password": raw_password, "note": note}
        return self._admin("POST", "sharing/passwords", body)  # type: ignore[no-any-return]

    def add_person(self, distinct_ids: Iterable[str], *, uuid: str | None = None) -> dict[str, Any]:
        """A person owning ``distinct_ids``, as the persons API answers it."""
        person: dict[str, Any] = {"distinct_ids": list(distinct_ids)}
        if uuid is not None:
            person["uuid"] = uuid
        return dict(self._admin("POST", "persons", {"persons": [person]})["persons"][0])

    def run_person_jobs(self) -> int:
        """Run the persons' recordings jobs that are due; how many recordings went."""
        return int(self._admin("POST", "persons/jobs", {})["deleted"])

    def set_clock(self, moment: datetime) -> str:
        return str(self._admin("POST", "clock", {"set": moment.isoformat()})["now"])

    def advance_clock(self, seconds: float) -> str:
        return str(self._admin("POST", "clock", {"advance": seconds})["now"])

    # -- plumbing --------------------------------------------------------------------

    def api(self, path: str, *, key: str, method: str = "GET", body: Any = None) -> Any:
        """One call to the emulated API itself (``path`` from ``/api/...``), with a key."""
        return self.request(method, path, body, headers={"Authorization": f"Bearer {key}"})

    def _admin(self, method: str, name: str, body: Any = None) -> Any:
        return self.request(method, PREFIX + name, body)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """Send JSON, answer the decoded JSON; an error status raises EmulatorAdminError."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return _decode(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                raise EmulatorAdminError(exc.code, _decode(exc.read())) from None


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
