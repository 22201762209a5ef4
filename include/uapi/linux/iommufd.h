/* SPDX-License-Identifier: MIT */
/*
 * The subset of the iommufd uapi (/dev/iommu) that vgbridge uses, written from the layouts the
 * kernel documents in include/uapi/linux/iommufd.h. Debian 12's 6.1 headers have none of it.
 *
 * Versions: IOAS/HWPT ioctls 6.2 (HWPT_ALLOC 6.6), fault queues and iommu_hwpt_alloc.fault_id
 * 6.11, the explicit iommu_hwpt_pgfault.__reserved pad 6.14 (before that the same 4 bytes were an
 * implicit hole the kernel did not initialise; the record is 40 bytes either way).
 *
 * The guard is the installed kernel header's own (_IOMMUFD_H), so whichever of the two is seen
 * first wins and the other becomes a no-op. The asserts at the bottom run either way: a system
 * header older than the layouts we rely on fails the build instead of silently mismatching.
 * Our code includes only this file, never <linux/iommufd.h>.
 */
#ifndef _IOMMUFD_H
#define _IOMMUFD_H
#define _UAPI_IOMMUFD_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define IOMMUFD_TYPE (';')

enum {
	IOMMUFD_CMD_BASE = 0x80,
	IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE,
	IOMMUFD_CMD_IOAS_ALLOC = 0x81,
	IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82,
	IOMMUFD_CMD_IOAS_COPY = 0x83,
	IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84,
	IOMMUFD_CMD_IOAS_MAP = 0x85,
	IOMMUFD_CMD_IOAS_UNMAP = 0x86,
	IOMMUFD_CMD_OPTION = 0x87,
	IOMMUFD_CMD_VFIO_IOAS = 0x88,
	IOMMUFD_CMD_HWPT_ALLOC = 0x89,
	IOMMUFD_CMD_GET_HW_INFO = 0x8a,
	IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b,
	IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c,
	IOMMUFD_CMD_HWPT_INVALIDATE = 0x8d,
	IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8e,
};

/* IOMMU_DESTROY: any destroyable object. */
struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

/* IOMMU_IOAS_ALLOC: @flags must be 0. */
struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

enum iommufd_ioas_map_flags {
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
	IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
	IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

/* IOMMU_IOAS_MAP: maps @length bytes at @user_va; @iova is in (FIXED_IOVA) or out. */
struct iommu_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

/* IOMMU_IOAS_UNMAP: @length returns the bytes unmapped. iova 0 + length U64_MAX: all. */
struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)

enum iommufd_hwpt_alloc_flags {
	IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0,
	IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1,
	IOMMU_HWPT_FAULT_ID_VALID = 1 << 2,
	IOMMU_HWPT_ALLOC_PASID = 1 << 3,
};

enum iommu_hwpt_data_type {
	IOMMU_HWPT_DATA_NONE = 0,
	IOMMU_HWPT_DATA_VTD_S1 = 1,
	IOMMU_HWPT_DATA_ARM_SMMUV3 = 2,
};

/*
 * IOMMU_HWPT_ALLOC: a hardware page table for device @dev_id over IOAS (or parent HWPT) @pt_id.
 * @fault_id is read only with IOMMU_HWPT_FAULT_ID_VALID (6.11). __reserved and __reserved2 must
 * be 0.
 */
struct iommu_hwpt_alloc {
	__u32 size;
	__u32 flags;
	__u32 dev_id;
	__u32 pt_id;
	__u32 out_hwpt_id;
	__u32 __reserved;
	__u32 data_type;
	__u32 data_len;
	__aligned_u64 data_uptr;
	__u32 fault_id;
	__u32 __reserved2;
};
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)

enum iommu_hwpt_pgfault_flags {
	IOMMU_PGFAULT_FLAGS_PASID_VALID = 1 << 0,
	IOMMU_PGFAULT_FLAGS_LAST_PAGE = 1 << 1, /* the last record of a group */
};

enum iommu_hwpt_pgfault_perm {
	IOMMU_PGFAULT_PERM_READ = 1 << 0,
	IOMMU_PGFAULT_PERM_WRITE = 1 << 1,
	IOMMU_PGFAULT_PERM_EXEC = 1 << 2,
	IOMMU_PGFAULT_PERM_PRIV = 1 << 3,
};

/*
 * One record read from a fault fd. Records come in groups; the last of a group has
 * IOMMU_PGFAULT_FLAGS_LAST_PAGE, and its @cookie is what the response echoes. __reserved is
 * explicit since 6.14; before, those bytes were uninitialised padding, so readers must ignore it.
 */
struct iommu_hwpt_pgfault {
	__u32 flags;
	__u32 dev_id;
	__u32 pasid;
	__u32 grpid;
	__u32 perm;
	__u32 __reserved;
	__aligned_u64 addr;
	__u32 length;
	__u32 cookie;
};

enum iommufd_page_response_code {
	IOMMUFD_PAGE_RESP_SUCCESS = 0,
	IOMMUFD_PAGE_RESP_INVALID = 1,
};

/* Written to a fault fd, one per group. */
struct iommu_hwpt_page_response {
	__u32 cookie;
	__u32 code;
};

/* IOMMU_FAULT_QUEUE_ALLOC (6.11): @flags must be 0; returns the object id and an O_CLOEXEC fd. */
struct iommu_fault_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_fault_id;
	__u32 out_fault_fd;
};
#define IOMMU_FAULT_QUEUE_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_FAULT_QUEUE_ALLOC)

#endif /* _IOMMUFD_H */

#ifndef VGB_UAPI_LINUX_IOMMUFD_CHECKS
#define VGB_UAPI_LINUX_IOMMUFD_CHECKS
#include <stddef.h>

_Static_assert(IOMMU_DESTROY == 0x3b80, "IOMMU_DESTROY");
_Static_assert(IOMMU_IOAS_ALLOC == 0x3b81, "IOMMU_IOAS_ALLOC");
_Static_assert(IOMMU_IOAS_MAP == 0x3b85, "IOMMU_IOAS_MAP");
_Static_assert(IOMMU_IOAS_UNMAP == 0x3b86, "IOMMU_IOAS_UNMAP");
_Static_assert(IOMMU_HWPT_ALLOC == 0x3b89, "IOMMU_HWPT_ALLOC");
_Static_assert(IOMMU_FAULT_QUEUE_ALLOC == 0x3b8e, "IOMMU_FAULT_QUEUE_ALLOC");

_Static_assert(sizeof(struct iommu_destroy) == 8, "iommu_destroy");
_Static_assert(offsetof(struct iommu_destroy, id) == 4, "iommu_destroy.id");

_Static_assert(sizeof(struct iommu_ioas_alloc) == 12, "iommu_ioas_alloc");
_Static_assert(offsetof(struct iommu_ioas_alloc, out_ioas_id) == 8, "iommu_ioas_alloc.out");

_Static_assert(sizeof(struct iommu_ioas_map) == 40, "iommu_ioas_map");
_Static_assert(offsetof(struct iommu_ioas_map, __reserved) == 12, "iommu_ioas_map.__reserved");
_Static_assert(offsetof(struct iommu_ioas_map, user_va) == 16, "iommu_ioas_map.user_va");
_Static_assert(offsetof(struct iommu_ioas_map, length) == 24, "iommu_ioas_map.length");
_Static_assert(offsetof(struct iommu_ioas_map, iova) == 32, "iommu_ioas_map.iova");

_Static_assert(sizeof(struct iommu_ioas_unmap) == 24, "iommu_ioas_unmap");
_Static_assert(offsetof(struct iommu_ioas_unmap, iova) == 8, "iommu_ioas_unmap.iova");
_Static_assert(offsetof(struct iommu_ioas_unmap, length) == 16, "iommu_ioas_unmap.length");

_Static_assert(sizeof(struct iommu_hwpt_alloc) == 48, "iommu_hwpt_alloc");
_Static_assert(offsetof(struct iommu_hwpt_alloc, out_hwpt_id) == 16, "iommu_hwpt_alloc.out");
_Static_assert(offsetof(struct iommu_hwpt_alloc, __reserved) == 20, "iommu_hwpt_alloc.__reserved");
_Static_assert(offsetof(struct iommu_hwpt_alloc, data_uptr) == 32, "iommu_hwpt_alloc.data_uptr");
_Static_assert(offsetof(struct iommu_hwpt_alloc, fault_id) == 40, "iommu_hwpt_alloc.fault_id");
_Static_assert(offsetof(struct iommu_hwpt_alloc, __reserved2) == 44,
	       "iommu_hwpt_alloc.__reserved2");

_Static_assert(sizeof(struct iommu_hwpt_pgfault) == 40, "iommu_hwpt_pgfault");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, perm) == 16, "iommu_hwpt_pgfault.perm");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, __reserved) == 20,
	       "iommu_hwpt_pgfault.__reserved (6.14 layout)");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, addr) == 24, "iommu_hwpt_pgfault.addr");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, length) == 32, "iommu_hwpt_pgfault.length");
_Static_assert(offsetof(struct iommu_hwpt_pgfault, cookie) == 36, "iommu_hwpt_pgfault.cookie");

_Static_assert(sizeof(struct iommu_hwpt_page_response) == 8, "iommu_hwpt_page_response");
_Static_assert(offsetof(struct iommu_hwpt_page_response, code) == 4,
	       "iommu_hwpt_page_response.code");

_Static_assert(sizeof(struct iommu_fault_alloc) == 16, "iommu_fault_alloc");
_Static_assert(offsetof(struct iommu_fault_alloc, out_fault_id) == 8, "iommu_fault_alloc.id");
_Static_assert(offsetof(struct iommu_fault_alloc, out_fault_fd) == 12, "iommu_fault_alloc.fd");
#endif
