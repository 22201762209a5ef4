/* SPDX-License-Identifier: MIT */
/*
 * vhost-screenshot OUT.ppm: takes a screenshot of weston's first output (weston_screenshooter,
 * weston started with --debug) and writes it as a binary PPM. Before the shot, a fullscreen
 * overlay is mapped and unmapped so that weston repaints the whole output from every surface's
 * current buffer (it repaints only damage, and the screenshooter reads the output as it is).
 * Used by tests/vm/vhost-e2e.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <wayland-client.h>

#include "weston-screenshooter-client-protocol.h"
#include "xdg-shell-client-protocol.h"

static struct wl_shm *shm;
static struct wl_output *output;
static struct wl_compositor *compositor;
static struct xdg_wm_base *wm_base;
static struct weston_screenshooter *shooter;
static int32_t out_w, out_h;
static bool shot_done, configured, frame_done;

static void output_geometry(void *d, struct wl_output *o, int32_t x, int32_t y, int32_t pw,
			    int32_t ph, int32_t sp, const char *make, const char *model, int32_t t)
{
}

static void output_mode(void *d, struct wl_output *o, uint32_t flags, int32_t w, int32_t h,
			int32_t refresh)
{
	if (flags & WL_OUTPUT_MODE_CURRENT) {
		out_w = w;
		out_h = h;
	}
}

static const struct wl_output_listener output_listener = { .geometry = output_geometry,
							   .mode = output_mode };

static void ping(void *d, struct xdg_wm_base *b, uint32_t serial)
{
	xdg_wm_base_pong(b, serial);
}

static const struct xdg_wm_base_listener wm_listener = { .ping = ping };

static void global(void *d, struct wl_registry *r, uint32_t name, const char *iface, uint32_t v)
{
	if (strcmp(iface, "wl_shm") == 0)
		shm = wl_registry_bind(r, name, &wl_shm_interface, 1);
	else if (strcmp(iface, "wl_output") == 0 && !output) {
		output = wl_registry_bind(r, name, &wl_output_interface, 1);
		wl_output_add_listener(output, &output_listener, NULL);
	} else if (strcmp(iface, "wl_compositor") == 0)
		compositor = wl_registry_bind(r, name, &wl_compositor_interface, 1);
	else if (strcmp(iface, "xdg_wm_base") == 0) {
		wm_base = wl_registry_bind(r, name, &xdg_wm_base_interface, 1);
		xdg_wm_base_add_listener(wm_base, &wm_listener, NULL);
	} else if (strcmp(iface, "weston_screenshooter") == 0)
		shooter = wl_registry_bind(r, name, &weston_screenshooter_interface, 1);
}

static void global_remove(void *d, struct wl_registry *r, uint32_t name)
{
}

static const struct wl_registry_listener registry_listener = { global, global_remove };

static void done(void *d, struct weston_screenshooter *s)
{
	shot_done = true;
}

static const struct weston_screenshooter_listener shooter_listener = { .done = done };

static void xs_configure(void *d, struct xdg_surface *s, uint32_t serial)
{
	xdg_surface_ack_configure(s, serial);
	configured = true;
}

static const struct xdg_surface_listener xs_listener = { .configure = xs_configure };

static void tl_configure(void *d, struct xdg_toplevel *t, int32_t w, int32_t h,
			 struct wl_array *states)
{
}

static void tl_close(void *d, struct xdg_toplevel *t)
{
}

static const struct xdg_toplevel_listener tl_listener = { .configure = tl_configure,
							  .close = tl_close };

static void cb_done(void *d, struct wl_callback *cb, uint32_t t)
{
	frame_done = true;
}

static const struct wl_callback_listener cb_listener = { .done = cb_done };

static int wait_for(struct wl_display *dpy, bool *flag)
{
	time_t end = time(NULL) + 10;
	while (!*flag) {
		if (time(NULL) > end || wl_display_dispatch(dpy) < 0)
			return -1;
	}
	return 0;
}

static struct wl_buffer *make_buffer(size_t size, void **ret_data)
{
	int fd = memfd_create("shot", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		return NULL;
	*ret_data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (*ret_data == MAP_FAILED)
		return NULL;
	struct wl_shm_pool *pool = wl_shm_create_pool(shm, fd, (int32_t)size);
	close(fd);
	struct wl_buffer *b = wl_shm_pool_create_buffer(pool, 0, out_w, out_h, out_w * 4,
							WL_SHM_FORMAT_ARGB8888);
	wl_shm_pool_destroy(pool);
	return b;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: vhost-screenshot OUT.ppm\n");
		return 2;
	}
	struct wl_display *dpy = wl_display_connect(NULL);
	if (!dpy)
		return 1;
	struct wl_registry *reg = wl_display_get_registry(dpy);
	wl_registry_add_listener(reg, &registry_listener, NULL);
	wl_display_roundtrip(dpy);
	wl_display_roundtrip(dpy);
	if (!shm || !output || !compositor || !wm_base || !shooter || out_w <= 0 || out_h <= 0) {
		fprintf(stderr, "vhost-screenshot: missing globals (weston --debug?)\n");
		return 1;
	}
	size_t size = (size_t)out_w * (size_t)out_h * 4;
	weston_screenshooter_add_listener(shooter, &shooter_listener, NULL);

	/* Full repaint: a fullscreen overlay mapped, shown once, unmapped. */
	void *odata;
	struct wl_buffer *ob = make_buffer(size, &odata);
	if (!ob)
		return 1;
	for (size_t i = 0; i < size / 4; i++)
		((uint32_t *)odata)[i] = 0xffff00ffu;
	struct wl_surface *s = wl_compositor_create_surface(compositor);
	struct xdg_surface *xs = xdg_wm_base_get_xdg_surface(wm_base, s);
	xdg_surface_add_listener(xs, &xs_listener, NULL);
	struct xdg_toplevel *tl = xdg_surface_get_toplevel(xs);
	xdg_toplevel_add_listener(tl, &tl_listener, NULL);
	xdg_toplevel_set_fullscreen(tl, NULL);
	wl_surface_commit(s);
	if (wait_for(dpy, &configured) < 0)
		return 1;
	wl_surface_attach(s, ob, 0, 0);
	wl_surface_damage(s, 0, 0, out_w, out_h);
	struct wl_callback *cb = wl_surface_frame(s);
	wl_callback_add_listener(cb, &cb_listener, NULL);
	wl_surface_commit(s);
	if (wait_for(dpy, &frame_done) < 0)
		return 1;
	wl_callback_destroy(cb);
	xdg_toplevel_destroy(tl);
	xdg_surface_destroy(xs);
	wl_surface_destroy(s);
	wl_buffer_destroy(ob);
	wl_display_roundtrip(dpy);

	void *data;
	struct wl_buffer *b = make_buffer(size, &data);
	if (!b)
		return 1;
	weston_screenshooter_take_shot(shooter, output, b);
	if (wait_for(dpy, &shot_done) < 0)
		return 1;

	FILE *f = fopen(argv[1], "we");
	if (!f)
		return 1;
	fprintf(f, "P6\n%d %d\n255\n", out_w, out_h);
	for (size_t i = 0; i < size / 4; i++) {
		uint32_t p = ((uint32_t *)data)[i];
		unsigned char rgb[3] = { (unsigned char)(p >> 16), (unsigned char)(p >> 8),
					 (unsigned char)p };
		fwrite(rgb, 1, 3, f);
	}
	if (fclose(f) != 0)
		return 1;
	wl_display_disconnect(dpy);
	return 0;
}
