/* SPDX-License-Identifier: MIT */
/*
 * The Wayland sink's linux-dmabuf path against a small fake compositor (libwayland-server, in
 * this process, one thread): v4 default and per-surface feedback with an mmapped format table
 * and tranches, imports with `create` only, `failed` -> wl_shm fallback (pixels checked in the
 * shm buffer the compositor received), a format-table change, one wl_buffer per export dropped
 * by forget, and the toplevel's title and fullscreen request. No wp_presentation here, so frames
 * complete on frame callbacks. The fake runs in a second thread (the sink's setup waits, bounded,
 * for its answers); the test reads what it saw under a lock.
 */
#include <drm_fourcc.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wayland-server.h>

#include "leak.h"
#include "linux-dmabuf-unstable-v1-server-protocol.h"
#include "tap.h"
#include "vgb/display.h"
#include "vgb/util.h"
#include "xdg-shell-server-protocol.h"

#define W 32
#define H 16

struct fake {
	struct wl_display *display;
	struct wl_event_loop *loop;
	char dir[64];
	char socket[32];

	/* What the formats are: the table and tranches sent in each feedback. */
	const uint64_t (*table)[2]; /* {format, modifier} */
	size_t table_len;
	const uint16_t *tranche;
	size_t tranche_len;
	uint32_t refuse_offset; /* imports with this plane-0 offset get `failed` */
	uint32_t table_extra_bytes; /* declared table size beyond the file's */

	/* What the client did. */
	unsigned creates, create_immeds, params_fds, buffers_destroyed, commits, feedbacks;
	bool fullscreen;
	char title[128];
	char app_id[64];
	uint32_t last_offset, last_stride, last_format;
	uint64_t last_modifier;
	ino_t last_ino;
	struct wl_resource *committed;   /* wl_buffer of the last commit */
	bool committed_is_dmabuf;
	uint8_t shm_pixels[W * H * 4];   /* copy of the last committed shm buffer */

	/*
	 * Repaint on request, as a real compositor repaints on its own clock: while set, a commit
	 * only takes the buffer, and repaint() reads its pixels (the frame it shows) and then
	 * answers the frame callbacks, as weston does after a repaint.
	 */
	bool hold_repaint;
	struct wl_list held_frames;        /* frame callbacks waiting for repaint() */
	uint8_t shown_pixels[W * H * 4];   /* what the last repaint() showed */
	unsigned repaints;
	struct wl_resource *surface_feedback;
	struct wl_resource *toplevel;
	struct wl_resource *xdg_surface;
	uint32_t serial;
	bool configured_sent;

	/* Seat and cursor. */
	struct wl_resource *main_surface; /* the toplevel's wl_surface */
	struct wl_resource *pointer;
	bool entered;
	unsigned set_cursors;
	bool cursor_hidden;
	int32_t hot_x, hot_y;
	struct wl_resource *cursor_surface;
	uint32_t cursor_w, cursor_h;
	uint32_t cursor_pixels[64 * 64];
};

static struct fake fake;

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
static void lsan_disable(void)
{
	__lsan_disable();
}
static void lsan_enable(void)
{
	__lsan_enable();
}
#else
static void lsan_disable(void)
{
}
static void lsan_enable(void)
{
}
#endif

/* ---- wl_buffer (dmabuf) ---- */

static void buffer_destroy(struct wl_client *c, struct wl_resource *r)
{
	wl_resource_destroy(r);
}

static const struct wl_buffer_interface dmabuf_buffer_impl = { .destroy = buffer_destroy };

static void dmabuf_buffer_gone(struct wl_resource *r)
{
	fake.buffers_destroyed++;
	if (fake.committed == r)
		fake.committed = NULL;
}

/* ---- params ---- */

struct params {
	uint32_t n_fds;
	uint32_t offset, stride;
	uint64_t modifier;
	ino_t ino;
};

static void params_destroy(struct wl_client *c, struct wl_resource *r)
{
	wl_resource_destroy(r);
}

static void params_add(struct wl_client *c, struct wl_resource *r, int32_t fd, uint32_t plane,
		       uint32_t offset, uint32_t stride, uint32_t hi, uint32_t lo)
{
	struct params *p = wl_resource_get_user_data(r);
	struct stat st;

	p->n_fds++;
	p->offset = offset;
	p->stride = stride;
	p->modifier = ((uint64_t)hi << 32) | lo;
	if (fstat(fd, &st) == 0)
		p->ino = st.st_ino;
	close(fd);
}

static void params_create(struct wl_client *c, struct wl_resource *r, int32_t w, int32_t h,
			  uint32_t format, uint32_t flags)
{
	struct params *p = wl_resource_get_user_data(r);
	struct wl_resource *buffer;

	fake.creates++;
	fake.params_fds += p->n_fds;
	fake.last_offset = p->offset;
	fake.last_stride = p->stride;
	fake.last_format = format;
	fake.last_modifier = p->modifier;
	fake.last_ino = p->ino;
	if (p->offset == fake.refuse_offset) {
		zwp_linux_buffer_params_v1_send_failed(r);
		return;
	}
	buffer = wl_resource_create(c, &wl_buffer_interface, 1, 0);
	wl_resource_set_implementation(buffer, &dmabuf_buffer_impl, NULL, dmabuf_buffer_gone);
	zwp_linux_buffer_params_v1_send_created(r, buffer);
}

static void params_create_immed(struct wl_client *c, struct wl_resource *r, uint32_t id,
				int32_t w, int32_t h, uint32_t format, uint32_t flags)
{
	fake.create_immeds++;
	wl_resource_post_error(r, ZWP_LINUX_BUFFER_PARAMS_V1_ERROR_INVALID_WL_BUFFER,
			       "this fake refuses create_immed, as weston kills on failure");
}

static const struct zwp_linux_buffer_params_v1_interface params_impl = {
	.destroy = params_destroy,
	.add = params_add,
	.create = params_create,
	.create_immed = params_create_immed,
};

static void params_free(struct wl_resource *r)
{
	free(wl_resource_get_user_data(r));
}

/* ---- feedback ---- */

static void feedback_destroy(struct wl_client *c, struct wl_resource *r)
{
	wl_resource_destroy(r);
}

static const struct zwp_linux_dmabuf_feedback_v1_interface feedback_impl = {
	.destroy = feedback_destroy,
};

static void feedback_gone(struct wl_resource *r)
{
	if (fake.surface_feedback == r)
		fake.surface_feedback = NULL;
}

static void send_feedback(struct wl_resource *r)
{
	size_t size = fake.table_len * 16;
	int fd = memfd_create("format-table", MFD_CLOEXEC);
	struct wl_array dev, idx;
	dev_t main_dev = 0;

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		abort();
	for (size_t i = 0; i < fake.table_len; i++) {
		uint32_t f[2] = { (uint32_t)fake.table[i][0], 0 };
		uint64_t m = fake.table[i][1];
		if (pwrite(fd, f, 8, (off_t)(i * 16)) != 8 || pwrite(fd, &m, 8, (off_t)(i * 16 + 8)) != 8)
			abort();
	}
	/* A lying compositor may declare more than the file holds: the sink must not fault. */
	zwp_linux_dmabuf_feedback_v1_send_format_table(r, fd,
						       (uint32_t)size + fake.table_extra_bytes);
	close(fd);
	wl_array_init(&dev);
	*(dev_t *)wl_array_add(&dev, sizeof(dev_t)) = main_dev;
	zwp_linux_dmabuf_feedback_v1_send_main_device(r, &dev);
	zwp_linux_dmabuf_feedback_v1_send_tranche_target_device(r, &dev);
	wl_array_init(&idx);
	memcpy(wl_array_add(&idx, fake.tranche_len * 2), fake.tranche, fake.tranche_len * 2);
	zwp_linux_dmabuf_feedback_v1_send_tranche_formats(r, &idx);
	zwp_linux_dmabuf_feedback_v1_send_tranche_flags(r, 0);
	zwp_linux_dmabuf_feedback_v1_send_tranche_done(r);
	zwp_linux_dmabuf_feedback_v1_send_done(r);
	wl_array_release(&dev);
	wl_array_release(&idx);
	fake.feedbacks++;
}

/* ---- zwp_linux_dmabuf_v1 ---- */

static void dmabuf_destroy(struct wl_client *c, struct wl_resource *r)
{
	wl_resource_destroy(r);
}

static void dmabuf_create_params(struct wl_client *c, struct wl_resource *r, uint32_t id)
{
	struct wl_resource *p = wl_resource_create(c, &zwp_linux_buffer_params_v1_interface,
						   wl_resource_get_version(r), id);
	wl_resource_set_implementation(p, &params_impl, calloc(1, sizeof(struct params)),
				       params_free);
}

static void dmabuf_default_feedback(struct wl_client *c, struct wl_resource *r, uint32_t id)
{
	struct wl_resource *fb = wl_resource_create(c, &zwp_linux_dmabuf_feedback_v1_interface,
						    wl_resource_get_version(r), id);
	wl_resource_set_implementation(fb, &feedback_impl, NULL, NULL);
	send_feedback(fb);
}

static void dmabuf_surface_feedback(struct wl_client *c, struct wl_resource *r, uint32_t id,
				    struct wl_resource *surface)
{
	struct wl_resource *fb = wl_resource_create(c, &zwp_linux_dmabuf_feedback_v1_interface,
						    wl_resource_get_version(r), id);
	wl_resource_set_implementation(fb, &feedback_impl, NULL, feedback_gone);
	fake.surface_feedback = fb;
	send_feedback(fb);
}

static const struct zwp_linux_dmabuf_v1_interface dmabuf_impl = {
	.destroy = dmabuf_destroy,
	.create_params = dmabuf_create_params,
	.get_default_feedback = dmabuf_default_feedback,
	.get_surface_feedback = dmabuf_surface_feedback,
};

static void bind_dmabuf(struct wl_client *c, void *data, uint32_t version, uint32_t id)
{
	struct wl_resource *r = wl_resource_create(c, &zwp_linux_dmabuf_v1_interface, version, id);
	wl_resource_set_implementation(r, &dmabuf_impl, NULL, NULL);
}

/* ---- xdg-shell ---- */

static void res_destroy(struct wl_client *c, struct wl_resource *r)
{
	wl_resource_destroy(r);
}

static void tl_set_parent(struct wl_client *c, struct wl_resource *r, struct wl_resource *p)
{
}

static void tl_set_title(struct wl_client *c, struct wl_resource *r, const char *title)
{
	snprintf(fake.title, sizeof(fake.title), "%s", title);
}

static void tl_set_app_id(struct wl_client *c, struct wl_resource *r, const char *id)
{
	snprintf(fake.app_id, sizeof(fake.app_id), "%s", id);
}

static void tl_show_window_menu(struct wl_client *c, struct wl_resource *r,
				struct wl_resource *seat, uint32_t serial, int32_t x, int32_t y)
{
}

static void tl_move(struct wl_client *c, struct wl_resource *r, struct wl_resource *seat,
		    uint32_t serial)
{
}

static void tl_resize(struct wl_client *c, struct wl_resource *r, struct wl_resource *seat,
		      uint32_t serial, uint32_t edges)
{
}

static void tl_size(struct wl_client *c, struct wl_resource *r, int32_t w, int32_t h)
{
}

static void tl_noop(struct wl_client *c, struct wl_resource *r)
{
}

static void tl_set_fullscreen(struct wl_client *c, struct wl_resource *r,
			      struct wl_resource *output)
{
	fake.fullscreen = true;
}

static void tl_unset_fullscreen(struct wl_client *c, struct wl_resource *r)
{
	fake.fullscreen = false;
}

static const struct xdg_toplevel_interface toplevel_impl = {
	.destroy = res_destroy,
	.set_parent = tl_set_parent,
	.set_title = tl_set_title,
	.set_app_id = tl_set_app_id,
	.show_window_menu = tl_show_window_menu,
	.move = tl_move,
	.resize = tl_resize,
	.set_max_size = tl_size,
	.set_min_size = tl_size,
	.set_maximized = tl_noop,
	.unset_maximized = tl_noop,
	.set_fullscreen = tl_set_fullscreen,
	.unset_fullscreen = tl_unset_fullscreen,
	.set_minimized = tl_noop,
};

static void toplevel_gone(struct wl_resource *r)
{
	fake.toplevel = NULL;
}

static void xs_get_toplevel(struct wl_client *c, struct wl_resource *r, uint32_t id)
{
	struct wl_resource *t = wl_resource_create(c, &xdg_toplevel_interface, 1, id);
	wl_resource_set_implementation(t, &toplevel_impl, NULL, toplevel_gone);
	fake.toplevel = t;
	fake.xdg_surface = r;
	fake.configured_sent = false;
}

static void xs_get_popup(struct wl_client *c, struct wl_resource *r, uint32_t id,
			 struct wl_resource *parent, struct wl_resource *positioner)
{
	wl_resource_post_error(r, 0, "no popups here");
}

static void xs_set_window_geometry(struct wl_client *c, struct wl_resource *r, int32_t x,
				   int32_t y, int32_t w, int32_t h)
{
}

static void xs_ack_configure(struct wl_client *c, struct wl_resource *r, uint32_t serial)
{
}

static const struct xdg_surface_interface xdg_surface_impl = {
	.destroy = res_destroy,
	.get_toplevel = xs_get_toplevel,
	.get_popup = xs_get_popup,
	.set_window_geometry = xs_set_window_geometry,
	.ack_configure = xs_ack_configure,
};

static void wm_create_positioner(struct wl_client *c, struct wl_resource *r, uint32_t id)
{
	wl_resource_post_error(r, 0, "no positioners here");
}

static void wm_get_xdg_surface(struct wl_client *c, struct wl_resource *r, uint32_t id,
			       struct wl_resource *surface)
{
	struct wl_resource *x = wl_resource_create(c, &xdg_surface_interface, 1, id);
	wl_resource_set_implementation(x, &xdg_surface_impl, NULL, NULL);
	fake.main_surface = surface;
	fake.entered = false;
}

static void wm_pong(struct wl_client *c, struct wl_resource *r, uint32_t serial)
{
}

static const struct xdg_wm_base_interface wm_impl = {
	.destroy = res_destroy,
	.create_positioner = wm_create_positioner,
	.get_xdg_surface = wm_get_xdg_surface,
	.pong = wm_pong,
};

static void bind_wm(struct wl_client *c, void *data, uint32_t version, uint32_t id)
{
	struct wl_resource *r = wl_resource_create(c, &xdg_wm_base_interface, 1, id);
	wl_resource_set_implementation(r, &wm_impl, NULL, NULL);
}

/* ---- wl_surface / wl_compositor ---- */

struct surface {
	struct wl_resource *pending;
	bool attached;
	struct wl_list frames; /* wl_resource links */
};

static void surf_attach(struct wl_client *c, struct wl_resource *r, struct wl_resource *buffer,
			int32_t x, int32_t y)
{
	struct surface *s = wl_resource_get_user_data(r);

	s->pending = buffer;
	s->attached = true;
}

static void surf_damage(struct wl_client *c, struct wl_resource *r, int32_t x, int32_t y,
			int32_t w, int32_t h)
{
}

static void frame_cb_gone(struct wl_resource *r)
{
	wl_list_remove(wl_resource_get_link(r));
}

static void surf_frame(struct wl_client *c, struct wl_resource *r, uint32_t id)
{
	struct surface *s = wl_resource_get_user_data(r);
	struct wl_resource *cb = wl_resource_create(c, &wl_callback_interface, 1, id);

	wl_resource_set_implementation(cb, NULL, NULL, frame_cb_gone);
	wl_list_insert(s->frames.prev, wl_resource_get_link(cb));
}

static void surf_region(struct wl_client *c, struct wl_resource *r, struct wl_resource *reg)
{
}

/* The committed buffer, forgotten when the client destroys it (shm buffers included). */
static struct wl_listener committed_listener;

static void committed_gone(struct wl_listener *l, void *data)
{
	fake.committed = NULL;
	wl_list_remove(&l->link);
	wl_list_init(&l->link);
}

static void set_committed(struct wl_resource *buffer)
{
	wl_list_remove(&committed_listener.link);
	wl_list_init(&committed_listener.link);
	fake.committed = buffer;
	if (buffer) {
		committed_listener.notify = committed_gone;
		wl_resource_add_destroy_listener(buffer, &committed_listener);
	}
}

static void surf_commit(struct wl_client *c, struct wl_resource *r)
{
	struct surface *s = wl_resource_get_user_data(r);
	struct wl_resource *cb, *tmp;

	if (!fake.configured_sent && fake.toplevel) {
		struct wl_array states;
		wl_array_init(&states);
		xdg_toplevel_send_configure(fake.toplevel, 0, 0, &states);
		xdg_surface_send_configure(fake.xdg_surface, ++fake.serial);
		wl_array_release(&states);
		fake.configured_sent = true;
	}
	if (s->attached && r != fake.main_surface) {
		/* A cursor surface: keep its pixels. */
		struct wl_shm_buffer *shm = s->pending ? wl_shm_buffer_get(s->pending) : NULL;
		if (shm && wl_shm_buffer_get_width(shm) <= 64 && wl_shm_buffer_get_height(shm) <= 64) {
			fake.cursor_w = (uint32_t)wl_shm_buffer_get_width(shm);
			fake.cursor_h = (uint32_t)wl_shm_buffer_get_height(shm);
			wl_shm_buffer_begin_access(shm);
			for (uint32_t y = 0; y < fake.cursor_h; y++)
				memcpy(fake.cursor_pixels + y * fake.cursor_w,
				       (uint8_t *)wl_shm_buffer_get_data(shm) +
					       y * wl_shm_buffer_get_stride(shm),
				       fake.cursor_w * 4);
			wl_shm_buffer_end_access(shm);
		}
		if (s->pending)
			wl_buffer_send_release(s->pending);
		s->attached = false;
	}
	if (s->attached) {
		struct wl_shm_buffer *shm = s->pending ? wl_shm_buffer_get(s->pending) : NULL;
		if (fake.pointer && !fake.entered) {
			/* The pointer enters the window when it first shows something. */
			wl_pointer_send_enter(fake.pointer, ++fake.serial, r, 0, 0);
			fake.entered = true;
		}
		if (fake.committed && fake.committed != s->pending)
			wl_buffer_send_release(fake.committed);
		set_committed(s->pending);
		fake.committed_is_dmabuf = s->pending && !shm;
		if (shm && !fake.hold_repaint && wl_shm_buffer_get_width(shm) == W &&
		    wl_shm_buffer_get_height(shm) == H) {
			int32_t stride = wl_shm_buffer_get_stride(shm);
			wl_shm_buffer_begin_access(shm);
			for (int y = 0; y < H; y++)
				memcpy(fake.shm_pixels + y * W * 4,
				       (uint8_t *)wl_shm_buffer_get_data(shm) + y * stride, W * 4);
			wl_shm_buffer_end_access(shm);
		}
		s->attached = false;
		fake.commits++;
	}
	if (fake.hold_repaint && r == fake.main_surface) {
		wl_list_insert_list(fake.held_frames.prev, &s->frames);
		wl_list_init(&s->frames);
		return;
	}
	wl_resource_for_each_safe(cb, tmp, &s->frames) {
		wl_callback_send_done(cb, 0);
		wl_resource_destroy(cb);
	}
}

/* A repaint (under the lock): reads the committed shm buffer, then answers frame callbacks. */
static void repaint(void)
{
	struct wl_shm_buffer *shm = fake.committed ? wl_shm_buffer_get(fake.committed) : NULL;
	struct wl_resource *cb, *tmp;

	if (shm && wl_shm_buffer_get_width(shm) == W && wl_shm_buffer_get_height(shm) == H) {
		int32_t stride = wl_shm_buffer_get_stride(shm);
		wl_shm_buffer_begin_access(shm);
		for (int y = 0; y < H; y++)
			memcpy(fake.shown_pixels + y * W * 4,
			       (uint8_t *)wl_shm_buffer_get_data(shm) + y * stride, W * 4);
		wl_shm_buffer_end_access(shm);
	}
	fake.repaints++;
	wl_resource_for_each_safe(cb, tmp, &fake.held_frames) {
		wl_callback_send_done(cb, 0);
		wl_resource_destroy(cb);
	}
	wl_display_flush_clients(fake.display);
}

static void surf_int(struct wl_client *c, struct wl_resource *r, int32_t v)
{
}

static const struct wl_surface_interface surface_impl = {
	.destroy = res_destroy,
	.attach = surf_attach,
	.damage = surf_damage,
	.frame = surf_frame,
	.set_opaque_region = surf_region,
	.set_input_region = surf_region,
	.commit = surf_commit,
	.set_buffer_transform = surf_int,
	.set_buffer_scale = surf_int,
	.damage_buffer = surf_damage,
};

static void surface_free(struct wl_resource *r)
{
	struct surface *s = wl_resource_get_user_data(r);
	struct wl_resource *cb, *tmp;

	wl_resource_for_each_safe(cb, tmp, &s->frames)
		wl_resource_destroy(cb);
	free(s);
}

static void region_op(struct wl_client *c, struct wl_resource *r, int32_t x, int32_t y,
		      int32_t w, int32_t h)
{
}

static const struct wl_region_interface region_impl = {
	.destroy = res_destroy,
	.add = region_op,
	.subtract = region_op,
};

static void comp_create_surface(struct wl_client *c, struct wl_resource *r, uint32_t id)
{
	struct surface *s = calloc(1, sizeof(*s));
	struct wl_resource *res = wl_resource_create(c, &wl_surface_interface,
						     wl_resource_get_version(r), id);

	wl_list_init(&s->frames);
	wl_resource_set_implementation(res, &surface_impl, s, surface_free);
}

static void comp_create_region(struct wl_client *c, struct wl_resource *r, uint32_t id)
{
	struct wl_resource *res = wl_resource_create(c, &wl_region_interface, 1, id);
	wl_resource_set_implementation(res, &region_impl, NULL, NULL);
}

static const struct wl_compositor_interface compositor_impl = {
	.create_surface = comp_create_surface,
	.create_region = comp_create_region,
};

static void bind_compositor(struct wl_client *c, void *data, uint32_t version, uint32_t id)
{
	struct wl_resource *r = wl_resource_create(c, &wl_compositor_interface, version, id);
	wl_resource_set_implementation(r, &compositor_impl, NULL, NULL);
}

/* ---- wl_seat / wl_pointer ---- */

static void ptr_set_cursor(struct wl_client *c, struct wl_resource *r, uint32_t serial,
			   struct wl_resource *surface, int32_t x, int32_t y)
{
	fake.set_cursors++;
	fake.cursor_hidden = surface == NULL;
	fake.cursor_surface = surface;
	fake.hot_x = x;
	fake.hot_y = y;
}

static const struct wl_pointer_interface pointer_impl = {
	.set_cursor = ptr_set_cursor,
	.release = res_destroy,
};

static void pointer_gone(struct wl_resource *r)
{
	if (fake.pointer == r)
		fake.pointer = NULL;
}

static void seat_get_pointer(struct wl_client *c, struct wl_resource *r, uint32_t id)
{
	struct wl_resource *p = wl_resource_create(c, &wl_pointer_interface,
						   wl_resource_get_version(r), id);
	wl_resource_set_implementation(p, &pointer_impl, NULL, pointer_gone);
	fake.pointer = p;
}

static void seat_get_other(struct wl_client *c, struct wl_resource *r, uint32_t id)
{
	wl_resource_post_error(r, WL_SEAT_ERROR_MISSING_CAPABILITY, "pointer only");
}

static const struct wl_seat_interface seat_impl = {
	.get_pointer = seat_get_pointer,
	.get_keyboard = seat_get_other,
	.get_touch = seat_get_other,
	.release = res_destroy,
};

static void bind_seat(struct wl_client *c, void *data, uint32_t version, uint32_t id)
{
	struct wl_resource *r = wl_resource_create(c, &wl_seat_interface, version, id);
	wl_resource_set_implementation(r, &seat_impl, NULL, NULL);
	wl_seat_send_capabilities(r, WL_SEAT_CAPABILITY_POINTER);
}

/* ---- the fake runs in its own thread; the test reads its state under the lock ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool stop;
static int resend_efd = -1;
static struct wl_event_source *resend_source;

static int on_resend(int fd, uint32_t mask, void *data)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	if (fake.surface_feedback)
		send_feedback(fake.surface_feedback);
	return 0;
}

static void *serve(void *arg)
{
	while (!atomic_load(&stop)) {
		struct pollfd p = { .fd = wl_event_loop_get_fd(fake.loop), .events = POLLIN };
		poll(&p, 1, 5);
		pthread_mutex_lock(&lock);
		wl_event_loop_dispatch(fake.loop, 0);
		wl_display_flush_clients(fake.display);
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

static void fake_start(void)
{
	snprintf(fake.dir, sizeof(fake.dir), "/tmp/vgb-fake-XXXXXX");
	if (!mkdtemp(fake.dir))
		tap_bail("mkdtemp");
	chmod(fake.dir, 0700);
	setenv("XDG_RUNTIME_DIR", fake.dir, 1);
	snprintf(fake.socket, sizeof(fake.socket), "fake-%d", (int)getpid());
	wl_list_init(&committed_listener.link);
	wl_list_init(&fake.held_frames);
	fake.display = wl_display_create();
	fake.loop = wl_display_get_event_loop(fake.display);
	if (wl_display_add_socket(fake.display, fake.socket) < 0)
		tap_bail("cannot add socket");
	wl_display_init_shm(fake.display);
	wl_global_create(fake.display, &wl_compositor_interface, 4, NULL, bind_compositor);
	wl_global_create(fake.display, &xdg_wm_base_interface, 1, NULL, bind_wm);
	wl_global_create(fake.display, &zwp_linux_dmabuf_v1_interface, 4, NULL, bind_dmabuf);
	wl_global_create(fake.display, &wl_seat_interface, 5, NULL, bind_seat);
	resend_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	resend_source = wl_event_loop_add_fd(fake.loop, resend_efd, WL_EVENT_READABLE, on_resend, NULL);
}

static void fake_stop(pthread_t thread)
{
	char path[128];

	atomic_store(&stop, true);
	pthread_join(thread, NULL);
	wl_event_source_remove(resend_source);
	wl_display_destroy_clients(fake.display);
	wl_display_destroy(fake.display);
	close(resend_efd);
	snprintf(path, sizeof(path), "%s/%s.lock", fake.dir, fake.socket);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", fake.dir, fake.socket);
	unlink(path);
	rmdir(fake.dir);
}

/* Runs the sink's loop for up to @ms or until @cond (read under the lock). */
static bool pump_until(struct vgb_display *d, bool (*cond)(void), int ms)
{
	uint64_t deadline = vgb_now_ns() + (uint64_t)ms * 1000000u;

	for (;;) {
		bool met;
		pthread_mutex_lock(&lock);
		met = cond && cond();
		pthread_mutex_unlock(&lock);
		if (met)
			return true;
		if (vgb_now_ns() >= deadline)
			return !cond;
		struct pollfd p = { .fd = vgb_display_get_fd(d), .events = POLLIN };
		poll(&p, p.fd >= 0 ? 1 : 0, 2);
		vgb_display_dispatch(d);
	}
}

static unsigned done_calls;
static int done_last;

static void on_done(void *data, int status)
{
	done_calls++;
	done_last = status;
}

static unsigned want_value;
static bool cursor_shown(void)
{
	return fake.set_cursors >= 1 && !fake.cursor_hidden && fake.cursor_w == 16;
}
static bool cursor_hidden(void)
{
	return fake.cursor_hidden;
}
static bool destroyed_reached(void)
{
	return fake.buffers_destroyed >= want_value;
}
static bool feedbacks_reached(void)
{
	return fake.feedbacks >= want_value;
}

static unsigned want_commits;
static bool commits_reached(void)
{
	return fake.commits >= want_commits;
}

struct guest_frame {
	int fd;
	void *map;
	size_t size;
	uint32_t offset;
	struct vgb_dmabuf dmabuf;
	struct vgb_cpu_view cpu;
};

/* A guest frame: a memfd standing in for the dmabuf, with @offset before the pixels. */
static void guest_frame_init(struct guest_frame *g, uint32_t fourcc, uint64_t modifier,
			     uint32_t offset, unsigned seed)
{
	g->offset = offset;
	g->size = offset + W * H * 4;
	g->fd = memfd_create("guest-dmabuf", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (g->fd < 0 || ftruncate(g->fd, (off_t)g->size) < 0)
		tap_bail("memfd");
	g->map = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_SHARED, g->fd, 0);
	for (uint32_t i = 0; i < W * H; i++)
		((uint32_t *)((uint8_t *)g->map + offset))[i] = 0x01000000u * seed + i;
	vgb_dmabuf_init(&g->dmabuf);
	g->dmabuf.width = W;
	g->dmabuf.height = H;
	g->dmabuf.fourcc = fourcc;
	g->dmabuf.modifier = modifier;
	g->dmabuf.n_planes = 1;
	g->dmabuf.fd[0] = g->fd;
	g->dmabuf.offset[0] = offset;
	g->dmabuf.stride[0] = W * 4;
	/* Not a memfd range for the sink (memfd -1): a fallback must copy. */
	g->cpu = (struct vgb_cpu_view){ .data = (uint8_t *)g->map + offset, .stride = W * 4,
					.memfd = -1 };
}

static void guest_frame_finish(struct guest_frame *g)
{
	munmap(g->map, g->size);
	close(g->fd);
}

static int present(struct vgb_display *d, struct guest_frame *g, uint64_t id)
{
	struct vgb_frame f = { .width = W, .height = H, .fourcc = g->dmabuf.fourcc, .buffer_id = id,
			       .dmabuf = &g->dmabuf, .cpu = &g->cpu, .done = on_done };
	unsigned before = done_calls;
	int r;

	pthread_mutex_lock(&lock);
	want_commits = fake.commits + 1;
	pthread_mutex_unlock(&lock);
	r = vgb_display_present(d, &f);
	if (r < 0)
		return r;
	if (!pump_until(d, commits_reached, 10000))
		return -ETIMEDOUT;
	/* The frame callback completes it (no wp_presentation here). */
	for (int i = 0; i < 5000 && done_calls == before; i++)
		pump_until(d, NULL, 2);
	return done_calls == before + 1 ? done_last : -ETIMEDOUT;
}

/* Format tables: the first lists XRGB8888 and ARGB8888 (LINEAR) plus a tiled pair; the second
 * (a table change) lists ARGB8888 LINEAR only, at a different index. */
static const uint64_t table1[][2] = {
	{ DRM_FORMAT_ARGB8888, DRM_FORMAT_MOD_LINEAR },
	{ DRM_FORMAT_XRGB8888, DRM_FORMAT_MOD_LINEAR },
	{ DRM_FORMAT_XRGB8888, I915_FORMAT_MOD_X_TILED },
	{ DRM_FORMAT_NV12, DRM_FORMAT_MOD_LINEAR },
};
static const uint16_t tranche1[] = { 1, 0, 2, 999 /* out of range: ignored */,
				     300 /* inside the declared size, past the file: ignored */ };
static const uint64_t table2[][2] = {
	{ DRM_FORMAT_NV12, DRM_FORMAT_MOD_LINEAR },
	{ DRM_FORMAT_ABGR8888, DRM_FORMAT_MOD_LINEAR },
	{ DRM_FORMAT_ARGB8888, DRM_FORMAT_MOD_LINEAR },
};
static const uint16_t tranche2[] = { 2 };

int main(void)
{
	struct vgb_display *d = NULL;
	struct vgb_display_options opts = { .title = "fakevm", .fullscreen = true,
					    .timeout_ms = 2000 };
	struct vgb_display_stats st;
	struct guest_frame g1, g2, g3, g4;
	pthread_t thread;
	struct stat sb;
	int r;

	tap_plan_lazy();
	signal(SIGPIPE, SIG_IGN);
	fake.table = table1;
	fake.table_len = VGB_ARRAY_SIZE(table1);
	fake.tranche = tranche1;
	fake.tranche_len = VGB_ARRAY_SIZE(tranche1);
	fake.refuse_offset = 8192;
	fake.table_extra_bytes = 3 * 4096 + 8; /* past the end of the file, and not a multiple of 16 */
	fake_start();
	pthread_create(&thread, NULL, serve, NULL);

	r = vgb_display_create_wayland(fake.socket, &opts, &d);
	tap_is_int(r, 0, "create the sink on the fake compositor");
	if (r < 0)
		tap_bail("no sink");

	/* 1. A listed pair goes through linux-dmabuf with `create`. */
	guest_frame_init(&g1, DRM_FORMAT_XRGB8888, DRM_FORMAT_MOD_LINEAR, 4096, 1);
	r = present(d, &g1, 1);
	tap_is_int(r, 0, "XRGB8888/LINEAR frame completes with 0 on the frame callback");
	vgb_display_get_stats(d, &st);
	pthread_mutex_lock(&lock);
	tap_is_str(fake.title, "fakevm scanout 0", "toplevel title names the VM and the scanout");
	tap_is_str(fake.app_id, "vgbridge", "app id");
	tap_ok(fake.fullscreen, "fullscreen requested");
	tap_is_uint(fake.feedbacks, 2, "default and per-surface feedback requested");
	tap_is_uint(fake.creates, 1, "one import with create");
	tap_is_uint(fake.create_immeds, 0, "never create_immed");
	tap_is_uint(fake.params_fds, 1, "one plane fd sent");
	fstat(g1.fd, &sb);
	tap_ok(fake.last_ino == sb.st_ino, "the compositor got the guest's dmabuf itself");
	tap_is_uint(fake.last_offset, 4096, "plane offset passed through (zero-copy sub-range)");
	tap_is_uint(fake.last_stride, W * 4, "stride passed through");
	tap_is_uint(fake.last_modifier, DRM_FORMAT_MOD_LINEAR, "modifier LINEAR");
	tap_ok(fake.committed_is_dmabuf, "the committed buffer is the dmabuf");
	pthread_mutex_unlock(&lock);
	tap_is_str(vgb_present_path_name(st.last_path), "dmabuf", "path dmabuf");
	tap_is_uint(st.copies, 0, "no copy");
	tap_is_uint(st.frames_presented, 1, "presented (frame callback)");

	/* Cursor: the pointer entered the window; set_cursor gets our cursor surface. */
	{
		static uint32_t argb[16 * 12];
		for (unsigned i = 0; i < 16 * 12; i++)
			argb[i] = 0x80000000u | (i * 0x010203u);
		r = vgb_display_set_cursor(d, 0, argb, 16, 12, 3, 4);
		tap_is_int(r, 0, "set a 16x12 cursor with hotspot (3,4)");
		pump_until(d, cursor_shown, 10000);
		pthread_mutex_lock(&lock);
		tap_ok(fake.entered && fake.set_cursors >= 1 && !fake.cursor_hidden &&
			       fake.hot_x == 3 && fake.hot_y == 4,
		       "wl_pointer.set_cursor with our surface and the hotspot (%u calls, %d,%d)",
		       fake.set_cursors, fake.hot_x, fake.hot_y);
		tap_ok(fake.cursor_w == 16 && fake.cursor_h == 12 &&
			       memcmp(fake.cursor_pixels, argb, sizeof(argb)) == 0,
		       "the cursor surface shows the image (%ux%u)", fake.cursor_w, fake.cursor_h);
		pthread_mutex_unlock(&lock);
		r = vgb_display_set_cursor(d, 0, NULL, 0, 0, 0, 0);
		pump_until(d, cursor_hidden, 10000);
		pthread_mutex_lock(&lock);
		tap_ok(r == 0 && fake.cursor_hidden, "hiding it sets a NULL cursor");
		pthread_mutex_unlock(&lock);
	}

	/* 2. The same export again: the cached wl_buffer, no new import. */
	r = present(d, &g1, 1);
	tap_is_int(r, 0, "the same export again");
	vgb_display_get_stats(d, &st);
	pthread_mutex_lock(&lock);
	tap_is_uint(fake.creates, 1, "no second import");
	pthread_mutex_unlock(&lock);
	tap_is_uint(st.cached_buffers, 1, "one cached wl_buffer");

	/* 3. A pair the compositor did not list never reaches it. */
	guest_frame_init(&g2, DRM_FORMAT_XRGB8888, I915_FORMAT_MOD_Y_TILED, 0, 2);
	r = present(d, &g2, 2);
	tap_is_int(r, 0, "an unlisted modifier");
	vgb_display_get_stats(d, &st);
	pthread_mutex_lock(&lock);
	tap_is_uint(fake.creates, 1, "not imported");
	tap_ok(!fake.committed_is_dmabuf, "shown through shm");
	tap_is_mem(fake.shm_pixels, g2.cpu.data, W * H * 4, "the shm buffer holds the frame");
	pthread_mutex_unlock(&lock);
	tap_is_str(vgb_present_path_name(st.last_path), "shm-copy", "path shm-copy");

	/* 4. `failed` -> shm fallback, remembered for the export. */
	guest_frame_init(&g3, DRM_FORMAT_XRGB8888, DRM_FORMAT_MOD_LINEAR, 8192, 3);
	r = present(d, &g3, 3);
	tap_is_int(r, 0, "a frame the compositor refuses still completes with 0");
	vgb_display_get_stats(d, &st);
	pthread_mutex_lock(&lock);
	tap_is_uint(fake.creates, 2, "it was offered once");
	tap_ok(!fake.committed_is_dmabuf, "and shown through shm");
	tap_is_mem(fake.shm_pixels, g3.cpu.data, W * H * 4, "with the frame's pixels");
	pthread_mutex_unlock(&lock);
	tap_is_uint(st.dmabuf_failed, 1, "stats count the refusal");
	tap_is_str(vgb_present_path_name(st.last_path), "shm-copy", "path shm-copy");
	((uint32_t *)g3.cpu.data)[5] = 0xdeadbeef;
	r = present(d, &g3, 3);
	tap_is_int(r, 0, "the refused export again");
	pthread_mutex_lock(&lock);
	tap_is_uint(fake.creates, 2, "not offered again");
	tap_is_mem(fake.shm_pixels, g3.cpu.data, W * H * 4, "shm shows the new pixels");
	pthread_mutex_unlock(&lock);

	/*
	 * 4b. A CPU view whose memory is cut under it (as a BAR is when the guest turns memory
	 * decode off): the shm copy faults, the frame is taken and fails with -EIO, the sink
	 * lives on and shows the next frame.
	 */
	{
		struct guest_frame gv;
		unsigned before = done_calls;

		guest_frame_init(&gv, DRM_FORMAT_XRGB8888, I915_FORMAT_MOD_Y_TILED, 0, 7);
		tap_ok(ftruncate(gv.fd, 0) == 0, "a frame whose memory is cut under its view");
		struct vgb_frame f = { .width = W, .height = H, .fourcc = DRM_FORMAT_XRGB8888,
				       .buffer_id = 7, .cpu = &gv.cpu, .done = on_done };
		r = vgb_display_present(d, &f);
		for (int i = 0; i < 500 && done_calls == before; i++)
			pump_until(d, NULL, 2);
		tap_ok(r == 0 && done_calls == before + 1 && done_last == -EIO,
		       "its shm copy faults: taken, completed once with -EIO, no SIGBUS "
		       "(present %d, done %d)",
		       r, done_last);
		guest_frame_finish(&gv);
		((uint32_t *)g3.cpu.data)[6] = 0xfeedf00d;
		r = present(d, &g3, 3);
		tap_is_int(r, 0, "the next frame is shown");
		pthread_mutex_lock(&lock);
		tap_is_mem(fake.shm_pixels, g3.cpu.data, W * H * 4, "with its pixels");
		pthread_mutex_unlock(&lock);
	}

	/* 5. forget drops the export's wl_buffer. */
	vgb_display_forget(d, 1);
	want_value = 1;
	pump_until(d, destroyed_reached, 10000);
	pthread_mutex_lock(&lock);
	tap_is_uint(fake.buffers_destroyed, 1, "forget destroys the cached wl_buffer");
	pthread_mutex_unlock(&lock);

	/* 6. A format-table change on the surface feedback. */
	pthread_mutex_lock(&lock);
	fake.table = table2;
	fake.table_len = VGB_ARRAY_SIZE(table2);
	fake.tranche = tranche2;
	fake.tranche_len = VGB_ARRAY_SIZE(tranche2);
	want_value = fake.feedbacks + 1;
	pthread_mutex_unlock(&lock);
	{
		uint64_t one = 1;
		tap_ok(write(resend_efd, &one, sizeof(one)) == sizeof(one), "new table sent");
	}
	/* Sent by the fake, then read by the sink (the events are in its socket by then). */
	pump_until(d, feedbacks_reached, 10000);
	pump_until(d, NULL, 100);
	r = present(d, &g1, 4);
	tap_is_int(r, 0, "XRGB8888 after the change");
	vgb_display_get_stats(d, &st);
	pthread_mutex_lock(&lock);
	tap_is_uint(fake.creates, 2, "XRGB8888 is no longer listed: not imported");
	pthread_mutex_unlock(&lock);
	tap_is_str(vgb_present_path_name(st.last_path), "shm-copy", "path shm-copy");
	guest_frame_init(&g4, DRM_FORMAT_ARGB8888, DRM_FORMAT_MOD_LINEAR, 0, 4);
	r = present(d, &g4, 5);
	tap_is_int(r, 0, "ARGB8888 after the change");
	vgb_display_get_stats(d, &st);
	pthread_mutex_lock(&lock);
	tap_is_uint(fake.creates, 3, "ARGB8888 is listed in the new table: imported");
	tap_is_uint(fake.last_format, DRM_FORMAT_ARGB8888, "as ARGB8888");
	tap_ok(fake.committed_is_dmabuf, "shown as a dmabuf");
	pthread_mutex_unlock(&lock);
	tap_is_str(vgb_present_path_name(st.last_path), "dmabuf", "path dmabuf");

	/* Uncached (buffer_id 0) imports live for one commit: released -> destroyed. */
	{
		pthread_mutex_lock(&lock);
		unsigned destroyed = fake.buffers_destroyed, creates = fake.creates;
		pthread_mutex_unlock(&lock);
		vgb_display_get_stats(d, &st);
		uint32_t cached = st.cached_buffers;
		tap_is_int(present(d, &g4, 0), 0, "an uncached dmabuf frame");
		tap_is_int(present(d, &g4, 0), 0, "another one");
		want_value = destroyed + 1;
		pump_until(d, destroyed_reached, 10000);
		vgb_display_get_stats(d, &st);
		pthread_mutex_lock(&lock);
		tap_is_uint(fake.creates, creates + 2, "each imported");
		tap_is_uint(fake.buffers_destroyed, destroyed + 1,
			    "the first is destroyed once the compositor released it");
		pthread_mutex_unlock(&lock);
		tap_is_uint(st.cached_buffers, cached + 1, "only the one on screen is still held");
	}

	/*
	 * 7. No CPU view, and the compositor will not take the dmabuf: only the EGL importer
	 * can show it. Where host EGL cannot import dmabufs (llvmpipe without a render node, as
	 * on the CI machines) the frame is refused without completion (unlisted pair) or
	 * completes with -EOPNOTSUPP (refused asynchronously); where it can, it is drawn.
	 */
	{
		int fds_before = leak_count_fds();
		struct guest_frame g5;
		guest_frame_init(&g5, DRM_FORMAT_XRGB8888, DRM_FORMAT_MOD_LINEAR, 0, 5);
		struct vgb_frame f = { .width = W, .height = H, .fourcc = DRM_FORMAT_XRGB8888,
				       .buffer_id = 6, .dmabuf = &g5.dmabuf, .done = on_done };
		unsigned before = done_calls;
		/*
		 * This present initialises EGL (Mesa) on first need. Mesa's driver leaks a small
		 * allocation across eglInitialize/eglTerminate and is unloaded before LeakSanitizer
		 * runs (the report then names no module), so LSan ignores what is allocated here.
		 */
		lsan_disable();
		r = vgb_display_present(d, &f);
		lsan_enable();
		vgb_display_get_stats(d, &st);
		if (r == 0) {
			tap_ok(done_calls == before + 1 && done_last == 0 && st.last_path == VGB_PATH_EGL,
			       "unlisted pair, no CPU view: drawn by the EGL importer");
		} else {
			tap_ok(r == -EOPNOTSUPP && done_calls == before,
			       "unlisted pair, no CPU view, no EGL dmabuf import here: refused (%d), "
			       "not completed", r);
		}
		tap_diag("EGL importer %s on this machine",
			 r == 0 ? "drew the frame" : "is unavailable (capability absent)");

		/* Listed, then refused with `failed` (offset 8192), no CPU view. */
		struct guest_frame g6;
		guest_frame_init(&g6, DRM_FORMAT_ARGB8888, DRM_FORMAT_MOD_LINEAR, 8192, 6);
		f = (struct vgb_frame){ .width = W, .height = H, .fourcc = DRM_FORMAT_ARGB8888,
					.buffer_id = 7, .dmabuf = &g6.dmabuf, .done = on_done };
		before = done_calls;
		pthread_mutex_lock(&lock);
		unsigned creates = fake.creates;
		pthread_mutex_unlock(&lock);
		r = vgb_display_present(d, &f);
		tap_is_int(r, 0, "a listed pair without CPU view is taken");
		for (int i = 0; i < 5000 && done_calls == before; i++)
			pump_until(d, NULL, 2);
		pthread_mutex_lock(&lock);
		tap_is_uint(fake.creates, creates + 1, "offered to the compositor");
		pthread_mutex_unlock(&lock);
		tap_ok(done_calls == before + 1 && (done_last == 0 || done_last == -EOPNOTSUPP),
		       "refused with failed: completed once (%d: %s)", done_last,
		       done_last == 0 ? "EGL drew it" : "nothing else can show it here");
		guest_frame_finish(&g5);
		guest_frame_finish(&g6);
		tap_is_int(leak_count_fds(), fds_before, "no fd left (the sink's duplicate is closed)");
	}

	/* 8. no_dmabuf: never offered. */
	vgb_display_destroy(d);
	opts.no_dmabuf = true;
	r = vgb_display_create_wayland(fake.socket, &opts, &d);
	tap_is_int(r, 0, "a sink with no_dmabuf");
	r = present(d, &g4, 5);
	tap_is_int(r, 0, "a dmabuf frame");
	pthread_mutex_lock(&lock);
	tap_is_uint(fake.creates, 6, "not offered");
	pthread_mutex_unlock(&lock);

	/* 9. Zero copy only from a memfd: a regular file of the right size is copied instead
	 * (as is a VFIO device fd: only memfds answer F_GET_SEALS). */
	{
		struct guest_frame g7;
		guest_frame_init(&g7, DRM_FORMAT_XRGB8888, DRM_FORMAT_MOD_LINEAR, 4096, 7);
		g7.cpu.memfd = g7.fd;
		g7.cpu.memfd_offset = 4096;
		g7.cpu.memfd_size = g7.size;
		r = present(d, &g7, 10);
		vgb_display_get_stats(d, &st);
		tap_ok(r == 0 && st.last_path == VGB_PATH_SHM_COPY,
		       "a memfd that may still shrink is copied (%s)",
		       vgb_present_path_name(st.last_path));
		tap_ok(fcntl(g7.fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0, "seal it against shrinking");
		r = present(d, &g7, 8);
		vgb_display_get_stats(d, &st);
		tap_ok(r == 0 && st.last_path == VGB_PATH_SHM_DIRECT,
		       "a memfd range goes to wl_shm directly (%s)",
		       vgb_present_path_name(st.last_path));
		int file = open(fake.dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		tap_ok(file >= 0 && ftruncate(file, (off_t)g7.size) == 0, "a regular file as large");
		g7.cpu.memfd = file;
		r = present(d, &g7, 9);
		vgb_display_get_stats(d, &st);
		tap_ok(r == 0 && st.last_path == VGB_PATH_SHM_COPY,
		       "a regular file is not shared with the compositor: copied (%s)",
		       vgb_present_path_name(st.last_path));
		close(file);
		guest_frame_finish(&g7);
	}

	/*
	 * 10. A zero-copy frame's fence completes only once the compositor has read the frame
	 * (its repaint), never at commit: a guest that writes its buffer as soon as the fence
	 * completes must not change the frame the compositor shows. Checked by the order of
	 * events, not by time: done must come after repaint().
	 */
	{
		struct guest_frame g8;
		unsigned before = done_calls, repaints;
		guest_frame_init(&g8, DRM_FORMAT_XRGB8888, DRM_FORMAT_MOD_LINEAR, 4096, 8);
		g8.cpu.memfd = g8.fd;
		g8.cpu.memfd_offset = 4096;
		g8.cpu.memfd_size = g8.size;
		fcntl(g8.fd, F_ADD_SEALS, F_SEAL_SHRINK);
		static uint8_t expected[W * H * 4]; /* the frame as flushed */
		memcpy(expected, g8.cpu.data, sizeof(expected));
		struct vgb_frame f = { .width = W, .height = H, .fourcc = DRM_FORMAT_XRGB8888,
				       .buffer_id = 11, .cpu = &g8.cpu, .done = on_done };
		pthread_mutex_lock(&lock);
		fake.hold_repaint = true;
		want_commits = fake.commits + 1;
		pthread_mutex_unlock(&lock);
		r = vgb_display_present(d, &f);
		tap_ok(r == 0 && pump_until(d, commits_reached, 10000), "a shm-direct frame is committed");
		vgb_display_get_stats(d, &st);
		tap_is_str(vgb_present_path_name(st.last_path), "shm-direct", "zero copy");
		pump_until(d, NULL, 50); /* every chance to complete early */
		bool early = done_calls != before;
		tap_ok(!early, "its fence waits for the compositor's repaint");
		if (early) /* what a guest does once its fence completed */
			memset((uint8_t *)g8.map + 4096, 0x5a, W * H * 4);
		pthread_mutex_lock(&lock);
		repaint();
		repaints = fake.repaints;
		pthread_mutex_unlock(&lock);
		for (int i = 0; i < 5000 && done_calls == before; i++)
			pump_until(d, NULL, 2);
		tap_ok(done_calls == before + 1 && done_last == 0,
		       "and completes with 0 after it (%u repaint(s))", repaints);
		memset((uint8_t *)g8.map + 4096, 0xa5, W * H * 4); /* the guest's next frame, after the fence */
		pthread_mutex_lock(&lock);
		tap_is_mem(fake.shown_pixels, expected, sizeof(expected),
			   "a guest write after the fence completed is not in the frame shown");
		fake.hold_repaint = false;
		repaint();
		pthread_mutex_unlock(&lock);
		guest_frame_finish(&g8);
	}
	vgb_display_destroy(d);

	guest_frame_finish(&g1);
	guest_frame_finish(&g2);
	guest_frame_finish(&g3);
	guest_frame_finish(&g4);
	fake_stop(thread);
	return tap_done();
}
