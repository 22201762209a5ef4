/* SPDX-License-Identifier: MIT */
#ifndef VGB_TESTS_FAKE_IOMMUFD_H
#define VGB_TESTS_FAKE_IOMMUFD_H

/*
 * A fake iommufd + VFIO cdev kernel at the syscall seam (vgb_sys.ioctl/read/write), written
 * from drivers/iommu/iommufd/{main,ioas,hw_pagetable,fault|eventq}.c and drivers/vfio/
 * device_cdev.c. It keeps their semantics where our code can observe them:
 *   - ioctl numbers; `size`/`argsz` below the minimum: EINVAL; bytes past the struct the
 *     kernel knows must be zero: E2BIG (copy_struct_from_user);
 *   - iommufd: non-zero flags or __reserved: EOPNOTSUPP; unknown ids: ENOENT (HWPT_ALLOC's
 *     pt_id: EINVAL, as the kernel); DESTROY of an object others hold (an HWPT holds its IOAS
 *     and fault object, an open fault fd holds its fault object, an attached device holds its
 *     HWPT): EBUSY;
 *   - VFIO cdev: unknown flags: EINVAL; ioctls before BIND: EINVAL; BIND twice: EINVAL; closing
 *     the device fd unbinds (and drops the HWPT auto-made for an IOAS attach);
 *   - fault fds: a real AF_UNIX socketpair end (pollable; O_CLOEXEC), read returns whole groups
 *     only, 0 when the first does not fit or none is queued, ESPIPE for a count that is not a
 *     multiple of 40; cookies are allocated at read time from 1; write takes 8-byte responses,
 *     EINVAL for an unknown cookie or code, partial counts when a later one fails.
 * On top, "strict" checks that the kernel would not fail but that a byte-exact caller must get
 * right (output fields and pads zero on input, exact sizes): counted in strict_violations.
 *
 * Identity: an fd is the iommufd when /proc/self/fd/N names the path given to install, a VFIO
 * device when it names an added cdev path, a fault fd when its inode is one the fake made.
 * Every other fd passes through to the hooks that were installed before.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uapi/linux/iommufd.h"

void fake_iommufd_install(const char *iommu_path);
/* Restores the hooks and frees everything (closing the kernel ends of fault fds). */
void fake_iommufd_remove(void);

/* A VFIO device cdev node (an existing file). @vf_token (16 bytes, may be NULL) makes it a VF
 * whose bind needs that token. Returns 0 or -errno. */
int fake_iommufd_add_cdev(const char *cdev_path, const uint8_t *vf_token);
/* Whether the device takes I/O page faults (PRI). Without, attaching it to an HWPT that has a
 * fault object fails (ENODEV here; the errno varies by IOMMU driver). Default: without. */
int fake_iommufd_cdev_set_iopf(const char *cdev_path, bool iopf);

struct fake_iommufd_counts {
	unsigned ioctls;            /* handled by the fake */
	unsigned strict_violations; /* see above */
	unsigned live_objects;      /* IOAS, HWPT, fault and device objects alive */
	unsigned bound_devices;
};
void fake_iommufd_get_counts(struct fake_iommufd_counts *ret);

/* A log of object lifecycle events, "; "-separated: "destroy hwpt 3", "fault 2 fd closed",
 * "destroy fault 2: EBUSY", "unbind dev 1", ... */
const char *fake_iommufd_log(void);
void fake_iommufd_log_clear(void);

/* Queues one group for fault object @fault_id: the fake sets LAST_PAGE on the last record and
 * clears it on the others; cookies are assigned when the group is read. */
int fake_iommufd_fault_emit(uint32_t fault_id, const struct iommu_hwpt_pgfault *recs, size_t n);
/* Queues raw bytes delivered by one read as they are (no cookie is registered): a misbehaving
 * kernel, for the reader's malformed-input paths. */
int fake_iommufd_fault_emit_raw(uint32_t fault_id, const void *bytes, size_t n);
/* The next group read gets a cookie the fake does not keep (as when the kernel already
 * answered it itself, e.g. on detach): a response to it gets EINVAL. */
int fake_iommufd_fault_forget_next(uint32_t fault_id);

struct fake_fault_counts {
	unsigned queued;          /* groups/raw chunks not yet read */
	unsigned delivered;       /* groups read */
	unsigned outstanding;     /* delivered groups with no response yet */
	unsigned responses_ok;
	unsigned responses_success, responses_invalid;
	unsigned responses_einval; /* unknown cookie or code */
	unsigned auto_invalid;     /* answered INVALID by the fake when the object was destroyed */
	uint32_t last_cookie;      /* cookie of the last response written, accepted or not */
	bool fd_open;
};
int fake_iommufd_fault_get_counts(uint32_t fault_id, struct fake_fault_counts *ret);

#endif
