/* SPDX-License-Identifier: MIT */
/*
 * The Wayland sink: one xdg_toplevel per scanout, frames committed as they arrive (the latest
 * wins in the compositor), frame callbacks to learn when the compositor read a frame,
 * presentation feedback for latency, and a path per frame: linux-dmabuf, wl_shm on the guest
 * memfd, or a damage-limited copy into rotating shm buffers. Nothing here blocks the
 * caller for longer than opts.timeout_ms, and only during create/reconnect; the steady state is
 * driven by get_fd/dispatch/next_timeout_ms. This file holds the sink's ops; wayland-private.h
 * maps the files that do the work.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vgb/log.h"
#include "vgb/util.h"
#include "wayland-buffer-cache.h"
#include "wayland-commit.h"
#include "wayland-connection.h"
#include "wayland-cursor.h"
#include "wayland-dmabuf.h"
#include "wayland-pacing.h"
#include "wayland-shm.h"
#include "wayland-window.h"
#ifdef VGB_HAVE_EGL
#include "egl.h"
#endif

#define DEFAULT_TIMEOUT_MS 1000

static struct wayland_sink *sink_from(struct vgb_display *d)
{
	return vgb_container_of(d, struct wayland_sink, base);
}

static uint64_t timeout_ns(const struct wayland_sink *s)
{
	return (uint64_t)s->opts.timeout_ms * 1000000u;
}

/* Flushes what the ops queued; a dead socket is a lost compositor. */
static void flush_or_lose(struct wayland_sink *s)
{
	if (s->connected && vgb_wayland_flush(s) < 0)
		vgb_wayland_lost(s);
}

/* ---- present ---- */

static int wl_present(struct vgb_display *d, const struct vgb_frame *frame)
{
	struct wayland_sink *s = sink_from(d);
	struct scanout *so;
	struct pending_frame next = { .valid = true };
	int r;

	vgb_dmabuf_init(&next.dmabuf_dup);

	r = vgb_frame_check(frame);
	if (r < 0)
		return r;
	if (!s->connected)
		return -EPIPE;
	r = vgb_wayland_scanout_get(s, frame->scanout, &so);
	if (r < 0)
		return r;

	next.f = *frame;
	next.damage = vgb_frame_damage(frame);
	next.since_ns = vgb_now_ns();
	if (frame->cpu) {
		next.cpu = *frame->cpu;
		next.has_cpu = true;
		next.f.cpu = &next.cpu;
	}
	/* The dmabuf descriptor is only read here: imports happen now, never later. */
	next.has_dmabuf = frame->dmabuf != NULL;
	next.f.dmabuf = NULL;

	next.path = VGB_PATH_NONE;
	if (frame->dmabuf && s->dmabuf && !s->opts.no_dmabuf) {
		struct cached_buffer *cb;
		r = vgb_wayland_dmabuf_import(s, so, frame, &cb);
		if (r == 0 && cb->state != CACHED_FAILED) {
			next.path = VGB_PATH_DMABUF;
			next.cb = cb;
		}
	}
	if (next.path == VGB_PATH_NONE && !vgb_wayland_route_to_shm(s, &next)) {
		/* No CPU view and a dmabuf the compositor will not take: the EGL importer. */
		if (!frame->dmabuf || !so->configured)
			return -EOPNOTSUPP;
		if (so->pending.valid) {
			s->stats.frames_dropped++;
			vgb_wayland_pending_finish(&so->pending, -ECANCELED);
		}
		r = vgb_wayland_egl_show(so, frame->dmabuf, frame->width, frame->height);
		if (r < 0)
			return -EOPNOTSUPP;
		if (vgb_wayland_flush(s) < 0) {
			vgb_wayland_lost(s);
			return -EPIPE;
		}
		vgb_frame_complete(frame, 0);
		return 0;
	}
	if (next.path == VGB_PATH_DMABUF && !next.has_cpu) {
		/* Kept for the EGL importer, should the compositor answer `failed`. */
		r = vgb_dmabuf_dup(frame->dmabuf, &next.dmabuf_dup);
		if (r < 0)
			return r;
	}
#ifdef VGB_HAVE_EGL
	if (so->egl_win) {
		/* Back to our own buffers on this surface. */
		vgb_egl_window_destroy(so->egl_win);
		so->egl_win = NULL;
	}
#endif

	if (so->pending.valid) {
		/*
		 * Latest frame wins: the older one is replaced before it was committed. Its damage
		 * carries over, since nothing of it reached the compositor.
		 */
		struct pending_frame old = so->pending;
		if (old.cb && old.cb->id == 0 && old.cb != next.cb &&
		    old.cb->state != CACHED_IMPORTING)
			vgb_wayland_cache_destroy(old.cb); /* an uncached buffer that was never committed */
		vgb_rect_union(&next.damage, &old.damage);
		next.stalled = old.stalled;
		so->pending = next;
		so->pending.f.cpu = so->pending.has_cpu ? &so->pending.cpu : NULL;
		s->stats.frames_dropped++;
		vgb_dmabuf_finish(&old.dmabuf_dup);
		vgb_frame_complete(&old.f, -ECANCELED);
	} else {
		so->pending = next;
		so->pending.f.cpu = so->pending.has_cpu ? &so->pending.cpu : NULL;
	}
	/* Committed now unless it has to wait: the compositor's cycle is the only pacing. */
	vgb_wayland_try_commit(so);
	/* Lost here, the frame completes with -EPIPE: it was taken all the same. */
	flush_or_lose(s);
	return 0;
}

static void wl_forget(struct vgb_display *d, uint64_t buffer_id)
{
	struct wayland_sink *s = sink_from(d);
	struct cached_buffer *cb, *tmp;

	wl_list_for_each_safe(cb, tmp, &s->cached, link) {
		if (cb->id != buffer_id)
			continue;
		/*
		 * A pending frame still pointing at it cannot be shown any more: the export is
		 * going away, and with it the memory the frame borrowed.
		 */
		for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++) {
			struct scanout *so = s->scanouts[i];
			if (so && so->pending.valid && so->pending.cb == cb) {
				s->stats.frames_dropped++;
				vgb_wayland_pending_finish(&so->pending, -ECANCELED);
			}
		}
		vgb_wayland_cache_destroy(cb);
	}
	flush_or_lose(s);
}

static void wl_disable_scanout(struct vgb_display *d, uint32_t scanout)
{
	struct wayland_sink *s = sink_from(d);

	if (scanout >= VGB_DISPLAY_MAX_SCANOUTS || !s->scanouts[scanout])
		return;
	vgb_wayland_scanout_drop_window(s->scanouts[scanout], -ECANCELED);
	flush_or_lose(s);
}

static int wl_set_cursor(struct vgb_display *d, uint32_t scanout, const uint32_t *argb,
			 uint32_t w, uint32_t h, uint32_t hot_x, uint32_t hot_y)
{
	struct wayland_sink *s = sink_from(d);
	struct scanout *so;
	uint32_t *copy = NULL;
	int r;

	if (scanout >= VGB_DISPLAY_MAX_SCANOUTS)
		return -EINVAL;
	if (argb) {
		copy = malloc((size_t)w * h * 4);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, argb, (size_t)w * h * 4);
	}
	r = vgb_wayland_scanout_new(s, scanout, &so);
	if (r < 0) {
		free(copy);
		return r;
	}
	free(so->cursor_argb);
	so->cursor_argb = copy;
	so->cursor_w = w;
	so->cursor_h = h;
	so->cursor_hot_x = VGB_MIN(hot_x, w);
	so->cursor_hot_y = VGB_MIN(hot_y, h);
	if (!s->connected || !so->surface)
		return 0; /* applied when the window (re)appears */
	r = vgb_wayland_cursor_update(so);
	flush_or_lose(s);
	return r;
}

static void wl_move_cursor(struct vgb_display *d, uint32_t scanout, int32_t x, int32_t y)
{
	struct wayland_sink *s = sink_from(d);

	/*
	 * The host pointer owns the cursor position on a Wayland desktop; the guest's position is
	 * kept for stats and for sinks that draw the cursor themselves.
	 */
	if (scanout < VGB_DISPLAY_MAX_SCANOUTS && s->scanouts[scanout]) {
		s->scanouts[scanout]->cursor_x = x;
		s->scanouts[scanout]->cursor_y = y;
	}
}

/* Starts a connection attempt; a failed one arms the retry timer. */
static int start_reconnect(struct wayland_sink *s)
{
	int r = vgb_wayland_connect_start(s);

	if (r < 0 && s->opts.reconnect_ms > 0)
		s->reconnect_at_ns = vgb_now_ns() + (uint64_t)s->opts.reconnect_ms * 1000000u;
	return r;
}

static int wl_reconnect(struct vgb_display *d)
{
	struct wayland_sink *s = sink_from(d);

	if (s->connected || s->display)
		return 0; /* connected, or under way */
	return start_reconnect(s);
}

/* A connection under way: moves its handshake on. */
static void step_reconnect(struct wayland_sink *s)
{
	int r;

	if (vgb_wayland_pump(s, 0) < 0) {
		vgb_wayland_disconnect(s, -EPIPE);
		r = -EPIPE;
	} else {
		r = vgb_wayland_connect_step(s);
	}
	if (r > 0) {
		s->stats.reconnects++; /* windows come back with the next frame of each scanout */
	} else if (r < 0) {
		vgb_log_errno(VGB_LOG_DEBUG, r, "wayland: reconnect");
		if (s->opts.reconnect_ms > 0)
			s->reconnect_at_ns =
				vgb_now_ns() + (uint64_t)s->opts.reconnect_ms * 1000000u;
	}
}

/* ---- event loop integration ---- */

static int wl_get_fd(struct vgb_display *d)
{
	struct wayland_sink *s = sink_from(d);

	return s->display ? wl_display_get_fd(s->display) : -1;
}

static void handle_timeouts(struct wayland_sink *s)
{
	uint64_t now = vgb_now_ns();
	struct cached_buffer *cb, *ctmp;

	if (!s->connected) {
		if (!s->display && s->reconnect_at_ns && now >= s->reconnect_at_ns) {
			s->reconnect_at_ns = 0;
			start_reconnect(s);
		}
		return;
	}
	vgb_wayland_pacing_expire(s, now);
	wl_list_for_each_safe(cb, ctmp, &s->cached, link) {
		if (cb->state == CACHED_IMPORTING && now >= cb->deadline_ns) {
			/* No answer to the import: treat it as refused. */
			s->stats.dmabuf_failed++;
			cb->state = CACHED_FAILED;
			if (cb->params)
				zwp_linux_buffer_params_v1_destroy(cb->params);
			cb->params = NULL;
		}
	}
	/* Compositor events only changed state: this is where every scanout moves on. */
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++) {
		struct scanout *so = s->scanouts[i];
		if (!so || !so->surface)
			continue;
		if (so->pending.valid && !so->configured &&
		    now >= so->create_ns + timeout_ns(s)) {
			vgb_wayland_pending_finish(&so->pending, -ETIMEDOUT);
		} else if (so->pending.valid && so->pending.stalled &&
			   now >= so->pending.since_ns + timeout_ns(s)) {
			vgb_wayland_pending_finish(&so->pending, -ETIMEDOUT);
		}
		vgb_wayland_try_commit(so);
		if (!s->connected)
			return;
	}
}

static int wl_dispatch(struct vgb_display *d)
{
	struct wayland_sink *s = sink_from(d);

	if (s->connected) {
		if (vgb_wayland_pump(s, 0) < 0) {
			vgb_wayland_lost(s);
			return 0;
		}
	} else if (s->display) {
		step_reconnect(s);
	}
	handle_timeouts(s);
	flush_or_lose(s);
	return 0;
}

static int wl_next_timeout_ms(struct vgb_display *d)
{
	struct wayland_sink *s = sink_from(d);
	uint64_t now = vgb_now_ns(), next = UINT64_MAX;
	struct cached_buffer *cb;

	if (!s->connected && s->display) {
		next = s->conn_deadline_ns;
	} else if (!s->connected) {
		if (!s->reconnect_at_ns)
			return -1;
		next = s->reconnect_at_ns;
	} else {
		if (s->need_flush)
			return 1;
		next = vgb_wayland_pacing_next_deadline(s);
		wl_list_for_each(cb, &s->cached, link)
			if (cb->state == CACHED_IMPORTING)
				next = VGB_MIN(next, cb->deadline_ns);
		for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++) {
			struct scanout *so = s->scanouts[i];
			if (!so || !so->surface)
				continue;
			if (so->pending.valid && !so->configured)
				next = VGB_MIN(next, so->create_ns + timeout_ns(s));
			if (so->pending.valid && so->pending.stalled)
				next = VGB_MIN(next, so->pending.since_ns + timeout_ns(s));
		}
	}
	if (next == UINT64_MAX)
		return -1;
	if (next <= now)
		return 0;
	return (int)VGB_MIN((next - now + 999999) / 1000000, (uint64_t)INT32_MAX);
}

static void wl_get_stats(struct vgb_display *d, struct vgb_display_stats *ret)
{
	struct wayland_sink *s = sink_from(d);
	struct cached_buffer *cb;

	*ret = s->stats;
	ret->connected = s->connected;
	ret->shm_buffers = 0;
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		for (uint32_t j = 0; s->scanouts[i] && j < SHM_COPY_BUFFERS; j++)
			ret->shm_buffers += s->scanouts[i]->copy[j] != NULL;
	ret->frames_pending = 0;
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		ret->frames_pending += s->scanouts[i] && s->scanouts[i]->pending.valid;
	ret->cached_buffers = 0;
	wl_list_for_each(cb, &s->cached, link)
		ret->cached_buffers++;
	vgb_wayland_latency_get(s, &ret->latency_p50_ns, &ret->latency_p99_ns);
}

static void wl_destroy(struct vgb_display *d)
{
	struct wayland_sink *s = sink_from(d);

	if (!s)
		return;
	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		vgb_wayland_scanout_destroy(s->scanouts[i]);
	vgb_wayland_disconnect(s, -ECANCELED);
	free(s->title);
	free(s->socket_name);
	free(s);
}

static const struct vgb_display_ops sink_ops = {
	.name = "wayland",
	.present = wl_present,
	.forget = wl_forget,
	.disable_scanout = wl_disable_scanout,
	.set_cursor = wl_set_cursor,
	.move_cursor = wl_move_cursor,
	.get_fd = wl_get_fd,
	.dispatch = wl_dispatch,
	.next_timeout_ms = wl_next_timeout_ms,
	.reconnect = wl_reconnect,
	.get_stats = wl_get_stats,
	.destroy = wl_destroy,
};

int vgb_display_create_wayland(const char *socket_name, const struct vgb_display_options *opts,
			       struct vgb_display **ret)
{
	struct wayland_sink *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	s->base.ops = &sink_ops;
	wl_list_init(&s->cached);
	wl_list_init(&s->inflight);
	if (opts)
		s->opts = *opts;
	if (s->opts.timeout_ms <= 0)
		s->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
	s->opts.title = NULL;
	s->title = strdup(opts && opts->title ? opts->title : "vgbridge");
	s->socket_name = socket_name ? strdup(socket_name) : NULL;
	if (!s->title || (socket_name && !s->socket_name)) {
		wl_destroy(&s->base);
		return -ENOMEM;
	}
	r = vgb_wayland_connect(s);
	if (r < 0) {
		vgb_log_errno(VGB_LOG_DEBUG, r, "wayland: cannot connect to %s",
			      socket_name ? socket_name : "$WAYLAND_DISPLAY");
		wl_destroy(&s->base);
		return r;
	}
	s->stats.connected = true;
	*ret = &s->base;
	return 0;
}
