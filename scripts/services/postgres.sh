# PostgreSQL for scripts/services.sh: one local cluster on loopback, its files under
# $VULTUS_SERVICES_DIR/postgres (data/ the cluster, postgres.log its log, the socket in data/).
#
#   VULTUS_PG_PORT   the port it listens on, on 127.0.0.1 only (default 55432)
#   VULTUS_PG_BIN    the folder of initdb, pg_ctl and psql (default: PostgreSQL 15's, else PATH)
#
# The cluster's superuser is the role `vultus`, with trust authentication for that role from
# loopback only (a trial and test setup: no password; never expose it). initdb refuses to run
# as root: when this script runs as root, the cluster belongs to the system user `postgres`
# (or VULTUS_PG_OS_USER) and every PostgreSQL program runs through `runuser -u postgres`.
# The database `vultus` is made with the C collation, which Vultus asks for (see the README's
# "Store on PostgreSQL"); tests make databases of their own beside it.

_pg_dir() { echo "$VULTUS_SERVICES_DIR/postgres"; }
_pg_port() { echo "${VULTUS_PG_PORT:-55432}"; }
_pg_bin() {
  if [ -n "${VULTUS_PG_BIN:-}" ]; then echo "$VULTUS_PG_BIN"; return; fi
  if [ -x /usr/lib/postgresql/15/bin/pg_ctl ]; then echo /usr/lib/postgresql/15/bin; return; fi
  dirname "$(command -v pg_ctl || echo /usr/local/bin/pg_ctl)"
}
_pg_os_user() {
  if [ "$(id -u)" != 0 ]; then id -un; return; fi
  local user="${VULTUS_PG_OS_USER:-postgres}"
  id "$user" >/dev/null 2>&1 || { echo "postgres: running as root needs a system user '$user' to own the cluster (initdb refuses root); create one or set VULTUS_PG_OS_USER" >&2; return 1; }
  echo "$user"
}
# Run a command as the cluster's owner; _pg_run: one of PostgreSQL's programs.
_pg_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$(_pg_os_user)" -- "$@"; else "$@"; fi
}
_pg_run() { local prog="$1"; shift; _pg_as "$(_pg_bin)/$prog" "$@"; }

postgres_status() {
  [ -f "$(_pg_dir)/data/PG_VERSION" ] || return 1
  _pg_run pg_ctl status -D "$(_pg_dir)/data" >/dev/null 2>&1 || return 1
  _pg_run pg_isready -q -h 127.0.0.1 -p "$(_pg_port)"
}

postgres_start() {
  local dir port owner
  dir="$(_pg_dir)"; port="$(_pg_port)"
  owner="$(_pg_os_user)" || return 1
  if postgres_status; then
    echo "postgres: already up on 127.0.0.1:$port (data in $dir/data)"
    return 0
  fi
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown "$owner" "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    # trust for the role vultus from loopback; every other role and address is refused.
    _pg_run initdb -D "$dir/data" -U vultus --auth-local=trust --auth-host=reject \
      --encoding=UTF8 --locale=C >"$dir/initdb.log" 2>&1 || {
        echo "postgres: initdb failed (see $dir/initdb.log):"; tail -5 "$dir/initdb.log"; return 1; }
    _pg_as sh -c "cat > '$dir/data/pg_hba.conf'" <<'HBA'
# Vultus's trial cluster: the role vultus, from this machine only, without a password.
local all vultus trust
host  all vultus 127.0.0.1/32 trust
HBA
  fi
  # Loopback only; the socket inside the data folder (not /var/run/postgresql).
  _pg_run pg_ctl start -w -t 60 -D "$dir/data" -l "$dir/postgres.log" \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir/data'" >/dev/null 2>&1 || {
      echo "postgres: could not start (see $dir/postgres.log):"; tail -5 "$dir/postgres.log" 2>/dev/null; return 1; }
  if ! _pg_run psql -h 127.0.0.1 -p "$port" -U vultus -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'vultus'" | grep -q 1; then
    _pg_run psql -h 127.0.0.1 -p "$port" -U vultus -d postgres -qc \
      "CREATE DATABASE vultus TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'" >/dev/null || {
        echo "postgres: up, but the database vultus could not be created"; return 1; }
  fi
  echo "postgres: up on 127.0.0.1:$port (data in $dir/data, run by $owner)"
}

postgres_stop() {
  local dir
  dir="$(_pg_dir)"
  if [ ! -f "$dir/data/postmaster.pid" ]; then
    echo "postgres: not running"
    return 0
  fi
  _pg_run pg_ctl stop -D "$dir/data" -m fast -w -t 60 >/dev/null 2>&1 || true
  echo "postgres: stopped"
}

postgres_exports() {
  echo "export VULTUS_STORE__URL=postgresql+psycopg://vultus@127.0.0.1:$(_pg_port)/vultus"
  # The contract and service tests make a database of their own per test on this server.
  echo "export VULTUS_TEST_STORE_URL=postgresql+psycopg://vultus@127.0.0.1:$(_pg_port)/vultus"
}
