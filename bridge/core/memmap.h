/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_MEMMAP_H
#define VGB_BRIDGE_MEMMAP_H

/*
 * A client's guest memory map: sorted, non-overlapping windows of guest-physical address
 * space, each backed by a RAM memfd (with an offset) or by a region of a VFIO device (with a
 * region offset). Lookups are a binary search, O(log n).
 *
 * Window ids are never reused within one map, so anything that remembers an id (a blob's
 * segments) can tell later whether its window is still there.
 *
 * Removal: listeners registered with vgb_memmap_add_listener() are told about each window
 * before it goes away (the gpu processor uses this to invalidate the blobs that use it, and
 * keeps their exports alive until the display has released the frames that borrow them).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vgb_memmap;
struct vgb_vfio_device;

/* Most windows per map (-ENOSPC beyond). */
#define VGB_MEMMAP_MAX_WINDOWS 4096u

enum vgb_memmap_kind {
	VGB_MEMMAP_RAM = 1,
	VGB_MEMMAP_VFIO,
};

struct vgb_memmap_window {
	uint32_t id;   /* > 0, unique within the map, never reused */
	enum vgb_memmap_kind kind;
	uint64_t gpa;  /* first guest-physical address */
	uint64_t size; /* > 0; gpa + size does not wrap */
	union {
		struct {
			int memfd;             /* owned by the map */
			uint64_t offset;       /* of gpa inside the memfd */
			uint64_t memfd_size;   /* st_size when added */
			bool udmabuf_ok;       /* sealed F_SEAL_SHRINK, not F_SEAL_WRITE */
		} ram;
		struct {
			struct vgb_vfio_device *dev; /* borrowed, see vgb_memmap_add_vfio() */
			uint32_t region;
			uint64_t region_offset;      /* of gpa inside the region */
		} vfio;
	};
};

/* Called before @w is removed from @map (by vgb_memmap_remove*, or vgb_memmap_destroy). */
typedef void (*vgb_memmap_remove_fn)(void *data, struct vgb_memmap *map,
				     const struct vgb_memmap_window *w);

/* Creates an empty map. Returns 0 or -ENOMEM. */
int vgb_memmap_create(struct vgb_memmap **ret);

/*
 * Removes every window (listeners are told), closes the memfds, frees @map. Listeners must
 * have been removed or must tolerate being called here. Accepts NULL.
 */
void vgb_memmap_destroy(struct vgb_memmap *map);

/*
 * Adds a RAM window: guest [@gpa, @gpa + @size) is bytes [@offset, @offset + @size) of
 * @memfd. Takes ownership of @memfd on success only (the caller still owns it on failure).
 *
 * @memfd must be a memfd (or another file that supports sealing). F_SEAL_SHRINK is added when
 * missing: a window whose file could shrink would let the client make us fault (SIGBUS). The
 * window is udmabuf-capable when the memfd is not sealed against writing.
 *
 * Returns 0 and the window id in *@ret_id (may be NULL), or:
 *   -EINVAL    @size is 0, or the memfd is smaller than @offset + @size, or it is not sealable
 *   -EOVERFLOW @gpa + @size or @offset + @size wraps around 2^64
 *   -EEXIST    the window overlaps an existing one
 *   -EPERM     the memfd lacks F_SEAL_SHRINK and cannot get it (F_SEAL_SEAL is set)
 *   -ENOSPC    VGB_MEMMAP_MAX_WINDOWS reached
 *   -EBADF     @memfd is not an open fd
 *   -ENOMEM
 */
int vgb_memmap_add_ram(struct vgb_memmap *map, uint64_t gpa, uint64_t size, int memfd,
		       uint64_t offset, uint32_t *ret_id);

/*
 * Adds a VFIO window: guest [@gpa, @gpa + @size) is bytes [@region_offset, @region_offset +
 * @size) of region @region of @dev. @dev is borrowed: it must outlive the window. Remove its
 * windows with vgb_memmap_remove_device() before destroying it.
 *
 * Returns 0 and the id in *@ret_id (may be NULL), or -EINVAL (size 0, bad region index, or
 * the range reaches past the region's size), -EOVERFLOW, -EEXIST, -ENOSPC, -ENOMEM as for
 * RAM, or the -errno of the region-info query.
 */
int vgb_memmap_add_vfio(struct vgb_memmap *map, uint64_t gpa, uint64_t size,
			struct vgb_vfio_device *dev, uint32_t region, uint64_t region_offset,
			uint32_t *ret_id);

/* Removes window @id (listeners first). Returns 0 or -ENOENT. */
int vgb_memmap_remove(struct vgb_memmap *map, uint32_t id);

/* Removes every window backed by @dev. Returns how many were removed (0 or more). */
int vgb_memmap_remove_device(struct vgb_memmap *map, const struct vgb_vfio_device *dev);

/* The window containing @gpa, or NULL. O(log n). Valid until the next add/remove. */
const struct vgb_memmap_window *vgb_memmap_lookup(const struct vgb_memmap *map, uint64_t gpa);

/* The window with id @id, or NULL. Valid until the next add/remove. */
const struct vgb_memmap_window *vgb_memmap_find_id(const struct vgb_memmap *map, uint32_t id);

/* The number of windows, and the @i-th in gpa order (NULL when out of range). */
size_t vgb_memmap_count(const struct vgb_memmap *map);
const struct vgb_memmap_window *vgb_memmap_get(const struct vgb_memmap *map, size_t i);

/*
 * Bumped on every removal: a user that cached window pointers or validity re-checks when it
 * changes.
 */
uint64_t vgb_memmap_epoch(const struct vgb_memmap *map);

/*
 * Registers @fn(@data, ...) to be called before each window is removed. Returns 0, -ENOMEM or
 * -EEXIST (same fn and data already registered).
 */
int vgb_memmap_add_listener(struct vgb_memmap *map, vgb_memmap_remove_fn fn, void *data);
/* Unregisters. Accepts a pair that is not registered. */
void vgb_memmap_remove_listener(struct vgb_memmap *map, vgb_memmap_remove_fn fn, void *data);

#endif
