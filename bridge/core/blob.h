/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_BLOB_H
#define VGB_BRIDGE_BLOB_H

/*
 * Blob translation: a guest's list of {addr, length} entries becomes a list of segments, each
 * inside one window of the memory map: split at window edges, touching segments merged.
 * Everything is validated before anything is allocated.
 */

#include <stddef.h>
#include <stdint.h>

#include "memmap.h"

struct virtio_gpu_mem_entry;
struct vgb_vfio_device;

#define VGB_BLOB_DEFAULT_MAX_ENTRIES 16384u
#define VGB_BLOB_DEFAULT_MAX_BYTES (256ull << 20)

struct vgb_blob_segment {
	uint32_t window_id;
	enum vgb_memmap_kind kind;
	uint64_t blob_offset; /* where the segment starts inside the blob */
	uint64_t gpa;
	uint64_t length;
	/* RAM: offset inside the memfd. VFIO: region_offset + (gpa - window.gpa). */
	uint64_t offset;
	int memfd;                   /* RAM: the window's (borrowed from the map) */
	bool udmabuf_ok;             /* RAM: the window's memfd can back a udmabuf */
	struct vgb_vfio_device *dev; /* VFIO: the window's device (borrowed) */
	uint32_t region;             /* VFIO */
};

struct vgb_blob_layout {
	uint64_t size;      /* sum of the entries' lengths */
	uint32_t n_entries; /* as the guest sent them */
	uint32_t n_pieces;  /* segments after splitting, before merging */
	uint32_t merged;    /* segments merged away: n_pieces - n_segs */
	size_t n_segs;
	struct vgb_blob_segment segs[];
};

/*
 * Translates @n entries (the spec's little-endian virtio_gpu_mem_entry array, at any
 * alignment) over @map.
 * @expected_size is the blob size the guest declared (0: no check, for 2D backing).
 * Returns 0 and a layout to free() in *@ret, or:
 *   -EINVAL     n == 0, a zero-length entry, or the sum differs from @expected_size
 *   -E2BIG      n > @max_entries, or the total > @max_bytes
 *   -EOVERFLOW  an entry's addr + length wraps, or the total overflows
 *   -EFAULT     some byte is not covered by any window
 *   -ENOMEM
 * Nothing is allocated before every check has passed.
 */
int vgb_blob_translate(const struct vgb_memmap *map, const struct virtio_gpu_mem_entry *entries,
		       uint32_t n, uint64_t expected_size, uint32_t max_entries, uint64_t max_bytes,
		       struct vgb_blob_layout **ret);

/* Whether every segment still has its window in @map (window ids are never reused). */
bool vgb_blob_layout_is_valid(const struct vgb_blob_layout *layout, const struct vgb_memmap *map);

/* Whether any segment lies in window @id. */
bool vgb_blob_layout_uses_window(const struct vgb_blob_layout *layout, uint32_t id);

/*
 * Copies @len bytes from blob offset @off into @dst, reading each segment's source
 * (pread on the memfd, region read on the device). Returns 0, -EINVAL (out of range) or the
 * -errno of the read (-EIO for a short read).
 */
int vgb_blob_layout_read(const struct vgb_blob_layout *layout, uint64_t off, void *dst,
			 uint64_t len);

#endif
