/* SPDX-License-Identifier: MIT */
/*
 * The segment mapper: one contiguous read-only CPU view of scattered pieces of memfds or VFIO
 * regions. A PROT_NONE reservation holds the address range so that the MAP_FIXED segment
 * mappings can never land on someone else's memory, and a failure unmaps the whole range at
 * once.
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

/* The most segments one view may have (a blob's entry cap, with room). */
#define VGB_SEGMAP_MAX_SEGMENTS 65536u

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

static int validate(const struct vgb_segment *segs, size_t n, size_t *ret_total)
{
	uint64_t total = 0;

	if (!segs || n == 0)
		return -EINVAL;
	if (n > VGB_SEGMAP_MAX_SEGMENTS)
		return -E2BIG;
	for (size_t i = 0; i < n; i++) {
		uint64_t end;

		if (segs[i].fd < 0 || !segs[i].length ||
		    !VGB_IS_ALIGNED(segs[i].offset, VGB_PAGE_SIZE) ||
		    !VGB_IS_ALIGNED(segs[i].length, VGB_PAGE_SIZE))
			return -EINVAL;
		if (__builtin_add_overflow(segs[i].offset, segs[i].length, &end) || end > INT64_MAX)
			return -EINVAL;
		if (__builtin_add_overflow(total, segs[i].length, &total))
			return -EINVAL;
	}
	if (total > SIZE_MAX / 2)
		return -ENOMEM;
	*ret_total = (size_t)total;
	return 0;
}

/* Whether @b continues @a in the same file, so one mmap covers both. */
static bool touches(const struct vgb_segment *a, uint64_t a_len, const struct vgb_segment *b)
{
	return a->fd == b->fd && a->offset + a_len == b->offset;
}

int vgb_segmap_create(const struct vgb_segment *segs, size_t n, int dmabuf_fd,
		      struct vgb_segmap **ret)
{
	struct vgb_segmap *map;
	size_t total, pos = 0;
	void *base;
	int r;

	if (!ret)
		return -EINVAL;
	r = validate(segs, n, &total);
	if (r < 0)
		return r;
	map = calloc(1, sizeof(*map));
	if (!map)
		return -ENOMEM;
	map->size = total;

	if (dmabuf_fd >= 0) {
		/* Linux 6.19's VFIO dmabufs refuse mmap (EINVAL); later kernels may not. */
		r = vgb_mmap(NULL, total, PROT_READ, MAP_SHARED, dmabuf_fd, 0, &base);
		if (r == 0) {
			map->addr = base;
			map->via_dmabuf = true;
			*ret = map;
			return 0;
		}
		vgb_log_errno(VGB_LOG_DEBUG, r, "segmap: dmabuf mmap, using %zu segments", n);
	}

	r = vgb_mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0,
		     &base);
	if (r < 0)
		goto err_free;

	for (size_t i = 0; i < n;) {
		uint64_t run = segs[i].length;
		size_t j = i + 1;
		void *got;

		while (j < n && touches(&segs[i], run, &segs[j]))
			run += segs[j++].length;
		r = vgb_mmap((uint8_t *)base + pos, (size_t)run, PROT_READ, MAP_SHARED | MAP_FIXED,
			     segs[i].fd, (off_t)segs[i].offset, &got);
		if (r < 0)
			goto err_unmap;
		map->n_mmaps++;
		pos += (size_t)run;
		i = j;
	}
	map->addr = base;
	*ret = map;
	return 0;

err_unmap:
	/* One munmap of the reservation takes the segments mapped over it too. */
	vgb_munmap(base, total);
err_free:
	vgb_log_errno(VGB_LOG_DEBUG, r, "segmap: %zu segments, %zu bytes", n, total);
	free(map);
	return r;
}

void vgb_segmap_destroy(struct vgb_segmap *map)
{
	if (!map)
		return;
	if (map->addr)
		vgb_munmap(map->addr, map->size);
	free(map);
}
