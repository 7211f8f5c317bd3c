#!/usr/bin/env bash
# Create (or reuse) one of the project's environments under .venvs/.
#
#   scripts/bootstrap.sh airflow-3.3   Airflow 3.3 + this provider + test tools
#   scripts/bootstrap.sh airflow-2.11  Airflow 2.11 + this provider + test tools
#   scripts/bootstrap.sh docs          MkDocs toolchain + this provider (for API docs)
#
# uv makes an Airflow install take seconds once its cache is warm; an environment is
# rebuilt only when one of the files that define it changes (a hash kept in .stamp).
# Prints the environment's directory on stdout; progress goes to stderr.
set -euo pipefail

name="${1:?usage: scripts/bootstrap.sh airflow-3.3|airflow-2.11|docs}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venvs/$name"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

case "$name" in
  # [postgres]: the system tests run a real deployment on PostgreSQL. The OpenLineage
  # provider on 3.3 only: the lineage tests run there, and 2.11 shows that nothing
  # changes without it.
  airflow-3.3)  pins=("apache-airflow[postgres]==3.3.2" "apache-airflow-task-sdk==1.3.2" "apache-airflow-providers-common-compat==1.23.0" "apache-airflow-providers-openlineage==2.20.3") ;;
  # cryptography 51 turned MultiFernet into a Rust object Airflow 2.11 can no longer mark
  # (models/crypto.py sets is_encrypted on it): every connection read fails with it.
  airflow-2.11) pins=("apache-airflow[postgres]==2.11.2" "apache-airflow-providers-common-compat==1.23.0" "cryptography<51") ;;
  docs)         pins=() ;;
  *) echo "unknown environment: $name" >&2; exit 2 ;;
esac

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then echo uv; return; fi
  if [ -x "$root/.venvs/.tools/bin/uv" ]; then echo "$root/.venvs/.tools/bin/uv"; return; fi
  echo "[bootstrap] installing uv into .venvs/.tools" >&2
  "$python" -m venv "$root/.venvs/.tools" >&2
  "$root/.venvs/.tools/bin/pip" install --quiet --disable-pip-version-check "uv>=0.5" >&2
  echo "$root/.venvs/.tools/bin/uv"
}

fingerprint() {
  {
    echo "$name ${pins[*]-} $($python --version 2>&1)"
    cat "$root/pyproject.toml" "$root/scripts/bootstrap.sh" "$root/requirements/"*.txt
  } | sha256sum | cut -d' ' -f1
}

want="$(fingerprint)"
if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv"
  exit 0
fi

uv="$(ensure_uv)"
echo "[bootstrap] building $name in $venv" >&2
rm -rf "$venv"
"$uv" venv --quiet --python "$python" "$venv" >&2
export VIRTUAL_ENV="$venv"
if [ "$name" = docs ]; then
  "$uv" pip install --quiet -r "$root/requirements/docs.txt" >&2
  # The API reference imports nothing at build time (griffe reads the source), so
  # Airflow is not needed here.
else
  "$uv" pip install --quiet "${pins[@]}" -r "$root/requirements/dev.txt" -e "$root[redis,s3]" >&2
fi
echo "$want" > "$venv/.stamp"
echo "$venv"
