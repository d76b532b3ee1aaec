#!/usr/bin/env bash
# Set up Vultus and run the whole test suite, real-face and browser tests included.
#
#   ./scripts/test.sh [pytest arguments]
#
# The real photos are read from ../shared/data (or $VULTUS_TEST_DATA); when they are
# missing this fails instead of skipping the tests that need them.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
export VULTUS_TEST_DATA="${VULTUS_TEST_DATA:-$repo/../shared/data}"
if [ ! -d "$VULTUS_TEST_DATA/faces" ]; then
  echo "Test data not found at $VULTUS_TEST_DATA (expected a faces/ folder in it)." >&2
  echo "Put the shared data beside the repository as ../shared/data, or set VULTUS_TEST_DATA." >&2
  exit 1
fi
"$repo/scripts/setup.sh" --test

# The browser tests drive Debian's Chromium; install it when it is missing.
if ! command -v chromium >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests ..." >&2
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "The browser tests need Chromium: install Debian's chromium package (as root) and run again." >&2
    exit 1
  fi
fi

# The services the second pass runs on (scripts/services.sh), in a folder of this run's own,
# stopped and deleted at the end whatever happens.
services=(${VULTUS_TEST_SERVICES:-postgres milvus ray})
export VULTUS_SERVICES_DIR="${VULTUS_TEST_SERVICES_DIR:-$(mktemp -d /tmp/vultus-services.XXXXXX)}"
chmod 755 "$VULTUS_SERVICES_DIR"  # PostgreSQL runs as its own system user when this runs as root
finish() {
  "$repo/scripts/services.sh" reset "${services[@]}" >/dev/null 2>&1 || true
  rm -rf "$VULTUS_SERVICES_DIR"
}
on_services() {
  trap finish EXIT
  eval "$("$repo/scripts/services.sh" start "${services[@]}")"
  # The tests name each service themselves (VULTUS_TEST_*); a deployment the suite opens must
  # not follow the user-facing variables to a shared server.
  unset VULTUS_STORE__URL VULTUS_INDEX__URL VULTUS_INGEST_EXECUTOR VULTUS_RAY_ADDRESS
  .venv/bin/python -m pytest --durations=15 "$@"
}

if [ $# -gt 0 ]; then
  # Chosen tests: run them once, with the services up (tests/services needs them).
  on_services "$@"
  exit
fi
# First pass: everything that runs on the embedded default (SQLite + FAISS, the process pool).
.venv/bin/python -m pytest --durations=15 --ignore=tests/services
# Second pass: the store and index contract suites and the services' own tests (search, erasure,
# audit and migration journeys on real faces) on the local PostgreSQL, Milvus and Ray head.
# Of the contract suites, only their cases on the services: the others ran in the first pass.
on_services tests/services tests/contract -k "postgresql or milvus or services"
