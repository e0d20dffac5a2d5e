#!/bin/sh
# Fake qemu-system-loongarch64 for tools/tests/runner.rs: prints the file given to -kernel, then
# hangs like a kernel that never powers off.
kernel=
while [ $# -gt 0 ]; do
    if [ "$1" = "-kernel" ]; then kernel=$2; fi
    shift
done
cat "$kernel"
exec sleep 600
