# Helpers shared by the scripts (sourced, not run).

# need COMMAND PACKAGE: installs the Debian package providing COMMAND if it is missing.
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "installing $2 (for $1)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2"
    fi
}

# need_cargo: fails with a message when Rust is not installed.
need_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust (https://rustup.rs) first" >&2
        exit 1
    fi
}

# gpu_bin REPO: the folder of binaries the GPU scripts run: $GRETA_BIN if set, else
# REPO/.carry/bin when it holds them (built on another machine and carried), else
# REPO/target/release.
gpu_bin() {
    if [[ -n "${GRETA_BIN:-}" ]]; then
        echo "$GRETA_BIN"
    elif [[ -x "$1/.carry/bin/greta" ]]; then
        echo "$1/.carry/bin"
    else
        echo "$1/target/release"
    fi
}

# run NAME COMMAND...: runs COMMAND (at most STEP_TIMEOUT seconds, default 300) with its
# output in $OUT/NAME.log, prints the log's last TAIL lines (default 40) and how it ended,
# and sets status=1 when it fails. For the GPU scripts, which set OUT and status.
run() {
    local log="$OUT/$1.log"; shift
    local start=$SECONDS
    timeout "${STEP_TIMEOUT:-300}" "$@" >"$log" 2>&1
    local rc=$?
    tail -n "${TAIL:-40}" "$log"
    echo "[$((SECONDS - start)) s, exit $rc] $*"
    [[ $rc -eq 0 ]] || { echo "FAILED ($rc): $*"; status=1; }
}

# part NAME: whether NAME is among the space-separated words of $PARTS (which the GPU
# scripts pad with a space on each side).
part() { [[ "$PARTS" == *" $1 "* ]]; }
