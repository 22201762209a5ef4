/* SPDX-License-Identifier: MIT */
#ifndef VGB_MEM_H
#define VGB_MEM_H

/*
 * General memory tools, not tied to VFIO: the segment mapper (one contiguous CPU view of
 * pieces of several fds) and udmabuf (one dmabuf from memfd pages). vfio/ builds segments of
 * VFIO regions for the mapper (vgb_vfio_segments() in vgb/vfio.h); the bridge core uses both.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- segment mapper (mem/segmap.c) ---- */

/* One piece of a CPU view: @length bytes of @fd (borrowed) from @offset. */
struct vgb_segment {
	int fd;
	uint64_t offset;
	uint64_t length;
};

struct vgb_segmap {
	void *addr;       /* the contiguous read-only view */
	size_t size;      /* its length */
	unsigned n_mmaps; /* mmap calls made for segments (after merging) */
	bool via_dmabuf;  /* the view is a direct mmap of the dmabuf */
};

/*
 * Builds one contiguous PROT_READ view of @n segments (in order): a PROT_NONE
 * MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE reservation of the total size, then one
 * MAP_SHARED|MAP_FIXED mapping per run of touching segments. Offsets and lengths must be
 * page aligned (-EINVAL). If @dmabuf_fd >= 0 (borrowed), mmap of that dmabuf is tried first
 * and the segments are used only when it fails (Linux 6.19's VFIO dmabufs refuse mmap).
 * On failure everything is unmapped. Returns 0, -EINVAL (no segments, fd < 0, zero, unaligned or
 * overflowing offsets and lengths), -E2BIG (more than 65536 segments), -ENOMEM, or mmap's
 * -errno (e.g. -ENODEV for an fd that cannot be mapped).
 */
int vgb_segmap_create(const struct vgb_segment *segs, size_t n, int dmabuf_fd,
		      struct vgb_segmap **ret);

/* Unmaps and frees. Accepts NULL. */
void vgb_segmap_destroy(struct vgb_segmap *map);

/* ---- udmabuf (mem/udmabuf.c) ---- */

/* The most items one udmabuf may be built from; bounds our allocation (the kernel's own
 * list_limit is far lower). */
#define VGB_UDMABUF_MAX_ITEMS 16384u

struct vgb_udmabuf_item {
	int memfd;        /* borrowed; shmem, sealed F_SEAL_SHRINK, not F_SEAL_WRITE */
	uint64_t offset;  /* page aligned */
	uint64_t size;    /* page aligned */
};

/* Whether /dev/udmabuf can be opened here. Cached after the first call. */
bool vgb_udmabuf_is_available(void);

/*
 * One dmabuf from @n memfd items (UDMABUF_CREATE_LIST). Touching items of the same memfd are
 * merged first. Returns the dmabuf fd, -ENODEV without /dev/udmabuf, -E2BIG over
 * /sys/module/udmabuf/parameters/list_limit (default 1024) or size_limit_mb (default 64),
 * or the kernel's -errno (-EINVAL for unsealed / unaligned, -EBADFD for a non-shmem fd).
 */
int vgb_udmabuf_create(const struct vgb_udmabuf_item *items, size_t n);

/* Test hook: where mem/udmabuf.c looks for /dev/udmabuf and its module parameters. NULL
 * restores the defaults. Resets the vgb_udmabuf_is_available() cache. */
void vgb_udmabuf_set_paths(const char *dev_path, const char *param_dir);

#endif
