#!/usr/bin/env bash
# make mutants: mutation testing of the host-testable code with cargo-mutants.
#
# For each crate it mutates only the files whose logic runs on the host (the rest of `arch` and
# `kernel` exists only in the LoongArch image, where `cargo test` cannot see it):
#   arch   arch/src/insn.rs (instruction encoders and decoders)
#   kernel kernel/src/{glob,ringbuf,symtab,cmdline}.rs (cargo test -p loongtrace-kernel --lib)
#   tools  tools/src/{ktap,symtab,bench}.rs (KTAP parser, symbol-table writer, bench parser)
# and prints, per crate, caught / viable mutants (a timeout counts as caught: the tests noticed).
# Fails when a crate is below 90 %. Missed mutants are listed in target/mutants/<crate>/
# mutants.out/missed.txt; docs/testing.md says why the known ones cannot be observed.
#
# cargo-mutants is installed here (not by `make setup`), so `make test` and CI do not pay for it.
# Variables: MUTANTS_JOBS (parallel builds, default 1), MUTANTS_CRATES (default "arch kernel
# tools"), MUTANTS_ARGS (extra cargo-mutants options, e.g. "--re insn::encode").
set -euo pipefail
cd "$(dirname "$0")/.."

version=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -q .; then
    echo "mutants: installing cargo-mutants $version (once)"
    cargo install --locked cargo-mutants --version "$version"
fi

jobs=${MUTANTS_JOBS:-1}
crates=${MUTANTS_CRATES:-arch kernel tools}
out=target/mutants
mkdir -p "$out"

files_of() {
    case $1 in
        arch) echo arch/src/insn.rs ;;
        kernel) echo kernel/src/glob.rs kernel/src/ringbuf.rs kernel/src/symtab.rs kernel/src/cmdline.rs ;;
        tools) echo tools/src/ktap.rs tools/src/symtab.rs tools/src/bench.rs ;;
        *) echo "mutants: unknown crate '$1' (arch, kernel, tools)" >&2; exit 2 ;;
    esac
}

status=0
summary=()
for crate in $crates; do
    args=()
    for f in $(files_of "$crate"); do
        [ -f "$f" ] && args+=(--file "$f")
    done
    extra=()
    # The kernel crate's binary only builds for LoongArch: test its library alone.
    [ "$crate" = kernel ] && extra=(-- --lib)
    echo "mutants: $crate: ${args[*]}"
    # cargo-mutants exits non-zero when a mutant is missed; the figures below decide.
    # shellcheck disable=SC2086
    nice -n 10 cargo mutants --package "loongtrace-$crate" "${args[@]}" --jobs "$jobs" \
        --output "$out/$crate" --no-shuffle ${MUTANTS_ARGS:-} "${extra[@]}" || true
    json="$out/$crate/mutants.out/outcomes.json"
    if [ ! -f "$json" ]; then
        echo "mutants: $crate: no outcomes (cargo-mutants failed, see above)" >&2
        status=1
        summary+=("$crate: no result")
        continue
    fi
    line=$(python3 - "$json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
caught, missed, timeout, unviable = (d.get(k, 0) for k in ("caught", "missed", "timeout", "unviable"))
viable = caught + missed + timeout
pct = 100.0 * (caught + timeout) / viable if viable else 100.0
print(f"{pct:.1f} {caught} {timeout} {missed} {unviable} {viable}")
EOF
)
    read -r pct caught timeout missed unviable viable <<<"$line"
    summary+=("$crate: $pct % caught ($caught caught, $timeout timeouts, $missed missed of $viable viable; $unviable unviable)")
    if python3 -c "import sys; sys.exit(0 if float('$pct') >= 90 else 1)"; then :; else status=1; fi
    if [ "$missed" != 0 ]; then
        echo "mutants: $crate: missed:"
        sed 's/^/    /' "$out/$crate/mutants.out/missed.txt"
    fi
done

echo
for s in "${summary[@]}"; do echo "mutants: $s"; done
[ $status = 0 ] && echo "mutants: every crate at or above 90 %" || echo "mutants: below 90 % (or no result) somewhere"
exit $status
