#!/usr/bin/env bash
# Runs the Llama example on the GPU machine with binaries built elsewhere: SmolLM2 (the
# greedy answer, logit agreement with the reference, a trace) and a random Llama-2-7B
# Q4_K_M model written there (logit agreement, trace, benchmark, and generation at cache
# depth 3968). Logs go to $OUT.
# Usage: gpu-llama.sh SMOLLM2.gguf
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
BIN="$(gpu_bin "$REPO")"
OUT="${OUT:-$(mktemp -d)}"
SMOL="$1"
L7B="${L7B:-/tmp/llama2-7b-q4km.gguf}"
export GRETA_CACHE_DIR="${GRETA_CACHE_DIR:-/tmp/greta-cache}" RUST_BACKTRACE=0
status=0
step() { echo "== $*"; }
TAIL=25

step "SmolLM2 greedy chat answer"
run smol_run "$BIN/llama2" run --backend cuda --model "$SMOL" --chat --prompt "What is the capital of France?" -n 16
step "SmolLM2 logits vs reference"
run smol_check "$BIN/llama2" check-logits --backend cuda --model "$SMOL" -n 8
step "SmolLM2 trace"
run smol_trace "$BIN/llama2" trace --backend cuda --model "$SMOL" -n 1
step "random Llama-2-7B Q4_K_M"
[[ -f "$L7B" ]] || run gen "$BIN/llama2" gen-model -o "$L7B" --preset llama2-7b
run l7b_check "$BIN/llama2" check-logits --backend cuda --model "$L7B" -n 3
run l7b_trace "$BIN/llama2" trace --backend cuda --model "$L7B" -n 1
run l7b_bench "$BIN/llama2" bench --backend cuda --model "$L7B" --reps 3
# Generation with a nearly full 4096-position cache: the long-sequence attention kernel.
run l7b_depth "$BIN/llama2" bench --backend cuda --model "$L7B" --reps 3 --depth 3968 --prompt-tokens 16
step "result: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
exit $status
