/* SPDX-License-Identifier: MIT */
/* The per-buffer_id wl_buffer cache (see wayland-buffer-cache.h). */
#include <stdlib.h>

#include "wayland-buffer-cache.h"

struct cached_buffer *vgb_wayland_cache_find(struct wayland_sink *s, uint64_t id,
					     enum cached_kind kind)
{
	struct cached_buffer *cb;

	if (id == 0)
		return NULL;
	wl_list_for_each(cb, &s->cached, link)
		if (cb->id == id && cb->kind == kind)
			return cb;
	return NULL;
}

bool vgb_wayland_cache_matches(const struct cached_buffer *cb, const struct vgb_frame *f,
			       uint32_t fourcc, uint32_t stride, uint64_t offset)
{
	return cb && cb->width == f->width && cb->height == f->height && cb->fourcc == fourcc &&
	       cb->stride == stride && cb->offset == offset;
}

struct cached_buffer *vgb_wayland_cache_new(struct wayland_sink *s, const struct vgb_frame *f,
					    enum cached_kind kind, enum cached_state state,
					    uint32_t fourcc, uint32_t stride, uint64_t offset)
{
	struct cached_buffer *cb = calloc(1, sizeof(*cb));

	if (!cb)
		return NULL;
	cb->sink = s;
	cb->id = f->buffer_id;
	cb->kind = kind;
	cb->state = state;
	cb->width = f->width;
	cb->height = f->height;
	cb->fourcc = fourcc;
	cb->stride = stride;
	cb->offset = offset;
	return cb;
}

void vgb_wayland_cache_destroy(struct cached_buffer *cb)
{
	if (!cb)
		return;
	wl_list_remove(&cb->link);
	if (cb->params)
		zwp_linux_buffer_params_v1_destroy(cb->params);
	if (cb->buffer)
		wl_buffer_destroy(cb->buffer);
	free(cb);
}

static void cached_release(void *data, struct wl_buffer *buffer)
{
	struct cached_buffer *cb = data;

	/* Uncached (id 0) buffers live for one commit. */
	if (cb->id == 0)
		vgb_wayland_cache_destroy(cb);
}

static const struct wl_buffer_listener cached_listener = {
	.release = cached_release,
};

void vgb_wayland_cache_listen(struct cached_buffer *cb)
{
	wl_buffer_add_listener(cb->buffer, &cached_listener, cb);
}

bool vgb_wayland_cache_is_pending(struct wayland_sink *s, const struct cached_buffer *cb)
{
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		if (s->scanouts[i] && s->scanouts[i]->pending.valid &&
		    s->scanouts[i]->pending.cb == cb)
			return true;
	return false;
}
