#!/usr/bin/env bash
# Installs the toolchains that compile GRETA's generated kernels without a GPU, then checks them:
#   - clang-19 (AMDGPU backend), LLVM tools, ROCm 5.2.3 device libraries and HIP headers (apt);
#   - NVRTC and the CUDA headers (PyPI wheels) into $GRETA_TOOLS/nvidia;
#   - an AMDGPU device-library folder that also covers gfx941/gfx942, $GRETA_TOOLS/amdgpu-device-libs;
#   - $GRETA_TOOLS/env, a file to source that exports where everything is.
# GRETA_TOOLS defaults to <repo root>/.greta-tools. Running it again only re-checks what is there.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GRETA_TOOLS=${GRETA_TOOLS:-$REPO_ROOT/.greta-tools}

APT_PACKAGES=(clang-19 lld-19 llvm-19 rocm-device-libs libamdhip64-dev)
# NVRTC 13.0 is the version on the GPU machine (CUDA 13.0), so CI and the device agree.
NVRTC_VERSION=13.0.88
CUDA_RUNTIME_VERSION=13.0.96
ROCM_BITCODE=/usr/lib/x86_64-linux-gnu/amdgcn/bitcode
# How long to wait for another apt/dpkg run to release its locks.
APT_LOCK_WAIT_S=900

NVIDIA_DIR=$GRETA_TOOLS/nvidia
DEVICE_LIBS=$GRETA_TOOLS/amdgpu-device-libs
CLANG=/usr/bin/clang++-19
READELF=/usr/bin/llvm-readelf-19

log() { printf '[install-toolchains] %s\n' "$*" >&2; }
die() {
    printf '[install-toolchains] FAILED: %s\n' "$*" >&2
    exit 1
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------------------
# apt packages

package_installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

# apt-get that waits while another apt or dpkg process holds the locks. DPkg::Lock::Timeout
# covers the dpkg lock; the package-list lock of `apt-get update` is retried here.
apt_get() {
    local deadline=$((SECONDS + APT_LOCK_WAIT_S)) out=$WORK/apt.log waited=0
    while true; do
        if as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout="$APT_LOCK_WAIT_S" "$@" >"$out" 2>&1; then
            return 0
        fi
        if grep -q 'Could not get lock' "$out" && ((SECONDS < deadline)); then
            ((waited)) || log "apt is busy (another apt or dpkg is running); waiting up to ${APT_LOCK_WAIT_S} s"
            waited=1
            sleep 5
            continue
        fi
        cat "$out" >&2
        die "apt-get $* failed (output above)"
    done
}

install_apt_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        package_installed "$pkg" || missing+=("$pkg")
    done
    if ! nvrtc_installed && ! python3 -m pip --version >/dev/null 2>&1; then
        missing+=(python3-pip)
    fi
    if ((${#missing[@]} == 0)); then
        log "apt: ${APT_PACKAGES[*]} already installed"
        return
    fi
    log "apt: installing ${missing[*]} (waits while another apt or dpkg run holds the lock)"
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------------------------------
# NVRTC and CUDA headers from PyPI

nvrtc_installed() {
    [[ -d $NVIDIA_DIR/nvidia_cuda_nvrtc-$NVRTC_VERSION.dist-info &&
        -d $NVIDIA_DIR/nvidia_cuda_runtime-$CUDA_RUNTIME_VERSION.dist-info ]]
}

install_nvrtc() {
    if nvrtc_installed; then
        log "nvrtc: $NVRTC_VERSION and CUDA headers $CUDA_RUNTIME_VERSION already in $NVIDIA_DIR"
        return
    fi
    log "nvrtc: installing nvidia-cuda-nvrtc==$NVRTC_VERSION nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION (about 90 MB download)"
    mkdir -p "$GRETA_TOOLS"
    local staging=$GRETA_TOOLS/nvidia.partial
    rm -rf "$staging"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$staging" \
        "nvidia-cuda-nvrtc==$NVRTC_VERSION" "nvidia-cuda-runtime==$CUDA_RUNTIME_VERSION" >&2 \
        || die "pip could not install NVRTC into $staging"
    rm -rf "$NVIDIA_DIR"
    mv "$staging" "$NVIDIA_DIR"
}

# ---------------------------------------------------------------------------------------------
# AMDGPU device libraries (ROCm 5.2.3 stops at gfx940: derive gfx941/gfx942)

derive_isa_version() {
    local version=$1 target=$DEVICE_LIBS/oclc_isa_version_$1.bc
    local source=$ROCM_BITCODE/oclc_isa_version_940.bc
    [[ -f $target && $target -nt $source ]] && return
    llvm-dis-19 -o "$WORK/isa_940.ll" "$source" || die "llvm-dis-19 could not read $source"
    grep -q 'constant i32 9400,' "$WORK/isa_940.ll" \
        || die "$source does not define __oclc_ISA_version as 9400; cannot derive gfx$version"
    sed "s/constant i32 9400,/constant i32 ${version}0,/" "$WORK/isa_940.ll" \
        | llvm-as-19 -o "$target.tmp" || die "llvm-as-19 could not build $target"
    mv "$target.tmp" "$target"
}

make_device_libs() {
    [[ -d $ROCM_BITCODE ]] || die "$ROCM_BITCODE is missing (package rocm-device-libs)"
    mkdir -p "$DEVICE_LIBS"
    local bc
    for bc in "$ROCM_BITCODE"/*.bc; do
        ln -sfn "$bc" "$DEVICE_LIBS/$(basename "$bc")"
    done
    derive_isa_version 941
    derive_isa_version 942
    log "amdgpu device libs: $DEVICE_LIBS ($(find "$DEVICE_LIBS" -name '*.bc' | wc -l) files)"
}

# ---------------------------------------------------------------------------------------------
# env file

write_env() {
    local nvrtc_libs=("$NVIDIA_DIR"/nvidia/cu13/lib/libnvrtc.so.*)
    [[ -f ${nvrtc_libs[0]} ]] || die "no libnvrtc.so.* under $NVIDIA_DIR/nvidia/cu13/lib"
    local builtins_libs=("$NVIDIA_DIR"/nvidia/cu13/lib/libnvrtc-builtins.so.*)
    [[ -f ${builtins_libs[0]} ]] || die "no libnvrtc-builtins.so.* under $NVIDIA_DIR/nvidia/cu13/lib"
    local include=$NVIDIA_DIR/nvidia/cu13/include
    [[ -f $include/cuda_fp16.h ]] || die "no cuda_fp16.h in $include"
    [[ -x $CLANG ]] || die "$CLANG is missing (package clang-19)"
    [[ -x $READELF ]] || die "$READELF is missing (package llvm-19)"
    {
        printf 'export GRETA_TOOLS=%q\n' "$GRETA_TOOLS"
        printf 'export GRETA_NVRTC_LIB=%q\n' "${nvrtc_libs[0]}"
        # libnvrtc has no RUNPATH: it finds its builtins library only when that is already
        # loaded (dlopen this path first) or on LD_LIBRARY_PATH.
        printf 'export GRETA_NVRTC_BUILTINS_LIB=%q\n' "${builtins_libs[0]}"
        printf 'export GRETA_CUDA_INCLUDE=%q\n' "$include"
        printf 'export GRETA_AMDGPU_DEVICE_LIBS=%q\n' "$DEVICE_LIBS"
        printf 'export GRETA_CLANG=%q\n' "$CLANG"
        printf 'export GRETA_READELF=%q\n' "$READELF"
    } >"$GRETA_TOOLS/env.tmp"
    mv "$GRETA_TOOLS/env.tmp" "$GRETA_TOOLS/env"
    log "wrote $GRETA_TOOLS/env"
}

# ---------------------------------------------------------------------------------------------
# checks: one tiny kernel through each toolchain

check_amdgpu() {
    cat >"$WORK/k.hip" <<'EOF'
#include <hip/hip_runtime.h>
extern "C" __global__ void __launch_bounds__(256) greta_check(float *out) {
    out[threadIdx.x] = __shfl_xor(static_cast<float>(threadIdx.x), 1);
}
EOF
    "$GRETA_CLANG" -x hip -std=c++17 -O3 --offload-arch=gfx942 --rocm-path=/usr \
        --rocm-device-lib-path="$GRETA_AMDGPU_DEVICE_LIBS" --cuda-device-only --no-gpu-bundle-output \
        -c "$WORK/k.hip" -o "$WORK/k.co" 2>"$WORK/clang.log" \
        || { cat "$WORK/clang.log" >&2; die "clang-19 could not compile a kernel for gfx942"; }
    local wave
    wave=$("$GRETA_READELF" --notes "$WORK/k.co" | awk '$1 == ".wavefront_size:" { print $2 }')
    [[ $wave == 64 ]] || die "gfx942 code object reports .wavefront_size '$wave', expected 64"
    log "check: clang-19 -> gfx942 code object, .wavefront_size 64"
}

check_nvrtc() {
    python3 - "$GRETA_NVRTC_BUILTINS_LIB" "$GRETA_NVRTC_LIB" >&2 <<'EOF' \
        || die "NVRTC could not compile a kernel for sm_90 (to reinstall it: rm -rf $(printf %q "$NVIDIA_DIR"))"
import ctypes, sys

try:
    ctypes.CDLL(sys.argv[1])
    lib = ctypes.CDLL(sys.argv[2])
except OSError as e:
    sys.exit(f"cannot load NVRTC: {e}")
src = b'extern "C" __global__ void greta_check(float *out) { out[threadIdx.x] = 1.0f; }'
prog = ctypes.c_void_p()
opts = (ctypes.c_char_p * 1)(b"--gpu-architecture=sm_90")
if lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"check.cu", 0, None, None) != 0:
    sys.exit("nvrtcCreateProgram failed")
if lib.nvrtcCompileProgram(prog, 1, opts) != 0:
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    sys.exit("nvrtcCompileProgram failed:\n" + log.value.decode())
size = ctypes.c_size_t()
lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
cubin = ctypes.create_string_buffer(size.value)
lib.nvrtcGetCUBIN(prog, cubin)
if not cubin.raw.startswith(b"\x7fELF"):
    sys.exit("NVRTC returned no sm_90 cubin")
major, minor = ctypes.c_int(), ctypes.c_int()
lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
print(f"[install-toolchains] check: NVRTC {major.value}.{minor.value} -> sm_90 cubin, {size.value} bytes")
EOF
}

main() {
    local start=$SECONDS
    log "installing into $GRETA_TOOLS"
    install_apt_packages
    install_nvrtc
    make_device_libs
    write_env
    # The checks use the paths exactly as the env file gives them.
    # shellcheck source=/dev/null
    source "$GRETA_TOOLS/env"
    check_amdgpu
    check_nvrtc
    log "done in $((SECONDS - start)) s; use: source $(printf %q "$GRETA_TOOLS/env")"
}

main "$@"
