#!/usr/bin/env bash
# `make demo`: the provider's example DAGs, run by Airflow 3.3 end to end.
#
# By default everything is local and disposable: a PostHog emulator (the package's own,
# seeded with a few thousand recordings over more than a year, some still ongoing and
# some publicly shared, enforcing PostHog's rate limits 60 times faster) and an Airflow
# home under .demo/. The DAGs run with `airflow dags test`:
#
#   1. posthog_retention, dry run only   what a 90-day policy would delete
#   2. posthog_retention                 the same, for real (behind the dry-run gate)
#   3. posthog_sharing_audit             find public links and disable them
#   4. posthog_erasure_request           erase a person's recordings on request, verified, with a receipt
#   5. posthog_wait_for_ongoing          a deferred sensor waits for a live session to end
#
# then a summary table is printed. Airflow's own output goes to .demo/logs/*.log.
#
# With POSTHOG_HOST, POSTHOG_API_KEY and POSTHOG_PROJECT_ID all set, the demo runs
# against that PostHog instead, read-only: the retention DAG as a dry run and the sharing
# audit of the last day's recordings without disabling anything. Nothing is deleted or
# changed there. (Optional: POSTHOG_LIST_RATE_PLAN=paid|enterprise.)
set -euo pipefail
export LC_ALL=C

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
demo="${DEMO_DIR:-$root/.demo}"
logs="$demo/logs"
state="$demo/summary.json"
ready="$demo/emulator.json"

say() { printf '%s\n' "$*"; }
now() { printf '%s' "${EPOCHREALTIME:-$(date +%s)}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

emulator_pid=""
dag_pid=""
cleanup() {
  for pid in "$dag_pid" "$emulator_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mode=emulator
if [ -n "${POSTHOG_HOST:-}" ] && [ -n "${POSTHOG_API_KEY:-}" ] && [ -n "${POSTHOG_PROJECT_ID:-}" ]; then
  mode=posthog
elif [ -n "${POSTHOG_HOST:-}${POSTHOG_API_KEY:-}${POSTHOG_PROJECT_ID:-}" ]; then
  say "Note: POSTHOG_HOST, POSTHOG_API_KEY and POSTHOG_PROJECT_ID must all be set to use a real PostHog;"
  say "      running against the bundled emulator instead."
fi

venv="$(scripts/bootstrap.sh airflow-3.3)"
python="$venv/bin/python"
airflow="$venv/bin/airflow"
summary() { "$python" scripts/demo_summary.py "$@"; }

rm -rf "$demo"
mkdir -p "$logs" "$demo/reports"

# Only the demo's own Airflow settings and connection: nothing from the shell leaks in.
while read -r name; do unset "$name"; done < <(compgen -e | grep -E '^AIRFLOW(__|_CONN_|_VAR_)' || true)
export AIRFLOW_HOME="$demo/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$root/example_dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
export PYTHONWARNINGS=ignore
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
mkdir -p "$AIRFLOW_HOME"

demo_started="$(now)"
say "PostHog session recordings: the example DAGs on Airflow $("$python" -c 'import airflow; print(airflow.__version__)')"

# -- PostHog: the emulator, or the real one -------------------------------------------------
if [ "$mode" = emulator ]; then
  started="$(now)"
  "$python" -m airflow_provider_recordings.testing --port 0 \
    --seed 3000 --days 730 --ongoing 12 --shared 40 --random-seed 7 \
    --rate-limits free --time-scale 60 --ready-file "$ready" >"$logs/emulator.log" 2>&1 &
  emulator_pid=$!
  for _ in $(seq 300); do
    [ -f "$ready" ] && break
    kill -0 "$emulator_pid" 2>/dev/null || { say "The emulator did not start; see $logs/emulator.log"; exit 1; }
    sleep 0.1
  done
  [ -f "$ready" ] || { say "The emulator did not become ready in 30 s; see $logs/emulator.log"; exit 1; }
  url="$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["url"])' "$ready")"
  AIRFLOW_CONN_POSTHOG_DEFAULT="$(summary connection --ready-file "$ready")"
  summary begin --state "$state" --ready-file "$ready" --target "$url"
  say "  PostHog emulator at $url ($(since "$started")s): 3,000 recordings over two years,"
  say "    12 ongoing, 40 shared; PostHog's free-plan rate limits, 60 times faster"
else
  AIRFLOW_CONN_POSTHOG_DEFAULT="$(summary connection)"
  summary begin --state "$state" --target "$POSTHOG_HOST"
  say "  PostHog at $POSTHOG_HOST, project $POSTHOG_PROJECT_ID: read-only (dry run and audit, nothing changed)"
fi
export AIRFLOW_CONN_POSTHOG_DEFAULT

started="$(now)"
"$airflow" db migrate >"$logs/db-migrate.log" 2>&1 || { say "airflow db migrate failed; see $logs/db-migrate.log"; exit 1; }
say "  Airflow metadata database ready ($(since "$started")s)"

# run_dag STEP LOG DAG_ID CONF: one `airflow dags test`, recorded for the summary.
run_dag() {
  local step="$1" log="$logs/$2.log" dag="$3" conf="$4" started rc=0
  printf '  %-44s' "$step"
  started="$(now)"
  "$airflow" dags test "$dag" --conf "$conf" >"$log" 2>&1 || rc=$?
  finish_step "$step" "$log" "$dag" "$started" "$rc"
}

finish_step() {
  local step="$1" log="$2" dag="$3" started="$4" rc="$5" seconds
  seconds="$(since "$started")"
  summary record --state "$state" --airflow-db "$AIRFLOW_HOME/airflow.db" \
    --step "$step" --dag "$dag" --seconds "$seconds" --exit-code "$rc" --log "$log"
  if [ "$rc" -ne 0 ]; then
    say "FAILED after ${seconds}s; the end of $log:"
    tail -n 25 "$log" | sed 's/^/    /'
    exit 1
  fi
  say "done (${seconds}s)"
}

if [ "$mode" = emulator ]; then
  say "  Policy: keep recordings for 90 days (retention_days=90); older ones are deleted, never an ongoing one"
  run_dag "Retention: dry run only" retention-dry-run posthog_retention \
    "{\"dry_run_only\": true, \"retention_days\": 90, \"report_dir\": \"$demo/reports/retention\"}"
  run_dag "Retention: delete, after the dry-run gate" retention posthog_retention \
    "{\"retention_days\": 90, \"report_dir\": \"$demo/reports/retention\"}"
  run_dag "Sharing audit: disable public links" sharing-audit posthog_sharing_audit \
    "{\"disable_shared\": true, \"fail_on_shared\": true, \"filters\": {}, \"report_dir\": \"$demo/reports/sharing\"}"

  # A person asks for their recordings to be erased (GDPR art. 17).
  person="$(summary erasure-user --ready-file "$ready")"
  run_dag "Erasure request: $person" erasure posthog_erasure_request \
    "{\"request_id\": \"demo-1\", \"distinct_ids\": [\"$person\"], \"receipt_dir\": \"$demo/reports/erasure\"}"

  # A user whose session is being recorded right now; the sensor must wait for it.
  user="$(summary live-user --ready-file "$ready")"
  summary mark --state "$state"
  say "  $user is being recorded right now: the sensor defers until the session ends"
  started="$(now)"
  "$airflow" dags test posthog_wait_for_ongoing --conf "{\"distinct_ids\": [\"$user\"]}" \
    >"$logs/wait-for-ongoing.log" 2>&1 &
  dag_pid=$!
  # Once the sensor has seen the session live, five quiet minutes pass on the emulator's
  # clock: the user has closed the tab.
  note="$(summary end-session --state "$state" --pid "$dag_pid" || true)"
  [ -z "$note" ] || say "    $note"
  printf '  %-44s' "Wait for ongoing: $user"
  rc=0
  wait "$dag_pid" || rc=$?
  dag_pid=""
  finish_step "Wait for ongoing: $user" "$logs/wait-for-ongoing.log" posthog_wait_for_ongoing "$started" "$rc"
else
  run_dag "Retention: dry run only" retention-dry-run posthog_retention \
    "{\"dry_run_only\": true, \"retention_days\": 90, \"report_dir\": \"$demo/reports/retention\"}"
  run_dag "Sharing audit: last day, report only" sharing-audit posthog_sharing_audit \
    "{\"disable_shared\": false, \"fail_on_shared\": false, \"filters\": {\"date_from\": \"-1d\"}, \"report_dir\": \"$demo/reports/sharing\"}"
fi

say ""
summary table --state "$state" --wall-seconds "$(since "$demo_started")"
say ""
say "Airflow logs: $logs/"
