#!/usr/bin/env bash
# Prompt-processing work on the GPU machine with binaries built elsewhere (default:
# .carry/bin/, else target/release/): the matrix-core kernels' selftest, their timings on
# Llama-2-7B shapes (extra arguments go to bench-kernels), a random Llama-2-7B Q4_K_M
# written there (logits against the reference, `llama2 bench`: pp512, TTFT, tg128), the
# decode kernels' timings, the selftest on sm_80 code, and memcheck over the new kernels.
# PARTS picks among `selftest prompt llama decode small sm80 memcheck` (default: all);
# PROMPT_TILES / SMALL_TILES list tiles to compare; BASE_BIN names a baseline build timed
# beside (kernels and engine) on the same card; STEP_TIMEOUT bounds each step (seconds,
# default 300). Writes logs to $OUT.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
BIN="$(gpu_bin "$REPO")"
OUT="${OUT:-$(mktemp -d)}"
export GRETA_CACHE_DIR="${GRETA_CACHE_DIR:-/tmp/greta-cache}" RUST_BACKTRACE=0
KERNELS="${KERNELS:-}"
MEMCHECK_KERNELS="${MEMCHECK_KERNELS:-mma_tile mma_tile_trans gemm attention_prefill embed take_row rmsnorm stats}"
PARTS=" ${PARTS:-selftest prompt llama decode small sm80 memcheck} "
status=0

# cuBLAS (the dense reference rate in bench-kernels) sits with the toolkit, off the
# loader's path.
[[ -d /usr/local/cuda/lib64 ]] && export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
if part selftest; then
    # shellcheck disable=SC2086
    TAIL=8 run selftest "$BIN/greta" selftest --backend cuda --graph $KERNELS
    grep -v " pass" "$OUT/selftest.log" | head -20
fi
# Prompt-sized products, each with the tiles to compare, then the baseline's.
part prompt && run bench "$BIN/greta" bench-kernels --backend cuda --only prefill --rows 512 ${PROMPT_TILES:+--tiles $PROMPT_TILES} "$@"
if part prompt && [[ -n "${BASE_BIN:-}" ]]; then
    TAIL=20 run bench_base "$BASE_BIN/greta" bench-kernels --backend cuda --only prefill --rows 512 "$@"
fi
if part llama; then
    L7B="${L7B:-/tmp/llama2-7b-q4km.gguf}"
    [[ -f "$L7B" ]] || TAIL=2 run gen "$BIN/llama2" gen-model -o "$L7B" --preset llama2-7b
    TAIL=6 run l7b_check "$BIN/llama2" check-logits --backend cuda --model "$L7B" -n 3
    TAIL=12 run l7b_bench "$BIN/llama2" bench --backend cuda --model "$L7B" --reps "${REPS:-3}"
    if [[ -n "${BASE_BIN:-}" ]]; then
        TAIL=12 run l7b_bench_base "$BASE_BIN/llama2" bench --backend cuda --model "$L7B" --reps "${REPS:-3}"
    fi
fi
# The decode kernels (matrix-vector products, attention, rooflines), and the baseline's.
if part decode; then
    TAIL=40 run bench_decode "$BIN/greta" bench-kernels --backend cuda --only decode
    [[ -n "${BASE_BIN:-}" ]] && TAIL=40 run bench_decode_base "$BASE_BIN/greta" bench-kernels --backend cuda --only decode
fi
# Batch-sized products.
part small && TAIL=30 run bench_small "$BIN/greta" bench-kernels --backend cuda --only prefill --rows 16,64 ${SMALL_TILES:+--tiles $SMALL_TILES} "$@"
# The same kernels built for sm_80 (no bulk copies, no dependent launch, Ampere's shared
# memory) on this card.
# shellcheck disable=SC2086
part sm80 && TAIL=3 run selftest_sm80 env GRETA_CUDA_TARGET=sm_80 "$BIN/greta" selftest --backend cuda --graph $KERNELS
if part memcheck; then
    # shellcheck disable=SC2086
    TAIL=3 run memcheck compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/greta" selftest --backend cuda $MEMCHECK_KERNELS
fi
echo "result: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
exit $status
