/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_FAKE_UDMABUF_H
#define VGB_TESTS_FAKE_UDMABUF_H

/*
 * A udmabuf "device" for machines without /dev/udmabuf: /dev/null stands in for the node, and
 * UDMABUF_CREATE_LIST is answered at the ioctl seam (vgb_sys.ioctl) with the kernel's checks:
 * EBADFD for a non-shmem fd, EINVAL for missing F_SEAL_SHRINK, present F_SEAL_WRITE,
 * unaligned items or items past the end of the memfd. The fd it returns (an eventfd) cannot
 * be mmapped, so CPU views must come from the segments, as with a VFIO dmabuf.
 * Other ioctls go to the hook that was installed before.
 */

#include <stdbool.h>

/* Installs the fake (module limits: list_limit 1024, size_limit_mb 64). */
void fake_udmabuf_install(void);
/* Makes the device node disappear (true) or come back (false). */
void fake_udmabuf_set_absent(bool absent);
/* Writes a module parameter ("list_limit", "size_limit_mb"). */
void fake_udmabuf_set_param(const char *name, unsigned long value);
/* UDMABUF_CREATE_LIST calls answered so far. */
unsigned fake_udmabuf_calls(void);
/* Restores the previous ioctl hook and the real udmabuf paths; removes its files. */
void fake_udmabuf_remove(void);

#endif
