#!/usr/bin/env bash
# `make gdb`: boots the kernel halted with QEMU's gdb stub and attaches a gdb that knows LoongArch,
# with the kernel's symbols and the loongtrace helpers (tools/gdb/loongtrace.py: lt-ftrace,
# lt-trace, lt-sym, the return_to_handler unwinder). Usage: tools/gdb.sh <kernel.elf> <qemu args...>
# Environment: GDB (default: the venv `make setup` made), QEMU, GDB_PORT (default 1234).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kernel=$1; shift
gdb=${GDB:-$here/../.venv-gdb/bin/gdb}
qemu=${QEMU:-qemu-system-loongarch64}
port=${GDB_PORT:-1234}

if ! command -v "$gdb" >/dev/null; then
    echo "gdb: '$gdb' not found; run 'make setup' (installs GDB 18 into .venv-gdb/) or pass GDB=/path/to/gdb" >&2
    exit 1
fi
if ! "$gdb" -q -batch -ex 'set architecture Loongarch64' >/dev/null 2>&1; then
    echo "gdb: $("$gdb" --version | head -n1) was built without LoongArch support" >&2
    echo "gdb: (Debian 12's gdb-multiarch 13.1 is one.) 'make setup' installs GDB 18 into .venv-gdb/;" >&2
    echo "gdb: or pass GDB=/path/to/a/gdb/with/loongarch." >&2
    echo "gdb: Without it you can still run: $qemu $* -gdb tcp::$port -S  and attach any LoongArch gdb" >&2
    exit 1
fi
"$qemu" "$@" -gdb "tcp::$port" -S &
qemu_pid=$!
trap 'kill $qemu_pid 2>/dev/null || true' EXIT
"$gdb" -q "$kernel" -ex 'set architecture Loongarch64' -x "$here/gdb/loongtrace.py" \
    -ex "target remote :$port" -ex 'break loongtrace_kernel_main'
