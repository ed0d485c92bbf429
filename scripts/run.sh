#!/usr/bin/env bash
# The main job: answers a chat prompt with SmolLM2-135M-Instruct on the best available
# backend (CUDA, else HIP, else the CPU interpreter), fetching the model if it is missing.
# Extra arguments go to `llama2 run` (e.g. --prompt "...", -n 64, --temperature 0.7).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
need_cargo
bash scripts/fetch-model.sh >/dev/null
cargo build --release --quiet -p llama2
exec target/release/llama2 run --chat --model models/SmolLM2-135M-Instruct.Q4_1.gguf "$@"
