# loongtrace: build, boot and test the kernel. `make help` lists the targets.

TARGET      := loongarch64-unknown-none-softfloat
RAW_ELF     := target/$(TARGET)/release/loongtrace
KERNEL      := target/loongtrace.elf
QEMU        ?= qemu-system-loongarch64
SMP         ?= 1
# make test boots with 4 CPUs (suite smp needs them); STRESS=long runs the SMP stress 10x longer.
TEST_SMP    ?= 4
STRESS      ?=
CMDLINE     ?= demo=1
# The time limit only catches hangs: the SMP stress does a fixed number of switches, so on a
# loaded host it takes several times longer than on an idle one (seen: 60 s idle, 230 s at load 13).
TIMEOUT     ?= $(if $(STRESS),3600,1200)
# The LoongArch-capable GDB `make setup` installs into a project-local venv (GDB=... overrides).
GDB         ?= $(CURDIR)/.venv-gdb/bin/gdb
# Sample modules (modules/<name>/, built to target/modules/<name>.o); user modules: MODULES="a.o b.o".
SAMPLE_MODULES := sample_mod sample_far
MODULE_DIR  := target/modules
MODULES     ?=
# A module is the crate's own object file: the kernel's target, code model and patchable entries.
MODULE_FLAGS = -Zpatchable-function-entry=4,2 -Zmin-function-alignment=8 -Ccodegen-units=1
# sample_far reaches kernel data through its GOT and is built with linker relaxation markers.
MODULE_FLAGS_sample_far = -Zdirect-access-external-data=no -Ctarget-feature=+relax
USER_MODULES = $(foreach m,$(MODULES),$(basename $(notdir $(m))))
MODULE_FW_CFG = $(foreach m,$(filter-out $(USER_MODULES),$(SAMPLE_MODULES)),-fw_cfg name=opt/loongtrace/modules/$(m),file=$(MODULE_DIR)/$(m).o) \
	$(foreach m,$(MODULES),-fw_cfg name=opt/loongtrace/modules/$(basename $(notdir $(m))),file=$(m))
QEMU_CMDLINE = $(CMDLINE)$(if $(MODULES), modules=$(subst $(eval) ,+,$(strip $(USER_MODULES))))
QEMU_ARGS    = -M virt -m 1G -smp $(SMP) -nographic -net none -no-reboot -kernel $(KERNEL) $(MODULE_FW_CFG) $(BPF_FW_CFG)

export QEMU

.PHONY: help setup build tools modules modules-testdata bpf-progs bpf-fuzz qemu test test-host test-kernel bench bench-linux scale-image stream-bench mutants gdb clean FORCE

help:
	@echo "make setup   install QEMU, the Rust components and GDB 18 in .venv-gdb/ (Debian)"
	@echo "make build   the kernel, the sample modules, the BPF objects and the host programs (target/release/ltrace, ltrun, ...)"
	@echo "make qemu    build and boot the kernel: boot log, self-tests, demos"
	@echo "make test    host unit tests + the in-kernel self-tests under QEMU"
	@echo "make bench   instruction counts per traced call under qemu -icount (SITES=n: scale image)"
	@echo "make stream-bench  a 10 s streamed recording of the function tracer on 4 busy CPUs: export rate and losses"
	@echo "make bench-linux  the same costs for Debian's loong64 Linux under QEMU 10 (network; bench/linux.json)"
	@echo "make bpf-progs  the BPF programs of bpf/progs (clang -target bpf) into target/bpf-progs/"
	@echo "make mutants mutation testing (cargo-mutants) of the host-testable code"
	@echo "make gdb     boot halted and attach GDB with the loongtrace helpers (GDB=/path)"
	@echo "variables:   QEMU=/path/to/qemu-system-loongarch64 SMP=n CMDLINE='tests=boot|insn' MODULES='a.o b.o'"

setup:
	@./tools/setup.sh

build: $(KERNEL) modules bpf-progs tools

# The host programs the README and docs/ call as target/release/<name>: ltrun, ltrace, ltbench, ltsym.
tools:
	cargo build -q --release -p loongtrace-tools --bins

modules:
	@mkdir -p $(MODULE_DIR)
	$(foreach m,$(SAMPLE_MODULES),cargo rustc -q --release -p $(m) --target $(TARGET) \
		-Zbuild-std=core,alloc,compiler_builtins -Zbuild-std-features=compiler-builtins-mem -- \
		--emit=obj=$(MODULE_DIR)/$(m).o $(MODULE_FLAGS) $(MODULE_FLAGS_$(m)) &&) true

# The BPF programs of bpf/progs (libbpf-style C, issue 24), built by clang's BPF target against
# Debian's libbpf headers into target/bpf-progs/<name>.bpf.o. The host tests of bpf/ build their
# own copies with the same flags (bpf/tests/common/mod.rs); see docs/bpf-objects.md.
CLANG       ?= clang
BPF_PROG_DIR := target/bpf-progs
BPF_CFLAGS  := -O2 -g -target bpf -Wall -Ibpf/progs -idirafter /usr/include
BPF_PROGS   := $(patsubst bpf/progs/%.bpf.c,$(BPF_PROG_DIR)/%.bpf.o,$(wildcard bpf/progs/*.bpf.c))

# QEMU hands each object to the kernel as fw_cfg file opt/loongtrace/bpf/<name>.bpf.o (`bpf prog
# load NAME` in the shell, suite bpf_core); ltrun and the tests in tests/ pass the same files.
BPF_FW_CFG   = $(foreach o,$(BPF_PROGS),-fw_cfg name=opt/loongtrace/bpf/$(notdir $(o)),file=$(o))

bpf-progs: $(BPF_PROGS)

$(BPF_PROG_DIR)/%.bpf.o: bpf/progs/%.bpf.c $(wildcard bpf/progs/*.h)
	@mkdir -p $(BPF_PROG_DIR)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# Refreshes the module objects the host tests of the loader read (kernel/src/modload/testdata).
modules-testdata: modules
	cp $(foreach m,$(SAMPLE_MODULES),$(MODULE_DIR)/$(m).o) kernel/src/modload/testdata/

# Cargo decides what is stale; ltsym then embeds the symbol table into a copy of the image.
$(KERNEL): FORCE
	cargo kbuild
	cargo run -q --release -p loongtrace-tools --bin ltsym -- $(RAW_ELF) $(KERNEL)

# With a terminal on stdin the kernel stays at its shell prompt after the demos (`shell=1`);
# SCRIPT=file runs that file's shell lines at boot (fw_cfg opt/loongtrace/script).
comma := ,
qemu: build
	$(QEMU) $(QEMU_ARGS) -fw_cfg name=opt/loongtrace/cmdline,string="$(QEMU_CMDLINE)$(if $(SCRIPT), script)$$([ -t 0 ] && echo ' shell=1')" \
		$(if $(SCRIPT),-fw_cfg name=opt/loongtrace/script$(comma)file=$(SCRIPT))

test-host:
	cargo test -q -p loongtrace-arch -p loongtrace-formats -p loongtrace-bpf -p loongtrace-tools
	cargo test -q -p loongtrace-kernel --lib
	cargo test -q -p loongtrace-tests --lib

test-kernel: build
	LOONGTRACE_KERNEL=$(KERNEL) LOONGTRACE_TIMEOUT=$(TIMEOUT) \
		cargo test -q -p loongtrace-tests --test fail_demo
	LOONGTRACE_KERNEL=$(KERNEL) LOONGTRACE_GDB=$(GDB) cargo test -q -p loongtrace-tests --test gdb
	LOONGTRACE_KERNEL=$(KERNEL) LOONGTRACE_SMP=$(TEST_SMP) cargo test -q -p loongtrace-tests --test shell
	LOONGTRACE_KERNEL=$(KERNEL) cargo test -q -p loongtrace-tests --test export
	LOONGTRACE_KERNEL=$(KERNEL) cargo test -q -p loongtrace-tests --test stream -- --test-threads 1
	# Without LOONGTRACE_KERNEL the harness runs `make build` itself and checks that the kernel it
	# boots was built from this tree.
	LOONGTRACE_TIMEOUT=$(TIMEOUT) LOONGTRACE_SMP=$(TEST_SMP) \
		LOONGTRACE_CMDLINE="$(if $(STRESS),stress=$(STRESS))" \
		cargo test -q -p loongtrace-tests --test kernel

test: test-host test-kernel

# The long verifier fuzz run of issue 24 (make test runs 20,000 programs): BPF_FUZZ_PROGRAMS=n.
BPF_FUZZ_PROGRAMS ?= 100000
bpf-fuzz:
	BPF_FUZZ_PROGRAMS=$(BPF_FUZZ_PROGRAMS) cargo test -q -p loongtrace-bpf --release --test verifier_fuzz -- --nocapture

# Mutation testing of the host-testable code (installs cargo-mutants on first use; see
# docs/testing.md). MUTANTS_CRATES="arch kernel tools", MUTANTS_JOBS=1, MUTANTS_ARGS=...
mutants:
	./tools/mutants.sh

# Issue 26's export figures: the function tracer on every traceable function, the chain on 4 CPUs
# for 10 s of guest time, streamed into target/stream-bench.dat (ltrace prints the rate, the
# losses and the per-CPU accounting; docs/export.md has the figures of this machine).
stream-bench: build
	target/release/ltrace record -p function -w busy -d 10000 --smp 4 -o target/stream-bench.dat

# The scale image of `make bench`: SITES generated traceable functions on top of the kernel's own
# (cargo feature `scale`, generated by kernel/build.rs; never in the normal image).
SITES       ?= 20000
SCALE_KERNEL := target/loongtrace-scale.elf

scale-image:
	LOONGTRACE_SITES=$(SITES) cargo kbuild --features scale
	cargo run -q --release -p loongtrace-tools --bin ltsym -- $(RAW_ELF) $(SCALE_KERNEL)

# Benches the normal image and the scale image (their per-site figures are compared), writes
# bench/results.json, bench/scale.json and the SVG plots beside them, the README table and the
# routine table of docs/performance.md. The normal image is built last so that $(RAW_ELF) is it.
bench: scale-image build
	cargo run -q --release -p loongtrace-tools --bin ltbench -- --runs 2 --json bench/results.json --readme README.md --doc docs/performance.md \
		--scale $(SCALE_KERNEL) --scale-json bench/scale.json $(KERNEL)
	@# The side-by-side table with Linux, from the new results and the last `make bench-linux`.
	if [ -f bench/linux.json ]; then cargo run -q --release -p loongtrace-tools --bin ltlinux -- table README.md docs/performance.md > /dev/null; fi

# Real Linux on the same QEMU (fetches Debian's loong64 kernel and, if needed, QEMU 10): not part
# of `make test`. See tools/bench-linux/bench-linux.sh and docs/performance.md.
bench-linux:
	tools/bench-linux/bench-linux.sh

gdb: build
	GDB=$(GDB) ./tools/gdb.sh $(KERNEL) $(QEMU_ARGS) -fw_cfg name=opt/loongtrace/cmdline,string="$(CMDLINE)"

clean:
	cargo clean
