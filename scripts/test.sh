#!/usr/bin/env bash
# Set up Vultus and run the whole test suite, real-face tests included.
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
"$repo/scripts/setup.sh"
exec .venv/bin/python -m pytest "$@"
