/* SPDX-License-Identifier: MIT */
#ifndef VGB_DISPLAY_WAYLAND_BUFFER_CACHE_H
#define VGB_DISPLAY_WAYLAND_BUFFER_CACHE_H

/*
 * One wl_buffer per buffer_id (a blob export), reused across frames: dmabuf imports and wl_shm
 * pools on the guest memfd. A cached buffer lives in wayland_sink.cached until the bridge
 * forgets its export, its layout changes, or the connection goes; an uncached one (id 0) lives
 * for one commit and goes on release.
 */

#include "wayland-private.h"

/* The cached buffer of @id and @kind, or NULL (always NULL for id 0). */
struct cached_buffer *vgb_wayland_cache_find(struct wayland_sink *s, uint64_t id,
					     enum cached_kind kind);
/* Whether @cb (may be NULL) was made for @f's size with this fourcc, stride and offset. */
bool vgb_wayland_cache_matches(const struct cached_buffer *cb, const struct vgb_frame *f,
			       uint32_t fourcc, uint32_t stride, uint64_t offset);
/* A new cached buffer for @f (id f->buffer_id; in no list, no wl_buffer yet), or NULL. Free it
 * with free() until it is in wayland_sink.cached. */
struct cached_buffer *vgb_wayland_cache_new(struct wayland_sink *s, const struct vgb_frame *f,
					    enum cached_kind kind, enum cached_state state,
					    uint32_t fourcc, uint32_t stride, uint64_t offset);
/* Unlinks @cb (may be NULL) and destroys its params and wl_buffer. */
void vgb_wayland_cache_destroy(struct cached_buffer *cb);
/* Listens for release on cb->buffer: an uncached (id 0) buffer goes away on release. */
void vgb_wayland_cache_listen(struct cached_buffer *cb);
/* Whether a scanout's pending frame waits on @cb. */
bool vgb_wayland_cache_is_pending(struct wayland_sink *s, const struct cached_buffer *cb);

#endif
