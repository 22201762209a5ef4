/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_COMMIT_H
#define VGB_DISPLAY_WAYLAND_COMMIT_H

/* Puts a scanout's pending frame on its surface. */

#include "wayland-private.h"

/*
 * Commits @so's pending frame when it can go: connected, configured, not paced, its import
 * answered, a copy buffer free. Otherwise the frame waits; the sink calls this again after
 * every dispatch. The caller flushes.
 */
void vgb_wayland_try_commit(struct scanout *so);
/*
 * Sends a pending frame whose dmabuf the compositor refused (or that cannot take the dmabuf
 * path) to wl_shm: direct when its CPU view allows, else copied. Returns false when it has no
 * CPU view.
 */
bool vgb_wayland_route_to_shm(struct wayland_sink *s, struct pending_frame *p);
/* Draws @buf through the EGL importer: one GPU copy. Returns 0 or -errno (-EOPNOTSUPP: no EGL
 * import for it). The caller flushes. */
int vgb_wayland_egl_show(struct scanout *so, const struct vgb_dmabuf *buf, uint32_t width,
			 uint32_t height);

#endif
