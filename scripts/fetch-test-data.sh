#!/usr/bin/env bash
# Fetches tokenizer reference data into <repo>/data/: vocab-only GGUFs with reference
# encodings (Llama-2 SentencePiece; GPT-2 and StarCoder byte-level BPE, the latter with the
# digit-splitting pre-tokenizer SmolLM2 shares), taken from the node-llama-cpp npm package,
# which ships llama.cpp's source as a git bundle. Idempotent: files already present are kept.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$REPO/data"
PKG="node-llama-cpp@3.21.1"
FILES=()
for vocab in llama-spm gpt-2 starcoder; do
    FILES+=("ggml-vocab-$vocab.gguf" "ggml-vocab-$vocab.gguf.inp" "ggml-vocab-$vocab.gguf.out")
done

# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"

all_present() {
    local f
    for f in "${FILES[@]}"; do
        [[ -s "$DATA/$f" ]] || return 1
    done
}

mkdir -p "$DATA"
if ! all_present; then
    need npm npm
    need git git
    need tar tar
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    (cd "$WORK" && npm pack --silent "$PKG" >/dev/null)
    tar -xzf "$WORK"/node-llama-cpp-*.tgz -C "$WORK" package/llama/gitRelease.bundle
    git init -q "$WORK/v"
    git -C "$WORK/v" fetch -q "$WORK/package/llama/gitRelease.bundle" HEAD
    for f in "${FILES[@]}"; do
        git -C "$WORK/v" show "FETCH_HEAD:models/$f" >"$DATA/$f.tmp"
        mv "$DATA/$f.tmp" "$DATA/$f"
    done
fi

for f in "${FILES[@]}"; do
    echo "$DATA/$f"
done
