#!/usr/bin/env bash
# The whole test suite, from a fresh clone: builds the environments it needs (cached),
# installs the servers the tests start (Redis, PostgreSQL) if the machine lacks them,
# then lint, type checks, the docs build, and pytest on Airflow 3.3 and on Airflow 2.11:
# unit and emulator tests, `airflow dags test` runs, and the system tests, which start
# a real deployment (PostgreSQL, scheduler, triggerer, API server) per Airflow version.
#
#   scripts/test.sh              everything (what CI runs)
#   scripts/test.sh -k retention extra arguments go to both pytest runs
#   scripts/test.sh -m slow      the exhaustive variants instead (make test-slow)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "Environments"
af3="$(scripts/bootstrap.sh airflow-3.3)"
af2="$(scripts/bootstrap.sh airflow-2.11)"
docs="$(scripts/bootstrap.sh docs)"

step "Servers the tests start (Redis, PostgreSQL)"
while IFS='=' read -r name value; do export "$name=$value"; done < <(scripts/services.sh)

step "ruff"
"$af3/bin/ruff" check .
"$af3/bin/ruff" format --check .

step "mypy"
"$af3/bin/mypy"

step "docs (mkdocs build --strict)"
NO_MKDOCS_2_WARNING=1 "$docs/bin/mkdocs" build --strict --quiet --site-dir "$(mktemp -d)"

started=$(date +%s)
status=0
summary="$(mktemp)"
for env in "$af3" "$af2"; do
  name="$(basename "$env")"
  step "pytest on $name"
  home="$(mktemp -d "/tmp/airflow-home-$name-XXXX")"
  log="$(mktemp)"
  AIRFLOW_HOME="$home" PROVIDER_TEST_ENV="$name" "$env/bin/python" -m pytest "$@" 2>&1 | tee "$log" \
    || status=$?
  # The failures of each run, repeated at the end so that the last lines of a long
  # output name every failure of both runs.
  { grep -E '^(FAILED|ERROR) ' "$log" | sed "s/^/[$name] /"; tail -n 1 "$log" | sed "s/^/[$name] /"; } >> "$summary" || true
  rm -rf "$home" "$log"
done
elapsed=$(( $(date +%s) - started ))
step "Summary"
cat "$summary"
rm -f "$summary"
printf '\npytest on both Airflow versions took %dm%02ds\n' $((elapsed / 60)) $((elapsed % 60))
exit $status
