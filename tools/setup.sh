#!/usr/bin/env bash
# Installs what loongtrace needs on a Debian machine: QEMU for LoongArch, the nightly toolchain's
# rust-src and llvm-tools components, and a LoongArch-capable GDB (PyPI's gdb-for-pwndbg) in the
# project-local virtual environment .venv-gdb/ (no root needed for that part). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v qemu-system-loongarch64 >/dev/null || need_pkgs+=(qemu-system-misc)
# The GDB venv needs Python's venv module and the shared libpython the gdb binary links against.
python=${PYTHON:-python3}
"$python" -c 'import ensurepip, venv' 2>/dev/null || need_pkgs+=(python3-venv)
libpython=$("$python" -c 'import sysconfig as s; print(s.get_config_var("LIBDIR") + "/" + s.get_config_var("INSTSONAME"))' 2>/dev/null || true)
[ -n "$libpython" ] && [ -e "$libpython" ] || need_pkgs+=(libpython3-dev)
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

# GDB 18 built for every target, including LoongArch (Debian 12's gdb-multiarch 13.1 has none).
gdb_venv=.venv-gdb
gdb_pkg=gdb-for-pwndbg==18.1.0.post1
if ! "$gdb_venv/bin/gdb" --version 2>/dev/null | grep -q '^GNU gdb (GDB) 18\.'; then
    echo "setup: installing $gdb_pkg into $gdb_venv/"
    "$python" -m venv "$gdb_venv"
    "$gdb_venv/bin/pip" install -q --disable-pip-version-check "$gdb_pkg"
fi
# The first run links libpython into the venv; check that the result knows LoongArch.
if ! "$gdb_venv/bin/gdb" -q -batch -ex 'set architecture Loongarch64' >/dev/null; then
    echo "setup: $gdb_venv/bin/gdb does not run or lacks LoongArch" >&2
    exit 1
fi

echo "setup: $(qemu-system-loongarch64 --version | head -n1)"
echo "setup: $("$gdb_venv/bin/gdb" --version | head -n1) ($gdb_venv/bin/gdb)"
echo "setup: $(rustc +"$toolchain" --version)"
echo "setup: done"
