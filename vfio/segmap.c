/* SPDX-License-Identifier: MIT */
/*
 * VFIO region ranges as mappable segments for the segment mapper (mem/segmap.c): each range is
 * checked against the region's flags and sparse mmap areas, and memory decode is checked once.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <linux/vfio.h>

#include "private.h"
#include "vgb/log.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

/* Whether [off, end) lies inside the union of @info's sparse areas. */
static bool in_sparse(const struct vgb_vfio_region_info *info, uint64_t off, uint64_t end)
{
	/* Walk forward: each step finds an area holding @off and jumps to its end. Areas may be
	 * unsorted and may touch; n_sparse is capped, so this is bounded. */
	while (off < end) {
		uint32_t i;

		for (i = 0; i < info->n_sparse; i++) {
			const struct vgb_vfio_sparse_area *a = &info->sparse[i];

			if (a->size && off >= a->offset && off - a->offset < a->size)
				break;
		}
		if (i == info->n_sparse)
			return false;
		off = info->sparse[i].offset + info->sparse[i].size;
	}
	return true;
}

/* Whether a range is non-empty and page aligned (checked before any query). */
static bool range_is_aligned(const struct vgb_vfio_range *r)
{
	return r->length && VGB_IS_ALIGNED(r->offset, VGB_PAGE_SIZE) &&
	       VGB_IS_ALIGNED(r->length, VGB_PAGE_SIZE);
}

/* Everything vgb_vfio_segment() checks of an aligned range except memory decode. */
static int resolve(struct vgb_vfio_device *dev, uint32_t region,
		   const struct vgb_vfio_region_info *info, uint64_t offset, uint64_t length,
		   struct vgb_segment *ret)
{
	uint64_t end, file_off;
	int fd;

	if (__builtin_add_overflow(offset, length, &end) || end > info->size)
		return -EINVAL;
	if (!vgb_vfio_device_has_cap(dev, VGB_VFIO_CAP_MMAP) ||
	    !(info->flags & VFIO_REGION_INFO_FLAG_MMAP) || !dev->ops->region_mmap_fd)
		return -EACCES;
	if (info->has_sparse && !in_sparse(info, offset, end))
		return -EACCES;
	if (__builtin_add_overflow(info->offset, offset, &file_off) || file_off > INT64_MAX)
		return -EINVAL;
	fd = dev->ops->region_mmap_fd(dev, region);
	if (fd < 0)
		return fd;
	*ret = (struct vgb_segment){ .fd = fd, .offset = file_off, .length = length };
	return 0;
}

int vgb_vfio_segments(struct vgb_vfio_device *dev, uint32_t region,
		      const struct vgb_vfio_range *ranges, size_t n, struct vgb_segment *ret)
{
	const struct vgb_vfio_region_info *info;
	int r;

	if (!dev || !ranges || !ret || n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!range_is_aligned(&ranges[i]))
			return -EINVAL;
	r = vgb_vfio_region_info(dev, region, &info);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		r = resolve(dev, region, info, ranges[i].offset, ranges[i].length, &ret[i]);
		if (r < 0)
			return r;
	}
	/* vfio-pci maps an undecoded BAR and answers the first read of it with SIGBUS: checked
	 * once for all @n, after validation (bad input is -EINVAL/-EACCES whatever the bit). */
	return vgb_vfio_check_decode(dev, region);
}

int vgb_vfio_segment(struct vgb_vfio_device *dev, uint32_t region, uint64_t offset,
		     uint64_t length, struct vgb_segment *ret)
{
	const struct vgb_vfio_range range = { offset, length };
	struct vgb_segment seg;
	int r = vgb_vfio_segments(dev, region, &range, 1, &seg);

	if (r < 0)
		return r;
	*ret = seg;
	return 0;
}
