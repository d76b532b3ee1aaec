#!/usr/bin/env bash
# Set up Vultus and index a folder of photos into ./vultus-data, then show how to search it.
#
#   ./scripts/quickstart.sh PHOTO_FOLDER
#
# The photos are registered under a source called "quickstart". Its legal basis, purpose and
# retention default to an evaluation setting; for real use register your own source with
# `vultus source add` (see README.md). Override here with QUICKSTART_BASIS,
# QUICKSTART_PURPOSE, QUICKSTART_RETENTION and VULTUS_DATA.
set -euo pipefail
if [ $# -lt 1 ] || [ ! -e "$1" ]; then
  echo "usage: ./scripts/quickstart.sh PHOTO_FOLDER   (a folder, file or zip/tar archive of photos)" >&2
  exit 2
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
"$repo/scripts/setup.sh"
vultus="$repo/.venv/bin/vultus"
export VULTUS_DATA="${VULTUS_DATA:-$PWD/vultus-data}"

if ! "$vultus" source list --json | grep -q '"name": "quickstart"'; then
  "$vultus" source add quickstart \
    --basis "${QUICKSTART_BASIS:-legitimate-interests}" \
    --purpose "${QUICKSTART_PURPOSE:-evaluating Vultus on a test collection}" \
    --retention "${QUICKSTART_RETENTION:-30d}"
fi
"$vultus" ingest "$@" --source quickstart
echo
"$vultus" stats
probe=$(find "$1" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) 2>/dev/null | sort | head -n 1)
echo
echo "Search the index with any photo of a person:"
echo "  $vultus --data $VULTUS_DATA search PHOTO --purpose \"why you search\" --case CASE-REF"
if [ -n "$probe" ]; then
  echo
  echo "For example, with $probe:"
  "$vultus" search "$probe" --purpose "quickstart demonstration" --case QUICKSTART --top 5 || true
fi
