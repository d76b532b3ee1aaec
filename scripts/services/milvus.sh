# Milvus standalone for scripts/services.sh: the PyPI package `milvus` (the real Milvus 2.3
# server with an embedded etcd and a local message queue), installed in its own venv.
#
#   files      $VULTUS_SERVICES_DIR/milvus/ (data/ its segments, etcd and queue; milvus.log;
#              pid and relay.pid)
#   venv       $VULTUS_MILVUS_VENV (default: .venv-milvus in the repository; made at the first start)
#   port       $VULTUS_MILVUS_PORT on 127.0.0.1 (default 59530), the only way in
#
# Milvus 2.3 listens on every interface, on about ten ports (gRPC of each coordinator, etcd,
# metrics), and has no setting that binds them to loopback. Run as root, this script therefore
# starts it in a network namespace of its own (unshare --net), which has only a loopback
# interface: none of its ports can be reached from outside. scripts/services/relay.py is the one
# way in, from 127.0.0.1:$VULTUS_MILVUS_PORT here to its client port there. Not run as root (an
# unprivileged user cannot make a network namespace here), it says so and runs Milvus on the
# host, where its ports are open on every interface: use it on a machine you trust, or as root.
#
# On SIGTERM, the package's wrapper exits and leaves the server running; stop kills the whole
# process group instead, with SIGKILL after a timeout.

_mv_dir() { echo "$VULTUS_SERVICES_DIR/milvus"; }
_mv_port() { echo "${VULTUS_MILVUS_PORT:-59530}"; }
_mv_venv() { echo "${VULTUS_MILVUS_VENV:-$repo/.venv-milvus}"; }
_mv_version=2.3.5
# What an erasure leaves on the server's disk, made short-lived (see the README's "Templates on
# Milvus"): the segment files a compaction replaced are deleted 10 minutes after it (default 3 h,
# checked hourly), and the message queue keeps insert messages 10 minutes (default 3 days).
_mv_config=(
  --extra-config dataCoord.gc.interval=60
  --extra-config dataCoord.gc.dropTolerance=600
  --extra-config rocksmq.retentionTimeInMinutes=10
)

# Whether the process group a pid file names is alive and is this script's (one of its processes
# names this service's folder or the relay): a pid left by a reboot may belong to another program now.
_mv_alive() {
  [ -f "$1" ] || return 1
  local pid
  pid="$(cat "$1")"
  [ -n "$pid" ] && kill -0 -- "-$pid" 2>/dev/null || return 1
  pgrep -g "$pid" -f -- "$(_mv_dir)/data|scripts/services/relay.py" >/dev/null 2>&1
}

# Whether Milvus answers its health check (inside its namespace, when it has one).
_mv_healthy() {
  local dir pid
  dir="$(_mv_dir)"
  _mv_alive "$dir/pid" || return 1
  pid="$(cat "$dir/pid")"
  local check=(python3 -c "import urllib.request,sys; sys.exit(b'OK' not in urllib.request.urlopen('http://127.0.0.1:9091/healthz', timeout=2).read())")
  if [ -f "$dir/netns" ]; then
    # The server's own process (a child of the wrapper) holds the namespace as well.
    nsenter --net="/proc/$pid/ns/net" "${check[@]}" 2>/dev/null
  else
    # On the host its metrics port is the first free one from 9091 (another Milvus may hold 9091):
    # ask its client port instead, which this script chose.
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $(_mv_port)), 2).close()" 2>/dev/null
  fi
}

milvus_status() {
  local dir
  dir="$(_mv_dir)"
  _mv_healthy || return 1
  [ ! -f "$dir/netns" ] || _mv_alive "$dir/relay.pid"
}

_mv_install() {
  local venv
  venv="$(_mv_venv)"
  if [ -x "$venv/bin/milvus-server" ] && "$venv/bin/python" -c "import milvus, sys; sys.exit(milvus.__version__ != '$_mv_version')" 2>/dev/null; then
    return 0
  fi
  echo "milvus: installing the PyPI package milvus==$_mv_version into $venv (first time: about 15 s) ..."
  python3 -m venv "$venv" && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "milvus==$_mv_version" || {
    echo "milvus: could not install milvus==$_mv_version into $venv"; return 1; }
}

milvus_start() {
  local dir port venv pid
  dir="$(_mv_dir)"; port="$(_mv_port)"; venv="$(_mv_venv)"
  if milvus_status; then
    echo "milvus: already up on 127.0.0.1:$port (data in $dir/data)"
    return 0
  fi
  milvus_stop >/dev/null 2>&1 || true
  _mv_install || return 1
  mkdir -p "$dir/data"
  rm -f "$dir/netns"
  local isolate=() client=()
  if [ "$(id -u)" = 0 ] && unshare --net true 2>/dev/null; then
    isolate=(unshare --net)
    touch "$dir/netns"
  else
    echo "milvus: not root, so no network namespace: its ports are open on every interface of this host"
    client=(--proxy-port "$port")  # no relay: the server itself takes the client port
  fi
  # A process group of its own (setsid), so that stop reaches the server behind the wrapper.
  # In the namespace, loopback starts down: bring it up before the server binds.
  setsid "${isolate[@]}" sh -c '[ -z "$1" ] || ip link set lo up || exit 1; shift; exec "$@"' sh \
    "${isolate:+up}" "$venv/bin/milvus-server" --data "$dir/data" "${client[@]}" "${_mv_config[@]}" >"$dir/milvus.log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$dir/pid"
  local waited=0
  until _mv_healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "milvus: the server exited while starting (see $dir/milvus.log):"; tail -5 "$dir/milvus.log"; rm -f "$dir/pid"; return 1
    fi
    if [ $waited -ge 120 ]; then
      echo "milvus: not healthy after 60 s (see $dir/milvus.log)"; milvus_stop >/dev/null; return 1
    fi
    sleep 0.5; waited=$((waited + 1))
  done
  if [ -f "$dir/netns" ]; then
    setsid python3 "$repo/scripts/services/relay.py" "$port" "/proc/$pid/ns/net" 19530 >"$dir/relay.log" 2>&1 < /dev/null &
    echo $! > "$dir/relay.pid"
    waited=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1).close()" 2>/dev/null; do
      if ! _mv_alive "$dir/relay.pid" || [ $waited -ge 20 ]; then
        echo "milvus: the relay to 127.0.0.1:$port did not start (see $dir/relay.log):"; tail -3 "$dir/relay.log"
        milvus_stop >/dev/null; return 1
      fi
      sleep 0.5; waited=$((waited + 1))
    done
    echo "milvus: up on 127.0.0.1:$port (server in its own network namespace; data in $dir/data)"
  else
    echo "milvus: up on 127.0.0.1:$port (data in $dir/data)"
  fi
}

milvus_stop() {
  local dir pid
  dir="$(_mv_dir)"
  if _mv_alive "$dir/relay.pid"; then kill -- "-$(cat "$dir/relay.pid")" 2>/dev/null || true; fi
  rm -f "$dir/relay.pid"
  if ! _mv_alive "$dir/pid"; then
    rm -f "$dir/pid"
    echo "milvus: not running"
    return 0
  fi
  pid="$(cat "$dir/pid")"
  # The whole group: the wrapper and the server it started.
  kill -TERM -- "-$pid" 2>/dev/null || true
  local waited=0
  while kill -0 -- "-$pid" 2>/dev/null && [ $waited -lt 20 ]; do sleep 0.5; waited=$((waited + 1)); done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$dir/pid"
  echo "milvus: stopped"
}

milvus_exports() {
  echo "export VULTUS_INDEX__URL=milvus://127.0.0.1:$(_mv_port)"
  # The contract and service tests make collections of their own per test on this server.
  echo "export VULTUS_TEST_INDEX_URL=milvus://127.0.0.1:$(_mv_port)"
}
