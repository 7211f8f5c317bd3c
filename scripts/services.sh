#!/usr/bin/env bash
# Make sure the servers the test suite starts are installed: Redis (the shared rate-limit
# store) and PostgreSQL (the metadata database of the system tests' Airflow deployments).
#
#   scripts/services.sh          install what is missing, print where each server is
#
# The tests start and stop their own throwaway servers on free loopback ports; nothing
# here starts a service. What is already on the machine is used as it is: `redis-server`
# on PATH, PostgreSQL's `initdb`/`pg_ctl`/`postgres` on PATH or under
# /usr/lib/postgresql/<version>/bin. Otherwise Debian's packages are installed (root, or
# passwordless sudo); REDIS_SERVER and PG_BINDIR point the tests at other builds.
set -euo pipefail

say() { printf '[services] %s\n' "$*" >&2; }

find_redis() {
  if [ -n "${REDIS_SERVER:-}" ] && [ -x "$REDIS_SERVER" ]; then echo "$REDIS_SERVER"; return; fi
  command -v redis-server 2>/dev/null || true
}

find_pg_bindir() {
  if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; then echo "$PG_BINDIR"; return; fi
  local initdb
  initdb="$(command -v initdb 2>/dev/null || true)"
  if [ -n "$initdb" ]; then dirname "$(readlink -f "$initdb")"; return; fi
  # Debian keeps the server binaries off PATH, one folder per major version.
  local newest
  newest="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$newest" ] && [ -x "$newest/initdb" ]; then echo "$newest"; fi
}

apt_install() {
  local runner=()
  if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then runner=(sudo -n); else
      say "cannot install $* without root: install Debian's $* (or set REDIS_SERVER / PG_BINDIR)"
      exit 1
    fi
  fi
  say "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  if ! "${runner[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
    "${runner[@]}" apt-get update -qq >/dev/null
    "${runner[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  fi
}

missing=()
[ -n "$(find_redis)" ] || missing+=(redis-server)
[ -n "$(find_pg_bindir)" ] || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]} and no apt-get here: install them, or set REDIS_SERVER / PG_BINDIR"
    exit 1
  fi
  apt_install "${missing[@]}"
fi

redis="$(find_redis)"
pg="$(find_pg_bindir)"
[ -n "$redis" ] || { say "redis-server is still missing"; exit 1; }
[ -n "$pg" ] || { say "PostgreSQL is still missing"; exit 1; }
say "redis-server: $redis ($("$redis" --version | awk '{print $3}'))"
say "PostgreSQL:   $pg ($("$pg/postgres" --version | awk '{print $3}'))"
printf 'REDIS_SERVER=%s\nPG_BINDIR=%s\n' "$redis" "$pg"
