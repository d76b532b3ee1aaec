#!/usr/bin/env bash
# Local services for trying Vultus beyond one machine, and for the tests that run on them:
# PostgreSQL (Debian's), Milvus standalone (PyPI `milvus`, in its own venv) and a Ray head,
# each on loopback, its data under .services/ in the repository.
#
#   scripts/services.sh start [SERVICE...]   start them (all by default); prints the
#                                            `export VULTUS_...=` lines that point vultus at them:
#                                            eval "$(scripts/services.sh start)"
#   scripts/services.sh stop [SERVICE...]    stop them
#   scripts/services.sh status [SERVICE...]  say which are up
#   scripts/services.sh reset [SERVICE...]   stop them, then delete their data
#
# SERVICE is one of: postgres, milvus, ray. Each lives in scripts/services/SERVICE.sh, which
# defines SERVICE_start, SERVICE_stop, SERVICE_status (exit 0 when up) and SERVICE_exports.
# Messages go to stderr; stdout carries only the export lines, so that eval is safe.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
export VULTUS_SERVICES_DIR="${VULTUS_SERVICES_DIR:-$repo/.services}"
ALL=(postgres milvus ray)

usage() {
  echo "usage: scripts/services.sh start|stop|status|reset [$(IFS='|'; echo "${ALL[*]}")...]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
action="$1"; shift
services=("$@")
if [ ${#services[@]} -eq 0 ]; then
  # By default, every service this checkout has a script for.
  for s in "${ALL[@]}"; do [ -f "$repo/scripts/services/$s.sh" ] && services+=("$s"); done
fi
for s in "${services[@]}"; do
  case " ${ALL[*]} " in *" $s "*) ;; *) echo "Unknown service '$s': choose from ${ALL[*]}." >&2; exit 2 ;; esac
  [ -f "$repo/scripts/services/$s.sh" ] || { echo "Service '$s' is not available yet (no scripts/services/$s.sh)." >&2; exit 2; }
  # shellcheck source=/dev/null
  source "$repo/scripts/services/$s.sh"
done
mkdir -p "$VULTUS_SERVICES_DIR"

case "$action" in
  start)
    for s in "${services[@]}"; do "${s}_start" >&2; done
    for s in "${services[@]}"; do "${s}_exports"; done
    ;;
  stop)
    for s in "${services[@]}"; do "${s}_stop" >&2 || true; done
    ;;
  status)
    rc=0
    for s in "${services[@]}"; do
      if "${s}_status" >/dev/null 2>&1; then echo "$s: up" >&2; else echo "$s: down" >&2; rc=1; fi
    done
    exit $rc
    ;;
  reset)
    for s in "${services[@]}"; do "${s}_stop" >&2 || true; rm -rf "${VULTUS_SERVICES_DIR:?}/$s"; echo "$s: data deleted" >&2; done
    ;;
  *) usage ;;
esac
