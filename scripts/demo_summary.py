"""Helpers of scripts/demo.sh: the connection, the emulator's state, and the final table.

The demo runs each example DAG with ``airflow dags test``; after each run this script
reads what the run's tasks returned (their XComs, from the demo's own metadata database)
and what the emulator saw (``/_emulator/stats``), and keeps it in a small JSON state
file. ``table`` turns that file into the summary printed at the end.

Standard library only: it runs with the demo environment's Python and imports no
Airflow; of the provider, only the emulator's admin client
(``airflow_provider_recordings.testing.EmulatorAdmin``, itself standard library only).

    demo_summary.py connection [--ready-file F]   AIRFLOW_CONN_POSTHOG_DEFAULT value
    demo_summary.py live-user --ready-file F      a distinct id with a recording still ongoing
    demo_summary.py erasure-user --ready-file F   a distinct id whose recordings have all ended
    demo_summary.py begin --state S [--ready-file F] [--target T]
    demo_summary.py mark --state S                ignore API calls made since the last step
    demo_summary.py end-session --state S --pid P the sensor's user stops, once it has looked
    demo_summary.py record --state S --step NAME --dag DAG_ID --seconds N --exit-code N
    demo_summary.py table --state S
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from airflow_provider_recordings.testing.client import EmulatorAdmin

#: The demo emulator enforces PostHog's limits with every window this many times
#: shorter; the connection tells the client so, so it paces itself the same way.
TIME_SCALE = 60


# -- inputs ---------------------------------------------------------------------------------


def read_ready_file(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def admin(url: str) -> EmulatorAdmin:
    """The emulator's control endpoints (they need no key; the API does)."""
    return EmulatorAdmin(url, timeout=10)


def latest_xcoms(database: Path, dag_id: str) -> dict[str, Any]:
    """What each task of the DAG's latest run returned (mapped tasks: a list)."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT task_id, map_index, value FROM xcom WHERE dag_id = ? AND key = 'return_value' AND run_id = "
            "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1) ORDER BY map_index",
            (dag_id, dag_id),
        ).fetchall()
    found: dict[str, Any] = {}
    for task_id, map_index, value in rows:
        decoded = json.loads(value) if isinstance(value, str | bytes) else value
        if map_index >= 0:
            found.setdefault(task_id, []).append(decoded)
        else:
            found[task_id] = decoded
    return found


def load_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"steps": []}


def save_state(path: Path, state: dict[str, Any]) -> None:
    path.write_text(json.dumps(state, indent=2))


# -- commands -------------------------------------------------------------------------------


def cmd_connection(args: argparse.Namespace) -> int:
    if args.ready_file:
        info = read_ready_file(args.ready_file)
        host, key, project = info["url"], info["api_key"], info["project_id"]
        extra: dict[str, Any] = {"project_id": str(project), "rate_limit_time_scale": TIME_SCALE}
    else:
        host, key, project = (
            os.environ[name] for name in ("POSTHOG_HOST", "POSTHOG_API_KEY", "POSTHOG_PROJECT_ID")
        )
        extra = {"project_id": str(project)}
        if os.environ.get("POSTHOG_LIST_RATE_PLAN"):
            extra["list_rate_plan"] = os.environ["POSTHOG_LIST_RATE_PLAN"]
    print(json.dumps({"conn_type": "posthog", "host": host, "password": key, "extra": extra}))
    return 0


def cmd_live_user(args: argparse.Namespace) -> int:
    info = read_ready_file(args.ready_file)
    page = admin(info["url"]).api(
        f"/api/projects/{info['project_id']}/session_recordings/?date_from=-1h&limit=100",
        key=info["api_key"],
    )
    live = sorted((r for r in page["results"] if r.get("ongoing")), key=lambda r: r["end_time"], reverse=True)
    if not live:
        print("no ongoing recording in the emulator", file=sys.stderr)
        return 1
    print(live[0]["distinct_id"])
    return 0


def cmd_erasure_user(args: argparse.Namespace) -> int:
    """The person who asks to be forgotten: someone recorded lately, none of whose
    sessions is being recorded now (the demo does not wait for a live one twice)."""
    info = read_ready_file(args.ready_file)
    page = admin(info["url"]).api(
        f"/api/projects/{info['project_id']}/session_recordings/?date_from=-30d&limit=500",
        key=info["api_key"],
    )
    counts: dict[str, int] = {}
    live = {r["distinct_id"] for r in page["results"] if r.get("ongoing")}
    for recording in page["results"]:
        if recording["distinct_id"] not in live:
            counts[recording["distinct_id"]] = counts.get(recording["distinct_id"], 0) + 1
    if not counts:
        print("no person without a live session in the emulator", file=sys.stderr)
        return 1
    print(max(sorted(counts), key=lambda distinct_id: counts[distinct_id]))
    return 0


def cmd_begin(args: argparse.Namespace) -> int:
    state: dict[str, Any] = {"steps": [], "target": args.target}
    if args.ready_file:
        info = read_ready_file(args.ready_file)
        stats = admin(info["url"]).stats()
        state.update(emulator=info["url"], before=_store_counts(stats), baseline=stats["total"])
    save_state(args.state, state)
    return 0


def cmd_mark(args: argparse.Namespace) -> int:
    state = load_state(args.state)
    if state.get("emulator"):
        stats = admin(state["emulator"]).stats()
        state.update(baseline=stats["total"], baseline_lists=stats["list"])
        save_state(args.state, state)
    return 0


def cmd_end_session(args: argparse.Namespace) -> int:
    """Once the sensor has looked (and found the session live), let five quiet minutes
    pass on the emulator's clock: the user has closed the tab."""
    state = load_state(args.state)
    url, baseline = state["emulator"], state.get("baseline_lists", 0)
    deadline = time.monotonic() + args.timeout
    emulator = admin(url)
    while (lists := emulator.stats()["list"]) <= baseline:
        if time.monotonic() > deadline or not _alive(args.pid):
            return 1
        time.sleep(0.02)
    emulator.advance_clock(args.advance)
    if lists > baseline + 1:
        # The trigger's first poll beat us to it; the session's end shows at the next one.
        print("(the deferred sensor had already polled again: it notices at its next poll)")
    return 0


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def cmd_record(args: argparse.Namespace) -> int:
    state = load_state(args.state)
    xcoms = latest_xcoms(args.airflow_db, args.dag) if args.airflow_db.exists() else {}
    step: dict[str, Any] = {
        "name": args.step,
        "dag": args.dag,
        "seconds": args.seconds,
        "exit_code": args.exit_code,
        "log": args.log,
        **summarize(args.dag, xcoms),
    }
    if state.get("emulator"):
        stats = admin(state["emulator"]).stats()
        step["api_calls"] = stats["total"] - state.get("baseline", 0)
        state["baseline"] = stats["total"]
        state["after"] = step["emulator"] = _store_counts(stats)
    state["steps"].append(step)
    save_state(args.state, state)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    state = load_state(args.state)
    if args.wall_seconds is not None:
        state["wall_seconds"] = args.wall_seconds
    print(render(state))
    return 0


# -- what each example DAG's results mean ---------------------------------------------------


def summarize(dag_id: str, xcoms: dict[str, Any]) -> dict[str, Any]:
    """The table's cells for one run, from its tasks' return values."""
    cells: dict[str, Any] = {"reports": []}
    if dag_id == "posthog_retention":
        plan = xcoms.get("plan_deletions") or {}
        done = xcoms.get("delete_expired")
        result = done or plan
        cutoff = str(result.get("cutoff") or "?")[:16].replace("T", " ")
        cells.update(
            selected=result.get("matched"),
            deleted=(done or {}).get("deleted", 0 if plan else None),
            skipped_ongoing=result.get("skipped_ongoing"),
            failed=result.get("failed"),
            own_calls=sum(int(r.get("api_calls") or 0) for r in (plan, done or {})),
            note=(
                f"started before {cutoff} UTC; "
                + ("dry run: nothing deleted" if plan and not done else f"{result.get('failed', 0)} failed")
            ),
        )
        cells["reports"] = [r["report_path"] for r in (plan, done or {}) if r.get("report_path")]
    elif dag_id == "posthog_sharing_audit":
        audit = xcoms.get("audit_public_links") or {}
        cells.update(
            selected=audit.get("audited"),
            shared=audit.get("shared"),
            disabled=audit.get("disabled"),
            failed=audit.get("failed"),
            own_calls=audit.get("api_calls"),
            note=f"{audit.get('still_shared', '?')} still shared" if audit else "",
        )
        cells["reports"] = [audit["report_path"]] if audit.get("report_path") else []
    elif dag_id == "posthog_erasure_request":
        erased = xcoms.get("erase_recordings") or {}
        cells.update(
            selected=erased.get("found"),
            deleted=erased.get("deleted"),
            failed=erased.get("failed"),
            note=(
                f"request {erased.get('request_id')}: {erased.get('status')}, route {erased.get('route')}, "
                f"verified: {'yes' if erased.get('verified') else 'no'}"
                if erased
                else ""
            ),
        )
        cells["reports"] = [erased["receipt_path"]] if erased.get("receipt_path") else []
    elif dag_id == "posthog_wait_for_ongoing":
        sessions = xcoms.get("summarize_sessions") or {}
        cells.update(
            selected=sessions.get("recordings"),
            note=(
                f"{', '.join(sessions.get('distinct_ids') or [])}: {sessions.get('recordings')} finished recording(s), "
                f"{_duration(sessions.get('total_duration_seconds') or 0)} in total"
                if sessions
                else ""
            ),
        )
    return cells


def _store_counts(stats: dict[str, Any]) -> dict[str, int]:
    return {name: int(stats.get(name, 0)) for name in ("recordings", "shared", "ongoing", "throttled")}


# -- rendering ------------------------------------------------------------------------------


def _number(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _relative(path: str) -> str:
    """Shorter for local paths under the working directory; URLs stay as they are."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


COLUMNS = (
    ("Step", "name", "<"),
    ("Selected", "selected", ">"),
    ("Deleted", "deleted", ">"),
    ("Skipped (ongoing)", "skipped_ongoing", ">"),
    ("Shared found", "shared", ">"),
    ("Disabled", "disabled", ">"),
    ("API calls", "api_calls", ">"),
    ("Time", "time", ">"),
    ("Notes", "note", "<"),
)


def render(state: dict[str, Any]) -> str:
    steps = state.get("steps", [])
    rows = []
    for step in steps:
        cells = {key: _number(step.get(key)) for _, key, _ in COLUMNS}
        cells["note"] = str(step.get("note") or "")
        if step.get("api_calls") is None:
            cells["api_calls"] = _number(step.get("own_calls"))
        cells["time"] = f"{step.get('seconds', 0):.1f}s"
        if step.get("exit_code"):
            cells["note"] = f"FAILED (exit {step['exit_code']}), see {step.get('log')}"
        rows.append(cells)
    total_calls = sum(int(s.get("api_calls", s.get("own_calls")) or 0) for s in steps)
    total_seconds = sum(float(s.get("seconds", 0)) for s in steps)
    footer = {key: "" for _, key, _ in COLUMNS}
    footer.update(name="Total", api_calls=_number(total_calls), time=f"{total_seconds:.1f}s")
    if state.get("wall_seconds"):
        footer["note"] = f"whole demo, setup included: {state['wall_seconds']:.0f}s"

    widths = {key: max(len(title), *(len(r[key]) for r in [*rows, footer])) for title, key, _ in COLUMNS}

    def line(cells: dict[str, str]) -> str:
        parts = [f"{cells[key]:{align}{widths[key]}}" for _, key, align in COLUMNS]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * widths[key] for _, key, _ in COLUMNS if widths[key]).rstrip()
    out = [
        line({key: title for title, key, _ in COLUMNS}),
        rule,
        *(line(r) for r in rows),
        rule,
        line(footer),
    ]

    before, after = state.get("before"), state.get("after")
    if before and after:
        states = [before, *(step["emulator"] for step in steps if step.get("emulator"))]
        out += [
            "",
            "Emulator, at the start and after each step:",
            "  recordings    " + " -> ".join(f"{s['recordings']:,}" for s in states),
            "  public links  " + " -> ".join(f"{s['shared']:,}" for s in states),
            f"  {after['throttled']:,} request(s) answered 429 by its rate limits (the client paces itself)",
        ]
    reports = [_relative(path) for step in steps for path in step.get("reports", [])]
    if reports:
        out += ["", "Audit reports (JSON Lines, one line per recording) and receipts:"]
        out.extend(f"  {path}" for path in reports)
    return "\n".join(out)


# -- entry point ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    connection = sub.add_parser("connection")
    connection.add_argument("--ready-file", type=Path)
    connection.set_defaults(run=cmd_connection)

    live = sub.add_parser("live-user")
    live.add_argument("--ready-file", type=Path, required=True)
    live.set_defaults(run=cmd_live_user)

    erasure = sub.add_parser("erasure-user")
    erasure.add_argument("--ready-file", type=Path, required=True)
    erasure.set_defaults(run=cmd_erasure_user)

    begin = sub.add_parser("begin")
    begin.add_argument("--state", type=Path, required=True)
    begin.add_argument("--ready-file", type=Path)
    begin.add_argument("--target", default="")
    begin.set_defaults(run=cmd_begin)

    mark = sub.add_parser("mark")
    mark.add_argument("--state", type=Path, required=True)
    mark.set_defaults(run=cmd_mark)

    record = sub.add_parser("record")
    record.add_argument("--state", type=Path, required=True)
    record.add_argument("--airflow-db", type=Path, required=True)
    record.add_argument("--step", required=True)
    record.add_argument("--dag", required=True)
    record.add_argument("--seconds", type=float, required=True)
    record.add_argument("--exit-code", type=int, default=0)
    record.add_argument("--log", default="")
    record.set_defaults(run=cmd_record)

    end = sub.add_parser("end-session")
    end.add_argument("--state", type=Path, required=True)
    end.add_argument("--pid", type=int, help="give up when this process (the DAG run) has ended")
    end.add_argument("--timeout", type=float, default=120.0)
    end.add_argument("--advance", type=float, default=360.0, help="seconds to move the clock on")
    end.set_defaults(run=cmd_end_session)

    table = sub.add_parser("table")
    table.add_argument("--state", type=Path, required=True)
    table.add_argument("--wall-seconds", type=float, help="the whole demo's duration, for the footer")
    table.set_defaults(run=cmd_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
