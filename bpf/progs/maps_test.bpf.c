// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * BTF-defined maps of every type the runtime supports, used by one fentry program: a HASH of
 * per-key pairs (created with BPF_NOEXIST, updated in place), an ARRAY and a PERCPU_ARRAY of
 * counters, and a RINGBUF the program writes one record per call to.
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct pair {
	__u64 calls;
	__u64 last_arg;
};

struct event {
	__u32 cpu;
	__u32 arg;
	__u64 time_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct pair);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

__u64 lost_events = 0;

SEC("fentry/bpf_fentry_test1")
int BPF_PROG(count_calls, int a)
{
	__u32 key = a;
	__u32 zero = 0;
	struct pair *p;
	__u64 *v;
	struct event *e;

	p = bpf_map_lookup_elem(&pairs, &key);
	if (p) {
		__sync_fetch_and_add(&p->calls, 1);
		p->last_arg = a;
	} else {
		struct pair init = { .calls = 1, .last_arg = a };

		bpf_map_update_elem(&pairs, &key, &init, BPF_NOEXIST);
	}

	key = a & 7;
	v = bpf_map_lookup_elem(&counters, &key);
	if (v)
		__sync_fetch_and_add(v, 1);

	v = bpf_map_lookup_elem(&percpu_calls, &zero);
	if (v)
		*v += 1;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		lost_events++;
		return 0;
	}
	e->cpu = bpf_get_smp_processor_id();
	e->arg = a;
	e->time_ns = bpf_ktime_get_ns();
	bpf_ringbuf_submit(e, 0);
	return 0;
}
