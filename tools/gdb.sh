#!/usr/bin/env bash
# `make gdb`: boots the kernel halted with QEMU's gdb stub on :1234 and attaches a gdb that knows
# LoongArch, with the kernel's symbols. Usage: tools/gdb.sh <kernel.elf> <qemu args...>
set -euo pipefail
kernel=$1; shift
gdb=${GDB:-gdb-multiarch}
qemu=${QEMU:-qemu-system-loongarch64}

if ! command -v "$gdb" >/dev/null; then
    echo "gdb: '$gdb' not found; run 'make setup' or pass GDB=/path/to/gdb" >&2
    exit 1
fi
if ! "$gdb" -q -batch -ex 'set architecture' 2>&1 | grep -qi 'loongarch64'; then
    echo "gdb: $("$gdb" --version | head -n1) was built without LoongArch support" >&2
    echo "gdb: (Debian 12's gdb-multiarch 13.1 is; GDB 12 or newer built with the loongarch target works," >&2
    echo "gdb:  e.g. Debian 13's gdb-multiarch). Pass GDB=/path/to/that/gdb." >&2
    echo "gdb: Without it you can still run: $qemu $* -s -S  and attach any LoongArch gdb to :1234" >&2
    exit 1
fi
"$qemu" "$@" -s -S &
qemu_pid=$!
trap 'kill $qemu_pid 2>/dev/null || true' EXIT
"$gdb" -q "$kernel" -ex 'set architecture Loongarch64' -ex 'target remote :1234' -ex 'break loongtrace_kernel_main'
