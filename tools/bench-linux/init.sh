#!/bin/sh
# /init of the `make bench-linux` initramfs: Linux's tracing costs, measured as loongtrace's are.
# Each per-call row runs getppid-bench (N calls of getppid() in chunks, timed with rdtime.d) with
# one tracing mode set through tracefs on sys_getppid; `ltlinux parse` subtracts the untraced
# run. Each per-site row is the CPU time all tasks ran (/proc/schedstat's rq_cpu_time, in ns:
# instructions under -icount shift=0) for one tracefs write, less that of an empty command, per
# traceable function. Output lines start with `===` or are getppid-bench's.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tracefs tracefs /sys/kernel/tracing
T=/sys/kernel/tracing
N=100000
C=10000
B=/bin/getppid-bench
F=$(wc -l < $T/available_filter_functions)
echo "=== kernel $(uname -r)"
echo "=== cpus $(nproc)"
echo "=== functions $F"
clean() {
    echo 0 > $T/tracing_on
    echo 0 > $T/events/enable
    echo nop > $T/current_tracer
    echo > $T/set_ftrace_filter
    echo > $T/set_ftrace_pid
    echo > $T/kprobe_events
    echo > $T/dynamic_events
    echo > $T/trace
    echo 1 > $T/tracing_on
}
# row LABEL SETUP...: sets a mode up with the shell lines SETUP, runs getppid-bench under it and
# cleans up; a mode that cannot be set is reported (`=== error:`) and not measured.
row() {
    label=$1
    shift
    for line in "$@"; do
        if ! sh -c "$line"; then
            echo "=== error: $label: $line"
            clean
            return
        fi
    done
    $B $N $C "$label"
    clean
}

clean
row base
row function_tracer "echo sys_getppid > $T/set_ftrace_filter" "echo function > $T/current_tracer"
row function_pid_filtered_out "echo sys_getppid > $T/set_ftrace_filter" "echo 1 > $T/set_ftrace_pid" "echo function > $T/current_tracer"
row graph "echo sys_getppid > $T/set_ftrace_filter" "echo function_graph > $T/current_tracer"
row kprobe_event "echo 'p:kp sys_getppid' > $T/kprobe_events" "echo 1 > $T/events/kprobes/kp/enable"
row kprobe_break_event "echo 'p:kb sys_getppid+8' > $T/kprobe_events" "echo 1 > $T/events/kprobes/kb/enable"
row kretprobe_event "echo 'r:kr sys_getppid' > $T/kprobe_events" "echo 1 > $T/events/kprobes/kr/enable"
row fprobe_entry_event "echo 'f:fe sys_getppid' > $T/dynamic_events" "echo 1 > $T/events/fprobes/fe/enable"
row fprobe_exit_event "echo 'f:fx sys_getppid%return' > $T/dynamic_events" "echo 1 > $T/events/fprobes/fx/enable"
row base_again

# Per traceable function: the tracefs writes' CPU time (all tasks), three rounds each.
# (%.0f: busybox awk's %d stops at 2^31 ns, two seconds of CPU time)
cpu_ns() { awk '/^cpu[0-9]/ { s += $8 } END { printf "%.0f", s }' /proc/schedstat; }
persite() { # name command...
  name=$1; shift
  a=$(cpu_ns); sh -c true; b=$(cpu_ns)
  c=$(cpu_ns); sh -c "$*"; d=$(cpu_ns)
  echo "=== persite $name ns=$(( (d - c) - (b - a) )) functions=$F"
}
for round in 1 2 3; do
  persite enable_all "echo function > $T/current_tracer"
  persite disable_all "echo nop > $T/current_tracer"
  persite filter_exact "echo sys_getppid > $T/set_ftrace_filter"
  echo > $T/set_ftrace_filter
done
echo "=== done"
poweroff -f
