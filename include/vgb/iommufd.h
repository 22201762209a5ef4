/* SPDX-License-Identifier: MIT */
#ifndef VGB_IOMMUFD_H
#define VGB_IOMMUFD_H

/*
 * iommufd helpers (vfio/iommufd.c): /dev/iommu, IOAS and HWPT objects, and I/O page-fault
 * queues (IOMMU_FAULT_QUEUE_ALLOC, Linux 6.11).
 *
 * Every ioctl goes through vgb_ioctl() and every fault-fd read/write through vgb_read() /
 * vgb_write() (vgb/sys.h), so tests put a fake kernel there. Functions return >= 0 or -errno;
 * failures are logged at debug only.
 */

#include <stddef.h>
#include <stdint.h>

#include "uapi/linux/iommufd.h"

/* An open /dev/iommu: one iommufd context. Objects made in it die with it. */
struct vgb_iommufd {
	int fd;
};

#define VGB_IOMMUFD_DEFAULT_PATH "/dev/iommu"

/*
 * Opens @path (NULL: /dev/iommu) O_RDWR|O_CLOEXEC. Returns 0, or -ENOENT when the kernel has no
 * iommufd (a capability, not an error), or open()'s -errno.
 */
int vgb_iommufd_open(const char *path, struct vgb_iommufd **ret);

/* Closes the fd and frees. The kernel destroys what is left in the context. Accepts NULL. */
void vgb_iommufd_close(struct vgb_iommufd *ctx);

/* IOMMU_IOAS_ALLOC. */
int vgb_iommufd_ioas_alloc(struct vgb_iommufd *ctx, uint32_t *ret_ioas_id);

/*
 * IOMMU_IOAS_MAP of @length bytes at @va. @flags: IOMMU_IOAS_MAP_{READABLE,WRITEABLE} (at least
 * one) and optionally IOMMU_IOAS_MAP_FIXED_IOVA, with *iova as the input. On success *iova holds
 * the IOVA used. Returns -EINVAL without an ioctl for a zero length, no access flag or unknown
 * flags.
 */
int vgb_iommufd_ioas_map(struct vgb_iommufd *ctx, uint32_t ioas_id, void *va, uint64_t length,
			 uint32_t flags, uint64_t *iova);

/* IOMMU_IOAS_UNMAP. *ret_unmapped (may be NULL) gets the bytes unmapped. */
int vgb_iommufd_ioas_unmap(struct vgb_iommufd *ctx, uint32_t ioas_id, uint64_t iova,
			   uint64_t length, uint64_t *ret_unmapped);

/*
 * IOMMU_HWPT_ALLOC for device @dev_id (from VFIO_DEVICE_BIND_IOMMUFD) over IOAS @pt_id.
 * @fault_id 0 means none; otherwise IOMMU_HWPT_FAULT_ID_VALID is set and faults of the HWPT go
 * to that fault queue. @flags are further IOMMU_HWPT_ALLOC_* flags (normally 0).
 */
int vgb_iommufd_hwpt_alloc(struct vgb_iommufd *ctx, uint32_t dev_id, uint32_t pt_id,
			   uint32_t flags, uint32_t fault_id, uint32_t *ret_hwpt_id);

/* IOMMU_DESTROY. -EBUSY while other objects (or an open fault fd) still hold @id. */
int vgb_iommufd_destroy(struct vgb_iommufd *ctx, uint32_t id);

/*
 * IOMMU_FAULT_QUEUE_ALLOC. On success *ret_fault_id is the object and *ret_fd its fd
 * (O_CLOEXEC, pollable, owned by the caller). The object cannot be destroyed while that fd is
 * open: close the fd first.
 */
int vgb_iommufd_fault_alloc(struct vgb_iommufd *ctx, uint32_t *ret_fault_id, int *ret_fd);

/* ---- fault queue: reading groups and answering them ---- */

/*
 * A response policy: decides the answer for one group of @n records (n >= 1; the last one has
 * IOMMU_PGFAULT_FLAGS_LAST_PAGE). Returns IOMMUFD_PAGE_RESP_SUCCESS or IOMMUFD_PAGE_RESP_INVALID;
 * anything else is sent as INVALID and counted in bad_policy_codes.
 */
struct vgb_iommufd_fault_policy {
	uint32_t (*respond)(void *data, const struct iommu_hwpt_pgfault *records, size_t n);
	void *data;
};

/* What the queue saw. For STATS; never reset. */
struct vgb_iommufd_fault_stats {
	uint64_t reads;             /* read() calls that returned data */
	uint64_t groups;            /* groups read (each answered exactly once, or counted below) */
	uint64_t records;           /* records read */
	uint64_t answered_success;  /* responses the kernel accepted, by code */
	uint64_t answered_invalid;
	uint64_t response_errors;   /* responses the kernel refused (any errno) */
	uint64_t unknown_cookie;    /* ... of which EINVAL: the kernel did not know the cookie */
	uint64_t malformed;         /* groups with inconsistent cookies, or a tail without LAST_PAGE */
	uint64_t short_reads;       /* reads whose length was not a multiple of the record size */
	uint64_t oversized;         /* a group larger than the largest buffer: queue wedged */
	uint64_t bad_policy_codes;  /* policy answers other than SUCCESS/INVALID */
	uint32_t buffer_records;    /* the read buffer's current size, in records */
};

/* The read buffer starts at this many records and doubles, up to the queue's maximum. */
#define VGB_IOMMUFD_FAULT_INITIAL_RECORDS 64u
/* Default maximum group size we can take in. Far above any IOMMU's page request queue depth. */
#define VGB_IOMMUFD_FAULT_MAX_RECORDS 65536u

struct vgb_iommufd_fault_queue;

/*
 * Allocates a fault object in @ctx (borrowed; must outlive the queue) and a reader for it.
 * @max_records caps the read buffer (0: VGB_IOMMUFD_FAULT_MAX_RECORDS). The default policy
 * answers every group IOMMUFD_PAGE_RESP_INVALID: this service does not resolve faults itself.
 */
int vgb_iommufd_fault_queue_create(struct vgb_iommufd *ctx, uint32_t max_records,
				   struct vgb_iommufd_fault_queue **ret);

/*
 * Tears down in the order the kernel allows: every HWPT made through
 * vgb_iommufd_fault_queue_hwpt_alloc() (they hold the fault object), then the fault fd (it holds
 * the object too), then the fault object. Groups not yet answered are answered INVALID by the
 * kernel when the object goes. Devices must be detached from those HWPTs first. Accepts NULL.
 */
void vgb_iommufd_fault_queue_destroy(struct vgb_iommufd_fault_queue *q);

/* The fd to poll for POLLIN (borrowed), and the fault object id. */
int vgb_iommufd_fault_queue_fd(const struct vgb_iommufd_fault_queue *q);
uint32_t vgb_iommufd_fault_queue_id(const struct vgb_iommufd_fault_queue *q);

/* IOMMU_HWPT_ALLOC with this queue's fault id; the HWPT is destroyed with the queue. */
int vgb_iommufd_fault_queue_hwpt_alloc(struct vgb_iommufd_fault_queue *q, uint32_t dev_id,
				       uint32_t pt_id, uint32_t *ret_hwpt_id);

/* Replaces the response policy. @policy NULL restores the default (INVALID). */
void vgb_iommufd_fault_queue_set_policy(struct vgb_iommufd_fault_queue *q,
					const struct vgb_iommufd_fault_policy *policy);

/*
 * Call when the fd is readable. Reads whole groups until the queue is empty (at most a bounded
 * number of reads per call, to stay fair in an event loop), answers every group exactly once
 * with its cookie, and counts. Every group read is answered even when a later one fails.
 * Returns the number of groups answered, or the first error:
 *   -EIO       a read whose length is not a multiple of the record size
 *   -EBADMSG   malformed records (still answered INVALID with the last record's cookie)
 *   -EINVAL    the kernel refused a response (unknown cookie): logged once, at debug
 *   -EMSGSIZE  a group larger than the maximum buffer; the queue cannot make progress: the
 *              caller should stop polling it and destroy it (the kernel then answers INVALID)
 *   or read()'s -errno.
 */
int vgb_iommufd_fault_queue_dispatch(struct vgb_iommufd_fault_queue *q);

void vgb_iommufd_fault_queue_get_stats(const struct vgb_iommufd_fault_queue *q,
				       struct vgb_iommufd_fault_stats *ret);

/* ---- for the service loop ---- */

struct vgb_vfio_device;

/*
 * The fault queue of a device opened through its VFIO cdev whose HWPT reports I/O page faults
 * (borrowed; lives as long as @dev), or NULL: another path, or no page faults on this
 * device/kernel. A service polls vgb_iommufd_fault_queue_fd() for POLLIN, calls
 * vgb_iommufd_fault_queue_dispatch() when readable (and stops polling after -EMSGSIZE), and
 * reports vgb_iommufd_fault_queue_get_stats() in STATS.
 */
struct vgb_iommufd_fault_queue *vgb_vfio_device_fault_queue(struct vgb_vfio_device *dev);

#endif
