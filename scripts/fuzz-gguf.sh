#!/usr/bin/env bash
# The bounded fuzzing job for model loading: structure-aware GGUF mutants (default 1,000,000;
# first argument to change) taken through parsing, configuration, tokenizer and weight upload
# on the CPU backend, under an address-space limit so that any over-allocation fails, and a
# wall-clock limit so that any hang fails. CI runs a fixed-seed slice of the same test.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
MUTANTS="${1:-1000000}"
SEED="${GRETA_FUZZ_SEED:-$(date +%s)}"
cargo test --release -p llama2 --test gguf_fuzz --no-run
echo "fuzzing $MUTANTS mutants, seed $SEED, address space limited to 8 GiB"
(
    ulimit -v $((8 << 20))
    GRETA_FUZZ_MUTANTS="$MUTANTS" GRETA_FUZZ_SEED="$SEED" timeout 1800 \
        cargo test --release -p llama2 --test gguf_fuzz -- --nocapture --test-threads 1
)
