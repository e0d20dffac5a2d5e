#!/usr/bin/env bash
# Installs what loongtrace needs on a Debian machine: QEMU for LoongArch, the nightly toolchain's
# rust-src and llvm-tools components, and a LoongArch-capable GDB (PyPI's gdb-for-pwndbg) in the
# project-local virtual environment .venv-gdb/ (no root needed for that part). Safe to run again.
# Without root (and no password-less sudo) it does every step it can, names the Debian packages
# still to install and exits 1; KernelShark alone missing is only a warning.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: `required` ones make build/test need, `optional` ones are for users only.
required=()
optional=()
command -v qemu-system-loongarch64 >/dev/null || required+=(qemu-system-misc)
# The GDB venv needs Python's venv module and the shared libpython the gdb binary links against.
python=${PYTHON:-python3}
gdb_deps_missing() {
    local missing=()
    "$python" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    local libpython
    libpython=$("$python" -c 'import sysconfig as s; print(s.get_config_var("LIBDIR") + "/" + s.get_config_var("INSTSONAME"))' 2>/dev/null || true)
    [ -n "$libpython" ] && [ -e "$libpython" ] || missing+=(libpython3-dev)
    echo "${missing[*]}"
}
read -r -a gdb_deps <<<"$(gdb_deps_missing)"
required+=("${gdb_deps[@]}")
# trace-cmd reads the trace.dat files `ltrace record` writes (make test checks them with it);
# KernelShark shows them (for users; it installs without a display, tests never start it).
command -v trace-cmd >/dev/null || required+=(trace-cmd)
# clang (its BPF target) and libbpf's headers compile the BPF programs of bpf/progs, which the
# host tests of the BPF runtime load.
command -v clang >/dev/null || required+=(clang)
[ -e /usr/include/bpf/bpf_helpers.h ] || required+=(libbpf-dev)
command -v kernelshark >/dev/null || optional+=(kernelshark)

# What is still missing at the end: setup goes on with every step it can do, then fails.
problems=()
if [ $((${#required[@]} + ${#optional[@]})) -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"
    else SUDO="none"
    fi
    if [ "$SUDO" = none ]; then
        if [ ${#required[@]} -gt 0 ]; then
            echo "setup: need root to install Debian packages: ${required[*]}; doing the other steps" >&2
            problems+=("missing Debian packages: run 'sudo apt-get install ${required[*]}' (or 'sudo make setup'), then 'make setup' again")
        fi
        if [ ${#optional[@]} -gt 0 ]; then
            echo "setup: warning: ${optional[*]} not installed (optional, to view traces; 'sudo apt-get install ${optional[*]}' adds it)" >&2
        fi
    else
        wanted=("${required[@]}" "${optional[@]}")
        echo "setup: installing ${wanted[*]}"
        $SUDO apt-get update -q
        if [ ${#required[@]} -gt 0 ]; then
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${required[@]}"
        fi
        if [ ${#optional[@]} -gt 0 ] &&
            ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${optional[@]}"; then
            echo "setup: warning: could not install ${optional[*]} (optional, to view traces); carrying on" >&2
        fi
    fi
fi

if ! command -v rustup >/dev/null; then
    echo "setup: rustup not found; doing the other steps" >&2
    problems+=("rustup not found: install it from https://rustup.rs, then run 'make setup' again")
else
    # rust-toolchain.toml selects nightly; its components are not fetched automatically here.
    toolchain=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
    rustup toolchain list | grep -q "^$toolchain" || rustup toolchain install "$toolchain" --profile minimal
    rustup component add --toolchain "$toolchain" rust-src llvm-tools
fi

# GDB 18 built for every target, including LoongArch (Debian 12's gdb-multiarch 13.1 has none).
# Needs no root; only its own prerequisites (python3-venv, libpython3-dev) can hold it back.
gdb_venv=.venv-gdb
gdb_pkg=gdb-for-pwndbg==18.1.0.post1
read -r -a gdb_deps <<<"$(gdb_deps_missing)"
if [ ${#gdb_deps[@]} -gt 0 ]; then
    echo "setup: skipping GDB 18 in $gdb_venv/: it needs ${gdb_deps[*]}" >&2
    problems+=("GDB 18 not installed in $gdb_venv/ (needs ${gdb_deps[*]})")
else
    if ! "$gdb_venv/bin/gdb" --version 2>/dev/null | grep -q '^GNU gdb (GDB) 18\.'; then
        echo "setup: installing $gdb_pkg into $gdb_venv/"
        "$python" -m venv "$gdb_venv" &&
            "$gdb_venv/bin/pip" install -q --disable-pip-version-check "$gdb_pkg" ||
            echo "setup: installing $gdb_pkg into $gdb_venv/ failed" >&2
    fi
    # The first run links libpython into the venv; check that the result knows LoongArch.
    if ! "$gdb_venv/bin/gdb" -q -batch -ex 'set architecture Loongarch64' >/dev/null; then
        echo "setup: $gdb_venv/bin/gdb does not run or lacks LoongArch" >&2
        problems+=("$gdb_venv/bin/gdb does not run or lacks LoongArch")
    fi
fi

if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do echo "setup: not done: $p" >&2; done
    exit 1
fi
echo "setup: $(qemu-system-loongarch64 --version | head -n1)"
echo "setup: $("$gdb_venv/bin/gdb" --version | head -n1) ($gdb_venv/bin/gdb)"
echo "setup: $(rustc +"$toolchain" --version)"
echo "setup: done"
