/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <wayland-client.h>

#include "plain-client.h"
#include "presentation-time-client-protocol.h"
#include "vgb/util.h"
#include "xdg-shell-client-protocol.h"

#define NBUF 3 /* as many as the sink's copy buffers */

struct plain_frame {
	struct plain_client *p;
	uint64_t commit_ns, presented_ns;
	int state; /* 0 waiting, 1 presented, -1 discarded */
};

struct plain_client {
	struct wl_display *dpy;
	struct wl_registry *reg;
	struct wl_compositor *comp;
	struct wl_shm *shm;
	struct xdg_wm_base *wm;
	struct wp_presentation *pres;
	clockid_t clock;
	struct wl_surface *surf;
	struct xdg_surface *xs;
	struct xdg_toplevel *top;
	bool configured;
	uint32_t width, height;
	int fd;
	uint8_t *data;
	size_t size; /* of one buffer */
	struct wl_buffer *buf[NBUF];
	bool busy[NBUF];
	/* one record per frame committed */
	struct plain_frame frames[PLAIN_CLIENT_MAX_FRAMES];
	uint32_t n_frames;
	unsigned stalls;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void wm_ping(void *data, struct xdg_wm_base *wm, uint32_t serial)
{
	xdg_wm_base_pong(wm, serial);
}

static const struct xdg_wm_base_listener wm_listener = { .ping = wm_ping };

static void pres_clock(void *data, struct wp_presentation *p, uint32_t clk_id)
{
	((struct plain_client *)data)->clock = (clockid_t)clk_id;
}

static const struct wp_presentation_listener pres_listener = { .clock_id = pres_clock };

static void reg_global(void *data, struct wl_registry *reg, uint32_t name, const char *iface,
		       uint32_t version)
{
	struct plain_client *p = data;

	if (!strcmp(iface, wl_compositor_interface.name)) {
		p->comp = wl_registry_bind(reg, name, &wl_compositor_interface, 4);
	} else if (!strcmp(iface, wl_shm_interface.name)) {
		p->shm = wl_registry_bind(reg, name, &wl_shm_interface, 1);
	} else if (!strcmp(iface, xdg_wm_base_interface.name)) {
		p->wm = wl_registry_bind(reg, name, &xdg_wm_base_interface, 1);
		xdg_wm_base_add_listener(p->wm, &wm_listener, p);
	} else if (!strcmp(iface, wp_presentation_interface.name)) {
		p->pres = wl_registry_bind(reg, name, &wp_presentation_interface, 1);
		wp_presentation_add_listener(p->pres, &pres_listener, p);
	}
}

static void reg_remove(void *data, struct wl_registry *reg, uint32_t name)
{
}

static const struct wl_registry_listener reg_listener = {
	.global = reg_global,
	.global_remove = reg_remove,
};

static void xs_configure(void *data, struct xdg_surface *xs, uint32_t serial)
{
	xdg_surface_ack_configure(xs, serial);
	((struct plain_client *)data)->configured = true;
}

static const struct xdg_surface_listener xs_listener = { .configure = xs_configure };

static void top_configure(void *data, struct xdg_toplevel *t, int32_t w, int32_t h,
			  struct wl_array *states)
{
}

static void top_close(void *data, struct xdg_toplevel *t)
{
}

static const struct xdg_toplevel_listener top_listener = {
	.configure = top_configure,
	.close = top_close,
};

static void buf_release(void *data, struct wl_buffer *b)
{
	*(bool *)data = false;
}

static const struct wl_buffer_listener buf_listener = { .release = buf_release };

static void fb_sync_output(void *data, struct wp_presentation_feedback *fb, struct wl_output *o)
{
}

static void fb_presented(void *data, struct wp_presentation_feedback *fb, uint32_t sec_hi,
			 uint32_t sec_lo, uint32_t nsec, uint32_t refresh, uint32_t seq_hi,
			 uint32_t seq_lo, uint32_t flags)
{
	struct plain_frame *f = data;
	struct plain_client *p = f->p;
	uint64_t t = (((uint64_t)sec_hi << 32 | sec_lo) * 1000000000ull) + nsec;

	if (p->clock != CLOCK_MONOTONIC) {
		struct timespec ts;

		if (clock_gettime(p->clock, &ts) == 0)
			t = t + mono_ns() - ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec);
	}
	f->presented_ns = t;
	f->state = 1;
	wp_presentation_feedback_destroy(fb);
}

static void fb_discarded(void *data, struct wp_presentation_feedback *fb)
{
	((struct plain_frame *)data)->state = -1;
	wp_presentation_feedback_destroy(fb);
}

static const struct wp_presentation_feedback_listener fb_listener = {
	.sync_output = fb_sync_output,
	.presented = fb_presented,
	.discarded = fb_discarded,
};

/* Reads and dispatches events, waiting at most @ms. Returns 0, -ETIMEDOUT or -EPIPE. */
static int dispatch_timeout(struct plain_client *p, int ms)
{
	struct pollfd pfd = { .fd = wl_display_get_fd(p->dpy), .events = POLLIN };
	int r;

	while (wl_display_prepare_read(p->dpy) != 0)
		if (wl_display_dispatch_pending(p->dpy) < 0)
			return -EPIPE;
	if (wl_display_flush(p->dpy) < 0 && errno != EAGAIN) {
		wl_display_cancel_read(p->dpy);
		return -EPIPE;
	}
	r = poll(&pfd, 1, ms);
	if (r <= 0) {
		wl_display_cancel_read(p->dpy);
		return r == 0 ? -ETIMEDOUT : -errno;
	}
	if (wl_display_read_events(p->dpy) < 0 || wl_display_dispatch_pending(p->dpy) < 0)
		return -EPIPE;
	return 0;
}

int plain_client_create(const char *socket_name, uint32_t width, uint32_t height,
			struct plain_client **ret)
{
	struct plain_client *p = calloc(1, sizeof(*p));
	struct wl_shm_pool *pool;
	uint64_t deadline;
	int r = -ENOTSUP;

	if (!p)
		return -ENOMEM;
	p->fd = -1;
	p->clock = CLOCK_MONOTONIC;
	p->width = width;
	p->height = height;
	p->size = (size_t)width * height * 4;
	p->dpy = wl_display_connect(socket_name);
	if (!p->dpy) {
		free(p);
		return -ECONNREFUSED;
	}
	p->reg = wl_display_get_registry(p->dpy);
	wl_registry_add_listener(p->reg, &reg_listener, p);
	if (wl_display_roundtrip(p->dpy) < 0 || wl_display_roundtrip(p->dpy) < 0) {
		r = -EPIPE;
		goto fail;
	}
	if (!p->comp || !p->shm || !p->wm || !p->pres)
		goto fail;
	p->fd = memfd_create("plain-client", MFD_CLOEXEC);
	if (p->fd < 0 || ftruncate(p->fd, (off_t)(NBUF * p->size)) < 0) {
		r = -errno;
		goto fail;
	}
	p->data = mmap(NULL, NBUF * p->size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
	if (p->data == MAP_FAILED) {
		p->data = NULL;
		r = -errno;
		goto fail;
	}
	pool = wl_shm_create_pool(p->shm, p->fd, (int32_t)(NBUF * p->size));
	for (int i = 0; i < NBUF; i++) {
		p->buf[i] = wl_shm_pool_create_buffer(pool, (int32_t)(i * p->size), (int32_t)width,
						      (int32_t)height, (int32_t)width * 4,
						      WL_SHM_FORMAT_XRGB8888);
		wl_buffer_add_listener(p->buf[i], &buf_listener, &p->busy[i]);
	}
	wl_shm_pool_destroy(pool);
	p->surf = wl_compositor_create_surface(p->comp);
	p->xs = xdg_wm_base_get_xdg_surface(p->wm, p->surf);
	xdg_surface_add_listener(p->xs, &xs_listener, p);
	p->top = xdg_surface_get_toplevel(p->xs);
	xdg_toplevel_add_listener(p->top, &top_listener, p);
	xdg_toplevel_set_title(p->top, "vgbridge bench baseline");
	wl_surface_commit(p->surf);
	deadline = mono_ns() + 2000000000ull;
	while (!p->configured) {
		if (mono_ns() > deadline || (r = dispatch_timeout(p, 100)) == -EPIPE) {
			r = -ETIMEDOUT;
			goto fail;
		}
	}
	*ret = p;
	return 0;
fail:
	plain_client_destroy(p);
	return r;
}

int plain_client_commit(struct plain_client *p, uint32_t seq)
{
	struct plain_frame *f;
	uint32_t *px;
	uint64_t deadline;
	int i, r;

	if (p->n_frames >= PLAIN_CLIENT_MAX_FRAMES)
		return -ENOSPC;
	if (plain_client_dispatch(p, 0) == -EPIPE)
		return -EPIPE;
	for (i = 0; i < NBUF && p->busy[i]; i++)
		;
	if (i == NBUF) {
		/* every buffer held: wait for a release, as the sink waits for one */
		p->stalls++;
		deadline = mono_ns() + 5000000000ull;
		while (i == NBUF) {
			if (mono_ns() > deadline || (r = dispatch_timeout(p, 50)) == -EPIPE)
				return -ETIMEDOUT;
			for (i = 0; i < NBUF && p->busy[i]; i++)
				;
		}
	}
	px = (uint32_t *)(void *)(p->data + (size_t)i * p->size);
	for (size_t k = 0; k < (size_t)p->width * p->height; k += 1024)
		px[k] = seq * 2654435761u;
	f = &p->frames[p->n_frames++];
	*f = (struct plain_frame){ .p = p };
	wl_surface_attach(p->surf, p->buf[i], 0, 0);
	wl_surface_damage_buffer(p->surf, 0, 0, (int32_t)p->width, (int32_t)p->height);
	wp_presentation_feedback_add_listener(wp_presentation_feedback(p->pres, p->surf),
					      &fb_listener, f);
	p->busy[i] = true;
	wl_surface_commit(p->surf);
	f->commit_ns = mono_ns();
	wl_display_flush(p->dpy);
	return 0;
}

int plain_client_dispatch(struct plain_client *p, int ms)
{
	int r = dispatch_timeout(p, ms);

	return r == -ETIMEDOUT ? 0 : r;
}

int plain_client_finish(struct plain_client *p, uint64_t *ret_ns, uint32_t *ret_n,
			uint32_t *ret_discarded)
{
	uint64_t deadline = mono_ns() + 5000000000ull;
	uint32_t n = 0, discarded = 0;
	bool waiting = true;

	while (waiting) {
		waiting = false;
		for (uint32_t i = 0; i < p->n_frames; i++)
			waiting |= p->frames[i].state == 0;
		if (!waiting)
			break;
		if (mono_ns() > deadline)
			return -ETIMEDOUT;
		if (plain_client_dispatch(p, 50) == -EPIPE)
			return -EPIPE;
	}
	for (uint32_t i = 0; i < p->n_frames; i++) {
		const struct plain_frame *f = &p->frames[i];
		if (f->state < 0) {
			discarded++;
			continue;
		}
		ret_ns[n++] = f->presented_ns > f->commit_ns ? f->presented_ns - f->commit_ns : 0;
	}
	*ret_n = n;
	*ret_discarded = discarded;
	return 0;
}

void plain_client_destroy(struct plain_client *p)
{
	if (!p)
		return;
	for (int i = 0; i < NBUF; i++)
		if (p->buf[i])
			wl_buffer_destroy(p->buf[i]);
	if (p->top)
		xdg_toplevel_destroy(p->top);
	if (p->xs)
		xdg_surface_destroy(p->xs);
	if (p->surf)
		wl_surface_destroy(p->surf);
	if (p->pres)
		wp_presentation_destroy(p->pres);
	if (p->wm)
		xdg_wm_base_destroy(p->wm);
	if (p->shm)
		wl_shm_destroy(p->shm);
	if (p->comp)
		wl_compositor_destroy(p->comp);
	if (p->reg)
		wl_registry_destroy(p->reg);
	if (p->dpy)
		wl_display_disconnect(p->dpy);
	if (p->data)
		munmap(p->data, NBUF * p->size);
	vgb_close(p->fd);
	free(p);
}
