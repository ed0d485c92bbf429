#!/usr/bin/env bash
# Installs the official `openai` Python client into a virtual environment under
# GRETA_TOOLS (default <repo>/.greta-tools/py), for the server's client test. Idempotent.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
VENV="${GRETA_TOOLS:-$REPO/.greta-tools}/py"
VERSION="3.63.0"

need python3 python3
if [[ ! -x "$VENV/bin/python" ]]; then
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
        python3 -m venv "$VENV"
    fi
fi
if ! "$VENV/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$VERSION')" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$VERSION"
fi
"$VENV/bin/python" -c "import openai; print('openai', openai.__version__)"
