#!/usr/bin/env bash
# make mutants: mutation testing of the host-testable code with cargo-mutants.
#
# For each crate it mutates only the files whose logic runs on the host (the rest of `arch` and
# `kernel` exists only in the LoongArch image, where `cargo test` cannot see it), one file at a
# time, running that crate's unit tests (`--lib`) filtered to the file's module: a mutant then
# builds in a second or two, and the kernel crate's slow fuzz tests stay out of every run.
#   arch    arch/src/insn.rs (instruction encoders and decoders)
#   kernel  kernel/src/{glob,ringbuf,cmdline}.rs (filter glob, ring buffer, command line)
#   formats formats/src/{symtab,wire}.rs (symbol-table reader, wire frames)
#   tools   tools/src/{ktap,symtab,bench}.rs (KTAP parser, symbol-table writer, bench parser)
# It prints, per crate, caught / viable mutants (a timeout counts as caught: the tests noticed)
# and fails when a crate is below 90 %. Missed mutants are listed in
# target/mutants/<crate>/<file>/mutants.out/missed.txt; docs/testing.md says why the known ones
# cannot be observed.
#
# cargo-mutants is installed here (not by `make setup`), so `make test` and CI do not pay for it.
# Variables: MUTANTS_JOBS (parallel builds, default 1), MUTANTS_CRATES (default "arch kernel
# formats tools"), MUTANTS_FILES (only these files, e.g. "kernel/src/glob.rs"), MUTANTS_ARGS
# (extra cargo-mutants options, e.g. "--re insn::encode").
set -euo pipefail
cd "$(dirname "$0")/.."

version=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -q .; then
    echo "mutants: installing cargo-mutants $version (once)"
    cargo install --locked cargo-mutants --version "$version"
fi

jobs=${MUTANTS_JOBS:-1}
crates=${MUTANTS_CRATES:-arch kernel formats tools}
out=target/mutants
mkdir -p "$out"

# "file test-filter" lines per crate.
files_of() {
    case $1 in
        arch) echo "arch/src/insn.rs insn::" ;;
        kernel) printf '%s\n' "kernel/src/glob.rs glob::" "kernel/src/ringbuf.rs ringbuf::" "kernel/src/cmdline.rs cmdline::" ;;
        formats) printf '%s\n' "formats/src/symtab.rs symtab::" "formats/src/wire.rs wire::" ;;
        tools) printf '%s\n' "tools/src/ktap.rs ktap::" "tools/src/symtab.rs symtab::" "tools/src/bench.rs bench::" ;;
        *) echo "mutants: unknown crate '$1' (arch, kernel, formats, tools)" >&2; exit 2 ;;
    esac
}

# Sums outcomes.json files: prints "percent caught timeout missed unviable viable".
sum_outcomes() {
    python3 - "$@" <<'PY'
import json, sys
tot = dict(caught=0, missed=0, timeout=0, unviable=0)
for p in sys.argv[1:]:
    d = json.load(open(p))
    for k in tot:
        tot[k] += d.get(k, 0)
viable = tot["caught"] + tot["missed"] + tot["timeout"]
pct = 100.0 * (tot["caught"] + tot["timeout"]) / viable if viable else 100.0
print(f'{pct:.1f} {tot["caught"]} {tot["timeout"]} {tot["missed"]} {tot["unviable"]} {viable}')
PY
}

status=0
summary=()
for crate in $crates; do
    jsons=()
    while read -r f filter; do
        if [ -n "${MUTANTS_FILES:-}" ] && [[ " $MUTANTS_FILES " != *" $f "* ]]; then
            continue
        fi
        [ -f "$f" ] || { echo "mutants: $f is missing" >&2; status=1; continue; }
        dir="$out/$crate/$(basename "$f" .rs)"
        mkdir -p "$dir"
        echo "mutants: $crate: $f (unit tests matching $filter)"
        # cargo-mutants exits non-zero when a mutant is missed; the figures below decide.
        # shellcheck disable=SC2086
        nice -n 10 cargo mutants --package "loongtrace-$crate" --file "$f" --jobs "$jobs" \
            --output "$dir" --no-shuffle --cargo-test-arg=--lib ${MUTANTS_ARGS:-} -- "$filter" || true
        json="$dir/mutants.out/outcomes.json"
        if [ ! -f "$json" ]; then
            echo "mutants: $f: no outcomes (cargo-mutants failed, see above)" >&2
            status=1
            continue
        fi
        jsons+=("$json")
        read -r pct _ <<<"$(sum_outcomes "$json")"
        echo "mutants: $f: $pct % caught"
        if [ -s "$dir/mutants.out/missed.txt" ]; then
            echo "mutants: $f: missed:"
            sed 's/^/    /' "$dir/mutants.out/missed.txt"
        fi
    done < <(files_of "$crate")
    if [ ${#jsons[@]} = 0 ]; then
        [ -n "${MUTANTS_FILES:-}" ] && continue
        summary+=("$crate: no result")
        status=1
        continue
    fi
    read -r pct caught timeout missed unviable viable <<<"$(sum_outcomes "${jsons[@]}")"
    summary+=("$crate: $pct % caught ($caught caught, $timeout timeouts, $missed missed of $viable viable; $unviable unviable)")
    if ! python3 -c "import sys; sys.exit(0 if float('$pct') >= 90 else 1)"; then
        status=1
    fi
done

echo
for s in "${summary[@]}"; do echo "mutants: $s"; done
if [ $status = 0 ]; then
    echo "mutants: every crate at or above 90 %"
else
    echo "mutants: below 90 % (or no result) somewhere"
fi
exit $status
