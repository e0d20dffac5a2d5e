#!/bin/bash
# make bench-linux: real Linux's tracing costs on the same QEMU as `make bench`, into
# bench/linux.json and the side-by-side table of README.md and docs/performance.md.
#
# 1. Fetches Debian's current loong64 kernel and busybox-static from the unstable suite, with a
#    private apt configuration (the host's package state is not touched), and prints the versions.
# 2. Uses QEMU 10 (`$QEMU`, or the host's qemu-system-loongarch64 if it is 10 or newer); otherwise
#    fetches bookworm-backports' qemu-system-misc 10 the same way and runs it from its unpacked
#    directory (amd64 Debian 12 hosts). Debian 12's own QEMU 7.2 cannot boot that kernel.
# 3. Builds getppid-bench (tools/bench-linux/guest) and the initramfs, boots Linux with
#    `-icount shift=0` (one guest instruction per ns), and lets init.sh run every tracing mode.
# 4. `ltlinux parse` writes bench/linux.json; `ltlinux table` the side-by-side table.
#
# Not part of `make test` (network, ~450 MB of downloads, several minutes). Work files go to
# target/bench-linux (OUT=... to change). KVER=7.2.13+deb14 pins the kernel's ABI name.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/target/bench-linux}
TIMEOUT=${TIMEOUT:-1200}
mkdir -p "$OUT"
cd "$OUT"
say() { echo "bench-linux: $*" >&2; }
die() { say "$*"; exit 1; }

# apt-get/apt-cache with its own state, cache and sources under $OUT/apt-NAME.
papt() { # NAME ARCH COMMAND ARGS...
    local d=$OUT/apt-$1 arch=$2 cmd=$3
    shift 3
    "$cmd" -o APT::Architecture="$arch" -o APT::Architectures="$arch" \
        -o Dir::State="$d/state" -o Dir::State::status="$d/state/status" -o Dir::Cache="$d/cache" \
        -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts="$d/sources.list.d" \
        -o Dir::Etc::Preferences="$d/preferences" -o Dir::Etc::PreferencesParts="$d/preferences.d" \
        -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}
papt_init() { # NAME ARCH SOURCES-LINE
    local d=$OUT/apt-$1
    mkdir -p "$d"/{state/lists/partial,cache/archives/partial,sources.list.d,preferences.d}
    touch "$d/state/status"
    echo "$3" > "$d/sources.list"
    papt "$1" "$2" apt-get -q update > /dev/null || die "apt-get update of $3 failed (network?)"
}
download() { # NAME ARCH PACKAGES...: into $OUT/debs
    local name=$1 arch=$2
    shift 2
    (cd debs && papt "$name" "$arch" apt-get -q download "$@" 2>&1 | grep -v 'unsandboxed' || true)
}
command -v apt-get > /dev/null && command -v dpkg-deb > /dev/null || die "needs apt-get and dpkg (a Debian host)"
mkdir -p debs

# QEMU 10.
qemu_major() { "$1" --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1; }
QEMU=${QEMU:-qemu-system-loongarch64}
QEMU_ARGS=()
if [ "$(qemu_major "$QEMU")" -ge 10 ] 2>/dev/null; then
    say "using $QEMU ($("$QEMU" --version | head -n1))"
else
    say "$QEMU is not QEMU 10 or newer; fetching bookworm-backports' qemu-system-misc (apt-get install -t bookworm-backports qemu-system-misc would install it for good)"
    [ "$(dpkg --print-architecture)" = amd64 ] || die "no QEMU 10 here and no amd64 backport to fetch: install QEMU 10 and set QEMU=/path/to/qemu-system-loongarch64"
    papt_init bpo amd64 'deb http://deb.debian.org/debian bookworm-backports main'
    rm -f debs/qemu-system-*.deb
    download bpo amd64 qemu-system-misc qemu-system-common qemu-system-data
    rm -rf qemu10 && mkdir qemu10
    for f in debs/qemu-system-*.deb; do dpkg-deb -x "$f" qemu10; done
    QEMU=$OUT/qemu10/usr/bin/qemu-system-loongarch64
    [ "$(qemu_major "$QEMU")" -ge 10 ] 2>/dev/null || die "the backport's QEMU does not run here: $("$QEMU" --version 2>&1 | head -n2)"
    # Its own modules and data, not the host QEMU's (whose modules abort a QEMU of another build).
    export QEMU_MODULE_DIR=$OUT/qemu10/usr/lib/x86_64-linux-gnu/qemu
    QEMU_ARGS=(-L "$OUT/qemu10/usr/share/qemu")
fi
QEMU_VERSION=$("$QEMU" --version | head -n1)

# The kernel and busybox: the versions the archive lists today.
papt_init sid loong64 'deb http://deb.debian.org/debian unstable main'
if [ -z "${KVER:-}" ]; then
    KVER=$(papt sid loong64 apt-cache depends linux-image-loong64 | sed -n 's/.*Depends: linux-image-\(.*\)-loong64$/\1/p' | head -n1)
fi
[ -n "$KVER" ] || die "no linux-image-loong64 in unstable's loong64 index"
rm -f debs/linux-*.deb debs/busybox-static_*.deb
# Since 7.x the image package is a meta-package: the kernel is in linux-binary, its config in linux-base.
download sid loong64 "linux-binary-$KVER-loong64" "linux-base-$KVER-loong64" busybox-static
rm -rf root && mkdir root
for f in debs/linux-*.deb debs/busybox-static_*.deb; do dpkg-deb -x "$f" root; done
PACKAGES=()
for f in debs/*.deb; do
    v="$(dpkg-deb -f "$f" Package) $(dpkg-deb -f "$f" Version)"
    PACKAGES+=(--package "$v")
    say "package $v"
done
MOD=$(ls -d root/usr/lib/modules/*/ | head -n1)
[ -f "$MOD/vmlinuz" ] || die "no vmlinuz in the kernel package (layout changed?): $(ls "$MOD")"

LT=$ROOT/target/release/ltlinux
(cd "$ROOT" && cargo build -q --release -p loongtrace-tools --bin ltlinux)
"$LT" zboot "$MOD/vmlinuz" Image
(cd "$ROOT/tools/bench-linux/guest" && cargo build -q --release --target-dir "$OUT/guest")
"$LT" initramfs initrd.cpio --busybox root/usr/bin/busybox --init "$ROOT/tools/bench-linux/init.sh" \
    --bench "$OUT/guest/loongarch64-unknown-none/release/getppid-bench"

# One CPU, as `make bench`. -icount needs one-insn-per-tb here (else QEMU aborts at the first IPI:
# "Raised interrupt while not in I/O function"); it does not change the counts. i8042 crashes on
# virt; the crypto self-tests would run beside the measurements.
say "booting $(basename "$MOD") under $QEMU_VERSION (about 10 minutes)"
timeout "$TIMEOUT" "$QEMU" "${QEMU_ARGS[@]}" -machine virt -m 2G -smp 1 -nographic -audio none -no-reboot \
    -kernel Image -initrd initrd.cpio \
    -append 'console=ttyS0,115200 initcall_blacklist=i8042_init cryptomgr.notests' \
    -icount shift=0 -accel tcg,one-insn-per-tb=on > console.log 2>&1 || die "QEMU failed or timed out; see $OUT/console.log"
grep -q '^=== done' console.log || die "the guest did not finish; see $OUT/console.log"
cd "$ROOT"
"$LT" parse "$OUT/console.log" --json bench/linux.json --qemu "$QEMU_VERSION" --config "$OUT/$MOD/config" "${PACKAGES[@]}"
"$LT" table --results bench/results.json --linux bench/linux.json README.md docs/performance.md
