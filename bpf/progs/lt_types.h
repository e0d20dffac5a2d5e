/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The kernel types a loongtrace BPF program needs, in place of Linux's vmlinux.h or
 * <linux/types.h> (whose <asm/types.h> a `-target bpf` build does not find): the fixed-size
 * integers bpf_helper_defs.h uses, and the UAPI numbers of the map types and update flags the
 * runtime supports (Linux's values).
 */
#ifndef LT_TYPES_H
#define LT_TYPES_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;

typedef __s8 s8;
typedef __u8 u8;
typedef __s16 s16;
typedef __u16 u16;
typedef __s32 s32;
typedef __u32 u32;
typedef __s64 s64;
typedef __u64 u64;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_UNSPEC = 0,
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

/* map_flags */
enum {
	BPF_F_NO_PREALLOC = 1,
};

/* flags of bpf_map_update_elem */
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

#endif /* LT_TYPES_H */
