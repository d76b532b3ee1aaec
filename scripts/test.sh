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
exec .venv/bin/python -m pytest "$@"
