/* SPDX-License-Identifier: MIT */
#ifndef VGB_GUARD_H
#define VGB_GUARD_H

/*
 * Guarded copies out of CPU views that can stop being backed while we hold them: a VFIO BAR
 * mapping whose memory decode the guest turned off (vfio-pci answers the next fault with
 * SIGBUS), a dmabuf revoked under its mapping, a memfd truncated under a mapping of it.
 *
 * A SIGBUS raised by a load or store inside the source or destination range of a guarded copy,
 * on the thread doing the copy, ends that copy with -EIO instead of killing the process. Every
 * other SIGBUS keeps the semantics it had before the first guarded copy: the previous handler
 * runs (SA_SIGINFO or not), or, when the previous disposition was the default, the process
 * dies by SIGBUS as it would have. The handler is installed once per process, on first use;
 * the "in a guarded copy" state is thread-local. Code that installs its own SIGBUS handler
 * after the first guarded copy must chain to the previous one, as this one does.
 *
 * Only SIGBUS is caught: a SIGSEGV is a bug in our address arithmetic, never a state of the
 * device, and must keep crashing.
 */

#include <stddef.h>
#include <stdint.h>

/*
 * Copies @len bytes from @src to @dst (they must not overlap).
 * Returns 0, or -EIO when the copy faulted (the bytes of @dst are then unspecified), or
 * -errno when the handler could not be installed (sigaction's errno).
 */
int vgb_guarded_copy(void *dst, const void *src, size_t len);

/*
 * Copies @rows rows of @row_bytes from @src (rows @src_stride bytes apart) to @dst (rows
 * @dst_stride bytes apart), under one guard. Returns like vgb_guarded_copy(); -EINVAL when the
 * extent of either side overflows.
 */
int vgb_guarded_copy_2d(void *dst, size_t dst_stride, const void *src, size_t src_stride,
			size_t row_bytes, size_t rows);

/* Guarded copies that faulted in this process (for stats and tests). */
uint64_t vgb_guarded_faults(void);

#endif
