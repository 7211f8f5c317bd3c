#!/usr/bin/env bash
# The whole test suite, from a fresh clone: builds the environments it needs (cached),
# then lint, type checks, the docs build, and pytest on Airflow 3.3 and on Airflow 2.11.
#
#   scripts/test.sh              everything (what CI runs)
#   scripts/test.sh -k retention extra arguments go to both pytest runs
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "Environments"
af3="$(scripts/bootstrap.sh airflow-3.3)"
af2="$(scripts/bootstrap.sh airflow-2.11)"
docs="$(scripts/bootstrap.sh docs)"

step "ruff"
"$af3/bin/ruff" check .
"$af3/bin/ruff" format --check .

step "mypy"
"$af3/bin/mypy"

step "docs (mkdocs build --strict)"
NO_MKDOCS_2_WARNING=1 "$docs/bin/mkdocs" build --strict --quiet --site-dir "$(mktemp -d)"

status=0
for env in "$af3" "$af2"; do
  name="$(basename "$env")"
  step "pytest on $name"
  home="$(mktemp -d "/tmp/airflow-home-$name-XXXX")"
  AIRFLOW_HOME="$home" PROVIDER_TEST_ENV="$name" "$env/bin/python" -m pytest "$@" || status=$?
  rm -rf "$home"
done
exit $status
