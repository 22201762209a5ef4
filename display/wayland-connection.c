/* SPDX-License-Identifier: MIT */
/*
 * The compositor connection: connect and bind the globals, pump the socket, tear everything
 * down when the compositor goes. Connecting waits at most opts.timeout_ms per round trip; the
 * steady state never waits.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "vgb/log.h"
#include "vgb/util.h"
#include "wayland-buffer-cache.h"
#include "wayland-connection.h"
#include "wayland-cursor.h"
#include "wayland-dmabuf.h"
#include "wayland-pacing.h"
#include "wayland-window.h"
#ifdef VGB_HAVE_EGL
#include "egl.h"
#endif

int vgb_wayland_flush(struct wayland_sink *s)
{
	if (!s->display)
		return -EPIPE;
	if (wl_display_flush(s->display) < 0) {
		if (errno == EAGAIN) {
			/* Socket full: retry from dispatch (next_timeout_ms says soon). */
			s->need_flush = true;
			return 0;
		}
		return -EPIPE;
	}
	s->need_flush = false;
	return 0;
}

static void wm_base_ping(void *data, struct xdg_wm_base *wm_base, uint32_t serial)
{
	xdg_wm_base_pong(wm_base, serial);
}

static const struct xdg_wm_base_listener wm_base_listener = {
	.ping = wm_base_ping,
};

static void shm_format(void *data, struct wl_shm *shm, uint32_t format)
{
	struct wayland_sink *s = data;

	if (format == 0)
		s->shm_formats |= 1;
	else if (format == 1)
		s->shm_formats |= 2;
	else
		vgb_fmt_set_add(&s->shm_extra, format, 0);
}

static const struct wl_shm_listener shm_listener = {
	.format = shm_format,
};

static void registry_global(void *data, struct wl_registry *registry, uint32_t name,
			    const char *interface, uint32_t version)
{
	struct wayland_sink *s = data;

	if (strcmp(interface, wl_compositor_interface.name) == 0 && !s->compositor) {
		s->compositor_version = VGB_MIN(version, 4u);
		s->compositor = wl_registry_bind(registry, name, &wl_compositor_interface,
						 s->compositor_version);
	} else if (strcmp(interface, wl_shm_interface.name) == 0 && !s->shm) {
		s->shm = wl_registry_bind(registry, name, &wl_shm_interface, 1);
		wl_shm_add_listener(s->shm, &shm_listener, s);
	} else if (strcmp(interface, xdg_wm_base_interface.name) == 0 && !s->wm_base) {
		s->wm_base = wl_registry_bind(registry, name, &xdg_wm_base_interface, 1);
		xdg_wm_base_add_listener(s->wm_base, &wm_base_listener, s);
	} else if (strcmp(interface, wp_viewporter_interface.name) == 0 && !s->viewporter) {
		s->viewporter = wl_registry_bind(registry, name, &wp_viewporter_interface, 1);
	} else if (strcmp(interface, wp_presentation_interface.name) == 0 && !s->presentation) {
		vgb_wayland_presentation_bind(s, registry, name);
	} else if (strcmp(interface, zwp_linux_dmabuf_v1_interface.name) == 0 && !s->dmabuf &&
		   version >= 3 && !s->opts.no_dmabuf) {
		vgb_wayland_dmabuf_bind(s, registry, name, version);
	} else if (strcmp(interface, wl_seat_interface.name) == 0 && !s->seat) {
		vgb_wayland_seat_bind(s, registry, name, version);
	}
}

static void registry_global_remove(void *data, struct wl_registry *registry, uint32_t name)
{
}

static const struct wl_registry_listener registry_listener = {
	.global = registry_global,
	.global_remove = registry_global_remove,
};

/* ---- connection ---- */

static void sync_done(void *data, struct wl_callback *cb, uint32_t serial)
{
	*(bool *)data = true;
}

static const struct wl_callback_listener sync_listener = {
	.done = sync_done,
};

/* Reads and dispatches what is there, waiting at most @wait_ms. Returns 0 or -EPIPE. */
int vgb_wayland_pump(struct wayland_sink *s, int wait_ms)
{
	struct pollfd pfd = { .fd = wl_display_get_fd(s->display), .events = POLLIN };

	while (wl_display_prepare_read(s->display) != 0)
		if (wl_display_dispatch_pending(s->display) < 0)
			return -EPIPE;
	if (wl_display_flush(s->display) < 0 && errno != EAGAIN) {
		wl_display_cancel_read(s->display);
		return -EPIPE;
	}
	if (poll(&pfd, 1, wait_ms) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
		if (wl_display_read_events(s->display) < 0)
			return -EPIPE;
	} else {
		wl_display_cancel_read(s->display);
	}
	if (wl_display_dispatch_pending(s->display) < 0)
		return -EPIPE;
	return 0;
}

/* wl_display_roundtrip with a deadline. */
static int roundtrip_bounded(struct wayland_sink *s)
{
	uint64_t deadline = vgb_now_ns() + (uint64_t)s->opts.timeout_ms * 1000000u;
	bool done = false;
	struct wl_callback *cb = wl_display_sync(s->display);
	int r = 0;

	if (!cb)
		return -ENOMEM;
	wl_callback_add_listener(cb, &sync_listener, &done);
	while (!done) {
		uint64_t now = vgb_now_ns();
		if (now >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		r = vgb_wayland_pump(s, (int)((deadline - now + 999999) / 1000000));
		if (r < 0)
			break;
	}
	/* sync_done does not destroy the proxy: it is ours to destroy either way. */
	wl_callback_destroy(cb);
	return r;
}

/* Drops every Wayland object; scanouts keep their configuration (cursor) for reconnect. */
void vgb_wayland_disconnect(struct wayland_sink *s, int status)
{
	struct cached_buffer *cb, *ctmp;

	for (uint32_t i = 0; i < VGB_DISPLAY_MAX_SCANOUTS; i++)
		if (s->scanouts[i])
			vgb_wayland_scanout_drop_window(s->scanouts[i], status);
	vgb_wayland_pacing_lose_all(s, status);
	wl_list_for_each_safe(cb, ctmp, &s->cached, link)
		vgb_wayland_cache_destroy(cb);
	if (s->default_feedback)
		vgb_wayland_dmabuf_feedback_destroy(s->default_feedback);
	s->default_feedback = NULL;
	vgb_fmt_set_finish(&s->v3_formats);
	vgb_fmt_set_finish(&s->shm_extra);
	s->shm_formats = 0;
#ifdef VGB_HAVE_EGL
	/* After the scanouts dropped their EGL windows, before the display goes. */
	vgb_egl_destroy(s->egl);
	s->egl = NULL;
	s->egl_unavailable = false;
#endif
	vgb_wayland_seat_release(s);
#define DESTROY(field, fn)          \
	do {                        \
		if (s->field)       \
			fn(s->field); \
		s->field = NULL;    \
	} while (0)
	DESTROY(dmabuf, zwp_linux_dmabuf_v1_destroy);
	DESTROY(presentation, wp_presentation_destroy);
	DESTROY(viewporter, wp_viewporter_destroy);
	DESTROY(wm_base, xdg_wm_base_destroy);
	DESTROY(shm, wl_shm_destroy);
	DESTROY(compositor, wl_compositor_destroy);
	DESTROY(registry, wl_registry_destroy);
#undef DESTROY
	if (s->display)
		wl_display_disconnect(s->display);
	s->display = NULL;
	s->connected = false;
	s->need_flush = false;
}

void vgb_wayland_lost(struct wayland_sink *s)
{
	if (!s->connected)
		return;
	vgb_log(VGB_LOG_DEBUG, "wayland: compositor connection lost");
	s->connected = false;
	vgb_wayland_disconnect(s, -EPIPE);
	if (s->opts.reconnect_ms > 0)
		s->reconnect_at_ns = vgb_now_ns() + (uint64_t)s->opts.reconnect_ms * 1000000u;
}

int vgb_wayland_connect(struct wayland_sink *s)
{
	int r;

	s->display = wl_display_connect(s->socket_name);
	if (!s->display)
		return errno > 0 ? -errno : -ECONNREFUSED;
	s->presentation_clock = CLOCK_MONOTONIC;
	s->registry = wl_display_get_registry(s->display);
	if (!s->registry) {
		r = -ENOMEM;
		goto err;
	}
	wl_registry_add_listener(s->registry, &registry_listener, s);
	r = roundtrip_bounded(s);
	if (r < 0)
		goto err;
	if (!s->compositor || !s->shm || !s->wm_base) {
		r = -EPROTONOSUPPORT;
		goto err;
	}
	if (s->dmabuf && s->dmabuf_version >= 4) {
		s->default_feedback = vgb_wayland_dmabuf_feedback_create(s, NULL);
		if (!s->default_feedback) {
			r = -ENOMEM;
			goto err;
		}
	}
	/* Second round: shm formats, dmabuf formats/feedback, clock id, seat capabilities. */
	r = roundtrip_bounded(s);
	if (r < 0)
		goto err;
	s->connected = true;
	s->reconnect_at_ns = 0;
	return 0;
err:
	vgb_wayland_disconnect(s, -EPIPE);
	return r;
}
