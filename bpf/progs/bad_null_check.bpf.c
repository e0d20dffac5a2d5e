// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * A program the verifier must refuse: it uses the result of bpf_map_lookup_elem without checking
 * it for NULL (the classic mistake). clang compiles it; loading it fails with the verifier's log
 * naming the instruction ("R0 invalid mem access 'map_value_or_null'"), and nothing of the
 * object stays loaded. The kernel suite bpf_core and the shell tests load it to see that.
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

SEC("fentry/bpf_fentry_test1")
int BPF_PROG(no_null_check, int a)
{
	__u32 key = a & 3;
	__u64 *v = bpf_map_lookup_elem(&hits, &key);

	*v += 1;	/* v may be NULL: the verifier refuses this */
	return 0;
}
