#!/usr/bin/env bash
# One setup command: a .venv with every pinned dependency, then this package (editable).
#
#   ./setup.sh              create .venv if missing, install the pins (idempotent)
#   ./setup.sh --fresh      remove .venv first (what CI does)
#   ./setup.sh --browser    also install Debian's chromium + chromium-driver (browser tests; needs apt and root)
#
# Order matters: torch first (the pinned CPU build; an unpinned torch pulls several GB of
# CUDA), then the full lock file, then the package itself without resolving anything again.
set -euo pipefail
cd "$(dirname "$0")"

FRESH=0
BROWSER=0
for arg in "$@"; do
  case "$arg" in
    --fresh) FRESH=1 ;;
    --browser) BROWSER=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "setup.sh: Python 3.11 is required; $PY is $("$PY" -V 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 2
fi

[ "$FRESH" = 1 ] && rm -rf .venv
[ -x .venv/bin/python ] || "$PY" -m venv .venv
step() { echo "[setup] $*"; }
step "pip"
.venv/bin/pip install --quiet --upgrade pip
step "torch==2.13.0 (CPU)"
.venv/bin/pip install --quiet torch==2.13.0
step "requirements.lock"
.venv/bin/pip install --quiet -r requirements.lock
step "recsys-assets (editable, --no-deps)"
.venv/bin/pip install --quiet --no-deps -e .

if [ "$BROWSER" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  step "chromium + chromium-driver (Debian)"
  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
    || echo "[setup] chromium install failed: the browser tests will skip"
fi

step "done. Next: .venv/bin/recsys-assets demo   (then: .venv/bin/pytest -q)"
