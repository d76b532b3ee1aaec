#!/usr/bin/env bash
# Create .venv in the repository and install Vultus into it; with --test, its test tools and the
# client libraries of the services (PostgreSQL, Milvus, Ray) too; with --services, only those;
# with --bench, also the face_recognition package that bench/speed.py compares against.
# Safe to run again: it reinstalls only when pyproject.toml (or the choice of extras) changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON="$candidate"; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "Vultus needs Python 3.11 or newer; install it (e.g. apt-get install python3) and run again." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $PYTHON ..." >&2
  if ! "$PYTHON" -m venv .venv; then
    rm -rf .venv
    echo "Could not create a virtual environment. On Debian or Ubuntu install the venv module" >&2
    echo "(apt-get install python3-venv) and run this again." >&2
    exit 1
  fi
fi

target=.
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--bench" ]; then
  # The tests also run the backends beyond one machine (PostgreSQL, Milvus, Ray), so their
  # client libraries come with the test tools.
  target=".[test,services]"
elif [ "${1:-}" = "--services" ]; then
  target=".[services]"
fi
stamp=.venv/.vultus-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $target"
if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
  echo "Installing Vultus${1:+ and its test tools} into .venv (first time: about a minute) ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
  echo "$want" > "$stamp"
  if [ "$target" != . ]; then
    # Installing the test extras includes the plain install, so both are now satisfied.
    echo "$(sha256sum pyproject.toml | cut -d' ' -f1) ." >> "$stamp"
  fi
fi
if [ "${1:-}" = "--bench" ] && ! .venv/bin/python -c "import face_recognition" 2>/dev/null; then
  # It declares a dependency on the dlib source package, which would compile for many minutes;
  # dlib-bin (already installed) provides the same module, so its own dependencies are skipped.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps face_recognition==1.3.0
fi
