// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * recursion: an fentry program on the kernel's bpf_map_delete_elem (the helper's native code)
 * that itself calls bpf_map_delete_elem. The inner call reaches the same trampoline while the
 * program runs on this CPU: the program is not run again, and the call counts as a miss
 * (Linux's recursion_misses).
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, int);
	__type(value, long);
} hash1 SEC(".maps");

__u64 runs = 0;
__s64 inner_result = 0;

SEC("fentry/bpf_map_delete_elem")
int BPF_PROG(on_delete, void *map, void *key)
{
	int k = 7;

	runs++;
	inner_result = bpf_map_delete_elem(&hash1, &k);
	return 0;
}
