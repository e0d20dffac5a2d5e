// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * fentry, fmod_ret and fexit on one function, bpf_modify_return_test(int a, int b): each checks
 * that it runs in its turn (fentry, then fmod_ret, then the function unless fmod_ret returned
 * non-zero, then fexit) through a shared sequence counter. A test sets `input_retval` (in .bss)
 * before the call: non-zero makes fmod_ret skip the function and return that value instead.
 */
#include "lt_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

int input_retval = 0;
int sequence = 0;
__u32 fentry_result = 0;
__u32 fmod_ret_result = 0;
__u32 fexit_result = 0;

SEC("fentry/bpf_modify_return_test")
int BPF_PROG(fentry_test, int a, int b)
{
	sequence++;
	fentry_result = sequence == 1;
	return 0;
}

SEC("fmod_ret/bpf_modify_return_test")
int BPF_PROG(fmod_ret_test, int a, int b, int ret)
{
	sequence++;
	/* fmod_ret runs before the function: the return value it sees is still 0 */
	fmod_ret_result = sequence == 2 && ret == 0;
	return input_retval;
}

SEC("fexit/bpf_modify_return_test")
int BPF_PROG(fexit_test, int a, int b, int ret)
{
	sequence++;
	/* the function returns a + b; fmod_ret's value when it skipped the function */
	if (input_retval)
		fexit_result = sequence == 3 && ret == input_retval;
	else
		fexit_result = sequence == 3 && ret == a + b;
	return 0;
}
