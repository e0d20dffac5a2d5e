#!/bin/sh
# Fake qemu-system-loongarch64 for tools/tests/runner.rs: "boots" the text file given to -kernel by
# printing it, as if the kernel had written it to the serial port, then exits like a power-off.
echo "fake-qemu: $*"
echo "fake-qemu: a message on stderr" >&2
kernel=
while [ $# -gt 0 ]; do
    if [ "$1" = "-kernel" ]; then kernel=$2; fi
    shift
done
cat "$kernel"
