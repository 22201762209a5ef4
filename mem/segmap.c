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

#include "vgb/log.h"
#include "vgb/mem.h"
#include "vgb/sys.h"
#include "vgb/util.h"

/* The most segments one view may have (a blob's entry cap, with room). */
#define VGB_SEGMAP_MAX_SEGMENTS 65536u

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
