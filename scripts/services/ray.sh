# A local Ray head for scripts/services.sh: `ray start --head` from the repository's .venv (Ray
# comes with the services extra: ./scripts/setup.sh --test or --services).
#
#   files   $VULTUS_SERVICES_DIR/ray/ (tmp/ Ray's session folders and logs, ray.log)
#   port    $VULTUS_RAY_PORT on 127.0.0.1 (default 6380), the head's GCS: what --ray-address names
#   cpus    $VULTUS_RAY_CPUS (default: every core of this machine)
#
# The head is started with --node-ip-address 127.0.0.1, its dashboard off and usage statistics
# not sent. Ray 2.60 still listens on every interface for its GCS (the port above), its raylet,
# its object manager and its client server, and has no setting to bind them to loopback. So the
# head requires Ray's token authentication (RAY_AUTH_MODE=token): a random token made here, in
# $VULTUS_SERVICES_DIR/ray/auth_token (owner-only), without which nothing can join it or submit
# work; `start` prints RAY_AUTH_MODE and RAY_AUTH_TOKEN_PATH with the other exports, so that the
# commands you run after `eval` present it. Stop ends only this head's processes (those whose
# command line names its session folder, and its renamed agents, workers and client server with
# log files open there), never another Ray on the machine: `ray stop` would end them all.

_ray_dir() { echo "$VULTUS_SERVICES_DIR/ray"; }
_ray_port() { echo "${VULTUS_RAY_PORT:-6380}"; }
_ray_bin() { echo "$repo/.venv/bin/ray"; }

# This head's processes: Ray passes most of them its session folder, under the --temp-dir given
# here. Its agents and workers rename themselves (ray::DashboardAgent, ray::IDLE) and its client
# server is given only the address, so for those their open log files say it (a driver's do
# too, and is left alone: it is neither).
_ray_pids() {
  local sessions="$(_ray_dir)/tmp/session_"
  {
    pgrep -f -- "$sessions" || true
    find /proc/[0-9]*/fd -maxdepth 1 -lname "$sessions*" 2>/dev/null | cut -d/ -f3 | sort -u | while read -r pid; do
      case "$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" in
        ray::* | *" -m ray.util.client.server "*) echo "$pid" ;;
      esac
    done
  } | sort -u
}

ray_status() {
  [ -n "$(_ray_pids)" ] || return 1
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $(_ray_port)), 2).close()" 2>/dev/null
}

ray_start() {
  local dir port
  dir="$(_ray_dir)"; port="$(_ray_port)"
  if ray_status; then
    echo "ray: already up on 127.0.0.1:$port (session files in $dir/tmp)"
    return 0
  fi
  [ -x "$(_ray_bin)" ] || { echo "ray: not installed in .venv; run ./scripts/setup.sh --services (or --test) first"; return 1; }
  mkdir -p "$dir/tmp"
  if [ ! -s "$dir/auth_token" ]; then
    (umask 077; python3 -c "import secrets; print(secrets.token_hex(32))" > "$dir/auth_token")
  fi
  RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$dir/auth_token" "$(_ray_bin)" start --head --node-ip-address 127.0.0.1 --port "$port" \
    --num-cpus "${VULTUS_RAY_CPUS:-$(nproc)}" --include-dashboard false --disable-usage-stats \
    --temp-dir "$dir/tmp" >"$dir/ray.log" 2>&1 < /dev/null || {
      echo "ray: the head did not start (see $dir/ray.log):"; tail -5 "$dir/ray.log"; ray_stop >/dev/null; return 1; }
  echo "ray: up on 127.0.0.1:$port (session files in $dir/tmp)"
}

ray_stop() {
  local pids
  pids="$(_ray_pids)"
  if [ -z "$pids" ]; then
    echo "ray: not running"
    return 0
  fi
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  local waited=0
  while [ -n "$(_ray_pids)" ] && [ $waited -lt 20 ]; do sleep 0.5; waited=$((waited + 1)); done
  pids="$(_ray_pids)"
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  echo "ray: stopped"
}

ray_exports() {
  echo "export RAY_AUTH_MODE=token"
  echo "export RAY_AUTH_TOKEN_PATH=$(_ray_dir)/auth_token"
  echo "export VULTUS_RAY_ADDRESS=127.0.0.1:$(_ray_port)"
  echo "export VULTUS_INGEST_EXECUTOR=ray"
  # The service tests run their ingests through this head.
  echo "export VULTUS_TEST_RAY_ADDRESS=127.0.0.1:$(_ray_port)"
}
