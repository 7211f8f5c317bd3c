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
                "distinct_id": store.distinct.get(row),
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
    )
    return {"count": len(ids), "ids": ids}


def _add(emulator: PostHogEmulator, call: Call) -> dict[str, Any]:
    """Add recordings given field by field: ``{"recordings": [{"start_time", "end_time",
    "distinct_id", "id"}]}`` (times ISO 8601; only ``start_time`` is required)."""
    ids = []
    for spec in call.json_body().get("recordings", []):
        end = spec.get("end_time")
        added = emulator.add_recording(
            spec.get("id"),
            start_time=as_utc(datetime.fromisoformat(str(spec["start_time"]))),
            end_time=as_utc(datetime.fromisoformat(str(end))) if end else None,
            distinct_id=spec.get("distinct_id"),
        )
        ids.append(added["id"])
    return {"count": len(ids), "ids": ids}


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
}
