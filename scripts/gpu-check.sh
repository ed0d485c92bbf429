#!/usr/bin/env bash
# Runs on the GPU machine with binaries built elsewhere (default: .carry/bin/, else
# target/release/): a cold and a warm start of the kernel cache, the CUDA selftest with the
# graph test (with the device's own code, then with sm_80's), and compute-sanitizer memcheck
# over the selftest. Writes the logs and a
# summary to $OUT when it is set.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
BIN="$(gpu_bin "$REPO")"
OUT="${OUT:-$(mktemp -d)}"
export GRETA_CACHE_DIR="$(mktemp -d)"
SUMMARY="$OUT/summary.txt"
status=0

step() { echo "== $*" | tee -a "$SUMMARY"; }
run() {
    # $1: log name; rest: command. Appends the tail to the summary; records failures.
    local log="$OUT/$1.log"; shift
    local start ms
    start=$(date +%s%N)
    "$@" >"$log" 2>&1
    local rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf 'exit %d, %d ms: %s\n' "$rc" "$ms" "$*" | tee -a "$SUMMARY"
    [[ $rc -eq 0 ]] || status=1
    return $rc
}

: >"$SUMMARY"
step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee -a "$SUMMARY"
"$BIN/greta" devices | tee -a "$SUMMARY"

step "cold start: every built-in kernel compiled by NVRTC into an empty cache"
run compile_cold "$BIN/greta" compile --backend cuda
cat "$OUT/compile_cold.log" | tee -a "$SUMMARY"
step "warm start: every kernel loaded from the cache (nothing compiled)"
run compile_warm "$BIN/greta" compile --backend cuda
cat "$OUT/compile_warm.log" | tee -a "$SUMMARY"
grep -q "(0 compiled" "$OUT/compile_warm.log" || { echo "warm start compiled kernels" | tee -a "$SUMMARY"; status=1; }

step "selftest and graph test"
run selftest "$BIN/greta" selftest --backend cuda --graph
cat "$OUT/selftest.log" | tee -a "$SUMMARY"
"$BIN/greta" cache stats | tee -a "$SUMMARY"

step "selftest of the sm_80 code (no bulk copies, no dependent launch, Ampere's shared memory)"
run selftest_sm80 env GRETA_CUDA_TARGET=sm_80 "$BIN/greta" selftest --backend cuda --graph
tail -2 "$OUT/selftest_sm80.log" | tee -a "$SUMMARY"

step "compute-sanitizer memcheck over the selftest"
if command -v compute-sanitizer >/dev/null 2>&1; then
    run memcheck compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/greta" selftest --backend cuda
    grep -E "ERROR SUMMARY|Error:" "$OUT/memcheck.log" | tail -3 | tee -a "$SUMMARY"
else
    echo "compute-sanitizer not found" | tee -a "$SUMMARY"; status=1
fi

step "result: $([[ $status -eq 0 ]] && echo PASS || echo FAIL)"
exit $status
