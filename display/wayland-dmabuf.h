/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_DMABUF_H
#define VGB_DISPLAY_WAYLAND_DMABUF_H

/*
 * linux-dmabuf: what the compositor lists (v4 feedback, default and per surface, or v3 modifier
 * events) and imports with `create`, answered asynchronously: the buffer-cache entry moves from
 * CACHED_IMPORTING to CACHED_READY or CACHED_FAILED, and the sink's dispatch moves the frame on.
 */

#include "wayland-private.h"

/* Binds the registry's zwp_linux_dmabuf_v1 @name (version 3 or 4). */
void vgb_wayland_dmabuf_bind(struct wayland_sink *s, struct wl_registry *registry, uint32_t name,
			     uint32_t version);
/* Asks for the default feedback (@so NULL) or @so's surface feedback; NULL when out of memory. */
struct dmabuf_feedback *vgb_wayland_dmabuf_feedback_create(struct wayland_sink *s,
							   struct scanout *so);
/* Accepts NULL. */
void vgb_wayland_dmabuf_feedback_destroy(struct dmabuf_feedback *fb);
/*
 * Picks the modifier to import @fourcc/@modifier with, among the pairs the compositor listed
 * for @so (its surface feedback, else the default feedback, else the v3 events).
 * Returns false when no listed pair fits.
 */
bool vgb_wayland_dmabuf_pick_modifier(struct wayland_sink *s, struct scanout *so, uint32_t fourcc,
				      uint64_t modifier, uint64_t *ret_modifier);
/* Whether @fd is a VFIO device (never handed to the compositor); true when it cannot tell. */
bool vgb_wayland_fd_is_vfio_device(int fd);
/*
 * The cached import of @f's dmabuf, or a new one (CACHED_IMPORTING until the compositor
 * answers). Returns 0, -EINVAL (descriptor does not fit the frame), -EOPNOTSUPP (format not
 * listed), -EPERM (a VFIO device fd) or -ENOMEM.
 */
int vgb_wayland_dmabuf_import(struct wayland_sink *s, struct scanout *so,
			      const struct vgb_frame *f, struct cached_buffer **ret);

#endif
