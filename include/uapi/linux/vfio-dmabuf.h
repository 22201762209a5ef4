/* SPDX-License-Identifier: MIT */
#ifndef VGB_UAPI_LINUX_VFIO_DMABUF_H
#define VGB_UAPI_LINUX_VFIO_DMABUF_H

/*
 * VFIO_DEVICE_FEATURE_DMA_BUF (Linux 6.19), which Debian 12's 6.1 headers lack. Written from the
 * layout documented in the kernel's include/uapi/linux/vfio.h:
 *
 *   Upon VFIO_DEVICE_FEATURE_GET create a dma_buf fd for the region selected. open_flags are the
 *   flags passed to open(2) (O_RDWR, O_CLOEXEC). Each range is a page-aligned slice of the
 *   region; nr_ranges is the number of ranges that follow. flags must be 0. Returns the new fd.
 *
 * The whole ioctl argument is a struct vfio_device_feature header (argsz, flags =
 * GET | 11) followed by struct vfio_device_feature_dma_buf and nr_ranges ranges, so
 * argsz = 8 + 16 + 16 * nr_ranges. The kernel does not check nr_ranges against argsz.
 *
 * Guarded so that it coexists with system headers that already define it; the asserts below
 * then check the system's layout too.
 */

#include <stddef.h>
#include <linux/types.h>
#include <linux/vfio.h>

#ifndef VFIO_DEVICE_FEATURE_DMA_BUF
#define VFIO_DEVICE_FEATURE_DMA_BUF 11

struct vfio_region_dma_range {
	__u64 offset;
	__u64 length;
};

struct vfio_device_feature_dma_buf {
	__u32 region_index;
	__u32 open_flags;
	__u32 flags; /* must be 0 */
	__u32 nr_ranges;
	struct vfio_region_dma_range dma_ranges[];
};
#endif

_Static_assert(VFIO_DEVICE_FEATURE_DMA_BUF == 11, "DMA_BUF is feature 11");
_Static_assert(sizeof(struct vfio_region_dma_range) == 16, "vfio_region_dma_range is 16 bytes");
_Static_assert(offsetof(struct vfio_region_dma_range, length) == 8, "range length at 8");
_Static_assert(sizeof(struct vfio_device_feature_dma_buf) == 16, "dma_buf payload is 16 bytes");
_Static_assert(offsetof(struct vfio_device_feature_dma_buf, region_index) == 0, "region_index");
_Static_assert(offsetof(struct vfio_device_feature_dma_buf, open_flags) == 4, "open_flags");
_Static_assert(offsetof(struct vfio_device_feature_dma_buf, flags) == 8, "flags");
_Static_assert(offsetof(struct vfio_device_feature_dma_buf, nr_ranges) == 12, "nr_ranges");
_Static_assert(offsetof(struct vfio_device_feature_dma_buf, dma_ranges) == 16, "ranges at 16");
/* The 6.1 header pieces we build the call from. */
_Static_assert(sizeof(struct vfio_device_feature) == 8, "vfio_device_feature header is 8 bytes");
_Static_assert(offsetof(struct vfio_device_feature, data) == 8, "feature data at 8");
_Static_assert(sizeof(struct vfio_region_info) == 32, "vfio_region_info is 32 bytes");
_Static_assert(sizeof(struct vfio_info_cap_header) == 8, "cap header is 8 bytes");
_Static_assert(sizeof(struct vfio_region_info_cap_sparse_mmap) == 16, "sparse cap head");
_Static_assert(sizeof(struct vfio_region_sparse_mmap_area) == 16, "sparse area");
_Static_assert(sizeof(struct vfio_region_info_cap_type) == 16, "type cap");

#endif
