/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_FORMAT_SET_H
#define VGB_DISPLAY_FORMAT_SET_H

/*
 * A set of (DRM fourcc, modifier) pairs: what a compositor lists for linux-dmabuf (v3 events or
 * v4 tranches) and the wl_shm formats beyond the two every compositor has. Small (a compositor
 * lists at most a few hundred pairs) and searched linearly.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vgb_fmt_pair {
	uint32_t fourcc;
	uint64_t modifier;
};

/* Zero-initialised is empty. */
struct vgb_fmt_set {
	struct vgb_fmt_pair *v;
	size_t n, cap;
};

/* Frees the pairs and leaves @set empty. */
void vgb_fmt_set_finish(struct vgb_fmt_set *set);
/* Adds the pair unless it is there. Returns 0, -E2BIG (65536 pairs: the v4 table's u16 index
 * cannot address more) or -ENOMEM. */
int vgb_fmt_set_add(struct vgb_fmt_set *set, uint32_t fourcc, uint64_t modifier);
bool vgb_fmt_set_has(const struct vgb_fmt_set *set, uint32_t fourcc, uint64_t modifier);

#endif
