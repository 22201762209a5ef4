/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_SHM_H
#define VGB_DISPLAY_WAYLAND_SHM_H

/* wl_shm: a pool straight on the guest memfd, and the copy buffers a scanout rotates through. */

#include "wayland-private.h"

/* A sealed (no shrinking) memfd of @size bytes, mapped read-write at *@ret_data. Returns the fd
 * (the caller owns it and the mapping) or -errno. */
int vgb_wayland_shm_alloc_memfd(size_t size, void **ret_data);
/* Whether the compositor takes @fourcc over wl_shm; *@ret_format is then its wl_shm format. */
bool vgb_wayland_shm_format_ok(const struct wayland_sink *s, uint32_t fourcc,
			       uint32_t *ret_format);

/* Whether @f's CPU view lies in a sealed memfd the compositor can map directly. */
bool vgb_wayland_shm_view_is_direct(const struct wayland_sink *s, const struct vgb_frame *f);
/* The cached wl_buffer on @f's memfd (made on first use). Returns 0, -EOPNOTSUPP or -ENOMEM. */
int vgb_wayland_shm_direct_get(struct wayland_sink *s, const struct vgb_frame *f,
			       struct cached_buffer **ret);

/*
 * A copy buffer of @p's size and format that the compositor does not hold, or NULL when all
 * are held (or none can be made). A new size or format drops every old buffer first.
 */
struct shm_buffer *vgb_wayland_copy_get(struct scanout *so, const struct pending_frame *p);
/*
 * Copies @fill of the pending frame's CPU view into @b, after refreshing what changed on
 * screen since @b was last written from the front buffer. @b becomes the front buffer.
 * Returns 0, -EINVAL (no CPU view) or -EIO (the view faulted; see vgb_copy_rect()).
 */
int vgb_wayland_copy_fill(struct scanout *so, struct shm_buffer *b, const struct pending_frame *p,
			  const struct vgb_rect *fill);
void vgb_wayland_copy_destroy_all(struct scanout *so);

#endif
