#!/usr/bin/env bash
# The test command: installs every toolchain and data file the tests need on a fresh
# Debian 12 machine (idempotent, quick when already present), then runs the whole suite.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
fi

bash scripts/install-toolchains.sh
bash scripts/fetch-test-data.sh
bash scripts/fetch-model.sh
# shellcheck disable=SC1091
source .greta-tools/env

cargo test --workspace --release "$@"
