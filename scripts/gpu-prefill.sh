#!/usr/bin/env bash
# Prompt-processing work on the GPU machine with binaries built elsewhere (default:
# .carry/bin/, else target/release/): the matrix-core kernels' selftest (and memcheck over
# the new kernels), their timings on Llama-2-7B shapes (extra arguments go to bench-kernels), then a
# random Llama-2-7B Q4_K_M written there: logits against the reference and `llama2 bench`
# (pp512, TTFT, tg128). PROMPT_TILES / SMALL_TILES list tiles to compare; SKIP_MEMCHECK,
# SKIP_LLAMA skip steps; BASE_BIN names a baseline build to benchmark beside. Writes logs
# to $OUT.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
BIN="$(gpu_bin "$REPO")"
OUT="${OUT:-$(mktemp -d)}"
export GRETA_CACHE_DIR="${GRETA_CACHE_DIR:-/tmp/greta-cache}" RUST_BACKTRACE=0
KERNELS="${KERNELS:-}"
MEMCHECK_KERNELS="${MEMCHECK_KERNELS:-mma_tile mma_tile_trans gemm attention_prefill embed take_row rmsnorm stats}"
status=0
run() { local log="$OUT/$1.log"; shift; "$@" >"$log" 2>&1; local rc=$?; tail -n "${TAIL:-40}" "$log"; [[ $rc -eq 0 ]] || { echo "FAILED ($rc): $*"; status=1; }; }

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
# shellcheck disable=SC2086
TAIL=8 run selftest "$BIN/greta" selftest --backend cuda $KERNELS
grep -v " pass" "$OUT/selftest.log" | head -20
if command -v compute-sanitizer >/dev/null 2>&1 && [[ -z "${SKIP_MEMCHECK:-}" ]]; then
    # shellcheck disable=SC2086
    TAIL=3 run memcheck compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/greta" selftest --backend cuda $MEMCHECK_KERNELS
fi
# Prompt-sized and batch-sized products, each with the tiles to compare.
run bench "$BIN/greta" bench-kernels --backend cuda --only prefill --rows 512 ${PROMPT_TILES:+--tiles $PROMPT_TILES} "$@"
TAIL=30 run bench_small "$BIN/greta" bench-kernels --backend cuda --only prefill --rows 16,64 ${SMALL_TILES:+--tiles $SMALL_TILES} "$@"
if [[ -z "${SKIP_LLAMA:-}" ]]; then
    L7B="${L7B:-/tmp/llama2-7b-q4km.gguf}"
    [[ -f "$L7B" ]] || TAIL=2 run gen "$BIN/llama2" gen-model -o "$L7B" --preset llama2-7b
    TAIL=6 run l7b_check "$BIN/llama2" check-logits --backend cuda --model "$L7B" -n 3
    TAIL=12 run l7b_bench "$BIN/llama2" bench --backend cuda --model "$L7B" --reps "${REPS:-3}"
    # The same benchmark with a baseline build carried beside (BASE_BIN), on this card.
    if [[ -n "${BASE_BIN:-}" ]]; then
        TAIL=12 run l7b_bench_base "$BASE_BIN/llama2" bench --backend cuda --model "$L7B" --reps "${REPS:-3}"
    fi
fi
echo "result: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
exit $status
