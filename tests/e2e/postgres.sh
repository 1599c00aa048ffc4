# Sourced by tests/e2e/run: a throwaway PostgreSQL cluster for the PostgreSQL tests (the store
# contract suite and the multi-node tests), on a Unix socket only (no TCP), stopped and removed
# on exit. Installs Debian's package when PostgreSQL is missing. Sets
# CREDENTIAL_LEDGER_TEST_POSTGRES; leaves an existing value alone. Under CI=true a cluster that
# cannot be started fails the run; elsewhere the PostgreSQL tests then say they are skipped.

postgres_up() {
  if [ -n "${CREDENTIAL_LEDGER_TEST_POSTGRES:-}" ]; then return 0; fi
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -z "$bin" ]; then
    local as_root=""
    [ "$(id -u)" = 0 ] || as_root="sudo -n"
    { $as_root apt-get install -y -qq postgresql-15 || { $as_root apt-get update -qq && $as_root apt-get install -y -qq postgresql-15; }; } >/dev/null 2>&1 || true
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  fi
  if [ -z "$bin" ]; then
    echo "PostgreSQL is not installed and could not be installed"
    return 1
  fi
  PG_TMP=$(mktemp -d /tmp/ledger-pg.XXXXXX)
  # initdb and postgres refuse to run as root: as root, run them as the postgres user.
  local run=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres:postgres "$PG_TMP"
    run=(runuser -u postgres --)
  fi
  PG_STOP=("${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -m fast -w stop)
  "${run[@]}" "$bin/initdb" -D "$PG_TMP/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null || return 1
  "${run[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w -t 30 \
    -o "-c listen_addresses='' -k $PG_TMP -p 5433 -c max_connections=300" start >/dev/null || return 1
  "$bin/createdb" -h "$PG_TMP" -p 5433 -U postgres ledger_test || return 1
  export CREDENTIAL_LEDGER_TEST_POSTGRES="host=$PG_TMP port=5433 user=postgres dbname=ledger_test"
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') at $PG_TMP"
}

postgres_down() {
  if [ -n "${PG_TMP:-}" ]; then
    "${PG_STOP[@]}" >/dev/null 2>&1 || true
    rm -rf "$PG_TMP"
  fi
}
