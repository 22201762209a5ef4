/* SPDX-License-Identifier: MIT */
/*
 * linux-dmabuf: v4 feedback (mmapped format table, tranches, default and per-surface), v3
 * modifier events, and imports with `create` (never create_immed: weston kills a client whose
 * create_immed import fails, `create` answers with a recoverable `failed`).
 */
#include <drm_fourcc.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vgb/log.h"
#include "vgb/util.h"
#include "wayland-buffer-cache.h"
#include "wayland-dmabuf.h"

#define TABLE_ENTRY_SIZE 16

/* ---- v3 ---- */

static void v3_format(void *data, struct zwp_linux_dmabuf_v1 *dmabuf, uint32_t format)
{
	/* Deprecated; v3 compositors follow with modifier events. */
}

static void v3_modifier(void *data, struct zwp_linux_dmabuf_v1 *dmabuf, uint32_t format,
			uint32_t hi, uint32_t lo)
{
	struct wayland_sink *s = data;

	vgb_fmt_set_add(&s->v3_formats, format, ((uint64_t)hi << 32) | lo);
}

static const struct zwp_linux_dmabuf_v1_listener dmabuf_v3_listener = {
	.format = v3_format,
	.modifier = v3_modifier,
};

void vgb_wayland_dmabuf_bind(struct wayland_sink *s, struct wl_registry *registry, uint32_t name,
			     uint32_t version)
{
	s->dmabuf_version = VGB_MIN(version, 4u);
	s->dmabuf = wl_registry_bind(registry, name, &zwp_linux_dmabuf_v1_interface,
				     s->dmabuf_version);
	if (s->dmabuf_version < 4)
		zwp_linux_dmabuf_v1_add_listener(s->dmabuf, &dmabuf_v3_listener, s);
}

/* ---- v4 feedback ---- */

static void unmap_table(struct dmabuf_feedback *fb)
{
	if (fb->table)
		munmap((void *)fb->table, fb->table_size);
	fb->table = NULL;
	fb->table_size = 0;
}

static void fb_done(void *data, struct zwp_linux_dmabuf_feedback_v1 *proxy)
{
	struct dmabuf_feedback *fb = data;

	/* The tranches since the last done replace the whole previous set. */
	vgb_fmt_set_finish(&fb->current);
	fb->current = fb->pending;
	fb->pending = (struct vgb_fmt_set){ 0 };
	fb->dones++;
	fb->have = true;
}

static void fb_format_table(void *data, struct zwp_linux_dmabuf_feedback_v1 *proxy, int32_t fd,
			    uint32_t size)
{
	struct dmabuf_feedback *fb = data;
	void *map;

	struct stat st;

	unmap_table(fb);
	fb->table_changes++;
	/* Never map past the end of the file: reading there would be SIGBUS, not an error. */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < size)
		size = (uint32_t)st.st_size;
	size -= size % TABLE_ENTRY_SIZE;
	if (size >= TABLE_ENTRY_SIZE) {
		map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map != MAP_FAILED) {
			fb->table = map;
			fb->table_size = size;
		} else {
			vgb_log(VGB_LOG_DEBUG, "dmabuf: cannot map the format table (%u bytes)", size);
		}
	}
	close(fd);
}

static void fb_main_device(void *data, struct zwp_linux_dmabuf_feedback_v1 *proxy,
			   struct wl_array *device)
{
}

static void fb_tranche_done(void *data, struct zwp_linux_dmabuf_feedback_v1 *proxy)
{
}

static void fb_tranche_target_device(void *data, struct zwp_linux_dmabuf_feedback_v1 *proxy,
				     struct wl_array *device)
{
}

static void fb_tranche_formats(void *data, struct zwp_linux_dmabuf_feedback_v1 *proxy,
			       struct wl_array *indices)
{
	struct dmabuf_feedback *fb = data;
	size_t n_entries = fb->table_size / TABLE_ENTRY_SIZE;
	const uint16_t *idx = indices->data;
	size_t n = indices->size / sizeof(uint16_t);

	/* Indices refer to the table as it is now; a later table change does not rewrite them. */
	for (size_t i = 0; i < n; i++) {
		uint32_t format;
		uint64_t modifier;
		if (idx[i] >= n_entries)
			continue; /* a compositor bug: ignore the entry, keep the rest */
		memcpy(&format, fb->table + (size_t)idx[i] * TABLE_ENTRY_SIZE, 4);
		memcpy(&modifier, fb->table + (size_t)idx[i] * TABLE_ENTRY_SIZE + 8, 8);
		vgb_fmt_set_add(&fb->pending, format, modifier);
	}
}

static void fb_tranche_flags(void *data, struct zwp_linux_dmabuf_feedback_v1 *proxy,
			     uint32_t flags)
{
}

static const struct zwp_linux_dmabuf_feedback_v1_listener feedback_listener = {
	.done = fb_done,
	.format_table = fb_format_table,
	.main_device = fb_main_device,
	.tranche_done = fb_tranche_done,
	.tranche_target_device = fb_tranche_target_device,
	.tranche_formats = fb_tranche_formats,
	.tranche_flags = fb_tranche_flags,
};

struct dmabuf_feedback *vgb_wayland_dmabuf_feedback_create(struct wayland_sink *s,
							   struct scanout *so)
{
	struct dmabuf_feedback *fb = calloc(1, sizeof(*fb));

	if (!fb)
		return NULL;
	fb->sink = s;
	if (so)
		fb->proxy = zwp_linux_dmabuf_v1_get_surface_feedback(s->dmabuf, so->surface);
	else
		fb->proxy = zwp_linux_dmabuf_v1_get_default_feedback(s->dmabuf);
	if (!fb->proxy) {
		free(fb);
		return NULL;
	}
	zwp_linux_dmabuf_feedback_v1_add_listener(fb->proxy, &feedback_listener, fb);
	return fb;
}

void vgb_wayland_dmabuf_feedback_destroy(struct dmabuf_feedback *fb)
{
	if (!fb)
		return;
	if (fb->proxy)
		zwp_linux_dmabuf_feedback_v1_destroy(fb->proxy);
	unmap_table(fb);
	vgb_fmt_set_finish(&fb->pending);
	vgb_fmt_set_finish(&fb->current);
	free(fb);
}

static const struct vgb_fmt_set *listed_formats(struct wayland_sink *s, struct scanout *so)
{
	if (so && so->feedback && so->feedback->have)
		return &so->feedback->current;
	if (s->default_feedback && s->default_feedback->have)
		return &s->default_feedback->current;
	if (s->dmabuf_version == 3)
		return &s->v3_formats;
	return NULL;
}

bool vgb_wayland_dmabuf_pick_modifier(struct wayland_sink *s, struct scanout *so, uint32_t fourcc,
				      uint64_t modifier, uint64_t *ret_modifier)
{
	const struct vgb_fmt_set *set = listed_formats(s, so);

	if (!set)
		return false;
	if (vgb_fmt_set_has(set, fourcc, modifier)) {
		*ret_modifier = modifier;
		return true;
	}
	/*
	 * A linear buffer is also what the implicit modifier means for the dumb/linear buffers we
	 * export; a compositor that lists only INVALID (weston on kms_swrast) takes it that way.
	 */
	if (modifier == DRM_FORMAT_MOD_LINEAR && vgb_fmt_set_has(set, fourcc, DRM_FORMAT_MOD_INVALID)) {
		*ret_modifier = DRM_FORMAT_MOD_INVALID;
		return true;
	}
	return false;
}

bool vgb_wayland_fd_is_vfio_device(int fd)
{
	char path[64], target[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return true; /* cannot tell: do not hand it out */
	target[n] = '\0';
	return strncmp(target, "/dev/vfio/", 10) == 0 ||
	       strcmp(target, "anon_inode:[vfio-device]") == 0;
}

/* ---- import ---- */

static void params_created(void *data, struct zwp_linux_buffer_params_v1 *params,
			   struct wl_buffer *buffer)
{
	struct cached_buffer *cb = data;
	struct wayland_sink *s = cb->sink;

	zwp_linux_buffer_params_v1_destroy(params);
	cb->params = NULL;
	cb->buffer = buffer;
	vgb_wayland_cache_listen(cb);
	cb->state = CACHED_READY;
	/* An uncached import whose frame was replaced while it was being created. A frame waiting
	 * for it is committed by the sink's dispatch. */
	if (cb->id == 0 && !vgb_wayland_cache_is_pending(s, cb))
		vgb_wayland_cache_destroy(cb);
}

static void params_failed(void *data, struct zwp_linux_buffer_params_v1 *params)
{
	struct cached_buffer *cb = data;
	struct wayland_sink *s = cb->sink;

	zwp_linux_buffer_params_v1_destroy(params);
	cb->params = NULL;
	cb->state = CACHED_FAILED;
	s->stats.dmabuf_failed++;
	vgb_log(VGB_LOG_DEBUG, "dmabuf: compositor refused buffer %llu; using shm",
		(unsigned long long)cb->id);
	/* A frame waiting on it falls back to shm in the sink's dispatch, which also destroys an
	 * uncached buffer then. */
	if (cb->id == 0 && !vgb_wayland_cache_is_pending(s, cb))
		vgb_wayland_cache_destroy(cb);
}

static const struct zwp_linux_buffer_params_v1_listener params_listener = {
	.created = params_created,
	.failed = params_failed,
};

int vgb_wayland_dmabuf_import(struct wayland_sink *s, struct scanout *so,
			      const struct vgb_frame *f, struct cached_buffer **ret)
{
	const struct vgb_dmabuf *b = f->dmabuf;
	struct cached_buffer *cb = vgb_wayland_cache_find(s, f->buffer_id, CACHED_DMABUF);
	uint64_t modifier;

	if (vgb_wayland_cache_matches(cb, f, b->fourcc, b->stride[0], b->offset[0])) {
		*ret = cb;
		return 0;
	}
	vgb_wayland_cache_destroy(cb);
	if (b->fourcc != f->fourcc || b->width < f->width || b->height < f->height)
		return -EINVAL;
	if (!vgb_wayland_dmabuf_pick_modifier(s, so, b->fourcc, b->modifier, &modifier))
		return -EOPNOTSUPP;
	for (uint32_t i = 0; i < b->n_planes; i++)
		if (vgb_wayland_fd_is_vfio_device(b->fd[i]))
			return -EPERM; /* a device fd is never handed to the compositor */

	cb = vgb_wayland_cache_new(s, f, CACHED_DMABUF, CACHED_IMPORTING, b->fourcc, b->stride[0],
			b->offset[0]);
	if (!cb)
		return -ENOMEM;
	cb->modifier = modifier;
	cb->deadline_ns = vgb_now_ns() + (uint64_t)s->opts.timeout_ms * 1000000u;
	cb->params = zwp_linux_dmabuf_v1_create_params(s->dmabuf);
	if (!cb->params) {
		free(cb);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < b->n_planes; i++)
		zwp_linux_buffer_params_v1_add(cb->params, b->fd[i], i, b->offset[i], b->stride[i],
					       (uint32_t)(modifier >> 32), (uint32_t)modifier);
	zwp_linux_buffer_params_v1_add_listener(cb->params, &params_listener, cb);
	/* The scanout rectangle's size: a plane offset selects where it starts in the dmabuf. */
	zwp_linux_buffer_params_v1_create(cb->params, (int32_t)f->width, (int32_t)f->height,
					  b->fourcc, 0);
	wl_list_insert(&s->cached, &cb->link);
	*ret = cb;
	return 0;
}
