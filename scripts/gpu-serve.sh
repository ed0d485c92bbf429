#!/usr/bin/env bash
# Serving on the GPU machine with binaries built elsewhere (default: .carry/bin/, else
# target/release/): the batched-decode kernels' selftest (sm_90 and sm_80 code), the decode
# kernels' timings and `llama2 bench` (beside BASE_BIN's when given, on the same card),
# then `llama2 serve` on a random Llama-2-7B Q4_K_M with `llama2 load` at 1, 8, 32 and 64
# concurrent streams (aggregate tokens/s, TTFT p50/p99, batched-equals-alone check).
# STREAMS, TOKENS, PARALLEL, SERVE_CTX and REPS adjust the load; SERVE_TILES lists product
# tiles to serve (and to time the batched engine, part `batch`) with in turn (0: the
# library's); MATVEC_ROWS lists the largest decode steps on the matrix-vector products to
# time the batched engine with (part `batch`; default: the engine's); DECODE_PRODUCTS lists
# the products of larger decode steps (`tiled`, `skinny`) to time and serve with in turn;
# SERVE_MATVEC_ROWS sets the server's largest matrix-vector step (default: the engine's);
# BATCH_TILES lists tiles and BATCH_SKINNY few-row shapes (0: the library's), comma-
# separated, for the products at BATCH_ROWS rows in `bench-kernels` (part `tiles`). Part
# `memcheck` runs the batched kernels' selftest under compute-sanitizer; part `exact`
# serves with every decode step on one product (EXACT_ARGS, default the matrix-vector
# ones) and checks greedy requests alone against beside 31 others.
# PARTS picks among `selftest memcheck decode bench tiles batch profile serve exact` (default:
# selftest decode bench serve). Writes logs to $OUT.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
BIN="$(gpu_bin "$REPO")"
OUT="${OUT:-$(mktemp -d)}"
export GRETA_CACHE_DIR="${GRETA_CACHE_DIR:-/tmp/greta-cache}" RUST_BACKTRACE=0
PARTS=" ${PARTS:-selftest decode bench serve} "
L7B="${L7B:-/tmp/llama2-7b-q4km.gguf}"
status=0

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
[[ -f "$L7B" ]] || TAIL=2 run gen "$BIN/llama2" gen-model -o "$L7B" --preset llama2-7b
if part selftest; then
    TAIL=12 run selftest_batch "$BIN/greta" selftest --backend cuda --graph attention attention_rows qkv_rows argmax_rows argmax matvec gemm skinny
    TAIL=3 run selftest_batch_seed2 "$BIN/greta" selftest --backend cuda --seed 2 attention attention_rows matvec gemm skinny
    TAIL=3 run selftest_batch_sm80 env GRETA_CUDA_TARGET=sm_80 "$BIN/greta" selftest --backend cuda attention attention_rows qkv_rows argmax_rows argmax matvec gemm skinny
    grep -h FAIL "$OUT"/selftest_batch*.log
fi
if part memcheck; then
    TAIL=3 run memcheck_batch compute-sanitizer --tool memcheck --error-exitcode 3 \
        "$BIN/greta" selftest --backend cuda attention attention_rows qkv_rows argmax_rows matvec gemm skinny
fi
if part decode; then
    TAIL=12 run bench_decode "$BIN/greta" bench-kernels --backend cuda --only decode
    [[ -n "${BASE_BIN:-}" ]] && TAIL=12 run bench_decode_base "$BASE_BIN/greta" bench-kernels --backend cuda --only decode
fi
if part bench; then
    TAIL=8 run l7b_bench "$BIN/llama2" bench --backend cuda --model "$L7B" --reps "${REPS:-2}"
    [[ -n "${BASE_BIN:-}" ]] && TAIL=8 run l7b_bench_base "$BASE_BIN/llama2" bench --backend cuda --model "$L7B" --reps "${REPS:-2}"
fi
if part tiles; then
    TAIL=120 run bench_tiles "$BIN/greta" bench-kernels --backend cuda --only prefill \
        --rows "${BATCH_ROWS:-32}" --tiles "${BATCH_TILES:-0}" ${BATCH_SKINNY:+--skinny "$BATCH_SKINNY"}
fi
# The batched engine without HTTP: wall and device time per step at each batch size.
if part batch; then
    for tile in ${SERVE_TILES:-0}; do
        for mv in ${MATVEC_ROWS:-default}; do
            for product in ${DECODE_PRODUCTS:-tiled}; do
                tile_arg=(--decode-product "$product"); [[ "$tile" == 0 ]] || tile_arg+=(--tile "$tile")
                [[ "$mv" == default ]] || tile_arg+=(--matvec-rows "$mv")
                echo "== batched decode with tile $tile, matrix-vector products up to $mv rows, then $product"
                TAIL=12 run "batch-$tile-$mv-$product" "$BIN/llama2" bench --backend cuda --model "$L7B" \
                    --batch "${STREAMS:-1,8,32,64}" --gen-tokens "${TOKENS:-128}" "${tile_arg[@]}"
            done
        done
    done
fi
# Per-kernel device time (Nsight Compute, clocks and caches left alone): a few decode steps of one
# sequence, then a few batched steps at each of PROFILE_BATCH's sizes.
if part profile; then
    ncu_times() {
        local name=$1; shift
        STEP_TIMEOUT=400 TAIL=2 run "ncu-$name" ncu --clock-control none --cache-control none --csv \
            --metrics gpu__time_duration.sum "$@"
        python3 "$REPO/scripts/kernel-times.py" "$OUT/ncu-$name.log" >"$OUT/kernels-$name.txt"
        head -n 30 "$OUT/kernels-$name.txt"
    }
    ncu_times decode "$BIN/llama2" bench --backend cuda --model "$L7B" --prompt-tokens 8 \
        --gen-tokens 8 --reps 1
    # Where one few-row product's time goes, at each of PROFILE_BATCH's row counts.
    for rows in ${PROFILE_BATCH:-1 32}; do
        STEP_TIMEOUT=300 TAIL=80 run "ncu-skinny$rows" ncu --clock-control none --cache-control none \
            -k regex:skinny --launch-skip 5 --launch-count 1 --section LaunchStats \
            --section SpeedOfLight --section WarpStateStats --section Occupancy \
            --section MemoryWorkloadAnalysis "$BIN/greta" bench-kernels --backend cuda \
            --only prefill --rows "$rows" --skinny 0 --reps 10
    done
    for rows in ${PROFILE_BATCH:-1 32}; do
        ncu_times "batch$rows" "$BIN/llama2" bench --backend cuda --model "$L7B" --batch "$rows" \
            --gen-tokens 4 --decode-product "${PROFILE_PRODUCT:-skinny}"
    done
fi
# start_server NAME PORT ARGS...: starts `llama2 serve` on the model at PORT with ARGS, its
# log in $OUT/server-NAME.log, and waits until it listens (or exits); sets `server`.
start_server() {
    local log="$OUT/server-$1.log" port=$2; shift 2
    "$BIN/llama2" serve --backend cuda --model "$L7B" --port "$port" --ctx "${SERVE_CTX:-512}" \
        --queue 128 "$@" >"$log" 2>&1 &
    server=$!
    for _ in $(seq 1 120); do
        grep -q "^listening on" "$log" && break
        kill -0 "$server" 2>/dev/null || break
        sleep 1
    done
}
if part serve; then
    PORT=18080
    for tile in ${SERVE_TILES:-0}; do
        for product in ${DECODE_PRODUCTS:-tiled}; do
            name="$tile-$product"
            tile_arg=(--decode-product "$product"); [[ "$tile" == 0 ]] || tile_arg+=(--tile "$tile")
            [[ -n "${SERVE_MATVEC_ROWS:-}" ]] && tile_arg+=(--matvec-rows "$SERVE_MATVEC_ROWS")
            echo "== serving with tile $tile, $product products above the matrix-vector steps"
            start_server "$name" "$PORT" --parallel "${PARALLEL:-64}" "${tile_arg[@]}"
            grep -E "warm-up|listening|Error" "$OUT/server-$name.log"
            TAIL=12 run "load-$name" "$BIN/llama2" load --url "http://127.0.0.1:$PORT" \
                --model "$(basename "$L7B" .gguf)" --streams "${STREAMS:-1,8,32,64}" -n "${TOKENS:-128}" \
                --reps "${REPS:-2}"
            curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics-$name.txt" 2>/dev/null
            grep -E "^greta_(step_rows_(sum|count)|requests_total)" "$OUT/metrics-$name.txt"
            kill -TERM "$server"
            wait "$server"; echo "server exit: $?"
            grep -a "shutting down" "$OUT/server-$name.log" | tail -n 1
        done
    done
fi
if part exact; then
    PORT=18081
    read -ra exact_args <<<"${EXACT_ARGS:---matvec-rows 64}"
    start_server exact "$PORT" --parallel 64 "${exact_args[@]}"
    echo "== every decode step on one product: ${exact_args[*]}"
    TAIL=6 run load-exact "$BIN/llama2" load --url "http://127.0.0.1:$PORT" \
        --model "$(basename "$L7B" .gguf)" --streams 32 -n "${TOKENS:-128}" --reps 1
    kill -TERM "$server"
    wait "$server"
fi
echo "result: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
exit $status
