/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_EXPORT_H
#define VGB_BRIDGE_EXPORT_H

/*
 * The export planner: turns a translated blob (bridge/core/blob.h) into
 *   1. one VFIO multi-range dmabuf, when every segment lies in one region of one device that
 *      has VGB_VFIO_CAP_DMA_BUF;
 *   2. one udmabuf, when every segment is a udmabuf-capable memfd range and the limits allow;
 *   3. nothing but the CPU view.
 * "Not possible for this memory" (a capability, a limit, unaligned segments, EINVAL/EBADFD
 * from udmabuf) falls to the next strategy quietly; anything else is logged once per blob.
 * A dmabuf whose size (lseek SEEK_END) is not the blob's is dropped and counts as such a
 * failure (-EMSGSIZE in the report).
 *
 * The CPU view exists on demand for every blob: a mapping of whole pages (the segment mapper,
 * with the pointer offset into the first page) when the segment edges allow it, otherwise a
 * copy kept in an anonymous host buffer and refreshed on demand.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vgb_export_strategy {
	VGB_EXPORT_NONE = 0,    /* not planned yet, or dropped (reset, window removed) */
	VGB_EXPORT_VFIO_DMABUF, /* VFIO_DEVICE_FEATURE_DMA_BUF over one region */
	VGB_EXPORT_UDMABUF,     /* UDMABUF_CREATE_LIST over memfd ranges */
	VGB_EXPORT_CPU_VIEW,    /* no dmabuf: only the CPU view */
	VGB_EXPORT_COUNT,
};

/* "none", "vfio-dmabuf", "udmabuf", "cpu-view". */
const char *vgb_export_strategy_name(enum vgb_export_strategy s);

struct vgb_blob_layout;

/*
 * One export of a blob (or the host memory of a 2D resource). Refcounted: the resource holds
 * one reference and each frame the display has not completed holds one, so memory a sink
 * borrows stays mapped until it is done, even after the resource or its window is gone.
 * An export never touches the memory map or a VFIO device after it is built.
 */
struct vgb_export {
	int refs;
	enum vgb_export_strategy strategy;
	uint64_t size;       /* bytes of the blob */
	int dmabuf_fd;       /* owned; -1 for VGB_EXPORT_CPU_VIEW */
	/* CPU view (vgb_export_cpu_view()); NULL until built. */
	const uint8_t *cpu;  /* blob byte 0 */
	bool cpu_is_copy;    /* a copy in copy_fd, refreshed by vgb_export_refresh() */
	struct vgb_segmap *segmap;
	void *map;           /* copy path or host memory: our own mapping of copy_fd */
	size_t map_size;
	int copy_fd;         /* owned memfd behind the copy (or a 2D resource's host memory) */
	/*
	 * Owned duplicate of the one RAM memfd behind every segment, when there is just one and
	 * the view is a mapping: lets vgb_export_memfd_range() hand a sink its memfd. -1 else.
	 */
	int ram_memfd;
	uint64_t ram_memfd_size;
	/* For vgb_export_memfd_range(): where each blob range sits in ram_memfd. */
	size_t n_ranges;
	struct vgb_export_range {
		uint64_t blob_offset, length, memfd_offset;
	} *ranges;
};

/* What the planner saw, for the caller's single log line and the stats. */
struct vgb_export_report {
	/* 0, or -errno of the VFIO attempt (0 also when not attempted); -EMSGSIZE: the dmabuf's
	 * size was not the blob's */
	int vfio_err;
	int udmabuf_err;  /* likewise for udmabuf */
	bool unexpected;  /* one of them failed in a way "not possible here" does not explain */
};

/*
 * Plans an export of @layout (see the top of this file). Never fails for lack of a dmabuf:
 * the CPU-view strategy is always available. Returns 0 and a new export (refs = 1), or
 * -ENOMEM. *@ret_report (may be NULL) says what was tried.
 */
int vgb_export_plan(const struct vgb_blob_layout *layout, struct vgb_export **ret,
		    struct vgb_export_report *ret_report);

/*
 * Builds the CPU view of @e over @layout when it does not exist yet: a mapping when the
 * segment edges allow it, else a copy. Returns 0 or -errno (-ENOMEM, the read's -errno).
 */
int vgb_export_cpu_view(struct vgb_export *e, const struct vgb_blob_layout *layout);

/*
 * vgb_export_cpu_view() within budgets, for callers that must bound what a guest can make
 * them hold: a mapping only when it takes at most @max_mmaps mmap calls (one per segment),
 * else a copy; a copy only of at most @max_copy_bytes. Returns 0, -E2BIG when neither fits,
 * or -errno.
 */
int vgb_export_cpu_view_limited(struct vgb_export *e, const struct vgb_blob_layout *layout,
				size_t max_mmaps, uint64_t max_copy_bytes);

/*
 * A read-only mapping of @layout and nothing else (strategy NONE, no dmabuf, no copy): what
 * a 2D resource's backing is read through. The same rule as the CPU view's mapping: every
 * segment after the first starts on a page in its source and in the view; at most
 * @max_mmaps mmap calls (one per segment). Read it with vgb_guarded_copy(): the memory can
 * go away under it. Returns 0, -EINVAL (edges not page aligned), -E2BIG (over @max_mmaps),
 * -ENOMEM, or the mapper's -errno.
 */
int vgb_export_create_mapped(const struct vgb_blob_layout *layout, size_t max_mmaps,
			     struct vgb_export **ret);

/* Re-reads [@off, @off + @len) (clipped to the blob) into a copy view. No-op for mappings. */
int vgb_export_refresh(struct vgb_export *e, const struct vgb_blob_layout *layout, uint64_t off,
		       uint64_t len);

/*
 * A writable host buffer of @size bytes in a new memfd (2D resources): strategy NONE,
 * cpu = map, copy_fd the memfd. Returns 0 or -errno.
 */
int vgb_export_create_host(uint64_t size, struct vgb_export **ret);

/*
 * When blob bytes [@off, @off + @len) lie in one range of one memfd, sets the memfd
 * (borrowed from @e), its offset and size and returns true.
 */
bool vgb_export_memfd_range(const struct vgb_export *e, uint64_t off, uint64_t len,
			    int *ret_fd, uint64_t *ret_offset, uint64_t *ret_size);

struct vgb_export *vgb_export_ref(struct vgb_export *e);
/* Drops a reference; the last one unmaps and closes everything. Accepts NULL. */
void vgb_export_unref(struct vgb_export *e);

#endif
