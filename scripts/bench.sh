#!/usr/bin/env bash
# Benchmarks against PostHog's limits (`make bench`); not part of the test suite.
#
#   scripts/bench.sh              full sizes (about 15 min on two cores)
#   scripts/bench.sh --quick      small sizes, to check the script works (1-2 min)
#   scripts/bench.sh --only 1,4   some figures only
#   BENCH_ARGS=--quick make bench
#
# Every emulator the benchmarks start is a child process stopped at the end. The table
# goes to stdout and benchmarks/results/latest.json. Airflow logs only errors here
# (BENCH_LOG_LEVEL=INFO shows the operators' logs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="$(scripts/bootstrap.sh airflow-3.3)"
home="$(mktemp -d "${TMPDIR:-/tmp}/airflow-home-bench-XXXX")"
trap 'rm -rf "$home"' EXIT
export AIRFLOW_HOME="$home"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__LOGGING__LOGGING_LEVEL="${BENCH_LOG_LEVEL:-ERROR}"
unset AIRFLOW_CONN_POSTHOG_DEFAULT

started=$(date +%s)
status=0
# shellcheck disable=SC2086 # BENCH_ARGS is a list of words on purpose
"$venv/bin/python" -m benchmarks.run ${BENCH_ARGS:-} "$@" || status=$?
elapsed=$(( $(date +%s) - started ))
printf 'make bench took %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
exit $status
