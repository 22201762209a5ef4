/* SPDX-License-Identifier: MIT */
/*
 * The compositor connection: connect and bind the globals, pump the socket, tear everything
 * down when the compositor goes. Connecting waits at most opts.timeout_ms per round trip; the
 * steady state never waits.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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
	((struct wayland_sink *)data)->conn_synced = true;
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

/*
 * Connects to the compositor's socket without waiting: a compositor whose listen backlog is
 * full (stopped, say) fails the attempt instead of blocking. Same lookup as libwayland: the
 * name (or $WAYLAND_DISPLAY, or wayland-0) under $XDG_RUNTIME_DIR unless it is absolute.
 * Returns the fd or -errno.
 */
static int open_socket(const struct wayland_sink *s)
{
	const char *name = s->socket_name ? s->socket_name : getenv("WAYLAND_DISPLAY");
	const char *dir = getenv("XDG_RUNTIME_DIR");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd, n;

	if (!name)
		name = "wayland-0";
	if (name[0] == '/')
		n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", name);
	else if (dir)
		n = snprintf(addr.sun_path, sizeof(addr.sun_path), "%s/%s", dir, name);
	else
		return -ENOENT;
	if (n < 0 || (size_t)n >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int r = errno == EAGAIN || errno == EINPROGRESS ? -ECONNREFUSED : -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* Asks for the next round trip of the handshake. */
static int conn_sync(struct wayland_sink *s)
{
	s->conn_synced = false;
	s->conn_sync = wl_display_sync(s->display);
	if (!s->conn_sync)
		return -ENOMEM;
	wl_callback_add_listener(s->conn_sync, &sync_listener, s);
	s->conn_deadline_ns = vgb_now_ns() + (uint64_t)s->opts.timeout_ms * 1000000u;
	return 0;
}

int vgb_wayland_connect_start(struct wayland_sink *s)
{
	int fd, r;

	if (s->display)
		return 0;
	fd = open_socket(s);
	if (fd < 0)
		return fd;
	s->display = wl_display_connect_to_fd(fd); /* owns fd from here, even on failure */
	if (!s->display)
		return errno > 0 ? -errno : -ENOMEM;
	s->presentation_clock = CLOCK_MONOTONIC;
	s->registry = wl_display_get_registry(s->display);
	if (!s->registry) {
		r = -ENOMEM;
		goto err;
	}
	wl_registry_add_listener(s->registry, &registry_listener, s);
	s->conn_round = 1;
	r = conn_sync(s);
	if (r < 0)
		goto err;
	if (vgb_wayland_flush(s) < 0) {
		r = -EPIPE;
		goto err;
	}
	return 0;
err:
	vgb_wayland_disconnect(s, -EPIPE);
	return r;
}

int vgb_wayland_connect_step(struct wayland_sink *s)
{
	int r;

	if (s->connected)
		return 1;
	if (!s->display || !s->conn_round)
		return -ENOTCONN;
	if (!s->conn_synced) {
		if (vgb_now_ns() < s->conn_deadline_ns)
			return 0;
		r = -ETIMEDOUT;
		goto err;
	}
	wl_callback_destroy(s->conn_sync);
	s->conn_sync = NULL;
	if (s->conn_round == 1) {
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
		s->conn_round = 2;
		r = conn_sync(s);
		if (r < 0)
			goto err;
		return vgb_wayland_flush(s) < 0 ? (vgb_wayland_disconnect(s, -EPIPE), -EPIPE) : 0;
	}
	s->conn_round = 0;
	s->connected = true;
	s->reconnect_at_ns = 0;
	return 1;
err:
	vgb_wayland_disconnect(s, -EPIPE);
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
	DESTROY(conn_sync, wl_callback_destroy);
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
	s->conn_round = 0;
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
	int r = vgb_wayland_connect_start(s);

	while (r == 0) {
		uint64_t now = vgb_now_ns();
		int wait = now < s->conn_deadline_ns ?
				   (int)((s->conn_deadline_ns - now + 999999) / 1000000) : 0;
		r = vgb_wayland_pump(s, wait);
		if (r < 0) {
			vgb_wayland_disconnect(s, r);
			return r;
		}
		r = vgb_wayland_connect_step(s);
	}
	return r < 0 ? r : 0;
}
