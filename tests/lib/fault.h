/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_FAULT_H
#define VGB_TESTS_FAULT_H

/*
 * Failure injection at the syscall seam (vgb/sys.h): make the Nth ioctl / mmap fail with a
 * given errno, and count calls. The real syscall runs for every other call, so failure
 * semantics stay the kernel's.
 */

#include <stdint.h>

struct fault_counts {
	unsigned ioctl, mmap, munmap;
};

/* Installs counting wrappers over the current vgb_sys hooks (which may themselves be fakes). */
void fault_install(void);
/* Restores what was there before fault_install(). */
void fault_remove(void);
/* The @nth (1-based) call from now fails with -@err; 0 disarms. */
void fault_arm_ioctl(unsigned nth, int err);
void fault_arm_mmap(unsigned nth, int err);
void fault_reset_counts(void);
struct fault_counts fault_get_counts(void);
/* Whether the armed fault fired since it was armed. */
int fault_fired(void);

#endif
