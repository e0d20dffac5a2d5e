#!/usr/bin/env bash
# Installs what loongtrace needs on a Debian machine: QEMU for LoongArch, gdb-multiarch, and the
# nightly toolchain's rust-src and llvm-tools components. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v qemu-system-loongarch64 >/dev/null || need_pkgs+=(qemu-system-misc)
command -v gdb-multiarch >/dev/null || need_pkgs+=(gdb-multiarch)
# trace-cmd reads the trace.dat files `ltrace record` writes (make test checks them with it);
# KernelShark shows them (for users; it installs without a display, tests never start it).
command -v trace-cmd >/dev/null || need_pkgs+=(trace-cmd)
command -v kernelshark >/dev/null || need_pkgs+=(kernelshark)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"
    else
        echo "setup: need root to install Debian packages: ${need_pkgs[*]}" >&2
        echo "setup: run 'sudo apt-get install ${need_pkgs[*]}' or 'sudo make setup', then 'make setup' again" >&2
        exit 1
    fi
    echo "setup: installing ${need_pkgs[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_pkgs[@]}"
fi

if ! command -v rustup >/dev/null; then
    echo "setup: rustup not found; install it from https://rustup.rs, then run 'make setup' again" >&2
    exit 1
fi
# rust-toolchain.toml selects nightly; its components are not fetched automatically here.
toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
rustup toolchain list | grep -q "^$toolchain" || rustup toolchain install "$toolchain" --profile minimal
rustup component add --toolchain "$toolchain" rust-src llvm-tools

echo "setup: $(qemu-system-loongarch64 --version | head -n1)"
echo "setup: $(rustc +"$toolchain" --version)"
echo "setup: done"
