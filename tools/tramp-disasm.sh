#!/bin/bash
# tramp-disasm.sh: disassembles the generated trampolines a kernel log shows.
#
# Usage: tools/tramp-disasm.sh [log [kernel.elf]]   (log default: standard input; with the
# kernel ELF, call targets are named)
#
# The kernel prints a generated trampoline (ftrace::bpf::dump, e.g. the self-test
# `bpf_tramp.dump`) as a header line `bpf_trampoline for <function> at <address>: ...` followed
# by `BPF-TRAMP-HEX` lines of little-endian instruction bytes. This turns each dump into an ELF
# object placed at that address (llvm-objcopy) and disassembles it with llvm-objdump from the
# rustup llvm-tools component (Debian's LLVM 14 does not know LoongArch).
set -eu
bin="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin"
objcopy="$bin/llvm-objcopy"
objdump="$bin/llvm-objdump"
[ -x "$objdump" ] || { echo "tramp-disasm: $objdump missing (rustup component add llvm-tools)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Split the log into one hex file per dump, remembering each dump's address.
awk -v dir="$tmp" '
    /bpf_trampoline for .* at 0x/ { n++; match($0, /at 0x[0-9a-f]+/); addr[n] = substr($0, RSTART + 3, RLENGTH - 3);
        sub(/.*bpf_trampoline/, "bpf_trampoline"); print > (dir "/" n ".title"); print addr[n] > (dir "/" n ".addr"); next }
    /BPF-TRAMP-HEX/ && n { sub(/.*BPF-TRAMP-HEX /, ""); gsub(/ /, ""); printf "%s", $0 > (dir "/" n ".hex") }
' "${1:-/dev/stdin}"
found=0
for hex in "$tmp"/*.hex; do
    [ -e "$hex" ] || break
    found=1
    n=$(basename "$hex" .hex)
    cat "$tmp/$n.title"
    # hex text -> raw bytes (bash printf understands \xHH), so xxd is not needed.
    printf "$(sed 's/../\\x&/g' "$hex")" > "$tmp/$n.bin"
    "$objcopy" -I binary -O elf64-loongarch --rename-section .data=.text,alloc,load,readonly,code \
        "$tmp/$n.bin" "$tmp/$n.o"
    # Addresses as in the kernel; branch targets are printed as absolute addresses, named with
    # the kernel's symbols when its ELF is given.
    "$objdump" -d --no-show-raw-insn --adjust-vma="$(cat "$tmp/$n.addr")" "$tmp/$n.o" |
        sed -n '/^Disassembly/,$p' | tail -n +4 | grep -v '^$' | sed 's/ <_binary_[^>]*>//' |
        while IFS= read -r line; do
            t=$(printf '%s\n' "$line" | sed -n 's/.*\(bl\|b\)\t\(-\?[0-9]\+\)$/\2/p')
            if [ -n "$t" ] && [ -n "${2:-}" ]; then
                pc=$((16#$(printf '%s\n' "$line" | sed 's/^ *\([0-9a-f]*\):.*/\1/')))
                dest=$(printf '%x' $((pc + t)))
                sym=$("$bin/llvm-nm" --defined-only --demangle "$2" 2>/dev/null | grep -v " \.L" | grep -i "^0*$dest " | head -1 | cut -d" " -f3- | sed "s/::h[0-9a-f]\{16\}$//")
                line="$line <0x$dest${sym:+ $sym}>"
            fi
            printf '%s\n' "$line"
        done
done
[ "$found" = 1 ] || { echo "tramp-disasm: no BPF-TRAMP-HEX dump in the input" >&2; exit 1; }
