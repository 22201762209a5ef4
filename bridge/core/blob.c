/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/virtio_gpu.h>

#include "blob.h"
#include "vgb/sys.h"
#include "vgb/util.h"
#include "vgb/vfio.h"

/* Reads entry @i; the array may sit at any alignment inside a message. */
static void get_entry(const struct virtio_gpu_mem_entry *entries, uint32_t i, uint64_t *ret_addr,
		      uint64_t *ret_len)
{
	struct virtio_gpu_mem_entry e;

	memcpy(&e, (const uint8_t *)entries + (size_t)i * sizeof(e), sizeof(e));
	*ret_addr = le64toh(e.addr);
	*ret_len = le32toh(e.length);
}

/* Source identity of a piece, for merging: touching pieces of one window merge. */
static bool touches(const struct vgb_blob_segment *a, const struct vgb_blob_segment *b)
{
	return a->window_id == b->window_id && a->offset + a->length == b->offset &&
	       a->gpa + a->length == b->gpa;
}

static void fill_piece(struct vgb_blob_segment *s, const struct vgb_memmap_window *w,
		       uint64_t gpa, uint64_t len, uint64_t blob_offset)
{
	uint64_t in_window = gpa - w->gpa;

	*s = (struct vgb_blob_segment){
		.window_id = w->id,
		.kind = w->kind,
		.blob_offset = blob_offset,
		.gpa = gpa,
		.length = len,
		.memfd = -1,
	};
	if (w->kind == VGB_MEMMAP_RAM) {
		/* Cannot overflow: offset + size was checked when the window was added. */
		s->offset = w->ram.offset + in_window;
		s->memfd = w->ram.memfd;
		s->udmabuf_ok = w->ram.udmabuf_ok;
	} else {
		s->offset = w->vfio.region_offset + in_window;
		s->dev = w->vfio.dev;
		s->region = w->vfio.region;
	}
}

/*
 * Walks the entries, splitting at window edges. With @out NULL it only counts and validates
 * coverage (the pass before allocation); with @out it fills pieces and merges as it goes.
 * Returns the number of pieces (or segments, when filling), or -EFAULT.
 */
static long walk(const struct vgb_memmap *map, const struct virtio_gpu_mem_entry *entries,
		 uint32_t n, struct vgb_blob_segment *out)
{
	uint64_t blob_offset = 0;
	long count = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t gpa, left;

		get_entry(entries, i, &gpa, &left);

		while (left > 0) {
			const struct vgb_memmap_window *w = vgb_memmap_lookup(map, gpa);
			uint64_t len;

			if (!w)
				return -EFAULT;
			len = VGB_MIN(left, w->gpa + w->size - gpa);
			if (out) {
				struct vgb_blob_segment piece;

				fill_piece(&piece, w, gpa, len, blob_offset);
				if (count > 0 && touches(&out[count - 1], &piece))
					out[count - 1].length += len;
				else
					out[count++] = piece;
			} else {
				count++;
			}
			gpa += len;
			left -= len;
			blob_offset += len;
		}
	}
	return count;
}

int vgb_blob_translate(const struct vgb_memmap *map, const struct virtio_gpu_mem_entry *entries,
		       uint32_t n, uint64_t expected_size, uint32_t max_entries, uint64_t max_bytes,
		       struct vgb_blob_layout **ret)
{
	struct vgb_blob_layout *layout;
	uint64_t total = 0;
	size_t bytes;
	long pieces, segs;

	if (n == 0)
		return -EINVAL;
	if (n > max_entries)
		return -E2BIG;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t addr, len, end;

		get_entry(entries, i, &addr, &len);

		if (len == 0)
			return -EINVAL;
		if (__builtin_add_overflow(addr, len, &end) ||
		    __builtin_add_overflow(total, len, &total))
			return -EOVERFLOW;
	}
	if (total > max_bytes)
		return -E2BIG;
	if (expected_size != 0 && total != expected_size)
		return -EINVAL;

	pieces = walk(map, entries, n, NULL);
	if (pieces < 0)
		return (int)pieces;
	/* pieces <= n + number of windows, far below SIZE_MAX / sizeof: the check is belt and
	 * braces for 32-bit builds. */
	if (__builtin_mul_overflow((size_t)pieces, sizeof(struct vgb_blob_segment), &bytes) ||
	    __builtin_add_overflow(bytes, sizeof(*layout), &bytes))
		return -E2BIG;
	layout = malloc(bytes);
	if (!layout)
		return -ENOMEM;
	segs = walk(map, entries, n, layout->segs);
	if (segs < 0) { /* cannot happen: the map did not change in between */
		free(layout);
		return (int)segs;
	}
	layout->size = total;
	layout->n_entries = n;
	layout->n_pieces = (uint32_t)pieces;
	layout->n_segs = (size_t)segs;
	layout->merged = (uint32_t)(pieces - segs);
	*ret = layout;
	return 0;
}

bool vgb_blob_layout_is_valid(const struct vgb_blob_layout *layout, const struct vgb_memmap *map)
{
	for (size_t i = 0; i < layout->n_segs; i++)
		if (!vgb_memmap_find_id(map, layout->segs[i].window_id))
			return false;
	return true;
}

bool vgb_blob_layout_uses_window(const struct vgb_blob_layout *layout, uint32_t id)
{
	for (size_t i = 0; i < layout->n_segs; i++)
		if (layout->segs[i].window_id == id)
			return true;
	return false;
}

int vgb_blob_layout_read(const struct vgb_blob_layout *layout, uint64_t off, void *dst,
			 uint64_t len)
{
	uint64_t end;
	size_t i = 0;

	if (__builtin_add_overflow(off, len, &end) || end > layout->size)
		return -EINVAL;
	while (len > 0) {
		const struct vgb_blob_segment *s;
		uint64_t in_seg, n;
		ssize_t r;

		/* Segments are in blob order; skip to the one holding @off. */
		while (i < layout->n_segs &&
		       layout->segs[i].blob_offset + layout->segs[i].length <= off)
			i++;
		if (i == layout->n_segs)
			return -EINVAL;
		s = &layout->segs[i];
		in_seg = off - s->blob_offset;
		n = VGB_MIN(len, s->length - in_seg);
		if (s->kind == VGB_MEMMAP_RAM)
			r = vgb_pread_all(s->memfd, dst, n, (off_t)(s->offset + in_seg));
		else
			r = vgb_vfio_region_read(s->dev, s->region, s->offset + in_seg, dst, n);
		if (r < 0)
			return (int)r;
		if ((uint64_t)r != n)
			return -EIO;
		dst = (char *)dst + n;
		off += n;
		len -= n;
	}
	return 0;
}
