"""Unauthenticated control endpoints under ``/_emulator/``.

A demo runs the emulator in another process, so it needs a way to seed data, move the
clock and watch what a DAG did without importing the emulator. These requests are not
API traffic: they are neither logged, faulted nor rate limited.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_recordings.testing import errors, records
from airflow_provider_recordings.testing.api import Call, Response
from airflow_provider_recordings.testing.clock import as_utc
from airflow_provider_recordings.testing.timefmt import iso, iso_us, to_us

if TYPE_CHECKING:
    from airflow_provider_recordings.testing.emulator import PostHogEmulator

PREFIX = "/_emulator/"


def handle(emulator: PostHogEmulator, call: Call) -> Response:
    endpoint = (call.method, call.path[len(PREFIX) :].strip("/"))
    action = _ENDPOINTS.get(endpoint)
    if action is None:
        return Response.json(404, {"error": f"no admin endpoint {call.method} {call.path}"})
    try:
        return Response.json(200, action(emulator, call))
    except errors.ApiError as exc:
        return Response.json(400, {"error": exc.detail})
    except (ValueError, TypeError, KeyError) as exc:
        return Response.json(400, {"error": str(exc)})


def _stats(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    body = emulator.stats()
    now_us = to_us(emulator.clock.now())
    store = emulator.store
    with store.lock:
        live = list(store.live_rows())
        body["recordings"] = len(live)
        body["shared"] = store.shared_count()
        body["ongoing"] = sum(1 for row in live if records.is_ongoing(store.ends[row], now_us))
    body["now"] = iso(emulator.clock.now())
    return body


def _recordings(emulator: PostHogEmulator, call: Call) -> list[dict[str, Any]]:
    now_us = to_us(emulator.clock.now())
    store = emulator.store
    with store.lock:
        return [
            {
                "id": store.ids[row],
                "start_time": iso_us(store.starts[row]),
                "end_time": iso_us(store.ends[row]),
                "ongoing": records.is_ongoing(store.ends[row], now_us),
                "shared": _shared(emulator, row),
                # What the API answers: the stored id, or the one derived for seeded rows.
                "distinct_id": records.distinct_id_of(store.view(row)),
            }
            for row in reversed(list(store.live_rows()))
        ]


def _shared(emulator: PostHogEmulator, row: int) -> bool:
    state = emulator.store.sharing_state(row, create=False)
    return state is not None and state.enabled


def _seed(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    options = call.json_body()
    ids = emulator.seed(
        int(options.get("n", 0)),
        days=float(options.get("days", 30.0)),
        ongoing=int(options.get("ongoing", 0)),
        shared=int(options.get("shared", 0)),
        seed=int(options.get("seed", 0)),
        persons=int(options.get("persons", 0)),
    )
    return {"count": len(ids), "ids": ids}


def _add(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    """Add recordings given field by field: ``{"recordings": [{"start_time", "end_time",
    "distinct_id", "id", "shared", "snapshot_blocks", "block_bytes", "lts"}]}`` (times
    ISO 8601; only ``start_time`` is required)."""
    ids = []
    for spec in call.json_body().get("recordings", []):
        end = spec.get("end_time")
        added = emulator.add_recording(
            spec.get("id"),
            start_time=as_utc(datetime.fromisoformat(str(spec["start_time"]))),
            end_time=as_utc(datetime.fromisoformat(str(end))) if end else None,
            distinct_id=spec.get("distinct_id"),
            shared=bool(spec.get("shared", False)),
            snapshot_blocks=_optional_int(spec, "snapshot_blocks"),
            block_bytes=_optional_int(spec, "block_bytes"),
            lts=bool(spec.get("lts", False)),
        )
        ids.append(added["id"])
    return {"count": len(ids), "ids": ids}


def _optional_int(spec: dict[str, Any], name: str) -> int | None:
    return None if spec.get(name) is None else int(spec[name])


def _sharing(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    """``{"id", "enabled"?, "password_required"?}``: change a recording's public link as
    another user would; answers the sharing object."""
    options = call.json_body()
    recording_id = str(options["id"])
    if "enabled" in options:
        emulator.set_shared(recording_id, _flag(options, "enabled"))
    if "password_required" in options:
        emulator.require_password(recording_id, _flag(options, "password_required"))
    return emulator.sharing_object(recording_id)


def _share_password(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    """``{"id", "raw_password"?, "note"?}``: a password for the link (which then
    requires one); answers it with the raw password, like the API's 201."""
    options = call.json_body()
    return emulator.add_share_password(
        str(options["id"]), options.get("raw_password"), note=str(options.get("note") or "")
    )


def _add_persons(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    """``{"persons": [{"distinct_ids": [...], "uuid"?}]}``."""
    added = []
    for spec in call.json_body().get("persons", []):
        distinct_ids = spec.get("distinct_ids")
        if not isinstance(distinct_ids, list) or not all(isinstance(d, str) for d in distinct_ids):
            raise ValueError("each person needs distinct_ids, a list of strings")
        added.append(emulator.add_person(distinct_ids, uuid=spec.get("uuid")))
    return {"count": len(added), "persons": added}


def _persons(emulator: PostHogEmulator, call: Call) -> list[dict[str, Any]]:
    return emulator.list_persons()


def _person_jobs(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    """Run the recordings jobs that are due (they also run before every API request)."""
    return {"deleted": emulator.run_person_jobs(), "pending": emulator.persons.pending}


def _flag(options: dict[str, Any], name: str) -> bool:
    value = options[name]
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _clock(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    options = call.json_body()
    if "advance" in options:
        emulator.clock.advance(float(options["advance"]))
    if "set" in options:
        emulator.clock.set(as_utc(datetime.fromisoformat(str(options["set"]))))
    return {"now": iso(emulator.clock.now())}


def _now(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    return {"now": iso(emulator.clock.now())}


_ENDPOINTS = {
    ("GET", "stats"): _stats,
    ("GET", "recordings"): _recordings,
    ("POST", "seed"): _seed,
    ("POST", "recordings"): _add,
    ("POST", "clock"): _clock,
    ("GET", "clock"): _now,
    ("POST", "sharing"): _sharing,
    ("POST", "sharing/passwords"): _share_password,
    ("GET", "persons"): _persons,
    ("POST", "persons"): _add_persons,
    ("POST", "persons/jobs"): _person_jobs,
}
