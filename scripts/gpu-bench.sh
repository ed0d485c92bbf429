#!/usr/bin/env bash
# Kernel timings on the GPU machine with binaries built elsewhere (default: .carry/bin/,
# else target/release/): `greta bench-kernels` with graph replay and with eager batches,
# then Nsight Compute's kernel durations and DRAM traffic for the same launches when ncu is
# installed. Writes everything to $OUT when it is set; extra arguments go to bench-kernels.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh
source "$REPO/scripts/lib.sh"
BIN="$(gpu_bin "$REPO")"
OUT="${OUT:-$(mktemp -d)}"
export GRETA_CACHE_DIR="${GRETA_CACHE_DIR:-$(mktemp -d)}"

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv,noheader | tee "$OUT/device.txt"
"$BIN/greta" compile --backend cuda >/dev/null
"$BIN/greta" bench-kernels --backend cuda "$@" | tee "$OUT/bench-graph.txt"
"$BIN/greta" bench-kernels --backend cuda --eager "$@" | tee "$OUT/bench-eager.txt"
if [[ -n "${GRETA_NCU:-}" ]] && command -v ncu >/dev/null 2>&1; then
    # Unlocked clocks, as the timings above ran; L2 flushed before each kernel.
    timeout 240 ncu --clock-control none --csv --page raw \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__registers_per_thread \
        -k 'regex:matvec|read_stream|attention' \
        "$BIN/greta" bench-kernels --backend cuda --reps 1 "$@" >"$OUT/ncu.csv" 2>"$OUT/ncu.err"
    echo "ncu exit $?, $(wc -l <"$OUT/ncu.csv") lines"
fi
